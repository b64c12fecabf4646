"""Static figures: colour scales, upsampled overlays and matplotlib figures of an Explanation.

Display only: the numbers shown (score, sums) come from the cell maps; upsampling is for the eye.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

    from .decompose import Explanation

DEFAULT_CMAP = "RdBu_r"
"""Diverging: red adds to the similarity, blue takes away, white is 0."""


def upsample(cell_map: Any, size: tuple[int, int]) -> np.ndarray:
    """Bilinear upsampling of a ``(h, w)`` cell map to ``size = (H, W)`` pixels (display only)."""
    t = torch.as_tensor(cell_map, dtype=torch.float32).detach().cpu()[None, None]
    return torch.nn.functional.interpolate(t, size=size, mode="bilinear", align_corners=False)[0, 0].numpy()


def shared_limit(*maps: Any) -> float:
    """The largest absolute value over ``maps``: one symmetric scale ``[-v, v]`` centred on 0 for all of them."""
    v = max(float(torch.as_tensor(m).detach().abs().max()) for m in maps)
    return v if v > 0 else 1.0


def explanation_figure(
    ex: "Explanation",
    *,
    cmap: str = DEFAULT_CMAP,
    alpha: float = 0.6,
    title: str | None = None,
    width: float = 11.0,
) -> "Figure":
    """Both images with their contribution maps on ONE diverging scale centred on 0, a colour bar, the score
    and the map sums. Images missing from ``ex`` (functional API) are drawn as grey backgrounds."""
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    vmax = shared_limit(ex.map_a, ex.map_b)
    norm = Normalize(-vmax, vmax)
    panels = []
    for label, image, cell_map, grid in (("A", ex.image_a, ex.map_a, ex.grid_a), ("B", ex.image_b, ex.map_b, ex.grid_b)):
        if image is None:
            image = np.full((grid[0] * 32, grid[1] * 32, 3), 200, np.uint8)
        panels.append((label, image, cell_map))
    aspect = max(p[1].shape[0] / p[1].shape[1] for p in panels)
    fig = Figure(figsize=(width, width / 2 * aspect + 1.3), layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, (label, image, cell_map) in zip(axes, panels):
        ax.imshow(image)
        heat = ax.imshow(upsample(cell_map, image.shape[:2]), cmap=cmap, norm=norm, alpha=alpha)
        ax.set_xlabel(f"image {label}: sum of its map = {float(cell_map.sum()):+.4f}", fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    bar = fig.colorbar(heat, ax=list(axes), orientation="horizontal", fraction=0.05, shrink=0.6)
    bar.set_label("contribution to the similarity (per feature cell; red adds, blue subtracts)")
    kind = "cosine" if ex.normalized else "dot product"
    pooling = f"GeM p={ex.p:g}" if ex.pooling == "gem" else f"{ex.pooling} pooling"
    lines = [
        title or (ex.model_name or "similarity"),
        f"score ({kind}, {pooling}) = {ex.score:.4f}"
        + (f"   global (bias) term = {ex.global_term:+.4f}" if ex.global_term else "")
        + ("" if ex.exact else "   APPROXIMATE (linearisation)"),
    ]
    fig.suptitle("\n".join(lines), fontsize=11)
    return fig


def save_figure(fig: "Figure", path: str | os.PathLike, dpi: int = 120) -> Path:
    """Write ``fig`` to ``path`` atomically: a temporary file in the same folder, then a rename, so an
    interrupted save never leaves a half-written file. The format follows the extension."""
    path = Path(path)
    if not path.parent.exists():
        raise FileNotFoundError(f"cannot write '{path}': folder '{path.parent}' does not exist")
    fmt = path.suffix.lstrip(".").lower() or "png"
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fig.savefig(fh, format=fmt, dpi=dpi)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
