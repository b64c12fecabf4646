"""The browser maths of the built widget bundles (static/<widget>.js, what users run; each exports the shared code
it holds) run in node (no browser, no DOM): the float16 / float32 decoder against numpy, and the brush
(Panel.strokeTo) against the Python cell weights of the same mask. The shared modules' own unit tests are
tests/js/*.test.mjs (tests/test_js_build.py runs them)."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

import simvis_widgets as sv
from simvis_widgets.widgets import encoding

JS = Path(__file__).parent / "js"
BUNDLES = [encoding.STATIC / f"{w}.js" for w in ("pair_explorer", "compare_explorer", "explorer")]
bundles = pytest.mark.parametrize("bundle", BUNDLES, ids=[b.stem for b in BUNDLES])


def _node() -> str:
    node = shutil.which("node")
    assert node, "node is needed to run the widget's JavaScript maths (Debian: apt-get install nodejs)"
    return node


def _decode_in_node(bundle: Path, data: bytes, dtype: str, offset: int = 0) -> np.ndarray:
    out = subprocess.run(
        [_node(), str(JS / "half.mjs"), str(bundle), dtype, str(offset)],
        input=data,
        capture_output=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr.decode()
    return np.frombuffer(out.stdout, "<f4")


def _assert_same_floats(got: np.ndarray, expected: np.ndarray) -> None:
    """Bit for bit (so -0 differs from +0 and a subnormal from 0), any NaN matching any NaN."""
    assert got.shape == expected.shape
    nan = np.isnan(expected)
    np.testing.assert_array_equal(np.isnan(got), nan)
    bad = np.flatnonzero(got[~nan].view("<u4") != expected[~nan].view("<u4"))
    assert bad.size == 0, f"{bad.size} values differ, first: {got[~nan][bad[:5]]} vs {expected[~nan][bad[:5]]}"


# ------------------------------------------------------------------------------------------------------
# decodeFloats
# ------------------------------------------------------------------------------------------------------


@bundles
@pytest.mark.parametrize("offset", [0, 1])
def test_float16_decoder_matches_numpy_on_every_bit_pattern(bundle: Path, offset: int) -> None:
    """All 65536 half-precision patterns: zeros of both signs, subnormals, normals, infinities and NaNs."""
    halves = np.arange(65536, dtype="<u2")
    got = _decode_in_node(bundle, halves.tobytes(), "float16", offset)
    expected = halves.view("<f2").astype("<f4")
    _assert_same_floats(got, expected)
    # The special classes by name, so a failure says which one is wrong.
    assert got[0x0001] == 2.0**-24 and got[0x03FF] == 1023 * 2.0**-24  # smallest and largest subnormal
    assert got[0x0400] == 2.0**-14 and got[0x7BFF] == 65504.0  # smallest and largest normal
    assert got[0x3C00] == 1.0 and got[0xC000] == -2.0
    assert np.signbit(got[0x8000]) and got[0x8000] == 0 and not np.signbit(got[0x0000])
    assert got[0x7C00] == np.inf and got[0xFC00] == -np.inf and np.isnan(got[0x7E00]) and np.isnan(got[0xFC01])


@bundles
@pytest.mark.parametrize("offset", [0, 2, 3])
def test_float32_decoder_matches_numpy_aligned_or_not(bundle: Path, offset: int) -> None:
    rng = np.random.default_rng(offset)
    values = np.concatenate(
        [
            rng.standard_normal(500).astype("<f4") * 10.0 ** rng.integers(-30, 30, 500),
            np.array([0.0, -0.0, 1e-45, -1e-45, 1.1754942e-38, 3.4028235e38, np.inf, -np.inf, np.nan], "<f4"),
        ]
    ).astype("<f4")
    _assert_same_floats(_decode_in_node(bundle, values.tobytes(), "float32", offset), values)


@bundles
def test_decoder_refuses_unknown_dtypes(bundle: Path) -> None:
    out = subprocess.run(
        [_node(), str(JS / "half.mjs"), str(bundle), "float64", "0"],
        input=b"\0" * 8,
        capture_output=True,
        timeout=120,
    )
    assert out.returncode != 0 and "unsupported dtype float64" in out.stderr.decode()


# ------------------------------------------------------------------------------------------------------
# The brush: Panel.strokeTo keeps the cell weights in step with the mask
# ------------------------------------------------------------------------------------------------------


def _run_brush(
    bundle: Path,
    H: int,
    W: int,
    gh: int,
    gw: int,
    strokes: list[dict],
    tmp_path: Path,
    initial: np.ndarray | None = None,
) -> list[dict]:
    case = {"H": H, "W": W, "gh": gh, "gw": gw, "strokes": strokes}
    if initial is not None:
        case["initial"] = base64.b64encode(initial.astype(np.uint8).tobytes()).decode()
    path = tmp_path / "brush.json"
    path.write_text(json.dumps(case))
    out = subprocess.run(
        [_node(), str(JS / "panel_stamp.mjs"), str(bundle), str(path)], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    states = json.loads(out.stdout)
    for s in states:
        s["mask"] = np.frombuffer(base64.b64decode(s["mask"]), np.uint8).reshape(H, W)
        s["weights"] = np.asarray(s["weights"], np.float64).reshape(gh, gw)
    return states


def _disc(H: int, W: int, cx: float, cy: float, r: float) -> np.ndarray:
    """The pixels whose centres lie within ``r`` of ``(cx, cy)`` (what one brush stamp covers)."""
    yy, xx = np.mgrid[:H, :W]
    return (xx + 0.5 - cx) ** 2 + (yy + 0.5 - cy) ** 2 <= r * r


def _python_weights(mask: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    return sv.cell_weights(mask.astype(np.float64) / 255.0, grid, dtype=torch.float64).numpy()


@bundles
def test_brush_paint_then_erase_keeps_cell_weights_exact(bundle: Path, tmp_path: Path) -> None:
    H, W, gh, gw = 37, 53, 5, 7  # cells of 7.4 x 7.57 px: pixels straddle cell borders
    stamps = [  # (cx, cy, r, erase): one stamp per stroke
        (12.0, 10.0, 7.0, False),
        (30.5, 20.0, 9.0, False),
        (44.0, 30.0, 6.0, False),
        (14.0, 11.0, 4.0, True),  # erase the middle of the first disc
        (30.0, 21.0, 12.0, True),  # erase all of the second disc and more
        (26.0, 18.0, 60.0, True),  # erase everything
    ]
    strokes = [{"points": [[cx, cy]], "r": r, "erase": erase} for cx, cy, r, erase in stamps]
    states = _run_brush(bundle, H, W, gh, gw, strokes, tmp_path)
    expected = np.zeros((H, W), bool)
    assert states[0]["weights"].sum() == 0 and states[0]["pixels"] == 0
    for (cx, cy, r, erase), before, after in zip(stamps, states, states[1:]):
        disc = _disc(H, W, cx, cy, r)
        expected = expected & ~disc if erase else expected | disc
        np.testing.assert_array_equal(after["mask"], expected.astype(np.uint8) * 255)
        assert after["pixels"] == pytest.approx(expected.sum(), abs=1e-6)
        np.testing.assert_allclose(after["weights"], _python_weights(after["mask"], (gh, gw)), rtol=0, atol=2e-6)
        change = after["weights"] - before["weights"]
        if erase:  # erasing only ever lowers the weights, and lowers those of the erased cells
            assert change.max() <= 2e-6 and change.sum() < -0.1
        else:
            assert change.min() >= -2e-6 and change.sum() > 0.1
    np.testing.assert_allclose(states[-1]["weights"], 0, atol=2e-6)  # back to nothing: painted, then erased


@bundles
def test_brush_strokes_and_erasing_a_given_mask(bundle: Path, tmp_path: Path) -> None:
    """A dragged stroke (several stamps along a line) and erasing part of a mask set from Python."""
    H, W, gh, gw = 40, 30, 4, 3
    initial = np.zeros((H, W), np.uint8)
    initial[5:35, 3:20] = 255
    strokes = [
        {"points": [[2.0, 2.0], [28.0, 38.0]], "r": 3.0, "erase": False},
        {"points": [[10.0, 10.0], [10.0, 30.0]], "r": 5.0, "erase": True},
    ]
    states = _run_brush(bundle, H, W, gh, gw, strokes, tmp_path, initial=initial)
    np.testing.assert_array_equal(states[0]["mask"], initial)
    for state in states:
        np.testing.assert_allclose(state["weights"], _python_weights(state["mask"], (gh, gw)), rtol=0, atol=2e-6)
        assert state["pixels"] == pytest.approx(int(state["mask"].sum()) // 255, abs=1e-6)
    painted, erased = states[1]["mask"], states[2]["mask"]
    for cx, cy in strokes[0]["points"]:
        assert painted[_disc(H, W, cx, cy, 3.0)].min() == 255
    for cx, cy in strokes[1]["points"]:
        assert erased[_disc(H, W, cx, cy, 5.0)].max() == 0
    assert (erased <= painted).all() and erased.sum() < painted.sum()
    assert (states[2]["weights"] <= states[1]["weights"] + 2e-6).all()
