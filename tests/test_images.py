"""Image loading: every accepted kind of input, and every bad one with a clear error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import simvis_widgets as sv
from simvis_widgets.images import resize_for_network


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.png' does not exist"):
        sv.load_image(tmp_path / "nope.png")


def test_zero_byte_file(tmp_path: Path) -> None:
    f = tmp_path / "empty.jpg"
    f.write_bytes(b"")
    with pytest.raises(sv.ImageInputError, match=r"empty.jpg' is empty \(0 bytes\)"):
        sv.load_image(f)


def test_not_an_image(tmp_path: Path) -> None:
    f = tmp_path / "notes.png"
    f.write_text("this is not a png")
    with pytest.raises(sv.ImageInputError, match="notes.png' is not a readable image"):
        sv.load_image(f)


def test_truncated_image(tmp_path: Path, photos: dict[str, np.ndarray]) -> None:
    good = tmp_path / "good.jpg"
    Image.fromarray(photos["chelsea"]).save(good, quality=90)
    bad = tmp_path / "cut.jpg"
    bad.write_bytes(good.read_bytes()[:2000])
    with pytest.raises(sv.ImageInputError, match="cut.jpg' is corrupt or truncated"):
        sv.load_image(bad)


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(sv.ImageInputError, match="is a directory"):
        sv.load_image(tmp_path)


def test_unreadable_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "locked.png"
    Image.new("RGB", (4, 4)).save(f)

    def denied(*_args: object, **_kwargs: object) -> None:
        raise PermissionError(13, "Permission denied", str(f))

    monkeypatch.setattr(Image, "open", denied)  # as root, permission bits are not enforced
    with pytest.raises(sv.ImageInputError, match="locked.png' cannot be read: permission denied"):
        sv.load_image(f)


def test_decompression_bomb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "big.png"
    Image.new("RGB", (300, 300)).save(f)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000)  # 90k pixels is "too many" now
    with pytest.raises(sv.ImageInputError, match="big.png' is too large to decode safely"):
        sv.load_image(f)


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "LA", "I;16", "CMYK", "1"])
def test_modes_are_converted_to_rgb(tmp_path: Path, mode: str) -> None:
    rgb = np.zeros((10, 12, 3), np.uint8)
    rgb[:, 6:] = 200
    img = Image.fromarray(rgb).convert("L")
    if mode == "I;16":
        img = Image.fromarray(np.asarray(img).astype(np.uint16) * 257)
        assert img.mode.startswith("I;16")
    elif mode != "L":
        img = img.convert(mode)
    f = tmp_path / ("x.tif" if mode in ("CMYK", "I;16") else "x.png")
    img.save(f)
    out = sv.load_image(f)
    assert out.shape == (10, 12, 3) and out.dtype == np.uint8
    assert out[0, 0].max() <= 5 and out[0, 11].min() >= 190 if mode != "1" else out[0, 11].min() == 255


def test_rgba_composited_on_white() -> None:
    rgba = np.zeros((4, 4, 4), np.uint8)  # fully transparent black
    rgba[0, 0] = (255, 0, 0, 255)
    out = sv.load_image(rgba)
    assert tuple(out[0, 0]) == (255, 0, 0) and tuple(out[1, 1]) == (255, 255, 255)


def test_arrays_and_tensors() -> None:
    grey = np.linspace(0, 1, 20, dtype=np.float32).reshape(4, 5)
    out = sv.load_image(grey)
    assert out.shape == (4, 5, 3) and out[-1, -1, 0] == 255
    assert sv.load_image(np.full((3, 3), 65535, np.uint16))[0, 0, 0] == 255
    chw = torch.zeros(3, 6, 7)
    chw[0] = 1.0
    out = sv.load_image(chw)
    assert out.shape == (6, 7, 3) and tuple(out[0, 0]) == (255, 0, 0)
    assert sv.load_image(Image.new("RGB", (5, 2))).shape == (2, 5, 3)


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.zeros((0, 5, 3), np.uint8), "is empty"),
        (np.full((4, 4, 3), 255.0, np.float32), r"must lie in \[0, 1\]"),
        (np.full((4, 4), np.nan, np.float32), "NaN or infinite"),
        (np.zeros((4, 4, 2), np.uint8), "expected H x W, H x W x 3 or H x W x 4"),
        (np.zeros((4, 4), np.int32) - 5, "unsupported dtype int32"),
        (torch.zeros(2, 3, 4, 5), "C x H x W"),
        ("not/a/real/file.png", "does not exist"),
        (12345, "cannot use a int as an image"),
    ],
)
def test_bad_inputs(bad: object, message: str) -> None:
    with pytest.raises((sv.ImageInputError, FileNotFoundError), match=message):
        sv.load_image(bad)


def test_resize_keeps_aspect_and_rounds_to_stride() -> None:
    img = np.zeros((300, 451, 3), np.uint8)
    out = resize_for_network(img, 448, 32)
    assert out.shape[:2] == (448, 672)  # 451 * 448 / 300 = 673.5 -> 672
    long = resize_for_network(np.zeros((100, 1000, 3), np.uint8), 224, 32, max_aspect=3.0)
    assert long.shape[:2] == (64, 672)  # longer side capped at 3 x 224
    assert resize_for_network(img[:64, :96], None, 32).shape[:2] == (64, 96)


def test_image_smaller_than_stride() -> None:
    with pytest.raises(sv.ImageInputError, match=r"smaller than the network's stride \(32 px\)"):
        resize_for_network(np.zeros((20, 40, 3), np.uint8), None, 32)
    with pytest.raises(sv.ImageInputError, match="smaller than the network's stride"):
        resize_for_network(np.zeros((2, 1000, 3), np.uint8), 64, 32, max_aspect=1.5)


@pytest.mark.parametrize(
    "url",
    ["https://example.com/cat.jpg", "http://example.com/a.png", "s3://bucket/key.png", "gs://b/c.jpg", "HTTPS://X/y"],
)
def test_urls_are_not_fetched(url: str) -> None:
    with pytest.raises(sv.ImageInputError, match=rf"'{url}' is a URL: URLs are not fetched; download the file first"):
        sv.load_image(url)


def test_empty_path_string() -> None:
    with pytest.raises(sv.ImageInputError, match="image path is an empty string"):
        sv.load_image("")


def test_windows_style_and_colon_paths_are_still_paths(tmp_path: Path) -> None:
    f = tmp_path / "a:b.png"
    Image.new("RGB", (4, 3)).save(f)
    assert sv.load_image(str(f)).shape == (3, 4, 3)


@pytest.mark.parametrize(
    "values, expected",
    [
        ([0, 100, 255], [0, 100, 255]),  # 8-bit range: kept
        ([0, 257 * 100, 65535], [0, 100, 255]),  # 16-bit range: scaled by 1/257
    ],
)
def test_32_bit_int_images_in_range(values: list[int], expected: list[int]) -> None:
    img = Image.fromarray(np.array([values], np.int32))
    assert img.mode == "I"
    assert sv.load_image(img)[0, :, 0].tolist() == expected


@pytest.mark.parametrize("values, shown", [([0, 70000], r"\[0, 70000\]"), ([-5, 100], r"\[-5, 100\]")])
def test_32_bit_int_images_out_of_range_are_refused(values: list[int], shown: str, tmp_path: Path) -> None:
    img = Image.fromarray(np.array([values], np.int32))
    with pytest.raises(sv.ImageInputError, match=rf"PIL image \(I, 2x1\): 32-bit integer pixel values span {shown}"):
        sv.load_image(img)
    f = tmp_path / "deep.tif"
    img.save(f)
    with pytest.raises(sv.ImageInputError, match=rf"deep.tif': 32-bit integer pixel values span {shown}"):
        sv.load_image(f)


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    rgb = np.zeros((32, 64, 3), np.uint8)
    rgb[:, :32] = (255, 0, 0)  # left half red
    rgb[:, 32:] = (0, 0, 255)  # right half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: display turns it 90 degrees clockwise
    f = tmp_path / "phone.jpg"
    Image.fromarray(rgb).save(f, exif=exif, quality=95)
    out = sv.load_image(f).astype(int)
    assert out.shape == (64, 32, 3)
    expected = np.rot90(rgb, k=-1).astype(int)  # the left half is now on top
    away_from_the_edge = np.r_[0:24, 40:64]  # JPEG blurs colour across the red / blue border
    assert np.abs(out - expected)[away_from_the_edge].max() < 40
    assert (out[:24, :, 0] > 200).all() and (out[40:, :, 2] > 200).all()
