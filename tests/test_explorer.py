"""Explorer without a browser: the state sent to the front end (each hit's contributions once), traits, the strip
against ``Gallery.search``, the per-hit maps against independent explanations, selection, errors, the export."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import traitlets

import simvis_widgets as sv
from simvis_widgets.decompose import cell_weights
from simvis_widgets.gallery import Gallery


@pytest.fixture(scope="module")
def setup(resnet18_random: sv.ModelSession):  # type: ignore[no-untyped-def]
    views = sv.datasets.demo_views(views_per_photo=3, short_side=128, photos=("chelsea", "coffee", "rocket"))
    gallery = Gallery.build(views.images, resnet18_random, labels=views.groups, progress=False)
    return resnet18_random, gallery, views


def _pairwise(data: dict) -> np.ndarray:
    """P of one strip entry as the browser decodes it (encoding.matrix_payload)."""
    assert data["matrix_kind"] == "pairwise" and data["matrix_dtype"] == "float32"
    n_a, n_b = np.prod(data["grid_a"]), np.prod(data["grid_b"])
    return data["matrix_scale"] * np.frombuffer(bytes(data["pairwise"]), "<f4").reshape(n_a, n_b)


def _ranked(hits: list[sv.Hit]) -> list[tuple[int, float]]:
    return [(h.index, round(h.score, 6)) for h in hits]


def test_strip_equals_gallery_search_and_the_best_hit_is_shown(setup) -> None:  # type: ignore[no-untyped-def]
    session, gallery, views = setup
    e = sv.Explorer(session, views.images[0], gallery=gallery, k=4)
    expected = gallery.search(views.images[0], k=4, exclude_self=True)
    assert _ranked(e.results) == _ranked(expected)
    assert [(s["rank"], s["index"]) for s in e.strip] == [(r, h.index) for r, h in enumerate(expected)]
    assert e.strip[0]["score"] == pytest.approx(expected[0].score) and e.strip[0]["label"] == expected[0].label
    assert e.selected == expected[0].index and e.gallery_size == len(gallery) and e.k == 4
    hit = e.hit_pair(e.selected)
    assert e.score == pytest.approx(hit.score) and e.grid_b == list(hit.grid_b)
    assert bytes(e.strip[0]["data"]["thumb"])[:2] == b"\xff\xd8"  # JPEG thumbnail


def test_each_hit_map_equals_an_independent_explanation(setup) -> None:  # type: ignore[no-untyped-def]
    session, gallery, views = setup
    e = sv.Explorer(session, views.images[4], gallery=gallery, k=5, exclude_self=False)
    assert [s["index"] for s in e.strip][0] == 4  # the query itself, not excluded
    for entry, hit in zip(e.strip, e.results):
        independent = session.explain(views.images[4], views.images[entry["index"]])  # float32 features
        P = _pairwise(entry["data"])
        tol = 2e-3 * float(independent.pairwise.abs().max())  # the gallery stores features as float16
        np.testing.assert_allclose(P, independent.pairwise.numpy(), rtol=0, atol=tol)
        map_b = np.frombuffer(bytes(entry["data"]["map_b"]), "<f4").reshape(entry["data"]["grid_b"])
        np.testing.assert_allclose(map_b, hit.map.numpy(), rtol=1e-5, atol=1e-7)  # the strip's whole-image map
        assert P.sum() == pytest.approx(entry["score"], rel=1e-4)  # the maps add up to the exact score


def test_contributions_go_once_per_hit_and_again_on_request(setup) -> None:  # type: ignore[no-untyped-def]
    session, gallery, views = setup
    e = sv.Explorer(session, views.images[1], gallery=gallery, k=3)
    first = {s["index"] for s in e.strip}
    e.k = 6
    again = [s for s in e.strip if s["index"] in first]
    fresh = [s for s in e.strip if s["index"] not in first]
    assert len(again) == 3 and not any("data" in s for s in again)
    assert len(fresh) == 3 and all("data" in s for s in fresh)
    e._on_message(e, {"event": "resend"}, [])  # a view that lacks some hits (a second display) asks
    assert all("data" in s for s in e.strip) and len(e.strip) == 6


def test_region_from_the_browser_reranks_like_gallery_search(setup) -> None:  # type: ignore[no-untyped-def]
    session, gallery, views = setup
    query = views.images[3]
    e = sv.Explorer(session, query, gallery=gallery, k=3, exclude_self=False)
    gh, gw = e.grid_a
    assert tuple(e.size_a) == query.shape[:2]  # masks in query pixels are masks in displayed pixels
    mask = np.zeros(e.size_a, np.float32)
    mask[: e.size_a[0] // 2, : e.size_a[1] // 3] = 1
    weights = cell_weights(mask, (gh, gw), tuple(e.size_a))
    version = e.strip_version
    e.query_region = {"kind": "cells", "weights": weights.ravel().tolist(), "id": 7}  # what a stroke sends
    assert e.strip_version == version + 1 and e.strip_for == 7
    assert _ranked(e.results) == _ranked(gallery.search(query, mask=mask, k=3))
    e.mask_a = mask  # the same region at the end of the stroke: no second search
    assert e.strip_version == version + 1
    e.rank_by = "cell"
    e.hover_a = [1, 2]
    point = ((2 + 0.5) * query.shape[1] / gw, (1 + 0.5) * query.shape[0] / gh)
    assert _ranked(e.results) == _ranked(gallery.search(query, point=point, k=3))
    e.rank_by = "whole"
    assert _ranked(e.results) == _ranked(gallery.search(query, k=3))
    e.rank_by = "region"
    e.mask_a = None  # Clear
    assert e.query_region == {"kind": "whole"} and _ranked(e.results) == _ranked(gallery.search(query, k=3))


def test_selecting_a_hit_swaps_the_pair_and_keeps_the_query_state(setup) -> None:  # type: ignore[no-untyped-def]
    session, gallery, views = setup
    e = sv.Explorer(session, views.images[6], gallery=gallery, k=4)
    cells = np.zeros(e.grid_a)
    cells[0, :2] = 1
    e.mask_a = cells
    e.hover_a = [1, 1]
    e.mode = "paint"
    chosen = next(h.index for h in e.results if h.index != e.selected)
    image_a, version = e.image_a, e._pair_version
    e.selected = chosen  # what a click or an arrow key sets
    assert e._pair_version == version + 1 and e.image_a == image_a
    independent = session.explain(views.images[6], views.images[chosen])
    assert e.score == pytest.approx(independent.score, rel=2e-3) and e.grid_b == list(independent.grid_b)
    assert e.mask_a is not None and e.hover_a == [1, 1] and e.mode == "paint" and e.mask_b is None
    assert e.region_score("a") == pytest.approx(independent.region_score("a", cells), rel=2e-3)
    e.select(e.results[0].index)
    assert e.region_score("a") == pytest.approx(e.results[0].score, rel=1e-4)  # the strip ranks by the region


def test_without_a_gallery_it_is_the_pair_view(setup, photos: dict) -> None:  # type: ignore[no-untyped-def]
    session, gallery, views = setup
    e = sv.Explorer(session, photos["chelsea"], other=photos["coffee"])
    assert e.strip == [] and e.results == [] and e.gallery_size == 0 and e.selected == -1
    assert e.score == pytest.approx(session.explain(photos["chelsea"], photos["coffee"]).score, rel=1e-6)
    with pytest.raises(traitlets.TraitError, match="there is no gallery"):
        e.selected = 0
    both = sv.Explorer(session, views.images[0], gallery=gallery, other=photos["coffee"], k=2)
    assert both.selected == -1 and len(both.strip) == 2  # other on the right, the strip below
    both.select(both.results[1].index)
    both.select(-1)
    assert both.score == pytest.approx(session.explain(views.images[0], photos["coffee"]).score, rel=1e-6)


def test_errors(setup, photos: dict) -> None:  # type: ignore[no-untyped-def]
    session, gallery, views = setup
    with pytest.raises(sv.WidgetError, match="needs a gallery, another image, or both"):
        sv.Explorer(session, photos["chelsea"])
    with pytest.raises(sv.WidgetError, match="gallery must be a simvis_widgets.Gallery, got list"):
        sv.Explorer(session, photos["chelsea"], gallery=[photos["coffee"]])  # type: ignore[arg-type]
    with pytest.raises(sv.WidgetError, match="needs a ModelSession first, got str"):
        sv.Explorer("lite0", photos["chelsea"], other=photos["coffee"])  # type: ignore[arg-type]
    other = sv.ModelSession(session.model, "layer4", size=128, device="cpu")
    with pytest.raises(sv.WidgetError, match="another session object"):
        sv.Explorer(other, views.images[0], gallery=gallery)
    for bad in (0, 101, True, 2.5):
        with pytest.raises(sv.WidgetError, match=r"k must be an integer in \[1, 100\]"):
            sv.Explorer(session, views.images[0], gallery=gallery, k=bad)  # type: ignore[arg-type]
    with pytest.raises(sv.ImageInputError, match="is empty"):
        sv.Explorer(session, np.zeros((0, 4, 3), np.uint8), gallery=gallery)
    e = sv.Explorer(session, views.images[0], gallery=gallery, k=2)
    with pytest.raises(traitlets.TraitError, match=r"k must be an integer in \[1, 100\], got 0"):
        e.k = 0
    with pytest.raises(traitlets.TraitError, match=rf"selected must be a gallery index in \[0, {len(gallery) - 1}\]"):
        e.selected = len(gallery)
    with pytest.raises(traitlets.TraitError, match="selected must be .*, got -1"):
        e.selected = -1  # no `other` image
    with pytest.raises(sv.WidgetError, match="region weights have 3 cells"):
        e.query_region = {"kind": "cells", "weights": [1.0, 0.0, 0.0]}
    with pytest.raises(sv.WidgetError, match=r"finite numbers in \[0, 1\]"):
        e.query_region = {"kind": "cells", "weights": [2.0] * int(np.prod(e.grid_a))}
    with pytest.raises(sv.WidgetError, match="gallery index must be an integer"):
        e.hit_pair(-1)


def test_to_html_carries_every_hit(setup, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    session, gallery, views = setup
    e = sv.Explorer(session, views.images[2], gallery=gallery, k=3)
    e.k = 4  # the first three hits now travel without their data
    page = e.to_html(tmp_path / "explorer.html").read_text(encoding="utf-8")
    state = json.loads(re.search(r'id="simvis-state">(.*?)</script>', page, re.S).group(1))  # type: ignore[union-attr]
    assert [s["index"] for s in state["strip"]] == [h.index for h in e.results]
    assert all("__b64__" in s["data"]["pairwise"] for s in state["strip"]) and state["_static"] is True
    assert "<title>simvis-widgets Explorer</title>" in page


def test_hit_pair_uses_the_stored_features(setup) -> None:  # type: ignore[no-untyped-def]
    session, gallery, views = setup
    e = sv.Explorer(session, views.images[0], gallery=gallery, k=2)
    pair = e.hit_pair(5)
    stored = gallery.explain(views.images[0], 5)
    torch.testing.assert_close(pair.pairwise, stored.pairwise)


def test_set_query_starts_over(setup) -> None:  # type: ignore[no-untyped-def]
    session, gallery, views = setup
    e = sv.Explorer(session, views.images[0], gallery=gallery, k=3)
    e.mask_a = np.ones(e.grid_a)
    version, image_a = e.query_version, e.image_a
    e.set_query(views.images[6])
    assert e.query_version == version + 1 and e.image_a != image_a and e.mask_a is None
    assert e.query_region == {"kind": "whole"}
    assert _ranked(e.results) == _ranked(gallery.search(views.images[6], k=3, exclude_self=True))
    assert all("data" in s for s in e.strip)  # contributions against the old query are useless: all go again
    assert e.selected == e.results[0].index and e.score == pytest.approx(e.results[0].score, rel=1e-5)
