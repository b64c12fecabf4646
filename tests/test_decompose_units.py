"""decompose.py piece by piece: option and shape checks with their exact words, heads (coercion, equality,
composition, devices), cell weights at image sizes, the batched and region-query paths, linearised
explanations and the text views. Pure torch, milliseconds each: run for every mutant of decompose.py."""

from __future__ import annotations

import importlib
import math

import numpy as np
import pytest
import torch
from torch import nn

import simvis_widgets as sv
from simvis_widgets.decompose import (
    LinearHead,
    as_locations,
    cell_weights,
    check_finite,
    check_pooling,
    decompose_many,
    from_contributions,
    pool,
    pooled_embeddings,
    pooling_shares,
    region_query,
)

from oracles import torch_pool

E = sv.DecompositionError
dec = importlib.import_module("simvis_widgets.decompose")  # the module (sv.decompose is the function)


def _feats(c: int = 5, h: int = 3, w: int = 4, seed: int = 0, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.rand(c, h, w, generator=torch.Generator().manual_seed(seed), dtype=dtype) + 0.05


def _message(call, *args, **kwargs) -> str:  # type: ignore[no-untyped-def]
    with pytest.raises(E) as err:
        call(*args, **kwargs)
    return str(err.value)


# ------------------------------------------------------------------------------------------------------
# Options
# ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["avg", "AVG", "Sum", "max", "GeM"])
def test_pooling_names_are_case_insensitive(name: str) -> None:
    assert check_pooling(name) == name.lower()
    x = _feats()
    ex = sv.decompose(x, x, name)
    assert ex.pooling == name.lower() and ex.p == (3.0 if name.lower() == "gem" else None)


@pytest.mark.parametrize("bad", ["mean", "", None, 3, "gem "])
def test_unknown_poolings(bad: object) -> None:
    assert _message(check_pooling, bad) == f"unknown pooling {bad!r}; choose one of avg, sum, max, gem"


@pytest.mark.parametrize("p", [1, 1.0, 2.5, 1e4, np.float32(3.0), np.int64(2)])
def test_gem_p_accepted(p: object) -> None:
    assert check_pooling("gem", p) == "gem"  # type: ignore[arg-type]


@pytest.mark.parametrize("p", [0.999, 0, -2, 10000.5, 1e5, float("inf"), float("nan"), True, "3", None])
def test_gem_p_refused(p: object) -> None:
    assert _message(check_pooling, "gem", p) == (
        f"GeM needs a real p with 1 <= p <= 10000 (p = 1 is average pooling); got p={p!r}. "
        "For p -> infinity use pooling='max'."
    )


def test_p_is_only_checked_for_gem_and_defaults_to_3() -> None:
    assert check_pooling("avg", -5) == "avg" and check_pooling("max", float("nan")) == "max"
    x = _feats()
    torch.testing.assert_close(pool(x.flatten(1).T, "gem"), torch_pool(x, "gem", 3.0))
    torch.testing.assert_close(pooling_shares(x.flatten(1).T, "gem").sum(0), torch_pool(x, "gem", 3.0))
    assert sv.decompose(x, x, "gem").p == 3.0


# ------------------------------------------------------------------------------------------------------
# Features
# ------------------------------------------------------------------------------------------------------


def test_as_locations() -> None:
    x = _feats(5, 3, 4)
    locs, grid = as_locations(x)
    assert grid == (3, 4) and locs.shape == (12, 5)
    torch.testing.assert_close(locs[1 * 4 + 2], x[:, 1, 2])  # row-major cells, channels last
    tokens, grid = as_locations(locs, (3, 4))
    assert grid == (3, 4) and tokens is locs
    assert as_locations(locs, [np.int64(6), 2.0])[1] == (6, 2)  # type: ignore[list-item]
    same, grid = as_locations(x, (3, 4))
    assert grid == (3, 4)


def test_as_locations_refusals() -> None:
    x = _feats(5, 3, 4)
    assert _message(as_locations, x.numpy()) == "feats must be a torch.Tensor, got ndarray"
    assert _message(as_locations, x, (4, 3), "feats_b") == "feats_b has a 3x4 map but grid=(4, 3) was given"
    assert _message(as_locations, x.flatten(1).T, None, "t") == "t are tokens of shape (12, 5); pass their grid=(h, w)"
    assert _message(as_locations, x.flatten(1).T, (5, 2)) == "feats has 12 tokens but grid 5x2 holds 10"
    assert _message(as_locations, x[None]) == (
        "feats must be a (C, H, W) feature map or (N, C) tokens; got shape (1, 5, 3, 4)"
    )
    assert _message(as_locations, torch.zeros(5)) == (
        "feats must be a (C, H, W) feature map or (N, C) tokens; got shape (5,)"
    )
    assert _message(as_locations, torch.zeros(0, 3, 4)) == "feats is empty: shape (0, 3, 4)"
    assert _message(as_locations, torch.zeros(5, 0, 4)) == "feats is empty: shape (5, 0, 4)"
    assert _message(as_locations, torch.zeros(0, 5), (0, 1)) == "feats is empty: shape (0, 5)"
    assert _message(as_locations, torch.zeros(1, 0), (1, 1)) == "feats is empty: shape (1, 0)"
    assert as_locations(torch.zeros(1, 1, 1))[1] == (1, 1)  # one cell of one channel is fine


def test_check_finite_counts_nan_and_inf() -> None:
    check_finite(torch.zeros(3), "x")
    bad = torch.tensor([float("nan"), float("inf"), -float("inf"), 1.0, float("nan"), float("nan")])
    assert _message(check_finite, bad, "my tensor") == "my tensor contains 3 NaN and 2 infinite values"
    assert _message(check_finite, torch.tensor([float("inf")]), "y") == "y contains 0 NaN and 1 infinite values"


def test_pair_refusals() -> None:
    a, b = _feats(5), _feats(6)
    assert _message(sv.decompose, a, b) == "feature dimensions differ: A has 5 channels, B has 6"
    assert _message(sv.decompose, a, _feats(5), head=torch.ones(2, 4)) == (
        "head weight has shape (2, 4) but the features have 5 channels"
    )
    nan = _feats(5).clone()
    nan[0, 0, 0] = float("nan")
    assert _message(sv.decompose, a, nan) == "feats_b contains 1 NaN and 0 infinite values"
    assert _message(sv.decompose, nan, a) == "feats_a contains 1 NaN and 0 infinite values"
    assert _message(sv.decompose, a, a[None]) == "feats_b holds a batch: use decompose_many for one query against many"
    tokens = a.flatten(1).T
    assert _message(sv.decompose, tokens, tokens[None], grid_a=(3, 4), grid_b=(3, 4)) == (
        "feats_b holds a batch: use decompose_many for one query against many"
    )
    ex = sv.decompose(tokens, a, grid_a=(3, 4))  # tokens against a map is one pair
    torch.testing.assert_close(ex.map_a, sv.decompose(a, a).map_a)


def test_check_values_false_skips_the_scan_only() -> None:
    a = _feats(5)
    inf = a.clone()
    inf[0, 0, 0] = float("inf")
    with pytest.raises(E, match="not finite even in float64"):  # still never a non-finite result
        sv.decompose(a, inf, check_values=False)
    ex = sv.decompose(a, a * 2, check_values=False)
    assert ex.score == pytest.approx(1.0)


def test_compute_dtype() -> None:
    f32, f64, f16 = torch.zeros(1), torch.zeros(1, dtype=torch.float64), torch.zeros(1, dtype=torch.float16)
    assert dec._compute_dtype(f32, f32) == torch.float32 and dec._compute_dtype(f16) == torch.float32
    assert dec._compute_dtype(f32, f64) == torch.float64 and dec._compute_dtype(f64, f16) == torch.float64
    half = _feats(dtype=torch.float16)
    ex = sv.decompose(half, half)
    assert ex.map_a.dtype == torch.float32 and ex.shares_a.dtype == torch.float32
    assert sv.decompose(_feats(dtype=torch.float32), _feats(dtype=torch.float64)).map_a.dtype == torch.float64


# ------------------------------------------------------------------------------------------------------
# Pooling
# ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("pooling", ["avg", "sum", "max", "gem"])
def test_pool_and_shares_against_torch(pooling: str) -> None:
    x = _feats(4, 3, 5, seed=2)
    locs = x.flatten(1).T
    torch.testing.assert_close(pool(locs, pooling, 2.5), torch_pool(x, pooling, 2.5))
    shares = pooling_shares(locs, pooling, 2.5)
    torch.testing.assert_close(shares.sum(0), torch_pool(x, pooling, 2.5))
    batch = torch.stack([locs, locs * 2])
    torch.testing.assert_close(pool(batch, pooling, 2.5)[1], torch_pool(x * 2, pooling, 2.5))
    torch.testing.assert_close(pooling_shares(batch, pooling, 2.5)[1], pooling_shares(locs * 2, pooling, 2.5))


def test_gem_clamps_small_and_negative_features_at_its_floor() -> None:
    x = torch.tensor([[[-1.0, 0.0], [4.0, 1e-9]]], dtype=torch.float64)  # C=1
    locs = x.flatten(1).T
    expected = ((2 * 1e-6**3 + 4.0**3 + 1e-6**3) / 4) ** (1 / 3)
    assert float(pool(locs, "gem", 3.0)) == pytest.approx(expected, rel=1e-12)
    shares = pooling_shares(locs, "gem", 3.0)[:, 0]
    assert float(shares[2]) == pytest.approx(expected * 64 / (64 + 3e-18), rel=1e-12)
    assert float(shares[0]) == pytest.approx(float(shares[1]), rel=1e-9) and float(shares[0]) > 0


# ------------------------------------------------------------------------------------------------------
# Heads
# ------------------------------------------------------------------------------------------------------


def test_head_refusals_name_the_shapes() -> None:
    assert _message(LinearHead, torch.ones(3)) == "head weight must be a (D, C) tensor, got torch.Size([3])"
    assert _message(LinearHead, [[1.0]]) == "head weight must be a (D, C) tensor, got [[1.0]]"
    assert _message(LinearHead, torch.ones(2, 3), torch.ones(3)) == "head bias must have shape (2,), got (3,)"
    assert _message(LinearHead, torch.ones(2, 3), [1.0, 2.0]) == "head bias must have shape (2,), got ()"
    nan = torch.ones(2, 3)
    nan[0, 0] = float("nan")
    assert _message(LinearHead, nan) == "head weight contains 1 NaN and 0 infinite values"
    assert _message(LinearHead, torch.ones(2, 3), torch.tensor([1.0, float("inf")])) == (
        "head bias contains 0 NaN and 1 infinite values"
    )


def test_heads_compare_by_value() -> None:
    w = torch.randn(3, 4, generator=torch.Generator().manual_seed(0))
    b = torch.randn(3, generator=torch.Generator().manual_seed(1))
    h1, h2 = LinearHead(w, b), LinearHead(w.clone(), b.clone())
    assert h1 == h2 and hash(h1) == hash(h2) and len({h1, h2}) == 1
    assert h1 != LinearHead(w, None) and h1 != LinearHead(w, b * 2) and h1 != LinearHead(w * 2, b)
    assert h1 != LinearHead(w, b, 1e-5) and LinearHead(w, b, 1e-5) != LinearHead(w, b, 1e-6)
    assert h1 != "head" and h1 != (w, b)
    assert hash(h1) != hash(LinearHead(w, None)) and hash(h1) == hash(h1.digest)


def test_head_to_a_device_keeps_everything() -> None:
    w, b = torch.ones(2, 3), torch.arange(2.0)
    for head in (LinearHead(w, b, 1e-5), LinearHead(w)):
        moved = head.to("cpu")
        assert moved == head and moved.layer_norm_eps == head.layer_norm_eps
        assert (moved.bias is None) == (head.bias is None)
        moved64 = head.to(torch.float64)  # Tensor.to accepts a dtype too
        assert moved64.weight.dtype == torch.float64
        if head.bias is not None:
            assert moved64.bias is not None and moved64.bias.dtype == torch.float64


def test_coerce_linear_layers_and_pairs() -> None:
    torch.manual_seed(0)
    lin = nn.Linear(4, 3)
    head = LinearHead.coerce(lin)
    torch.testing.assert_close(head.weight, lin.weight.detach())
    torch.testing.assert_close(head.bias, lin.bias.detach())
    assert not head.weight.requires_grad and not head.bias.requires_grad
    no_bias = LinearHead.coerce(nn.Linear(4, 3, bias=False))
    assert no_bias.bias is None
    assert LinearHead.coerce(None) is None and LinearHead.coerce(head) is head
    assert LinearHead.coerce(lin.weight.detach()).bias is None
    pair = LinearHead.coerce((lin.weight.detach(), lin.bias.detach()))
    listed = LinearHead.coerce([lin.weight.detach(), None])
    assert pair == head and listed.bias is None and listed.weight.shape == (3, 4)
    for bad, kind in ((3, "int"), ((torch.ones(2, 2),), "tuple"), (nn.ReLU(), "ReLU"), ("linear", "str")):
        assert _message(LinearHead.coerce, bad) == (
            "head must be None, an nn.Linear, an eval-mode nn.BatchNorm1d, an nn.LayerNorm, an nn.Sequential of "
            f"those, a (weight, bias) pair or a weight tensor; got {kind}"
        )


@pytest.mark.parametrize("affine", [True, False])
def test_coerce_batchnorm_is_the_layer_in_eval_mode(affine: bool) -> None:
    torch.manual_seed(1)
    bn = nn.BatchNorm1d(4, affine=affine, eps=0.01)
    bn.running_mean.copy_(torch.randn(4))
    bn.running_var.copy_(torch.rand(4) + 0.5)
    if affine:
        bn.weight.data.copy_(torch.randn(4))
        bn.bias.data.copy_(torch.randn(4))
    assert _message(LinearHead.coerce, bn) == (
        "a BatchNorm1d head must be in eval mode (call .eval()): batch statistics are not per-image"
    )
    bn.eval()
    head = LinearHead.coerce(bn)
    f = torch.randn(7, 4)
    with torch.no_grad():
        torch.testing.assert_close(f @ head.weight.T + head.bias, bn(f))
    stateless = nn.BatchNorm1d(4, track_running_stats=False).eval()
    assert _message(LinearHead.coerce, stateless) == (
        "a BatchNorm1d head needs running statistics (track_running_stats=True)"
    )


@pytest.mark.parametrize("affine", [True, False])
def test_coerce_layer_norm(affine: bool) -> None:
    torch.manual_seed(2)
    ln = nn.LayerNorm(5, eps=0.1, elementwise_affine=affine)
    if affine:
        ln.weight.data.copy_(torch.randn(5))
        ln.bias.data.copy_(torch.randn(5))
    head = LinearHead.coerce(ln)
    assert head.layer_norm_eps == pytest.approx(0.1) and (head.bias is None) == (not affine)
    x, y = _feats(5, 2, 3, seed=4), _feats(5, 3, 3, seed=5)
    ex = sv.decompose(x, y, "avg", normalize=False, head=ln)
    with torch.no_grad():
        e_x, e_y = ln(torch_pool(x, "avg").float()).double(), ln(torch_pool(y, "avg").float()).double()
    assert ex.score == pytest.approx(float(e_x @ e_y), rel=1e-5)
    assert float(ex.map_a.sum()) + ex.global_term == pytest.approx(ex.score, rel=1e-9)
    assert (
        _message(LinearHead.coerce, nn.LayerNorm((2, 3))) == "a LayerNorm head must normalise one dimension, got (2, 3)"
    )


def test_coerce_sequential() -> None:
    torch.manual_seed(3)
    first, second = nn.Linear(5, 4), nn.Linear(4, 3, bias=False)
    seq = nn.Sequential(nn.Identity(), first, nn.Dropout(0.5), nn.Sequential(second)).eval()
    head = LinearHead.coerce(seq)
    f = torch.randn(6, 5)
    with torch.no_grad():
        torch.testing.assert_close(f @ head.weight.T + head.bias, seq(f))
    assert LinearHead.coerce(nn.Sequential(nn.Identity())) is None
    assert LinearHead.coerce(nn.Sequential()) is None
    only = LinearHead.coerce(nn.Sequential(nn.Dropout(), first))
    assert only == LinearHead.coerce(first)
    empty_inner = LinearHead.coerce(nn.Sequential(first, nn.Sequential(nn.Identity()), nn.Linear(4, 2)))
    assert empty_inner.weight.shape == (2, 5)
    assert _message(LinearHead.coerce, nn.Sequential(first, nn.ReLU())) == (
        "head layer 1 of the nn.Sequential is a ReLU: only affine layers (Linear, eval-mode BatchNorm1d, LayerNorm "
        "first) keep the decomposition exact"
    )
    assert _message(LinearHead.coerce, nn.Sequential(nn.Identity(), first, nn.Linear(3, 2))) == (
        "head layer 2 of the nn.Sequential takes 3 inputs but the layers before it give 4"
    )
    assert _message(LinearHead.coerce, nn.Sequential(first, nn.LayerNorm(4))) == (
        "a LayerNorm after a linear layer is not affine in the pooled vector: not supported"
    )
    ln_first = LinearHead.coerce(nn.Sequential(nn.LayerNorm(5), first))
    assert ln_first.layer_norm_eps == pytest.approx(1e-5) and ln_first.weight.shape == (4, 5)


def test_then_composes_weights_and_biases() -> None:
    g = torch.Generator().manual_seed(4)
    w1, b1, w2, b2 = (torch.randn(*s, generator=g) for s in ((4, 5), (4,), (3, 4), (3,)))
    f = torch.randn(5, generator=g)
    for bias1, bias2 in ((b1, b2), (None, b2), (b1, None), (None, None)):
        h = LinearHead(w1, bias1).then(LinearHead(w2, bias2))
        expected = w2 @ (w1 @ f + (bias1 if bias1 is not None else 0)) + (bias2 if bias2 is not None else 0)
        got = h.weight @ f + (h.bias if h.bias is not None else 0)
        torch.testing.assert_close(got, expected)
        assert (h.bias is None) == (bias1 is None and bias2 is None)
    kept = LinearHead(w1, b1, 0.5).then(LinearHead(w2))
    assert kept.layer_norm_eps == 0.5
    assert _message(LinearHead(w1).then, LinearHead(torch.ones(3, 5))) == (
        "cannot compose heads: the second takes 5 inputs, the first gives 4"
    )
    f64 = LinearHead(w1.double()).then(LinearHead(w2, b2))
    assert f64.weight.dtype == torch.float64 and f64.bias.dtype == torch.float64


# ------------------------------------------------------------------------------------------------------
# Cell weights
# ------------------------------------------------------------------------------------------------------


def test_overlap_fractions() -> None:
    o = dec._overlap(5, 2, torch.float64, torch.device("cpu"))  # cells of 2.5 pixels
    expected = torch.tensor([[1, 1, 0.5, 0, 0], [0, 0, 0.5, 1, 1]], dtype=torch.float64) / 2.5
    torch.testing.assert_close(o, expected)
    assert dec._overlap(4, 4, torch.float32, torch.device("cpu")).dtype == torch.float32
    torch.testing.assert_close(
        dec._overlap(3, 3, torch.float64, torch.device("cpu")), torch.eye(3, dtype=torch.float64)
    )


def test_cell_weights_at_image_resolution() -> None:
    mask = np.zeros((4, 6))
    mask[:2, :3] = 1  # the top-left quarter
    w = cell_weights(mask, (2, 2), dtype=torch.float64)
    torch.testing.assert_close(w, torch.tensor([[1.0, 0.0], [0.0, 0.0]], dtype=torch.float64))
    soft = cell_weights(torch.full((4, 6), 0.25), (2, 3))
    assert soft.dtype == torch.float32 and torch.allclose(soft, torch.full((2, 3), 0.25))
    cells = np.array([[True, False], [False, True]])
    torch.testing.assert_close(cell_weights(cells, (2, 2)), torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    assert cell_weights(np.ones((6, 9)), (2, 3), (6, 9)).sum() == 6
    assert cell_weights(np.ones((3, 4)), (2, 3), [(6, 9), (3, 4)]).sum() == 6
    assert cell_weights([[1.0, 0.0], [0.0, 0.0]], (2, 2), (8, 8)).sum() == 1  # a nested list at cell resolution


def test_cell_weights_refusals() -> None:
    assert _message(cell_weights, np.ones(4), (2, 2)) == "mask must be 2-D (H, W); got shape (4,)"
    assert _message(cell_weights, np.ones((1, 2, 2)), (2, 2), name="m") == "m must be 2-D (H, W); got shape (1, 2, 2)"
    assert _message(cell_weights, np.ones((0, 3)), (2, 2)) == "mask is empty: shape (0, 3)"
    assert (
        _message(cell_weights, np.full((2, 2), 1.5), (2, 2)) == "mask values must lie in [0, 1]; got range [1.5, 1.5]"
    )
    assert (
        _message(cell_weights, np.full((2, 2), -0.5), (2, 2))
        == "mask values must lie in [0, 1]; got range [-0.5, -0.5]"
    )
    assert _message(cell_weights, np.full((2, 2), np.nan), (2, 2)) == "mask contains 4 NaN and 0 infinite values"
    assert _message(cell_weights, np.ones((5, 5)), (2, 2), (6, 6)) == (
        "mask has shape (5, 5); expected the image size (6, 6) or the cell grid (2, 2)"
    )
    assert _message(cell_weights, np.ones((5, 5)), (2, 2), [(6, 6), (3, 3)]) == (
        "mask has shape (5, 5); expected the image size (6, 6) or (3, 3) or the cell grid (2, 2)"
    )
    cell_weights(np.zeros((2, 2)), (2, 2))
    cell_weights(np.ones((2, 2)), (2, 2))


def test_region_weights_name_the_side() -> None:
    ex = sv.decompose(_feats(4, 2, 2), _feats(4, 3, 3))
    assert _message(ex.region_weights, "b", np.ones(5)) == "mask for image B must be 2-D (H, W); got shape (5,)"
    assert _message(ex.region_weights, "A", np.full((2, 2), 2.0)).startswith("mask for image A values must lie")
    w = ex.region_weights("B", np.ones((3, 3)))
    assert w.dtype == ex.shares_b.dtype and w.shape == (3, 3)


# ------------------------------------------------------------------------------------------------------
# Explanation views
# ------------------------------------------------------------------------------------------------------


def test_point_map_rows_columns_and_refusals() -> None:
    ex = sv.decompose(_feats(4, 2, 3), _feats(4, 3, 2, seed=1))
    P = ex.pairwise
    torch.testing.assert_close(ex.point_map("a", 1, 2), P[5].reshape(3, 2))
    torch.testing.assert_close(ex.point_map("B", 2, 0), P[:, 4].reshape(2, 3))
    torch.testing.assert_close(ex.point_map("a", np.int64(0), np.int32(0)), P[0].reshape(3, 2))
    for row, col, msg in (
        (2, 0, "cell (2, 0) is outside image A's 2x3 grid"),
        (0, 3, "cell (0, 3) is outside image A's 2x3 grid"),
        (-1, 0, "cell (-1, 0) is outside image A's 2x3 grid"),
        (0, -1, "cell (0, -1) is outside image A's 2x3 grid"),
    ):
        with pytest.raises(sv.CellIndexError) as err:
            ex.point_map("a", row, col)
        assert str(err.value) == msg
    with pytest.raises(sv.CellIndexError) as err:
        ex.point_map("b", 3, 0)
    assert str(err.value) == "cell (3, 0) is outside image B's 3x2 grid"
    with pytest.raises(sv.CellIndexError) as err:
        ex.point_map("a", True, 0)
    assert str(err.value) == "cell row must be an integer, got True"
    with pytest.raises(sv.CellIndexError) as err:
        ex.point_map("a", 0, 1.5)
    assert str(err.value) == "cell col must be an integer, got 1.5 (float)"
    assert _message(ex.point_map, "c", 0, 0) == "side must be 'a' or 'b', got 'c'"
    assert _message(ex.region_map, None, np.ones((2, 3))) == "side must be 'a' or 'b', got None"


def test_region_map_and_score() -> None:
    ex = sv.decompose(_feats(4, 2, 3), _feats(4, 3, 2, seed=1), "max", normalize=False)
    w = torch.tensor([[0.5, 0.0, 1.0], [0.0, 0.25, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(ex.region_map("A", w.numpy()), (w.reshape(-1) @ ex.pairwise).reshape(3, 2))
    assert ex.region_score("a", w.numpy()) == pytest.approx(float((w * ex.map_a).sum()))
    wb = torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    torch.testing.assert_close(ex.region_map("b", wb.numpy()), (ex.pairwise @ wb.reshape(-1)).reshape(2, 3))
    assert ex.region_score("B", wb.numpy()) == pytest.approx(float(ex.map_b[0, 0] + ex.map_b[2, 1]))


def test_swapped_exchanges_every_side() -> None:
    g = torch.Generator().manual_seed(5)
    ex = sv.decompose(
        _feats(4, 2, 3), _feats(4, 3, 2, seed=1), head=(torch.randn(3, 4, generator=g), torch.randn(3, generator=g))
    )
    s = ex.swapped()
    assert (s.grid_a, s.grid_b) == (ex.grid_b, ex.grid_a) and s.score == ex.score and s.global_term == ex.global_term
    torch.testing.assert_close(s.map_a, ex.map_b)
    torch.testing.assert_close(s.pairwise, ex.pairwise.T)
    torch.testing.assert_close(s.embedding_a, ex.embedding_b)
    assert s.pooling == ex.pooling and s.normalized == ex.normalized and s.scale == ex.scale
    assert ex.mask_sizes("a") is None


def test_describe_and_repr() -> None:
    ex = sv.decompose(_feats(4, 2, 3), _feats(4, 3, 2, seed=1), "gem", 2.0, normalize=False)
    text = (
        f"score={ex.score:.6g}, dot, pooling='gem', grid_a=(2, 3), grid_b=(3, 2), "
        f"sum_a={float(ex.map_a.sum()):.6g}, sum_b={float(ex.map_b.sum()):.6g}, global_term=0, exact"
    )
    assert ex.describe() == text and repr(ex) == f"Explanation({text})"
    cos = sv.decompose(_feats(4, 2, 3), _feats(4, 3, 2, seed=1))
    assert ", cosine, pooling='avg'," in cos.describe()
    q = torch.rand(6, 4, generator=torch.Generator().manual_seed(0))
    approx = from_contributions(q, q, q.sum(0) + 1, q.sum(0) + 1, (2, 3), (3, 2))
    assert approx.describe().endswith(", APPROXIMATE") and repr(approx).startswith("Explanation(score=")


# ------------------------------------------------------------------------------------------------------
# Linearised explanations
# ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("normalize", [True, False])
def test_from_contributions(normalize: bool) -> None:
    g = torch.Generator().manual_seed(6)
    qa, qb = torch.randn(6, 4, generator=g, dtype=torch.float64), torch.randn(4, 4, generator=g, dtype=torch.float64)
    ea, eb = qa.sum(0) + 0.3, qb.sum(0) - 0.2  # the contributions do not sum to the embeddings
    ex = from_contributions(qa, qb, ea, eb, (2, 3), (np.int64(2), 2), normalize=normalize)
    scale = 1 / float(ea.norm() * eb.norm()) if normalize else 1.0
    assert ex.scale == pytest.approx(scale) and ex.normalized is normalize
    assert ex.score == pytest.approx(float(ea @ eb) * scale)
    torch.testing.assert_close(ex.pairwise, qa @ qb.T * scale)
    torch.testing.assert_close(ex.map_a, (qa @ qb.sum(0) * scale).reshape(2, 3))
    torch.testing.assert_close(ex.map_b, (qb @ qa.sum(0) * scale).reshape(2, 2))
    assert ex.global_term == pytest.approx(ex.score - float(ex.map_a.sum()))
    assert float(ex.map_b.sum()) + ex.global_term == pytest.approx(ex.score)
    assert ex.grid_a == (2, 3) and ex.grid_b == (2, 2) and all(type(v) is int for v in ex.grid_b)
    assert ex.pooling == "linearised" and ex.exact is False and ex.p is None
    assert ex.embedding_a is ea and ex.shares_b is qb
    assert from_contributions(qa, qb, ea, eb, (2, 3), (2, 2), exact=True).exact is True
    assert (
        _message(from_contributions, qa, qb, ea, eb, (3, 3), (2, 2)) == "6 / 4 contributions for grids (3, 3) / (2, 2)"
    )
    assert (
        _message(from_contributions, qa, qb, ea, eb, (2, 3), (1, 2)) == "6 / 4 contributions for grids (2, 3) / (1, 2)"
    )
    with pytest.raises(E, match="is all zeros"):
        from_contributions(qa, qb, ea * 0, eb, (2, 3), (2, 2))


# ------------------------------------------------------------------------------------------------------
# Scale, bias and overflow
# ------------------------------------------------------------------------------------------------------


def test_zero_embedding_names_the_side() -> None:
    x, zero = _feats(3), torch.zeros(3, 3, 4)
    assert _message(sv.decompose, zero, x) == (
        "the embedding of image A is all zeros: cosine similarity is undefined (use normalize=False)"
    )
    assert _message(sv.decompose, x, zero).startswith("the embedding of image B is all zeros")
    assert _message(sv.decompose, zero, zero).startswith("the embedding of image A is all zeros")
    assert sv.decompose(zero, x, normalize=False).score == 0.0
    assert _message(decompose_many, x, torch.stack([x, zero])).startswith("the embedding of image B is all zeros")


def test_global_term_is_every_bias_term() -> None:
    g = torch.Generator().manual_seed(7)
    w, c = torch.randn(3, 4, generator=g, dtype=torch.float64), torch.randn(3, generator=g, dtype=torch.float64)
    xa, xb = _feats(4, 2, 2), _feats(4, 3, 1, seed=3)
    for normalize in (True, False):
        ex = sv.decompose(xa, xb, head=(w, c), normalize=normalize)
        ga, gb = w @ torch_pool(xa, "avg"), w @ torch_pool(xb, "avg")
        ea, eb = ga + c, gb + c
        scale = 1 / float(ea.norm() * eb.norm()) if normalize else 1.0
        assert ex.global_term == pytest.approx(float(c @ gb + ga @ c + c @ c) * scale, rel=1e-10)
        assert ex.score == pytest.approx(float(ea @ eb) * scale, rel=1e-10)
        torch.testing.assert_close(ex.embedding_a, ea)


def test_float32_overflow_is_redone_in_float64() -> None:
    big = _feats(3, 2, 2, dtype=torch.float32) * 1e20  # products ~1e40 overflow float32
    ex = sv.decompose(big, big * 2, normalize=False)
    assert ex.map_a.dtype == torch.float64 and math.isfinite(ex.score)
    expected = float(torch_pool(big.double(), "avg") @ torch_pool(big.double() * 2, "avg"))
    assert ex.score == pytest.approx(expected, rel=1e-6)
    many = decompose_many(big, (big * 2)[None], normalize=False)
    assert many.scores.dtype == torch.float64 and float(many.scores[0]) == pytest.approx(expected, rel=1e-6)
    small = sv.decompose(_feats(3, dtype=torch.float32), _feats(3, dtype=torch.float32))
    assert small.map_a.dtype == torch.float32  # no needless float64


def test_overflow_in_float64_is_named() -> None:
    huge = torch.full((2, 1, 2), 1e200, dtype=torch.float64)
    assert _message(sv.decompose, huge, huge, "gem", 2.0, False) == (
        "the score or the maps are not finite even in float64 (largest feature magnitude 1e+200, pooling gem p=2, "
        "head no): the features or the head overflow; rescale them"
    )
    assert _message(sv.decompose, huge, huge * 0.5, "sum", 3.0, False, torch.eye(2)) == (
        "the score or the maps are not finite even in float64 (largest feature magnitude 1e+200, pooling sum, "
        "head yes): the features or the head overflow; rescale them"
    )
    with pytest.raises(E, match="not finite even in float64"):
        decompose_many(huge, huge[None], normalize=False)


@pytest.mark.parametrize("bad", ["score", "global_term", "scale", "map_a", "map_b"])
def test_all_finite_checks_every_number(bad: str) -> None:
    ex = sv.decompose(_feats(), _feats(seed=1))
    assert dec._all_finite(ex)
    import dataclasses

    value = float("nan")
    if bad in ("map_a", "map_b"):
        tensor = getattr(ex, bad).clone()
        tensor[-1, -1] = float("inf")
        value = tensor
    assert not dec._all_finite(dataclasses.replace(ex, **{bad: value}))


# ------------------------------------------------------------------------------------------------------
# One query against many, pooled embeddings, region queries
# ------------------------------------------------------------------------------------------------------


def test_decompose_many_rows_equal_pairs() -> None:
    g = torch.Generator().manual_seed(8)
    head = (torch.randn(3, 5, generator=g, dtype=torch.float64), torch.randn(3, generator=g, dtype=torch.float64))
    a = _feats(5, 2, 3)
    batch = torch.stack([_feats(5, 3, 2, seed=s) for s in range(3)])
    for normalize in (True, False):
        many = decompose_many(a, batch, "gem", 2.0, normalize, head)
        assert many.grid_a == (2, 3) and many.grid_b == (3, 2)
        assert many.maps_a.shape == (3, 2, 3) and many.maps_b.shape == (3, 3, 2) and many.global_terms.shape == (3,)
        for k in range(3):
            ex = sv.decompose(a, batch[k], "gem", 2.0, normalize, head)
            assert float(many.scores[k]) == pytest.approx(ex.score, rel=1e-10)
            assert float(many.global_terms[k]) == pytest.approx(ex.global_term, rel=1e-10)
            torch.testing.assert_close(many.maps_a[k], ex.map_a)
            torch.testing.assert_close(many.maps_b[k], ex.map_b)
    tokens = batch.flatten(2).transpose(1, 2)  # (K, N, C) with grid_b
    via_tokens = decompose_many(a.flatten(1).T, tokens, grid_a=(2, 3), grid_b=(3, 2))
    torch.testing.assert_close(via_tokens.maps_b, decompose_many(a, batch).maps_b)


def test_decompose_many_refusals() -> None:
    a = _feats(5, 2, 3)
    batch = torch.stack([_feats(5, 3, 2, seed=s) for s in range(2)])
    assert _message(decompose_many, a, batch[0]) == (
        "feats_b must be a batch (K, C, H, W) or (K, N, C) with grid_b; got shape (5, 3, 2)"
    )
    assert _message(decompose_many, a, batch.flatten(2).transpose(1, 2), grid_b=(2, 2)) == (
        "feats_b has 6 tokens but grid 2x2 holds 4"
    )
    assert _message(decompose_many, a, batch[:0]) == "feats_b is an empty batch"
    assert _message(decompose_many, a, torch.stack([_feats(4, 3, 2)])) == (
        "feature dimensions differ: A has 5 channels, B has 4"
    )
    assert _message(decompose_many, a, batch, "nope").startswith("unknown pooling 'nope'")
    assert _message(decompose_many, a, batch, head=torch.ones(2, 3)) == (
        "head weight has shape (2, 3) but the features have 5 channels"
    )
    nan = batch.clone()
    nan[1, 0, 0, 0] = float("nan")
    assert _message(decompose_many, a, nan) == "feats_b contains 1 NaN and 0 infinite values"


def test_pooled_embeddings() -> None:
    g = torch.Generator().manual_seed(9)
    w, c = torch.randn(3, 5, generator=g), torch.randn(3, generator=g)
    x = _feats(5, 2, 3, dtype=torch.float32)
    summed, e = pooled_embeddings(x, "max", head=(w, c))
    torch.testing.assert_close(e, w @ torch_pool(x, "max") + c)
    torch.testing.assert_close(summed, e - c)
    batch_summed, batch_e = pooled_embeddings(torch.stack([x, x * 2]), "GEM", 2.0)
    torch.testing.assert_close(batch_e[1], torch_pool(x * 2, "gem", 2.0))
    torch.testing.assert_close(batch_summed, batch_e)
    assert batch_e.shape == (2, 5) and batch_e.dtype == torch.float32
    assert pooled_embeddings(x.double())[1].dtype == torch.float64
    assert pooled_embeddings(x.half())[1].dtype == torch.float32
    assert _message(pooled_embeddings, x[0]) == "feats must be (C, H, W) or (K, C, H, W); got shape (2, 3)"
    assert _message(pooled_embeddings, x, "median").startswith("unknown pooling 'median'")
    with pytest.raises(E, match="head weight must be"):
        pooled_embeddings(x, head=torch.ones(5))


def test_region_query() -> None:
    g = torch.Generator().manual_seed(10)
    w, c = torch.randn(3, 5, generator=g, dtype=torch.float64), torch.randn(3, generator=g, dtype=torch.float64)
    x, y = _feats(5, 2, 3), _feats(5, 3, 3, seed=1)
    weights = torch.tensor([[1.0, 0.5, 0.0], [0.0, 0.0, 0.25]], dtype=torch.float64)
    q, e = region_query(x, weights, "gem", 2.0, (w, c))
    ex = sv.decompose(x, y, "gem", 2.0, False, (w, c))
    g_y = ex.embedding_b - c
    assert float(q @ g_y) == pytest.approx(ex.region_score("a", weights.numpy()), rel=1e-10)
    torch.testing.assert_close(e, ex.embedding_a)
    q_flat, _ = region_query(x, weights.reshape(-1), "gem", 2.0, (w, c))
    torch.testing.assert_close(q_flat, q)
    whole, e2 = region_query(x, None, "gem", 2.0, (w, c))
    torch.testing.assert_close(whole, e2 - c)
    tokens_q, _ = region_query(x.flatten(1).T, weights.numpy(), "gem", 2.0, (w, c), grid=(2, 3))
    torch.testing.assert_close(tokens_q, q)
    assert _message(region_query, x, torch.ones(3, 2)) == "weights must have the grid's shape (2, 3); got (3, 2)"
    assert _message(region_query, x, torch.ones(5)) == "weights must have the grid's shape (2, 3); got (5,)"
    bad = x.clone()
    bad[0, 0, 0] = float("inf")
    assert _message(region_query, bad, None) == "feats contains 0 NaN and 1 infinite values"
    assert _message(region_query, x, None, "x").startswith("unknown pooling 'x'")
    assert region_query(x.float(), None)[0].dtype == torch.float32


# ------------------------------------------------------------------------------------------------------
# Paths the mutants of decompose.py showed unpinned
# ------------------------------------------------------------------------------------------------------


def test_pool_and_shares_check_p_themselves() -> None:
    locs = _feats().flatten(1).T
    for call in (pool, pooling_shares):
        assert _message(call, locs, "gem", 0.5).startswith("GeM needs a real p with 1 <= p <= 10000")
        assert _message(call, locs, "median").startswith("unknown pooling 'median'")


def test_a_float32_head_on_float64_features() -> None:
    g = torch.Generator().manual_seed(11)
    w, c = torch.randn(3, 5, generator=g), torch.randn(3, generator=g)  # float32
    x, y = _feats(5, 2, 3), _feats(5, 2, 2, seed=1)  # float64
    ex = sv.decompose(x, y, "avg", normalize=False, head=(w, c))
    ea, eb = w.double() @ torch_pool(x, "avg") + c.double(), w.double() @ torch_pool(y, "avg") + c.double()
    assert ex.map_a.dtype == torch.float64 and ex.score == pytest.approx(float(ea @ eb), rel=1e-6)
    ga, gb = ea - c.double(), eb - c.double()
    assert ex.global_term == pytest.approx(float(c.double() @ gb + ga @ c.double() + c.double() @ c.double()), rel=1e-6)
    _, e = pooled_embeddings(x, head=(w, c))
    torch.testing.assert_close(e, ea)


def test_layer_norm_shares_are_centred_per_location_and_batches_agree() -> None:
    torch.manual_seed(12)
    ln = nn.LayerNorm(5, eps=0.01)
    ln.weight.data.copy_(torch.randn(5))
    ln.bias.data.copy_(torch.randn(5))
    x = _feats(5, 2, 3)
    ex = sv.decompose(x, _feats(5, 2, 2, seed=1), "avg", normalize=False, head=ln)
    r = x.flatten(1).T / 6  # average-pooling shares (N, C)
    f = r.sum(0)
    inv_sigma = 1 / torch.sqrt(f.var(unbiased=False) + 0.01)
    expected = ((r - r.mean(dim=1, keepdim=True)) * inv_sigma) @ ln.weight.detach().double().diag()
    torch.testing.assert_close(ex.shares_a, expected)
    batch = torch.stack([_feats(5, 2, 2, seed=s) for s in range(3)])
    many = decompose_many(x, batch, "avg", normalize=True, head=ln)
    for k in range(3):
        one = sv.decompose(x, batch[k], "avg", normalize=True, head=ln)
        assert float(many.scores[k]) == pytest.approx(one.score, rel=1e-10)
        torch.testing.assert_close(many.maps_b[k], one.map_b)
        torch.testing.assert_close(many.maps_a[k], one.map_a)
        assert float(many.global_terms[k]) == pytest.approx(one.global_term, rel=1e-9, abs=1e-12)
    _, e = pooled_embeddings(batch.float(), "avg", head=ln)
    with torch.no_grad():
        torch.testing.assert_close(
            e, ln(torch.stack([torch_pool(b.float(), "avg") for b in batch])), rtol=1e-5, atol=1e-5
        )


def test_decompose_many_defaults() -> None:
    a, batch = _feats(4, 2, 2), torch.stack([_feats(4, 3, 2, seed=s) for s in range(2)])
    many = decompose_many(a, batch, "gem")
    assert float(many.scores[1]) == pytest.approx(sv.decompose(a, batch[1], "gem", 3.0).score, rel=1e-12)
    assert float(decompose_many(a, batch).scores[0]) == pytest.approx(sv.decompose(a, batch[0], "avg").score)
    assert (
        _message(decompose_many, a.flatten(1).T, batch) == "feats_a are tokens of shape (4, 4); pass their grid=(h, w)"
    )
    assert _message(decompose_many, a, batch, grid_a=(4, 1)) == "feats_a has a 2x2 map but grid=(4, 1) was given"
    half = decompose_many(a.half(), batch.half())
    assert half.scores.dtype == torch.float32 and half.maps_b.dtype == torch.float32
    dot = decompose_many(a, batch, normalize=False)
    assert float(dot.scores[0]) == pytest.approx(float(torch_pool(a, "avg") @ torch_pool(batch[0], "avg")))


def test_tokens_and_grids_for_either_image() -> None:
    a, b = _feats(4, 2, 3), _feats(4, 3, 2, seed=1)
    ref = sv.decompose(a, b)
    tokens_b = b.flatten(1).T
    for ex in (
        sv.decompose(a, tokens_b, grid_b=(3, 2)),
        sv.decompose(a.flatten(1).T, tokens_b, grid_a=(2, 3), grid_b=(3, 2)),
        sv.decompose(a, b, grid_a=(2, 3), grid_b=(3, 2)),  # maps with their (matching) grids
    ):
        torch.testing.assert_close(ex.map_b, ref.map_b)
        assert ex.grid_b == (3, 2) and ex.grid_a == (2, 3)
    assert _message(sv.decompose, a, b, grid_a=(3, 2)) == "feats_a has a 2x3 map but grid=(3, 2) was given"
    assert _message(sv.decompose, a, b, grid_b=(2, 3)) == "feats_b has a 3x2 map but grid=(2, 3) was given"
    assert _message(sv.decompose, a, tokens_b) == "feats_b are tokens of shape (6, 4); pass their grid=(h, w)"
    assert _message(sv.decompose, a.numpy(), b) == "feats_a must be a torch.Tensor, got ndarray"
    assert _message(region_query, tokens_b, None) == "feats are tokens of shape (6, 4); pass their grid=(h, w)"


def test_features_on_two_devices_are_refused() -> None:
    a = _feats(4, 2, 2, dtype=torch.float32)
    meta = torch.zeros(4, 2, 2, device="meta")
    assert _message(sv.decompose, a, meta, check_values=False) == "feats_a is on cpu but feats_b on meta"


def test_computation_dtype_follows_either_input() -> None:
    f32, f64 = _feats(dtype=torch.float32), _feats(seed=1)
    for a, b in ((f32, f64), (f64, f32)):
        ex = sv.decompose(a, b)
        assert ex.map_a.dtype == torch.float64 and ex.shares_b.dtype == torch.float64
    q, e = region_query(f32.half(), None)
    assert q.dtype == torch.float32 and e.dtype == torch.float32
    weights = np.zeros((3, 4))  # float64 weights with float32 features
    weights[1, 1] = 1.0
    q, _ = region_query(f32, weights)
    assert q.dtype == torch.float32
    torch.testing.assert_close(q, pooling_shares(f32.flatten(1).T, "avg")[5])


def test_cell_weights_of_a_tensor_that_requires_grad() -> None:
    mask = torch.ones(4, 4, requires_grad=True)
    torch.testing.assert_close(cell_weights(mask, (2, 2)), torch.ones(2, 2))


def test_then_moves_a_float64_bias_through_a_float32_layer() -> None:
    g = torch.Generator().manual_seed(13)
    w1, b1 = torch.randn(4, 5, generator=g, dtype=torch.float64), torch.randn(4, generator=g, dtype=torch.float64)
    w2 = torch.randn(3, 4, generator=g)  # float32
    h = LinearHead(w1, b1).then(LinearHead(w2))
    torch.testing.assert_close(h.bias, w2.double() @ b1)


def test_pooled_embeddings_default_gem_p_is_3() -> None:
    x = _feats(5, 2, 3)
    torch.testing.assert_close(pooled_embeddings(x, "gem")[1], torch_pool(x, "gem", 3.0))


def test_from_contributions_keeps_each_side() -> None:
    g = torch.Generator().manual_seed(14)
    qa, qb = torch.randn(6, 3, generator=g, dtype=torch.float64), torch.randn(8, 3, generator=g, dtype=torch.float64)
    ea, eb = qa.sum(0), qb.sum(0) + 1
    ex = from_contributions(qa, qb, ea, eb, (2, 3), (4, 2))
    assert ex.grid_b == (4, 2) and ex.map_b.shape == (4, 2) and ex.embedding_b is eb and ex.embedding_a is ea
    assert (
        _message(from_contributions, qa, qb, ea, eb, (2, 3), (2, 2)) == "6 / 8 contributions for grids (2, 3) / (2, 2)"
    )
