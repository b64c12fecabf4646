"""Bad inputs to the maths core: each gets a clear error naming the input and the problem."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import simvis_widgets as sv


def _x(c: int = 4, h: int = 3, w: int = 3) -> torch.Tensor:
    return torch.rand(c, h, w) + 0.1


def test_feature_dims_differ() -> None:
    with pytest.raises(sv.DecompositionError, match="A has 4 channels, B has 5"):
        sv.decompose(_x(4), _x(5))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_features(bad: float) -> None:
    xb = _x()
    xb[1, 2, 0] = bad
    with pytest.raises(sv.DecompositionError, match="feats_b contains"):
        sv.decompose(_x(), xb)


def test_unknown_pooling() -> None:
    with pytest.raises(sv.DecompositionError, match=r"unknown pooling 'median'.*avg, sum, max, gem"):
        sv.decompose(_x(), _x(), pooling="median")


@pytest.mark.parametrize("p", [0.5, 0.0, -2.0, float("inf"), float("nan")])
def test_gem_p_below_one_or_not_finite(p: float) -> None:
    with pytest.raises(sv.DecompositionError, match="GeM needs a real p with 1 <= p"):
        sv.decompose(_x(), _x(), pooling="gem", p=p)


def test_wrong_feature_rank_and_empty() -> None:
    with pytest.raises(sv.DecompositionError, match=r"\(C, H, W\) feature map or \(N, C\) tokens"):
        sv.decompose(torch.rand(2, 2, 2, 2, 2), _x())
    with pytest.raises(sv.DecompositionError, match="empty"):
        sv.decompose(torch.rand(4, 0, 3), _x())
    with pytest.raises(sv.DecompositionError, match="pass their grid"):
        sv.decompose(torch.rand(9, 4), _x())
    with pytest.raises(sv.DecompositionError, match="9 tokens but grid 2x2"):
        sv.decompose(torch.rand(9, 4), _x(), grid_a=(2, 2))
    with pytest.raises(sv.DecompositionError, match="decompose_many"):
        sv.decompose(_x(), torch.rand(2, 4, 3, 3))


def test_head_shapes() -> None:
    with pytest.raises(sv.DecompositionError, match="head weight has shape"):
        sv.decompose(_x(4), _x(4), head=torch.rand(3, 5))
    with pytest.raises(sv.DecompositionError, match=r"head bias must have shape \(3,\)"):
        sv.decompose(_x(4), _x(4), head=(torch.rand(3, 4), torch.rand(4)))
    with pytest.raises(sv.DecompositionError, match="head must be None"):
        sv.decompose(_x(4), _x(4), head="linear")
    bn = torch.nn.BatchNorm1d(4)  # training mode
    with pytest.raises(sv.DecompositionError, match="eval mode"):
        sv.decompose(_x(4), _x(4), head=bn)


def test_zero_embedding_has_no_cosine() -> None:
    with pytest.raises(sv.DecompositionError, match="image A is all zeros"):
        sv.decompose(torch.zeros(4, 2, 2), _x())
    ex = sv.decompose(torch.zeros(4, 2, 2), _x(), normalize=False)
    assert ex.score == 0.0


def test_masks_and_cells() -> None:
    ex = sv.decompose(_x(4, 3, 4), _x(4, 2, 2))
    with pytest.raises(IndexError, match=r"cell \(3, 0\) is outside image A's 3x4 grid"):
        ex.point_map("a", 3, 0)
    with pytest.raises(sv.DecompositionError, match="side must be 'a' or 'b'"):
        ex.point_map("c", 0, 0)
    with pytest.raises(sv.DecompositionError, match="must be 2-D"):
        ex.region_map("a", np.ones((3, 4, 3)))
    with pytest.raises(sv.DecompositionError, match=r"values must lie in \[0, 1\]"):
        ex.region_map("a", np.full((3, 4), 2.0))
    with pytest.raises(sv.DecompositionError, match="empty"):
        ex.region_map("a", np.ones((0, 4)))
    ex = sv.ExplainedPair.of(ex, image_a=np.zeros((96, 128, 3), np.uint8))
    with pytest.raises(sv.DecompositionError, match=r"expected the image size \(96, 128\) or the cell grid \(3, 4\)"):
        ex.region_map("a", np.ones((128, 96)))
    assert ex.region_map("a", np.ones((96, 128))).shape == (2, 2)


def test_many_bad_batch() -> None:
    with pytest.raises(sv.DecompositionError, match="must be a batch"):
        sv.decompose_many(_x(), _x())
    with pytest.raises(sv.DecompositionError, match="empty batch"):
        sv.decompose_many(_x(), torch.rand(0, 4, 3, 3))
