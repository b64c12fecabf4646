"""The Ray engine (``Gallery.build(..., engine="ray")``) on a local two-CPU Ray: it builds the gallery the local
engine builds (same rows, same order, same search results), survives a worker killed mid-build, resumes into an
existing gallery, and names what is missing when Ray is not installed."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import ray
import torch
from PIL import Image

import simvis_widgets as sv
from simvis_widgets.gallery import Gallery, GalleryError


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[None]:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def views() -> sv.datasets.DemoViews:
    return sv.datasets.demo_views(views_per_photo=4, short_side=96, photos=("chelsea", "coffee", "astronaut", "rocket"))


def assert_same_gallery(built: Gallery, reference: Gallery) -> None:
    """Same images, labels and order; embeddings equal to 1e-5."""
    assert built.sources == reference.sources
    assert built.labels == reference.labels
    torch.testing.assert_close(built.embeddings, reference.embeddings, rtol=0, atol=1e-5)


def assert_same_hits(a: list[Any], b: list[Any]) -> None:
    assert [h.index for h in a] == [h.index for h in b]
    assert [h.source for h in a] == [h.source for h in b]
    np.testing.assert_allclose([h.score for h in a], [h.score for h in b], rtol=0, atol=1e-5)


def test_missing_ray_is_a_clear_error(
    resnet18_random: sv.ModelSession, views: sv.datasets.DemoViews, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails, as without the package
    with pytest.raises(GalleryError, match=r"engine='ray' needs Ray: pip install 'simvis-widgets\[distributed\]'"):
        Gallery.build(views.images[:2], resnet18_random, tmp_path / "g", engine="ray", progress=False)


def test_a_ray_build_is_the_local_build(
    ray_cluster: None, resnet18_random: sv.ModelSession, views: sv.datasets.DemoViews, tmp_path: Path
) -> None:
    images, labels = views.images, views.groups
    # Two actors, batches of 3, a commit every 4 images: batches finish out of order, yet the rows are committed
    # in item order, so the gallery lists the images as the local build does.
    built = Gallery.build(
        images, resnet18_random, tmp_path / "ray", engine="ray", labels=labels, batch_size=3, commit_every=4,
        progress=False, ray_options={"actors": 2},
    )  # fmt: skip
    local = Gallery.build(images, resnet18_random, tmp_path / "local", labels=labels, batch_size=3, progress=False)
    assert (len(built), built.embedded, built.reused) == (len(images), len(images), 0)
    assert built.store.version > 1  # committed as it went, not once at the end
    assert_same_gallery(built, local)
    query = images[5]
    assert_same_hits(built.search(query, k=6), local.search(query, k=6))
    assert_same_hits(built.search(query, box=(10, 20, 70, 80), k=6), local.search(query, box=(10, 20, 70, 80), k=6))
    np.testing.assert_array_equal(built.stored_features(3), local.stored_features(3))


def killing_session(marker: Path) -> sv.ModelSession:
    """A random-init resnet18 whose network, in any process but this one (a Ray worker), kills its process on its
    second batch or later while ``marker`` exists (deleting it first: exactly one worker dies, once, mid-build)."""
    torch.manual_seed(1)
    session = sv.ModelSession.from_pretrained("resnet18", pretrained=False, size=64, device="cpu")
    driver = os.getpid()
    calls = [0]  # per process: each worker unpickles its own copy

    def kill_once(module: torch.nn.Module, args: Any) -> None:
        if os.getpid() == driver:
            return
        calls[0] += 1
        if calls[0] < 2:
            return
        try:
            os.unlink(marker)
        except FileNotFoundError:
            return
        os._exit(1)

    session.model.register_forward_pre_hook(kill_once)  # travels with the session to the actors (cloudpickle)
    return session


def test_a_worker_killed_mid_build_is_retried(ray_cluster: None, views: sv.datasets.DemoViews, tmp_path: Path) -> None:
    marker = tmp_path / "kill-a-worker"
    session = killing_session(marker)
    images = views.images[:12]  # 6 batches on 2 actors: one of them runs at least 2, and dies in its second
    # The actor is restarted and its batch run again: the build completes, as if nothing had happened.
    marker.write_text("kill")
    built = Gallery.build(images, session, tmp_path / "g", engine="ray", batch_size=2, progress=False)
    assert not marker.exists()  # a worker did die
    assert (len(built), built.embedded) == (len(images), len(images))
    assert_same_gallery(built, Gallery.build(images, session, tmp_path / "local", batch_size=2, progress=False))


def test_a_ray_build_resumes_into_an_existing_gallery(
    ray_cluster: None, resnet18_random: sv.ModelSession, views: sv.datasets.DemoViews, tmp_path: Path
) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    for i, image in enumerate(views.images[:12]):
        Image.fromarray(image).save(folder / f"v{i:02d}.png")
    (folder / "zz_broken.png").write_bytes(b"\x89PNG not really a png")
    paths = sorted(str(p) for p in folder.glob("v*.png"))
    store = tmp_path / "g.lance"
    first = Gallery.build(
        paths[:5], resnet18_random, store, engine="ray", batch_size=2, progress=False, ray_options={"actors": 1}
    )
    assert (len(first), first.embedded, first.reused) == (5, 5, 0)
    with pytest.warns(UserWarning, match=r"skipped 1 unreadable image\(s\):\n  .*zz_broken\.png"):
        full = Gallery.build(
            folder, resnet18_random, store, engine="ray", batch_size=2, progress=False, ray_options={"actors": 1}
        )
    assert (len(full), full.reused, full.embedded) == (12, 5, 7)
    assert list(full.unreadable.values())[0][0].endswith("zz_broken.png")  # recorded: skipped silently next time
    with pytest.warns(UserWarning, match="zz_broken"):
        fresh = Gallery.build(folder, resnet18_random, tmp_path / "local", batch_size=2, progress=False)
    assert full.sources == fresh.sources  # the first 5 files, then the rest: item order in both
    torch.testing.assert_close(full.embeddings, fresh.embeddings, rtol=0, atol=1e-5)
