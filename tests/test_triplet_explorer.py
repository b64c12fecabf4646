"""TripletExplorer without a browser: what it sends decodes (in Python and, through the built bundle, in node) to
exactly the two pairwise matrices and the difference map D; its readouts are the ExplainedTriplet's numbers; masks
are validated as in the other widgets; the static exports exist."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import traitlets

import simvis_widgets as sv
from simvis_widgets.triplet import ExplainedTriplet
from simvis_widgets.widgets import encoding

NODE_CASE = """
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";
const [bundle, casePath] = process.argv.slice(2);
const m = await import(pathToFileURL(bundle).href);
const c = JSON.parse(readFileSync(casePath, "utf8"));
const decode = (p) => {
  const out = { ...p };
  for (const k of ["pairwise", "shares_a", "shares_b", "map_a", "map_b"])
    out[k] = new DataView(new Uint8Array(Buffer.from(p[k], "base64")).buffer);
  return m.decodePayload(out);
};
const pos = decode(c.positive), neg = decode(c.negative);
const mask = new Uint8Array(Buffer.from(c.mask, "base64"));
const w = m.cellWeights(mask, c.H, c.W, c.gh, c.gw);
process.stdout.write(JSON.stringify({
  D: Array.from(m.differenceMap(pos.mapA, neg.mapA)),
  rowsP: Array.from({ length: pos.contrib.nA }, (_, i) => Array.from(pos.contrib.point("a", i))),
  rowsN: Array.from({ length: neg.contrib.nA }, (_, i) => Array.from(neg.contrib.point("a", i))),
  regionP: Array.from(pos.contrib.weighted("a", w)),
  regionN: Array.from(neg.contrib.weighted("a", w)),
  weights: Array.from(w),
}));
"""


@pytest.fixture(scope="module")
def triplet(resnet18_random: sv.ModelSession, photos: dict) -> ExplainedTriplet:
    return resnet18_random.explain_triplet(photos["motorcycle_left"], photos["motorcycle_right"], photos["chelsea"])


@pytest.fixture(scope="module")
def widget(resnet18_random: sv.ModelSession, photos: dict) -> sv.TripletExplorer:
    return sv.TripletExplorer(resnet18_random, photos["motorcycle_left"], photos["motorcycle_right"], photos["chelsea"])


def _pairwise(payload: dict[str, Any], shape: tuple[int, int]) -> np.ndarray:
    """P as the browser decodes it (contributions.js decodePayload), here in numpy."""
    dtype = "<f2" if payload["matrix_dtype"] == "float16" else "<f4"
    if payload["matrix_kind"] == "pairwise":
        return payload["matrix_scale"] * np.frombuffer(bytes(payload["pairwise"]), dtype).astype(np.float64).reshape(
            shape
        )
    qa = np.frombuffer(bytes(payload["shares_a"]), dtype).astype(np.float64).reshape(shape[0], -1)
    qb = np.frombuffer(bytes(payload["shares_b"]), dtype).astype(np.float64).reshape(shape[1], -1)
    return payload["scale"] * qa @ qb.T


def _payloads(w: sv.TripletExplorer) -> tuple[dict[str, Any], dict[str, Any]]:
    keys = [*encoding.matrix_payload(w.explanation), "grid_a", "grid_b"]  # type: ignore[arg-type]
    return {k: getattr(w, k) for k in keys}, dict(w.negative)


def test_payload_is_the_two_pairwise_matrices_and_D(widget: sv.TripletExplorer, triplet: ExplainedTriplet) -> None:
    pos, neg = _payloads(widget)
    for payload, pair in ((pos, triplet.positive), (neg, triplet.negative)):
        np.testing.assert_allclose(
            _pairwise(payload, tuple(pair.pairwise.shape)), pair.pairwise.double().numpy(), rtol=1e-5, atol=1e-9
        )
        assert payload["grid_a"] == list(triplet.positive.grid_a)
    map_ap = np.frombuffer(bytes(pos["map_a"]), "<f4")
    map_an = np.frombuffer(bytes(neg["map_a"]), "<f4")
    np.testing.assert_array_equal(map_ap - map_an, triplet.difference_map.numpy().ravel())  # bit for bit
    assert neg["score"] == pytest.approx(triplet.negative.score) and widget.score == pytest.approx(
        triplet.positive.score
    )
    assert list(widget.grid_b) == list(triplet.positive.grid_b) and neg["grid_b"] == list(triplet.negative.grid_b)
    assert widget.size_n == list(triplet.negative.image_b.shape[:2])  # type: ignore[union-attr]


def test_the_built_bundle_decodes_rows_regions_and_D(
    widget: sv.TripletExplorer, triplet: ExplainedTriplet, tmp_path: Path
) -> None:
    """The browser's own code (static/triplet_explorer.js, run in node) against the brute-force rows of P."""
    node = shutil.which("node")
    assert node, "node is needed to run the widget bundle"
    pos, neg = _payloads(widget)

    def jsonable(p: dict[str, Any]) -> dict[str, Any]:
        return {
            k: base64.b64encode(bytes(v)).decode() if isinstance(v, (bytes, memoryview)) else v for k, v in p.items()
        }

    H, W = widget.size_a
    gh, gw = triplet.positive.grid_a
    mask = np.zeros((H, W), np.uint8)
    mask[H // 4 : H // 2, W // 3 : 2 * W // 3] = 255
    case = {
        "positive": jsonable(pos),
        "negative": jsonable(neg),
        "mask": base64.b64encode(mask.tobytes()).decode(),
        "H": H,
        "W": W,
        "gh": gh,
        "gw": gw,
    }
    (tmp_path / "case.json").write_text(json.dumps(case))
    (tmp_path / "run.mjs").write_text(NODE_CASE)
    bundle = encoding.STATIC / "triplet_explorer.js"
    out = subprocess.run(
        [node, str(tmp_path / "run.mjs"), str(bundle), str(tmp_path / "case.json")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    np.testing.assert_array_equal(np.asarray(got["D"], np.float32), triplet.difference_map.numpy().ravel())
    np.testing.assert_allclose(got["rowsP"], triplet.positive.pairwise.numpy(), rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(got["rowsN"], triplet.negative.pairwise.numpy(), rtol=1e-4, atol=1e-7)
    for r, c in [(0, 0), (gh - 1, gw - 1), (gh // 2, gw // 3)]:
        on_p, on_n = triplet.point_maps(r, c)
        np.testing.assert_allclose(got["rowsP"][r * gw + c], on_p.numpy().ravel(), rtol=1e-4, atol=1e-7)
        np.testing.assert_allclose(got["rowsN"][r * gw + c], on_n.numpy().ravel(), rtol=1e-4, atol=1e-7)
    weights = torch.tensor(got["weights"], dtype=torch.float32).reshape(gh, gw)
    reg_p, reg_n = triplet.region_maps(weights)
    np.testing.assert_allclose(got["regionP"], reg_p.numpy().ravel(), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(got["regionN"], reg_n.numpy().ravel(), rtol=1e-4, atol=1e-6)
    # the region the browser weighs is the one Python weighs from the same pixel mask
    assert triplet.region_margin(mask / 255.0) == pytest.approx(
        float((weights * triplet.difference_map).sum()), abs=1e-5
    )


def test_readouts_are_the_triplets_numbers(widget: sv.TripletExplorer, triplet: ExplainedTriplet) -> None:
    t = widget.triplet
    assert t is not None
    assert t.margin == pytest.approx(triplet.margin, abs=1e-6)
    assert widget.score - widget.negative["score"] == pytest.approx(triplet.margin, abs=1e-6)
    assert widget.exact and widget.model_name == triplet.positive.model_name
    assert float(t.difference_map.sum()) + t.global_difference == pytest.approx(t.margin, abs=1e-5)
    assert widget.region_margin() == 0.0  # nothing painted
    mask = np.zeros(t.positive.grid_a, np.float32)
    mask[1:3, 0:2] = 1
    widget.mask_a = mask  # a cell-grid mask: resized to the displayed image
    assert widget.mask_a.shape == tuple(widget.size_a)
    assert widget.region_margin() == pytest.approx(float(t.difference_map[1:3, 0:2].sum()), abs=1e-5)
    widget.reset()
    assert widget.mask_a is None and widget.mode == "overview"


def test_validation(
    widget: sv.TripletExplorer, resnet18_random: sv.ModelSession, photos: dict, triplet: ExplainedTriplet
) -> None:
    with pytest.raises(traitlets.TraitError, match="values must lie in"):
        widget.mask_a = np.full(widget.size_a, 2.0)
    with pytest.raises(traitlets.TraitError, match="has shape"):
        widget.mask_a = np.ones((3, 5))
    gh, gw = widget.grid_a
    with pytest.raises(traitlets.TraitError, match="inside the"):
        widget.hover_a = [gh, 0]
    widget.hover_a = [gh - 1, gw - 1]
    with pytest.raises(traitlets.TraitError, match="opacity"):
        widget.opacity = 1.5
    with pytest.raises(sv.WidgetError, match="unknown colormap"):
        widget.cmap = "no-such-map"
    with pytest.raises(sv.PairExplorerError, match="all three images"):
        sv.TripletExplorer(resnet18_random, photos["chelsea"], photos["coffee"])
    with pytest.raises(sv.PairExplorerError, match="needs a session"):
        sv.TripletExplorer()
    with pytest.raises(sv.PairExplorerError, match="expected an ExplainedTriplet"):
        sv.TripletExplorer.from_triplet(triplet.positive)  # type: ignore[arg-type]
    bare = ExplainedTriplet(sv.ExplainedPair.of(triplet.positive), sv.ExplainedPair.of(triplet.negative))
    object.__setattr__(bare.negative, "image_b", None)
    with pytest.raises(sv.PairExplorerError, match="no image N"):
        sv.TripletExplorer.from_triplet(bare)


def test_from_triplet_and_exports(triplet: ExplainedTriplet, tmp_path: Path) -> None:
    w = sv.TripletExplorer.from_triplet(triplet, cmap="coolwarm")
    assert w.triplet is triplet and w.session is None
    with pytest.raises(sv.PairExplorerError, match="no session"):
        w.set_triplet(np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8, 3), np.uint8))
    html = w.to_html(tmp_path / "triplet.html").read_text()
    assert "simvis-triplet" in html and '"image_n"' in html and '"negative"' in html
    png = w.save_png(tmp_path / "triplet.png")
    from PIL import Image

    assert Image.open(png).size[0] > 400
    assert str(w._esm) == (encoding.STATIC / "triplet_explorer.js").read_text(encoding="utf-8")
