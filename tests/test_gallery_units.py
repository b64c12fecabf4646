"""Gallery with a tiny network (milliseconds per image): exact scores for every kind of query and similarity,
region weights at their limits, the exact int8 index against a brute-force scan, the Lance dataset column by
column, every refusal with its words, rebuilding into an existing path, and integrity checks on the stored rows.
Quick enough to run for every mutant of the gallery package."""

from __future__ import annotations

import json
import os
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

import simvis_widgets as sv
from simvis_widgets._io import file_digest
from simvis_widgets.gallery import Gallery, GalleryError, list_images
from simvis_widgets.gallery.index import ArrayKeys, Int8Index
from simvis_widgets.gallery.sources import gallery_sources


def _net() -> torch.nn.Module:
    torch.manual_seed(11)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, stride=4, padding=1),
        torch.nn.ReLU(),
        torch.nn.Conv2d(8, 12, 3, stride=4, padding=1),
        torch.nn.ReLU(),
    )


NET = _net()


def _session(**options: object) -> sv.ModelSession:
    return sv.ModelSession(NET, "3", size=64, device="cpu", **options)  # stride 16: 64 px -> 4 cells


def _head() -> torch.nn.Linear:
    torch.manual_seed(3)
    return torch.nn.Linear(12, 6)


SESSIONS = {
    "cosine": lambda: _session(),
    "dot": lambda: _session(normalize=False),
    "bias-cosine": lambda: _session(head=_head()),
    "bias-dot": lambda: _session(head=_head(), normalize=False),
    "gem": lambda: _session(pooling="gem", p=2.5),
}


def _images(n: int = 5) -> list[np.ndarray]:
    """Smooth random pictures of a few sizes (64 x 64, 64 x 96, 96 x 64)."""
    out = []
    for i in range(n):
        rng = np.random.default_rng(100 + i)
        h, w = [(64, 64), (64, 96), (96, 64)][i % 3]
        small = rng.integers(0, 256, (h // 8, w // 8, 3), dtype=np.uint8)
        out.append(np.asarray(Image.fromarray(small).resize((w, h), Image.Resampling.BILINEAR)))
    return out


IMAGES = _images()
QUERY = _images(7)[6]  # 64 x 64, not in the gallery


@pytest.fixture(scope="module")
def session() -> sv.ModelSession:
    return _session()


@pytest.fixture(scope="module")
def gallery(session: sv.ModelSession) -> Gallery:
    return Gallery.build(IMAGES, session, labels=["a", "b", "c", "d", "e"], progress=False)


# ------------------------------------------------------------------------------------------------------
# Scores
# ------------------------------------------------------------------------------------------------------


def _expected_mask(kind: str, h: int, w: int, grid: tuple[int, int]) -> np.ndarray | None:
    if kind == "whole":
        return None
    if kind == "mask":
        m = np.zeros((h, w))
        m[5:40, 10:50] = 1
        return m
    if kind == "box":  # (x0, y0, x1, y1) = (10.5, 4.2, 41.7, 30.0): pixels floor(x0)..ceil(x1)
        m = np.zeros((h, w))
        m[4:30, 10:42] = 1
        return m
    cells = np.zeros(grid)  # point (x, y) = (0.7 w, 0.3 h)
    cells[int(0.3 * grid[0]), int(0.7 * grid[1])] = 1
    return cells


@pytest.mark.parametrize("kind", ["whole", "mask", "box", "point"])
@pytest.mark.parametrize("name", list(SESSIONS))
def test_scores_are_the_explained_scores(name: str, kind: str) -> None:
    session = SESSIONS[name]()
    g = Gallery.build(IMAGES, session, progress=False)
    h, w = QUERY.shape[:2]
    region = {
        "whole": {},
        "mask": {"mask": _expected_mask("mask", h, w, (4, 4))},
        "box": {"box": (10.5, 4.2, 41.7, 30.0)},
        "point": {"point": (0.7 * w, 0.3 * h)},
    }[kind]
    hits = g.search(QUERY, k=len(IMAGES), **region)
    assert sorted(hit.index for hit in hits) == list(range(len(IMAGES)))
    assert [hit.score for hit in hits] == sorted((hit.score for hit in hits), reverse=True)
    for hit in hits:
        ex = session.explain(QUERY, IMAGES[hit.index])
        mask = _expected_mask(kind, h, w, ex.grid_a)
        if mask is None and session.head is not None:
            continue  # whole-image scores with a bias: see test_whole_image_scores_with_a_biased_head_are_the_similarity
        expected = ex.score if mask is None else ex.region_score("a", mask)
        assert hit.score == pytest.approx(expected, rel=1e-4, abs=1e-6)
        expected_map = ex.map_b if mask is None else ex.region_map("a", mask)
        torch.testing.assert_close(hit.map, expected_map, rtol=2e-2, atol=2e-3 * float(expected_map.abs().max()))
        assert hit.source == hit.index and hit.label is None
    if kind == "whole" and name in ("cosine", "dot"):
        e_q = session.embed(QUERY)
        for hit in hits:  # the network's own similarity of the two embeddings
            assert hit.score == pytest.approx(float(e_q @ session.embed(IMAGES[hit.index])), rel=1e-4)


@pytest.mark.parametrize("name", ["bias-cosine", "bias-dot"])
def test_whole_image_scores_with_a_biased_head_are_the_similarity(name: str) -> None:
    """Hit.score is documented as "exact region score s_R (whole image: the similarity)": a whole-image search
    must score and rank by the network's similarity, bias included (it is the query the user asked)."""
    session = SESSIONS[name]()
    g = Gallery.build(IMAGES, session, progress=False)
    hits = g.search(QUERY, k=len(IMAGES))
    expected = {i: session.explain(QUERY, image).score for i, image in enumerate(IMAGES)}
    assert [h.index for h in hits] == sorted(expected, key=lambda i: -expected[i])
    for hit in hits:
        assert hit.score == pytest.approx(expected[hit.index], rel=1e-4)


def test_hits_carry_labels_sources_and_maps_of_the_result_grid(gallery: Gallery) -> None:
    hits = gallery.search(QUERY, k=3)
    assert len(hits) == 3
    for hit in hits:
        assert hit.label == "abcde"[hit.index] and hit.source == hit.index
        assert tuple(hit.map.shape) == gallery.grid(hit.index)


def test_k_larger_than_the_gallery_returns_everything(gallery: Gallery) -> None:
    assert len(gallery.search(QUERY, k=50)) == 5
    assert len(gallery.search(QUERY, k=1)) == 1


@pytest.mark.parametrize("k", [0, -1, 2.0, "3", None])
def test_k_must_be_a_positive_integer(gallery: Gallery, k: object) -> None:
    with pytest.raises(GalleryError) as err:
        gallery.search(QUERY, k=k)  # type: ignore[arg-type]
    assert str(err.value) == f"k must be a positive integer, got {k!r}"


def test_exclude_self_still_returns_k_hits(session: sv.ModelSession) -> None:
    g = Gallery.build([IMAGES[0], IMAGES[1], IMAGES[0].copy(), IMAGES[2]], session, progress=False)
    hits = g.search(IMAGES[0], k=2, exclude_self=True)
    assert len(hits) == 2 and {h.index for h in hits} == {1, 3}
    assert {h.index for h in g.search(IMAGES[0], k=2)} == {0, 2}
    assert len(g.search(IMAGES[1], k=4, exclude_self=True)) == 3
    assert len(g.search(QUERY, k=4, exclude_self=True)) == 4  # not in the gallery: nothing excluded


def test_search_features_equals_search(gallery: Gallery, session: sv.ModelSession) -> None:
    enc = session.encode(QUERY)
    a = gallery.search(QUERY, k=5)
    b = gallery.search_features(enc.features, None, k=5)
    assert [(h.index, h.score) for h in a] == [(h.index, h.score) for h in b]
    weights = torch.zeros(enc.grid)
    weights[1, 2] = 0.5
    region = gallery.search_features(enc.features, weights, k=5)
    for hit in region:
        ex = session.explain(QUERY, IMAGES[hit.index])
        assert hit.score == pytest.approx(ex.region_score("a", weights.numpy()), rel=1e-4, abs=1e-7)


# ------------------------------------------------------------------------------------------------------
# Region weights
# ------------------------------------------------------------------------------------------------------


def test_query_weights_of_each_region_kind(gallery: Gallery) -> None:
    assert gallery.query_weights((64, 96), (4, 6)) is None
    point = gallery.query_weights((64, 96), (4, 6), point=(95.9, 63.9))
    assert point.dtype == torch.float32 and point.shape == (4, 6) and point.sum() == 1 and point[3, 5] == 1
    assert gallery.query_weights((64, 96), (4, 6), point=(0, 0))[0, 0] == 1
    assert gallery.query_weights((64, 96), (4, 6), point=(16.0, 31.99))[1, 1] == 1
    full = gallery.query_weights((64, 96), (4, 6), box=(0, 0, 96, 64))
    torch.testing.assert_close(full, torch.ones(4, 6))
    cell = gallery.query_weights((64, 96), (4, 6), box=(16, 16, 32, 32))
    expected = torch.zeros(4, 6)
    expected[1, 1] = 1
    torch.testing.assert_close(cell, expected)
    partial = gallery.query_weights((64, 96), (4, 6), box=(0.5, 0.5, 8.2, 16))  # pixels 0..8 by 0..15
    assert float(partial[0, 0]) == pytest.approx(9 * 16 / 256) and float(partial.sum()) == pytest.approx(9 * 16 / 256)
    mask = np.zeros((64, 96))
    mask[:32, :48] = 1
    torch.testing.assert_close(
        gallery.query_weights((64, 96), (4, 6), mask=mask),
        torch.tensor([[1.0] * 3 + [0.0] * 3] * 2 + [[0.0] * 6] * 2),
    )
    half = gallery.query_weights((64, 96), (4, 6), mask=mask * 0.5)
    assert float(half.max()) == 0.5  # soft masks keep their values


@pytest.mark.parametrize(
    "region, message",
    [
        (
            {"box": (0, 0, 97, 64)},
            "box (0, 0, 97, 64) must satisfy 0 <= x0 < x1 <= 96 and 0 <= y0 < y1 <= 64 (query pixels)",
        ),
        ({"box": (0, 0, 96, 65)}, "box (0, 0, 96, 65) must satisfy"),
        ({"box": (-1, 0, 10, 10)}, "box (-1, 0, 10, 10) must satisfy"),
        ({"box": (0, -0.5, 10, 10)}, "box (0, -0.5, 10, 10) must satisfy"),
        ({"box": (10, 0, 10, 10)}, "box (10, 0, 10, 10) must satisfy"),
        ({"box": (0, 10, 10, 10)}, "box (0, 10, 10, 10) must satisfy"),
        ({"box": (20, 0, 10, 10)}, "box (20, 0, 10, 10) must satisfy"),
        ({"point": (96, 5)}, "point (96, 5) lies outside the 96x64 query image"),
        ({"point": (5, 64)}, "point (5, 64) lies outside the 96x64 query image"),
        ({"point": (-0.1, 5)}, "point (-0.1, 5) lies outside"),
        ({"point": (5, -0.1)}, "point (5, -0.1) lies outside"),
        ({"mask": np.ones((64, 95))}, "mask has shape (64, 95); expected the query image's size (64, 96)"),
        ({"mask": np.ones((64, 96, 1))}, "mask has shape (64, 96, 1); expected the query image's size (64, 96)"),
        ({"mask": np.zeros((64, 96))}, "the mask selects nothing (all zero)"),
        ({"mask": np.ones((64, 96)), "box": (0, 0, 1, 1)}, "give one of mask, box or point, not mask and box"),
        (
            {"mask": np.ones((64, 96)), "box": (0, 0, 1, 1), "point": (1, 1)},
            "give one of mask, box or point, not mask and box and point",
        ),
        ({"box": (0, 0, 1, 1), "point": (1, 1)}, "give one of mask, box or point, not box and point"),
    ],
)
def test_query_weights_refusals(gallery: Gallery, region: dict, message: str) -> None:
    with pytest.raises(GalleryError) as err:
        gallery.query_weights((64, 96), (4, 6), **region)
    assert str(err.value).startswith(message)


# ------------------------------------------------------------------------------------------------------
# Scoring matrix and keys
# ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["cosine", "dot", "bias-cosine", "bias-dot"])
def test_scoring_matrix_and_keys(name: str) -> None:
    session = SESSIONS[name]()
    g = Gallery.build(IMAGES[:3], session, progress=False)
    e = g.embeddings
    c = session.head.bias.detach() if session.head is not None else torch.zeros(e.shape[1])
    expected = e - c
    s = 1 / e.norm(dim=1) if session.normalize else torch.ones(len(e))
    expected = expected * s[:, None]
    matrix = g.scoring_matrix()
    torch.testing.assert_close(matrix, expected)
    matrix += 1  # a new tensor: the gallery is untouched
    torch.testing.assert_close(g.scoring_matrix(), expected)
    keys = g.keys.keys(np.arange(3))  # key = [(e - c) s, s]
    assert keys.dtype == np.float32 and keys.shape == (3, e.shape[1] + 1) and g.keys.dim == e.shape[1] + 1
    torch.testing.assert_close(torch.from_numpy(keys), torch.cat([expected, s[:, None]], dim=1))
    q = np.random.default_rng(0).standard_normal(e.shape[1]).astype(np.float32)
    values, order = g.index.search(np.append(q, np.float32(0)), 3)  # a region query: [q, 0]
    oracle = expected.double().numpy() @ q.astype(np.float64)
    assert order.tolist() == np.argsort(-oracle).tolist() and values.dtype == np.float32
    np.testing.assert_allclose(values, oracle[order], rtol=1e-5, atol=1e-7)


def test_another_index_gives_the_same_hits(gallery: Gallery) -> None:
    class BruteForce:  # any object with search(query, k, exclude): a numpy float64 scan of the keys
        def __init__(self, keys: np.ndarray) -> None:
            self.keys, self.calls = keys.astype(np.float64), 0

        def search(self, query: np.ndarray, k: int, exclude: np.ndarray | None = None) -> tuple:
            self.calls += 1
            scores = self.keys @ np.asarray(query, np.float64)
            if exclude is not None and len(exclude):
                scores[exclude] = -np.inf
            order = np.argsort(-scores, kind="stable")[: min(k, int(np.isfinite(scores).sum()))]
            return scores[order].astype(np.float32), order

    mask = np.zeros(QUERY.shape[:2])
    mask[10:40, 5:30] = 1
    exact = gallery.search(QUERY, mask=mask, k=5)
    original = gallery.index
    brute = BruteForce(gallery.keys.keys(np.arange(len(gallery))))
    gallery.use_index(brute)
    try:
        again = gallery.search(QUERY, mask=mask, k=5)
        assert gallery.index is brute and brute.calls == 1
        others = gallery.search(IMAGES[1], k=5, exclude_self=True)  # the exclusion reaches the other index
        assert brute.calls == 2 and len(others) == 4 and 1 not in {h.index for h in others}
    finally:
        gallery.use_index(original)
    assert [h.index for h in again] == [h.index for h in exact]
    np.testing.assert_allclose([h.score for h in again], [h.score for h in exact], rtol=1e-6, atol=1e-7)
    for a, b in zip(again, exact):
        torch.testing.assert_close(a.map, b.map)
    with pytest.raises(GalleryError) as err:
        gallery.use_index(object())  # type: ignore[arg-type]
    assert str(err.value) == "an index needs a search(query, k, exclude) method; got object"
    assert gallery.index is original


class _Gate(torch.nn.Module):
    """All-zero features for dark images (the ReLU cuts a positive-weight, zero-bias convolution of the
    normalised input, negative for black pixels)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 16, stride=16)
        with torch.no_grad():
            self.conv.weight.fill_(1.0 / 768)
            self.conv.bias.zero_()
        self.out = torch.nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.conv(x))


def test_a_zero_embedding_cannot_join_a_cosine_gallery() -> None:
    black, white = np.zeros((64, 64, 3), np.uint8), np.full((64, 64, 3), 255, np.uint8)
    cosine = sv.ModelSession(_Gate(), "out", size=64, device="cpu")
    assert float(cosine.features(black).abs().max()) == 0 and float(cosine.features(white).abs().max()) > 0
    with pytest.raises(GalleryError) as err:
        Gallery.build([white, black], cosine, progress=False)
    assert "all-zero embedding" in str(err.value) and "cosine similarity is undefined" in str(err.value)
    dot = Gallery.build([white, black], cosine.variant(normalize=False), progress=False)
    assert len(dot) == 2 and float(dot.embeddings[1].abs().max()) == 0


# ------------------------------------------------------------------------------------------------------
# The int8 index against a brute-force scan
# ------------------------------------------------------------------------------------------------------


def _tolerance(keys: np.ndarray, q: np.ndarray) -> np.ndarray:
    """How far a float32 dot product of each row with ``q`` may lie from the exact value: (D + 2) roundings of
    the relative kind and as many of the absolute (subnormal) kind."""
    d = keys.shape[1]
    norms = np.linalg.norm(keys.astype(np.float64), axis=1) * np.linalg.norm(q.astype(np.float64))
    return (d + 2) * (2.0**-23 * norms + 2.0**-149)


def _check_search(keys: np.ndarray, q: np.ndarray, k: int, exclude: list[int] | None = None) -> tuple:
    """Search ``keys`` with an Int8Index and check the answer against float64 and float32 brute force."""
    keys, q = keys.astype(np.float32), q.astype(np.float32)
    index = Int8Index.build(ArrayKeys(keys), rows_per_block=7)  # several blocks
    exact = keys.astype(np.float64) @ q.astype(np.float64)
    with np.errstate(all="ignore"):
        single = keys @ q  # float32, as the gallery reports
    tol = _tolerance(keys, q)
    upper = index.upper_bounds(q)
    assert upper.shape == (len(keys),)
    assert (upper >= exact).all(), np.flatnonzero(upper < exact)
    assert (upper >= single).all(), [(int(i), upper[i], single[i]) for i in np.flatnonzero(upper < single)]
    scores, rows = index.search(q, k, exclude=None if exclude is None else np.asarray(exclude, np.int64))
    excluded = set(exclude or [])
    eligible = [r for r in range(len(keys)) if r not in excluded]
    assert scores.dtype == np.float32 and rows.dtype == np.int64
    assert len(rows) == len(scores) == min(max(k, 0), len(eligible))
    assert len(set(rows.tolist())) == len(rows) and not excluded & set(rows.tolist())
    assert (np.diff(scores.astype(np.float64)) <= 0).all()  # best first
    assert (np.abs(scores.astype(np.float64) - exact[rows]) <= tol[rows]).all()  # the float32 scores
    left = np.setdiff1d(eligible, rows)
    if len(rows) and len(left):  # nothing left out scores above the worst returned row
        worst = int(np.argmin(scores))
        assert (exact[left] - tol[left] <= float(scores[worst]) + tol[rows[worst]]).all()
    for a, b in zip(range(len(rows) - 1), range(1, len(rows))):  # ties: the lower row first
        if scores[a] == scores[b]:
            assert rows[a] < rows[b]
    return scores, rows, exact


def test_int8_index_is_the_brute_force_top_k() -> None:
    rng = np.random.default_rng(7)
    keys = rng.standard_normal((300, 33)).astype(np.float32)
    keys[:, -1] = np.abs(keys[:, -1])
    for _ in range(6):
        q = rng.standard_normal(33).astype(np.float32)
        for k in (1, 5, 40, 300):
            scores, rows, exact = _check_search(keys, q, k)
            assert rows.tolist() == np.argsort(-exact, kind="stable")[:k].tolist()  # no near ties here
            np.testing.assert_allclose(scores, (keys @ q)[rows], rtol=2e-6, atol=1e-6)


def test_int8_index_scores_are_the_float32_scores_exactly() -> None:
    """Small integers: every float32 product and sum is exact, so the scores are ``keys @ q`` bit for bit."""
    rng = np.random.default_rng(3)
    keys = rng.integers(-60, 61, (120, 9)).astype(np.float32)
    q = rng.integers(-9, 10, 9).astype(np.float32)
    scores, rows, _ = _check_search(keys, q, 120)
    np.testing.assert_array_equal(scores, (keys @ q)[rows])
    assert sorted(rows.tolist()) == list(range(120))
    m = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]], np.float32)
    scores, rows = Int8Index.build(ArrayKeys(m)).search(np.array([1.0, 3.0]), 3)  # a float64 query
    assert rows.tolist() == [1, 2, 0] and scores.tolist() == [6.0, 4.0, 1.0] and scores.dtype == np.float32


def test_int8_index_on_adversarial_keys() -> None:
    rng = np.random.default_rng(11)
    base = rng.standard_normal((60, 8)).astype(np.float32)
    q = rng.standard_normal(8).astype(np.float32)
    ties = np.repeat(base[:3], 20, axis=0)  # three distinct rows, twenty copies each
    scores, rows, _ = _check_search(ties, q, 25)
    best = int(np.argmax(base[:3] @ q))
    assert rows[:20].tolist() == list(range(20 * best, 20 * best + 20))  # equal scores: lower rows first
    spread = base * (10.0 ** rng.uniform(-18, 18, (60, 1))).astype(np.float32)  # rows of very different sizes
    _check_search(spread, q, 10)
    _check_search(spread, q * np.float32(1e-17), 10)  # huge keys, tiny query: products still finite
    peaked = base.copy()
    peaked[:, 0] *= np.float32(1e6)  # one huge value per row: int8 codes of the rest round to zero
    _check_search(peaked, q, 10)
    _check_search(base, np.zeros(8, np.float32), 5)  # every score is 0: the first five rows
    assert _check_search(base, np.zeros(8, np.float32), 5)[1].tolist() == [0, 1, 2, 3, 4]
    zero_rows = base.copy()
    zero_rows[::2] = 0
    _check_search(zero_rows, q, 60)
    _check_search(base, q, 500)  # k > n: every row
    _check_search(base, q, 10, exclude=list(range(0, 60, 3)))
    assert len(_check_search(base[:4], q, 3, exclude=[0, 1, 2, 3])[1]) == 0  # everything excluded
    _check_search(np.zeros((0, 8), np.float32), q, 3)  # an empty index


def test_int8_index_bounds_tiny_scores() -> None:
    """Products below float32's smallest normal number round to a subnormal grid (steps of 1.4e-45): the bound
    must cover that absolute rounding too, or the float32 score of a row exceeds its "upper bound"."""
    keys = np.array([[1e-23, 1e-23], [2.05e-23, 0.0], [1.0, 1.0]], np.float32)
    q = np.array([1e-22, 1e-22], np.float32)
    _check_search(keys, q, 2)


def test_int8_index_refusals() -> None:
    index = Int8Index.build(ArrayKeys(np.ones((4, 3), np.float32)))
    with pytest.raises(GalleryError) as err:
        index.search(np.ones(4, np.float32), 2)
    assert str(err.value) == "query has shape (4,); the index's keys have (3,)"
    with pytest.raises(GalleryError, match="query vector is not finite"):
        index.search(np.array([1.0, np.nan, 0.0]), 2)
    with pytest.raises(GalleryError, match=r"keys must be \(rows, dim\), got shape \(3,\)"):
        ArrayKeys(np.ones(3, np.float32))
    assert index.nbytes >= 4 * 3 and len(index.search(np.ones(3), 0)[1]) == 0


@st.composite
def _adversarial(draw: st.DrawFn) -> tuple:
    n, d = draw(st.integers(1, 70)), draw(st.integers(1, 12))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    keys = rng.standard_normal((n, d))
    if draw(st.booleans()):  # integer-valued keys: many exact ties
        keys = np.round(keys * 2)
    if draw(st.booleans()):  # duplicated rows
        keys = keys[rng.integers(0, max(1, n // 3), n)]
    if draw(st.booleans()):  # rows of wildly different magnitudes
        keys = keys * 10.0 ** rng.uniform(-22, 17, (n, 1))  # float32 squares under- and overflow out there
    if draw(st.booleans()):  # sparse rows, some all zero
        keys = keys * (rng.random((n, d)) < 0.3)
    q = rng.standard_normal(d) * 10.0 ** draw(st.integers(-22, 17))  # products from 1e-44 (subnormal) to 1e34
    if draw(st.booleans()):
        q = np.round(q)  # may be all zero
    k = draw(st.integers(1, n + 3))
    exclude = sorted(set(rng.integers(0, n, draw(st.integers(0, n))).tolist()))
    return keys.astype(np.float32), q.astype(np.float32), k, exclude


@settings(max_examples=100, deadline=None)
@given(_adversarial())
def test_int8_index_property(case: tuple) -> None:
    """For any keys and query: upper bounds above every score, the top-k of a brute-force scan (up to float32
    rounding of near ties), scores within float32 rounding of the exact dot products."""
    keys, q, k, exclude = case
    _check_search(keys, q, k, exclude or None)


# ------------------------------------------------------------------------------------------------------
# Accessors
# ------------------------------------------------------------------------------------------------------


def test_accessors(gallery: Gallery, session: sv.ModelSession) -> None:
    assert len(gallery) == 5 and gallery.sources == [0, 1, 2, 3, 4] and gallery.labels == list("abcde")
    assert repr(gallery) == f"Gallery(5 images, {session.name!r}, '{gallery.path}', features='store')"
    assert gallery.features_mode == "store" and gallery.store.info.dim == 12 and Path(gallery.path).is_dir()
    assert [gallery.grid(i) for i in range(5)] == [(4, 4), (4, 6), (6, 4), (4, 4), (4, 6)]
    assert [e.grid for e in gallery.entries] == [gallery.grid(i) for i in range(5)]
    assert isinstance(gallery.entries, tuple) and gallery.entries[1].label == "b"
    for i, image in enumerate(IMAGES):
        np.testing.assert_array_equal(gallery.image(i), image)
        stored = gallery.stored_features(i)
        assert stored.dtype == np.float16 and stored.shape == (12, *gallery.grid(i))
        feats = gallery.features(i)
        assert feats.dtype == torch.float32 and feats.device == session.device
        np.testing.assert_array_equal(feats.numpy(), stored.astype(np.float32))
        np.testing.assert_allclose(stored.astype(np.float32), session.features(image).numpy(), rtol=1e-3, atol=1e-3)
        e = sv.decompose(session.features(image), session.features(image)).embedding_a  # not normalised
        torch.testing.assert_close(gallery.embeddings[i], e)
    assert gallery.embeddings.dtype == torch.float32 and gallery.embedded == 5 and gallery.reused == 0


@pytest.mark.parametrize("index", [True, -1, 5, 1.0, "1", None])
def test_indexes_are_checked(gallery: Gallery, index: object) -> None:
    for method in (gallery.image, gallery.grid, gallery.features, gallery.stored_features):
        with pytest.raises(GalleryError) as err:
            method(index)  # type: ignore[arg-type]
        assert str(err.value) == f"gallery index must be an integer in [0, 4], got {index!r}"


def test_numpy_integer_indexes(gallery: Gallery) -> None:
    assert gallery.grid(np.int64(2)) == (6, 4)
    assert gallery.grid(4) == (4, 6) and gallery.grid(0) == (4, 4)


def test_explain_uses_the_stored_features(gallery: Gallery, session: sv.ModelSession) -> None:
    ex = gallery.explain(QUERY, 1)
    hit = next(h for h in gallery.search(QUERY, k=5) if h.index == 1)
    assert ex.score == pytest.approx(hit.score, rel=1e-5)
    assert ex.image_b is not None and ex.image_b.shape == session.resize(IMAGES[1]).shape
    assert ex.model_name == session.name
    with pytest.raises(GalleryError, match="gallery index must be an integer"):
        gallery.explain(QUERY, 9)


# ------------------------------------------------------------------------------------------------------
# Sources
# ------------------------------------------------------------------------------------------------------


def test_folders_are_searched_recursively_by_suffix(tmp_path: Path) -> None:
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    names = ["b.png", "A.JPG", "sub/c.jpeg", "sub/deeper/d.webp", "e.tiff", "f.bmp"]
    for name in names:
        Image.fromarray(IMAGES[0]).save(tmp_path / name, format="PNG")
    for name in ("notes.txt", "image.png.bak", "sub/readme"):
        (tmp_path / name).write_text("not an image")
    (tmp_path / "folder.png").mkdir()
    assert list_images(tmp_path) == sorted(tmp_path / n for n in names)
    with pytest.raises(GalleryError) as err:
        list_images(tmp_path / "b.png")
    assert str(err.value) == f"'{tmp_path / 'b.png'}' is not a folder"


def test_sources_of_every_kind(session: sv.ModelSession, tmp_path: Path) -> None:
    f = tmp_path / "one.png"
    Image.fromarray(IMAGES[1]).save(f)
    single = Gallery.build(f, session, progress=False)
    assert single.sources == [str(f)] and len(single) == 1
    np.testing.assert_array_equal(single.image(0), IMAGES[1])
    by_name = Gallery.build(str(f), session, progress=False)
    assert by_name.sources == [str(f)]
    mixed = Gallery.build([str(f), Image.fromarray(IMAGES[2]), IMAGES[3]], session, progress=False)
    assert mixed.sources == [str(f), 1, 2]
    torch.testing.assert_close(mixed.embeddings[0], single.embeddings[0])
    gen = (im for im in IMAGES[:2])  # any iterable
    assert len(Gallery.build(gen, session, progress=False)) == 2


@pytest.mark.parametrize(
    "source, message",
    [
        (np.zeros((64, 64, 3), np.uint8), "source must be a folder, a list of images or a torch Dataset; got ndarray"),
        (torch.zeros(3, 64, 64), "source must be a folder, a list of images or a torch Dataset; got Tensor"),
        (42, "source must be a folder, a list of images or a torch Dataset; got int"),
        ([], "no images to build a gallery from (list)"),
        ((), "no images to build a gallery from (tuple)"),
    ],
)
def test_bad_sources(session: sv.ModelSession, source: object, message: str) -> None:
    with pytest.raises(GalleryError) as err:
        Gallery.build(source, session, progress=False)
    assert str(err.value) == message


def test_bad_build_arguments(session: sv.ModelSession, tmp_path: Path) -> None:
    with pytest.raises(GalleryError) as err:
        Gallery.build(tmp_path / "nope", session, progress=False)
    assert str(err.value) == f"'{tmp_path / 'nope'}' does not exist"
    with pytest.raises(GalleryError) as err:
        Gallery.build(tmp_path, session, progress=False)
    assert str(err.value) == f"no images to build a gallery from ('{tmp_path}')"
    for size in (0, -3):
        with pytest.raises(GalleryError) as err:
            Gallery.build(IMAGES[:2], session, batch_size=size, progress=False)
        assert str(err.value) == f"batch_size must be a positive integer, got {size}"
    with pytest.raises(GalleryError) as err:
        Gallery.build(IMAGES[:2], session, labels=["x"], progress=False)
    assert str(err.value) == "1 labels for 2 images"
    for option, message in (
        ({"engine": "spark"}, "engine must be one of ('local', 'ray'), got 'spark'"),
        ({"features": "float16"}, "features must be one of ('store', 'recompute'), got 'float16'"),
        ({"commit_every": 0}, "commit_every must be a positive integer, got 0"),
        ({"commit_seconds": 0.0}, "commit_seconds must be > 0, got 0.0"),
        ({"batch_size": 2.0}, "batch_size must be a positive integer, got 2.0"),
    ):
        with pytest.raises(GalleryError) as err:
            Gallery.build(IMAGES[:2], session, tmp_path / "refused", progress=False, **option)
        assert str(err.value) == message
    assert not (tmp_path / "refused").exists()  # refused before anything was written


def test_approximate_sessions_are_refused(session: sv.ModelSession, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(type(session), "approximate", property(lambda self: True))
    with pytest.raises(GalleryError) as err:
        Gallery.build(IMAGES[:1], session, progress=False)
    assert str(err.value) == (
        "region retrieval needs an exact decomposition; this session is APPROXIMATE (a CLS-token ViT)"
    )


def test_dataset_sources_and_labels(session: sv.ModelSession) -> None:
    class Labelled(torch.utils.data.Dataset):  # type: ignore[type-arg]
        def __len__(self) -> int:
            return 3

        def __getitem__(self, i: int) -> tuple[np.ndarray, str]:
            return IMAGES[i], f"class{i % 2}"

    class Plain(torch.utils.data.Dataset):  # type: ignore[type-arg]
        def __len__(self) -> int:
            return 2

        def __getitem__(self, i: int) -> np.ndarray:
            return IMAGES[i]

    g = Gallery.build(Labelled(), session, progress=False)
    assert g.labels == ["class0", "class1", "class0"] and g.sources == [0, 1, 2]
    assert Gallery.build(Labelled(), session, labels=["x", "y", "z"], progress=False).labels == ["x", "y", "z"]
    plain = Gallery.build(Plain(), session, progress=False)
    assert plain.labels == [None, None]


def test_batches_and_sizes_do_not_change_the_embeddings(session: sv.ModelSession) -> None:
    one = Gallery.build(IMAGES, session, batch_size=1, progress=False)
    many = Gallery.build(IMAGES, session, batch_size=16, num_workers=0, progress=False)
    torch.testing.assert_close(one.embeddings, many.embeddings, rtol=1e-5, atol=1e-6)
    for i, image in enumerate(IMAGES):
        e = sv.decompose(session.features(image), session.features(image)).embedding_a
        torch.testing.assert_close(one.embeddings[i], e.float(), rtol=1e-5, atol=1e-6)


def test_unreadable_files_are_skipped_and_remembered(session: sv.ModelSession, tmp_path: Path) -> None:
    for i in range(2):
        Image.fromarray(IMAGES[i]).save(tmp_path / f"ok{i}.png")
    (tmp_path / "bad.png").write_bytes(b"\x89PNG not really")
    with pytest.warns(UserWarning) as record:
        g = Gallery.build(tmp_path, session, progress=False)
    assert len(record) == 1
    text = str(record[0].message)
    assert text.startswith("skipped 1 unreadable image(s):\n  ") and f"{tmp_path / 'bad.png'}: image file" in text
    assert len(g) == 2 and g.sources == [str(tmp_path / "ok0.png"), str(tmp_path / "ok1.png")]
    ((digest, (source, error)),) = g.unreadable.items()
    assert source == str(tmp_path / "bad.png") and "not a readable image" in error
    assert digest == file_digest(tmp_path / "bad.png")
    with pytest.warns(UserWarning, match="skipped 2 unreadable"):
        with pytest.raises(GalleryError) as err:
            Gallery.build([tmp_path / "bad.png", tmp_path / "missing.png"], session, progress=False)
    assert str(err.value) == "none of the 2 images could be read (list)"
    with pytest.warns(UserWarning, match="skipped 1 unreadable"):
        arrays = Gallery.build([IMAGES[0], np.zeros((4, 4, 2), np.uint8)], session, progress=False)
    assert len(arrays) == 1 and arrays.unreadable == {}  # only files are remembered


# ------------------------------------------------------------------------------------------------------
# The Lance dataset
# ------------------------------------------------------------------------------------------------------


def test_open_round_trip(session: sv.ModelSession, tmp_path: Path) -> None:
    built = Gallery.build(IMAGES, session, tmp_path / "g", labels=list("abcde"), progress=False)
    opened = Gallery.open(tmp_path / "g", session)
    assert opened.path == built.path == str(tmp_path / "g") and len(opened) == len(built) == 5
    assert opened.labels == built.labels == list("abcde") and opened.sources == built.sources == [0, 1, 2, 3, 4]
    assert opened.entries == built.entries and opened.store.version == built.store.version == 1
    torch.testing.assert_close(opened.embeddings, built.embeddings, rtol=0, atol=0)
    torch.testing.assert_close(opened.scoring_matrix(), built.scoring_matrix(), rtol=0, atol=0)
    for i in range(5):
        np.testing.assert_array_equal(opened.stored_features(i), built.stored_features(i))
    mask = np.zeros(QUERY.shape[:2])
    mask[5:40, 10:50] = 1
    for region in ({}, {"mask": mask}, {"point": (20.0, 30.0)}):
        a, b = built.search(QUERY, k=5, **region), opened.search(QUERY, k=5, **region)
        assert [(h.index, h.score, h.source, h.label) for h in a] == [(h.index, h.score, h.source, h.label) for h in b]
        for x, y in zip(a, b):
            torch.testing.assert_close(x.map, y.map, rtol=0, atol=0)
    with pytest.raises(GalleryError) as err:
        opened.image(0)
    assert str(err.value) == "gallery image 0 was an in-memory image: pass images=... to Gallery.open to show it"
    np.testing.assert_array_equal(Gallery.open(tmp_path / "g", session, images=IMAGES).image(3), IMAGES[3])
    short = Gallery.open(tmp_path / "g", session, images=IMAGES[:2])
    np.testing.assert_array_equal(short.image(1), IMAGES[1])
    with pytest.raises(GalleryError) as err:
        short.image(3)
    assert str(err.value) == "gallery image 3 was image 3 of the build's list; images= has 2"


def test_pixel_hash_is_the_stored_format() -> None:
    """Rows are keyed by this hash: it must stay SHA-256 of the length-prefixed shape/dtype text and the
    C-ordered pixels (a change would re-embed every stored gallery), for strided views too."""
    import hashlib

    from simvis_widgets._io import image_hash

    image = np.arange(5 * 4 * 3, dtype=np.uint8).reshape(5, 4, 3)
    for view in (image, image[:, ::-1], image[1:4]):
        parts = (f"{view.shape}|{view.dtype}".encode(), np.ascontiguousarray(view).tobytes())
        expected = hashlib.sha256(b"".join(len(p).to_bytes(8, "little") + p for p in parts)).hexdigest()
        assert image_hash(view) == expected


FACTS = ["key", "source", "in_memory", "label", "pixel_hash", "file_hash", "grid_h", "grid_w", "error"]


def test_dataset_columns_and_metadata(gallery: Gallery, session: sv.ModelSession) -> None:
    import lance

    from simvis_widgets._io import image_hash

    table = lance.dataset(gallery.path).to_table()
    assert table.schema.names == [*FACTS, "embedding", "checksum", "features", "features_checksum"]
    meta = table.schema.metadata
    assert meta[b"simvis.format"] == b"3" and meta[b"simvis.features"] == b"store" and meta[b"simvis.channels"] == b"12"
    assert json.loads(meta[b"simvis.fingerprint"]) == json.loads(json.dumps(session.fingerprint()))
    rows = table.to_pylist()
    assert [r["key"] for r in rows] == [f"memory:{i}:{image_hash(image)}" for i, image in enumerate(IMAGES)]
    assert [r["source"] for r in rows] == ["0", "1", "2", "3", "4"] and all(r["in_memory"] for r in rows)
    assert [r["label"] for r in rows] == ['"a"', '"b"', '"c"', '"d"', '"e"']  # JSON text
    assert [(r["grid_h"], r["grid_w"]) for r in rows] == [gallery.grid(i) for i in range(5)]
    assert all(r["file_hash"] is None and r["error"] is None for r in rows)
    assert len({r["checksum"] for r in rows}) == 5  # one checksum per row (verified on read: see below)
    assert [r["pixel_hash"] for r in rows] == [e.pixel_hash for e in gallery.entries]
    embeddings = np.array([r["embedding"] for r in rows], np.float32)
    np.testing.assert_array_equal(embeddings, gallery.embeddings.numpy())
    for i, r in enumerate(rows):
        assert r["features"] == np.ascontiguousarray(gallery.stored_features(i), dtype="<f2").tobytes()
        assert r["features_checksum"] == zlib.crc32(r["features"])


def test_local_features_are_stored_as_float16(session: sv.ModelSession) -> None:
    g = Gallery.build(IMAGES[:3], session, batch_size=1, progress=False)
    for i, image in enumerate(IMAGES[:3]):
        stored = g.stored_features(i)
        expected = session.batch_features([session.resize(image)])[0].to(torch.float16).numpy()
        assert stored.dtype == np.float16
        np.testing.assert_array_equal(stored, expected)


def test_what_the_gallery_hands_out_cannot_change_it(gallery: Gallery) -> None:
    embeddings, features = gallery.embeddings.clone(), gallery.features(1).clone()
    gallery.embeddings.add_(1)
    gallery.features(1).mul_(2)
    torch.testing.assert_close(gallery.embeddings, embeddings, rtol=0, atol=0)
    torch.testing.assert_close(gallery.features(1), features, rtol=0, atol=0)
    stored = gallery.stored_features(1)
    with pytest.raises(ValueError, match="read-only"):
        stored[0, 0, 0] = 1


def test_open_refusals(gallery: Gallery, session: sv.ModelSession, tmp_path: Path) -> None:
    import copy

    import lance
    import pyarrow as pa

    from simvis_widgets.gallery.store import GalleryWriter, StoredRow

    def refused(path: object, start: str, other: sv.ModelSession = session) -> None:
        with pytest.raises(GalleryError) as err:
            Gallery.open(path, other)  # type: ignore[arg-type]
        assert str(err.value).startswith(start), str(err.value)

    missing = tmp_path / "none"
    refused(missing, f"no gallery at '{missing}' (build one with Gallery.build(source, session, '{missing}'))")
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "notes.txt").write_text("not a gallery")
    refused(plain, f"no gallery at '{plain}'")
    refused("", "the gallery path is empty")
    with pytest.raises(GalleryError, match="^the gallery path is empty$"):
        Gallery.build(IMAGES[:1], session, "", progress=False)
    lance.write_dataset(pa.table({"x": [1, 2]}), str(tmp_path / "other"))
    refused(
        tmp_path / "other",
        f"'{tmp_path / 'other'}' has no simvis-widgets metadata; this library reads gallery format 3",
    )
    where = gallery.path
    refused(
        where,
        f"gallery '{where}' was built with another session (pooling: gallery 'avg' vs session 'max'); "
        "rebuild it for this session",
        other=_session(pooling="max"),
    )
    refused(
        where,
        f"gallery '{where}' was built with another session "
        "(normalize: gallery True vs session False, pooling: gallery 'avg' vs session 'max')",
        other=_session(pooling="max", normalize=False),
    )
    retrained = copy.deepcopy(NET)
    with torch.no_grad():
        retrained[0].weight.mul_(1.01)
    stale = sv.ModelSession(retrained, "3", size=64, device="cpu")
    assert stale.name == session.name
    with pytest.raises(GalleryError, match=r"another session \(weights: gallery '[0-9a-f]+' vs session '[0-9a-f]+'\)"):
        Gallery.open(where, stale)
    with pytest.raises(GalleryError, match=r"another session \(weights: "):  # nor is anything built into it
        Gallery.build(IMAGES, stale, where, progress=False)
    assert len(Gallery.open(where, session)) == 5 and lance.dataset(where).version == 1
    Gallery.build(IMAGES[:2], session, tmp_path / "damaged", progress=False)
    lance.dataset(str(tmp_path / "damaged")).update_schema_metadata({"simvis.fingerprint": "{not json"})
    refused(tmp_path / "damaged", f"gallery '{tmp_path / 'damaged'}' has damaged metadata")
    lance.dataset(str(tmp_path / "damaged")).update_schema_metadata({"simvis.format": "2"})
    refused(tmp_path / "damaged", f"'{tmp_path / 'damaged'}' has format version 2; this library reads gallery format 3")
    nan = str(tmp_path / "nan")  # a well-formed, checksummed row with a NaN embedding
    writer = GalleryWriter(nan, session.fingerprint(), 12, "recompute")
    writer.commit([StoredRow("k", "0", True, None, "h", None, (1, 1), np.full(12, np.nan, np.float32))])
    refused(nan, f"gallery '{nan}' holds non-finite embeddings")


def test_damaged_rows_are_refused_when_read(session: sv.ModelSession, tmp_path: Path) -> None:
    import lance

    where = str(tmp_path / "g")
    Gallery.build(IMAGES, session, where, progress=False)
    dataset = lance.dataset(where)
    dataset.update({"features_checksum": "features_checksum + 1"}, where="source = '2'")
    opened = Gallery.open(where, session)  # the embeddings are intact: it opens
    i = opened.sources.index(2)
    for read in (opened.features, opened.stored_features):
        with pytest.raises(GalleryError) as err:
            read(i)
        assert str(err.value) == (
            f"gallery '{where}' is corrupt: the stored local features of row {i} fail their checksum "
            "(the data changed after it was written); rebuild the gallery"
        )
    with pytest.raises(GalleryError, match="fail their checksum"):
        opened.search(IMAGES[2], k=5)  # every row is a hit: row i's map cannot be drawn
    others = [j for j in range(5) if j != i]
    assert len(opened.hit_features(others)) == 4 and opened.explain(QUERY, others[0]).score
    dataset.update({"checksum": "checksum + 1"}, where="source = '1'")
    row = lance.dataset(where).to_table(columns=["source"]).column("source").to_pylist().index("1")
    with pytest.raises(GalleryError) as err:
        Gallery.open(where, session)
    assert str(err.value) == (
        f"gallery '{where}' is corrupt: row {row} ('1') fails its checksum (the data changed after it was "
        "written); rebuild the gallery"
    )
    relabelled = str(tmp_path / "h")
    Gallery.build(IMAGES[:2], session, relabelled, labels=["a", "b"], progress=False)
    lance.dataset(relabelled).update({"label": "'\"z\"'"}, where="source = '1'")  # valid JSON, not what was written
    with pytest.raises(GalleryError, match=r"is corrupt: row \d \('1'\) fails its checksum"):
        Gallery.open(relabelled, session)


def test_dropped_local_features_are_refused_when_read(session: sv.ModelSession, tmp_path: Path) -> None:
    """A gallery that stores features must not hand out nothing (None, or a 0-d NaN tensor) for a row whose
    features were removed while their checksum stayed."""
    import lance

    where = str(tmp_path / "g")
    Gallery.build(IMAGES[:4], session, where, progress=False)
    lance.dataset(where).update({"features": "NULL"}, where="source = '3'")
    opened = Gallery.open(where, session)
    for read in (opened.features, opened.stored_features):
        with pytest.raises(GalleryError, match="fail their checksum"):
            read(opened.sources.index(3))


# ------------------------------------------------------------------------------------------------------
# Building into an existing path
# ------------------------------------------------------------------------------------------------------


def test_rebuild_embeds_only_missing_or_changed_files(session: sv.ModelSession, tmp_path: Path) -> None:
    folder, where = tmp_path / "photos", tmp_path / "g"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(IMAGES[i]).save(folder / f"p{i}.png")
    p = [str(folder / f"p{i}.png") for i in range(4)]
    first = Gallery.build(folder, session, where, labels=["x", "y", "z"], progress=False)
    assert (first.embedded, first.reused, first.sources) == (3, 0, p[:3])
    Image.fromarray(IMAGES[3]).save(folder / "p1.png")  # changed bytes
    Image.fromarray(IMAGES[4]).save(folder / "p3.png")  # new
    second = Gallery.build(folder, session, where, labels=["x", "y", "z", "w"], progress=False)
    assert (second.embedded, second.reused, len(second)) == (2, 2, 4)
    assert dict(zip(second.sources, second.labels)) == dict(zip(p, "xyzw"))
    fresh = Gallery.build(folder, session, progress=False)
    at = {s: k for k, s in enumerate(fresh.sources)}
    for k, s in enumerate(second.sources):
        torch.testing.assert_close(second.embeddings[k], fresh.embeddings[at[s]], rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(second.stored_features(k), fresh.stored_features(at[s]))
    for s in (p[0], p[2]):  # the rows of unchanged files were kept, not recomputed
        torch.testing.assert_close(second.embeddings[second.sources.index(s)], first.embeddings[first.sources.index(s)])
    assert first.sources == p[:3] and len(first) == 3  # the first gallery still reads its own version
    relabelled = Gallery.build(folder, session, where, labels=list("ABCD"), progress=False)
    assert (relabelled.embedded, relabelled.reused) == (4, 0)  # a label change re-embeds
    assert dict(zip(relabelled.sources, relabelled.labels)) == dict(zip(p, "ABCD"))
    (folder / "p0.png").unlink()
    smaller = Gallery.build(folder, session, where, labels=list("BCD"), progress=False)
    assert (smaller.embedded, smaller.reused, sorted(smaller.sources)) == (0, 3, p[1:])  # p0's row is deleted
    assert Gallery.open(where, session).sources == smaller.sources
    same = Gallery.build(folder, session, where, labels=list("BCD"), progress=False)
    assert same.store.version == smaller.store.version  # nothing to do, nothing committed


def test_rebuild_knows_in_memory_images_by_position_and_pixels(session: sv.ModelSession, tmp_path: Path) -> None:
    where = tmp_path / "g"
    first = Gallery.build(IMAGES[:3], session, where, progress=False)
    again = Gallery.build([IMAGES[0], IMAGES[4], Image.fromarray(IMAGES[2])], session, where, progress=False)
    assert (again.embedded, again.reused, len(again), sorted(again.sources)) == (1, 2, 3, [0, 1, 2])
    emb = dict(zip(again.sources, again.embeddings))
    torch.testing.assert_close(emb[0], first.embeddings[0], rtol=0, atol=0)
    torch.testing.assert_close(emb[2], first.embeddings[2], rtol=0, atol=0)
    fresh = Gallery.build([IMAGES[4]], session, progress=False)
    torch.testing.assert_close(emb[1], fresh.embeddings[0], rtol=1e-5, atol=1e-6)
    moved = Gallery.build([IMAGES[2], IMAGES[0]], session, where, progress=False)
    assert (moved.embedded, moved.reused, sorted(moved.sources)) == (2, 0, [0, 1])  # other positions: new
    shown = Gallery.open(where, session, images=[IMAGES[2], IMAGES[0]])
    np.testing.assert_array_equal(shown.image(shown.sources.index(0)), IMAGES[2])


def test_rebuild_does_not_retry_known_unreadable_files(session: sv.ModelSession, tmp_path: Path) -> None:
    folder, where = tmp_path / "photos", tmp_path / "g"
    folder.mkdir()
    Image.fromarray(IMAGES[0]).save(folder / "good.png")
    (folder / "bad.png").write_bytes(b"\x89PNG broken")
    with pytest.warns(UserWarning, match="bad.png"):
        Gallery.build(folder, session, where, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = Gallery.build(folder, session, where, progress=False)
    assert (again.embedded, again.reused, len(again)) == (0, 1, 1)
    ((digest, (source, _)),) = again.unreadable.items()
    assert digest == file_digest(folder / "bad.png") and source == str(folder / "bad.png")
    assert Gallery.open(where, session).unreadable == again.unreadable
    os.rename(folder / "bad.png", folder / "renamed.png")  # files are known by path and bytes: tried again
    with pytest.warns(UserWarning, match="renamed.png"):
        renamed = Gallery.build(folder, session, where, progress=False)
    assert [src for src, _ in renamed.unreadable.values()] == [str(folder / "renamed.png")]  # bad.png's row gone


def test_dataset_rebuilds_with_and_without_labels(session: sv.ModelSession, tmp_path: Path) -> None:
    class PilImages(torch.utils.data.Dataset):  # type: ignore[type-arg]
        def __len__(self) -> int:
            return 2

        def __getitem__(self, i: int) -> Image.Image:
            return Image.fromarray(IMAGES[i])

    where = tmp_path / "g"
    first = Gallery.build(PilImages(), session, where, labels=["x", "y"], progress=False)
    assert first.labels == ["x", "y"]
    again = Gallery.build(PilImages(), session, where, labels=["x", "y"], progress=False)
    assert (again.reused, again.embedded, again.labels) == (2, 0, ["x", "y"])
    unlabelled = Gallery.build(PilImages(), session, where, progress=False)
    assert (unlabelled.reused, unlabelled.embedded, unlabelled.labels) == (0, 2, [None, None])
    assert gallery_sources(PilImages(), None)[1] is None


def test_commits_as_the_build_goes(session: sv.ModelSession, tmp_path: Path) -> None:
    import lance

    where = tmp_path / "g"
    g = Gallery.build(IMAGES, session, where, batch_size=1, commit_every=2, progress=False)
    assert g.store.version == 3 and len(g) == 5
    dataset = lance.dataset(str(where))
    assert [dataset.checkout_version(v).count_rows() for v in (1, 2, 3)] == [2, 4, 5]
    again = Gallery.build(IMAGES, session, where, batch_size=1, commit_every=2, progress=False)
    assert (again.reused, again.embedded, again.store.version) == (5, 0, 3)
    once = Gallery.build(IMAGES, session, tmp_path / "once", batch_size=1, progress=False)
    assert once.store.version == 1  # the default: one commit per 256 images
    timed = Gallery.build(IMAGES, session, tmp_path / "timed", batch_size=1, commit_seconds=1e-9, progress=False)
    assert timed.store.version == 5  # every batch is older than commit_seconds
    torch.testing.assert_close(timed.embeddings, once.embeddings, rtol=0, atol=0)


def test_labels_are_stored_as_plain_json_values(session: sv.ModelSession, tmp_path: Path) -> None:
    import lance

    labels = [np.int64(3), np.float32(0.5), np.bool_(True), torch.tensor(2), ("tuple", 1)]
    built = Gallery.build(IMAGES, session, tmp_path / "g", labels=labels, progress=False)
    for g in (built, Gallery.open(tmp_path / "g", session)):
        assert g.labels == [3, 0.5, True, 2, ["tuple", 1]]
        assert [type(label) for label in g.labels] == [int, float, bool, int, list]
    assert lance.dataset(str(tmp_path / "g")).to_table().column("label").to_pylist() == [
        "3", "0.5", "true", "2", '["tuple", 1]'
    ]  # fmt: skip
    assert {type(h.label) for h in built.search(QUERY, k=5)} == {int, float, bool, list}
    for bad, name in ((object(), "object"), ({1, 2}, "set"), (np.arange(3), "ndarray"), (b"x", "bytes")):
        with pytest.raises(GalleryError) as err:
            Gallery.build(IMAGES[:2], session, tmp_path / "bad", labels=["ok", bad], progress=False)
        assert str(err.value) == f"labels must be JSON values (str, int, float, bool, lists of them); got {name}"
    assert not (tmp_path / "bad").exists()


def test_recomputed_features_give_the_stored_scores_and_exact_maps(session: sv.ModelSession, tmp_path: Path) -> None:
    import lance

    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(IMAGES[i]).save(folder / f"p{i}.png")
    stored = Gallery.build(folder, session, tmp_path / "s", progress=False)
    recomputed = Gallery.build(folder, session, tmp_path / "r", features="recompute", progress=False)
    assert recomputed.features_mode == "recompute" and repr(recomputed).endswith("features='recompute')")
    assert lance.dataset(str(tmp_path / "r")).to_table().column("features").null_count == 3
    mask = np.zeros(QUERY.shape[:2])
    mask[5:40, 10:50] = 1
    for region in ({}, {"mask": mask}):
        a, b = stored.search(QUERY, k=3, **region), recomputed.search(QUERY, k=3, **region)
        assert [h.index for h in a] == [h.index for h in b]
        np.testing.assert_allclose([h.score for h in b], [h.score for h in a], rtol=1e-5, atol=1e-7)
        for x, y in zip(a, b):
            ex = session.explain(QUERY, IMAGES[y.index])
            exact = ex.map_b if not region else ex.region_map("a", mask)
            scale = float(exact.abs().max())
            torch.testing.assert_close(y.map, exact, rtol=1e-5, atol=1e-5 * scale)  # recomputed: float32 maps
            torch.testing.assert_close(x.map, y.map, rtol=1e-2, atol=1e-3 * scale)  # stored: float16 features
    torch.testing.assert_close(recomputed.features(0), session.features(IMAGES[0]), rtol=1e-5, atol=1e-6)
    with pytest.raises(GalleryError) as err:
        recomputed.stored_features(0)
    assert str(err.value) == "this gallery stores no local features (features='recompute'): use features()"
    Image.fromarray(IMAGES[4]).save(folder / "p1.png")  # changed since the build
    with pytest.raises(GalleryError) as err:
        recomputed.features(1)
    assert str(err.value) == (
        f"'{folder / 'p1.png'}' changed since the gallery was built; rebuild it (Gallery.build into the same path)"
    )
    with pytest.raises(GalleryError, match="changed since the gallery was built"):
        recomputed.search(IMAGES[1], k=3)
    assert len(stored.search(IMAGES[1], k=3)) == 3  # stored features do not need the file
    with pytest.raises(GalleryError) as err:
        Gallery.build(folder, session, tmp_path / "s", features="recompute", progress=False)
    assert str(err.value) == (
        f"gallery '{tmp_path / 's'}' stores features='store'; building it with features='recompute' needs a new path"
    )
    in_memory = Gallery.build(IMAGES[:2], session, tmp_path / "m", features="recompute", progress=False)
    torch.testing.assert_close(in_memory.features(1), session.features(IMAGES[1]), rtol=1e-5, atol=1e-6)
    swapped = Gallery.open(tmp_path / "m", session, images=[IMAGES[1], IMAGES[0]])
    with pytest.raises(GalleryError) as err:
        swapped.features(0)
    assert str(err.value) == "in-memory image 0 is not the one the gallery was built from"


# ------------------------------------------------------------------------------------------------------
# Images, explanations, limits
# ------------------------------------------------------------------------------------------------------


def test_file_galleries_read_their_images(session: sv.ModelSession, tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(2):
        Image.fromarray(IMAGES[i]).save(folder / f"p{i}.png")
    built = Gallery.build(folder, session, tmp_path / "g", progress=False)
    loaded = Gallery.open(tmp_path / "g", session)  # no images=: read from the files
    np.testing.assert_array_equal(loaded.image(1), IMAGES[1])
    ex = loaded.explain(QUERY, 0)
    assert ex.image_b is not None and ex.image_b.shape == session.resize(IMAGES[0]).shape
    (folder / "p0.png").write_bytes(b"\x89PNG no longer an image")  # unreadable now: explained without it
    ex = loaded.explain(QUERY, 0)
    assert ex.image_b is None and ex.score == pytest.approx(built.explain(QUERY, 0).score, rel=1e-6)
    (folder / "p1.png").unlink()  # gone: explained without it
    assert loaded.explain(QUERY, 1).image_b is None


def test_in_memory_galleries_explain_without_their_images(gallery: Gallery, session: sv.ModelSession) -> None:
    loaded = Gallery.open(gallery.path, session)
    ex = loaded.explain(QUERY, 2)
    assert ex.image_b is None and ex.score == pytest.approx(gallery.explain(QUERY, 2).score, rel=1e-6)


def test_default_k_is_ten(session: sv.ModelSession) -> None:
    many = Gallery.build(_images(12), session, progress=False)
    assert len(many.search(QUERY)) == 10
    enc = session.encode(QUERY)
    assert len(many.search_features(enc.features, None)) == 10


class _Loud(torch.nn.Module):
    """Features far above float16's largest value (65504), as an unnormalised backbone may give."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(5)
        self.conv = torch.nn.Conv2d(3, 4, 16, stride=16)
        self.out = torch.nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.conv(x).abs() * 1e5 + 7e4)


def test_features_beyond_float16_are_not_stored_as_infinities() -> None:
    """The gallery stores local features as float16: values above 65504 must not silently become inf (search
    then fails for every hit with 'largest feature magnitude inf ... rescale them', although the session
    explains the same pair). Either the build refuses them clearly or the search works."""
    session = sv.ModelSession(_Loud(), "out", size=64, device="cpu")
    images = IMAGES[:3:2] + [QUERY]
    try:
        g = Gallery.build(images, session, progress=False)
    except GalleryError as err:
        assert "float16" in str(err)
        return
    for i in range(len(g)):
        assert np.isfinite(np.asarray(g.stored_features(i), dtype=np.float32)).all()
    for hit in g.search(images[0], k=3):
        assert torch.isfinite(hit.map).all()
        assert hit.score == pytest.approx(session.explain(images[0], images[hit.index]).score, rel=1e-3)
