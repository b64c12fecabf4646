"""Loading and validating input images.

Everything a user may pass as an image (a file path, a PIL image, an ``H x W``, ``H x W x 3`` or
``H x W x 4`` uint8 / uint16 / float array, a ``C x H x W`` tensor) becomes one ``H x W x 3`` uint8 RGB
array here, or a :class:`ImageInputError` that names the input and what is wrong with it.
"""

from __future__ import annotations

import math
import numbers
import os
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ImageInputError, LimitError

ImageLike = str | os.PathLike | Image.Image | np.ndarray | Any
"""A path, a PIL image, a numpy array or a torch tensor."""

MAX_INPUT_PIXELS = 3072 * 3072
"""The most pixels (height x width) of one network input: 3072 x 3072 = 9.4 megapixels.

Measured as the peak resident memory of a whole process (torch and the model alone: about 0.8 GB) running one
CPU forward pass of the default EfficientNet-Lite0 (``ModelSession.from_pretrained("efficientnet_lite0", size=S,
device="cpu").embed(img)``, square ``S x S`` inputs): 0.83 GB at S = 448 (0.2 MP), 1.0 GB at 896 (0.8 MP),
1.3 GB at 1344 (1.8 MP), 1.6 GB at 1792 (3.2 MP), 1.9 GB at 2048 (4.2 MP), 2.7 GB at 2688 (7.2 MP), 3.3 GB at
3072 (9.4 MP; ``explain`` of a pair: 3.5 GB) and 4.2 GB at 3584 (12.8 MP). Memory grows with the pixel count
(about 0.26 GB per megapixel for this network; larger backbones need more), so the budget is a pixel count, not
a side: an elongated input gets as many pixels as a square one."""

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def check_short_side(short_side: int | None, max_aspect: float) -> None:
    """Check a network input size before any image or model is touched.

    ``short_side`` is the shorter side of the network input in px (None: each image's native size, checked by
    :func:`resize_for_network` when it is known). Raises :class:`ImageInputError` unless it is a positive int
    (``bool`` is refused), and :class:`LimitError` when a square ``short_side x short_side`` input is above
    :data:`MAX_INPUT_PIXELS` (side 3072). An elongated image (up to ``max_aspect`` : 1) has more pixels at the
    same ``short_side``; :func:`resize_for_network` checks its actual target against the same budget."""
    if short_side is None:
        return
    if isinstance(short_side, bool) or not isinstance(short_side, numbers.Integral):
        raise ImageInputError(f"input size must be a whole number of pixels (or None), got {short_side!r}")
    side = int(short_side)
    if side <= 0:
        raise ImageInputError(f"input size must be a positive number of pixels, got {side}")
    if side * side > MAX_INPUT_PIXELS:
        longest = ""
        if isinstance(max_aspect, numbers.Real) and math.isfinite(max_aspect) and max_aspect >= 1:
            longest = f" (an image up to {float(max_aspect):g}:1 would get up to {side}x{round(side * max_aspect)})"
        raise LimitError(
            f"input size {side} px gives a network input of {side}x{side} = {side * side:,} pixels{longest}, above "
            f"the limit of {MAX_INPUT_PIXELS:,} pixels (MAX_INPUT_PIXELS; a square side of at most "
            f"{math.isqrt(MAX_INPUT_PIXELS)} px): use a smaller size"
        )


def _describe(src: Any) -> str:
    if isinstance(src, (str, os.PathLike)):
        return f"image file '{os.fspath(src)}'"
    if isinstance(src, Image.Image):
        return f"PIL image ({src.mode}, {src.width}x{src.height})"
    shape = getattr(src, "shape", None)
    if shape is not None:
        return f"{type(src).__name__} image of shape {tuple(shape)} and dtype {getattr(src, 'dtype', '?')}"
    return f"{type(src).__name__} object"


def load_image(src: ImageLike) -> np.ndarray:
    """Return ``src`` as an ``H x W x 3`` uint8 RGB array.

    * paths: read with Pillow, EXIF orientation applied; PIL's decompression-bomb limit
      (``PIL.Image.MAX_IMAGE_PIXELS``) is enforced as an error, not a warning. A missing file is a
      ``FileNotFoundError``; an empty string or a URL (``https://...``, ``s3://...``: URLs are not fetched,
      download the file first) is an :class:`ImageInputError`;
    * grey, palette, CMYK, 16-bit and alpha images are converted (alpha is composited on white;
      16-bit values are scaled by 1/257). 32-bit integer (PIL mode ``I``) images with values in [0, 255]
      are kept, in [0, 65535] scaled by 1/257; other values are an :class:`ImageInputError` naming the range;
    * float arrays must lie in [0, 1]; uint16 arrays are scaled by 1/257; ``C x H x W`` torch tensors
      (C = 1, 3 or 4, float in [0, 1] or uint8) are accepted.
    """
    if isinstance(src, (str, os.PathLike)):
        name = os.fspath(src)
        if isinstance(name, str) and not name:
            raise ImageInputError("image path is an empty string: pass the path of an image file")
        if isinstance(name, str) and _URL.match(name):
            raise ImageInputError(
                f"{_describe(src)} is a URL: URLs are not fetched; download the file first and pass its local path"
            )
        return _from_pil(_open(Path(src)), _describe(src))
    if isinstance(src, Image.Image):
        return _from_pil(src, _describe(src))
    if isinstance(src, np.ndarray):
        return _from_array(src, _describe(src))
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        torch = None  # type: ignore[assignment]
    if torch is not None and isinstance(src, torch.Tensor):
        what = _describe(src)
        t = src.detach().cpu()
        if t.dim() == 3 and t.shape[0] in (1, 3, 4):
            t = t.permute(1, 2, 0)
        elif t.dim() != 2:
            raise ImageInputError(f"{what}: a tensor image must be C x H x W with C in (1, 3, 4), or H x W")
        if t.dtype == torch.bfloat16 or t.dtype == torch.float16:
            t = t.float()
        return _from_array(t.numpy(), what)
    raise ImageInputError(
        f"cannot use a {type(src).__name__} as an image: pass a file path, a PIL image, a numpy array "
        "(H x W, H x W x 3 or H x W x 4) or a C x H x W tensor"
    )


def _open(path: Path) -> Image.Image:
    what = f"image file '{path}'"
    if not path.exists():
        raise FileNotFoundError(f"{what} does not exist")
    if path.is_dir():
        raise ImageInputError(f"{what} is a directory, not an image")
    if path.stat().st_size == 0:
        raise ImageInputError(f"{what} is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                img.load()
                return ImageOps.exif_transpose(img) or img
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ImageInputError(
            f"{what} is too large to decode safely ({err}); raise PIL.Image.MAX_IMAGE_PIXELS if you trust it"
        ) from None
    except UnidentifiedImageError:
        raise ImageInputError(f"{what} is not a readable image (unknown or corrupt format)") from None
    except PermissionError:
        raise ImageInputError(f"{what} cannot be read: permission denied") from None
    except OSError as err:
        raise ImageInputError(f"{what} is corrupt or truncated: {err}") from None


def _from_pil(img: Image.Image, what: str) -> np.ndarray:
    if img.width == 0 or img.height == 0:
        raise ImageInputError(f"{what} is empty ({img.width}x{img.height})")
    mode = img.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        arr = np.asarray(img).astype(np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        if lo < 0 or hi > 65535:
            raise ImageInputError(
                f"{what}: 32-bit integer pixel values span [{lo:.0f}, {hi:.0f}]; only [0, 255] (kept) or "
                "[0, 65535] (scaled by 1/257) can be shown: rescale the image to 8 or 16 bits first"
            )
        scale = 257.0 if mode.startswith("I;16") or hi > 255 else 1.0
        return _from_array(np.clip(np.round(arr / scale), 0, 255).astype(np.uint8), what)
    if mode == "F":
        return _from_array(np.asarray(img, dtype=np.float32), what)
    if mode == "La":  # premultiplied grey + alpha: PIL converts it to RGBA only through LA
        img, mode = img.convert("LA"), "LA"
    if mode in ("RGBA", "LA", "PA", "RGBa") or (mode in ("P", "L", "RGB") and "transparency" in img.info):
        # alpha, or a colour key (PNG tRNS: one colour or palette entries transparent): composited on white
        return _composite_on_white(np.asarray(img.convert("RGBA")))
    return np.ascontiguousarray(np.asarray(img.convert("RGB"), dtype=np.uint8))


def _composite_on_white(rgba: np.ndarray) -> np.ndarray:
    alpha = rgba[..., 3:4].astype(np.float32) / 255.0
    rgb = rgba[..., :3].astype(np.float32) * alpha + 255.0 * (1.0 - alpha)
    return np.clip(np.round(rgb), 0, 255).astype(np.uint8)


def _from_array(arr: np.ndarray, what: str) -> np.ndarray:
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
        raise ImageInputError(f"{what}: expected H x W, H x W x 3 or H x W x 4")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ImageInputError(f"{what} is empty")
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8) * 255
    elif arr.dtype == np.uint16:
        arr = np.round(arr / 257.0).astype(np.uint8)
    elif np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise ImageInputError(f"{what} contains NaN or infinite values")
        lo, hi = float(arr.min()), float(arr.max())
        if lo < -1e-6 or hi > 1 + 1e-6:
            raise ImageInputError(
                f"{what}: float images must lie in [0, 1], got [{lo:g}, {hi:g}] (divide by 255, or pass uint8)"
            )
        arr = np.round(np.clip(arr, 0, 1) * 255).astype(np.uint8)
    elif arr.dtype != np.uint8:
        if np.issubdtype(arr.dtype, np.integer) and arr.min() >= 0 and arr.max() <= 255:
            arr = arr.astype(np.uint8)
        else:
            raise ImageInputError(f"{what}: unsupported dtype {arr.dtype} (use uint8, uint16 or float in [0, 1])")
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    elif arr.shape[2] == 4:
        arr = _composite_on_white(arr)
    return np.ascontiguousarray(arr)


def resize_for_network(img: np.ndarray, short_side: int | None, stride: int, max_aspect: float = 3.0) -> np.ndarray:
    """Resize ``img`` (``H x W x 3`` uint8) keeping its aspect ratio for a network of output ``stride``.

    The shorter side becomes ``short_side`` (None: keep the size), the longer side at most ``max_aspect`` times
    it; both sides are then rounded to a multiple of ``stride`` so every feature cell covers whole pixels.
    An image whose network input would be smaller than ``stride`` is an :class:`ImageInputError`; a target
    above :data:`MAX_INPUT_PIXELS` (height x width, native size included) is a :class:`LimitError`, raised
    before any pixel is resampled.
    """
    check_short_side(short_side, max_aspect)
    h, w = img.shape[:2]
    if short_side is not None:
        if short_side < stride:
            raise ImageInputError(f"input size {short_side} px is smaller than the network's stride ({stride} px)")
        f = short_side / min(h, w)
        if max(h, w) * f > max_aspect * short_side:
            f = max_aspect * short_side / max(h, w)
        th, tw = h * f, w * f
    else:
        th, tw = float(h), float(w)
    if min(th, tw) < stride:
        raise ImageInputError(
            f"a {w}x{h} px image is smaller than the network's stride ({stride} px) after resizing to "
            f"{tw:.0f}x{th:.0f}: it would have no feature cell. Use a larger image or input size."
        )
    th_i = round(th / stride) * stride
    tw_i = round(tw / stride) * stride
    if th_i * tw_i > MAX_INPUT_PIXELS:
        how = "at its native size (size=None)" if short_side is None else f"at input size {short_side} px"
        raise LimitError(
            f"a {w}x{h} px image {how} gives a network input of {tw_i}x{th_i} = {th_i * tw_i:,} pixels, above the "
            f"limit of {MAX_INPUT_PIXELS:,} pixels (MAX_INPUT_PIXELS): use a smaller size"
            + (" (e.g. size=448)" if short_side is None else " or a smaller max_aspect")
        )
    if (th_i, tw_i) == (h, w):
        return img
    return np.asarray(Image.fromarray(img).resize((tw_i, th_i), Image.Resampling.BICUBIC))
