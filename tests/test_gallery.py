"""Gallery: exact region retrieval, persistence (round trip, resume, atomic saves, corruption), bad inputs."""

from __future__ import annotations

import json
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
from simvis_widgets.gallery import Gallery, GalleryError


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


def test_open_round_trip(views: sv.datasets.DemoViews, resnet18_random: sv.ModelSession, tmp_path: Path) -> None:
    built = Gallery.build(views.images, resnet18_random, tmp_path / "g", labels=views.groups, progress=False)
    opened = Gallery.open(tmp_path / "g", resnet18_random, images=views.images)
    assert (
        len(opened) == len(built) and opened.labels == views.groups and opened.sources == list(range(len(views.images)))
    )
    torch.testing.assert_close(opened.embeddings, built.embeddings, rtol=0, atol=0)
    mask = _region(views.images[0])
    a, b = built.search(views.images[0], mask=mask, k=5), opened.search(views.images[0], mask=mask, k=5)
    assert [(h.index, h.score) for h in a] == [(h.index, h.score) for h in b]
    torch.testing.assert_close(a[0].map, b[0].map)
    np.testing.assert_array_equal(opened.image(3), views.images[3])


def _write_pngs(folder: Path, images: list[np.ndarray]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(images):
        Image.fromarray(image).save(folder / f"v{i:03d}.png")


def test_resume_embeds_only_new_and_changed_files(
    resnet18_random: sv.ModelSession, views: sv.datasets.DemoViews, tmp_path: Path
) -> None:
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    for i, image in enumerate(views.images[:6]):
        Image.fromarray(image).save(folder / ("sub" if i % 2 else "") / f"v{i}.png")
    (folder / "notes.txt").write_text("not an image")
    store = tmp_path / "g.lance"
    first = Gallery.build(folder, resnet18_random, store, progress=False)
    assert (len(first), first.embedded, first.reused) == (6, 6, 0)
    Image.fromarray(views.images[7]).save(folder / "new.png")
    Image.fromarray(views.images[8]).save(folder / "v0.png")  # changed content, same name
    (folder / "sub" / "v1.png").unlink()
    second = Gallery.build(folder, resnet18_random, store, progress=False)
    assert (len(second), second.embedded, second.reused) == (6, 2, 4)
    fresh = Gallery.build(folder, resnet18_random, progress=False)
    assert sorted(second.sources) == sorted(fresh.sources)  # the deleted file's row is gone
    order = {s: k for k, s in enumerate(fresh.sources)}
    for k, s in enumerate(second.sources):
        torch.testing.assert_close(second.embeddings[k], fresh.embeddings[order[s]], rtol=1e-4, atol=1e-5)
    assert Gallery.open(store, resnet18_random).sources == second.sources
    assert first.sources != second.sources and len(first) == 6  # the first gallery still reads its own version


def _tiny_session() -> sv.ModelSession:
    torch.manual_seed(0)  # the same weights in every process (the gallery records their digest)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, stride=4, padding=1), torch.nn.ReLU())
    return sv.ModelSession(net, "1", size=64, device="cpu", name="tiny")


BUILDER = textwrap.dedent("""
    import sys, time, torch
    sys.path.insert(0, sys.argv[3])
    from test_gallery import _tiny_session
    from simvis_widgets.gallery import Gallery
    session = _tiny_session()
    slow = session.batch_features
    def batch_features(batch):
        time.sleep(0.15)  # slow enough to be killed in the middle
        return slow(batch)
    session.batch_features = batch_features
    Gallery.build(sys.argv[1], session, sys.argv[2], batch_size=2, commit_every=2, progress=False)
    print("finished", flush=True)
""")


def test_a_build_killed_with_sigkill_keeps_its_commits_and_resumes(
    views: sv.datasets.DemoViews, tmp_path: Path
) -> None:
    folder, store = tmp_path / "photos", tmp_path / "g.lance"
    images = [np.roll(views.images[i % len(views.images)], 7 * i, axis=1) for i in range(40)]
    _write_pngs(folder, images)
    script = tmp_path / "builder.py"
    script.write_text(BUILDER)
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    proc = subprocess.Popen(
        [sys.executable, str(script), str(folder), str(store), str(Path(__file__).parent)],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if len(list((store / "_versions").glob("*.manifest"))) >= 4:  # a few commits made: kill it mid-build
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "the build finished before it could be killed"
    session = _tiny_session()
    partial = Gallery.open(store, session)
    assert 4 <= len(partial) < 40  # what was committed is there and verified
    resumed = Gallery.build(folder, session, store, progress=False)
    assert (len(resumed), resumed.reused, resumed.embedded) == (40, len(partial), 40 - len(partial))
    fresh = Gallery.build(folder, session, progress=False)
    order = {s: k for k, s in enumerate(fresh.sources)}
    for k, s in enumerate(resumed.sources):
        torch.testing.assert_close(resumed.embeddings[k], fresh.embeddings[order[s]], rtol=1e-5, atol=1e-6)
    q = images[5]
    assert [(h.source, h.score) for h in resumed.search(q, k=5)] == [(h.source, h.score) for h in fresh.search(q, k=5)]


def test_ctrl_c_keeps_the_commits_made(views: sv.datasets.DemoViews, tmp_path: Path) -> None:
    session = _tiny_session()
    calls = {"n": 0}
    real = session.batch_features

    def interrupted(batch: list[np.ndarray]) -> torch.Tensor:
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real(batch)

    session.batch_features = interrupted  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        Gallery.build(views.images, session, tmp_path / "g", batch_size=2, commit_every=2, progress=False)
    session.batch_features = real  # type: ignore[method-assign]
    assert len(Gallery.open(tmp_path / "g", session, images=views.images)) == 6
    resumed = Gallery.build(views.images, session, tmp_path / "g", batch_size=2, progress=False)
    assert (resumed.reused, resumed.embedded, len(resumed)) == (6, len(views.images) - 6, len(views.images))


def _data_file(store: Path) -> Path:
    (data,) = (store / "data").glob("*.lance")
    return data


def _flip_bit_at(path: Path, needle: bytes, offset: int = 1) -> None:
    data = bytearray(path.read_bytes())
    at = data.find(needle)
    assert at >= 0 and data.find(needle, at + 1) < 0, "the stored bytes to damage were not found exactly once"
    data[at + offset] ^= 0x10
    path.write_bytes(bytes(data))


def test_flipped_bytes_in_an_embedding_are_detected_when_opened(views: sv.datasets.DemoViews, tmp_path: Path) -> None:
    session = _tiny_session()
    built = Gallery.build(views.images[:6], session, tmp_path / "g", progress=False)
    _flip_bit_at(_data_file(tmp_path / "g"), built.embeddings[3].numpy().astype("<f4").tobytes())
    with pytest.raises(GalleryError, match=r"is corrupt: row 3 \(.*\) fails its checksum"):
        Gallery.open(tmp_path / "g", session)
    with pytest.raises(GalleryError, match=r"is corrupt: row 3 \(.*\) fails its checksum"):
        Gallery.build(views.images[:6], session, tmp_path / "g", progress=False)  # a rebuild keeps row 3: refused


def test_flipped_bytes_in_local_features_are_detected_before_a_map_is_drawn(
    views: sv.datasets.DemoViews, tmp_path: Path
) -> None:
    session = _tiny_session()
    built = Gallery.build(views.images[:6], session, tmp_path / "g", progress=False)
    stored = np.ascontiguousarray(built.stored_features(2)).tobytes()
    _flip_bit_at(_data_file(tmp_path / "g"), stored[:256], offset=101)
    opened = Gallery.open(tmp_path / "g", session)  # embeddings are intact: it opens
    with pytest.raises(GalleryError, match="local features of row 2 fail their checksum"):
        opened.features(2)
    with pytest.raises(GalleryError, match="fail their checksum"):
        opened.search(views.images[2], k=6)  # every row is a hit: row 2's map cannot be drawn
    assert len(opened.search(views.images[0], k=1)) == 1  # other rows still serve


def test_rows_edited_into_other_valid_values_are_detected(views: sv.datasets.DemoViews, tmp_path: Path) -> None:
    import lance

    session = _tiny_session()
    Gallery.build(views.images[:6], session, tmp_path / "g", progress=False)
    dataset = lance.dataset(str(tmp_path / "g"))
    dataset.update({"grid_h": "grid_h + 1"}, where="source = '4'")  # a well-formed commit with a wrong grid
    with pytest.raises(GalleryError, match=r"row \d+ \('4'\) fails its checksum"):
        Gallery.open(tmp_path / "g", session)


def test_edited_metadata_and_stale_weights_are_refused_by_name(views: sv.datasets.DemoViews, tmp_path: Path) -> None:
    import lance

    session = _tiny_session()
    Gallery.build(views.images[:4], session, tmp_path / "g", progress=False)
    retrained = _tiny_session()
    with torch.no_grad():
        retrained.model[0].weight.mul_(1.01)  # same model name, other weights
    stale = sv.ModelSession(retrained.model, "1", size=64, device="cpu", name="tiny")
    with pytest.raises(GalleryError, match=r"another session \(weights: gallery '[0-9a-f]+' vs session '[0-9a-f]+'\)"):
        Gallery.open(tmp_path / "g", stale)
    dataset = lance.dataset(str(tmp_path / "g"))
    metadata = dict(dataset.schema.metadata)
    fingerprint = json.loads(metadata[b"simvis.fingerprint"])
    fingerprint["size"] = 96
    metadata[b"simvis.fingerprint"] = json.dumps(fingerprint).encode()
    dataset.update_schema_metadata({k.decode(): v.decode() for k, v in metadata.items()}, replace=True)
    with pytest.raises(GalleryError, match=r"another session \(size: gallery 96 vs session 64\)"):
        Gallery.open(tmp_path / "g", session)
    dataset.update_schema_metadata({"simvis.format": "2"})
    with pytest.raises(GalleryError, match="format version 2; this library reads gallery format 3"):
        Gallery.open(tmp_path / "g", session)
    (tmp_path / "plain").mkdir()
    with pytest.raises(GalleryError, match="no gallery at"):
        Gallery.open(tmp_path / "plain", session)
    with pytest.raises(GalleryError, match="path is empty"):
        Gallery.open("", session)


TRUNCATED = textwrap.dedent("""
    import sys, os
    sys.path.insert(0, sys.argv[2])
    from test_gallery import _tiny_session
    from simvis_widgets.datasets import demo_views
    from simvis_widgets.gallery import Gallery, GalleryError
    session = _tiny_session()
    images = demo_views(1, short_side=96).images
    gallery = Gallery.open(sys.argv[1], session)
    (data,) = [os.path.join(sys.argv[1], "data", f) for f in os.listdir(os.path.join(sys.argv[1], "data"))]
    os.truncate(data, os.path.getsize(data) // 3)  # another program cuts the file under the open gallery
    try:
        gallery.search(images[0], k=3)
    except GalleryError as err:
        print("GalleryError:", err)
    else:
        print("no error")
""")


def test_a_file_truncated_by_another_process_is_an_error_not_a_crash(tmp_path: Path) -> None:
    session = _tiny_session()
    Gallery.build(sv.datasets.demo_views(1, short_side=96).images, session, tmp_path / "g", progress=False)
    script = tmp_path / "reader.py"
    script.write_text(TRUNCATED)
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "g"), str(Path(__file__).parent)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, f"the reader died (code {done.returncode}): {done.stderr[-800:]}"
    assert done.stdout.startswith("GalleryError: gallery '"), done.stdout + done.stderr[-800:]


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
        Gallery.build(folder, resnet18_random, cache, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a second, cached rebuild says nothing about the same broken bytes
        again = Gallery.build(folder, resnet18_random, cache, progress=False)
    assert len(again) == 3 and again.reused == 3 and again.embedded == 0
    assert [src for src, _ in again.unreadable.values()] == [str(folder / "broken.jpg")]
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff broken differently")  # other bytes: tried and reported again
    with pytest.warns(UserWarning, match="broken.jpg"):
        Gallery.build(folder, resnet18_random, cache, progress=False)
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


def test_another_index_over_the_keys_gives_the_same_hits(gallery: Gallery, views: sv.datasets.DemoViews) -> None:
    from simvis_widgets.gallery.index import ArrayKeys, Int8Index

    mask = _region(views.images[2])
    exact = gallery.search(views.images[2], mask=mask, k=6)
    in_ram = ArrayKeys(gallery.keys.keys(np.arange(len(gallery))))
    original = gallery.index
    gallery.use_index(Int8Index.build(in_ram))
    try:
        again = gallery.search(views.images[2], mask=mask, k=6)
    finally:
        gallery.use_index(original)
    assert [h.index for h in again] == [h.index for h in exact]
    np.testing.assert_allclose([h.score for h in again], [h.score for h in exact], rtol=1e-6)
    with pytest.raises(GalleryError, match="needs a search"):
        gallery.use_index(object())  # type: ignore[arg-type]


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
    # The index ranks exactly as the explicit scoring matrix does (a region query's key has a trailing 0).
    q = torch.randn(8)
    explicit = gallery.scoring_matrix() @ q
    values, order = gallery.index.search(np.append(q.numpy(), np.float32(0)), 6)
    torch.testing.assert_close(torch.from_numpy(values), explicit[order], rtol=1e-5, atol=1e-6)
    assert order.tolist() == torch.argsort(explicit, descending=True).tolist()


def test_building_into_a_folder_that_is_not_a_gallery_touches_nothing(
    views: sv.datasets.DemoViews, tmp_path: Path
) -> None:
    session = _tiny_session()
    folder = tmp_path / "photos"
    _write_pngs(folder, views.images[:2])
    before = sorted(p.name for p in folder.iterdir())
    with pytest.raises(GalleryError, match="exists and is not a gallery"):
        Gallery.build(folder, session, folder, progress=False)  # the source folder given as the path by mistake
    assert sorted(p.name for p in folder.iterdir()) == before
    (tmp_path / "file").write_text("x")
    with pytest.raises(GalleryError, match="exists and is not a gallery"):
        Gallery.build(views.images[:2], session, tmp_path / "file", progress=False)
    (tmp_path / "empty").mkdir()
    assert len(Gallery.build(views.images[:2], session, tmp_path / "empty", progress=False)) == 2


@pytest.mark.parametrize(("value", "message"), [(float("nan"), "non-finite embedding"), (0.0, "all-zero embedding")])
def test_embeddings_a_gallery_cannot_score_are_refused_before_any_commit(
    views: sv.datasets.DemoViews, tmp_path: Path, value: float, message: str
) -> None:
    session = _tiny_session()
    real = session.batch_features

    def broken(batch: list[np.ndarray]) -> torch.Tensor:
        out = real(batch)
        if len(batch) == 1:
            out = torch.full_like(out, value)
        return out

    session.batch_features = broken  # type: ignore[method-assign]
    with pytest.raises(GalleryError, match=message):
        Gallery.build(views.images[:3], session, tmp_path / "g", batch_size=2, commit_every=1, progress=False)
    session.batch_features = real  # type: ignore[method-assign]
    assert len(Gallery.open(tmp_path / "g", session, images=views.images)) == 2  # the good first batch was kept


@pytest.mark.parametrize("value", [7e4, float("inf")])
def test_features_beyond_float16_are_refused_unless_recomputed(
    views: sv.datasets.DemoViews, tmp_path: Path, value: float
) -> None:
    """Stored features are float16: a value float16 cannot hold (or an inf) stops the build before that batch is
    stored, naming the limit and the way out; features="recompute" stores none and builds."""
    session = _tiny_session()
    real = session.batch_features

    def too_big(batch: list[np.ndarray]) -> torch.Tensor:
        out = real(batch)
        if len(batch) == 1:
            out[0, 0, 0, 0] = value
        return out

    session.batch_features = too_big  # type: ignore[method-assign]
    with pytest.raises(GalleryError, match=r"largest value is 65504.*features='recompute'"):
        Gallery.build(views.images[:3], session, tmp_path / "g", batch_size=2, commit_every=1, progress=False)
    recomputed = Gallery.build(views.images[:3], session, tmp_path / "r", features="recompute", progress=False)
    session.batch_features = real  # type: ignore[method-assign]
    assert len(Gallery.open(tmp_path / "g", session, images=views.images)) == 2  # the good first batch was kept
    assert len(recomputed) == 3


def test_re_rank_keys_are_cached_within_a_bound_and_equal_the_stored_ones(
    views: sv.datasets.DemoViews, tmp_path: Path
) -> None:
    from simvis_widgets.gallery import StoreKeys

    session = _tiny_session()
    built = Gallery.build(views.images, session, tmp_path / "g", progress=False)
    stored = built.embeddings.numpy()
    row_bytes = 4 * stored.shape[1]
    keys = StoreKeys(built.store, np.arange(len(built)), None, session.normalize, cache_bytes=3 * row_bytes)
    reads = []
    real_take = built.store.take

    def counting_take(rows: np.ndarray, **kw: bool):  # type: ignore[no-untyped-def]
        reads.append(len(rows))
        return real_take(rows, **kw)

    built.store.take = counting_take  # type: ignore[method-assign]
    np.testing.assert_array_equal(keys.embeddings(np.array([4, 1, 4])), stored[[4, 1, 4]])
    np.testing.assert_array_equal(keys.embeddings(np.array([1, 4])), stored[[1, 4]])
    assert reads == [3]  # the second read came from the cache
    np.testing.assert_array_equal(keys.embeddings(np.array([0, 2])), stored[[0, 2]])  # 4 rows: the oldest goes
    np.testing.assert_array_equal(keys.embeddings(np.array([1])), stored[[1]])
    assert reads == [3, 2, 1]
    np.testing.assert_array_equal(keys.embeddings(np.arange(5)), stored[:5])  # more than the cache: read through
    assert reads[-1] == 5


def test_a_full_disk_stops_the_build_with_an_error_and_keeps_the_commits(tmp_path: Path) -> None:
    disk = tmp_path / "tiny"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=400k", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {mounted.stderr.decode().strip()}")
    try:
        session = _tiny_session()
        images = [np.random.default_rng(i).integers(0, 255, (64, 64, 3), dtype=np.uint8) for i in range(200)]
        with pytest.raises(GalleryError, match=r"committing rows failed: .*No space left on device"):
            Gallery.build(images, session, disk / "g", batch_size=4, commit_every=4, progress=False)
        kept = Gallery.open(disk / "g", session, images=images)  # every commit before the full disk, verified
        assert 0 < len(kept) < 200 and len(kept) % 4 == 0
        hits = kept.search(images[0], k=3)
        assert hits[0].source == 0 and hits[0].score == pytest.approx(1.0, abs=1e-5)
    finally:
        subprocess.run(["umount", str(disk)], check=False)
