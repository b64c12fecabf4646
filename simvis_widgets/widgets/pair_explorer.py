"""PairExplorer: two linked images; hovering or painting on one live-updates the contribution map on the other.

The kernel computes one :class:`~simvis_widgets.decompose.Explanation` per pair and sends its pairwise matrix
``P`` to the browser once (binary float32; float16 above ``FLOAT16_ABOVE`` entries; the factors ``Q_A``,
``Q_B`` above ``PAIRWISE_MAX`` entries). Hover and paint maps are computed in the browser
(``js/pair_explorer.js``), so no kernel round trip happens per mouse move. Painted masks come back to the
``mask_a`` / ``mask_b`` traits at the end of each stroke; the hovered cell to ``hover_a`` / ``hover_b``.
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
from ..images import ImageLike, load_image
from ..pair import ExplainedPair
from ..session import ModelSession
from .encoding import MASK_SERIALIZERS, STATIC, colormap_lut, matrix_payload, png_bytes

MODES = ("overview", "hover", "paint")


class PairExplorer(anywidget.AnyWidget):
    """Side-by-side images with their contribution maps, live in the browser.

    * **overview**: each image's map (``S_A``, ``S_B``);
    * **hover**: the hovered cell's row (or column) of ``P`` on the other image, its share and best match;
    * **paint**: a brush region on either image; the other shows the region map and the region's score.

    ``PairExplorer(session, img_a, img_b)`` or ``PairExplorer.from_explanation(ex)``. Traits: ``mode``,
    ``hover_a`` / ``hover_b`` (``[row, col]`` or ``[]``), ``mask_a`` / ``mask_b`` (float arrays in [0, 1] at
    the displayed image size -- the network input -- or None), ``opacity``, ``cmap``, ``scale_mode``
    (``"shared"`` | ``"per-view"``), ``show_grid``, ``brush`` (radius in image px), ``erase``.
    """

    _esm = STATIC / "pair_explorer.js"
    _css = STATIC / "pair_explorer.css"

    # --- the pair (kernel -> browser once per pair; _pair_version changes last) ---
    _pair_version = t.Int(0).tag(sync=True)
    _static = t.Bool(False).tag(sync=True)
    image_a = t.Bytes(b"").tag(sync=True)
    image_b = t.Bytes(b"").tag(sync=True)
    size_a = t.List(t.Int(), [1, 1]).tag(sync=True)
    size_b = t.List(t.Int(), [1, 1]).tag(sync=True)
    grid_a = t.List(t.Int(), [1, 1]).tag(sync=True)
    grid_b = t.List(t.Int(), [1, 1]).tag(sync=True)
    matrix_kind = t.Unicode("pairwise").tag(sync=True)
    matrix_dtype = t.Unicode("float32").tag(sync=True)
    pairwise = t.Bytes(b"").tag(sync=True)
    shares_a = t.Bytes(b"").tag(sync=True)
    shares_b = t.Bytes(b"").tag(sync=True)
    factor_dim = t.Int(0).tag(sync=True)
    matrix_scale = t.Float(1.0).tag(sync=True)
    """P = matrix_scale * decoded pairwise bytes."""
    scale = t.Float(1.0).tag(sync=True)
    """P = scale * Q_A Q_B^T for decoded factors."""
    map_a = t.Bytes(b"").tag(sync=True)
    map_b = t.Bytes(b"").tag(sync=True)
    score = t.Float(0.0).tag(sync=True)
    global_term = t.Float(0.0).tag(sync=True)
    similarity = t.Unicode("cosine").tag(sync=True)
    pooling = t.Unicode("avg").tag(sync=True)
    model_name = t.Unicode("").tag(sync=True)
    exact = t.Bool(True).tag(sync=True)
    lut = t.Bytes(b"").tag(sync=True)

    # --- interaction state (both ways) ---
    mode = t.Enum(MODES, "overview").tag(sync=True)
    hover_a = t.List(t.Int(), []).tag(sync=True)
    hover_b = t.List(t.Int(), []).tag(sync=True)
    mask_a = t.Any(None, allow_none=True).tag(sync=True, **MASK_SERIALIZERS)
    mask_b = t.Any(None, allow_none=True).tag(sync=True, **MASK_SERIALIZERS)
    opacity = t.Float(0.6).tag(sync=True)
    cmap = t.Unicode("RdBu_r").tag(sync=True)
    scale_mode = t.Enum(("shared", "per-view"), "shared").tag(sync=True)
    show_grid = t.Bool(False).tag(sync=True)
    brush = t.Int(24).tag(sync=True)
    erase = t.Bool(False).tag(sync=True)

    def __init__(
        self,
        session: ModelSession | None = None,
        img_a: ImageLike | None = None,
        img_b: ImageLike | None = None,
        *,
        explanation: Explanation | None = None,
        **traits: Any,
    ) -> None:
        super().__init__(**traits)
        self.lut = colormap_lut(self.cmap)
        self.session = session
        self.explanation: ExplainedPair | None = None
        self.on_msg(self._on_front_end_message)
        self._originals: tuple[np.ndarray, np.ndarray] | None = None
        if explanation is not None:
            self._show(explanation)
        elif session is not None:
            if img_a is None or img_b is None:
                raise PairExplorerError("PairExplorer(session, img_a, img_b) needs both images")
            self.set_pair(img_a, img_b)
        else:
            raise PairExplorerError(
                "PairExplorer needs a session and two images, or use PairExplorer.from_explanation(ex)"
            )

    @classmethod
    def from_explanation(
        cls, explanation: Explanation, img_a: ImageLike | None = None, img_b: ImageLike | None = None, **traits: Any
    ) -> PairExplorer:
        """Show an existing Explanation; images default to those it carries (``session.explain`` attaches them)."""
        if not isinstance(explanation, Explanation):
            raise PairExplorerError(f"expected an Explanation, got {type(explanation).__name__}")
        ex = explanation
        carried = ex if isinstance(ex, ExplainedPair) else None
        images = {}
        for side, given in (("a", img_a), ("b", img_b)):
            image = load_image(given) if given is not None else getattr(carried, f"image_{side}", None)
            if image is None:
                raise PairExplorerError(f"the explanation carries no image {side.upper()}: pass img_{side}=...")
            images[side] = image
        return cls(explanation=ExplainedPair.of(ex, images["a"], images["b"]), **traits)

    # ---------------------------------------------------------------------------------------------
    # Python API
    # ---------------------------------------------------------------------------------------------

    def set_pair(self, img_a: ImageLike, img_b: ImageLike) -> None:
        """Explain a new pair with the session and show it (masks and hover are cleared)."""
        if self.session is None:
            raise PairExplorerError(
                "this explorer has no session (it was made from an explanation): use set_session first"
            )
        raw_a, raw_b = load_image(img_a), load_image(img_b)
        self._show(self.session.explain(raw_a, raw_b), (raw_a, raw_b))

    def set_session(self, session: ModelSession) -> None:
        """Explain the current pair with another session (model, pooling, head ...)."""
        if self.explanation is None or self._originals is None:
            raise PairExplorerError("no pair to re-explain")
        self.session = session
        self._show(session.explain(*self._originals), self._originals)

    def swap(self) -> None:
        """Exchange A and B (masks and hovered cells follow their images)."""
        if self.explanation is None or self._originals is None:
            return
        masks, hovers = (self.mask_b, self.mask_a), (list(self.hover_b), list(self.hover_a))
        self._show(self.explanation.swapped(), (self._originals[1], self._originals[0]))
        with self.hold_sync():
            self.mask_a, self.mask_b = masks
            self.hover_a, self.hover_b = hovers

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

    def to_html(self, path: str | Path, title: str = "simvis-widgets PairExplorer") -> Path:
        """A self-contained HTML file: this widget's ES module, CSS and state inline (binary as base64), run by a
        minimal model object. Hover and paint keep working without a kernel or a network."""
        from .static_html import write_static_html

        return write_static_html(self, Path(path), title)

    # ---------------------------------------------------------------------------------------------
    # Internals
    # ---------------------------------------------------------------------------------------------

    def _require(self) -> ExplainedPair:
        if self.explanation is None:
            raise PairExplorerError("no pair is shown")
        return self.explanation

    def _show(self, ex: Explanation, originals: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        """Send ``ex`` to the browser; ``originals`` are the images as given (for masks at their size)."""
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
            self.grid_a, self.grid_b = list(ex.grid_a), list(ex.grid_b)
            for name, value in matrix_payload(ex).items():
                setattr(self, name, value)
            self.score, self.global_term = float(ex.score), float(ex.global_term)
            self.similarity = "cosine" if ex.normalized else "dot product"
            self.pooling = f"GeM p={ex.p:g}" if ex.pooling == "gem" else f"{ex.pooling} pooling"
            self.model_name = ex.model_name or "features"
            self.exact = ex.exact
            self.mask_a = self.mask_b = None
            self.hover_a = self.hover_b = []
            self._pair_version += 1

    def _on_front_end_message(self, _widget: Any, content: dict[str, Any], _buffers: list[bytes]) -> None:
        if isinstance(content, dict) and content.get("event") == "swap":
            self.swap()

    @t.validate("cmap")
    def _valid_cmap(self, proposal: t.Bunch) -> str:
        colormap_lut(proposal["value"])
        return proposal["value"]

    @t.observe("cmap")
    def _cmap_changed(self, change: t.Bunch) -> None:
        self.lut = colormap_lut(change["new"])

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


__all__ = ["PairExplorer", "PairExplorerError", "colormap_lut"]
