"""The pair part every two-image widget shares: the traits that carry one explained pair to the browser (sent once
per pair), the interaction state (mode, hovered cells, masks, display options) with its validation, and the
exports. :class:`~simvis_widgets.widgets.pair_explorer.PairExplorer` and
:class:`~simvis_widgets.widgets.explorer.Explorer` are this plus their own constructors; their front ends share
``js/lib/pair_view.js``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anywidget
import numpy as np
import traitlets as t
from PIL import Image

from ..decompose import Explanation
from ..errors import PairExplorerError
from ..pair import ExplainedPair
from .encoding import MASK_SERIALIZERS, ContributionTraits, png_bytes

MODES = ("overview", "hover", "paint")


class PairWidget(anywidget.AnyWidget, ContributionTraits):
    """Two images A and B with the pairwise contributions of one :class:`ExplainedPair` (see ``_show``).

    Traits: ``mode`` (``overview`` | ``hover`` | ``paint``), ``hover_a`` / ``hover_b`` (``[row, col]`` or
    ``[]``), ``mask_a`` / ``mask_b`` (float arrays in [0, 1] at the displayed image size -- the network input --
    or None; cell-grid and original-size masks are resized), ``opacity``, ``cmap``, ``scale_mode``
    (``"shared"`` | ``"per-view"``), ``show_grid``, ``brush`` (radius in image px), ``erase``, ``box`` (paint
    drags a rectangle, which replaces that image's mask, instead of brush strokes).
    """

    _title = "simvis-widgets"

    # --- the pair (kernel -> browser once per pair; _pair_version changes last) ---
    _pair_version = t.Int(0).tag(sync=True)
    _static = t.Bool(False).tag(sync=True)
    image_a = t.Bytes(b"").tag(sync=True)
    image_b = t.Bytes(b"").tag(sync=True)
    size_a = t.List(t.Int(), [1, 1]).tag(sync=True)
    size_b = t.List(t.Int(), [1, 1]).tag(sync=True)

    # --- interaction state (both ways) ---
    mode = t.Enum(MODES, "overview").tag(sync=True)
    hover_a = t.List(t.Int(), []).tag(sync=True)
    hover_b = t.List(t.Int(), []).tag(sync=True)
    mask_a = t.Any(None, allow_none=True).tag(sync=True, **MASK_SERIALIZERS)
    mask_b = t.Any(None, allow_none=True).tag(sync=True, **MASK_SERIALIZERS)
    opacity = t.Float(0.6).tag(sync=True)
    scale_mode = t.Enum(("shared", "per-view"), "shared").tag(sync=True)
    show_grid = t.Bool(False).tag(sync=True)
    brush = t.Int(24).tag(sync=True)
    erase = t.Bool(False).tag(sync=True)
    box = t.Bool(False).tag(sync=True)

    def __init__(self, **traits: Any) -> None:
        super().__init__(**traits)
        self.explanation: ExplainedPair | None = None
        self._originals: tuple[np.ndarray, np.ndarray] | None = None

    def reset(self) -> None:
        """Overview mode, no masks, no hovered cell."""
        with self.hold_sync():
            self.mask_a = self.mask_b = None
            self.hover_a = self.hover_b = []
            self.mode = "overview"

    def region_score(self, side: str) -> float:
        """The exact region score of the current mask on ``side`` (0 without a mask)."""
        mask = self.mask_a if side.lower() == "a" else self.mask_b
        if mask is None or self.explanation is None:
            return 0.0
        return self.explanation.region_score(side, mask)

    def save_png(self, path: str | Path, dpi: int = 120) -> Path:
        """A static PNG of the current view, drawn by matplotlib from the same Explanation: the overview maps,
        the hovered cell's map, or the painted region's map (mask of A first). Shared colour scale."""
        from ..render import save_figure

        ex = self._require()
        kwargs = {"cmap": self.cmap, "alpha": self.opacity}
        if self.mode == "hover" and (self.hover_a or self.hover_b):
            side = "a" if self.hover_a else "b"
            row, col = self.hover_a or self.hover_b
            fig = ex.point_figure(side, row, col, **kwargs)
        elif self.mode == "paint" and (self.mask_a is not None or self.mask_b is not None):
            side = "a" if self.mask_a is not None else "b"
            fig = ex.region_figure(side, self.mask_a if side == "a" else self.mask_b, **kwargs)
        else:
            fig = ex.figure(**kwargs)
        return save_figure(fig, path, dpi=dpi)

    def to_html(self, path: str | Path, title: str | None = None) -> Path:
        """A self-contained HTML file: this widget's ES module, CSS and state inline (binary as base64), run by a
        minimal model object. Hover and paint keep working without a kernel or a network."""
        from .static_html import write_static_html

        return write_static_html(self, Path(path), title or self._title)

    # ---------------------------------------------------------------------------------------------
    # Internals
    # ---------------------------------------------------------------------------------------------

    def _require(self) -> ExplainedPair:
        if self.explanation is None:
            raise PairExplorerError("no pair is shown")
        return self.explanation

    def _show(
        self, ex: Explanation, originals: tuple[np.ndarray, np.ndarray] | None = None, keep_a: bool = False
    ) -> None:
        """Send ``ex`` to the browser; ``originals`` are the images as given (for masks at their size). The mask
        and hovered cell of B are cleared, those of A too unless ``keep_a`` (A is the same image as before)."""
        if not isinstance(ex, ExplainedPair) or ex.image_a is None or ex.image_b is None:
            raise PairExplorerError(
                "the explanation carries no images: use PairExplorer.from_explanation(ex, img_a, img_b)"
            )
        for side, image in (("A", ex.image_a), ("B", ex.image_b)):
            if image.ndim != 3 or image.shape[0] == 0 or image.shape[1] == 0:
                raise PairExplorerError(f"image {side} is empty or not H x W x 3: shape {image.shape}")
        self._originals = originals if originals is not None else (ex.image_a, ex.image_b)
        with self.hold_sync():
            self.explanation = ex
            self.image_a, self.image_b = png_bytes(ex.image_a), png_bytes(ex.image_b)
            self.size_a, self.size_b = list(ex.image_a.shape[:2]), list(ex.image_b.shape[:2])
            pooling = f"GeM p={ex.p:g}" if ex.pooling == "gem" else f"{ex.pooling} pooling"
            self.send_contributions(ex, pooling, ex.model_name or "features")
            self.mask_b, self.hover_b = None, []
            if not keep_a:
                self.mask_a, self.hover_a = None, []
            self._pair_version += 1

    @t.validate("opacity")
    def _valid_opacity(self, proposal: t.Bunch) -> float:
        value = float(proposal["value"])
        if not 0.0 <= value <= 1.0:
            raise t.TraitError(f"opacity must lie in [0, 1], got {value}")
        return value

    @t.validate("brush")
    def _valid_brush(self, proposal: t.Bunch) -> int:
        value = int(proposal["value"])
        if value < 1:
            raise t.TraitError(f"brush radius must be >= 1 px, got {value}")
        return value

    @t.validate("hover_a", "hover_b")
    def _valid_hover(self, proposal: t.Bunch) -> list[int]:
        value = list(proposal["value"])
        if not value:
            return []
        side = proposal["trait"].name[-1]
        grid = self.grid_a if side == "a" else self.grid_b
        if len(value) != 2 or not (0 <= value[0] < grid[0] and 0 <= value[1] < grid[1]):
            raise t.TraitError(
                f"hover_{side} must be [] or [row, col] inside the {grid[0]}x{grid[1]} grid, got {value}"
            )
        return [int(v) for v in value]

    @t.validate("mask_a", "mask_b")
    def _valid_mask(self, proposal: t.Bunch) -> np.ndarray | None:
        value = proposal["value"]
        if value is None:
            return None
        side = proposal["trait"].name[-1]
        size = self.size_a if side == "a" else self.size_b
        grid = self.grid_a if side == "a" else self.grid_b
        mask = np.asarray(value, dtype=np.float32)
        if mask.ndim != 2 or mask.size == 0:
            raise t.TraitError(f"mask_{side} must be a 2-D array, got shape {mask.shape}")
        if not np.isfinite(mask).all() or mask.min() < 0 or mask.max() > 1:
            raise t.TraitError(f"mask_{side} values must lie in [0, 1]")
        if list(mask.shape) != list(size):
            if list(mask.shape) == list(grid) or (
                self.explanation is not None and mask.shape == self._original_shape(side)
            ):
                mask = np.asarray(Image.fromarray(mask).resize((size[1], size[0]), Image.Resampling.NEAREST))
            else:
                raise t.TraitError(
                    f"mask_{side} has shape {mask.shape}; expected the displayed image size {tuple(size)}, "
                    f"the cell grid {tuple(grid)} or the original image size"
                )
        return mask if mask.any() else None

    def _original_shape(self, side: str) -> tuple[int, ...]:
        if self._originals is None:
            return ()
        return tuple(self._originals[0 if side == "a" else 1].shape[:2])


__all__ = ["MODES", "PairWidget"]
