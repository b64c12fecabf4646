"""TextExplorer: two passages side by side, each token shaded by its exact contribution to their similarity.

For a mean-pooled, normalised sentence embedding the cosine of passages A and B splits exactly into token pairs,
``score = sum_ij P[i, j]`` (:class:`~simvis_widgets.text.ExplainedText`). What travels to the browser, and when:

* once per pair: the passages, their tokens (display strings, character spans, special flags) and the pair's
  contributions as :func:`~.encoding.matrix_payload` sends them for images (``P`` as float32 bytes, the grids
  being ``(1, N)``), the colour table of ``cmap``;
* per search (with a gallery): the ranks, indices, exact scores and texts of the top-``k`` passages, each with
  its hit map (``TextHit.map``: where the query or its span is matched, per token of the passage) that shades it.

Every hover and span map is computed in the browser from ``P`` (``js/text_explorer.js``): hovering token ``i`` of A
shades B by row ``i`` of ``P``, token ``j`` of B shades A by column ``j``; a span ``[s, e)`` of A shades B by
``sum_{i in [s, e)} P[i, :]`` and its share of the score is ``sum_{i in [s, e)} S_A[i]`` (:meth:`span_score`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anywidget
import numpy as np
import traitlets as t

from ..errors import WidgetError
from ..text import ExplainedText, TextSession
from .encoding import STATIC, ContributionTraits
from .strip import check_k, check_selected

SIDES = ("a", "b")


class TextExplorer(anywidget.AnyWidget, ContributionTraits):
    """``TextExplorer(session, text_a, text_b, *, words=False, gallery=None, k=8)`` or
    ``TextExplorer.from_explanation(explained)``: passages A (left) and B (right), every token shaded by its share
    of the score on one signed colour scale (red adds, blue takes away, 0 white); special tokens are shown (they
    carry part of the score).

    * hover a token: the other passage shows that token's row (A) or column (B) of ``P``;
    * drag over tokens (or click one, then shift-click another): the span's map on the other passage and its
      share of the score (:meth:`span_score`), kept in ``span_a`` / ``span_b``;
    * with ``gallery`` (a :class:`~simvis_widgets.gallery.text.TextGallery` built with the same session), a strip
      of its top-``k`` passages for A, or for the span of A, re-ranked whenever the span changes; clicking one
      (or :meth:`select`) makes it B. Without ``text_b`` the best hit is B.

    Traits: ``span_a`` / ``span_b`` (``[start, stop)`` token indices or None), ``hover_a`` / ``hover_b`` (the
    hovered token or -1, from the browser), ``words`` (sub-word pieces grouped into words; exact), ``cmap``,
    ``k``, ``selected`` (the gallery index shown as B, -1 for ``text_b``). Exports: :meth:`to_html` (hover and
    spans work without a kernel), :meth:`save_png` (matplotlib, :func:`simvis_widgets.render_text.text_figure`).
    """

    _esm = STATIC / "text_explorer.js"
    _css = STATIC / "text_explorer.css"
    _title = "simvis-widgets TextExplorer"

    # --- the pair (kernel -> browser once per pair; _text_version changes last) ---
    _text_version = t.Int(0).tag(sync=True)
    _static = t.Bool(False).tag(sync=True)
    text_a = t.Unicode("").tag(sync=True)
    text_b = t.Unicode("").tag(sync=True)
    tokens_a = t.List(t.Unicode(), []).tag(sync=True)
    tokens_b = t.List(t.Unicode(), []).tag(sync=True)
    offsets_a = t.List(t.List(t.Int()), []).tag(sync=True)
    offsets_b = t.List(t.List(t.Int()), []).tag(sync=True)
    special_a = t.List(t.Bool(), []).tag(sync=True)
    special_b = t.List(t.Bool(), []).tag(sync=True)
    words_locked = t.Bool(False).tag(sync=True)
    """True when the token-level explanation is unknown (made from a word-level one): ``words`` cannot change."""

    # --- interaction state (both ways) ---
    words = t.Bool(False).tag(sync=True)
    hover_a = t.Int(-1).tag(sync=True)
    hover_b = t.Int(-1).tag(sync=True)
    span_a = t.Any(None, allow_none=True).tag(sync=True)
    """``[start, stop)`` token (or word) indices of passage A, or None; validated by ``_valid_span``."""
    span_b = t.Any(None, allow_none=True).tag(sync=True)

    # --- the gallery strip ---
    k = t.Int(8).tag(sync=True)
    selected = t.Int(-1).tag(sync=True)
    strip: t.List[dict[str, Any]] = t.List([]).tag(sync=True)
    strip_version = t.Int(0).tag(sync=True)
    gallery_size = t.Int(0).tag(sync=True)

    def __init__(
        self,
        session: TextSession | None = None,
        text_a: str | None = None,
        text_b: str | None = None,
        *,
        words: bool = False,
        gallery: Any = None,
        k: int = 8,
        explanation: ExplainedText | None = None,
        **traits: Any,
    ) -> None:
        check_k(k)
        self._busy = True  # no observer reacts while the constructor sets traits
        super().__init__(k=k, words=bool(words), **traits)
        self.session, self.gallery = session, gallery
        self.explanation: ExplainedText | None = None
        self._token_level: ExplainedText | None = None
        self._text_b_given = text_b
        self._results: list[Any] = []
        if explanation is not None:
            self._busy = False
            self._show(explanation)
            return
        if not isinstance(session, TextSession):
            raise WidgetError(
                f"TextExplorer needs a TextSession first (or use TextExplorer.from_explanation), "
                f"got {type(session).__name__}"
            )
        if gallery is not None:
            _check_gallery(gallery, session)
            self.gallery_size = len(gallery)
        if not isinstance(text_a, str):
            raise WidgetError(f"text_a must be a str, got {type(text_a).__name__}")
        if text_b is None and gallery is None:
            raise WidgetError("TextExplorer(session, text_a, text_b) needs text_b, a gallery, or both")
        if text_b is not None and not isinstance(text_b, str):
            raise WidgetError(f"text_b must be a str, got {type(text_b).__name__}")
        self._busy = False
        self.set_texts(text_a, text_b)

    @classmethod
    def from_explanation(cls, explained: ExplainedText, **traits: Any) -> TextExplorer:
        """Show an existing :class:`~simvis_widgets.text.ExplainedText` (no session: the passages and the spans
        work; ``words`` can change only if ``explained`` is token-level)."""
        if not isinstance(explained, ExplainedText):
            raise WidgetError(f"expected an ExplainedText, got {type(explained).__name__}")
        return cls(explanation=explained, words=explained.words, **traits)

    # ---------------------------------------------------------------------------------------------
    # Python API
    # ---------------------------------------------------------------------------------------------

    @property
    def results(self) -> list[Any]:
        """The gallery hits in the strip, best first (empty without a gallery)."""
        return list(self._results)

    def set_texts(self, text_a: str, text_b: str | None = None) -> None:
        """Explain a new pair with the session and show it (spans and hovers cleared). With a gallery, search it
        for ``text_a``; without ``text_b`` the best hit becomes B."""
        session = self._require_session()
        self._text_b_given = text_b
        results = self._search_for(text_a, None) if self.gallery is not None else []
        if text_b is None:
            if not results:
                raise WidgetError("no text_b and the gallery search found nothing to show as B")
            index, text_b = results[0].index, self._gallery_text(results[0].index)
        else:
            index = -1
        token_level = session.explain(text_a, text_b)
        self._busy = True
        try:
            with self.hold_sync():
                self._results = results
                self.selected = index
                self._show(token_level)
                self._push_strip()
        finally:
            self._busy = False

    def select(self, index: int) -> ExplainedText:
        """Make gallery passage ``index`` passage B (as a click on it in the strip does); returns the pair shown."""
        try:
            self.selected = index
        except t.TraitError as err:
            raise WidgetError(str(err)) from None
        return self._require()

    def search(self) -> list[Any]:
        """Search the gallery for passage A, or for ``span_a`` of it, and show the hits in the strip."""
        if self.gallery is None:
            return []
        self._results = self._search_for(self.text_a, self._token_span_a())
        self._push_strip()
        return self.results

    def span_score(self, side: str) -> float | None:
        """The span's share of the score, ``sum`` of ``side``'s token shares over ``span_<side>`` (exactly
        ``explanation.span_score(side, start, stop)``); None without a span on that side."""
        side = _side(side)
        span = self.span_a if side == "a" else self.span_b
        if span is None:
            return None
        return self._require().span_score(side, span[0], span[1])

    def span_map(self, side: str) -> np.ndarray | None:
        """Where the span of ``side`` is matched: its rows (A) or columns (B) of ``P`` summed, over the other
        passage's tokens; None without a span on that side."""
        side = _side(side)
        span = self.span_a if side == "a" else self.span_b
        if span is None:
            return None
        return self._require().span_map(side, span[0], span[1]).detach().cpu().numpy().ravel()

    def save_png(self, path: str | Path, dpi: int = 120) -> Path:
        """A PNG of the current view drawn by matplotlib (:func:`~simvis_widgets.render_text.text_figure`): the
        span's map when a span is selected (A first), else both passages' token shares."""
        from ..render import save_figure
        from ..render_text import text_figure

        ex = self._require()
        span = None
        for side in SIDES:
            value = self.span_a if side == "a" else self.span_b
            if value is not None:
                span = (side, value[0], value[1])
                break
        return save_figure(text_figure(ex, span=span, cmap=self.cmap), path, dpi=dpi)

    def to_html(self, path: str | Path, title: str | None = None) -> Path:
        """One self-contained HTML file: hovering and selecting spans keep working without a kernel or a network
        (the strip stays as exported: re-ranking and selecting need the kernel)."""
        from .static_html import write_static_html

        return write_static_html(self, Path(path), title or self._title)

    # ---------------------------------------------------------------------------------------------
    # Internals
    # ---------------------------------------------------------------------------------------------

    def _require(self) -> ExplainedText:
        if self.explanation is None:
            raise WidgetError("no pair is shown")
        return self.explanation

    def _require_session(self) -> TextSession:
        if self.session is None:
            raise WidgetError("this TextExplorer has no session (it was made from an explanation)")
        return self.session

    def _show(self, ex: ExplainedText) -> None:
        """Send ``ex`` (token-level, or word-level when ``words``) to the browser; spans and hovers cleared."""
        if not isinstance(ex, ExplainedText):
            raise WidgetError(f"expected an ExplainedText, got {type(ex).__name__}")
        self._token_level = None if ex.words else ex
        shown = ex.word_level() if self.words and not ex.words else ex
        busy, self._busy = self._busy, True
        try:
            with self.hold_sync():
                self.words_locked = self._token_level is None
                self.words = shown.words
                self._send_pair(shown)
        finally:
            self._busy = busy

    def _send_pair(self, ex: ExplainedText) -> None:
        self.explanation = ex
        self.text_a, self.text_b = ex.text_a, ex.text_b
        self.tokens_a, self.tokens_b = list(ex.tokens_a), list(ex.tokens_b)
        self.offsets_a = [[int(s), int(e)] for s, e in ex.offsets_a]
        self.offsets_b = [[int(s), int(e)] for s, e in ex.offsets_b]
        self.special_a, self.special_b = [bool(v) for v in ex.special_a], [bool(v) for v in ex.special_b]
        pooling = "mean pooling" if ex.pooling == "avg" else f"{ex.pooling} pooling"
        self.send_contributions(ex, pooling, ex.model_name or "text model")
        self.span_a = self.span_b = None
        self.hover_a = self.hover_b = -1
        self._text_version += 1

    def _gallery_text(self, index: int) -> str:
        return str(self.gallery.passage(index))

    def _search_for(self, text: str, span: tuple[int, int] | None) -> list[Any]:
        gallery = self.gallery
        if gallery is None:
            return []
        k = min(int(self.k), len(gallery))
        return list(gallery.search(text, span=span, k=k))

    def _token_span_a(self) -> tuple[int, int] | None:
        """``span_a`` in tokens of the session's tokenizer (a word span covers all its pieces)."""
        if self.span_a is None:
            return None
        ex, start, stop = self._require(), self.span_a[0], self.span_a[1]
        if not ex.words:
            return (start, stop)
        if self._token_level is None:
            raise WidgetError("this explorer holds only the word-level explanation: spans cannot be searched")
        char_start = min(s for s, e in ex.offsets_a[start:stop] if e > s) if _has_text(ex, start, stop) else 0
        char_stop = max(e for s, e in ex.offsets_a[start:stop] if e > s) if _has_text(ex, start, stop) else 0
        if char_stop <= char_start:  # only special tokens: those of the token-level passage at the same places
            return (start, stop)
        return self._token_level.char_span("a", char_start, char_stop)

    def _push_strip(self) -> None:
        """Send the hits: rank, index, exact score, text and, shaded in the card, the hit's map (where the query or
        its span is matched, ``TextHit.map``) over the passage's tokens."""
        entries = []
        for rank, hit in enumerate(self._results):
            label = getattr(hit, "label", None)
            entry: dict[str, Any] = {
                "rank": rank,
                "index": int(hit.index),
                "score": float(hit.score),
                "text": str(hit.text),
                "label": label if isinstance(label, (str, int, float, type(None))) else str(label),
            }
            values = hit.map.detach().cpu().numpy().astype(np.float64).ravel()
            if self.session is not None:
                tokens, offsets, special = self.session.tokenize(str(hit.text), truncate=True)
                if len(tokens) == values.size:  # the hit's map is over exactly these tokens
                    entry.update(
                        tokens=list(tokens),
                        offsets=[[int(a), int(b)] for a, b in offsets],
                        special=[bool(v) for v in special],
                        map=values.tolist(),
                    )
            entries.append(entry)
        with self.hold_sync():
            self.strip = entries
            self.strip_version += 1

    @t.validate("span_a", "span_b")
    def _valid_span(self, proposal: t.Bunch) -> list[int] | None:
        value = proposal["value"]
        if value is None:
            return None
        side = proposal["trait"].name[-1]
        n = len(self.tokens_a if side == "a" else self.tokens_b)
        span = list(value) if isinstance(value, (list, tuple)) else []
        if (
            len(span) != 2
            or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in span)
            or not 0 <= span[0] < span[1] <= n
        ):
            raise t.TraitError(
                f"span_{side} must be None or [start, stop) token indices with 0 <= start < stop <= {n} "
                f"(passage {side.upper()} has {n} tokens), got {value!r}"
            )
        return [int(span[0]), int(span[1])]

    @t.validate("hover_a", "hover_b")
    def _valid_hover(self, proposal: t.Bunch) -> int:
        value, side = int(proposal["value"]), proposal["trait"].name[-1]
        n = len(self.tokens_a if side == "a" else self.tokens_b)
        if not -1 <= value < n:
            raise t.TraitError(f"hover_{side} must be -1 or a token index in [0, {n - 1}], got {value}")
        return value

    @t.validate("k")
    def _valid_k(self, proposal: t.Bunch) -> int:
        return check_k(proposal["value"], t.TraitError)

    @t.validate("words")
    def _valid_words(self, proposal: t.Bunch) -> bool:
        value = bool(proposal["value"])
        if not getattr(self, "_busy", True) and self.words_locked and value != self.words:
            raise t.TraitError("words cannot change: this explorer was made from a word-level explanation")
        return value

    @t.validate("selected")
    def _valid_selected(self, proposal: t.Bunch) -> int:
        alternative = "text_b" if getattr(self, "_text_b_given", None) is not None else None
        return check_selected(proposal["value"], self.gallery_size, alternative)

    @t.observe("words")
    def _words_changed(self, change: t.Bunch) -> None:
        if getattr(self, "_busy", True) or self._token_level is None:
            return
        keep = self.selected
        self._busy = True
        try:
            self._send_pair(self._token_level.word_level() if change["new"] else self._token_level)
        finally:
            self._busy = False
        if self.gallery is not None and keep >= 0:
            self.search()

    @t.observe("span_a")
    def _span_a_changed(self, _change: t.Bunch) -> None:
        if not getattr(self, "_busy", True) and self.gallery is not None:
            self.search()

    @t.observe("k")
    def _k_changed(self, _change: t.Bunch) -> None:
        if not getattr(self, "_busy", True):
            self.search()

    @t.observe("selected")
    def _selected_changed(self, change: t.Bunch) -> None:
        if getattr(self, "_busy", True):
            return
        index = change["new"]
        text_b = self._text_b_given if index < 0 else self._gallery_text(index)
        span_a = self.span_a
        ex = self._require_session().explain(self.text_a, str(text_b))
        self._busy = True
        try:
            with self.hold_sync():
                self._show(ex)
                self.span_a = span_a  # A is unchanged: its span stays
                self._push_strip()
        finally:
            self._busy = False


def _side(side: str) -> str:
    s = str(side).lower()
    if s not in SIDES:
        raise WidgetError(f"side must be 'a' or 'b', got {side!r}")
    return s


def _has_text(ex: ExplainedText, start: int, stop: int) -> bool:
    return any(e > s for s, e in ex.offsets_a[start:stop])


def _check_gallery(gallery: Any, session: TextSession) -> None:
    from ..gallery.text import TextGallery

    if not isinstance(gallery, TextGallery):
        raise WidgetError(f"gallery must be a simvis_widgets TextGallery, got {type(gallery).__name__}")
    if len(gallery) == 0:
        raise WidgetError("the gallery is empty")
    if gallery.session is not session:
        raise WidgetError("the gallery was built (or opened) with another session object: pass that same session")


__all__ = ["TextExplorer"]
