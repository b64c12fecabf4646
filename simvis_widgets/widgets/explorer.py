"""Explorer: the query and a selected image side by side (everything :class:`PairExplorer` does), and below them the
top-k gallery images for the current selection on the query, every map live in the browser.

What travels to the browser, and when:

* the shown pair (query vs the selected image) as :class:`~.pair_base.PairWidget` sends it, once per selection;
* each gallery hit's contributions against the query (``encoding.matrix_payload``: ``P`` or its factors, both
  maps) and its JPEG thumbnail, once, when the hit first enters the strip (the browser caches them per query;
  a view that lacks some asks for them again with a ``resend`` message);
* per search only the ranks, indices and exact scores (``strip``).

Hovering a query cell or painting on the query therefore redraws the selected image's map and every thumbnail's in
the same frame, with no kernel round trip. The ranking itself is the kernel's: the browser sends the painted
region's cell weights while the stroke goes on (``query_region``), and the kernel searches the gallery exactly as
:meth:`~simvis_widgets.gallery.Gallery.search` does.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
import traitlets as t

from ..decompose import cell_weights
from ..errors import GalleryError, ImageInputError, WidgetError
from ..gallery import Gallery, Hit
from ..images import ImageLike, load_image
from ..pair import ExplainedPair
from ..session import ModelSession
from .encoding import STATIC, jpeg_thumbnail, matrix_payload, region_from_browser
from .pair_base import PairWidget
from .strip import check_k, check_selected

RANK_BY = ("region", "cell", "whole")
PAIRS_KEPT = 64
"""Explained (query, hit) pairs the kernel keeps for selection; older ones are recomputed on demand."""


class Explorer(PairWidget):
    """``Explorer(session, query, gallery=None, other=None, k=8)``: the query (A, left) and the selected image
    (B, right) with hover / paint in both directions, readouts and one colour scale; with a ``gallery``, a strip of
    its top-``k`` images below, ranked by the selection on the query and re-ranked live while painting.

    Without a gallery it is the pair view of ``query`` and ``other``. With a gallery the right-hand image starts as
    ``other`` if given, else the best hit; clicking a thumbnail (or the left / right arrow keys) selects that hit.

    Traits (beyond :class:`~.pair_base.PairWidget`'s ``mode``, ``hover_a`` / ``hover_b``, ``mask_a`` /
    ``mask_b``, display options): ``k``; ``selected`` (the gallery index shown on the right, -1 for ``other``);
    ``rank_by``: ``"region"`` (the painted region of the query, live during a stroke; the whole image when
    nothing is painted), ``"cell"`` (the hovered query cell) or ``"whole"``; ``exclude_self`` (leave gallery
    copies of the query out). :attr:`results` are the hits shown, best first, equal to what
    ``gallery.search(query, mask=..., k=k, exclude_self=...)`` returns for the same selection.
    """

    _esm = STATIC / "explorer.js"
    _css = STATIC / "explorer.css"
    _title = "simvis-widgets Explorer"

    k = t.Int(8).tag(sync=True)
    selected = t.Int(-1).tag(sync=True)
    rank_by = t.Enum(RANK_BY, "region").tag(sync=True)
    exclude_self = t.Bool(True).tag(sync=True)
    query_region = t.Dict({"kind": "whole"}).tag(sync=True)
    """The browser's live selection while painting: ``{"kind": "cells", "weights": [...], "id": n}`` or whole."""
    query_version = t.Int(0).tag(sync=True)
    strip: t.List[dict[str, Any]] = t.List([]).tag(sync=True)
    strip_version = t.Int(0).tag(sync=True)
    strip_for = t.Int(0).tag(sync=True)
    """The ``id`` of the browser region the strip answers (0: a change made in Python)."""
    gallery_size = t.Int(0).tag(sync=True)

    def __init__(
        self,
        session: ModelSession,
        query: ImageLike,
        gallery: Gallery | None = None,
        other: ImageLike | None = None,
        k: int = 8,
        **traits: Any,
    ) -> None:
        if not isinstance(session, ModelSession):
            raise WidgetError(f"Explorer needs a ModelSession first, got {type(session).__name__}")
        if gallery is None and other is None:
            raise WidgetError(
                "Explorer(session, query, gallery=..., other=...) needs a gallery, another image, or both"
            )
        if gallery is not None:
            if not isinstance(gallery, Gallery):
                raise WidgetError(f"gallery must be a simvis_widgets.Gallery, got {type(gallery).__name__}")
            if len(gallery) == 0:
                raise WidgetError("the gallery is empty")
            if gallery.session is not session:
                raise WidgetError(
                    "the gallery was built (or opened) with another session object: pass that same session"
                )
        check_k(k)
        super().__init__(k=k, **traits)
        self.session, self.gallery = session, gallery
        self.gallery_size = len(gallery) if gallery is not None else 0
        self._other = load_image(other) if other is not None else None
        self._results: list[Hit] = []
        self._callbacks: list[Callable[[Hit], Any]] = []
        self._pairs: OrderedDict[int, ExplainedPair] = OrderedDict()
        self._sent: set[int] = set()
        self._quiet = False
        self.on_msg(self._on_message)
        self.set_query(query)

    # ---------------------------------------------------------------------------------------------
    # Python API
    # ---------------------------------------------------------------------------------------------

    @property
    def results(self) -> list[Hit]:
        """The hits in the strip, best first (empty without a gallery)."""
        return list(self._results)

    def set_query(self, query: ImageLike) -> None:
        """Show a new query (masks, hovered cells and the region are cleared), search with it whole and show the
        best hit (or ``other``) on the right."""
        self._enc = self.session.encode(query)
        self._pairs.clear()
        self._sent.clear()
        with self._no_search(), self.hold_sync():
            self.query_region = {"kind": "whole"}
            self.query_version += 1
            self.search()
            first = -1 if self._other is not None or not self._results else self._results[0].index
            self._show_selected(first, keep_a=False)
            if self.selected != first:
                self.selected = first

    def select(self, index: int) -> ExplainedPair:
        """Show gallery image ``index`` on the right (-1: ``other``), as a click on its thumbnail does; the query's
        mask and hovered cell stay. Returns the pair now shown; the :meth:`on_select` callbacks run."""
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise WidgetError(f"select() takes a gallery index (an integer), got {index!r}")
        if int(index) == self.selected:
            self._selection_made(int(index))
        else:
            try:
                self.selected = int(index)
            except t.TraitError as err:
                raise WidgetError(str(err)) from None
        return self._require()

    def on_select(self, callback: Callable[[Hit], Any]) -> None:
        """Call ``callback(hit)`` whenever a hit of the strip is selected: a click on its thumbnail, an arrow key,
        :meth:`select` or setting ``selected``."""
        self._callbacks.append(callback)

    def search(self) -> list[Hit]:
        """Search the gallery with the current selection (:meth:`weights`) and show the hits in the strip."""
        if self.gallery is None:
            return []
        weights = self.weights()
        exclude = self._enc.hash if self.exclude_self else None
        k = min(int(self.k), len(self.gallery))
        self._results = self.gallery.search_features(self._enc.features, weights, k, exclude=exclude)
        self._push_strip()
        return self.results

    def weights(self) -> torch.Tensor | None:
        """The cell weights the strip is ranked by (``rank_by``): the painted region of the query, its hovered
        cell, or None for the whole image (also when nothing is painted or hovered)."""
        gh, gw = self._enc.grid
        if self.rank_by == "cell":
            if not self.hover_a:
                return None
            w = torch.zeros(gh, gw)
            w[self.hover_a[0], self.hover_a[1]] = 1.0
            return w
        if self.rank_by == "whole":
            return None
        return region_from_browser(self.query_region, (gh, gw))

    def hit_pair(self, index: int) -> ExplainedPair:
        """The query explained against gallery image ``index`` from its stored features: what the strip's maps and
        the right-hand view show for that hit."""
        gallery = self._require_gallery()
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not 0 <= index < len(gallery):
            raise WidgetError(f"gallery index must be an integer in [0, {len(gallery) - 1}], got {index!r}")
        return self._explain_hits([int(index)])[int(index)]

    def to_html(self, path: str | Path, title: str | None = None) -> Path:
        """One self-contained HTML file of the whole view (pair and strip with its current hits); hover and paint
        redraw every map without a kernel. Ranking and selecting another hit need the kernel: the strip and the
        right-hand image stay as exported."""
        self._push_strip(full=True)
        return super().to_html(path, title)

    # ---------------------------------------------------------------------------------------------
    # Internals
    # ---------------------------------------------------------------------------------------------

    def _require_gallery(self) -> Gallery:
        if self.gallery is None:
            raise WidgetError("this Explorer has no gallery")
        return self.gallery

    @contextmanager
    def _no_search(self) -> Iterator[None]:
        quiet, self._quiet = self._quiet, True
        try:
            yield
        finally:
            self._quiet = quiet

    def _explain_hits(self, indices: list[int]) -> dict[int, ExplainedPair]:
        """The (query, hit) pairs of ``indices``, from the cache or from one read of their stored features."""
        gallery = self._require_gallery()
        missing = [i for i in indices if i not in self._pairs]
        for i, feats in zip(missing, gallery.hit_features(missing)):
            image = None
            try:
                image = self.session.resize(gallery.image(i))
            except (GalleryError, ImageInputError, FileNotFoundError):
                pass  # an image gone since the build: the maps still show, on grey
            self._pairs[i] = self.session.explain_encoded(self._enc, features_b=feats, image_b=image)
            if len(self._pairs) > PAIRS_KEPT:
                self._pairs.popitem(last=False)
        for i in indices:
            if i in self._pairs:
                self._pairs.move_to_end(i)
        return {i: self._pairs[i] for i in indices}

    def _hit_data(self, ex: ExplainedPair) -> dict[str, Any]:
        """What the browser keeps of one hit: its contributions against the query and its thumbnail."""
        thumb, size = jpeg_thumbnail(ex.image_b) if ex.image_b is not None else (b"", [ex.grid_b[0], ex.grid_b[1]])
        data = {k: memoryview(v) if isinstance(v, bytes) else v for k, v in matrix_payload(ex).items()}
        data.update(grid_a=list(ex.grid_a), grid_b=list(ex.grid_b), thumb=memoryview(thumb), size=size)
        return data

    def _push_strip(self, full: bool = False) -> None:
        """Send the ranks and scores; the contributions of hits the browser has not had (all with ``full``)."""
        if full:
            self._sent.clear()
        new = [h.index for h in self._results if h.index not in self._sent]
        pairs = self._explain_hits(new) if new else {}
        entries = []
        for rank, hit in enumerate(self._results):
            label = hit.label if isinstance(hit.label, (str, int, float, type(None))) else str(hit.label)
            entry: dict[str, Any] = {
                "rank": rank,
                "index": hit.index,
                "score": hit.score,
                "source": str(hit.source),
                "label": label,
            }
            if hit.index in pairs:
                entry["data"] = self._hit_data(pairs[hit.index])
            entries.append(entry)
        self._sent.update(new)
        with self.hold_sync():
            self.strip = entries
            self.strip_for = int(self.query_region.get("id", 0) or 0)
            self.strip_version += 1

    def _show_selected(self, index: int, keep_a: bool) -> None:
        if index < 0:
            if self._other is None:
                raise WidgetError("there is no `other` image to show: select a gallery index")
            ex = self.session.explain_encoded(self._enc, self.session.encode(self._other))
            self._show(ex, (self._enc.loaded, self._other), keep_a=keep_a)
            return
        ex = self.hit_pair(index)
        if ex.image_b is None:
            raise WidgetError(f"gallery image {index} cannot be read any more: it cannot be shown")
        self._show(ex, (self._enc.loaded, ex.image_b), keep_a=keep_a)

    def _on_message(self, _widget: Any, content: dict[str, Any], _buffers: list[bytes]) -> None:
        if isinstance(content, dict) and content.get("event") == "resend":
            self._push_strip(full=True)

    @t.validate("k")
    def _valid_k(self, proposal: t.Bunch) -> int:
        return check_k(proposal["value"], t.TraitError)

    @t.validate("selected")
    def _valid_selected(self, proposal: t.Bunch) -> int:
        alternative = "the `other` image" if getattr(self, "_other", None) is not None else None
        return check_selected(proposal["value"], self.gallery_size, alternative)

    @t.observe("selected")
    def _selected_changed(self, change: t.Bunch) -> None:
        if not getattr(self, "_quiet", True):  # not while __init__ sets traits
            self._show_selected(change["new"], keep_a=True)
            self._selection_made(change["new"])

    def _selection_made(self, index: int) -> None:
        hit = next((h for h in self._results if h.index == index), None)
        if hit is not None:
            for callback in self._callbacks:
                callback(hit)

    @t.observe("k", "exclude_self", "rank_by", "query_region")
    def _selection_changed(self, _change: t.Bunch) -> None:
        if not getattr(self, "_quiet", True):
            self.search()

    @t.observe("hover_a")
    def _hover_changed(self, _change: t.Bunch) -> None:
        if not getattr(self, "_quiet", True) and self.rank_by == "cell":
            self.search()

    @t.observe("mask_a")
    def _mask_changed(self, change: t.Bunch) -> None:
        """A mask set in Python (or the browser's at the end of a stroke) becomes the region the strip ranks by."""
        if getattr(self, "_quiet", True):
            return
        mask = change["new"]
        if mask is None:
            region: dict[str, Any] = {"kind": "whole"}
        else:
            weights = cell_weights(np.asarray(mask, np.float32), self._enc.grid, (self.size_a[0], self.size_a[1]))
            current = self.query_region.get("weights")
            if current is not None and np.allclose(np.asarray(current, np.float32), weights.numpy().ravel(), atol=1e-5):
                return  # the browser already sent this region
            region = {"kind": "cells", "weights": weights.numpy().ravel().tolist()}
        self.query_region = region


__all__ = ["RANK_BY", "Explorer"]
