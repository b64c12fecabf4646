"""RetrievalExplorer (a preset of the Explorer) without a browser: what the strip shows, region updates, selection,
errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import simvis_widgets as sv
from simvis_widgets.gallery import Gallery
from simvis_widgets.widgets.explorer import Explorer


@pytest.fixture(scope="module")
def setup(resnet18_random: sv.ModelSession):  # type: ignore[no-untyped-def]
    views = sv.datasets.demo_views(views_per_photo=3, short_side=128, photos=("chelsea", "coffee", "rocket"))
    gallery = Gallery.build(views.images, resnet18_random, labels=views.groups, progress=False)
    return resnet18_random, gallery, views


def test_initial_whole_image_results(setup) -> None:  # type: ignore[no-untyped-def]
    session, gallery, views = setup
    r = sv.RetrievalExplorer(session, gallery, views.images[0], k=4)
    expected = gallery.search(views.images[0], k=4, exclude_self=True)
    assert [h.index for h in r.results] == [h.index for h in expected]
    payload = r.strip
    assert [p["rank"] for p in payload] == [0, 1, 2, 3] and payload[0]["score"] == pytest.approx(expected[0].score)
    assert bytes(payload[0]["data"]["thumb"])[:2] == b"\xff\xd8"  # JPEG thumbnail
    data = payload[0]["data"]
    m = np.frombuffer(bytes(data["map_b"]), "<f4").reshape(data["grid_b"])
    np.testing.assert_allclose(m, expected[0].map.numpy(), rtol=1e-5, atol=1e-7)
    assert r.gallery_size == len(gallery) and r.grid_a == list(session.features(views.images[0]).shape[1:])
    # the preset: the Explorer's view in paint mode, ranked by the painted region, the best hit on the right
    assert isinstance(r, Explorer) and str(r._esm) == str(Explorer._esm) and str(r._css) == str(Explorer._css)
    assert r.mode == "paint" and r.rank_by == "region" and r.selected == expected[0].index
    assert r.score == pytest.approx(gallery.explain(views.images[0], expected[0].index).score, rel=1e-6)


def test_region_weights_from_the_browser_rerank(setup) -> None:  # type: ignore[no-untyped-def]
    session, gallery, views = setup
    r = sv.RetrievalExplorer(session, gallery, views.images[3], k=3, exclude_self=False)
    gh, gw = r.grid_a
    weights = np.zeros((gh, gw))
    weights[: gh // 2, : gw // 2] = 1
    version = r.strip_version
    r.query_region = {"kind": "cells", "weights": weights.ravel().tolist(), "id": 7}  # what the JS sends
    assert r.strip_version > version and r.strip_for == 7
    expected = gallery.search_features(
        session.features(views.images[3]), torch.tensor(weights, dtype=torch.float32), k=3
    )
    assert [(h.index, round(h.score, 6)) for h in r.results] == [(h.index, round(h.score, 6)) for h in expected]
    r.k = 5
    assert len(r.results) == 5
    r.rank_by = "whole"
    assert r.results[0].index == 3 and r.results[0].score == pytest.approx(1.0, abs=1e-5)  # itself, not excluded


def test_select_shows_the_pair_and_calls_back(setup) -> None:  # type: ignore[no-untyped-def]
    session, gallery, views = setup
    r = sv.RetrievalExplorer(session, gallery, views.images[1], k=3)
    seen = []
    r.on_select(seen.append)
    chosen = r.results[1].index
    r.set_state({"selected": chosen})  # what a click sends
    assert r.selected == chosen and r.explanation is not None
    assert r.score == pytest.approx(session.explain(views.images[1], views.images[chosen]).score, rel=2e-3)
    assert r.score == pytest.approx(gallery.explain(views.images[1], chosen).score, rel=1e-6)  # stored float16
    assert [h.index for h in seen] == [chosen]
    shown = r.select(r.results[0].index)
    assert shown is r.explanation and r.selected == r.results[0].index and len(seen) == 2
    assert r.select(r.selected) is r.explanation and len(seen) == 3  # selecting the shown hit calls back too
    linked = sv.PairExplorer(session, views.images[0], views.images[1])
    r2 = sv.RetrievalExplorer(session, gallery, views.images[1], k=3, pair=linked)
    r2.select(r2.results[1].index)
    assert r2.pair is linked  # a linked explorer, where the user put it, follows the selection
    assert linked.score == pytest.approx(
        session.explain(views.images[1], views.images[r2.results[1].index]).score, rel=1e-6
    )


def test_set_query_resets_the_region(setup) -> None:  # type: ignore[no-untyped-def]
    session, gallery, views = setup
    r = sv.RetrievalExplorer(session, gallery, views.images[0], k=2)
    version = r.query_version
    gh, gw = r.grid_a
    r.query_region = {"kind": "cells", "weights": [1.0] + [0.0] * (gh * gw - 1)}
    r.set_query(views.images[6])
    assert r.query_version == version + 1 and r.query_region == {"kind": "whole"} and r.weights() is None
    assert r.results[0].label == views.groups[6] and r.selected == r.results[0].index


def test_errors(setup, resnet18_random: sv.ModelSession) -> None:  # type: ignore[no-untyped-def]
    session, gallery, views = setup
    other = sv.ModelSession(session.model, "layer4", size=128, device="cpu")
    with pytest.raises(sv.WidgetError, match="another session object"):
        sv.RetrievalExplorer(other, gallery, views.images[0])
    with pytest.raises(sv.WidgetError, match="gallery must be a simvis_widgets.Gallery"):
        sv.RetrievalExplorer(session, [views.images[0]], views.images[0])  # type: ignore[arg-type]
    r = sv.RetrievalExplorer(session, gallery, views.images[0])
    with pytest.raises(sv.WidgetError, match="region weights have 3 cells"):
        r.query_region = {"kind": "cells", "weights": [1.0, 0.0, 0.0]}
    with pytest.raises(sv.ImageInputError):
        r.set_query(np.zeros((0, 3, 3), np.uint8))


def test_region_weights_and_selection_are_checked(setup) -> None:  # type: ignore[no-untyped-def]
    session, gallery, views = setup
    r = sv.RetrievalExplorer(session, gallery, views.images[1], k=3)
    gh, gw = r.grid_a
    for bad, why in (
        ([float("nan")] * (gh * gw), "NaN"),
        ([-1.0] * (gh * gw), "all negative"),
        ([2.0] * (gh * gw), "> 1"),
    ):
        with pytest.raises(sv.WidgetError, match=r"finite numbers in \[0, 1\]"):  # the search it triggers refuses
            r.query_region = {"kind": "cells", "weights": bad, "id": 1, "why": why}
        with pytest.raises(sv.WidgetError, match=r"finite numbers in \[0, 1\]"):
            r.weights()
    r.query_region = {"kind": "cells", "weights": [0.0] * (gh * gw), "id": 2}
    assert r.weights() is None  # everything erased: the whole image, as documented
    for bad_index in (-1, len(gallery), 1.0, True):
        with pytest.raises(sv.WidgetError, match="gallery index"):
            r.select(bad_index)
    with pytest.raises(sv.GalleryError, match="gallery index"):
        gallery.image(-1)
