"""RetrievalExplorer: a preset of :class:`~.explorer.Explorer` for region retrieval -- select part of a query image
and see the gallery images most similar in that part.

It is the Explorer (same front end, same traits, same search) started the way region retrieval is used: in paint
mode, the strip ranked by the painted region (the whole image until something is painted), the best hit shown
next to the query. Clicking a thumbnail shows that hit on the right; :meth:`on_select` callbacks hear of it.
"""

from __future__ import annotations

from typing import Any

from ..gallery import Gallery, Hit
from ..images import ImageLike
from ..session import ModelSession
from .explorer import Explorer
from .pair_explorer import PairExplorer


class RetrievalExplorer(Explorer):
    """``RetrievalExplorer(session, gallery, query, k=8)``: :class:`~.explorer.Explorer` with the query on the
    left in paint mode (brush, or box: drag a rectangle; Hover mode and ``rank_by="cell"`` rank by one cell), the
    best hit on the right and the top-``k`` strip below, re-ranked live while you paint.

    Python API: that of the Explorer (:attr:`results`, a list of :class:`~simvis_widgets.gallery.Hit`;
    :meth:`select`, :meth:`on_select`, :meth:`set_query`, :meth:`search`, :meth:`weights`; traits ``k``,
    ``rank_by``, ``exclude_self``, ``selected``, ``mask_a``, ...). ``pair``: a :class:`PairExplorer` shown
    elsewhere that follows the selection (it gets the query and each selected hit), or None.
    """

    _title = "simvis-widgets RetrievalExplorer"

    def __init__(
        self,
        session: ModelSession,
        gallery: Gallery,
        query: ImageLike,
        k: int = 8,
        exclude_self: bool = True,
        pair: PairExplorer | None = None,
        cmap: str = "RdBu_r",
        **traits: Any,
    ) -> None:
        traits.setdefault("mode", "paint")
        traits.setdefault("rank_by", "region")
        super().__init__(session, query, gallery=gallery, k=k, exclude_self=exclude_self, cmap=cmap, **traits)
        self.pair = pair
        if pair is not None:
            self.on_select(self._show_in_pair)

    def _show_in_pair(self, hit: Hit) -> None:
        assert self.pair is not None and self.gallery is not None
        if self.pair.session is None:
            self.pair.session = self.session
        self.pair.set_pair(self._enc.loaded, self.gallery.image(hit.index))


__all__ = ["RetrievalExplorer"]
