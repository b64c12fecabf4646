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
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import ImageInputError

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
