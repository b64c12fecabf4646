"""The study measures against independent oracles: scikit-learn's average precision and a brute-force nearest
neighbour for retrieval, numpy for the map statistics, and hand-made maps whose answers are known."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import average_precision_score

from simvis_widgets.errors import DecompositionError
from simvis_widgets.studies import concentration, map_agreement, object_share, retrieval_quality, silhouette


def _oracle(emb: np.ndarray, labels: np.ndarray) -> tuple[float, float, int]:
    emb = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    r1, aps = [], []
    for q in range(len(emb)):
        others = [i for i in range(len(emb)) if i != q]
        truth = np.array([labels[i] == labels[q] for i in others])
        if not truth.any():
            continue
        sims = np.array([emb[q] @ emb[i] for i in others])
        best = others[int(np.argmax(sims))]  # first of the maxima: the lowest position, as a stable sort
        r1.append(labels[best] == labels[q])
        aps.append(average_precision_score(truth, sims))
    return float(np.mean(r1)), float(np.mean(aps)), len(aps)


@settings(max_examples=40, deadline=None)
@given(st.integers(3, 30), st.integers(1, 4), st.integers(0, 2**31 - 1))
def test_retrieval_quality_matches_brute_force_and_sklearn(n: int, classes: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    emb = rng.normal(size=(n, 5))  # continuous: no ties, so sklearn's tie handling does not matter
    labels = rng.integers(0, classes, n)
    if np.bincount(labels).max() < 2:
        labels[1] = labels[0]
    got = retrieval_quality(torch.from_numpy(emb), labels)
    r1, mean_ap, queries = _oracle(emb, labels)
    assert got.queries == queries
    assert got.recall_at_1 == pytest.approx(r1, abs=1e-12)
    assert got.mean_average_precision == pytest.approx(mean_ap, abs=1e-9)


def test_retrieval_quality_known_cases_and_errors() -> None:
    perfect = retrieval_quality(np.array([[1, 0], [1, 0.1], [0, 1], [0.1, 1]]), [0, 0, 1, 1])
    assert (perfect.recall_at_1, perfect.mean_average_precision, perfect.queries) == (1.0, 1.0, 4)
    worst = retrieval_quality(np.array([[1, 0], [0.9, 0.44], [0.9, -0.44]]), [0, 1, 1])
    # item 0 has no partner (left out); items 1 and 2 are each nearer item 0 than each other: AP = 1/2
    assert (worst.recall_at_1, worst.mean_average_precision, worst.queries) == (0.0, 0.5, 2)
    dot = retrieval_quality(np.array([[1.0], [2.0], [3.0]]), [0, 1, 0], normalize=False)
    assert dot.recall_at_1 == pytest.approx(0.5)  # 0 -> 2 (right), 2 -> 1 (wrong); 1 has no partner
    with pytest.raises(DecompositionError, match="need embeddings"):
        retrieval_quality(np.ones((3, 2)), [0, 1])
    with pytest.raises(DecompositionError, match="all zeros"):
        retrieval_quality(np.array([[1.0, 0], [0, 0]]), [0, 0])
    with pytest.raises(DecompositionError, match="NaN"):
        retrieval_quality(np.array([[1.0, np.nan], [0, 1]]), [0, 0])
    with pytest.raises(DecompositionError, match="nothing to retrieve"):
        retrieval_quality(np.eye(3), [0, 1, 2])
    with pytest.raises(DecompositionError, match="at least 2 items"):
        retrieval_quality(np.ones((1, 2)), [0])


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 8), st.integers(1, 8), st.floats(0.01, 1.0), st.integers(0, 2**31 - 1))
def test_concentration_is_the_top_cells_share(h: int, w: int, share: float, seed: int) -> None:
    m = np.random.default_rng(seed).normal(size=(h, w)) + 0.5
    k = max(1, math.ceil(share * h * w))
    expected = np.sort(m.ravel())[::-1][:k].sum() / m.sum()
    assert concentration(m, share) == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_concentration_cases() -> None:
    one_cell = np.zeros((5, 5))
    one_cell[2, 3] = 0.7
    assert concentration(one_cell) == pytest.approx(1.0)
    assert concentration(np.full((10, 10), 0.01)) == pytest.approx(0.1)
    assert math.isnan(concentration(np.array([[1.0, -1.0]])))
    with pytest.raises(DecompositionError, match=r"share must lie in \(0, 1\]"):
        concentration(one_cell, 0)
    with pytest.raises(DecompositionError, match="non-empty 2-D map"):
        concentration(np.ones(4))


def test_object_share() -> None:
    m = np.array([[1.0, 3.0], [-2.0, 0.0]])
    mask_cells = np.array([[False, True], [True, True]])
    assert object_share(m, mask_cells) == pytest.approx(3 / 4)  # the negative cell counts for nothing
    image_mask = np.zeros((4, 4), bool)
    image_mask[:2, 2:3] = True  # half of the top-right cell
    assert object_share(m, image_mask) == pytest.approx(1.5 / 4)
    assert math.isnan(object_share(-np.ones((2, 2)), mask_cells))
    with pytest.raises(DecompositionError, match="object mask"):
        object_share(m, np.ones((2, 2, 2)))


@settings(max_examples=30, deadline=None)
@given(st.integers(2, 6), st.integers(2, 6), st.integers(0, 2**31 - 1))
def test_map_agreement_is_pearson(h: int, w: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=(h, w)), rng.normal(size=(h, w))
    assert map_agreement(a, b) == pytest.approx(np.corrcoef(a.ravel(), b.ravel())[0, 1], abs=1e-9)
    assert map_agreement(a, 3 * a + 1) == pytest.approx(1.0)


def test_map_agreement_errors_and_silhouette() -> None:
    with pytest.raises(DecompositionError, match=r"different grids: \(2, 2\) and \(2, 3\)"):
        map_agreement(np.ones((2, 2)), np.ones((2, 3)))
    assert math.isnan(map_agreement(np.ones((2, 2)), np.eye(2)))
    img = np.zeros((4, 4, 3), np.uint8)
    img[1, 2, 0] = 9
    assert silhouette(img).sum() == 1 and silhouette(img, threshold=9).sum() == 0
    with pytest.raises(DecompositionError, match="H x W or H x W x C"):
        silhouette(np.zeros(3))
