"""The project's own documents: every number of the worked examples in ``docs/method.md`` is recomputed with
``simvis_widgets.decompose`` and with plain Python loops (to 1e-6); the docs point at files that exist and
not at notes outside the repository; the BSD-3-Clause LICENSE is declared and ends up in the wheel."""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
import torch

import simvis_widgets as sv
from simvis_widgets.decompose import cell_weights, region_query

REPO = Path(__file__).resolve().parents[1]
METHOD = REPO / "docs" / "method.md"
TOL = 1e-6

Vec = list[float]
Mat = list[list[float]]


def worked_examples(text: str) -> list[dict[str, Any]]:
    """The ```` ```worked-example ```` blocks of a markdown text: ``name = JSON value`` lines (``#`` comments)."""
    examples = []
    for body in re.findall(r"^```worked-example[ \t]*\n(.*?)^```[ \t]*$", text, re.S | re.M):
        values: dict[str, Any] = {}
        for n, line in enumerate(body.splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            name, eq, value = line.partition("=")
            assert eq, f"line {n} of a worked-example block is not 'name = value': {line!r}"
            assert name.strip() not in values, f"{name.strip()} given twice"
            values[name.strip()] = json.loads(value)
        examples.append(values)
    return examples


EXAMPLES = worked_examples(METHOD.read_text())
INPUTS = {
    "example",
    "pooling",
    "normalize",
    "grid_a",
    "grid_b",
    "cells_a",
    "cells_b",
    "head_weight",
    "head_bias",
    "mask_a",
}


# ------------------------------------------------------------------------------------------------------
# Brute force: plain Python, one formula of docs/method.md at a time
# ------------------------------------------------------------------------------------------------------


def dot(x: Vec, y: Vec) -> float:
    return sum(a * b for a, b in zip(x, y))


def pooled_and_shares(cells: Mat, pooling: str) -> tuple[Vec, Mat]:
    """``f`` pooled the network's way and the shares ``r[i]`` (ties of max split equally)."""
    n, c = len(cells), len(cells[0])
    if pooling == "avg":
        return [sum(cell[k] for cell in cells) / n for k in range(c)], [[v / n for v in cell] for cell in cells]
    assert pooling == "max", pooling
    f = [max(cell[k] for cell in cells) for k in range(c)]
    ties = [sum(1 for cell in cells if cell[k] == f[k]) for k in range(c)]
    return f, [[f[k] / ties[k] if cell[k] == f[k] else 0.0 for k in range(c)] for cell in cells]


def affine(w: Mat, x: Vec) -> Vec:
    return [dot(row, x) for row in w]


def area_weights(mask: Mat, grid: list[int]) -> list[float]:
    """Fraction of each cell's area covered by ``mask``: the image is split evenly into the grid's cells."""
    hp, wp = len(mask), len(mask[0])
    gh, gw = grid
    out = []
    for ci in range(gh):
        for cj in range(gw):
            y0, y1, x0, x1 = ci * hp / gh, (ci + 1) * hp / gh, cj * wp / gw, (cj + 1) * wp / gw
            covered = 0.0
            for py in range(hp):
                for px in range(wp):
                    overlap = max(0.0, min(y1, py + 1) - max(y0, py)) * max(0.0, min(x1, px + 1) - max(x0, px))
                    covered += overlap * mask[py][px]
            out.append(covered / ((y1 - y0) * (x1 - x0)))
    return out


def brute_force(ex: dict[str, Any]) -> dict[str, Any]:
    f_a, r_a = pooled_and_shares(ex["cells_a"], ex["pooling"])
    f_b, r_b = pooled_and_shares(ex["cells_b"], ex["pooling"])
    c_dim = len(f_a)
    w = ex.get("head_weight", [[float(i == k) for k in range(c_dim)] for i in range(c_dim)])
    bias = ex.get("head_bias", [0.0] * len(w))
    q_a, q_b = [affine(w, r) for r in r_a], [affine(w, r) for r in r_b]
    g_a, g_b = affine(w, f_a), affine(w, f_b)
    e_a, e_b = [g + c for g, c in zip(g_a, bias)], [g + c for g, c in zip(g_b, bias)]
    norm_a, norm_b = math.sqrt(dot(e_a, e_a)), math.sqrt(dot(e_b, e_b))
    scale = 1 / (norm_a * norm_b) if ex["normalize"] else 1.0
    pairwise = [[dot(qa, qb) * scale for qb in q_b] for qa in q_a]
    (ha, wa), (hb, wb) = ex["grid_a"], ex["grid_b"]
    row_sums = [sum(row) for row in pairwise]
    col_sums = [sum(pairwise[i][j] for i in range(len(q_a))) for j in range(len(q_b))]
    out: dict[str, Any] = {
        "f_a": f_a,
        "f_b": f_b,
        "g_a": g_a,
        "g_b": g_b,
        "e_a": e_a,
        "e_b": e_b,
        "norm_a": norm_a,
        "norm_b": norm_b,
        "scale": scale,
        "shares_a": q_a,
        "shares_b": q_b,
        "P": pairwise,
        "map_a": [row_sums[r * wa : (r + 1) * wa] for r in range(ha)],
        "map_b": [col_sums[r * wb : (r + 1) * wb] for r in range(hb)],
        "global_term": (dot(bias, g_b) + dot(g_a, bias) + dot(bias, bias)) * scale,
        "score": dot(e_a, e_b) * scale,
    }
    if "mask_a" in ex:
        weights = area_weights(ex["mask_a"], ex["grid_a"])
        region_map = [sum(weights[i] * pairwise[i][j] for i in range(len(q_a))) for j in range(len(q_b))]
        query = [sum(weights[i] * q_a[i][k] for i in range(len(q_a))) for k in range(len(g_a))]
        out.update(
            {
                "weights_a": [weights[r * wa : (r + 1) * wa] for r in range(ha)],
                "region_map_b": [region_map[r * wb : (r + 1) * wb] for r in range(hb)],
                "region_score_a": sum(w_i * s_i for w_i, s_i in zip(weights, row_sums)),
                "region_query": query,
                "region_retrieval_score": dot(query, g_b) * scale,
            }
        )
    return out


# ------------------------------------------------------------------------------------------------------
# The library
# ------------------------------------------------------------------------------------------------------


def feature_map(cells: Mat, grid: list[int], dtype: torch.dtype) -> torch.Tensor:
    """``(C, H, W)`` from one row of ``C`` values per cell in row-major order."""
    t = torch.tensor(cells, dtype=dtype)
    return t.T.reshape(t.shape[1], *grid).contiguous()


def library(ex: dict[str, Any], dtype: torch.dtype) -> dict[str, Any]:
    feats_a, feats_b = feature_map(ex["cells_a"], ex["grid_a"], dtype), feature_map(ex["cells_b"], ex["grid_b"], dtype)
    head = None
    if "head_weight" in ex:
        bias = ex.get("head_bias", [0.0] * len(ex["head_weight"]))
        head = (torch.tensor(ex["head_weight"], dtype=dtype), torch.tensor(bias, dtype=dtype))
    pooling, normalize = ex["pooling"], ex["normalize"]
    result = sv.decompose(feats_a, feats_b, pooling, normalize=normalize, head=head)
    pooled = sv.decompose(feats_a, feats_b, pooling, normalize=False)  # no head: the embeddings are f
    g_a, e_a = region_query(feats_a, None, pooling, head=head)
    g_b, e_b = region_query(feats_b, None, pooling, head=head)
    assert result.embedding_a is not None and result.embedding_b is not None
    assert torch.allclose(e_a, result.embedding_a) and torch.allclose(e_b, result.embedding_b)
    out: dict[str, Any] = {
        "f_a": pooled.embedding_a,
        "f_b": pooled.embedding_b,
        "g_a": g_a,
        "g_b": g_b,
        "e_a": result.embedding_a,
        "e_b": result.embedding_b,
        "norm_a": result.embedding_a.norm(),
        "norm_b": result.embedding_b.norm(),
        "scale": result.scale,
        "shares_a": result.shares_a,
        "shares_b": result.shares_b,
        "P": result.pairwise,
        "map_a": result.map_a,
        "map_b": result.map_b,
        "global_term": result.global_term,
        "score": result.score,
    }
    if "mask_a" in ex:
        mask = torch.tensor(ex["mask_a"], dtype=dtype)
        weights = cell_weights(mask, tuple(ex["grid_a"]), dtype=dtype)
        query, _ = region_query(feats_a, weights, pooling, head=head)
        out.update(
            {
                "weights_a": weights,
                "region_map_b": result.region_map("a", mask),
                "region_score_a": result.region_score("a", mask),
                "region_query": query,
                "region_retrieval_score": float(query @ g_b) * result.scale,
            }
        )
    return out


def assert_close(name: str, got: Any, want: Any, tol: float) -> None:
    got_t = torch.as_tensor(got, dtype=torch.float64).cpu() if not isinstance(got, torch.Tensor) else got.double().cpu()
    want_t = torch.as_tensor(want, dtype=torch.float64)
    assert tuple(got_t.shape) == tuple(want_t.shape), f"{name}: shape {tuple(got_t.shape)} != {tuple(want_t.shape)}"
    err = float((got_t - want_t).abs().max()) if want_t.numel() else 0.0
    assert err <= tol * max(1.0, float(want_t.abs().max())), f"{name}: {got_t.tolist()} != {want_t.tolist()}"


# ------------------------------------------------------------------------------------------------------
# Tests
# ------------------------------------------------------------------------------------------------------


def test_the_document_has_the_worked_examples() -> None:
    names = [ex.get("example") for ex in EXAMPLES]
    assert names == ["avg-cosine", "avg-dot-bias", "max-tie-cosine"]
    first = EXAMPLES[0]
    assert first["pooling"] == "avg" and first["normalize"] is True  # the paper's case: average pooling, cosine
    assert {"f_a", "f_b", "norm_a", "norm_b", "P", "map_a", "map_b", "score"} <= first.keys()


@pytest.mark.parametrize("ex", EXAMPLES, ids=[str(ex.get("example")) for ex in EXAMPLES])
def test_every_number_matches_brute_force_and_the_library(ex: dict[str, Any]) -> None:
    numbers = sorted(set(ex) - INPUTS)
    brute = brute_force(ex)
    unchecked = set(numbers) - brute.keys()
    assert not unchecked, f"numbers in docs/method.md that no test recomputes: {sorted(unchecked)}"
    for dtype, tol in ((torch.float64, TOL), (torch.float32, TOL)):
        lib = library(ex, dtype)
        for name in numbers:
            assert_close(f"{ex['example']}: {name} (brute force)", brute[name], ex[name], TOL)
            assert_close(f"{ex['example']}: {name} ({dtype})", lib[name], ex[name], tol)


@pytest.mark.parametrize("ex", EXAMPLES, ids=[str(ex.get("example")) for ex in EXAMPLES])
def test_the_sums_close(ex: dict[str, Any]) -> None:
    """The identity the document is about, on its own numbers."""
    total = sum(map(sum, ex["P"]))
    for part in (total, sum(map(sum, ex["map_a"])), sum(map(sum, ex["map_b"]))):
        assert part + ex["global_term"] == pytest.approx(ex["score"], abs=TOL)
    if "mask_a" in ex:
        assert sum(map(sum, ex["region_map_b"])) == pytest.approx(ex["region_score_a"], abs=TOL)
        assert ex["region_retrieval_score"] == pytest.approx(ex["region_score_a"], abs=TOL)


def test_a_tie_must_be_split() -> None:
    """Why max pooling splits ties: giving each tied cell the whole maximum overcounts the channel."""
    ex = next(e for e in EXAMPLES if e["pooling"] == "max")
    f, cells = ex["f_a"], ex["cells_a"]
    whole_to_each = [sum(f[k] for cell in cells if cell[k] == f[k]) for k in range(len(f))]
    assert whole_to_each == [8, 3] and whole_to_each != f, "the max example has no tie"
    assert [sum(col) for col in zip(*ex["shares_a"])] == f


# ------------------------------------------------------------------------------------------------------
# The repository stands on its own
# ------------------------------------------------------------------------------------------------------


def _tracked_text_files() -> list[Path]:
    git = shutil.which("git")
    if git is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    listed = subprocess.run([git, "ls-files", "-z"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    files = [REPO / name for name in listed.split("\0") if name]
    text = {".md", ".py", ".sh", ".txt", ".toml", ".cfg", ".yml", ".yaml", ".mjs", ".js", ""}
    return [f for f in files if f.is_file() and f.suffix in text]


def test_no_reference_to_notes_outside_the_repository() -> None:
    offenders = []
    for path in _tracked_text_files():
        rel = path.relative_to(REPO).as_posix()
        if rel == "tests/test_method_doc.py":
            continue
        text = path.read_text(errors="replace")
        offenders += [f"{rel}:{n}" for n, line in enumerate(text.splitlines(), 1) if "shared/notes" in line]
    assert offenders == []


def test_readme_points_at_files_that_exist() -> None:
    readme = (REPO / "README.md").read_text()
    assert "docs/method.md" in readme
    for target in re.findall(r"\]\((?!https?://|#)([^)#\s]+)", readme):
        assert (REPO / target).exists(), f"README links to a missing file: {target}"
    folders = "docs|tools|benchmarks|notebooks|binder|simvis_widgets|tests"
    for target in re.findall(rf"`((?:{folders})/[\w./-]+\.\w+)`", readme):
        assert (REPO / target).exists(), f"README names a missing file: {target}"


# ------------------------------------------------------------------------------------------------------
# License
# ------------------------------------------------------------------------------------------------------


def test_license_is_bsd_3_clause_and_declared() -> None:
    text = (REPO / "LICENSE").read_text()
    assert text.startswith("BSD 3-Clause License") and "Copyright (c) 2026, simvis-widgets developers" in text
    assert "Neither the name of the copyright holder" in text
    try:
        import tomllib
    except ImportError:  # Python 3.10
        tomllib = pytest.importorskip("tomli")
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["license"] == "BSD-3-Clause" and project["license-files"] == ["LICENSE"]


def test_wheel_carries_the_license(tmp_path: Path) -> None:
    """Builds the wheel offline from a copy of the sources (the environment's own setuptools, no isolation)."""
    setuptools = pytest.importorskip("setuptools")
    if int(setuptools.__version__.split(".")[0]) < 77:
        pytest.skip(f"setuptools {setuptools.__version__} < 77 cannot read license-files")
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO / name, src / name)
    shutil.copytree(REPO / "simvis_widgets", src / "simvis_widgets", ignore=shutil.ignore_patterns("__pycache__"))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-q",
            "-w",
            str(tmp_path / "dist"),
            str(src),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (wheel,) = (tmp_path / "dist").glob("simvis_widgets-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        licenses = [n for n in names if re.fullmatch(r"simvis_widgets-[^/]+\.dist-info/licenses/LICENSE", n)]
        assert licenses, names
        assert zf.read(licenses[0]).decode() == (REPO / "LICENSE").read_text()
        metadata = zf.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert "License-Expression: BSD-3-Clause" in metadata and "License-File: LICENSE" in metadata
