"""Offline demo data: real photos that ship inside scikit-image's wheel (no download).

=================== ========================================================================
name                where it comes from
=================== ========================================================================
motorcycle_left     ``skimage.data.stereo_motorcycle()[0]``: Middlebury 2014 stereo pair, left
motorcycle_right    ``skimage.data.stereo_motorcycle()[1]``: the same scene, right view
chelsea             ``skimage.data.chelsea()``: Stefan van der Walt's cat
coffee              ``skimage.data.coffee()``: a cup of coffee (Rachel Michetti)
astronaut           ``skimage.data.astronaut()``: Eileen Collins (NASA, public domain)
rocket              ``skimage.data.rocket()``: SpaceX Falcon 9 (public domain)
=================== ========================================================================
"""

from __future__ import annotations

import numpy as np

DEMO_IMAGES = ("motorcycle_left", "motorcycle_right", "chelsea", "coffee", "astronaut", "rocket")


def _skimage_data():  # type: ignore[no-untyped-def]
    try:
        from skimage import data
    except ImportError:
        raise ImportError(
            "the demo photos ship inside scikit-image: pip install 'simvis-widgets[demo]' (or scikit-image)"
        ) from None
    return data


def demo_image(name: str) -> np.ndarray:
    """One demo photo as an ``H x W x 3`` uint8 array (see the module docstring for the sources)."""
    data = _skimage_data()
    if name == "motorcycle_left":
        return data.stereo_motorcycle()[0]
    if name == "motorcycle_right":
        return data.stereo_motorcycle()[1]
    if name in DEMO_IMAGES:
        return getattr(data, name)()
    raise KeyError(f"unknown demo image {name!r}; choose one of {', '.join(DEMO_IMAGES)}")


def demo_images() -> dict[str, np.ndarray]:
    """All demo photos by name."""
    return {name: demo_image(name) for name in DEMO_IMAGES}
