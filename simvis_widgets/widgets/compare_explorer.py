"""CompareExplorer: one image pair explained by several sessions -- poolings, models, training snapshots --
one row each, all maps on ONE colour scale; hover or paint in any row and every row follows (in the
browser). A slider steps through the rows in order (epochs); a difference view subtracts a reference row."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import anywidget
import numpy as np
import traitlets as t

from ..errors import WidgetError
from ..images import ImageLike, load_image
from ..pair import ExplainedPair
from ..session import ModelSession
from .encoding import MASK_SERIALIZERS, STATIC, colormap_lut, matrix_payload, png_bytes

MODES = ("overview", "hover", "paint", "difference")


class CompareExplorer(anywidget.AnyWidget):
    """``CompareExplorer(sessions, img_a, img_b, labels=None)``: the pair explained by each session.

    Traits: ``mode`` (overview | hover | paint | difference), ``current`` (the slider's row), ``show_all``
    (every row at once; default when there are at most 4 sessions), ``reference`` (the row subtracted in the
    difference view), ``brush``, ``opacity``, ``mask_a`` / ``mask_b`` (the painted regions at the first row's
    image sizes, updated at the end of each stroke). ``explanations`` holds one Explanation per row.
    """

    _esm = STATIC / "compare_explorer.js"
    _css = STATIC / "compare_explorer.css"

    _version = t.Int(0).tag(sync=True)
    images = t.List(t.Bytes()).tag(sync=True)
    panels: t.List[dict[str, Any]] = t.List([]).tag(sync=True)
    lut = t.Bytes(b"").tag(sync=True)
    mode = t.Enum(MODES, "overview").tag(sync=True)
    current = t.Int(0).tag(sync=True)
    show_all = t.Bool(True).tag(sync=True)
    reference = t.Int(0).tag(sync=True)
    brush = t.Int(24).tag(sync=True)
    opacity = t.Float(0.6).tag(sync=True)
    mask_a = t.Any(None, allow_none=True).tag(sync=True, **MASK_SERIALIZERS)
    mask_b = t.Any(None, allow_none=True).tag(sync=True, **MASK_SERIALIZERS)

    def __init__(
        self,
        sessions: Sequence[ModelSession],
        img_a: ImageLike,
        img_b: ImageLike,
        labels: Sequence[str] | None = None,
        cmap: str = "RdBu_r",
        **traits: Any,
    ) -> None:
        sessions = list(sessions)
        if not sessions:
            raise WidgetError("CompareExplorer needs at least one session")
        if not all(isinstance(s, ModelSession) for s in sessions):
            raise WidgetError("sessions must be ModelSession objects")
        if labels is not None and len(labels) != len(sessions):
            raise WidgetError(f"{len(labels)} labels for {len(sessions)} sessions")
        traits.setdefault("show_all", len(sessions) <= 4)
        super().__init__(lut=colormap_lut(cmap), **traits)
        self.sessions = sessions
        self.labels = list(labels) if labels is not None else [s.name for s in sessions]
        self.set_pair(img_a, img_b)

    def set_pair(self, img_a: ImageLike, img_b: ImageLike) -> None:
        """Explain a new pair with every session and show it."""
        raw_a, raw_b = load_image(img_a), load_image(img_b)
        self.explanations: list[ExplainedPair] = [s.explain(raw_a, raw_b) for s in self.sessions]
        images: list[bytes] = []
        index: dict[bytes, int] = {}

        def image_id(image: np.ndarray) -> int:
            data = png_bytes(image)
            if data not in index:
                index[data] = len(images)
                images.append(data)
            return index[data]

        panels = []
        for label, ex in zip(self.labels, self.explanations):
            assert ex.image_a is not None and ex.image_b is not None  # session.explain attaches both
            panel = {k: (memoryview(v) if isinstance(v, bytes) else v) for k, v in matrix_payload(ex).items()}
            panel.update(
                label=label,
                score=float(ex.score),
                exact=ex.exact,
                grid_a=list(ex.grid_a),
                grid_b=list(ex.grid_b),
                size_a=list(ex.image_a.shape[:2]),
                size_b=list(ex.image_b.shape[:2]),
                image_a=image_id(ex.image_a),
                image_b=image_id(ex.image_b),
            )
            panels.append(panel)
        with self.hold_sync():
            self.images = images
            self.panels = panels
            self.current = min(self.current, len(panels) - 1)
            self.reference = min(self.reference, len(panels) - 1)
            self.mask_a = self.mask_b = None
            self._version += 1

    @property
    def scores(self) -> list[float]:
        return [ex.score for ex in self.explanations]

    @t.validate("current", "reference")
    def _valid_row(self, proposal: t.Bunch) -> int:
        value = int(proposal["value"])
        n = len(self.panels) if self.panels else 1
        if not 0 <= value < n:
            raise t.TraitError(f"{proposal['trait'].name} must be a row index in [0, {n - 1}], got {value}")
        return value


__all__ = ["CompareExplorer"]
