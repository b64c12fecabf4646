"""Resource limits: a pixel budget for network inputs and for saved figures, refused with a LimitError up front."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure

import simvis_widgets as sv
from simvis_widgets import render
from simvis_widgets.errors import ImageInputError, LimitError, SimvisError
from simvis_widgets.images import MAX_INPUT_PIXELS, check_short_side, resize_for_network

SIDE = math.isqrt(MAX_INPUT_PIXELS)


def test_budget_is_a_square_of_3072() -> None:
    assert MAX_INPUT_PIXELS == SIDE * SIDE == 3072 * 3072
    assert issubclass(LimitError, SimvisError) and issubclass(LimitError, ValueError)


@pytest.mark.parametrize("side", [None, 1, 32, 448, SIDE, np.int64(448)])
def test_sizes_within_the_budget_pass(side: int | None) -> None:
    check_short_side(side, 3.0)


@pytest.mark.parametrize("side", [SIDE + 1, 6000, 100_000, 10**12])
def test_sizes_above_the_budget_are_a_limit_error(side: int) -> None:
    with pytest.raises(LimitError, match=rf"input size {side} px .* above the limit of {MAX_INPUT_PIXELS:,} pixels"):
        check_short_side(side, 3.0)


@pytest.mark.parametrize("side", [0, -1, -448])
def test_non_positive_sizes_are_an_image_input_error(side: int) -> None:
    with pytest.raises(ImageInputError, match=f"positive number of pixels, got {side}"):
        check_short_side(side, 3.0)


@pytest.mark.parametrize("side", [True, False, 448.0, 3.5, "448", [448]])
def test_non_int_sizes_are_an_image_input_error(side: object) -> None:
    with pytest.raises(ImageInputError, match="whole number of pixels"):
        check_short_side(side, 3.0)  # type: ignore[arg-type]


def test_limit_message_tells_what_an_elongated_image_would_get() -> None:
    with pytest.raises(LimitError, match=r"an image up to 3:1 would get up to 4000x12000.*at most 3072 px"):
        check_short_side(4000, 3.0)


def test_resize_refuses_a_native_size_input_above_the_budget() -> None:
    big = np.zeros((SIDE + 32, SIDE, 3), np.uint8)
    with pytest.raises(LimitError, match=rf"{SIDE}x{SIDE + 32} px image at its native size \(size=None\)"):
        resize_for_network(big, None, 32)
    at_limit = np.zeros((SIDE, SIDE, 3), np.uint8)
    assert resize_for_network(at_limit, None, 32) is at_limit


def test_resize_refuses_an_elongated_target_above_the_budget() -> None:
    wide = np.zeros((100, 300, 3), np.uint8)
    with pytest.raises(LimitError, match=r"at input size 2048 px gives a network input of 6144x2048"):
        resize_for_network(wide, 2048, 32, max_aspect=3.0)
    assert resize_for_network(wide, 1024, 32, max_aspect=3.0).shape == (1024, 3072, 3)


def test_resize_checks_the_requested_size() -> None:
    img = np.zeros((64, 64, 3), np.uint8)
    with pytest.raises(LimitError):
        resize_for_network(img, 100_000, 32)
    with pytest.raises(ImageInputError, match="positive number of pixels"):
        resize_for_network(img, 0, 32)


def test_session_embed_refuses_a_huge_native_image_before_the_network(resnet18_random: sv.ModelSession) -> None:
    native = resnet18_random.variant(size=None)
    with pytest.raises(LimitError, match="MAX_INPUT_PIXELS"):
        native.embed(np.zeros((4000, 4000, 3), np.uint8))


def _small_figure() -> Figure:
    fig = Figure(figsize=(2.0, 1.0))
    fig.add_subplot().imshow(np.zeros((4, 4)))
    return fig


@pytest.mark.parametrize("dpi", [0, -1, -120.0, float("nan"), float("inf"), True, "120", None])
def test_save_figure_needs_a_positive_dpi(dpi: object, tmp_path: Path) -> None:
    with pytest.raises(LimitError, match="dpi must be a positive number"):
        render.save_figure(_small_figure(), tmp_path / "f.png", dpi=dpi)  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("suffix", ["png", "pdf", "svg", "eps", "jpg"])
def test_save_figure_refuses_a_raster_above_the_budget_before_drawing(
    suffix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fig = _small_figure()

    def never(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("the figure was drawn")

    monkeypatch.setattr(fig, "savefig", never)
    most = math.floor(math.sqrt(render.MAX_FIGURE_PIXELS / 2.0))
    with pytest.raises(LimitError, match=rf"above the limit of 50,000,000 \(MAX_FIGURE_PIXELS\): use dpi <= {most}"):
        render.save_figure(fig, tmp_path / f"f.{suffix}", dpi=6000)
    assert list(tmp_path.iterdir()) == []


def test_save_figure_accepts_the_largest_allowed_dpi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fig = _small_figure()
    seen: list[float] = []
    monkeypatch.setattr(fig, "savefig", lambda fh, **kw: seen.append(kw["dpi"]))
    most = math.floor(math.sqrt(render.MAX_FIGURE_PIXELS / 2.0))
    render.save_figure(fig, tmp_path / "f.png", dpi=most)
    render.save_figure(fig, tmp_path / "g.png", dpi=72.5)
    assert seen == [most, 72.5]
    with pytest.raises(LimitError):
        render.save_figure(fig, tmp_path / "h.png", dpi=most + 1)
