"""Gallery with a tiny network (milliseconds per image): exact scores for every kind of query and similarity,
region weights at their limits, the file format byte by byte, every refusal with its words, and the cache.
Quick enough to run for every mutant of gallery.py."""

from __future__ import annotations

import json
import os
import struct
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import simvis_widgets as sv
from simvis_widgets import gallery as gallery_module
from simvis_widgets._io import file_digest
from simvis_widgets.gallery import MAGIC, ExactIndex, FaissIndex, Gallery, GalleryEntry, GalleryError, list_images


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
# Scoring matrix and indexes
# ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["cosine", "dot", "bias-cosine", "bias-dot"])
def test_scoring_matrix(name: str) -> None:
    session = SESSIONS[name]()
    g = Gallery.build(IMAGES[:3], session, progress=False)
    e = g.embeddings
    c = session.head.bias if session.head is not None else torch.zeros(e.shape[1])
    expected = e - c
    if session.normalize:
        expected = expected / e.norm(dim=1, keepdim=True)
    matrix = g.scoring_matrix()
    torch.testing.assert_close(matrix, expected)
    matrix += 1  # a new tensor: the gallery is untouched
    torch.testing.assert_close(g.scoring_matrix(), expected)
    q = torch.randn(e.shape[1], generator=torch.Generator().manual_seed(0))
    values, order = g.index.search(q, 3)
    torch.testing.assert_close(values, (expected @ q)[order])
    assert order.tolist() == torch.argsort(expected @ q, descending=True).tolist()


def test_exact_index() -> None:
    m = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    q = torch.tensor([1.0, 3.0], dtype=torch.float64)
    values, order = ExactIndex(m).search(q, 3)
    assert order.tolist() == [1, 2, 0] and values.tolist() == [6.0, 4.0, 1.0] and values.dtype == torch.float32
    values, order = ExactIndex(m, torch.tensor([1.0, 0.5, 0.1])).search(q, 2)
    assert order.tolist() == [1, 0] and values.tolist() == pytest.approx([3.0, 1.0])
    values, order = ExactIndex(m, None, torch.tensor([1.0, 0.0])).search(q, 3)  # scores - <bias, q> = - 1
    assert order.tolist() == [1, 2, 0] and values.tolist() == [5.0, 3.0, 0.0]
    values, _ = ExactIndex(m, torch.tensor([2.0, 2.0, 2.0]), torch.tensor([1.0, 0.0])).search(q, 1)
    assert values.tolist() == [10.0]


def test_faiss_index_scores_as_the_exact_index(gallery: Gallery) -> None:
    pytest.importorskip("faiss")
    exact = gallery.search(QUERY, k=5)
    gallery.use_index(FaissIndex(gallery.scoring_matrix()))
    try:
        fast = gallery.search(QUERY, k=5)
    finally:
        gallery.use_index(ExactIndex(gallery.embeddings, 1 / gallery.embeddings.norm(dim=1)))
    assert [h.index for h in fast] == [h.index for h in exact]
    assert [h.score for h in fast] == pytest.approx([h.score for h in exact], rel=1e-5)
    values, order = FaissIndex(torch.tensor([[1.0, 0.0], [0.0, 2.0]])).search(torch.tensor([1.0, 1.0]), 2)
    assert order.dtype == torch.int64 and order.tolist() == [1, 0] and values.tolist() == [2.0, 1.0]


def test_a_zero_embedding_cannot_join_a_cosine_gallery(session: sv.ModelSession) -> None:
    entries = [GalleryEntry(i, f"h{i}", None, (1, 1)) for i in range(2)]
    features = [np.zeros((12, 1, 1), np.float16)] * 2
    with pytest.raises(GalleryError) as err:
        Gallery(session, entries, torch.tensor([[1.0] * 12, [0.0] * 12]), features)
    assert str(err.value) == "a gallery image has an all-zero embedding: cosine similarity is undefined"
    dot = Gallery(_session(normalize=False), entries, torch.tensor([[1.0] * 12, [0.0] * 12]), features)
    assert len(dot) == 2


# ------------------------------------------------------------------------------------------------------
# Accessors
# ------------------------------------------------------------------------------------------------------


def test_accessors(gallery: Gallery, session: sv.ModelSession) -> None:
    assert len(gallery) == 5 and gallery.sources == [0, 1, 2, 3, 4] and gallery.labels == list("abcde")
    assert repr(gallery) == f"Gallery(5 images, {session.name!r}, dim=12)"
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


def test_gallery_parts_must_line_up(session: sv.ModelSession) -> None:
    entries = [GalleryEntry(i, f"h{i}", None, (1, 1)) for i in range(3)]
    feats = [np.ones((12, 1, 1), np.float16)] * 3
    with pytest.raises(GalleryError) as err:
        Gallery(session, entries, torch.rand(2, 12), feats)
    assert str(err.value) == "3 entries but 2 embeddings and 3 feature maps"
    with pytest.raises(GalleryError, match="3 entries but 3 embeddings and 2 feature maps"):
        Gallery(session, entries, torch.rand(3, 12), feats[:2])
    with pytest.raises(GalleryError) as err:
        Gallery(session, entries, torch.rand(3, 12), feats, images=[1, 2])
    assert str(err.value) == "2 images given for a gallery of 3"
    g = Gallery(session, entries, torch.rand(3, 12, dtype=torch.float64) + 0.1, feats)
    assert g.embeddings.dtype == torch.float32 and g.embedded == 3 and g.reused == 0 and g.unreadable == {}
    with pytest.raises(GalleryError) as err:
        g.image(1)
    assert str(err.value) == "gallery image 1 was an in-memory image: pass images=... to Gallery.load to show it"


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
        assert str(err.value) == f"batch_size must be >= 1, got {size}"
    with pytest.raises(GalleryError) as err:
        Gallery.build(IMAGES[:2], session, labels=["x"], progress=False)
    assert str(err.value) == "1 labels for 2 images"


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
# The file format
# ------------------------------------------------------------------------------------------------------


def _header(path: Path) -> tuple[dict, int]:
    data = path.read_bytes()
    assert data[:8] == MAGIC
    (length,) = struct.unpack("<Q", data[8:16])
    return json.loads(data[16 : 16 + length]), len(data)


def test_file_layout(gallery: Gallery, session: sv.ModelSession, tmp_path: Path) -> None:
    path = gallery.save(tmp_path / "g.simvis")
    assert path == tmp_path / "g.simvis"
    header, size = _header(path)
    assert header["format"] == "simvis-widgets gallery" and header["version"] == 2
    assert header["session"] == session.fingerprint() and header["count"] == 5 and header["dim"] == 12
    assert header["embeddings_at"] % 64 == 0 and header["features_at"] % 64 == 0
    assert header["embeddings_at"] >= 16 + len(json.dumps(header))
    assert header["features_at"] >= header["embeddings_at"] + 5 * 12 * 4
    sizes = [12 * h * w for h, w in (gallery.grid(i) for i in range(5))]
    assert [e["feature_offset"] for e in header["entries"]] == list(np.cumsum([0] + sizes[:-1]))
    assert header["feature_total"] == sum(sizes) and size == header["features_at"] + 2 * sum(sizes)
    assert [e["grid"] for e in header["entries"]] == [list(gallery.grid(i)) for i in range(5)]
    assert [e["label"] for e in header["entries"]] == list("abcde") and header["unreadable"] == []
    raw = path.read_bytes()
    emb = np.frombuffer(raw[header["embeddings_at"] : header["embeddings_at"] + 5 * 12 * 4], "<f4").reshape(5, 12)
    np.testing.assert_array_equal(emb, gallery.embeddings.numpy())
    start = header["features_at"] + 2 * header["entries"][2]["feature_offset"]
    third = np.frombuffer(raw[start : start + 2 * sizes[2]], "<f2").reshape(12, 6, 4)
    np.testing.assert_array_equal(third, gallery.stored_features(2))


@pytest.mark.parametrize("mmap", [True, False])
def test_round_trip(gallery: Gallery, session: sv.ModelSession, tmp_path: Path, mmap: bool) -> None:
    path = gallery.save(tmp_path / "g.simvis")
    loaded = Gallery.load(path, session, mmap=mmap)
    assert isinstance(loaded.stored_features(0), np.memmap) == mmap
    assert loaded.labels == gallery.labels and loaded.sources == gallery.sources
    assert [loaded.grid(i) for i in range(5)] == [gallery.grid(i) for i in range(5)]
    torch.testing.assert_close(loaded.embeddings, gallery.embeddings, rtol=0, atol=0)
    for i in range(5):
        np.testing.assert_array_equal(loaded.stored_features(i), gallery.stored_features(i))
    a, b = gallery.search(QUERY, k=5), loaded.search(QUERY, k=5)
    assert [(h.index, h.score) for h in a] == [(h.index, h.score) for h in b]
    with pytest.raises(GalleryError, match="in-memory image"):
        loaded.image(0)
    with_images = Gallery.load(path, session, images=IMAGES)
    np.testing.assert_array_equal(with_images.image(3), IMAGES[3])
    with pytest.raises(GalleryError) as err:
        Gallery.load(path, session, images=IMAGES[:2])
    assert str(err.value) == "2 images given for a gallery of 5"


def test_labels_and_unreadable_files_survive_a_round_trip(session: sv.ModelSession, tmp_path: Path) -> None:
    entries = [GalleryEntry(0, "h0", None, (1, 1), ("tuple", 1)), GalleryEntry("x.png", "h1", "f1", (1, 1), 2.5)]
    g = Gallery(
        session,
        entries,
        torch.rand(2, 12) + 0.1,
        [np.ones((12, 1, 1), np.float16)] * 2,
        unreadable={"abc": ("bad.png", "broken")},
    )
    loaded = Gallery.load(g.save(tmp_path / "g.simvis"), session)
    assert loaded.labels == ["('tuple', 1)", 2.5] and loaded.sources == [0, "x.png"]
    assert loaded.entries[1].file_hash == "f1" and loaded.entries[0].pixel_hash == "h0"
    assert loaded.unreadable == {"abc": ("bad.png", "broken")}


def test_save_needs_an_existing_folder(gallery: Gallery, tmp_path: Path) -> None:
    with pytest.raises(GalleryError) as err:
        gallery.save(tmp_path / "no" / "g.simvis")
    assert (
        str(err.value) == f"cannot save to '{tmp_path / 'no' / 'g.simvis'}': folder '{tmp_path / 'no'}' does not exist"
    )


def test_load_refusals(gallery: Gallery, session: sv.ModelSession, tmp_path: Path) -> None:
    path = gallery.save(tmp_path / "g.simvis")
    data = path.read_bytes()
    header, _ = _header(path)

    def refused(raw: bytes | None, start: str, name: str = "bad.simvis", other: sv.ModelSession = session) -> None:
        f = tmp_path / name
        if raw is not None:
            f.write_bytes(raw)
        with pytest.raises(GalleryError) as err:
            Gallery.load(f, other)
        assert str(err.value).startswith(start), str(err.value)

    refused(None, f"gallery file '{tmp_path / 'none.simvis'}' does not exist", "none.simvis")
    refused(b"SIMVISG0" + data[8:], f"'{tmp_path / 'bad.simvis'}' is not a simvis-widgets gallery file")
    refused(b"", f"'{tmp_path / 'bad.simvis'}' is not a simvis-widgets gallery file")
    refused(MAGIC + b"\x01", f"gallery file '{tmp_path / 'bad.simvis'}' is corrupt: ")
    huge = MAGIC + struct.pack("<Q", len(data) + 1) + data[16:]
    refused(
        huge,
        f"gallery file '{tmp_path / 'bad.simvis'}' is corrupt (header length {len(data) + 1} > file size {len(data)})",
    )
    exact = MAGIC + struct.pack("<Q", len(data)) + data[16:]  # a header length up to the file size is read
    refused(exact, f"gallery file '{tmp_path / 'bad.simvis'}' is corrupt: ")
    refused(data[:16] + b"[" + data[17:], f"gallery file '{tmp_path / 'bad.simvis'}' is corrupt: ")
    refused(data[:16] + b"\xff" + data[17:], f"gallery file '{tmp_path / 'bad.simvis'}' is corrupt: ")
    (length,) = struct.unpack("<Q", data[8:16])
    for version in (1, 3, None):
        old = (
            dict(header, version=version)
            if version is not None
            else {k: v for k, v in header.items() if k != "version"}
        )
        blob = json.dumps(old).encode().ljust(length)
        refused(
            data[:16] + blob + data[16 + length :],
            f"gallery file '{tmp_path / 'bad.simvis'}' has format version {version}; this library reads 2",
        )
    refused(
        data[: len(data) - 1],
        f"gallery file '{tmp_path / 'bad.simvis'}' is truncated ({len(data) - 1} bytes, expected {len(data)})",
    )
    nan = bytearray(data)
    nan[header["embeddings_at"] : header["embeddings_at"] + 4] = np.float32(np.nan).tobytes()
    refused(bytes(nan), f"gallery file '{tmp_path / 'bad.simvis'}' is corrupt (non-finite embeddings)")
    inf = bytearray(data)
    at = header["embeddings_at"] + 4 * 59  # the last embedding value
    inf[at : at + 4] = np.float32(np.inf).tobytes()
    refused(bytes(inf), f"gallery file '{tmp_path / 'bad.simvis'}' is corrupt (non-finite embeddings)")
    other = _session(pooling="max")
    refused(
        data,
        f"gallery '{tmp_path / 'bad.simvis'}' was built with another session (pooling: gallery 'avg' vs session 'max'); rebuild it for this session",
        other=other,
    )
    Gallery.load(tmp_path / "bad.simvis", session)  # the same bytes load with their own session


# ------------------------------------------------------------------------------------------------------
# The cache
# ------------------------------------------------------------------------------------------------------


def test_cache_reuses_files_by_bytes_and_arrays_by_pixels(session: sv.ModelSession, tmp_path: Path) -> None:
    folder, cache = tmp_path / "photos", tmp_path / "cache" / "deeper"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(IMAGES[i]).save(folder / f"p{i}.png")
    first = Gallery.build(folder, session, cache_dir=cache, labels=["x", "y", "z"], progress=False)
    assert (first.embedded, first.reused) == (3, 0) and (cache / "gallery.simvis").is_file()
    Image.fromarray(IMAGES[3]).save(folder / "p1.png")  # changed bytes
    Image.fromarray(IMAGES[4]).save(folder / "p3.png")  # new
    second = Gallery.build(folder, session, cache_dir=cache, progress=False)
    assert (second.embedded, second.reused, len(second)) == (2, 2, 4)
    assert second.labels == ["x", None, "z", None]  # cached labels kept, new images unlabelled
    fresh = Gallery.build(folder, session, progress=False)
    torch.testing.assert_close(second.embeddings, fresh.embeddings, rtol=1e-5, atol=1e-6)
    for i in range(4):
        np.testing.assert_array_equal(second.stored_features(i), fresh.stored_features(i))
    relabelled = Gallery.build(folder, session, cache_dir=cache, labels=list("ABCD"), progress=False)
    assert relabelled.reused == 4 and relabelled.labels == list("ABCD")
    assert Gallery.load(cache / "gallery.simvis", session).labels == list("ABCD")
    arrays_cache = tmp_path / "arrays"
    Gallery.build(IMAGES[:3], session, cache_dir=arrays_cache, progress=False)
    again = Gallery.build(
        [IMAGES[2], IMAGES[4], Image.fromarray(IMAGES[0])], session, cache_dir=arrays_cache, progress=False
    )
    assert (again.embedded, again.reused) == (1, 2) and again.sources == [0, 1, 2]
    torch.testing.assert_close(again.embeddings[2], first.embeddings[0])


def test_cache_does_not_retry_known_unreadable_files(session: sv.ModelSession, tmp_path: Path) -> None:
    folder, cache = tmp_path / "photos", tmp_path / "cache"
    folder.mkdir()
    Image.fromarray(IMAGES[0]).save(folder / "good.png")
    (folder / "bad.png").write_bytes(b"\x89PNG broken")
    with pytest.warns(UserWarning, match="bad.png"):
        Gallery.build(folder, session, cache_dir=cache, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = Gallery.build(folder, session, cache_dir=cache, progress=False)
    assert (again.embedded, again.reused, len(again)) == (0, 1, 1)
    assert list(again.unreadable.values())[0][0] == str(folder / "bad.png")
    assert Gallery.load(cache / "gallery.simvis", session).unreadable == again.unreadable
    os.rename(folder / "bad.png", folder / "renamed.png")  # the same bytes under another name: still known
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        renamed = Gallery.build(folder, session, cache_dir=cache, progress=False)
    assert list(renamed.unreadable.values())[0][0] == str(folder / "renamed.png")


# ------------------------------------------------------------------------------------------------------
# Paths the mutants of gallery.py showed unpinned
# ------------------------------------------------------------------------------------------------------


def test_header_layout_is_exact(gallery: Gallery, tmp_path: Path) -> None:
    path = gallery.save(tmp_path / "g.simvis")
    raw = path.read_bytes()
    (length,) = struct.unpack("<Q", raw[8:16])
    header, _ = _header(path)
    assert raw[16:17] == b"{" and raw[16 : 16 + length].rstrip().endswith(b"}")  # padded at the end only
    assert set(header) == {
        "format", "version", "session", "count", "dim", "entries", "feature_total", "unreadable",
        "embeddings_at", "features_at",
    }  # fmt: skip
    assert header["embeddings_at"] == gallery_module._align(16 + length)
    assert header["features_at"] == gallery_module._align(header["embeddings_at"] + 5 * 12 * 4)
    assert raw[16 + length : header["embeddings_at"]] == b"\0" * (header["embeddings_at"] - 16 - length)


def test_align() -> None:
    assert [gallery_module._align(n) for n in (0, 1, 63, 64, 65, 128)] == [0, 64, 64, 64, 128, 128]
    assert gallery_module._align(5, 4) == 8 and gallery_module._align(8, 4) == 8


def test_float32_features_are_stored_as_float16(session: sv.ModelSession, tmp_path: Path) -> None:
    entries = [GalleryEntry(0, "h0", None, (1, 2))]
    feats = np.arange(24, dtype=np.float32).reshape(12, 1, 2) / 7
    g = Gallery(session, entries, torch.rand(1, 12) + 0.1, [feats])
    loaded = Gallery.load(g.save(tmp_path / "g.simvis"), session)
    np.testing.assert_array_equal(loaded.stored_features(0), feats.astype(np.float16))


def test_loading_maps_the_features_read_only_by_default(
    gallery: Gallery, session: sv.ModelSession, tmp_path: Path
) -> None:
    loaded = Gallery.load(gallery.save(tmp_path / "g.simvis"), session)
    stored = loaded.stored_features(1)
    assert isinstance(stored, np.memmap) and not stored.flags.writeable


def test_files_without_an_unreadable_list_still_load(
    gallery: Gallery, session: sv.ModelSession, tmp_path: Path
) -> None:
    path = gallery.save(tmp_path / "g.simvis")
    data = path.read_bytes()
    (length,) = struct.unpack("<Q", data[8:16])
    header = json.loads(data[16 : 16 + length])
    del header["unreadable"]
    path.write_bytes(data[:16] + json.dumps(header).encode().ljust(length) + data[16 + length :])
    assert Gallery.load(path, session).unreadable == {}


def test_a_session_mismatch_lists_every_difference(gallery: Gallery, tmp_path: Path) -> None:
    path = gallery.save(tmp_path / "g.simvis")
    other = _session(pooling="max", normalize=False)
    with pytest.raises(GalleryError) as err:
        Gallery.load(path, other)
    assert "(pooling: gallery 'avg' vs session 'max', normalize: gallery True vs session False)" in str(err.value)


def test_file_galleries_read_their_images(session: sv.ModelSession, tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(2):
        Image.fromarray(IMAGES[i]).save(folder / f"p{i}.png")
    built = Gallery.build(folder, session, progress=False)
    loaded = Gallery.load(built.save(tmp_path / "g.simvis"), session)  # no images=: read from the files
    np.testing.assert_array_equal(loaded.image(1), IMAGES[1])
    ex = loaded.explain(QUERY, 0)
    assert ex.image_b is not None and ex.image_b.shape == session.resize(IMAGES[0]).shape
    (folder / "p0.png").write_bytes(b"\x89PNG no longer an image")  # unreadable now: explained without it
    ex = loaded.explain(QUERY, 0)
    assert ex.image_b is None and ex.score == pytest.approx(built.explain(QUERY, 0).score, rel=1e-6)
    (folder / "p1.png").unlink()  # gone: explained without it
    assert loaded.explain(QUERY, 1).image_b is None


def test_in_memory_galleries_explain_without_their_images(
    gallery: Gallery, session: sv.ModelSession, tmp_path: Path
) -> None:
    loaded = Gallery.load(gallery.save(tmp_path / "g.simvis"), session)
    ex = loaded.explain(QUERY, 2)
    assert ex.image_b is None and ex.score == pytest.approx(gallery.explain(QUERY, 2).score, rel=1e-6)


def test_default_k_is_ten(session: sv.ModelSession) -> None:
    many = Gallery.build(_images(12), session, progress=False)
    assert len(many.search(QUERY)) == 10
    enc = session.encode(QUERY)
    assert len(many.search_features(enc.features, None)) == 10


def test_faiss_index_needs_faiss(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "faiss", None)  # import faiss -> ImportError
    with pytest.raises(GalleryError) as err:
        FaissIndex(torch.ones(2, 2))
    assert str(err.value) == "FaissIndex needs faiss: pip install faiss-cpu"


def test_faiss_index_takes_float64() -> None:
    pytest.importorskip("faiss")
    index = FaissIndex(torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=torch.float64))
    values, order = index.search(torch.tensor([1.0, 1.0], dtype=torch.float64), 2)
    assert order.tolist() == [1, 0] and values.tolist() == [2.0, 1.0]


def test_dataset_items_without_labels_keep_cached_labels(session: sv.ModelSession, tmp_path: Path) -> None:
    class PilImages(torch.utils.data.Dataset):  # type: ignore[type-arg]
        def __len__(self) -> int:
            return 2

        def __getitem__(self, i: int) -> Image.Image:
            return Image.fromarray(IMAGES[i])

    cache = tmp_path / "cache"
    first = Gallery.build(PilImages(), session, labels=["x", "y"], cache_dir=cache, progress=False)
    assert first.labels == ["x", "y"]
    again = Gallery.build(PilImages(), session, cache_dir=cache, progress=False)
    assert again.reused == 2 and again.labels == ["x", "y"]
    assert gallery_module._dataset_items(PilImages())[1] is None


def test_every_header_length_gives_a_readable_file(session: sv.ModelSession, tmp_path: Path) -> None:
    """The embeddings start at the first 64-byte boundary after the header, whatever its length mod 64."""
    feats = [np.full((12, 1, 1), 0.5, np.float16)]
    ends = set()
    for n in range(64):
        g = Gallery(session, [GalleryEntry(0, "h", None, (1, 1), "x" * n)], torch.full((1, 12), float(n + 1)), feats)
        path = g.save(tmp_path / f"g{n}.simvis")
        raw = path.read_bytes()
        (length,) = struct.unpack("<Q", raw[8:16])
        header, _ = _header(path)
        ends.add((16 + length) % 64)
        assert header["embeddings_at"] == gallery_module._align(16 + length) >= 16 + length
        loaded = Gallery.load(path, session)
        assert loaded.labels == ["x" * n] and float(loaded.embeddings[0, 0]) == n + 1
        np.testing.assert_array_equal(loaded.stored_features(0), feats[0])
    assert len(ends) == 64  # every residue was tried


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
