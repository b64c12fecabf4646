"""Offline demo data: real photos that ship inside the scikit-image and scikit-learn wheels (no download).

``china`` and ``flower`` need scikit-learn only; the others need scikit-image (both come with
``pip install "simvis-widgets[demo]"``).

=================== ========================================================================
name                where it comes from
=================== ========================================================================
motorcycle_left     ``skimage.data.stereo_motorcycle()[0]``: Middlebury 2014 stereo pair, left
motorcycle_right    ``skimage.data.stereo_motorcycle()[1]``: the same scene, right view
chelsea             ``skimage.data.chelsea()``: Stefan van der Walt's cat
coffee              ``skimage.data.coffee()``: a cup of coffee (Rachel Michetti)
astronaut           ``skimage.data.astronaut()``: Eileen Collins (NASA, public domain)
rocket              ``skimage.data.rocket()``: SpaceX Falcon 9 (public domain)
hubble              ``skimage.data.hubble_deep_field()``: Hubble eXtreme Deep Field (NASA, public domain)
ihc                 ``skimage.data.immunohistochemistry()``: stained tissue (Greg Sherwood, CC0)
retina              ``skimage.data.retina()``: a human retina (Wikimedia, public domain)
china               ``sklearn.datasets.load_sample_images()``: china.jpg (a temple in China, CC BY 2.0)
flower              ``sklearn.datasets.load_sample_images()``: flower.jpg (a flower, CC BY 2.0)
=================== ========================================================================

:func:`demo_views` turns each photo into a group of realistic views (crops, scale, flips, colour, small
rotations and perspective), so retrieval has right answers; :func:`demo_gallery` embeds them.

:func:`fashion_mnist` reads a real labelled data set, Fashion-MNIST (Xiao, Rasul, Vollgraf 2017: 70,000 28 x 28
grey photos of clothing in 10 classes), from where it is installed: Debian's ``dataset-fashion-mnist`` package, or
the files torchvision's ``FashionMNIST(root, download=True)`` fetches. Nothing is downloaded here.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import ImageInputError, SimvisError

if TYPE_CHECKING:  # pragma: no cover
    from .gallery import Gallery
    from .session import ModelSession

DEMO_IMAGES = (
    "motorcycle_left",
    "motorcycle_right",
    "chelsea",
    "coffee",
    "astronaut",
    "rocket",
    "hubble",
    "ihc",
    "retina",
    "china",
    "flower",
)
GALLERY_PHOTOS = tuple(name for name in DEMO_IMAGES if name != "motorcycle_right")
"""One photo per scene (the stereo pair's second view is left out)."""
SKLEARN_PHOTOS = ("china", "flower")
"""The demo photos that come from scikit-learn (``load_sample_images``): they work without scikit-image."""
_SKIMAGE_NAMES = {"hubble": "hubble_deep_field", "ihc": "immunohistochemistry"}


class UnknownDemoImageError(ImageInputError, KeyError):
    """A demo photo name that does not exist; the message lists the names that do. Also a ``KeyError`` (what an
    unknown name raised before) and an :class:`~simvis_widgets.errors.ImageInputError`."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0]) if self.args else ""


def _skimage_data(name: str):  # type: ignore[no-untyped-def]
    try:
        from skimage import data
    except ImportError:
        raise ImportError(
            f"the demo photo {name!r} ships inside scikit-image, which is not installed: "
            "pip install 'simvis-widgets[demo]' (or scikit-image). "
            f"Without it, {' and '.join(SKLEARN_PHOTOS)} (from scikit-learn) still work."
        ) from None
    return data


def demo_image(name: str) -> np.ndarray:
    """One demo photo as an ``H x W x 3`` uint8 array (see the module docstring for the sources).

    Raises :class:`UnknownDemoImageError` (a ``KeyError``) listing :data:`DEMO_IMAGES` for an unknown name
    (whatever is installed), and ``ImportError`` naming the package to install when the photo's package is
    missing: ``china`` / ``flower`` need scikit-learn only, the others scikit-image."""
    if not isinstance(name, str) or name not in DEMO_IMAGES:
        try:
            _skimage_data(str(name))
            note = ""
        except ImportError:
            note = f" (scikit-image is not installed: only {', '.join(SKLEARN_PHOTOS)} work here)"
        raise UnknownDemoImageError(f"unknown demo image {name!r}; choose one of {', '.join(DEMO_IMAGES)}{note}")
    if name in SKLEARN_PHOTOS:
        try:
            from sklearn.datasets import load_sample_image
        except ImportError:
            raise ImportError(
                f"the demo photo {name!r} ships inside scikit-learn, which is not installed: "
                "pip install 'simvis-widgets[demo]' (or scikit-learn)"
            ) from None
        return np.asarray(load_sample_image(f"{name}.jpg"))
    data = _skimage_data(name)
    if name == "motorcycle_left":
        return data.stereo_motorcycle()[0]
    if name == "motorcycle_right":
        return data.stereo_motorcycle()[1]
    return getattr(data, _SKIMAGE_NAMES.get(name, name))()


def demo_images() -> dict[str, np.ndarray]:
    """All demo photos by name."""
    return {name: demo_image(name) for name in DEMO_IMAGES}


@dataclass
class DemoViews:
    """Views of the demo photos with their group (the source photo): right answers for retrieval."""

    images: list[np.ndarray]
    groups: list[str]
    names: list[str]


def demo_views(
    views_per_photo: int = 5, seed: int = 0, short_side: int = 320, photos: tuple[str, ...] = GALLERY_PHOTOS
) -> DemoViews:
    """Each photo (shorter side ``short_side`` px) plus ``views_per_photo - 1`` augmented views of it:
    a random resized crop (50-100 % of the area), horizontal flip, colour jitter, a rotation up to 10 degrees
    and a mild perspective change, drawn with a fixed ``seed`` (the same views every time)."""
    import torch
    from PIL import Image
    from torchvision.transforms import v2

    if views_per_photo < 1:
        raise ValueError(f"views_per_photo must be >= 1, got {views_per_photo}")
    images, groups, names = [], [], []
    for photo in photos:
        img = demo_image(photo)
        h, w = img.shape[:2]
        f = short_side / min(h, w)
        size = (int(round(h * f)), int(round(w * f)))
        base = np.asarray(Image.fromarray(img).resize((size[1], size[0]), Image.Resampling.BICUBIC))
        augment = v2.Compose(
            [
                v2.RandomResizedCrop(
                    size, scale=(0.5, 1.0), ratio=(size[1] / size[0] * 0.8, size[1] / size[0] * 1.25), antialias=True
                ),
                v2.RandomHorizontalFlip(),
                v2.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.3, hue=0.03),
                v2.RandomRotation(10),
                v2.RandomPerspective(distortion_scale=0.2, p=0.5),
            ]
        )
        for view in range(views_per_photo):
            if view == 0:
                out = base
            else:
                # torchvision draws from torch's global generator: seed it per view (so a photo's views do not
                # depend on which photos come before it) inside fork_rng (so the caller's state is untouched).
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(zlib.crc32(f"{photo}/{view}/{seed}".encode()))
                    tensor = torch.from_numpy(np.array(base)).permute(2, 0, 1)
                    out = augment(tensor).permute(1, 2, 0).numpy()
            images.append(np.array(out, copy=True, order="C"))
            groups.append(photo)
            names.append(f"{photo}/{view}")
    return DemoViews(images, groups, names)


def demo_gallery(
    session: ModelSession, views_per_photo: int = 5, seed: int = 0, short_side: int = 320, **build: Any
) -> Gallery:
    """A :class:`~simvis_widgets.gallery.Gallery` of :func:`demo_views`, labelled by source photo."""
    from .gallery import Gallery

    views = demo_views(views_per_photo, seed, short_side)
    build.setdefault("progress", False)
    return Gallery.build(views.images, session, labels=views.groups, **build)


# --------------------------------------------------------------------------------------------------
# Fashion-MNIST
# --------------------------------------------------------------------------------------------------

FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
FASHION_MNIST_ENV = "SIMVIS_FASHION_MNIST"
"""An environment variable naming a folder that holds the Fashion-MNIST files (searched first)."""
FASHION_MNIST_SYSTEM_DIRS = ("/usr/share/datasets/fashion-mnist",)
"""Where Debian's ``dataset-fashion-mnist`` installs the files."""
_FASHION_MNIST_FILES = {
    # split: (images file, labels file, count)
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", 60000),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", 10000),
}
_FASHION_MNIST_SHA256 = {
    # SHA-256 of the uncompressed files as Debian's dataset-fashion-mnist (0.0~git20200523) ships them; a copy from
    # torchvision's download was not compared (no network where this was written)
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}


class DatasetError(SimvisError, FileNotFoundError):
    """A data set that is not installed where it was looked for, or whose files are damaged or not the release
    they claim to be. The message says where it looked and how to get it."""


@dataclass(frozen=True, eq=False)
class LabelledImages:
    """Images with integer labels: ``images`` ``(n, H, W)`` uint8 (grey) or ``(n, H, W, 3)``, ``labels`` ``(n,)``
    int64 indices into ``classes``. Both arrays are read-only."""

    images: np.ndarray = field(repr=False)
    labels: np.ndarray = field(repr=False)
    classes: tuple[str, ...]
    source: str

    def __post_init__(self) -> None:
        if len(self.images) != len(self.labels):
            raise DatasetError(f"{len(self.images)} images but {len(self.labels)} labels")
        for name in ("images", "labels"):
            view = getattr(self, name).view()
            view.setflags(write=False)
            object.__setattr__(self, name, view)

    def __len__(self) -> int:
        return len(self.labels)

    def __repr__(self) -> str:
        return f"LabelledImages({len(self)} images {self.images.shape[1:]}, {len(self.classes)} classes, {self.source})"

    def subset(
        self, classes: Sequence[int] | None = None, per_class: int | None = None, seed: int = 0
    ) -> LabelledImages:
        """The images of ``classes`` (all by default), at most ``per_class`` of each drawn at random with ``seed``
        (all of them by default), in their original order; labels keep their class indices."""
        wanted = range(len(self.classes)) if classes is None else list(classes)
        for c in wanted:
            if not isinstance(c, (int, np.integer)) or isinstance(c, bool) or not 0 <= c < len(self.classes):
                raise DatasetError(f"class {c!r} is not one of 0..{len(self.classes) - 1}")
        if per_class is not None and (not isinstance(per_class, (int, np.integer)) or per_class < 1):
            raise DatasetError(f"per_class must be an integer >= 1, got {per_class!r}")
        rng = np.random.default_rng(seed)
        keep: list[np.ndarray] = []
        for c in wanted:
            members = np.flatnonzero(self.labels == c)
            if per_class is not None and len(members) > per_class:
                members = np.sort(rng.choice(members, per_class, replace=False))
            keep.append(members)
        rows = np.sort(np.concatenate(keep)) if keep else np.zeros(0, np.int64)
        return LabelledImages(self.images[rows], self.labels[rows], self.classes, self.source)

    def rgb(self, index: int, size: int | None = None) -> np.ndarray:
        """Image ``index`` as ``H x W x 3`` uint8 (grey repeated), resized to ``size x size`` (bicubic) if given."""
        img = self.images[index]
        if size is not None and img.shape[:2] != (size, size):
            from PIL import Image

            img = np.asarray(Image.fromarray(img).resize((size, size), Image.Resampling.BICUBIC))
        return np.repeat(img[..., None], 3, axis=2) if img.ndim == 2 else np.array(img)


def _fashion_mnist_dirs(root: str | os.PathLike[str] | None) -> list[Path]:
    """The folders to search, in order: ``root`` alone when given (and its torchvision layout
    ``FashionMNIST/raw``); else the environment variable, Debian's folder, torchvision's layout under ``./data``."""
    if root is not None:
        bases = [Path(root)]
    else:
        bases = [Path(p) for p in (os.environ.get(FASHION_MNIST_ENV), *FASHION_MNIST_SYSTEM_DIRS) if p]
        bases.append(Path("data"))
    found: list[Path] = []
    for base in bases:
        found += [base, base / "FashionMNIST" / "raw"]
    return found


def _read_idx(folder: Path, name: str) -> bytes | None:
    """The uncompressed bytes of ``name`` in ``folder`` (``name`` or ``name.gz``), None where neither exists.
    A damaged gzip (bad CRC, cut short) is a :class:`DatasetError`."""
    for path, opener in ((folder / name, open), (folder / f"{name}.gz", gzip.open)):
        if path.is_file():
            try:
                with opener(path, "rb") as f:
                    return bytes(f.read())
            except (OSError, EOFError, zlib.error) as err:
                raise DatasetError(f"{path} is damaged ({err}); reinstall it") from None
    return None


def _check_idx(data: bytes, name: str, where: Path, kind: int, shape: tuple[int, ...]) -> np.ndarray:
    """Parse an IDX file (big-endian header: magic ``0x0000 08 <ndim>``, then the sizes) of uint8 values and
    check it is the release's: its header and its SHA-256."""
    digest = hashlib.sha256(data).hexdigest()
    if digest != _FASHION_MNIST_SHA256[name]:
        raise DatasetError(
            f"{where / name} is not the Fashion-MNIST release (SHA-256 {digest[:16]}..., expected "
            f"{_FASHION_MNIST_SHA256[name][:16]}...): damaged, or another data set's file"
        )
    ndim = len(shape)
    header = 4 + 4 * ndim
    magic = int.from_bytes(data[:4], "big")
    sizes = tuple(int.from_bytes(data[4 + 4 * k : 8 + 4 * k], "big") for k in range(ndim))
    if magic != 0x0800 + kind or sizes != shape or len(data) != header + int(np.prod(shape)):
        raise DatasetError(f"{where / name} has an unexpected layout (magic {magic:#x}, sizes {sizes})")
    return np.frombuffer(data, np.uint8, offset=header).reshape(shape)


def fashion_mnist(split: str = "train", root: str | os.PathLike[str] | None = None) -> LabelledImages:
    """Fashion-MNIST's ``split`` (``"train"``: 60,000 images, ``"test"``: 10,000) as :class:`LabelledImages`
    (``28 x 28`` grey uint8, labels 0-9 in :data:`FASHION_MNIST_CLASSES` order), read from the first folder of
    :func:`_fashion_mnist_dirs` that has both files (``.gz`` or uncompressed). Every file is checked against the
    release's SHA-256. Not found: a :class:`DatasetError` naming the folders searched and how to install it."""
    if split not in _FASHION_MNIST_FILES:
        raise DatasetError(f"split must be one of {', '.join(_FASHION_MNIST_FILES)}, got {split!r}")
    images_name, labels_name, count = _FASHION_MNIST_FILES[split]
    searched = _fashion_mnist_dirs(root)
    for folder in searched:
        raw_images = _read_idx(folder, images_name)
        if raw_images is None:
            continue
        raw_labels = _read_idx(folder, labels_name)
        if raw_labels is None:
            raise DatasetError(f"{folder} has {images_name} but not {labels_name} (.gz): an incomplete copy")
        images = _check_idx(raw_images, images_name, folder, 3, (count, 28, 28))
        labels = _check_idx(raw_labels, labels_name, folder, 1, (count,)).astype(np.int64)
        if int(labels.max()) >= len(FASHION_MNIST_CLASSES):
            raise DatasetError(f"{folder / labels_name} has label {int(labels.max())}; Fashion-MNIST has 0-9")
        return LabelledImages(images, labels, FASHION_MNIST_CLASSES, str(folder))
    raise DatasetError(
        f"Fashion-MNIST ({split}) was not found; looked in: {', '.join(str(p) for p in searched)}. "
        "Install it with `apt-get install dataset-fashion-mnist` (Debian, Ubuntu), or where there is internet with "
        "`torchvision.datasets.FashionMNIST('data', download=True)` (then it is found under ./data, or pass "
        f"root=... or set {FASHION_MNIST_ENV})."
    )
