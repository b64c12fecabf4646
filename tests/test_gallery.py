"""Gallery: exact region retrieval, persistence (round trip, resume, atomic saves, corruption), bad inputs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import simvis_widgets as sv
from simvis_widgets.gallery import ExactIndex, FaissIndex, Gallery, GalleryError


@pytest.fixture(scope="module")
def views() -> sv.datasets.DemoViews:
    return sv.datasets.demo_views(
        views_per_photo=3, short_side=160, photos=("chelsea", "coffee", "astronaut", "rocket")
    )


@pytest.fixture(scope="module")
def gallery(resnet18_random: sv.ModelSession, views: sv.datasets.DemoViews) -> Gallery:
    return Gallery.build(views.images, resnet18_random, labels=views.groups, progress=False)


def _region(image: np.ndarray) -> np.ndarray:
    mask = np.zeros(image.shape[:2])
    h, w = mask.shape
    mask[h // 5 : h // 2, w // 3 : (4 * w) // 5] = 1
    return mask


@pytest.mark.parametrize("query_kind", ["whole", "mask", "box", "point"])
def test_scores_are_the_exact_region_scores(
    gallery: Gallery, views: sv.datasets.DemoViews, resnet18_random: sv.ModelSession, query_kind: str
) -> None:
    query = views.images[1]
    h, w = query.shape[:2]
    kwargs = {
        "whole": {},
        "mask": {"mask": _region(query)},
        "box": {"box": (w / 3, h / 5, 0.8 * w, h / 2)},
        "point": {"point": (w * 0.6, h * 0.3)},
    }[query_kind]
    hits = gallery.search(query, k=len(gallery), **kwargs)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    for hit in hits[:4] + hits[-2:]:
        ex = resnet18_random.explain(query, views.images[hit.index])
        if query_kind == "whole":
            expected = ex.score
        elif query_kind == "point":
            gh, gw = ex.grid_a
            cells = np.zeros((gh, gw))
            cells[int(0.3 * gh), int(0.6 * gw)] = 1
            expected = ex.region_score("a", cells)
        else:
            mask = kwargs.get("mask")
            if mask is None:
                mask = np.zeros((h, w))
                x0, y0, x1, y1 = kwargs["box"]
                mask[int(np.floor(y0)) : int(np.ceil(y1)), int(np.floor(x0)) : int(np.ceil(x1))] = 1
            expected = ex.region_score("a", mask)  # the mask at the query photo's own size
        assert hit.score == pytest.approx(expected, rel=1e-5, abs=1e-7)
        # The hit's map is drawn from float16 features: its sum is the score to float16 precision.
        assert float(hit.map.sum()) == pytest.approx(hit.score, rel=2e-2, abs=1e-4)
        assert hit.label == views.groups[hit.index] and hit.source == hit.index


def test_retrieval_finds_the_other_views(lite0: sv.ModelSession) -> None:
    """Real weights: every view's nearest other image is a view of the same photo."""
    views = sv.datasets.demo_views(
        views_per_photo=3, short_side=200, photos=("chelsea", "coffee", "astronaut", "rocket", "china")
    )
    gallery = Gallery.build(views.images, lite0, labels=views.groups, progress=False)
    for i, image in enumerate(views.images):
        top = gallery.search(image, k=1, exclude_self=True)[0]
        assert top.index != i and top.label == views.groups[i], f"{views.names[i]} -> {views.names[top.index]}"


def test_exclude_self(gallery: Gallery, views: sv.datasets.DemoViews) -> None:
    assert gallery.search(views.images[4], k=1)[0].index == 4
    assert all(h.index != 4 for h in gallery.search(views.images[4], k=5, exclude_self=True))
    assert len(gallery.search(views.images[4], k=len(gallery), exclude_self=True)) == len(gallery) - 1


def test_save_load_round_trip(
    gallery: Gallery, views: sv.datasets.DemoViews, resnet18_random: sv.ModelSession, tmp_path: Path
) -> None:
    path = gallery.save(tmp_path / "g.simvis")
    loaded = Gallery.load(path, resnet18_random)
    assert len(loaded) == len(gallery) and loaded.labels == gallery.labels and loaded.sources == gallery.sources
    torch.testing.assert_close(loaded.embeddings, gallery.embeddings, rtol=0, atol=0)
    assert isinstance(loaded._features[0], np.memmap)
    mask = _region(views.images[0])
    a, b = gallery.search(views.images[0], mask=mask, k=5), loaded.search(views.images[0], mask=mask, k=5)
    assert [(h.index, h.score) for h in a] == [(h.index, h.score) for h in b]
    torch.testing.assert_close(a[0].map, b[0].map)


def test_resume_embeds_only_new_and_changed_files(
    resnet18_random: sv.ModelSession, views: sv.datasets.DemoViews, tmp_path: Path
) -> None:
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    for i, image in enumerate(views.images[:6]):
        Image.fromarray(image).save(folder / ("sub" if i % 2 else "") / f"v{i}.png")
    (folder / "notes.txt").write_text("not an image")
    cache = tmp_path / "cache"
    first = Gallery.build(folder, resnet18_random, cache_dir=cache, progress=False)
    assert (len(first), first.embedded, first.reused) == (6, 6, 0)
    Image.fromarray(views.images[7]).save(folder / "new.png")
    Image.fromarray(views.images[8]).save(folder / "v0.png")  # changed content, same name
    (folder / "sub" / "v1.png").unlink()
    second = Gallery.build(folder, resnet18_random, cache_dir=cache, progress=False)
    assert (len(second), second.embedded, second.reused) == (6, 2, 4)
    fresh = Gallery.build(folder, resnet18_random, progress=False)
    order = {s: k for k, s in enumerate(fresh.sources)}
    for k, s in enumerate(second.sources):
        torch.testing.assert_close(second.embeddings[k], fresh.embeddings[order[s]], rtol=1e-4, atol=1e-5)
    assert Gallery.load(cache / "gallery.simvis", resnet18_random).sources == second.sources


SAVER = textwrap.dedent("""
    import sys, numpy as np, torch
    import simvis_widgets as sv
    from simvis_widgets.gallery import Gallery, GalleryEntry
    torch.manual_seed(0)  # the same weights as the reader's session (the gallery records their hash)
    session = sv.ModelSession(torch.nn.Sequential(torch.nn.Conv2d(3, 64, 3, stride=4, padding=1)), "0", size=64, device="cpu")
    count = 400
    entries = [GalleryEntry(i, f"hash{i}", None, (16, 16), i % 7) for i in range(count)]
    gen = torch.Generator().manual_seed(int(sys.argv[2]))
    features = [np.full((64, 16, 16), float(sys.argv[2]), np.float16) for _ in range(count)]
    g = Gallery(session, entries, torch.rand(count, 64, generator=gen) + 0.1, features)
    print("ready", flush=True)
    while True:
        g.save(sys.argv[1])
""")


def test_a_killed_save_never_corrupts_the_previous_file(tmp_path: Path) -> None:
    path = tmp_path / "g.simvis"
    script = tmp_path / "saver.py"
    script.write_text(SAVER)
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    torch.manual_seed(0)
    session = sv.ModelSession(
        torch.nn.Sequential(torch.nn.Conv2d(3, 64, 3, stride=4, padding=1)), "0", size=64, device="cpu"
    )
    for attempt, value in enumerate((1, 2, 3)):
        proc = subprocess.Popen(
            [sys.executable, str(script), str(path), str(value)], env=env, stdout=subprocess.PIPE, text=True
        )
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        time.sleep(0.4 + 0.37 * attempt)  # somewhere inside one of the repeated saves
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        if not path.exists():
            continue
        loaded = Gallery.load(path, session)  # whatever is there is a complete gallery
        assert len(loaded) == 400 and float(loaded.features(399)[0, 0, 0]) in (1.0, 2.0, 3.0)
    assert path.exists()


def test_corrupt_and_mismatched_files(gallery: Gallery, resnet18_random: sv.ModelSession, tmp_path: Path) -> None:
    path = gallery.save(tmp_path / "g.simvis")
    data = path.read_bytes()
    (tmp_path / "cut.simvis").write_bytes(data[: len(data) // 2])
    with pytest.raises(GalleryError, match="truncated"):
        Gallery.load(tmp_path / "cut.simvis", resnet18_random)
    (tmp_path / "junk.simvis").write_bytes(b"PK\x03\x04 a zip, not a gallery")
    with pytest.raises(GalleryError, match="not a simvis-widgets gallery file"):
        Gallery.load(tmp_path / "junk.simvis", resnet18_random)
    (tmp_path / "head.simvis").write_bytes(data[:8] + data[8:16] + b"{broken json" + data[40:200])
    with pytest.raises(GalleryError, match="corrupt"):
        Gallery.load(tmp_path / "head.simvis", resnet18_random)
    other = sv.ModelSession(
        resnet18_random.model, "layer4", pooling="gem", size=128, device="cpu", name=resnet18_random.name
    )
    with pytest.raises(GalleryError, match=r"another session \(pooling: gallery 'avg' vs session 'gem'"):
        Gallery.load(path, other)
    with pytest.raises(GalleryError, match="does not exist"):
        Gallery.load(tmp_path / "missing.simvis", resnet18_random)


def test_unreadable_files_are_skipped_with_one_warning(
    resnet18_random: sv.ModelSession, views: sv.datasets.DemoViews, tmp_path: Path
) -> None:
    for i in range(3):
        Image.fromarray(views.images[i]).save(tmp_path / f"ok{i}.jpg")
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    with pytest.warns(UserWarning, match=r"skipped 2 unreadable image\(s\)") as record:
        g = Gallery.build(tmp_path, resnet18_random, progress=False)
    message = str(record[0].message)
    assert "empty.png" in message and "broken.jpg" in message
    assert len(g) == 3


def test_a_cached_rebuild_warns_about_unreadable_files_once(
    resnet18_random: sv.ModelSession, views: sv.datasets.DemoViews, tmp_path: Path
) -> None:
    import warnings

    from tqdm import tqdm

    folder, cache = tmp_path / "images", tmp_path / "cache"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(views.images[i]).save(folder / f"ok{i}.jpg")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    with pytest.warns(UserWarning, match="broken.jpg"):
        Gallery.build(folder, resnet18_random, cache_dir=cache, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a second, cached rebuild says nothing about the same broken bytes
        again = Gallery.build(folder, resnet18_random, cache_dir=cache, progress=False)
    assert len(again) == 3 and again.reused == 3 and again.embedded == 0
    assert [src for src, _ in again.unreadable.values()] == [str(folder / "broken.jpg")]
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff broken differently")  # other bytes: tried and reported again
    with pytest.warns(UserWarning, match="broken.jpg"):
        Gallery.build(folder, resnet18_random, cache_dir=cache, progress=False)
    bars: list[tqdm] = []  # the progress bar counts embedded images, not unreadable files
    original_init = tqdm.__init__

    def spy(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        original_init(self, *args, **kwargs)
        bars.append(self)

    (folder / "also_broken.png").write_bytes(b"")
    try:
        tqdm.__init__ = spy  # type: ignore[method-assign]
        with pytest.warns(UserWarning, match="also_broken.png"):
            Gallery.build(folder, resnet18_random, progress=True)
    finally:
        tqdm.__init__ = original_init  # type: ignore[method-assign]
    assert bars and bars[-1].n == 3 and bars[-1].total == 3


def test_bad_inputs(
    gallery: Gallery, views: sv.datasets.DemoViews, resnet18_random: sv.ModelSession, tmp_path: Path
) -> None:
    query = views.images[0]
    h, w = query.shape[:2]
    with pytest.raises(GalleryError, match="no images"):
        Gallery.build(tmp_path, resnet18_random, progress=False)
    with pytest.raises(GalleryError, match="does not exist"):
        Gallery.build(tmp_path / "nope", resnet18_random, progress=False)
    with pytest.raises(GalleryError, match="k must be a positive integer"):
        gallery.search(query, k=0)
    with pytest.raises(GalleryError, match=rf"expected the query image's size \({h}, {w}\)"):
        gallery.search(query, mask=np.ones((h + 1, w)))
    with pytest.raises(GalleryError, match="selects nothing"):
        gallery.search(query, mask=np.zeros((h, w)))
    with pytest.raises(GalleryError, match="box"):
        gallery.search(query, box=(10, 10, w + 50, 20))
    with pytest.raises(GalleryError, match="outside"):
        gallery.search(query, point=(-1, 3))
    with pytest.raises(GalleryError, match="one of mask, box or point"):
        gallery.search(query, mask=np.ones((h, w)), box=(0, 0, 5, 5))
    with pytest.raises(GalleryError, match="3 labels for 2 images"):
        Gallery.build(views.images[:2], resnet18_random, labels=["a", "b", "c"], progress=False)
    with pytest.raises(GalleryError, match="none of the 1 images could be read"):
        with pytest.warns(UserWarning):
            Gallery.build([tmp_path / "missing.png"], resnet18_random, progress=False)


def test_torch_dataset_source(resnet18_random: sv.ModelSession, views: sv.datasets.DemoViews) -> None:
    class Pairs(torch.utils.data.Dataset):  # type: ignore[type-arg]
        def __len__(self) -> int:
            return 4

        def __getitem__(self, i: int) -> tuple[torch.Tensor, str]:
            return torch.from_numpy(views.images[i]).permute(2, 0, 1), views.groups[i]

    g = Gallery.build(Pairs(), resnet18_random, progress=False)
    assert g.labels == views.groups[:4] and g.sources == [0, 1, 2, 3]


def test_faiss_gives_the_same_scores(gallery: Gallery, views: sv.datasets.DemoViews) -> None:
    mask = _region(views.images[2])
    exact = gallery.search(views.images[2], mask=mask, k=6)
    gallery.use_index(FaissIndex(gallery.scoring_matrix()))
    try:
        via_faiss = gallery.search(views.images[2], mask=mask, k=6)
    finally:
        gallery.use_index(ExactIndex(gallery.scoring_matrix()))  # the same scores from an explicit matrix
    assert [h.index for h in via_faiss] == [h.index for h in exact]
    np.testing.assert_allclose([h.score for h in via_faiss], [h.score for h in exact], rtol=1e-5)


def test_demo_gallery_is_labelled(resnet18_random: sv.ModelSession) -> None:
    views = sv.datasets.demo_views(views_per_photo=2, short_side=96)
    assert len(views.images) == 2 * len(sv.datasets.GALLERY_PHOTOS)
    assert views.groups[:2] == ["motorcycle_left"] * 2 and views.names[1] == "motorcycle_left/1"
    again = sv.datasets.demo_views(views_per_photo=2, short_side=96)
    assert all(np.array_equal(a, b) for a, b in zip(views.images, again.images))  # seeded: the same views
    assert not np.array_equal(views.images[0], views.images[1])
    torch.manual_seed(123)
    expected = torch.rand(1)
    torch.manual_seed(123)
    alone = sv.datasets.demo_views(views_per_photo=2, short_side=96, photos=("coffee",))
    assert torch.equal(torch.rand(1), expected)  # the caller's random state is untouched
    k = views.groups.index("coffee")
    assert np.array_equal(alone.images[1], views.images[k + 1])  # a photo's views do not depend on the others


def test_a_head_with_bias_keeps_scores_exact(views: sv.datasets.DemoViews) -> None:
    torch.manual_seed(7)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 16, 3, stride=4, padding=1),
        torch.nn.ReLU(),
        torch.nn.Conv2d(16, 32, 3, stride=4, padding=1),
        torch.nn.ReLU(),
    )
    session = sv.ModelSession(net, "3", head=torch.nn.Linear(32, 8), size=64, device="cpu")
    gallery = Gallery.build(views.images[:6], session, progress=False)
    query = views.images[0]
    mask = _region(query)
    for hit in gallery.search(query, mask=mask, k=6):
        ex = session.explain(query, views.images[hit.index])
        assert hit.score == pytest.approx(ex.region_score("a", mask), rel=1e-5, abs=1e-7)
    # The index (embeddings, inverse norms, bias) ranks exactly as the explicit scoring matrix does.
    q = torch.randn(8)
    explicit = gallery.scoring_matrix() @ q
    values, order = gallery.index.search(q, 6)
    torch.testing.assert_close(values, explicit[order], rtol=1e-5, atol=1e-6)
    assert order.tolist() == torch.argsort(explicit, descending=True).tolist()


def test_gallery_parts_must_line_up(gallery: Gallery) -> None:
    from simvis_widgets.gallery import GalleryEntry

    entries = [GalleryEntry(i, f"h{i}", None, (2, 2)) for i in range(3)]
    with pytest.raises(GalleryError, match="3 entries but 2 embeddings"):
        Gallery(gallery.session, entries, torch.rand(2, 512), [np.zeros((512, 2, 2), np.float16)] * 3)
    with pytest.raises(GalleryError, match="2 images given for a gallery of 3"):
        Gallery(gallery.session, entries, torch.rand(3, 512), [np.zeros((512, 2, 2), np.float16)] * 3, images=[1, 2])
