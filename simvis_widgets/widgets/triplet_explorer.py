"""TripletExplorer: anchor A, positive P and negative N, linked. On the anchor the exact difference map

    D = S_A(A, P) - S_A(A, N),     sum_i D_i + (g(A, P) - g(A, N)) = s(A, P) - s(A, N)

(``g``: the pairs' global terms, 0 without a head bias); on P and N their maps from the two pairs, all on ONE
signed scale. Hovering anchor cell ``i`` shows row ``i`` of each pairwise matrix on P and on N (where that cell is
matched) and its part of the margin ``D_i``; painting a region with cell weights ``w`` shows the region maps
``sum_i w_i P_AP[i, :]`` and ``sum_i w_i P_AN[i, :]`` and the region's part of the margin ``sum_i w_i D_i``.

The pair (A, P) travels as a :class:`~.pair_base.PairWidget`'s pair (its traits); the pair (A, N) as the same
payload (:func:`~.encoding.matrix_payload`) in the ``negative`` trait, with N's image in ``image_n``. Every hover
and paint map is computed in the browser from these, sent once per triplet (``js/triplet_explorer.js``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import traitlets as t

from ..errors import PairExplorerError
from ..images import ImageLike, load_image
from ..session import ModelSession
from ..triplet import ExplainedTriplet
from .encoding import STATIC, matrix_payload, png_bytes
from .pair_base import PairWidget


class TripletExplorer(PairWidget):
    """``TripletExplorer(session, anchor, positive, negative)`` or ``TripletExplorer.from_triplet(triplet)``.

    * **overview**: ``D`` on the anchor, ``S_P(A, P)`` on P and ``S_N(A, N)`` on N, one colour scale;
    * **hover** (on the anchor): the cell's rows of the two pairwise matrices on P and N, and ``D[cell]``;
    * **paint** (on the anchor): the region maps on P and N, and :meth:`region_margin`.

    Side ``a`` is the anchor, side ``b`` the positive (``hover_a``, ``mask_a``, ``size_b`` ... as in
    :class:`~.pair_base.PairWidget`; ``hover_b`` / ``mask_b`` stay unused); ``triplet`` holds the
    :class:`~simvis_widgets.triplet.ExplainedTriplet` shown.
    """

    _esm = STATIC / "triplet_explorer.js"
    _css = STATIC / "triplet_explorer.css"
    _title = "simvis-widgets TripletExplorer"

    image_n = t.Bytes(b"").tag(sync=True)
    size_n = t.List(t.Int(), [1, 1]).tag(sync=True)
    negative: t.Dict[str, Any] = t.Dict({}).tag(sync=True)
    """The pair (A, N): :func:`~.encoding.matrix_payload` plus ``grid_a``, ``grid_b``, ``score``, ``global_term``."""

    def __init__(
        self,
        session: ModelSession | None = None,
        anchor: ImageLike | None = None,
        positive: ImageLike | None = None,
        negative: ImageLike | None = None,
        *,
        triplet: ExplainedTriplet | None = None,
        **traits: Any,
    ) -> None:
        super().__init__(**traits)
        self.session = session
        self.triplet: ExplainedTriplet | None = None
        if triplet is not None:
            self._show_triplet(triplet)
        elif session is not None:
            if anchor is None or positive is None or negative is None:
                raise PairExplorerError("TripletExplorer(session, anchor, positive, negative) needs all three images")
            self.set_triplet(anchor, positive, negative)
        else:
            raise PairExplorerError(
                "TripletExplorer needs a session and three images, or use TripletExplorer.from_triplet(triplet)"
            )

    @classmethod
    def from_triplet(cls, triplet: ExplainedTriplet, **traits: Any) -> TripletExplorer:
        """Show an existing :class:`ExplainedTriplet` (``session.explain_triplet`` attaches the images)."""
        if not isinstance(triplet, ExplainedTriplet):
            raise PairExplorerError(f"expected an ExplainedTriplet, got {type(triplet).__name__}")
        return cls(triplet=triplet, **traits)

    def set_triplet(self, anchor: ImageLike, positive: ImageLike, negative: ImageLike) -> None:
        """Explain a new triplet with the session and show it (mask and hovered cell are cleared)."""
        if self.session is None:
            raise PairExplorerError("this explorer has no session (it was made from a triplet)")
        raw = [load_image(x) for x in (anchor, positive, negative)]
        self._show_triplet(self.session.explain_triplet(*raw), (raw[0], raw[1]))

    def region_margin(self) -> float:
        """The painted region's part of the margin, ``sum_i w_i D_i`` (0 without a mask):
        :meth:`ExplainedTriplet.region_margin` of ``mask_a``."""
        if self.mask_a is None or self.triplet is None:
            return 0.0
        return self.triplet.region_margin(self.mask_a)

    def save_png(self, path: str | Path, dpi: int = 120) -> Path:
        """A static PNG of the triplet (:func:`simvis_widgets.render.triplet_figure`: D on the anchor, the pair
        maps on P and N, one scale) in the widget's colormap and opacity."""
        from ..render import save_figure, triplet_figure

        if self.triplet is None:
            raise PairExplorerError("no triplet is shown")
        return save_figure(triplet_figure(self.triplet, cmap=self.cmap, alpha=self.opacity), path, dpi=dpi)

    # ---------------------------------------------------------------------------------------------
    # Internals
    # ---------------------------------------------------------------------------------------------

    def _show_triplet(self, triplet: ExplainedTriplet, originals: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        """Send the triplet: (A, P) as the widget's pair, (A, N) as ``negative`` and ``image_n``, in one message
        (the front end reloads on ``_pair_version``, which :meth:`_show` changes last)."""
        neg = triplet.negative
        if neg.image_b is None or neg.image_b.ndim != 3 or neg.image_b.size == 0:
            raise PairExplorerError("the triplet's negative pair carries no image N (use session.explain_triplet)")
        payload = {k: (memoryview(v) if isinstance(v, bytes) else v) for k, v in matrix_payload(neg).items()}
        payload.update(
            grid_a=list(neg.grid_a),
            grid_b=list(neg.grid_b),
            score=float(neg.score),
            global_term=float(neg.global_term),
        )
        with self.hold_sync():
            self.image_n = png_bytes(neg.image_b)
            self.size_n = list(neg.image_b.shape[:2])
            self.negative = payload
            self._show(triplet.positive, originals)
            self.triplet = triplet


__all__ = ["TripletExplorer"]
