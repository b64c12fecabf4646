"""RetrievalExplorer: select part of a query image and see the gallery images most similar in that part.

The browser computes the selected region's cell weights (brush, box or hovered cell; exact covered area) and
sends them, throttled; the kernel scores every gallery image with one matrix multiply
(:meth:`~simvis_widgets.gallery.Gallery.search_features`) and sends back the top-k with their region maps.
Clicking a result explains the pair in a :class:`PairExplorer` below the strip (or in one you pass).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anywidget
import ipywidgets
import numpy as np
import torch
import traitlets as t

from ..errors import WidgetError
from ..gallery import Gallery, GalleryError, Hit
from ..images import ImageLike
from ..render import shared_limit
from ..session import ModelSession
from .encoding import MASK_SERIALIZERS, STATIC, colormap_lut, jpeg_thumbnail, png_bytes, region_from_browser
from .pair_explorer import PairExplorer


class RetrievalView(anywidget.AnyWidget):
    """The browser part of :class:`RetrievalExplorer` (query canvas + result strip)."""

    _esm = STATIC / "retrieval_explorer.js"
    _css = STATIC / "retrieval_explorer.css"

    query_version = t.Int(0).tag(sync=True)
    query_image = t.Bytes(b"").tag(sync=True)
    query_size = t.List(t.Int(), [1, 1]).tag(sync=True)
    query_grid = t.List(t.Int(), [1, 1]).tag(sync=True)
    query_region = t.Dict({"kind": "whole"}).tag(sync=True)
    query_mask = t.Any(None, allow_none=True).tag(sync=True, **MASK_SERIALIZERS)
    tool = t.Enum(("paint", "box", "hover"), "paint").tag(sync=True)
    region_mode = t.Enum(("region", "whole"), "whole").tag(sync=True)
    k = t.Int(8).tag(sync=True)
    exclude_self = t.Bool(True).tag(sync=True)
    brush = t.Int(20).tag(sync=True)
    opacity = t.Float(0.6).tag(sync=True)
    lut = t.Bytes(b"").tag(sync=True)
    gallery_size = t.Int(0).tag(sync=True)
    results: t.List[dict[str, Any]] = t.List([]).tag(sync=True)
    results_version = t.Int(0).tag(sync=True)
    results_for = t.Int(0).tag(sync=True)
    """The request id of the region these results answer (the browser numbers its sends)."""
    strip_vmax = t.Float(1.0).tag(sync=True)


class RetrievalExplorer(ipywidgets.VBox):
    """``RetrievalExplorer(session, gallery, query)``: the query with Paint / Box / Hover tools above a strip
    of the top-``k`` gallery results (thumbnail, region heatmap, rank, score and a bar), live while you paint.

    Python API: :attr:`results` (a list of :class:`~simvis_widgets.gallery.Hit`), :meth:`on_select`,
    :meth:`select`, :meth:`set_query`, :meth:`search`; ``view`` is the browser widget (traits ``k``,
    ``region_mode``, ``exclude_self``, ``tool``, ``query_mask``), ``pair`` the PairExplorer of the last click.
    """

    def __init__(
        self,
        session: ModelSession,
        gallery: Gallery,
        query: ImageLike,
        k: int = 8,
        exclude_self: bool = True,
        pair: PairExplorer | None = None,
        cmap: str = "RdBu_r",
    ) -> None:
        if not isinstance(gallery, Gallery):
            raise GalleryError(f"expected a Gallery, got {type(gallery).__name__}")
        if len(gallery) == 0:
            raise GalleryError("the gallery is empty")
        if gallery.session is not session:
            raise GalleryError("the gallery was built (or loaded) with another session object: pass the same session")
        self.session, self.gallery = session, gallery
        self.view = RetrievalView(k=k, exclude_self=exclude_self, lut=colormap_lut(cmap), gallery_size=len(gallery))
        self.pair = pair
        self._own_pair = pair is None
        self._pair_slot = ipywidgets.VBox()
        self._callbacks: list[Callable[[Hit], Any]] = []
        self._thumbs: dict[int, tuple[bytes, list[int]]] = {}
        self._results: list[Hit] = []
        super().__init__([self.view, self._pair_slot])
        self.view.on_msg(self._on_message)
        self.view.observe(lambda _: self.search(), names=["query_region", "k", "exclude_self", "region_mode"])
        self.set_query(query)

    # ---------------------------------------------------------------------------------------------

    @property
    def results(self) -> list[Hit]:
        """The hits on show, best first."""
        return list(self._results)

    def on_select(self, callback: Callable[[Hit], Any]) -> None:
        """Call ``callback(hit)`` when a result is clicked (or :meth:`select` is called)."""
        self._callbacks.append(callback)

    def set_query(self, image: ImageLike) -> None:
        """Show a new query image (the region is cleared) and search with it whole."""
        enc = self.session.encode(image)
        prepared, feats = enc.image, enc.features
        self._raw, self._prepared, self._feats = enc.loaded, prepared, feats
        self._query_hash = enc.hash
        with self.view.hold_sync():
            self.view.query_image = png_bytes(prepared)
            self.view.query_size = list(prepared.shape[:2])
            self.view.query_grid = [int(feats.shape[1]), int(feats.shape[2])]
            self.view.query_mask = None
            self.view.region_mode = "whole"
            self.view.query_region = {"kind": "whole"}
            self.view.query_version += 1
        self.search()

    def weights(self) -> torch.Tensor | None:
        """The current region's cell weights (None: the whole image)."""
        if self.view.region_mode == "whole":
            return None
        return region_from_browser(self.view.query_region, self.view.query_grid)  # all erased: the whole image

    def search(self) -> list[Hit]:
        """Run the search for the current query and region, and show the results."""
        k = max(1, int(self.view.k))
        exclude = self._query_hash if self.view.exclude_self else None
        hits = self.gallery.search_features(self._feats, self.weights(), min(k, len(self.gallery)), exclude=exclude)
        self._results = hits
        vmax = shared_limit(*[h.map for h in hits]) if hits else 1.0
        payload = []
        for rank, hit in enumerate(hits):
            thumb, size = self._thumb(hit.index)
            payload.append(
                {
                    "rank": rank,
                    "index": hit.index,
                    "score": hit.score,
                    "source": str(hit.source),
                    "label": hit.label if isinstance(hit.label, (str, int, float, type(None))) else str(hit.label),
                    "grid": list(hit.map.shape),
                    "map": memoryview(hit.map.detach().cpu().numpy().astype("<f4").tobytes()),
                    "thumb": memoryview(thumb),
                    "size": size,
                }
            )
        with self.view.hold_sync():
            self.view.results = payload
            self.view.strip_vmax = vmax
            self.view.results_for = int(self.view.query_region.get("id", 0) or 0)
            self.view.results_version += 1
        return hits

    def select(self, index: int) -> PairExplorer:
        """Explain the query against gallery image ``index`` in the PairExplorer (created below on first use)."""
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not 0 <= index < len(self.gallery):
            raise WidgetError(f"select() takes a gallery index in [0, {len(self.gallery) - 1}], got {index!r}")
        index = int(index)
        hit = next((h for h in self._results if h.index == index), None)
        image = self.gallery.image(index)
        if self.pair is None:
            self.pair = PairExplorer(self.session, self._raw, image)
        else:
            if self.pair.session is None:
                self.pair.session = self.session
            self.pair.set_pair(self._raw, image)
        if self._own_pair and self._pair_slot.children != (self.pair,):
            self._pair_slot.children = (self.pair,)
        if hit is not None:
            for callback in self._callbacks:
                callback(hit)
        return self.pair

    # ---------------------------------------------------------------------------------------------

    def _thumb(self, index: int) -> tuple[bytes, list[int]]:
        if index not in self._thumbs:
            try:
                self._thumbs[index] = jpeg_thumbnail(self.gallery.image(index))
            except GalleryError:
                self._thumbs[index] = (b"", list(self.gallery.grid(index)))
        return self._thumbs[index]

    def _on_message(self, _widget: Any, content: dict[str, Any], _buffers: list[bytes]) -> None:
        if isinstance(content, dict) and content.get("event") == "select":
            self.select(int(content["index"]))


__all__ = ["RetrievalExplorer", "RetrievalView"]
