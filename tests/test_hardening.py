"""Checks that pin behaviour no other test pinned: dot-product galleries, galleries holding a copy of the query,
colour scales of mostly-negative maps and of hit figures, and the ``normalized`` flag of dot-product
decompositions. Each one fails on a realistic one-line bug that the rest of the suite let through."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib.colors import Normalize

import simvis_widgets as sv
from simvis_widgets import render
from simvis_widgets.gallery import Gallery, Hit

from oracles import torch_pool


def _region(image: np.ndarray) -> np.ndarray:
    mask = np.zeros(image.shape[:2])
    h, w = mask.shape
    mask[h // 4 : (3 * h) // 4, w // 5 : w // 2] = 1
    return mask


@pytest.fixture(scope="module")
def dot_session(resnet18_random: sv.ModelSession) -> sv.ModelSession:
    return resnet18_random.variant(normalize=False)


@pytest.fixture(scope="module")
def dot_gallery(dot_session: sv.ModelSession, photos: dict) -> Gallery:
    return Gallery.build(
        [photos[k] for k in ("chelsea", "coffee", "astronaut", "motorcycle_left")], dot_session, progress=False
    )


# ------------------------------------------------------------------------------------------------------
# Dot-product (normalize=False) galleries
# ------------------------------------------------------------------------------------------------------


def test_dot_product_gallery_scores_are_the_explained_scores(
    dot_gallery: Gallery, dot_session: sv.ModelSession, photos: dict
) -> None:
    query = photos["motorcycle_right"]
    images = [photos[k] for k in ("chelsea", "coffee", "astronaut", "motorcycle_left")]
    hits = dot_gallery.search(query, k=4)
    assert sorted(h.index for h in hits) == [0, 1, 2, 3]
    e_query = float(dot_session.embed(query).norm())
    assert abs(e_query - 1) > 0.1  # not normalised: a missing or extra 1/|e_A| would show
    for hit in hits:
        ex = dot_session.explain(query, images[hit.index])
        assert not ex.normalized and ex.scale == 1.0
        expected = float(dot_session.embed(query) @ dot_session.embed(images[hit.index]))  # the raw dot product
        assert ex.score == pytest.approx(expected, rel=1e-5)
        assert hit.score == pytest.approx(ex.score, rel=1e-5)
    mask = _region(query)
    for hit in dot_gallery.search(query, mask=mask, k=4):
        expected = dot_session.explain(query, images[hit.index]).region_score("a", mask)
        assert hit.score == pytest.approx(expected, rel=1e-5, abs=1e-6)
        assert float(hit.map.sum()) == pytest.approx(expected, rel=2e-2)


def test_dot_product_gallery_scoring_matrix_is_the_raw_embeddings(
    dot_gallery: Gallery, dot_session: sv.ModelSession, photos: dict
) -> None:
    torch.testing.assert_close(dot_gallery.scoring_matrix(), dot_gallery.embeddings)
    e = dot_session.embed(photos["coffee"])
    torch.testing.assert_close(dot_gallery.embeddings[1], e, rtol=1e-5, atol=1e-5)


def test_cosine_gallery_scores_are_cosines(resnet18_random: sv.ModelSession, photos: dict) -> None:
    images = [photos[k] for k in ("chelsea", "coffee", "astronaut")]
    gallery = Gallery.build(images, resnet18_random, progress=False)
    e = torch.nn.functional.normalize(gallery.embeddings, dim=1)
    torch.testing.assert_close(gallery.scoring_matrix(), e)
    q = resnet18_random.embed(photos["motorcycle_right"])
    for hit in gallery.search(photos["motorcycle_right"], k=3):
        assert hit.score == pytest.approx(float(q @ e[hit.index]), rel=1e-5)


# ------------------------------------------------------------------------------------------------------
# exclude_self with the query stored more than once
# ------------------------------------------------------------------------------------------------------


def test_exclude_self_drops_every_copy_of_the_query(resnet18_random: sv.ModelSession, photos: dict) -> None:
    query = photos["chelsea"]
    images = [query, photos["coffee"], query.copy(), photos["astronaut"]]  # a pixel-identical second copy
    gallery = Gallery.build(images, resnet18_random, progress=False)
    plain = gallery.search(query, k=4)
    assert {h.index for h in plain[:2]} == {0, 2} and plain[0].score == pytest.approx(1.0, abs=1e-5)
    kept = gallery.search(query, k=4, exclude_self=True)
    assert sorted(h.index for h in kept) == [1, 3]
    assert [h.index for h in gallery.search(query, k=1, exclude_self=True)] in ([1], [3])
    # A region query excludes the same copies; another query excludes nothing.
    assert sorted(h.index for h in gallery.search(query, mask=_region(query), k=4, exclude_self=True)) == [1, 3]
    assert len(gallery.search(photos["coffee"], k=4, exclude_self=True)) == 3


# ------------------------------------------------------------------------------------------------------
# Colour scales
# ------------------------------------------------------------------------------------------------------


def test_shared_limit_is_the_largest_magnitude_of_mostly_negative_maps() -> None:
    a = np.array([[-5.0, 1.0], [-2.0, -0.5]])
    b = torch.tensor([-3.0, 2.0, -4.5])
    assert render.shared_limit(a, b) == 5.0
    assert render.shared_limit(b) == 4.5
    assert render.shared_limit(-np.ones((2, 2)) * 0.25) == 0.25
    assert render.shared_limit(np.zeros((3, 3))) == 1.0  # nothing to show: a unit scale, never [0, 0]
    assert render.shared_limit(torch.tensor([0.5, -0.75], requires_grad=True)) == 0.75


def _heat_norms(fig) -> list[Normalize]:  # type: ignore[no-untyped-def]
    """The colour norms of the heat layers (2-D arrays) of every axes in ``fig``."""
    return [im.norm for ax in fig.axes for im in ax.get_images() if im.get_array().ndim == 2]


def test_hits_figure_puts_every_map_on_one_symmetric_scale() -> None:
    rng = np.random.default_rng(0)
    maps = [
        torch.from_numpy(rng.random((3, 4))) * 0.1,
        -torch.from_numpy(rng.random((2, 2))) * 7.0,
        torch.tensor([[0.5, -0.25], [1.5, 2.0]]),
    ]
    hits = [Hit(i, i, 0.9 - 0.1 * i, m, label=f"g{i}" if i else None) for i, m in enumerate(maps)]
    images = [np.full((30 + 10 * i, 40, 3), 80 * i, np.uint8) for i in range(3)]
    query = np.zeros((50, 60, 3), np.uint8)
    mask = np.zeros((5, 6))
    mask[1:3, 2:5] = 1
    fig = render.hits_figure(query, hits, images, mask=mask, title="hits")
    v = max(float(m.abs().max()) for m in maps)
    norms = _heat_norms(fig)
    assert len(norms) == 3
    for norm in norms:
        assert (norm.vmin, norm.vmax) == pytest.approx((-v, v))
    texts = [ax.get_xlabel() for ax in fig.axes[:4]]
    assert texts[0] == "query (region)"
    assert texts[1] == "#1  0.9000" and texts[2] == "#2  0.8000\ng1" and texts[3] == "#3  0.7000\ng2"
    assert fig._suptitle.get_text() == "hits"
    bar = fig.axes[-1]
    assert len(fig.axes) == 5 and bar.get_xlabel() == "where the query region is matched"
    assert list(bar.get_xticks()) == pytest.approx([-v, 0, v])
    # No hits: the query alone, no colour bar.
    empty = render.hits_figure(query, [], [])
    assert len(empty.axes) == 1 and empty.axes[0].get_xlabel() == "query"


def test_hits_figure_from_a_search_uses_the_hit_maps(resnet18_random: sv.ModelSession, photos: dict) -> None:
    images = [photos[k] for k in ("chelsea", "coffee", "astronaut")]
    gallery = Gallery.build(images, resnet18_random, progress=False)
    query = photos["motorcycle_right"]
    hits = gallery.search(query, mask=_region(query), k=3)
    fig = render.hits_figure(query, hits, [gallery.image(h.index) for h in hits], mask=_region(query))
    v = render.shared_limit(*[h.map for h in hits])
    assert {(n.vmin, n.vmax) for n in _heat_norms(fig)} == {(-v, v)}


def test_pair_figures_use_one_symmetric_scale_of_their_maps(resnet18_random: sv.ModelSession, photos: dict) -> None:
    ex = resnet18_random.explain(photos["chelsea"], photos["coffee"])
    for fig, maps in (
        (ex.figure(), (ex.map_a, ex.map_b)),
        (ex.point_figure("a", 1, 2), (ex.point_map("a", 1, 2),)),
        (ex.region_figure("b", np.ones(ex.grid_b)), (ex.region_map("b", np.ones(ex.grid_b)),)),
    ):
        v = render.shared_limit(*maps)
        norms = _heat_norms(fig)
        assert norms and {(n.vmin, n.vmax) for n in norms} == {(-v, v)}


# ------------------------------------------------------------------------------------------------------
# normalize=False decompositions
# ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("pooling", ["avg", "max", "gem"])
def test_dot_product_decomposition_reports_it_and_scores_the_raw_dot_product(pooling: str) -> None:
    g = torch.Generator().manual_seed(3)
    xa, xb = (
        torch.rand(6, 3, 4, generator=g, dtype=torch.float64),
        torch.rand(6, 2, 5, generator=g, dtype=torch.float64),
    )
    weight = torch.randn(4, 6, generator=g, dtype=torch.float64)
    for head in (None, weight):
        ex = sv.decompose(xa, xb, pooling, 3.0, normalize=False, head=head)
        fa, fb = torch_pool(xa, pooling), torch_pool(xb, pooling)
        if head is not None:
            fa, fb = head @ fa, head @ fb
        assert ex.normalized is False and ex.scale == 1.0
        assert ex.score == pytest.approx(float(fa @ fb), rel=1e-12)
        assert abs(ex.score) > 1.1  # not a cosine
        assert "dot" in repr(ex) and "cosine" not in repr(ex)
        cos = sv.decompose(xa, xb, pooling, 3.0, normalize=True, head=head)
        assert cos.normalized is True and cos.score == pytest.approx(
            float(fa @ fb / (fa.norm() * fb.norm())), rel=1e-12
        )
        assert cos.scale == pytest.approx(1 / float(fa.norm() * fb.norm()), rel=1e-12)


def test_dot_product_session_explains_with_the_raw_dot_product(dot_session: sv.ModelSession, photos: dict) -> None:
    ex = dot_session.explain(photos["chelsea"], photos["coffee"])
    assert ex.normalized is False
    e_a, e_b = dot_session.embed(photos["chelsea"]), dot_session.embed(photos["coffee"])
    assert ex.score == pytest.approx(float(e_a @ e_b), rel=1e-5)
    assert "dot product" in ex.figure()._suptitle.get_text()
