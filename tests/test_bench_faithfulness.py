"""The deletion / insertion machinery of ``benchmarks/bench_faithfulness.py`` on tiny cases, against oracles that
do not share its code: pixel-by-pixel construction of the modified images, an additive score for which deletion
and insertion curves are exact complements, and hand-made AUCs for the "beats ours" counts."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks.bench_faithfulness import (
    DIRECTIONS,
    METHODS,
    REMOVALS,
    PairResult,
    random_head,
    replace_cells,
    summarise,
    transfer_curve,
    trapezoid,
)

GRID, STRIDE = (3, 4), 2
N_CELLS = GRID[0] * GRID[1]


class PixelSumScorer:
    """A stand-in for ``Scorer``: the score of an image is a fixed weighted sum of its pixels (additive over cells),
    and every scored image is recorded."""

    def __init__(self, weights: np.ndarray) -> None:
        self.weights = weights
        self.seen: list[np.ndarray] = []

    def scores(self, images: list[np.ndarray]) -> list[float]:
        self.seen += images
        return [float((img.astype(np.float64) * self.weights).sum()) for img in images]


def images(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    shape = (GRID[0] * STRIDE, GRID[1] * STRIDE, 3)
    a = rng.integers(0, 256, shape, dtype=np.uint8)
    fill = rng.integers(0, 256, shape, dtype=np.uint8)
    return a, fill, rng.standard_normal(shape)


def test_replace_cells_takes_exactly_the_named_blocks() -> None:
    a, fill, _ = images(0)
    cells = np.array([0, 5, 11])
    out = replace_cells(a, fill, cells, GRID, STRIDE)
    for cell in range(N_CELLS):  # oracle: block by block
        r, c = divmod(cell, GRID[1])
        block = np.s_[r * STRIDE : (r + 1) * STRIDE, c * STRIDE : (c + 1) * STRIDE]
        expected = fill[block] if cell in cells else a[block]
        np.testing.assert_array_equal(out[block], expected)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), step=st.sampled_from([1, 2, 3, 5]))
def test_insertion_complements_deletion_for_an_additive_score(seed: int, step: int) -> None:
    """For a score additive over cells, removing the first n cells and restoring them into the fill change the
    score by opposite amounts: deletion(n) + insertion(n) = s(A) + s(fill) for every n and every order."""
    a, fill, w = images(seed)
    order = np.random.default_rng(seed).permutation(N_CELLS)
    counts = list(range(0, N_CELLS + 1, step)) + ([N_CELLS] if N_CELLS % step else [])
    scorer = PixelSumScorer(w)
    s_a, s_fill = scorer.scores([a, fill])
    deletion = transfer_curve(scorer, a, fill, order, counts, GRID, STRIDE, s_a, s_fill)  # type: ignore[arg-type]
    insertion = transfer_curve(scorer, fill, a, order, counts, GRID, STRIDE, s_fill, s_a)  # type: ignore[arg-type]
    np.testing.assert_allclose(np.add(deletion, insertion), s_a + s_fill, rtol=1e-9, atol=1e-6)
    assert deletion[0] == s_a and deletion[-1] == s_fill and insertion[0] == s_fill and insertion[-1] == s_a
    # the inner points were scored on the images built cell by cell (independent oracle), one forward each
    inner = [n for n in counts if 0 < n < N_CELLS]
    assert len(scorer.seen) == 2 + 2 * len(inner)
    for n, got in zip(inner, [insertion[counts.index(n)] for n in inner]):
        oracle = fill.copy()
        for cell in order[:n]:
            r, c = divmod(int(cell), GRID[1])
            block = np.s_[r * STRIDE : (r + 1) * STRIDE, c * STRIDE : (c + 1) * STRIDE]
            oracle[block] = a[block]
        assert got == pytest.approx(float((oracle * w).sum()), rel=1e-9, abs=1e-6)


def test_insertion_of_the_best_cells_first_rises_fastest() -> None:
    """With an additive score, inserting cells by their true contribution (highest first) gives the highest
    insertion AUC of all orders tried, and the reversed order the lowest (and the reverse for deletion)."""
    a, fill, w = images(3)
    scorer = PixelSumScorer(w)
    contribution = np.array(
        [scorer.scores([replace_cells(fill, a, np.array([c]), GRID, STRIDE)])[0] for c in range(N_CELLS)]
    )
    s_a, s_fill = scorer.scores([a, fill])
    counts = list(range(N_CELLS + 1))
    x = np.asarray(counts) / N_CELLS
    best = np.argsort(-contribution, kind="stable")

    def aucs(order: np.ndarray) -> tuple[float, float]:
        d = transfer_curve(scorer, a, fill, order, counts, GRID, STRIDE, s_a, s_fill)  # type: ignore[arg-type]
        i = transfer_curve(scorer, fill, a, order, counts, GRID, STRIDE, s_fill, s_a)  # type: ignore[arg-type]
        return trapezoid(d, x), trapezoid(i, x)

    del_best, ins_best = aucs(best)
    del_worst, ins_worst = aucs(best[::-1])
    rng = np.random.default_rng(0)
    for _ in range(20):
        d, i = aucs(rng.permutation(N_CELLS))
        assert ins_worst - 1e-9 <= i <= ins_best + 1e-9
        assert del_best - 1e-9 <= d <= del_worst + 1e-9


def pair(auc_by_method: dict[str, tuple[float, float]], score: float = 2.0) -> PairResult:
    """A synthetic pair whose (deletion, insertion) AUCs per method are given; curves are flat at ``score``."""
    flat = [score, score]
    return PairResult(
        a="a",
        b="b",
        group="same",
        input_a=[4, 4],
        grid_a=[2, 2],
        score=score,
        curves={d: {r: {m: flat for m in METHODS} for r in REMOVALS} for d in DIRECTIONS},
        auc={d: {r: {m: auc_by_method[m][k] for m in METHODS} for r in REMOVALS} for k, d in enumerate(DIRECTIONS)},
        corr_gradcam_dot_vs_ours=1.0,
        corr_gradcam_dot_pre_relu_vs_ours=1.0,
        spearman_gradcam_dot_vs_ours=1.0,
        corr_gradcam_cos_vs_ours=1.0,
    )


def test_beats_ours_means_lower_for_deletion_and_higher_for_insertion() -> None:
    base = dict.fromkeys(METHODS, (0.5, 0.5))
    pairs = [
        pair(base | {"gradcam_dot": (0.4, 0.6)}),  # beats ours on both
        pair(base | {"gradcam_dot": (0.6, 0.4)}),  # loses on both
        pair(base | {"gradcam_dot": (0.4, 0.4)}),  # beats on deletion only
    ]
    stats = summarise(pairs, np.array([0.0, 1.0]))
    assert stats["deletion"]["mean"]["gradcam_dot"]["pairs_better_than_ours"] == 2
    assert stats["insertion"]["mean"]["gradcam_dot"]["pairs_better_than_ours"] == 1
    assert stats["insertion"]["blur"]["gradcam_dot"]["auc"]["mean"] == pytest.approx(1.4 / 3)
    assert stats["deletion"]["mean"]["random"]["pairs_better_than_ours"] == 0  # ties beat nothing


def test_random_head_is_seeded_affine_and_in_pytorch_default_range() -> None:
    h1, h2, h3 = random_head(16, 0), random_head(16, 0), random_head(16, 1)
    assert tuple(h1.weight.shape) == (128, 16) and h1.bias is not None and tuple(h1.bias.shape) == (128,)
    assert bool((h1.weight == h2.weight).all()) and bool((h1.bias == h2.bias).all())
    assert not bool((h1.weight == h3.weight).all())
    assert float(h1.weight.detach().abs().max()) <= 0.25 and float(h1.bias.detach().abs().max()) <= 0.25
