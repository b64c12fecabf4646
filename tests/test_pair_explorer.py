"""PairExplorer without a browser: state sent to the front end, traits, errors, exports -- and the browser
maths (the built bundle static/pair_explorer.js, run in node) pinned to the Python Explanation."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
import traitlets
from PIL import Image

import simvis_widgets as sv
from simvis_widgets.widgets import encoding

PARITY = Path(__file__).parent / "js" / "parity.mjs"


def _decode(data: bytes, dtype: str) -> np.ndarray:
    return np.frombuffer(bytes(data), dtype=np.float16 if dtype == "float16" else np.float32).astype(np.float64)


def _synthetic(grid_a: tuple[int, int], grid_b: tuple[int, int], c: int = 16, seed: int = 0) -> sv.Explanation:
    g = torch.Generator().manual_seed(seed)
    ex = sv.decompose(torch.rand(c, *grid_a, generator=g), torch.rand(c, *grid_b, generator=g), "gem")
    image_a = np.full((grid_a[0] * 8, grid_a[1] * 8, 3), 120, np.uint8)
    image_b = np.full((grid_b[0] * 8 + 3, grid_b[1] * 8 + 5, 3), 60, np.uint8)  # not a multiple of the grid
    return sv.ExplainedPair.of(ex, image_a, image_b)


@pytest.fixture(scope="module")
def explorer(resnet18_random: sv.ModelSession, photos: dict) -> sv.PairExplorer:
    return sv.PairExplorer(resnet18_random, photos["chelsea"], photos["astronaut"])


def test_state_carries_the_explanation(explorer: sv.PairExplorer) -> None:
    ex = explorer.explanation
    assert explorer.grid_a == list(ex.grid_a) and explorer.grid_b == list(ex.grid_b)
    assert explorer.size_a == list(ex.image_a.shape[:2])
    assert explorer.matrix_kind == "pairwise" and explorer.matrix_dtype == "float32"
    P = explorer.matrix_scale * _decode(explorer.pairwise, "float32").reshape(ex.pairwise.shape)
    np.testing.assert_allclose(P, ex.pairwise.numpy(), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(_decode(explorer.map_a, "float32"), ex.map_a.numpy().ravel(), rtol=1e-6)
    assert explorer.score == pytest.approx(ex.score)
    assert explorer.model_name.startswith("resnet18") and explorer.similarity == "cosine" and explorer.exact
    with Image.open(__import__("io").BytesIO(explorer.image_a)) as img:
        assert img.format == "PNG" and (img.height, img.width) == ex.image_a.shape[:2]
    assert len(explorer.lut) == 256 * 3


def test_large_grids_use_float16_then_factors() -> None:
    mid = sv.PairExplorer.from_explanation(_synthetic((24, 24), (24, 24)))  # 331k entries > FLOAT16_ABOVE
    assert (mid.matrix_kind, mid.matrix_dtype) == ("pairwise", "float16")
    P = mid.matrix_scale * _decode(mid.pairwise, "float16").reshape(576, 576)
    np.testing.assert_allclose(P, mid.explanation.pairwise.numpy(), rtol=1e-3, atol=0)
    big = sv.PairExplorer.from_explanation(_synthetic((33, 33), (32, 33)))  # 1.15M entries > PAIRWISE_MAX
    assert big.matrix_kind == "factors" and big.pairwise == b"" and big.factor_dim == 16
    qa = _decode(big.shares_a, big.matrix_dtype).reshape(33 * 33, 16)
    qb = _decode(big.shares_b, big.matrix_dtype).reshape(32 * 33, 16)
    np.testing.assert_allclose(big.scale * qa @ qb.T, big.explanation.pairwise.numpy(), rtol=3e-3, atol=0)


def test_traits_are_validated(explorer: sv.PairExplorer) -> None:
    with pytest.raises(traitlets.TraitError):
        explorer.mode = "zoom"
    with pytest.raises(traitlets.TraitError, match="inside the"):
        explorer.hover_a = [99, 0]
    with pytest.raises(traitlets.TraitError, match=r"opacity must lie in \[0, 1\]"):
        explorer.opacity = 1.5
    with pytest.raises(sv.PairExplorerError, match="unknown colormap 'nope'"):
        explorer.cmap = "nope"
    with pytest.raises(traitlets.TraitError, match="brush radius"):
        explorer.brush = 0
    with pytest.raises(traitlets.TraitError, match="expected the displayed image size"):
        explorer.mask_a = np.ones((5, 7))
    with pytest.raises(traitlets.TraitError, match=r"values must lie in \[0, 1\]"):
        explorer.mask_a = np.full(explorer.size_a, 3.0)


def test_cmap_changes_the_colour_table(explorer: sv.PairExplorer) -> None:
    before = explorer.lut
    explorer.cmap = "viridis"
    assert explorer.lut != before and explorer.lut == encoding.colormap_lut("viridis")
    explorer.cmap = "RdBu_r"
    assert explorer.lut == before == encoding.colormap_lut("RdBu_r")
    given = sv.PairExplorer(explorer.session, explorer.explanation.image_a, explorer.explanation.image_b, cmap="magma")
    assert given.get_state()["lut"] == encoding.colormap_lut("magma")  # the state the browser first receives
    with pytest.raises(sv.PairExplorerError, match="unknown colormap"):
        sv.PairExplorer(explorer.session, explorer.explanation.image_a, explorer.explanation.image_b, cmap="nope")


def test_masks_sync_as_binary_and_accept_other_resolutions(explorer: sv.PairExplorer, photos: dict) -> None:
    ex = explorer.explanation
    cells = np.zeros(explorer.grid_a)
    cells[:2, :3] = 1
    explorer.mask_a = cells  # cell resolution -> displayed size
    assert explorer.mask_a.shape == tuple(explorer.size_a)
    assert explorer.region_score("a") == pytest.approx(ex.region_score("a", cells), rel=1e-6)
    state = explorer.get_state()["mask_a"]
    assert state["shape"] == explorer.size_a and isinstance(state["data"], memoryview)
    back = encoding.MASK_SERIALIZERS["from_json"]({"shape": state["shape"], "data": state["data"].tobytes()}, None)
    np.testing.assert_array_equal(back, explorer.mask_a)
    original = np.zeros(photos["chelsea"].shape[:2])
    original[:, : original.shape[1] // 2] = 1
    explorer.mask_a = original  # the photo's own size -> displayed size
    assert explorer.mask_a.shape == tuple(explorer.size_a)
    explorer.mask_a = np.zeros(explorer.size_a)  # an empty mask is no mask
    assert explorer.mask_a is None
    assert explorer.region_score("a") == 0.0


def test_swap_transposes_and_masks_follow(resnet18_random: sv.ModelSession, photos: dict) -> None:
    w = sv.PairExplorer(resnet18_random, photos["coffee"], photos["motorcycle_left"])
    grid_a, grid_b, P = w.grid_a, w.grid_b, w.explanation.pairwise.clone()
    mask = np.zeros(w.size_a)
    mask[:20, :20] = 1
    w.mask_a = mask
    w.mode = "hover"
    w.hover_a = [1, 1]
    version = w._pair_version
    w._on_front_end_message(w, {"event": "swap"}, [])  # what the Swap button sends
    assert (w.grid_a, w.grid_b) == (grid_b, grid_a)
    torch.testing.assert_close(w.explanation.pairwise, P.T)
    assert w.mask_a is None and w.mask_b is not None and w.hover_b == [1, 1] and w.hover_a == []
    assert w._pair_version == version + 1
    w.reset()
    assert (w.mode, w.mask_b, w.hover_b) == ("overview", None, [])


def test_set_pair_and_set_session(resnet18_random: sv.ModelSession, photos: dict) -> None:
    w = sv.PairExplorer(resnet18_random, photos["coffee"], photos["chelsea"])
    w.set_pair(photos["astronaut"], photos["motorcycle_right"])
    first = w.score
    max_session = sv.ModelSession(resnet18_random.model, "layer4", pooling="max", size=128, device="cpu")
    w.set_session(max_session)
    assert w.pooling == "max pooling" and w.score != first
    assert w.session is max_session


def test_constructor_errors(resnet18_random: sv.ModelSession, photos: dict) -> None:
    with pytest.raises(sv.PairExplorerError, match="needs a session and two images"):
        sv.PairExplorer()
    with pytest.raises(sv.PairExplorerError, match="needs both images"):
        sv.PairExplorer(resnet18_random, photos["coffee"])
    with pytest.raises(sv.ImageInputError, match="is empty"):
        sv.PairExplorer(resnet18_random, np.zeros((0, 4, 3), np.uint8), photos["coffee"])
    bare = sv.decompose(torch.rand(4, 2, 3), torch.rand(4, 3, 3))
    with pytest.raises(sv.PairExplorerError, match="carries no image A"):
        sv.PairExplorer.from_explanation(bare)
    w = sv.PairExplorer.from_explanation(bare, photos["coffee"], photos["chelsea"])
    assert w.size_a == list(photos["coffee"].shape[:2])
    with pytest.raises(sv.PairExplorerError, match="no session"):
        w.set_pair(photos["coffee"], photos["chelsea"])
    with pytest.raises(sv.PairExplorerError, match="expected an Explanation"):
        sv.PairExplorer.from_explanation("ex")  # type: ignore[arg-type]


def test_save_png_follows_the_mode(explorer: sv.PairExplorer, tmp_path: Path) -> None:
    sizes = {}
    explorer.reset()
    for mode in ("overview", "hover", "paint"):
        explorer.mode = mode
        if mode == "hover":
            explorer.hover_b = [1, 2]
        if mode == "paint":
            explorer.mask_a = np.ones(explorer.grid_a)
        path = explorer.save_png(tmp_path / f"{mode}.png")
        with Image.open(path) as img:
            assert img.format == "PNG"
        sizes[mode] = path.read_bytes()
    assert len({hash(v) for v in sizes.values()}) == 3  # three different pictures
    explorer.reset()


def test_to_html_is_self_contained(explorer: sv.PairExplorer, tmp_path: Path) -> None:
    path = explorer.to_html(tmp_path / "pair.html")
    page = path.read_text()
    assert "http://" not in page.replace("http://www.w3.org", "") and "https://" not in page
    state = json.loads(re.search(r'id="simvis-state">(.*?)</script>', page, re.S).group(1).replace("<\\/", "</"))
    assert state["_static"] is True and state["grid_a"] == explorer.grid_a
    assert base64.b64decode(state["pairwise"]["__b64__"]) == explorer.pairwise
    assert state["matrix_scale"] == explorer.matrix_scale
    esm = json.loads(re.search(r'id="simvis-esm">(.*?)</script>', page, re.S).group(1))
    assert esm == (encoding.STATIC / "pair_explorer.js").read_text(encoding="utf-8")  # the built bundle
    assert "as default\n};" in esm  # an ES module with a default export: what the page imports and renders


# ------------------------------------------------------------------------------------------------------
# The browser maths, run in node, against the Python Explanation
# ------------------------------------------------------------------------------------------------------


def _run_parity(
    explorer: sv.PairExplorer, bundle: str, points: list[tuple[str, int]], regions: list[dict], tmp_path: Path
) -> dict:
    """Run tests/js/parity.mjs on the built ``bundle``: it decodes the explorer's synced state as the widgets do
    (binary traits as DataViews), then computes the hover maps of ``points`` and the region maps of ``regions``."""
    node = shutil.which("node")
    assert node, "node is needed to run the widget's JavaScript maths (Debian: apt-get install nodejs)"
    b64 = lambda data: base64.b64encode(bytes(data)).decode()  # noqa: E731
    state = {k: v for k, v in explorer.get_state().items() if not k.startswith("_") and v is not None}
    binary = sorted(k for k, v in state.items() if isinstance(v, (bytes, memoryview)))
    case = {
        "payload": {k: b64(v) if k in binary else v for k, v in state.items()},
        "binary": binary,
        "points": points,
        "regions": [dict(r, mask=b64((r["mask"] * 255).astype(np.uint8).tobytes())) for r in regions],
    }
    path = tmp_path / "case.json"
    path.write_text(json.dumps(case))
    module = encoding.STATIC / f"{bundle}.js"
    out = subprocess.run([node, str(PARITY), str(module), str(path)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.mark.parametrize("bundle", ["pair_explorer", "compare_explorer"])
@pytest.mark.parametrize(
    "grids", [((7, 10), (5, 5)), ((24, 24), (23, 25)), ((33, 33), (32, 33))], ids=["float32", "float16", "factors"]
)
def test_browser_maths_equal_python(grids: tuple, bundle: str, tmp_path: Path) -> None:
    """The maths of the built bundles (both widgets that decode a pair) against the Python Explanation."""
    ex = _synthetic(*grids)
    explorer = sv.PairExplorer.from_explanation(ex)
    rng = np.random.default_rng(0)
    (ha, wa), (hb, wb) = ex.grid_a, ex.grid_b
    points = [("a", 0), ("a", ha * wa - 1), ("a", int(rng.integers(ha * wa))), ("b", int(rng.integers(hb * wb)))]
    regions = []
    for side, image in (("a", ex.image_a), ("b", ex.image_b)):
        H, W = image.shape[:2]
        mask = np.zeros((H, W), np.float64)
        yy, xx = np.mgrid[:H, :W]
        mask[(yy - H / 3) ** 2 + (xx - W / 2) ** 2 < (min(H, W) / 4) ** 2] = 1  # a painted disc
        grid = ex.grid_a if side == "a" else ex.grid_b
        regions.append({"side": side, "mask": mask, "H": H, "W": W, "gh": grid[0], "gw": grid[1]})
    out = _run_parity(explorer, bundle, points, regions, tmp_path)
    rtol = {"float32": 1e-5, "float16": 2e-3, "factors": 3e-3}[
        explorer.matrix_dtype if explorer.matrix_kind == "pairwise" else "factors"
    ]
    for (side, i), got in zip(points, out["points"]):
        grid = ex.grid_a if side == "a" else ex.grid_b
        expected = ex.point_map(side, i // grid[1], i % grid[1]).numpy().ravel()
        np.testing.assert_allclose(got, expected, rtol=rtol, atol=rtol * np.abs(expected).max())
        assert int(np.argmax(got)) == int(np.argmax(expected)) or np.isclose(
            np.max(expected), expected[int(np.argmax(got))], rtol=rtol
        )
    for region, got in zip(regions, out["regions"]):
        side = region["side"]
        np.testing.assert_allclose(
            got["weights"], ex.region_weights(side, region["mask"]).numpy().ravel(), rtol=1e-5, atol=1e-6
        )
        expected = ex.region_map(side, region["mask"]).numpy().ravel()
        np.testing.assert_allclose(got["map"], expected, rtol=rtol, atol=rtol * np.abs(expected).max())
