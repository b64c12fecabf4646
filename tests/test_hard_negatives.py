"""Gallery.hard_negatives against brute force: cosine scores of the gallery's stored embeddings, every query of a
small labelled demo gallery (random-weight ResNet-18, so rankings mix the photos and hard negatives exist)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import simvis_widgets as sv
from simvis_widgets.gallery import Gallery, GalleryError


@pytest.fixture(scope="module")
def gallery(resnet18_random: sv.ModelSession) -> tuple[Gallery, sv.datasets.DemoViews]:
    views = sv.datasets.demo_views(
        views_per_photo=3, short_side=128, photos=("chelsea", "coffee", "astronaut", "rocket")
    )
    return Gallery.build(views.images, resnet18_random, labels=views.groups, progress=False), views


def _brute_force(gallery: Gallery, i: int, label: str) -> list[tuple[int, float]]:
    e = gallery.embeddings.double()
    scores = torch.nn.functional.cosine_similarity(e[i : i + 1], e).numpy()
    labels = np.asarray(gallery.labels)
    others = np.arange(len(gallery)) != i
    weakest = scores[others & (labels == label)].min()
    hard = np.flatnonzero(others & (labels != label) & (scores > weakest))
    return [(int(j), float(scores[j])) for j in hard[np.argsort(-scores[hard], kind="stable")]]


def test_hard_negatives_equal_brute_force(gallery: tuple[Gallery, sv.datasets.DemoViews]) -> None:
    g, views = gallery
    found = 0
    for i, image in enumerate(views.images):
        label = views.groups[i]
        want = _brute_force(g, i, label)
        got = g.hard_negatives(image, label, k=len(g))
        assert [h.index for h in got] == [j for j, _ in want], f"query {i}"
        np.testing.assert_allclose([h.score for h in got], [s for _, s in want], rtol=1e-4, atol=1e-5)
        assert all(h.label != label for h in got) and all(isinstance(h, sv.gallery.Hit) for h in got)
        found += len(got)
        top = g.hard_negatives(image, label, k=2)
        assert [h.index for h in top] == [j for j, _ in want][:2]
    assert found > 0, "no query of this gallery has a hard negative: the test would check nothing"


def test_another_label_as_the_positives(gallery: tuple[Gallery, sv.datasets.DemoViews]) -> None:
    """``label`` need not be the query's own: the query's own views are then negatives like any other."""
    g, views = gallery
    want = _brute_force(g, 0, "coffee")
    assert [h.index for h in g.hard_negatives(views.images[0], "coffee", k=len(g))] == [j for j, _ in want]


def test_errors(gallery: tuple[Gallery, sv.datasets.DemoViews], resnet18_random: sv.ModelSession) -> None:
    g, views = gallery
    with pytest.raises(GalleryError, match="label 'zebra' is not in the gallery"):
        g.hard_negatives(views.images[0], "zebra")
    with pytest.raises(GalleryError, match="k must be a positive integer"):
        g.hard_negatives(views.images[0], "chelsea", k=0)
    alone = Gallery.build(views.images[:4], resnet18_random, labels=["solo", "x", "x", "x"], progress=False)
    with pytest.raises(GalleryError, match="no positives: the only gallery images labelled 'solo' are the query"):
        alone.hard_negatives(views.images[0], "solo")
