"""The decomposition against independent oracles: brute-force loops and autograd."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import simvis_widgets as sv
from simvis_widgets.decompose import pooling_shares, region_query

from oracles import brute_force, grad_times_activation, loop_shares, torch_pool

POOLINGS = ["avg", "sum", "max", "gem"]


def _feats(
    seed: int, c: int, h: int, w: int, positive: bool = True, dtype: torch.dtype = torch.float64
) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(c, h, w, generator=g, dtype=dtype)
    return x + 0.05 if positive else x * 2 - 1


def _rel_err(value: float, target: float, magnitude: float) -> float:
    return abs(value - target) / max(magnitude, 1e-30)


@pytest.mark.parametrize("pooling", POOLINGS)
@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("with_head", [False, True])
def test_pairwise_matches_brute_force(pooling: str, normalize: bool, with_head: bool) -> None:
    xa, xb = _feats(1, 5, 3, 4), _feats(2, 5, 2, 5)  # A and B of different, non-square sizes
    g = torch.Generator().manual_seed(3)
    weight = torch.randn(4, 5, generator=g, dtype=torch.float64) if with_head else None
    bias = torch.randn(4, generator=g, dtype=torch.float64) if with_head else None
    head = (weight, bias) if with_head else None
    ex = sv.decompose(xa, xb, pooling, p=2.5, normalize=normalize, head=head)
    P, score = brute_force(xa, xb, pooling, 2.5, normalize, weight, bias)

    torch.testing.assert_close(ex.pairwise, P, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(ex.map_a, P.sum(1).reshape(3, 4), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(ex.map_b, P.sum(0).reshape(2, 5), rtol=1e-10, atol=1e-12)
    assert ex.score == pytest.approx(score, rel=1e-12, abs=1e-12)
    # The score the network computes (torch pooling + head) is split exactly into P and the global term.
    assert ex.global_term == pytest.approx(score - float(P.sum()), abs=1e-10)
    if not with_head:
        assert ex.global_term == 0.0


@pytest.mark.parametrize("pooling", POOLINGS)
@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("with_head", [False, True])
def test_maps_equal_gradient_times_activation(pooling: str, normalize: bool, with_head: bool) -> None:
    """method.md's oracle: with norms detached, grad x activation equals the shares map (1-homogeneous pooling)."""
    xa, xb = _feats(4, 6, 4, 4), _feats(5, 6, 3, 5)
    weight = torch.randn(3, 6, generator=torch.Generator().manual_seed(6), dtype=torch.float64) if with_head else None
    ex = sv.decompose(xa, xb, pooling, p=3.0, normalize=normalize, head=weight)
    gxa_a, gxa_b = grad_times_activation(xa, xb, pooling, 3.0, normalize, weight)
    torch.testing.assert_close(ex.map_a, gxa_a, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(ex.map_b, gxa_b, rtol=1e-9, atol=1e-12)


def test_bias_maps_equal_gradient_of_bias_free_score() -> None:
    """With a bias c, map_a is grad x activation of <e_A, e_B - c>: the bias parts go to the global term."""
    xa, xb = _feats(7, 4, 3, 3), _feats(8, 4, 2, 2)
    g = torch.Generator().manual_seed(9)
    W, c = torch.randn(5, 4, generator=g, dtype=torch.float64), torch.randn(5, generator=g, dtype=torch.float64)
    ex = sv.decompose(xa, xb, "avg", normalize=True, head=(W, c))
    a = xa.clone().requires_grad_(True)
    ea = W @ torch_pool(a, "avg") + c
    eb = W @ torch_pool(xb, "avg") + c
    s = (ea @ (eb - c)) / (ea.norm().detach() * eb.norm())
    (grad,) = torch.autograd.grad(s, a)
    torch.testing.assert_close(ex.map_a, (grad * a).sum(0), rtol=1e-9, atol=1e-12)


def test_max_pooling_splits_ties_equally() -> None:
    x = torch.zeros(2, 2, 3, dtype=torch.float64)
    x[0] = torch.tensor([[1.0, 5.0, 5.0], [2.0, 5.0, 0.0]])  # three-way tie for channel 0
    x[1] = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, 7.0]])
    shares = pooling_shares(x.reshape(2, 6).T, "max")
    torch.testing.assert_close(shares[:, 0], torch.tensor([0, 5 / 3, 5 / 3, 0, 5 / 3, 0], dtype=torch.float64))
    torch.testing.assert_close(shares[:, 1], torch.tensor([0, 0, 0, 0, 0, 7.0], dtype=torch.float64))
    torch.testing.assert_close(shares, loop_shares(x, "max"))
    ex = sv.decompose(x, x, "max")
    assert float(ex.map_a.sum()) == pytest.approx(ex.score, abs=1e-12)


def test_gem_large_p_stays_finite_and_approaches_max() -> None:
    x = _feats(10, 3, 5, 5, dtype=torch.float32) * 6  # 6^200 overflows float32 if computed naively
    shares = pooling_shares(x.reshape(3, 25).T, "gem", p=200.0)
    assert torch.isfinite(shares).all()
    torch.testing.assert_close(shares.sum(0), torch_pool(x.double(), "max").float(), rtol=0.02, atol=0)


def test_gem_p1_is_average() -> None:
    x = _feats(11, 4, 3, 2)
    ex_gem, ex_avg = sv.decompose(x, x.flip(1), "gem", p=1.0), sv.decompose(x, x.flip(1), "avg")
    torch.testing.assert_close(ex_gem.pairwise, ex_avg.pairwise, rtol=1e-6, atol=1e-12)


def test_exact_in_float32_to_1e5_relative() -> None:
    """The issue's requirement: the three sums plus the global term equal the score to 1e-5 relative, float32."""
    g = torch.Generator().manual_seed(12)
    worst = 0.0
    for pooling in POOLINGS:
        for head in (None, (torch.randn(256, 1280, generator=g) / 30, torch.randn(256, generator=g))):
            xa = torch.rand(1280, 14, 14, generator=g) * 6
            xb = torch.rand(1280, 9, 21, generator=g) * 6
            ex = sv.decompose(xa, xb, pooling, head=head)
            assert ex.map_a.dtype == torch.float32
            for total in (ex.map_a.sum(), ex.map_b.sum(), ex.pairwise.sum()):
                worst = max(worst, _rel_err(float(total) + ex.global_term, ex.score, abs(ex.score)))
    assert worst < 1e-5


def test_point_and_region_maps_are_rows_and_weighted_rows_of_pairwise() -> None:
    xa, xb = _feats(13, 3, 4, 5), _feats(14, 3, 3, 2)
    ex = sv.decompose(xa, xb, "gem", p=3)
    torch.testing.assert_close(ex.point_map("a", 2, 3), ex.pairwise[2 * 5 + 3].reshape(3, 2))
    torch.testing.assert_close(ex.point_map("b", 1, 0), ex.pairwise[:, 1 * 2 + 0].reshape(4, 5))
    mask = np.zeros((4, 5), bool)
    mask[1:3, 2:5] = True
    w = torch.as_tensor(mask, dtype=torch.float64).reshape(-1)
    torch.testing.assert_close(ex.region_map("a", mask), (w @ ex.pairwise).reshape(3, 2))
    assert ex.region_score("a", mask) == pytest.approx(float((w * ex.map_a.reshape(-1)).sum()), rel=1e-12)
    # The whole image as a region gives the other image's full map and the full score.
    torch.testing.assert_close(ex.region_map("a", np.ones((4, 5))), ex.map_b)
    assert ex.region_score("b", np.ones((3, 2))) + ex.global_term == pytest.approx(ex.score, rel=1e-12)


def test_cell_weights_are_exact_area_fractions() -> None:
    # 7 x 10 pixel image over a 2 x 3 grid: cell (0, 0) spans rows [0, 3.5) and columns [0, 3.33).
    mask = np.zeros((7, 10), bool)
    mask[0:2, 0:2] = True  # 2 x 2 pixels of a 3.5 x 3.333 cell
    w = sv.cell_weights(mask, (2, 3), dtype=torch.float64)
    assert float(w[0, 0]) == pytest.approx(4 / (3.5 * 10 / 3), rel=1e-12)
    assert float(w.sum() - w[0, 0]) == 0.0
    # Area is conserved: sum of weights x cell area == masked pixels.
    rng = np.random.default_rng(0)
    mask = rng.random((37, 53)) > 0.6
    w = sv.cell_weights(mask, (5, 7), dtype=torch.float64)
    assert float(w.sum()) * (37 / 5) * (53 / 7) == pytest.approx(mask.sum(), rel=1e-12)
    # Brute force: supersample each pixel 60 x 60 and count samples per cell.
    fine = np.kron(mask[:, :], np.ones((5, 7)))  # pixel grid refined so cells align with sub-pixels
    brute = fine.reshape(5, 37, 7, 53).mean(axis=(1, 3))
    np.testing.assert_allclose(w.numpy(), brute, rtol=1e-12)


def test_decompose_many_equals_decompose_per_image() -> None:
    g = torch.Generator().manual_seed(15)
    xa = torch.rand(8, 3, 4, generator=g)
    xbs = torch.rand(5, 8, 2, 6, generator=g)
    head = (torch.randn(6, 8, generator=g), torch.randn(6, generator=g))
    many = sv.decompose_many(xa, xbs, "max", head=head)
    for k in range(5):
        one = sv.decompose(xa, xbs[k], "max", head=head)
        assert float(many.scores[k]) == pytest.approx(one.score, rel=1e-5)
        assert float(many.global_terms[k]) == pytest.approx(one.global_term, rel=1e-5, abs=1e-7)
        torch.testing.assert_close(many.maps_a[k], one.map_a)
        torch.testing.assert_close(many.maps_b[k], one.map_b)


@pytest.mark.parametrize("with_bias", [False, True])
def test_region_query_gives_exact_region_scores(with_bias: bool) -> None:
    g = torch.Generator().manual_seed(16)
    xa, xb = (
        torch.rand(8, 4, 4, generator=g, dtype=torch.float64),
        torch.rand(8, 3, 5, generator=g, dtype=torch.float64),
    )
    head = (
        torch.randn(5, 8, generator=g, dtype=torch.float64),
        torch.randn(5, generator=g, dtype=torch.float64) if with_bias else None,
    )
    mask = np.zeros((4, 4))
    mask[1:3, :2] = 1
    ex = sv.decompose(xa, xb, "gem", head=head)
    q, e_a = region_query(xa, torch.as_tensor(mask), "gem", head=head)
    _, e_b = region_query(xb, None, "gem", head=head)
    g_b = e_b - (head[1] if with_bias else 0)
    s_r = float(q @ g_b) / float(e_a.norm() * e_b.norm())
    assert s_r == pytest.approx(ex.region_score("a", mask), rel=1e-12)


def test_tokens_with_grid_equal_the_map() -> None:
    xa, xb = _feats(17, 4, 3, 5), _feats(18, 4, 2, 2)
    tokens_a = xa.reshape(4, 15).T
    ex_map = sv.decompose(xa, xb, "avg")
    ex_tok = sv.decompose(tokens_a, xb, "avg", grid_a=(3, 5))
    torch.testing.assert_close(ex_tok.map_a, ex_map.map_a)
    assert ex_tok.grid_a == (3, 5)


def test_batchnorm_head_matches_the_layer() -> None:
    bn = torch.nn.BatchNorm1d(4).double()
    with torch.no_grad():
        bn.running_mean.copy_(torch.tensor([0.1, -0.2, 0.3, 0.0]))
        bn.running_var.copy_(torch.tensor([1.5, 0.5, 2.0, 1.0]))
        bn.weight.copy_(torch.tensor([1.0, 2.0, 0.5, -1.0]))
        bn.bias.copy_(torch.tensor([0.0, 0.1, -0.1, 0.2]))
    bn.eval()
    xa, xb = _feats(19, 4, 2, 3), _feats(20, 4, 3, 3)
    ex = sv.decompose(xa, xb, "avg", head=bn)
    with torch.no_grad():
        ea = bn(torch_pool(xa, "avg")[None])[0]
        eb = bn(torch_pool(xb, "avg")[None])[0]
    assert ex.score == pytest.approx(float(torch.nn.functional.cosine_similarity(ea, eb, dim=0)), rel=1e-12)
    assert float(ex.map_a.sum()) + ex.global_term == pytest.approx(ex.score, rel=1e-12)


@pytest.mark.parametrize("pooling", POOLINGS)
@pytest.mark.parametrize("then_linear", [False, True])
def test_layer_norm_head_is_exact(pooling: str, then_linear: bool) -> None:
    """LayerNorm after pooling (per-image mean and std held fixed), alone or followed by a linear layer."""
    torch.manual_seed(23)
    ln = torch.nn.LayerNorm(6).double()
    with torch.no_grad():
        ln.weight.normal_()
        ln.bias.normal_()
    head = torch.nn.Sequential(ln, torch.nn.Linear(6, 4).double()) if then_linear else ln
    xa, xb = _feats(24, 6, 3, 4, positive=pooling == "gem"), _feats(25, 6, 2, 3, positive=pooling == "gem")
    ex = sv.decompose(xa, xb, pooling, head=head)
    with torch.no_grad():
        ea, eb = head(torch_pool(xa, pooling)[None])[0], head(torch_pool(xb, pooling)[None])[0]
    assert ex.score == pytest.approx(float(torch.nn.functional.cosine_similarity(ea, eb, dim=0)), rel=1e-12)
    for total in (ex.map_a.sum(), ex.map_b.sum(), ex.pairwise.sum()):
        assert float(total) + ex.global_term == pytest.approx(ex.score, rel=1e-10)
    with pytest.raises(sv.DecompositionError, match="LayerNorm after a linear layer"):
        sv.decompose(
            xa, xb, pooling, head=torch.nn.Sequential(torch.nn.Linear(6, 6).double(), torch.nn.LayerNorm(6).double())
        )


@pytest.mark.gpu
def test_cuda_matches_cpu() -> None:
    xa, xb = _feats(21, 64, 7, 7, dtype=torch.float32), _feats(22, 64, 9, 5, dtype=torch.float32)
    for pooling in POOLINGS:
        cpu = sv.decompose(xa, xb, pooling)
        gpu = sv.decompose(xa.cuda(), xb.cuda(), pooling)
        assert gpu.map_a.device.type == "cuda"
        torch.testing.assert_close(gpu.pairwise.cpu(), cpu.pairwise, rtol=1e-4, atol=1e-7)
        assert math.isclose(gpu.score, cpu.score, rel_tol=1e-5)
