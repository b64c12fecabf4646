"""Fashion-MNIST, read offline from where it is installed (Debian's dataset-fashion-mnist, or torchvision's
layout): the real files, every way they can be missing or damaged, and the subset / RGB helpers."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest

from simvis_widgets import datasets
from simvis_widgets.datasets import FASHION_MNIST_CLASSES, DatasetError, LabelledImages, fashion_mnist
from simvis_widgets.errors import SimvisError

SYSTEM = Path(datasets.FASHION_MNIST_SYSTEM_DIRS[0])
needs_system_copy = pytest.mark.skipif(
    not (SYSTEM / "t10k-images-idx3-ubyte.gz").is_file(),
    reason="dataset-fashion-mnist is not installed (make test installs it)",
)


@pytest.fixture
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No environment variable, no system folder, and a working directory without ./data."""
    monkeypatch.delenv(datasets.FASHION_MNIST_ENV, raising=False)
    monkeypatch.setattr(datasets, "FASHION_MNIST_SYSTEM_DIRS", ())
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _copy_test_split(folder: Path, compressed: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        if compressed:
            shutil.copy(SYSTEM / f"{name}.gz", folder / f"{name}.gz")
        else:
            (folder / name).write_bytes(gzip.decompress((SYSTEM / f"{name}.gz").read_bytes()))
    return folder


@needs_system_copy
def test_the_real_splits() -> None:
    test = fashion_mnist("test")
    assert len(test) == 10000 and test.images.shape == (10000, 28, 28) and test.images.dtype == np.uint8
    assert np.bincount(test.labels).tolist() == [1000] * 10
    assert test.classes == FASHION_MNIST_CLASSES and test.source == str(SYSTEM)
    assert not test.images.flags.writeable and not test.labels.flags.writeable
    train = fashion_mnist("train")
    assert np.bincount(train.labels).tolist() == [6000] * 10
    # the data are photos, not zeros: trousers are tall and narrow, bags wide
    trouser, bag = test.images[test.labels == 1].mean(0), test.images[test.labels == 8].mean(0)
    assert trouser[:, :5].mean() < trouser[:, 11:17].mean() and bag[:, 2:6].mean() > trouser[:, 2:6].mean()


@needs_system_copy
def test_root_env_and_torchvision_layouts(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    expected = fashion_mnist("test", root=SYSTEM).labels
    flat = _copy_test_split(isolated / "flat", compressed=False)
    assert np.array_equal(fashion_mnist("test", root=flat).labels, expected)
    torchvision_style = _copy_test_split(isolated / "tv" / "FashionMNIST" / "raw")
    assert np.array_equal(fashion_mnist("test", root=isolated / "tv").labels, expected)
    monkeypatch.setenv(datasets.FASHION_MNIST_ENV, str(flat))
    assert fashion_mnist("test").source == str(flat)
    monkeypatch.delenv(datasets.FASHION_MNIST_ENV)
    _copy_test_split(isolated / "data" / "FashionMNIST" / "raw")  # torchvision's download into ./data
    assert fashion_mnist("test").source.endswith("data/FashionMNIST/raw")
    assert torchvision_style.is_dir()


def test_not_found_says_where_it_looked_and_how_to_get_it(isolated: Path) -> None:
    with pytest.raises(DatasetError) as err:
        fashion_mnist("test", root=isolated / "nowhere")
    message = str(err.value)
    assert "apt-get install dataset-fashion-mnist" in message and "FashionMNIST('data', download=True)" in message
    assert str(isolated / "nowhere") in message and datasets.FASHION_MNIST_ENV in message
    assert isinstance(err.value, SimvisError) and isinstance(err.value, FileNotFoundError)
    with pytest.raises(DatasetError, match="split must be one of train, test, got 'validation'"):
        fashion_mnist("validation")


@needs_system_copy
def test_damaged_or_foreign_files_are_refused(isolated: Path) -> None:
    raw = _copy_test_split(isolated / "raw", compressed=False)
    data = bytearray((raw / "t10k-images-idx3-ubyte").read_bytes())
    data[5000] ^= 1  # one pixel one grey level off
    (raw / "t10k-images-idx3-ubyte").write_bytes(bytes(data))
    with pytest.raises(DatasetError, match="is not the Fashion-MNIST release"):
        fashion_mnist("test", root=raw)

    cut = _copy_test_split(isolated / "cut")
    blob = (cut / "t10k-images-idx3-ubyte.gz").read_bytes()
    (cut / "t10k-images-idx3-ubyte.gz").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DatasetError, match="is damaged"):
        fashion_mnist("test", root=cut)

    half = _copy_test_split(isolated / "half")
    (half / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DatasetError, match="an incomplete copy"):
        fashion_mnist("test", root=half)


def test_header_and_label_checks(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # files that pass the digest (patched to accept them) but not the layout checks
    folder = isolated / "fake"
    folder.mkdir()
    images = np.zeros((10000, 28, 28), np.uint8)
    header = (0x0803).to_bytes(4, "big") + b"".join(n.to_bytes(4, "big") for n in images.shape)
    (folder / "t10k-images-idx3-ubyte").write_bytes(header + images.tobytes())
    labels = np.full(10000, 11, np.uint8)
    (folder / "t10k-labels-idx1-ubyte").write_bytes(
        (0x0801).to_bytes(4, "big") + (10000).to_bytes(4, "big") + labels.tobytes()
    )
    real = dict(datasets._FASHION_MNIST_SHA256)
    import hashlib

    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        real[name] = hashlib.sha256((folder / name).read_bytes()).hexdigest()
    monkeypatch.setattr(datasets, "_FASHION_MNIST_SHA256", real)
    with pytest.raises(DatasetError, match="has label 11; Fashion-MNIST has 0-9"):
        fashion_mnist("test", root=folder)
    (folder / "t10k-images-idx3-ubyte").write_bytes(header + images.tobytes()[:-28])
    real["t10k-images-idx3-ubyte"] = hashlib.sha256((folder / "t10k-images-idx3-ubyte").read_bytes()).hexdigest()
    with pytest.raises(DatasetError, match="unexpected layout"):
        fashion_mnist("test", root=folder)


def test_subset_and_rgb() -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (50, 28, 28), dtype=np.uint8)
    labels = np.repeat(np.arange(5), 10)
    data = LabelledImages(images, labels, tuple("abcde"), "memory")
    part = data.subset(classes=[1, 3], per_class=4, seed=3)
    assert np.bincount(part.labels, minlength=5).tolist() == [0, 4, 0, 4, 0]
    rows = [int(np.flatnonzero((images == im).all(axis=(1, 2)))[0]) for im in part.images]
    assert rows == sorted(rows) and all(labels[r] == lab for r, lab in zip(rows, part.labels))
    assert np.array_equal(data.subset(classes=[1, 3], per_class=4, seed=3).images, part.images)
    assert len(data.subset()) == 50 and len(data.subset(per_class=100)) == 50
    with pytest.raises(DatasetError, match=r"class 5 is not one of 0\.\.4"):
        data.subset(classes=[5])
    with pytest.raises(DatasetError, match="per_class must be an integer >= 1, got 0"):
        data.subset(per_class=0)
    rgb = data.rgb(7)
    assert rgb.shape == (28, 28, 3) and all(np.array_equal(rgb[..., c], images[7]) for c in range(3))
    assert data.rgb(7, size=64).shape == (64, 64, 3)
    with pytest.raises(DatasetError, match="50 images but 49 labels"):
        LabelledImages(images, labels[:-1], tuple("abcde"), "memory")
    assert "50 images (28, 28), 5 classes" in repr(data)
