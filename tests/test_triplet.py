"""Triplets: the difference map on the anchor is exact (its cells plus the global terms' difference are the
margin s(A, P) - s(A, N)), point and region readouts equal the brute-force rows of the two pairwise matrices, and
mismatched pairs are refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import simvis_widgets as sv
from simvis_widgets.decompose import decompose
from simvis_widgets.pair import ExplainedPair
from simvis_widgets.triplet import ExplainedTriplet


def _triplet(seed: int, pooling: str = "avg", head: bool = False) -> ExplainedTriplet:
    g = torch.Generator().manual_seed(seed)
    a, p, n = (torch.randn(6, 3, 4, generator=g).abs() for _ in range(3))
    lin = (torch.randn(5, 6, generator=g), torch.randn(5, generator=g)) if head else None
    return ExplainedTriplet(
        ExplainedPair.of(decompose(a, p, pooling, head=lin)), ExplainedPair.of(decompose(a, n, pooling, head=lin))
    )


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**31 - 1), st.sampled_from(["avg", "max", "gem", "sum"]), st.booleans())
def test_difference_map_sums_to_the_margin(seed: int, pooling: str, head: bool) -> None:
    t = _triplet(seed, pooling, head)
    assert float(t.difference_map.sum()) + t.global_difference == pytest.approx(t.margin, abs=1e-5)
    # brute force: row sums of the two pairwise matrices
    brute = t.positive.pairwise.sum(1) - t.negative.pairwise.sum(1)
    torch.testing.assert_close(t.difference_map.flatten(), brute, rtol=1e-5, atol=1e-6)
    whole = np.ones(t.positive.grid_a, bool)
    assert t.region_margin(whole) == pytest.approx(t.margin - t.global_difference, abs=1e-5)
    on_p, on_n = t.point_maps(1, 2)
    torch.testing.assert_close(on_p.flatten(), t.positive.pairwise[1 * 4 + 2])
    torch.testing.assert_close(on_n.flatten(), t.negative.pairwise[1 * 4 + 2])
    mask = np.zeros(t.positive.grid_a, bool)
    mask[0, :2] = True
    r_p, r_n = t.region_maps(mask)
    torch.testing.assert_close(r_p.flatten(), t.positive.pairwise[[0, 1]].sum(0))
    torch.testing.assert_close(r_n.flatten(), t.negative.pairwise[[0, 1]].sum(0))
    assert t.region_margin(mask) == pytest.approx(float(t.difference_map[0, :2].sum()), abs=1e-6)


def test_mismatched_pairs_are_refused() -> None:
    g = torch.Generator().manual_seed(0)
    a, b, c = (torch.randn(6, 3, 4, generator=g).abs() for _ in range(3))
    other = torch.randn(6, 2, 2, generator=g).abs()
    ab = ExplainedPair.of(decompose(a, b))
    with pytest.raises(sv.DecompositionError, match=r"different anchors: grids \(3, 4\) and \(2, 2\)"):
        ExplainedTriplet(ab, ExplainedPair.of(decompose(other, c)))
    with pytest.raises(sv.DecompositionError, match="anchor embeddings differ"):
        ExplainedTriplet(ab, ExplainedPair.of(decompose(c, a)))
    with pytest.raises(sv.DecompositionError, match="different sessions"):
        ExplainedTriplet(ab, ExplainedPair.of(decompose(a, c, "max")))
    with pytest.raises(sv.DecompositionError, match="negative must be an ExplainedPair"):
        ExplainedTriplet(ab, decompose(a, c))  # type: ignore[arg-type]


def test_session_triplet_on_photos(photos: dict) -> None:
    session = sv.ModelSession.from_pretrained("efficientnet_lite0", size=128)
    t = session.explain_triplet(photos["motorcycle_left"], photos["motorcycle_right"], photos["coffee"])
    assert t.positive.score == pytest.approx(
        session.explain(photos["motorcycle_left"], photos["motorcycle_right"]).score
    )
    assert t.negative.score == pytest.approx(session.explain(photos["motorcycle_left"], photos["coffee"]).score)
    assert t.margin > 0  # two views of one scene beat a coffee cup
    assert float(t.difference_map.sum()) == pytest.approx(t.margin, abs=1e-5)
    assert "margin=" in repr(t) and "exact" in repr(t)


def test_triplet_figure_draws_the_difference_and_both_maps_on_one_scale() -> None:
    from simvis_widgets.render import upsample

    t = _triplet(3)
    fig = t.figure(title="T")
    anchor, positive, negative = fig.axes[:3]
    limit = max(float(m.abs().max()) for m in (t.difference_map, t.positive.map_b, t.negative.map_b))
    for ax, values in ((anchor, t.difference_map), (positive, t.positive.map_b), (negative, t.negative.map_b)):
        heat = ax.images[1]
        assert heat.norm.vmin == pytest.approx(-limit) and heat.norm.vmax == pytest.approx(limit)
        np.testing.assert_allclose(heat.get_array(), upsample(values, heat.get_array().shape), atol=1e-6)
    assert fig._suptitle.get_text() == f"T\nmargin s(A,P) - s(A,N) = {t.margin:+.4f}"
    assert f"s(A,N) = {t.negative.score:.4f}" in negative.get_xlabel()
