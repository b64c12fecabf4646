"""Property tests over shapes (1 x 1, non-square, A and B of different sizes), poolings, heads, dtypes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import simvis_widgets as sv

from oracles import torch_pool

dims = st.integers(min_value=1, max_value=6)


@st.composite
def cases(draw: st.DrawFn) -> dict:
    c = draw(st.integers(1, 9))
    seed = draw(st.integers(0, 2**31 - 1))
    g = torch.Generator().manual_seed(seed)
    dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    signed = draw(st.booleans())
    quantised = draw(st.booleans())  # integer-valued features create ties for max pooling

    def feats(h: int, w: int) -> torch.Tensor:
        x = torch.rand(c, h, w, generator=g, dtype=dtype) * 4
        if quantised:
            x = x.round()
        return x - 2 if signed else x + 0.01

    pooling = draw(st.sampled_from(sv.POOLINGS))
    if pooling == "gem":  # GeM is defined on non-negative features (it clamps)
        signed = False
    head = None
    if draw(st.booleans()):
        d = draw(st.integers(1, 7))
        weight = torch.randn(d, c, generator=g, dtype=dtype)
        bias = torch.randn(d, generator=g, dtype=dtype) if draw(st.booleans()) else None
        head = (weight, bias)
    return dict(
        xa=feats(draw(dims), draw(dims)),
        xb=feats(draw(dims), draw(dims)),
        pooling=pooling,
        p=draw(st.floats(1.0, 12.0)),
        normalize=draw(st.booleans()),
        head=head,
        dtype=dtype,
    )


ZERO_EMBEDDING = "is all zeros: cosine similarity is undefined (use normalize=False)"


def _embedding(x: torch.Tensor, case: dict) -> torch.Tensor:
    """The pooled (and projected) embedding by torch's own pooling ops, in float64 (tests/oracles.py)."""
    e = torch_pool(x.double(), case["pooling"], case["p"])
    if case["head"] is not None:
        weight, bias = case["head"]
        e = weight.double() @ e + (bias.double() if bias is not None else 0)
    return e


def _decompose(case: dict) -> sv.Explanation | None:
    """``sv.decompose`` of the case, or None where it refuses for the one allowed reason: a cosine of an
    embedding that is all zeros (checked independently). Any other DecompositionError fails the test."""
    try:
        return sv.decompose(case["xa"], case["xb"], case["pooling"], case["p"], case["normalize"], case["head"])
    except sv.DecompositionError as err:
        assert case["normalize"] and ZERO_EMBEDDING in str(err), f"unexpected refusal: {err}"
        side = str(err).split("embedding of image ")[1][0]
        x = case["xa"] if side == "A" else case["xb"]
        magnitude = float(x.abs().max()) * (
            float(case["head"][0].abs().sum(1).max()) if case["head"] is not None else 1.0
        )
        eps = 1e-6 if case["dtype"] == torch.float32 else 1e-13
        assert float(_embedding(x, case).norm()) <= eps * max(magnitude, 1.0), f"{err}, but it is not zero"
        return None


def _tol(ex: sv.Explanation, dtype: torch.dtype) -> float:
    magnitude = float(ex.pairwise.abs().sum()) + abs(ex.global_term) + abs(ex.score)
    return (1e-5 if dtype == torch.float32 else 1e-11) * max(magnitude, 1e-12)


@settings(max_examples=150, deadline=None)
@given(cases())
def test_sums_plus_global_term_equal_the_score(case: dict) -> None:
    ex = _decompose(case)
    if ex is None:
        return
    tol = _tol(ex, case["dtype"])
    assert ex.map_a.shape == case["xa"].shape[1:] and ex.map_b.shape == case["xb"].shape[1:]
    assert ex.pairwise.shape == (ex.map_a.numel(), ex.map_b.numel())
    for total in (ex.map_a.sum(), ex.map_b.sum(), ex.pairwise.sum()):
        assert abs(float(total) + ex.global_term - ex.score) <= tol
    if case["head"] is None or case["head"][1] is None:
        assert ex.global_term == 0.0
    if case["normalize"]:
        assert -1 - 1e-5 <= ex.score <= 1 + 1e-5


@settings(max_examples=80, deadline=None)
@given(cases(), st.data())
def test_point_region_and_many_views_agree(case: dict, data: st.DataObject) -> None:
    ex = _decompose(case)
    if ex is None:
        return
    ha, wa = ex.grid_a
    row, col = data.draw(st.integers(0, ha - 1)), data.draw(st.integers(0, wa - 1))
    torch.testing.assert_close(ex.point_map("a", row, col).reshape(-1), ex.pairwise[row * wa + col])
    mask = np.asarray(data.draw(st.lists(st.booleans(), min_size=ha * wa, max_size=ha * wa))).reshape(ha, wa)
    w = torch.as_tensor(mask, dtype=ex.pairwise.dtype).reshape(-1)
    tol = _tol(ex, case["dtype"])
    assert float((ex.region_map("a", mask).reshape(-1) - w @ ex.pairwise).abs().max()) <= tol
    assert abs(ex.region_score("a", mask) - float(ex.region_map("a", mask).sum())) <= tol
    many = sv.decompose_many(case["xa"], case["xb"][None], case["pooling"], case["p"], case["normalize"], case["head"])
    assert abs(float(many.scores[0]) - ex.score) <= tol
    assert float((many.maps_b[0] - ex.map_b).abs().max()) <= tol


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 40), st.integers(1, 40), st.integers(1, 8), st.integers(1, 8), st.integers(0, 2**31 - 1))
def test_pixel_mask_weights_conserve_area(h: int, w: int, gh: int, gw: int, seed: int) -> None:
    mask = np.random.default_rng(seed).random((h, w)) > 0.5
    weights = sv.cell_weights(mask, (gh, gw), dtype=torch.float64)
    if (h, w) == (gh, gw):  # a cell-resolution mask is used as is
        np.testing.assert_array_equal(weights.numpy(), mask.astype(float))
        return
    assert float(weights.min()) >= 0 and float(weights.max()) <= 1 + 1e-12
    assert abs(float(weights.sum()) * (h / gh) * (w / gw) - mask.sum()) <= 1e-9 * max(1, mask.sum())


def test_only_the_zero_embedding_refusal_is_tolerated(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    zero = torch.zeros(3, 2, 2)
    zero[:, 0, 0], zero[:, 1, 1] = 1.0, -1.0  # averages to the zero vector
    case = dict(xa=zero, xb=torch.rand(3, 2, 3), pooling="avg", p=3.0, normalize=True, head=None, dtype=torch.float32)
    assert _decompose(case) is None
    assert _decompose(dict(case, normalize=False)).score == 0.0  # type: ignore[union-attr]
    nonzero = dict(case, xa=torch.rand(3, 2, 2) + 0.1)
    assert _decompose(nonzero) is not None

    def refuse(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise sv.DecompositionError("feature dimensions differ: A has 3 channels, B has 4")

    monkeypatch.setattr(sv, "decompose", refuse)
    with pytest.raises(AssertionError, match="unexpected refusal"):
        _decompose(nonzero)

    def wrongly_zero(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise sv.DecompositionError(f"the embedding of image A {ZERO_EMBEDDING}")

    monkeypatch.setattr(sv, "decompose", wrongly_zero)
    with pytest.raises(AssertionError, match="but it is not zero"):
        _decompose(nonzero)
