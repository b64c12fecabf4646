"""PairExplorer: two linked images; hovering or painting on one live-updates the contribution map on the other.

The kernel computes one :class:`~simvis_widgets.decompose.Explanation` per pair and sends its pairwise matrix
``P`` to the browser once (binary float32; float16 above ``FLOAT16_ABOVE`` entries; the factors ``Q_A``,
``Q_B`` above ``PAIRWISE_MAX`` entries). Hover and paint maps are computed in the browser
(``js/pair_explorer.js``), so no kernel round trip happens per mouse move. Painted masks come back to the
``mask_a`` / ``mask_b`` traits at the end of each stroke; the hovered cell to ``hover_a`` / ``hover_b``.
"""

from __future__ import annotations

from typing import Any

from ..decompose import Explanation
from ..errors import PairExplorerError
from ..images import ImageLike, load_image
from ..pair import ExplainedPair
from ..session import ModelSession
from .encoding import STATIC, colormap_lut
from .pair_base import MODES, PairWidget


class PairExplorer(PairWidget):
    """Side-by-side images with their contribution maps, live in the browser.

    * **overview**: each image's map (``S_A``, ``S_B``);
    * **hover**: the hovered cell's row (or column) of ``P`` on the other image, its share and best match;
    * **paint**: a brush region on either image; the other shows the region map and the region's score.

    ``PairExplorer(session, img_a, img_b)`` or ``PairExplorer.from_explanation(ex)``. Traits, exports and
    :meth:`region_score` / :meth:`save_png` / :meth:`to_html`: see :class:`~.pair_base.PairWidget`.
    """

    _esm = STATIC / "pair_explorer.js"
    _css = STATIC / "pair_explorer.css"
    _title = "simvis-widgets PairExplorer"

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
        self.session = session
        self.on_msg(self._on_front_end_message)
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

    # ---------------------------------------------------------------------------------------------
    # Internals
    # ---------------------------------------------------------------------------------------------

    def _on_front_end_message(self, _widget: Any, content: dict[str, Any], _buffers: list[bytes]) -> None:
        if isinstance(content, dict) and content.get("event") == "swap":
            self.swap()


__all__ = ["MODES", "PairExplorer", "PairExplorerError", "colormap_lut"]
