"""Static figures: colour scales, upsampled overlays and matplotlib figures of an Explanation.

Display only: the numbers shown (score, sums) come from the cell maps; upsampling is for the eye.
"""

from __future__ import annotations

import functools
import math
import numbers
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ._io import atomic_write
from .errors import LimitError

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

    from .decompose import Explanation
    from .pair import ExplainedPair
    from .triplet import ExplainedTriplet

MAX_FIGURE_PIXELS = 50_000_000
"""The most pixels a saved figure may have (figure inches x dpi, squared), in every format. Rendering the
11 x 5.4 inch explanation figure at 40 megapixels (dpi 816) takes about 1.2 GB more memory and 11 s, as PNG or
PDF; at 5000 dpi (1.5 gigapixels) the process was killed for lack of memory."""

DEFAULT_CMAP = "RdBu_r"
"""Diverging: red adds to the similarity, blue takes away, white is 0."""


@functools.cache
def _figure_class() -> type:
    """A matplotlib Figure that shows itself as a PNG in notebooks (no pyplot, so no global figure state)."""
    import io

    from matplotlib.figure import Figure

    class NotebookFigure(Figure):
        def _repr_png_(self) -> bytes:
            buffer = io.BytesIO()
            self.savefig(buffer, format="png", dpi=100)
            return buffer.getvalue()

    return NotebookFigure


def new_figure(**kwargs: Any) -> Figure:
    """A matplotlib Figure (``kwargs`` as for ``Figure``) that notebooks show as a PNG; no pyplot state."""
    fig: Figure = _figure_class()(**kwargs)
    return fig


def upsample(cell_map: Any, size: tuple[int, int]) -> np.ndarray:
    """Bilinear upsampling of a ``(h, w)`` cell map to ``size = (H, W)`` pixels (display only)."""
    t = torch.as_tensor(cell_map, dtype=torch.float32).detach().cpu()[None, None]
    return torch.nn.functional.interpolate(t, size=size, mode="bilinear", align_corners=False)[0, 0].numpy()


def shared_limit(*maps: Any) -> float:
    """The largest absolute value over ``maps``: one symmetric scale ``[-v, v]`` centred on 0 for all of them."""
    v = max(float(torch.as_tensor(m).detach().abs().max()) for m in maps)
    return v if v > 0 else 1.0


def _panel_image(image: np.ndarray | None, grid: tuple[int, int]) -> np.ndarray:
    return image if image is not None else np.full((grid[0] * 32, grid[1] * 32, 3), 200, np.uint8)


def _pair_figure(
    ex: Explanation,
    maps: dict[str, Any],
    captions: dict[str, str],
    headline: str,
    *,
    cell: tuple[str, int, int] | None = None,
    mask: tuple[str, Any] | None = None,
    cmap: str = DEFAULT_CMAP,
    alpha: float = 0.6,
    title: str | None = None,
    width: float = 11.0,
) -> Figure:
    """Images A and B side by side; each side's map in ``maps`` (None: the plain image) on one diverging
    scale centred on 0; an optional marked ``cell`` or outlined ``mask`` on one side."""
    from matplotlib.colors import Normalize
    from matplotlib.patches import Rectangle

    ex = _as_pair(ex)
    shown = [m for m in maps.values() if m is not None]
    vmax = shared_limit(*shown)
    norm = Normalize(-vmax, vmax)
    sides = {
        "a": (_panel_image(ex.image_a, ex.grid_a), ex.grid_a),
        "b": (_panel_image(ex.image_b, ex.grid_b), ex.grid_b),
    }
    aspect = max(img.shape[0] / img.shape[1] for img, _ in sides.values())
    fig = _figure_class()(figsize=(width, width / 2 * aspect + 1.3), layout="constrained")
    axes = fig.subplots(1, 2)
    heat = None
    for ax, side in zip(axes, ("a", "b")):
        image, grid = sides[side]
        ax.imshow(image)
        if maps.get(side) is not None:
            heat = ax.imshow(upsample(maps[side], image.shape[:2]), cmap=cmap, norm=norm, alpha=alpha)
        ch, cw = image.shape[0] / grid[0], image.shape[1] / grid[1]
        if cell is not None and cell[0] == side:
            ax.add_patch(Rectangle((cell[2] * cw - 0.5, cell[1] * ch - 0.5), cw, ch, fill=False, ec="lime", lw=2.5))
        if mask is not None and mask[0] == side:
            weights = ex.region_weights(side, mask[1]).detach().cpu().numpy()
            ax.contour(upsample(weights, image.shape[:2]), levels=[0.5], colors="lime", linewidths=2)
        ax.set_xlabel(captions.get(side, ""), fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    if heat is not None:
        bar = fig.colorbar(
            heat,
            ax=list(axes),
            orientation="horizontal",
            fraction=0.05,
            shrink=0.6,
            ticks=[-vmax, -vmax / 2, 0, vmax / 2, vmax],
            format="%.2g",
        )
        bar.set_label("contribution to the similarity (per feature cell; red adds, blue subtracts)")
    fig.suptitle(f"{title or (ex.model_name or 'similarity')}\n{headline}", fontsize=11)
    return fig


def _as_pair(ex: Explanation) -> ExplainedPair:
    """``ex`` as an ExplainedPair (a bare Explanation gets no images: grey backgrounds are drawn)."""
    from .pair import ExplainedPair

    return ex if isinstance(ex, ExplainedPair) else ExplainedPair.of(ex)


def score_line(ex: Explanation) -> str:
    """The headline of a figure: ``score (cosine, avg pooling) = 0.1234``, the global term when there is one and
    ``APPROXIMATE (linearisation)`` when the decomposition is not exact."""
    kind = "cosine" if ex.normalized else "dot product"
    pooling = f"GeM p={ex.p:g}" if ex.pooling == "gem" else f"{ex.pooling} pooling"
    return (
        f"score ({kind}, {pooling}) = {ex.score:.4f}"
        + (f"   global (bias) term = {ex.global_term:+.4f}" if ex.global_term else "")
        + ("" if ex.exact else "   APPROXIMATE (linearisation)")
    )


def explanation_figure(ex: Explanation, **kwargs: Any) -> Figure:
    """Both images with their contribution maps on ONE diverging scale centred on 0, a colour bar, the score
    and the map sums. Images missing from ``ex`` (functional API) are drawn as grey backgrounds."""
    captions = {
        s: f"image {s.upper()}: sum of its map = {float(m.sum()):+.4f}" for s, m in (("a", ex.map_a), ("b", ex.map_b))
    }
    return _pair_figure(ex, {"a": ex.map_a, "b": ex.map_b}, captions, score_line(ex), **kwargs)


def point_figure(ex: Explanation, side: str, row: int, col: int, **kwargs: Any) -> Figure:
    """Cell ``(row, col)`` of ``side`` marked, and its row of the pairwise matrix as a map on the other image."""
    side = side.lower()
    other = "b" if side == "a" else "a"
    values = ex.point_map(side, row, col)
    own = ex.map_a if side == "a" else ex.map_b
    captions = {
        side: f"image {side.upper()}: cell ({row}, {col}) carries {float(own[row, col]):+.4f} of the score",
        other: f"image {other.upper()}: that cell's contributions, sum = {float(values.sum()):+.4f}",
    }
    return _pair_figure(ex, {other: values}, captions, score_line(ex), cell=(side, row, col), **kwargs)


def region_figure(ex: Explanation, side: str, mask: Any, **kwargs: Any) -> Figure:
    """The region ``mask`` outlined on ``side``, and its region map on the other image."""
    side = side.lower()
    other = "b" if side == "a" else "a"
    values = ex.region_map(side, mask)
    score = ex.region_score(side, mask)
    captions = {
        side: f"image {side.upper()}: region score {score:+.4f} = {score / ex.score:.0%} of the score"
        if ex.score
        else "",
        other: f"image {other.upper()}: where the region is matched, sum = {float(values.sum()):+.4f}",
    }
    return _pair_figure(ex, {other: values}, captions, score_line(ex), mask=(side, mask), **kwargs)


def save_figure(fig: Figure, path: str | os.PathLike, dpi: float = 120) -> Path:
    """Write ``fig`` to ``path`` atomically (see :func:`simvis_widgets._io.atomic_write`): an interrupted save
    never leaves a half-written file. The format follows the extension (none: PNG).

    ``dpi`` must be a positive finite number with a raster of at most :data:`MAX_FIGURE_PIXELS` (figure inches x
    dpi, squared), for every format: PDF, SVG and EPS hold their images rasterised at ``dpi`` too. Anything else
    is a :class:`~simvis_widgets.errors.LimitError`, raised before anything is drawn or written."""
    if isinstance(dpi, bool) or not isinstance(dpi, numbers.Real) or not math.isfinite(dpi) or dpi <= 0:
        raise LimitError(f"dpi must be a positive number, got {dpi!r}")
    width, height = (float(v) for v in fig.get_size_inches())
    pixels = width * dpi * height * dpi
    if pixels > MAX_FIGURE_PIXELS:
        most = math.floor(math.sqrt(MAX_FIGURE_PIXELS / (width * height)))
        raise LimitError(
            f"a {width:g} x {height:g} inch figure at dpi={dpi:g} is {width * dpi:.0f}x{height * dpi:.0f} = "
            f"{pixels:,.0f} pixels, above the limit of {MAX_FIGURE_PIXELS:,} (MAX_FIGURE_PIXELS): use dpi <= {most}"
        )
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower() or "png"
    with atomic_write(path) as fh:
        fig.savefig(fh, format=fmt, dpi=dpi)
    return path


def hits_figure(
    query: np.ndarray,
    hits: list,
    images: list[np.ndarray],
    *,
    mask: Any = None,
    cmap: str = DEFAULT_CMAP,
    alpha: float = 0.6,
    width: float = 12.0,
    title: str | None = None,
) -> Figure:
    """The query (with its region outlined) and each hit's image with its region map, all maps on one
    diverging scale centred on 0; rank, score and label under each hit."""
    from matplotlib.colors import Normalize

    n = len(hits)
    fig = _figure_class()(figsize=(width, width / (n + 1) * 1.1 + 0.8), layout="constrained")
    axes = fig.subplots(1, n + 1, squeeze=False)[0]
    vmax = shared_limit(*[h.map for h in hits]) if hits else 1.0
    norm = Normalize(-vmax, vmax)
    axes[0].imshow(query)
    if mask is not None:
        m = np.asarray(mask, dtype=float)
        if m.shape != query.shape[:2]:
            m = upsample(torch.as_tensor(m), query.shape[:2])
        axes[0].contour(m, levels=[0.5], colors="lime", linewidths=2)
    axes[0].set_xlabel("query" + (" (region)" if mask is not None else ""), fontsize=9)
    for rank, (ax, hit, image) in enumerate(zip(axes[1:], hits, images), start=1):
        ax.imshow(image)
        heat = ax.imshow(upsample(hit.map, image.shape[:2]), cmap=cmap, norm=norm, alpha=alpha)
        label = f"\n{hit.label}" if hit.label is not None else ""
        ax.set_xlabel(f"#{rank}  {hit.score:.4f}{label}", fontsize=9)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    if hits:
        fig.colorbar(
            heat,
            ax=list(axes),
            orientation="horizontal",
            fraction=0.06,
            shrink=0.4,
            ticks=[-vmax, 0, vmax],
            format="%.2g",
        ).set_label("where the query region is matched")
    if title:
        fig.suptitle(title, fontsize=11)
    return fig


def triplet_figure(
    triplet: ExplainedTriplet,
    *,
    cmap: str = DEFAULT_CMAP,
    alpha: float = 0.6,
    width: float = 13.0,
    title: str | None = None,
) -> Figure:
    """Anchor, positive, negative: on the anchor the difference map ``D = S_A(A, P) - S_A(A, N)`` (red: where the
    anchor prefers P, blue: where it looks more like N), on P and N their maps from the two pairs; ONE diverging
    scale centred on 0 for all three, the two scores and the margin in the title."""
    from matplotlib.colors import Normalize

    pos, neg = _as_pair(triplet.positive), _as_pair(triplet.negative)
    panels = [
        (
            pos.image_a,
            pos.grid_a,
            triplet.difference_map,
            f"anchor: D = S(A,P) - S(A,N), sum {float(triplet.difference_map.sum()):+.4f}",
        ),
        (pos.image_b, pos.grid_b, pos.map_b, f"positive: s(A,P) = {pos.score:.4f}"),
        (neg.image_b, neg.grid_b, neg.map_b, f"negative: s(A,N) = {neg.score:.4f}"),
    ]
    vmax = shared_limit(*[m for _, _, m, _ in panels])
    norm = Normalize(-vmax, vmax)
    images = [_panel_image(image, grid) for image, grid, _, _ in panels]
    aspect = max(img.shape[0] / img.shape[1] for img in images)
    fig = _figure_class()(figsize=(width, width / 3 * aspect + 1.4), layout="constrained")
    axes = fig.subplots(1, 3)
    heat = None
    for ax, image, (_, _, values, caption) in zip(axes, images, panels):
        ax.imshow(image)
        heat = ax.imshow(upsample(values, image.shape[:2]), cmap=cmap, norm=norm, alpha=alpha)
        ax.set_xlabel(caption, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(
        heat, ax=list(axes), orientation="horizontal", fraction=0.05, shrink=0.5, ticks=[-vmax, 0, vmax], format="%.2g"
    ).set_label("contribution (anchor: to the margin; P, N: to their pair's similarity)")
    kind = "" if pos.exact else "  APPROXIMATE (linearisation)"
    fig.suptitle(
        f"{title or (pos.model_name or 'triplet')}\nmargin s(A,P) - s(A,N) = {triplet.margin:+.4f}{kind}", fontsize=11
    )
    return fig


def _panel_grid(count: int, columns: Any, width: float, aspect: float, extra_height: float) -> tuple[Figure, list[Any]]:
    """A figure of ``count`` image panels in rows of at most ``columns`` (checked), each ``aspect`` (height / width)
    as tall as wide plus ``extra_height`` inches for the titles: its first ``count`` axes, without ticks (the rest of
    the grid is hidden)."""
    if isinstance(columns, bool) or not isinstance(columns, int) or columns < 1:
        raise LimitError(f"columns must be a positive integer, got {columns!r}")
    if count < 1:
        raise LimitError("nothing to draw: no panels")
    cols = min(columns, count)
    rows = math.ceil(count / cols)
    fig = _figure_class()(figsize=(width, width / cols * rows * aspect + extra_height), layout="constrained")
    axes = list(fig.subplots(rows, cols, squeeze=False).flatten())
    for ax in axes[count:]:
        ax.set_axis_off()
    for ax in axes[:count]:
        ax.set_xticks([])
        ax.set_yticks([])
    return fig, axes[:count]


def class_maps_figure(
    class_maps: Any,
    backgrounds: dict[Any, np.ndarray] | None = None,
    *,
    names: dict[Any, str] | None = None,
    columns: int = 5,
    cmap: str = DEFAULT_CMAP,
    alpha: float = 0.7,
    width: float = 12.0,
    title: str | None = None,
) -> Figure:
    """A grid of :class:`~simvis_widgets.gallery.audit.ClassMaps`: each label's mean within-class map (image
    coordinates), all on ONE diverging scale centred on 0, over an optional background per label (e.g. the class's
    mean image); the label (or ``names[label]``), its member count and mean within-class score under each."""
    from matplotlib.colors import Normalize

    h, w = class_maps.size
    fig, axes = _panel_grid(len(class_maps.labels), columns, width, h / w, 1.2)
    vmax = shared_limit(class_maps.maps)
    norm = Normalize(-vmax, vmax)
    heat: Any = None  # the last panel's image: every panel shares its scale
    for ax, label, values, members, score in zip(
        axes, class_maps.labels, class_maps.maps, class_maps.members, class_maps.mean_scores
    ):
        if backgrounds is not None and label in backgrounds:
            ax.imshow(backgrounds[label], extent=(-0.5, w - 0.5, h - 0.5, -0.5))
            heat = ax.imshow(values.numpy(), cmap=cmap, norm=norm, alpha=alpha)
        else:
            heat = ax.imshow(values.numpy(), cmap=cmap, norm=norm)
        shown = (names or {}).get(label, str(label))
        ax.set_xlabel(f"{shown}\n{len(members)} images, mean score {score:.3f}", fontsize=9)
    fig.colorbar(
        heat, ax=axes, orientation="horizontal", fraction=0.04, shrink=0.5, ticks=[-vmax, 0, vmax], format="%.2g"
    ).set_label("mean contribution to within-class similarity (per pixel of the upsampled cell maps)")
    fig.suptitle(title or "where within-class similarity lives", fontsize=11)
    return fig


def audit_figure(
    finding: Any,
    images: list[np.ndarray],
    *,
    captions: list[str] | None = None,
    columns: int = 8,
    width: float = 12.0,
    title: str | None = None,
) -> Figure:
    """The images of an :class:`~simvis_widgets.gallery.audit.AuditFinding` (``images``: those images, in the
    order of ``finding.images``, or fewer) with the finding's region outlined on each."""
    from matplotlib.patches import Rectangle

    if not images:
        raise LimitError("audit_figure needs at least one image")
    fig, axes = _panel_grid(len(images), columns, width, 1.0, 0.9)
    for n, (ax, image) in enumerate(zip(axes, images)):
        ax.imshow(image)
        x0, y0, x1, y1 = finding.pixel_box(image.shape[:2])
        ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, ec="lime", lw=2))
        caption = captions[n] if captions is not None and n < len(captions) else f"#{finding.images[n]}"
        ax.set_xlabel(caption, fontsize=8)
    fig.suptitle(
        title
        or f"{len(finding.images)} images ({finding.share:.0%}) linked by one region, same-place match "
        f"{finding.peak:.1f}x the best match elsewhere",
        fontsize=11,
    )
    return fig
