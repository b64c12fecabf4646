"""Image loading and resizing at the edges of what they accept: every PIL mode and array dtype with exact pixel
values, the limits of each range (just inside, just outside), and the exact words of each error (which input,
what was wrong). Written to kill the mutants of images.py that the other tests let live."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import simvis_widgets as sv
from simvis_widgets import images
from simvis_widgets.images import check_short_side, resize_for_network

# ------------------------------------------------------------------------------------------------------
# Network input sizes
# ------------------------------------------------------------------------------------------------------


def test_limit_message_names_the_square_pixel_count() -> None:
    with pytest.raises(sv.LimitError) as err:
        check_short_side(4000, 2.5)
    assert str(err.value).startswith(
        "input size 4000 px gives a network input of 4000x4000 = 16,000,000 pixels (an image up to 2.5:1 would get "
        "up to 4000x10000), above the limit of 9,437,184 pixels"
    )


@pytest.mark.parametrize("aspect, shown", [(1, True), (1.0, True), (0.5, False), (float("nan"), False), ("3", False)])
def test_limit_message_mentions_elongated_images_only_for_a_valid_aspect(aspect: object, shown: bool) -> None:
    with pytest.raises(sv.LimitError) as err:
        check_short_side(4000, aspect)  # type: ignore[arg-type]
    text = str(err.value)
    assert text.startswith("input size 4000 px gives a network input of 4000x4000 = 16,000,000 pixels")
    assert ("(an image up to 1:1 would get up to 4000x4000)" in text) == shown
    if not shown:
        assert "16,000,000 pixels, above the limit" in text and "None" not in text and "XX" not in text


def test_resize_default_aspect_is_three_to_one() -> None:
    img = np.zeros((100, 1000, 3), np.uint8)  # 10:1
    assert resize_for_network(img, 32, 8).shape == (8, 96, 3)  # the long side stops at 3 x 32
    assert resize_for_network(img, 32, 8, max_aspect=4.0).shape == (16, 128, 3)


def test_resize_message_names_the_default_aspect() -> None:
    with pytest.raises(sv.LimitError, match=r"\(an image up to 3:1 would get up to 4000x12000\)"):
        resize_for_network(np.zeros((10, 10, 3), np.uint8), 4000, 32)


def test_resize_accepts_an_input_size_equal_to_the_stride() -> None:
    assert resize_for_network(np.zeros((50, 60, 3), np.uint8), 32, 32).shape == (32, 32, 3)
    with pytest.raises(sv.ImageInputError) as err:
        resize_for_network(np.zeros((50, 60, 3), np.uint8), 16, 32)
    assert str(err.value) == "input size 16 px is smaller than the network's stride (32 px)"


def test_resize_at_native_size_accepts_an_image_of_exactly_the_stride() -> None:
    img = np.zeros((32, 64, 3), np.uint8)
    assert resize_for_network(img, None, 32) is img
    with pytest.raises(sv.ImageInputError, match=r"a 64x31 px image is smaller than the network's stride \(32 px\)"):
        resize_for_network(np.zeros((31, 64, 3), np.uint8), None, 32)


def test_resize_limit_messages_name_the_pixel_count_and_the_remedy() -> None:
    with pytest.raises(sv.LimitError) as native:
        resize_for_network(np.zeros((3200, 3200, 3), np.uint8), None, 32)
    assert str(native.value) == (
        "a 3200x3200 px image at its native size (size=None) gives a network input of 3200x3200 = 10,240,000 "
        "pixels, above the limit of 9,437,184 pixels (MAX_INPUT_PIXELS): use a smaller size (e.g. size=448)"
    )
    with pytest.raises(sv.LimitError) as sized:
        resize_for_network(np.zeros((100, 300, 3), np.uint8), 2048, 32)
    assert str(sized.value) == (
        "a 300x100 px image at input size 2048 px gives a network input of 6144x2048 = 12,582,912 pixels, above "
        "the limit of 9,437,184 pixels (MAX_INPUT_PIXELS): use a smaller size or a smaller max_aspect"
    )


def test_resize_is_bicubic() -> None:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (50, 70, 3), dtype=np.uint8)
    expected = np.asarray(Image.fromarray(img).resize((96, 64), Image.Resampling.BICUBIC))
    np.testing.assert_array_equal(resize_for_network(img, 64, 32), expected)


# ------------------------------------------------------------------------------------------------------
# How inputs are described in errors
# ------------------------------------------------------------------------------------------------------


def test_descriptions_name_the_input() -> None:
    assert images._describe(np.zeros((2, 3), np.float16)) == "ndarray image of shape (2, 3) and dtype float16"
    assert images._describe(torch.zeros(1, 2)) == "Tensor image of shape (1, 2) and dtype torch.float32"

    class Shaped:
        shape = (4, 5)

    assert images._describe(Shaped()) == "Shaped image of shape (4, 5) and dtype ?"
    assert images._describe(object()) == "object object"
    assert images._describe(Path("x.png")) == "image file 'x.png'"
    assert images._describe(Image.new("L", (3, 2))) == "PIL image (L, 3x2)"


@pytest.mark.parametrize(
    "bad, message",
    [
        (
            np.zeros((4, 4, 2), np.uint8),
            "ndarray image of shape (4, 4, 2) and dtype uint8: expected H x W, H x W x 3 or H x W x 4",
        ),
        (
            torch.zeros(2, 5, 5),
            "Tensor image of shape (2, 5, 5) and dtype torch.float32: a tensor image must be C x H x W with C in (1, 3, 4), or H x W",
        ),
        (
            torch.full((3, 2, 2), 2.0),
            "Tensor image of shape (3, 2, 2) and dtype torch.float32: float images must lie in [0, 1], got [2, 2] (divide by 255, or pass uint8)",
        ),
        (
            torch.zeros(2, 3, 4, 5),
            "Tensor image of shape (2, 3, 4, 5) and dtype torch.float32: a tensor image must be C x H x W with C in (1, 3, 4), or H x W",
        ),
        ("", "image path is an empty string: pass the path of an image file"),
        (
            3.5,
            "cannot use a float as an image: pass a file path, a PIL image, a numpy array (H x W, H x W x 3 or H x W x 4) or a C x H x W tensor",
        ),
        (Image.new("RGB", (0, 5)), "PIL image (RGB, 0x5) is empty (0x5)"),
    ],
)
def test_error_messages_in_full(bad: object, message: str) -> None:
    with pytest.raises(sv.ImageInputError) as err:
        sv.load_image(bad)
    assert str(err.value) == message


# ------------------------------------------------------------------------------------------------------
# Tensors
# ------------------------------------------------------------------------------------------------------


def test_tensor_layouts_and_dtypes() -> None:
    grey = torch.zeros(1, 2, 3)
    grey[0, 0, 0] = 1.0
    out = sv.load_image(grey)  # C = 1
    assert out.shape == (2, 3, 3) and out[0, 0].tolist() == [255] * 3 and out[1, 2].tolist() == [0] * 3
    rgba = torch.zeros(4, 2, 2)  # C = 4: fully transparent composites to white
    rgba[:, 0, 0] = torch.tensor([1.0, 0.0, 0.0, 1.0])
    out = sv.load_image(rgba)
    assert out[0, 0].tolist() == [255, 0, 0] and out[1, 1].tolist() == [255, 255, 255]
    hw = torch.zeros(3, 7)  # H x W whose first side is a channel count: still an image, not channels
    hw[1, 2] = 0.5
    out = sv.load_image(hw)
    assert out.shape == (3, 7, 3) and out[1, 2].tolist() == [128] * 3
    assert sv.load_image(torch.full((4, 5), 200, dtype=torch.uint8))[0, 0].tolist() == [200] * 3
    assert sv.load_image(torch.full((3, 2, 2), 7, dtype=torch.uint8))[0, 0].tolist() == [7] * 3
    for dtype in (torch.float16, torch.bfloat16):
        half = torch.full((3, 2, 2), 0.5, dtype=dtype)
        out = sv.load_image(half)
        assert out.dtype == np.uint8 and out[0, 0].tolist() == [128] * 3


# ------------------------------------------------------------------------------------------------------
# Arrays
# ------------------------------------------------------------------------------------------------------


def test_array_dtypes_give_exact_uint8() -> None:
    cases = [
        (np.array([[True, False]]), [255, 0]),
        (np.array([[0, 25700, 12950, 65535]], np.uint16), [0, 100, 50, 255]),
        (np.array([[0.0, 0.5, 1.0]]), [0, 128, 255]),
        (np.array([[0, 17, 255]], np.int64), [0, 17, 255]),
        (np.array([[0, 255]], np.int32), [0, 255]),
        (np.array([[0, 9]], np.uint8)[..., None], [0, 9]),  # H x W x 1
    ]
    for arr, expected in cases:
        out = sv.load_image(arr)
        assert out.dtype == np.uint8 and out.shape == (1, len(expected), 3), arr.dtype
        assert out[0, :, 0].tolist() == expected and (out[..., 0] == out[..., 2]).all(), arr.dtype


def test_array_sides_of_one_pixel() -> None:
    assert sv.load_image(np.zeros((5, 1), np.uint8)).shape == (5, 1, 3)
    assert sv.load_image(np.zeros((1, 5, 3), np.uint8)).shape == (1, 5, 3)
    with pytest.raises(sv.ImageInputError, match="is empty"):
        sv.load_image(np.zeros((5, 0), np.uint8))


@pytest.mark.parametrize("lo, hi", [(-1e-6, 1.0), (0.0, 1 + 1e-6), (-1e-6, 1 + 1e-6)])
def test_float_range_tolerates_rounding_noise(lo: float, hi: float) -> None:
    out = sv.load_image(np.array([[lo, hi]], np.float64))
    assert out[0, :, 0].tolist() == [0, 255]


@pytest.mark.parametrize("bad", [-0.5, -2e-6, 1.5, 1 + 2e-6, 2.5])
def test_float_range_refuses_values_outside(bad: float) -> None:
    with pytest.raises(sv.ImageInputError, match=r"float images must lie in \[0, 1\]"):
        sv.load_image(np.array([[0.5, bad]], np.float64))


@pytest.mark.parametrize("bad", [256, -1, 1000])
def test_integer_arrays_outside_8_bits_are_refused(bad: int) -> None:
    with pytest.raises(sv.ImageInputError, match="unsupported dtype int32"):
        sv.load_image(np.array([[0, bad]], np.int32))


# ------------------------------------------------------------------------------------------------------
# PIL modes
# ------------------------------------------------------------------------------------------------------


def test_pil_sides_of_one_pixel() -> None:
    assert sv.load_image(Image.new("RGB", (1, 5))).shape == (5, 1, 3)
    with pytest.raises(sv.ImageInputError, match=re.escape("PIL image (RGB, 5x0) is empty (5x0)")):
        sv.load_image(Image.new("RGB", (5, 0)))


@pytest.mark.parametrize("mode, dtype", [("I;16", "<u2"), ("I;16L", "<u2"), ("I;16B", ">u2"), ("I;16N", "=u2")])
def test_16_bit_modes_are_scaled_by_1_over_257(mode: str, dtype: str) -> None:
    img = Image.frombytes(mode, (4, 1), np.array([0, 100, 25700, 65535], dtype).tobytes())
    assert img.mode == mode
    out = sv.load_image(img)
    assert out.dtype == np.uint8 and out[0, :, 0].tolist() == [0, 0, 100, 255]  # small values too: 16-bit scale


def test_16_bit_modes_use_the_16_bit_scale_even_for_small_values() -> None:
    img = Image.frombytes("I;16", (3, 1), np.array([0, 100, 200], "<u2").tobytes())
    assert sv.load_image(img)[0, :, 0].tolist() == [0, 0, 1]  # 200 / 257 rounds to 1: a dark 16-bit image


@pytest.mark.parametrize(
    "values, expected",
    [([0, 255], [0, 255]), ([0, 256], [0, 1]), ([0, 65535], [0, 255]), ([3, 200], [3, 200])],
)
def test_32_bit_int_scale_switches_above_255(values: list[int], expected: list[int]) -> None:
    out = sv.load_image(Image.fromarray(np.array([values], np.int32)))
    assert out.dtype == np.uint8 and out[0, :, 0].tolist() == expected


def test_32_bit_int_refuses_65536() -> None:
    with pytest.raises(sv.ImageInputError) as err:
        sv.load_image(Image.fromarray(np.array([[0, 65536]], np.int32)))
    assert str(err.value) == (
        "PIL image (I, 2x1): 32-bit integer pixel values span [0, 65536]; only [0, 255] (kept) or [0, 65535] "
        "(scaled by 1/257) can be shown: rescale the image to 8 or 16 bits first"
    )


def test_float_mode_images_are_read_as_floats_in_0_1() -> None:
    img = Image.fromarray(np.array([[0.0, 0.5, 1.0]], np.float32))
    assert img.mode == "F"
    out = sv.load_image(img)
    assert out.dtype == np.uint8 and out[0, :, 0].tolist() == [0, 128, 255]
    with pytest.raises(sv.ImageInputError, match=re.escape("PIL image (F, 2x1): float images must lie in [0, 1]")):
        sv.load_image(Image.fromarray(np.array([[0.0, 2.0]], np.float32)))


def _transparent_pair(mode: str) -> Image.Image:
    """A 2 x 1 image of ``mode``: an opaque dark pixel, then a fully transparent one."""
    rgba = Image.frombytes("RGBA", (2, 1), bytes([40, 40, 40, 255, 0, 0, 0, 0]))
    if mode == "P":
        img = Image.frombytes("P", (2, 1), bytes([1, 0]))
        img.putpalette([0, 0, 0, 40, 40, 40] + [0] * 762)
        img.info["transparency"] = 0
        return img
    if mode == "PA":
        return rgba.convert("PA")
    if mode in ("LA", "La"):
        return Image.frombytes(mode, (2, 1), bytes([40, 255, 0, 0]))
    return rgba.convert(mode)


@pytest.mark.parametrize("mode", ["RGBA", "LA", "PA", "RGBa", "La", "P"])
def test_alpha_modes_composite_on_white(mode: str) -> None:
    img = _transparent_pair(mode)
    assert img.mode == mode
    out = sv.load_image(img)
    assert out.dtype == np.uint8 and out.shape == (1, 2, 3)
    assert out[0, 1].tolist() == [255, 255, 255]  # transparent: white
    assert np.abs(out[0, 0].astype(int) - 40).max() <= 1  # opaque: its own colour


def test_palette_without_transparency_is_opaque() -> None:
    img = Image.frombytes("P", (2, 1), bytes([1, 0]))
    img.putpalette([0, 0, 0, 40, 40, 40] + [0] * 762)
    assert sv.load_image(img)[0, :, 0].tolist() == [40, 0]


def test_partial_alpha_blends_with_white() -> None:
    rgba = np.array([[[0, 0, 0, 1], [0, 0, 0, 128], [200, 100, 0, 254]]], np.uint8)
    out = sv.load_image(rgba).astype(int)
    # 255 * (1 - a / 255) + c * a / 255, rounded
    assert out[0, 0].tolist() == [254, 254, 254]
    assert out[0, 1].tolist() == [127, 127, 127]
    assert out[0, 2].tolist() == [200, 101, 1]


# ------------------------------------------------------------------------------------------------------
# Files
# ------------------------------------------------------------------------------------------------------


def test_decompression_bomb_warning_is_an_error_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Between MAX_IMAGE_PIXELS and twice that PIL only warns: that must refuse the file as well."""
    f = tmp_path / "big.png"
    Image.new("RGB", (300, 300)).save(f)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 60_000)  # 90k pixels: a warning, not PIL's error
    with pytest.raises(sv.ImageInputError, match="big.png' is too large to decode safely"):
        sv.load_image(f)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100_000)
    assert sv.load_image(f).shape == (300, 300, 3)


@pytest.mark.parametrize("mode, key", [("P", 0), ("L", 0), ("RGB", (0, 0, 0))])
def test_colour_key_transparency_composites_on_white_in_every_mode(mode: str, key: object, tmp_path: Path) -> None:
    """A PNG colour key (tRNS chunk) is binary alpha: the same picture saved as palette, grey or RGB PNG with the
    same transparent colour loads the same (transparent pixels white, as the docstring promises for alpha)."""
    if mode == "P":
        img = Image.frombytes("P", (2, 1), bytes([1, 0]))
        img.putpalette([0, 0, 0, 40, 40, 40] + [0] * 762)
    else:
        img = Image.frombytes(mode, (2, 1), bytes([40, 0]) if mode == "L" else bytes([40, 40, 40, 0, 0, 0]))
    f = tmp_path / f"key_{mode}.png"
    img.save(f, transparency=key)
    with Image.open(f) as reread:
        assert reread.mode == mode and "transparency" in reread.info
    assert sv.load_image(f)[0].tolist() == [[40, 40, 40], [255, 255, 255]]


def test_a_file_with_corrupt_exif_still_loads(tmp_path: Path) -> None:
    """PIL only warns about a truncated EXIF block: that warning is no reason to refuse the photo (only the
    decompression-bomb warning is)."""
    f = tmp_path / "odd_exif.jpg"
    truncated = b"Exif\x00\x00II*\x00\x08\x00\x00\x00\x05\x00\x12\x01\x03\x00\x01\x00\x00\x00\x06\x00"
    Image.new("RGB", (12, 8), (90, 90, 90)).save(f, exif=truncated)
    with pytest.warns(UserWarning, match="Corrupt EXIF data"):
        out = sv.load_image(f)
    assert out.shape[2] == 3 and sorted(out.shape[:2]) == [8, 12]
