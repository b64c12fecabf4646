"""The static figures of render.py, drawn from small synthetic explanations (no network): what each panel shows,
its colour scale, marks, captions, titles and the files written. Quick enough to run for every mutant of
render.py."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from PIL import Image

import simvis_widgets as sv
from simvis_widgets import render
from simvis_widgets.decompose import from_contributions
from simvis_widgets.gallery import Hit


def _pair(seed: int = 0, normalize: bool = True, head: object = None, pooling: str = "avg") -> sv.ExplainedPair:
    g = torch.Generator().manual_seed(seed)
    xa, xb = torch.rand(6, 3, 4, generator=g) - 0.3, torch.rand(6, 2, 5, generator=g) - 0.3
    ex = sv.decompose(xa, xb, pooling, 3.0, normalize, head)
    image_a = np.full((48, 64, 3), 90, np.uint8)  # 3 x 4 cells of 16 x 16 px
    image_b = np.full((40, 100, 3), 30, np.uint8)  # 2 x 5 cells of 20 x 20 px
    return sv.ExplainedPair.of(ex, image_a, image_b, model_name="tiny-net")


def _image_axes(fig: Figure) -> list:  # type: ignore[type-arg]
    return [ax for ax in fig.axes if ax.get_images()]


def _heat(ax) -> object:  # type: ignore[no-untyped-def]
    layers = [im for im in ax.get_images() if im.get_array().ndim == 2]
    assert len(layers) <= 1
    return layers[0] if layers else None


# ------------------------------------------------------------------------------------------------------
# Helpers
# ------------------------------------------------------------------------------------------------------


def test_upsample_is_bilinear_with_pixel_centres() -> None:
    out = render.upsample(np.array([[0.0, 1.0]]), (1, 4))
    np.testing.assert_allclose(out, [[0.0, 0.25, 0.75, 1.0]], atol=1e-7)
    out = render.upsample(torch.tensor([[2.0], [4.0]], dtype=torch.float64), (4, 3))
    assert out.dtype == np.float32 and out.shape == (4, 3)
    np.testing.assert_allclose(out[:, 0], [2.0, 2.5, 3.5, 4.0], atol=1e-6)
    np.testing.assert_allclose(render.upsample(torch.full((2, 3), 0.5, requires_grad=True), (5, 7)), 0.5)


def test_blank_panels_are_grey_at_32_px_per_cell() -> None:
    image = render._panel_image(None, (2, 3))
    assert image.shape == (64, 96, 3) and image.dtype == np.uint8 and (image == 200).all()
    given = np.zeros((5, 5, 3), np.uint8)
    assert render._panel_image(given, (2, 3)) is given


def test_figures_show_themselves_as_png_in_notebooks() -> None:
    fig = render.explanation_figure(_pair())
    assert render._figure_class() is type(fig) and isinstance(fig, Figure)
    png = fig._repr_png_()
    with Image.open(io.BytesIO(png)) as img:
        assert img.format == "PNG"
        w, h = fig.get_size_inches()
        assert img.size == (round(w * 100), round(h * 100))  # drawn at dpi 100


def test_score_line() -> None:
    ex = _pair()
    assert render.score_line(ex) == f"score (cosine, avg pooling) = {ex.score:.4f}"
    gem = _pair(normalize=False, pooling="gem")
    assert render.score_line(gem) == f"score (dot product, GeM p=3) = {gem.score:.4f}"
    g = torch.Generator().manual_seed(1)
    biased = _pair(head=(torch.randn(4, 6, generator=g), torch.randn(4, generator=g)))
    assert biased.global_term != 0
    assert render.score_line(biased) == (
        f"score (cosine, avg pooling) = {biased.score:.4f}   global (bias) term = {biased.global_term:+.4f}"
    )
    q = torch.rand(12, 5, generator=g)
    approx = from_contributions(q, q[:10], q.sum(0), q[:10].sum(0), (3, 4), (2, 5), exact=False)
    line = render.score_line(approx)
    assert line.startswith(f"score (cosine, linearised pooling) = {approx.score:.4f}")
    assert line.endswith("   APPROXIMATE (linearisation)")


# ------------------------------------------------------------------------------------------------------
# Pair figures
# ------------------------------------------------------------------------------------------------------


def test_explanation_figure_in_full() -> None:
    ex = _pair()
    fig = render.explanation_figure(ex)
    a, b = _image_axes(fig)
    assert len(fig.axes) == 3  # two panels and the colour bar
    w, h = fig.get_size_inches()
    assert (w, h) == pytest.approx((11.0, 11.0 / 2 * (48 / 64) + 1.3))  # the taller image sets the height
    v = render.shared_limit(ex.map_a, ex.map_b)
    for ax, image, values in ((a, ex.image_a, ex.map_a), (b, ex.image_b, ex.map_b)):
        photo = ax.get_images()[0]
        np.testing.assert_array_equal(photo.get_array(), image)
        heat = _heat(ax)
        assert heat.cmap.name == "RdBu_r" and heat.get_alpha() == 0.6
        assert (heat.norm.vmin, heat.norm.vmax) == (-v, v)
        np.testing.assert_allclose(heat.get_array(), render.upsample(values, image.shape[:2]))
        assert list(ax.get_xticks()) == [] and list(ax.get_yticks()) == [] and not ax.patches
    assert a.get_xlabel() == f"image A: sum of its map = {float(ex.map_a.sum()):+.4f}"
    assert b.get_xlabel() == f"image B: sum of its map = {float(ex.map_b.sum()):+.4f}"
    assert fig._suptitle.get_text() == f"tiny-net\n{render.score_line(ex)}" and fig._suptitle.get_fontsize() == 11
    bar = fig.axes[2]
    assert bar.get_xlabel() == "contribution to the similarity (per feature cell; red adds, blue subtracts)"
    assert list(bar.get_xticks()) == pytest.approx([-v, -v / 2, 0, v / 2, v])
    assert bar.xaxis.get_major_formatter()(0.0123456) == "0.012"


def test_figure_options_reach_the_figure() -> None:
    ex = _pair()
    fig = render.explanation_figure(ex, cmap="viridis", alpha=0.25, title="my title", width=8.0)
    assert fig.get_size_inches()[0] == pytest.approx(8.0)
    for ax in _image_axes(fig):
        assert _heat(ax).cmap.name == "viridis" and _heat(ax).get_alpha() == 0.25
    assert fig._suptitle.get_text().startswith("my title\nscore (cosine")
    bare = sv.decompose(torch.rand(4, 2, 2) + 0.1, torch.rand(4, 3, 1) + 0.1)  # no images, no model name
    fig = render.explanation_figure(bare)
    a, b = _image_axes(fig)
    assert a.get_images()[0].get_array().shape == (64, 64, 3) and b.get_images()[0].get_array().shape == (96, 32, 3)
    assert fig._suptitle.get_text().startswith("similarity\n")
    assert fig.get_size_inches()[1] == pytest.approx(11.0 / 2 * 3 + 1.3)  # B is 3:1 tall


@pytest.mark.parametrize("side", ["a", "B"])
def test_point_figure_marks_the_cell_and_maps_its_row(side: str) -> None:
    ex = _pair()
    s, other = side.lower(), "b" if side.lower() == "a" else "a"
    row, col = 1, 2
    fig = render.point_figure(ex, side, row, col)
    axes = dict(zip("ab", _image_axes(fig)))
    values = ex.point_map(s, row, col)
    assert _heat(axes[s]) is None  # the marked image shows no map
    heat = _heat(axes[other])
    v = render.shared_limit(values)
    assert (heat.norm.vmin, heat.norm.vmax) == (-v, v)
    other_image = ex.image_b if other == "b" else ex.image_a
    np.testing.assert_allclose(heat.get_array(), render.upsample(values, other_image.shape[:2]))
    (patch,) = axes[s].patches
    assert not axes[other].patches
    ch, cw = (16, 16) if s == "a" else (20, 20)
    assert isinstance(patch, Rectangle) and patch.get_xy() == (col * cw - 0.5, row * ch - 0.5)
    assert (patch.get_width(), patch.get_height()) == (cw, ch) and not patch.get_fill()
    assert patch.get_linewidth() == 2.5 and tuple(patch.get_edgecolor()) == (0.0, 1.0, 0.0, 1.0)
    own = ex.map_a if s == "a" else ex.map_b
    assert (
        axes[s].get_xlabel()
        == f"image {s.upper()}: cell ({row}, {col}) carries {float(own[row, col]):+.4f} of the score"
    )
    assert axes[other].get_xlabel() == (
        f"image {other.upper()}: that cell's contributions, sum = {float(values.sum()):+.4f}"
    )
    assert fig._suptitle.get_text() == f"tiny-net\n{render.score_line(ex)}"


def test_region_figure_outlines_the_region_and_maps_it() -> None:
    ex = _pair()
    mask = np.zeros(ex.image_a.shape[:2])
    mask[:, :32] = 1  # the left half of A
    fig = render.region_figure(ex, "A", mask)
    a, b = _image_axes(fig)
    values = ex.region_map("a", mask)
    score = ex.region_score("a", mask)
    assert _heat(a) is None and not a.patches
    np.testing.assert_allclose(_heat(b).get_array(), render.upsample(values, ex.image_b.shape[:2]))
    (contour,) = [c for c in a.collections if hasattr(c, "levels")]
    assert list(contour.levels) == [0.5] and not [c for c in b.collections if hasattr(c, "levels")]
    xs = np.concatenate([seg[:, 0] for seg in contour.allsegs[0]])
    assert 24 <= xs.min() and xs.max() <= 40  # the border of the left half, at x = 32 of the 64 px image
    assert a.get_xlabel() == f"image A: region score {score:+.4f} = {score / ex.score:.0%} of the score"
    assert b.get_xlabel() == f"image B: where the region is matched, sum = {float(values.sum()):+.4f}"
    fig = render.region_figure(ex, "b", np.ones(ex.grid_b))  # on B, at cell resolution
    a, b = _image_axes(fig)
    assert _heat(b) is None and _heat(a) is not None
    assert [c for c in b.collections if hasattr(c, "levels")]


def test_region_caption_of_a_zero_score_is_empty() -> None:
    xa = torch.tensor([[[1.0, -1.0]], [[0.0, 0.0]]])  # C=2, 1 x 2 cells
    xb = torch.tensor([[[0.0]], [[1.0]]])
    ex = sv.ExplainedPair.of(sv.decompose(xa, xb, "avg", normalize=False), np.zeros((16, 32, 3), np.uint8))
    assert ex.score == 0.0
    fig = render.region_figure(ex, "a", np.ones((1, 2)))
    assert _image_axes(fig)[0].get_xlabel() == ""


# ------------------------------------------------------------------------------------------------------
# Saving
# ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, magic", [("f.png", b"\x89PNG"), ("f.PDF", b"%PDF"), ("f.svg", b"<?xml"), ("f", b"\x89PNG")]
)
def test_save_figure_format_follows_the_extension(name: str, magic: bytes, tmp_path: Path) -> None:
    fig = render.explanation_figure(_pair())
    path = render.save_figure(fig, tmp_path / name, dpi=50)
    assert path == tmp_path / name and path.read_bytes().startswith(magic)
    assert [p.name for p in tmp_path.iterdir()] == [name]  # no temporary file left


def test_save_figure_writes_at_the_given_dpi(tmp_path: Path) -> None:
    fig = render.explanation_figure(_pair())
    w, h = fig.get_size_inches()
    for dpi in (40, 50):
        with Image.open(render.save_figure(fig, tmp_path / f"d{dpi}.png", dpi=dpi)) as img:
            assert img.size == (round(w * dpi), round(h * dpi))
    with Image.open(render.save_figure(fig, tmp_path / "default.png")) as img:
        assert img.size == (round(w * 120), round(h * 120))


# ------------------------------------------------------------------------------------------------------
# Hits
# ------------------------------------------------------------------------------------------------------


def _hits() -> tuple[list[Hit], list[np.ndarray]]:
    maps = [torch.tensor([[0.5, -0.25], [1.5, 2.0]]), -torch.ones(3, 2) * 3.0]
    hits = [Hit(4, "x.png", 0.87654, maps[0], label="cat"), Hit(7, 7, 0.5, maps[1])]
    images = [np.full((40, 60, 3), 10, np.uint8), np.full((60, 40, 3), 20, np.uint8)]
    return hits, images


def test_hits_figure_in_full() -> None:
    hits, images = _hits()
    query = np.full((50, 80, 3), 5, np.uint8)
    fig = render.hits_figure(query, hits, images, title="found")
    assert len(fig.axes) == 4  # query, two hits, colour bar
    w, h = fig.get_size_inches()
    assert (w, h) == pytest.approx((12.0, 12.0 / 3 * 1.1 + 0.8))
    q, first, second, bar = fig.axes
    np.testing.assert_array_equal(q.get_images()[0].get_array(), query)
    assert _heat(q) is None and not [c for c in q.collections if hasattr(c, "levels")]
    assert q.get_xlabel() == "query"
    for ax, hit, image in ((first, hits[0], images[0]), (second, hits[1], images[1])):
        np.testing.assert_array_equal(ax.get_images()[0].get_array(), image)
        heat = _heat(ax)
        assert heat.cmap.name == "RdBu_r" and heat.get_alpha() == 0.6
        assert isinstance(heat.norm, Normalize) and (heat.norm.vmin, heat.norm.vmax) == (-3.0, 3.0)
        np.testing.assert_allclose(heat.get_array(), render.upsample(hit.map, image.shape[:2]))
    assert first.get_xlabel() == "#1  0.8765\ncat" and second.get_xlabel() == "#2  0.5000"
    for ax in fig.axes[:3]:
        assert list(ax.get_xticks()) == [] and list(ax.get_yticks()) == []
    assert bar.get_xlabel() == "where the query region is matched"
    assert list(bar.get_xticks()) == pytest.approx([-3.0, 0.0, 3.0])
    assert bar.xaxis.get_major_formatter()(0.0123456) == "0.012"
    assert fig._suptitle.get_text() == "found"
    assert render.hits_figure(query, hits, images)._suptitle is None


def test_hits_figure_options() -> None:
    hits, images = _hits()
    fig = render.hits_figure(np.zeros((10, 10, 3), np.uint8), hits, images, cmap="viridis", alpha=0.3, width=6.0)
    assert fig.get_size_inches()[0] == pytest.approx(6.0)
    for ax in fig.axes[1:3]:
        assert _heat(ax).cmap.name == "viridis" and _heat(ax).get_alpha() == 0.3


@pytest.mark.parametrize("mask_shape", [(50, 80), (5, 8)])
def test_hits_figure_outlines_the_query_region(mask_shape: tuple[int, int]) -> None:
    hits, images = _hits()
    query = np.zeros((50, 80, 3), np.uint8)
    mask = np.zeros(mask_shape)
    mask[:, : mask_shape[1] // 2] = 1  # the left half, at the query's size or at cell resolution
    fig = render.hits_figure(query, hits, images, mask=mask)
    q = fig.axes[0]
    assert q.get_xlabel() == "query (region)"
    (contour,) = [c for c in q.collections if hasattr(c, "levels")]
    assert list(contour.levels) == [0.5]
    xs = np.concatenate([seg[:, 0] for seg in contour.allsegs[0]])
    assert 32 <= xs.min() and xs.max() <= 48  # the border at x = 40 of the 80 px query, in its pixels


def test_hits_figure_without_hits_is_the_query_alone() -> None:
    fig = render.hits_figure(np.zeros((10, 20, 3), np.uint8), [], [])
    assert len(fig.axes) == 1 and fig.axes[0].get_xlabel() == "query"
    assert fig.get_size_inches()[1] == pytest.approx(12.0 * 1.1 + 0.8)


# ------------------------------------------------------------------------------------------------------
# Layout and style (what the eye sees)
# ------------------------------------------------------------------------------------------------------


def _contours(ax) -> list:  # type: ignore[no-untyped-def]
    return [c for c in ax.collections if hasattr(c, "levels")]


def test_pair_figure_layout_and_style() -> None:
    from matplotlib.layout_engine import ConstrainedLayoutEngine

    ex = _pair()
    mask = np.zeros(ex.image_a.shape[:2])
    mask[:, :32] = 1
    for fig in (render.explanation_figure(ex), render.point_figure(ex, "a", 0, 0), render.region_figure(ex, "a", mask)):
        assert isinstance(fig.get_layout_engine(), ConstrainedLayoutEngine)
        fig.draw_without_rendering()
        a, b, bar = fig.axes
        pa, pb, pbar = a.get_position(), b.get_position(), bar.get_position()
        assert pa.x1 <= pb.x0 and abs(pa.y1 - pb.y1) < 0.02 or abs(pa.y0 - pb.y0) < 0.02  # side by side
        assert pbar.y1 < min(pa.y0, pb.y0)  # the bar below both
        assert abs((pbar.x0 + pbar.x1) / 2 - 0.5) < 0.03  # centred under both panels
        assert 0.25 < pbar.width < 0.45 and 0.02 < pbar.height < 0.05
        assert bar._colorbar.mappable is _heat(b)
        assert a.xaxis.label.get_fontsize() == 10 and b.xaxis.label.get_fontsize() == 10
        assert bar.xaxis.get_major_formatter()(0.00001234) == "1.2e-05"
    contour = _contours(render.region_figure(ex, "a", mask).axes[0])[0]
    assert contour.get_edgecolor().tolist() == [[0.0, 1.0, 0.0, 1.0]] and list(contour.get_linewidth()) == [2]


def test_point_and_region_figures_take_the_figure_options() -> None:
    ex = _pair()
    for fig in (
        render.point_figure(ex, "a", 1, 1, cmap="viridis", title="T", width=7.0),
        render.region_figure(ex, "b", np.ones(ex.grid_b), cmap="viridis", title="T", width=7.0),
    ):
        assert fig.get_size_inches()[0] == pytest.approx(7.0)
        assert fig._suptitle.get_text() == f"T\n{render.score_line(ex)}"
        assert [_heat(ax).cmap.name for ax in fig.axes[:2] if _heat(ax) is not None] == ["viridis"]


def test_hits_figure_layout_and_style() -> None:
    from matplotlib.layout_engine import ConstrainedLayoutEngine

    hits, images = _hits()
    mask = np.zeros((50, 80), bool)
    mask[:, :40] = True  # a boolean mask at the query's size
    fig = render.hits_figure(np.zeros((50, 80, 3), np.uint8), hits, images, mask=mask, title="t")
    assert isinstance(fig.get_layout_engine(), ConstrainedLayoutEngine)
    fig.draw_without_rendering()
    q, first, second, bar = fig.axes
    boxes = [ax.get_position() for ax in (q, first, second)]
    assert boxes[0].x1 <= boxes[1].x0 and boxes[1].x1 <= boxes[2].x0  # one row
    pbar = bar.get_position()
    assert pbar.y1 < min(b.y0 for b in boxes) and abs((pbar.x0 + pbar.x1) / 2 - 0.5) < 0.03
    assert pbar.y0 < 0.1  # a thin bar at the bottom edge (fraction 0.06 of the figure)
    assert 0.2 < pbar.width < 0.45 and 0.02 < pbar.height < 0.05
    assert bar._colorbar.mappable is _heat(second)
    assert bar.xaxis.get_major_formatter()(0.00001234) == "1.2e-05"
    for ax in (q, first, second):
        assert ax.xaxis.label.get_fontsize() == 9
    assert fig._suptitle.get_fontsize() == 11
    (contour,) = _contours(q)
    assert contour.get_edgecolor().tolist() == [[0.0, 1.0, 0.0, 1.0]] and list(contour.get_linewidth()) == [2]
    xs = np.concatenate([seg[:, 0] for seg in contour.allsegs[0]])
    assert 38 <= xs.min() and xs.max() <= 41


def test_save_figure_limit_is_width_times_height(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from matplotlib.figure import Figure as PlainFigure

    fig = PlainFigure(figsize=(4, 2))  # 8 square inches (4 / 2 would be 2)
    monkeypatch.setattr(render, "MAX_FIGURE_PIXELS", 1000)
    render.save_figure(fig, tmp_path / "ok.png", dpi=11)  # 4 * 11 * 2 * 11 = 968 pixels
    with pytest.raises(sv.LimitError) as err:
        render.save_figure(fig, tmp_path / "big.png", dpi=12)  # 1152 pixels
    assert str(err.value) == (
        "a 4 x 2 inch figure at dpi=12 is 48x24 = 1,152 pixels, above the limit of 1,000 (MAX_FIGURE_PIXELS): "
        "use dpi <= 11"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ok.png"]


def test_save_figure_accepts_any_positive_dpi(tmp_path: Path) -> None:
    from matplotlib.figure import Figure as PlainFigure

    fig = PlainFigure(figsize=(4, 2))
    for dpi in (1, 0.5):
        with Image.open(render.save_figure(fig, tmp_path / f"d{dpi}.png", dpi=dpi)) as img:
            assert img.size == (round(4 * dpi), round(2 * dpi))
