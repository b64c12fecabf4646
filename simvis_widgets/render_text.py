"""Static figures of an explained pair of passages: both passages side by side, each token on a box shaded by its
contribution on ONE symmetric signed scale (red adds to the similarity, blue takes away, white is 0), a colour
bar, the score in the title (and ``APPROXIMATE`` when the decomposition is not exact).

Three views, as in the widget:

* overview: each passage's token shares ``S_A[i] = sum_j P[i, j]``, ``S_B[j] = sum_i P[i, j]`` (each passage's
  shares add up to the score minus the global term);
* ``hover=(side, i)``: token ``i`` of ``side`` outlined, the other passage shaded by its row (A) or column (B) of P;
* ``span=(side, start, stop)``: tokens ``[start, stop)`` outlined, the other passage shaded by
  ``explained.span_map(side, start, stop)`` and the span's share ``explained.span_score(...)`` in the caption.

Display only: every number comes from the :class:`~simvis_widgets.text.ExplainedText`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .render import DEFAULT_CMAP, new_figure, score_line, shared_limit

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

    from .text import ExplainedText

FONT_SIZE = 10.0
"""Points; tokens are drawn in the monospace font so that the wrapping is exact without a renderer."""
_CHAR_WIDTH = 0.602 * FONT_SIZE / 72  # inches: DejaVu Sans Mono's advance is 0.602 em
_LINE_HEIGHT = 2.1 * FONT_SIZE / 72
_MARGIN = 0.3
_GAP = 0.4
_HEAD = 0.85
_FOOT = 1.0


def token_texts(
    text: str, tokens: Sequence[str], offsets: Sequence[tuple[int, int]], special: Sequence[bool]
) -> list[tuple[str, bool]]:
    """What each token shows and whether a space precedes it: its character span of ``text`` (the passage as
    written), or its display string for special tokens and tokens without a usable span (as the widget shows
    them: ``js/lib/text_tokens.js``)."""
    out: list[tuple[str, bool]] = []
    end, after_own = 0, False
    for i, token in enumerate(tokens):
        s, e = offsets[i] if i < len(offsets) else (0, 0)
        own = not special[i] and e > s and s >= end and e <= len(text)
        if own:
            out.append((text[s:e], bool(out) and (s > end or not after_own)))
            end = e
        else:
            out.append((token, bool(out)))
        after_own = own
    return out


def _layout(words: list[tuple[str, bool]], width: float) -> list[tuple[float, int]]:
    """(x in inches, line) of each token when the tokens flow into lines ``width`` inches wide."""
    x, line, places = 0.0, 0, []
    for text, space in words:
        w = len(text) * _CHAR_WIDTH
        x += _CHAR_WIDTH if space and x > 0 else 0.0
        if x > 0 and x + w > width:
            x, line = 0.0, line + 1
        places.append((x, line))
        x += w + 0.03
    return places


def text_figure(
    explained: ExplainedText,
    *,
    span: tuple[str, int, int] | None = None,
    hover: tuple[str, int] | None = None,
    cmap: str = DEFAULT_CMAP,
    title: str | None = None,
    width: float = 12.0,
) -> Figure:
    """Both passages, tokens shaded on one symmetric signed scale with a colour bar; see the module docstring for
    ``span`` and ``hover``. Raises what the explanation raises for a bad side, span or token index."""
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.patches import Rectangle

    ex = explained
    values: dict[str, Any] = {"a": ex.map_a, "b": ex.map_b}
    marked: dict[str, set[int]] = {"a": set(), "b": set()}
    captions = {s: f"passage {s.upper()}: its token shares add up to {float(m.sum()):+.4f}" for s, m in values.items()}
    if span is not None and hover is not None:
        raise ValueError("text_figure takes a span or a hovered token, not both")
    if span is not None:
        side, start, stop = span
        side = side.lower()
        dst = "b" if side == "a" else "a"
        shown = ex.span_map(side, start, stop)
        share = ex.span_score(side, start, stop)
        values = {side: None, dst: shown}
        marked[side] = set(range(start, stop))
        part = f" = {share / ex.score:.0%} of the score" if ex.score else ""
        captions = {
            side: f"passage {side.upper()}: span [{start}, {stop}) carries {share:+.4f}{part}",
            dst: f"passage {dst.upper()}: where the span is matched, sum = {float(shown.sum()):+.4f}",
        }
    elif hover is not None:
        side, i = hover[0].lower(), int(hover[1])
        dst = "b" if side == "a" else "a"
        shown = ex.span_map(side, i, i + 1)
        own = (ex.map_a if side == "a" else ex.map_b).reshape(-1)
        values = {side: None, dst: shown}
        marked[side] = {i}
        captions = {
            side: f"passage {side.upper()}: token {i} carries {float(own[i]):+.4f} of the score",
            dst: f"passage {dst.upper()}: that token's contributions, sum = {float(shown.sum()):+.4f}",
        }
    vmax = shared_limit(*[v for v in values.values() if v is not None])
    norm, colours = Normalize(-vmax, vmax), colormaps[cmap]

    col_w = (width - 2 * _MARGIN - _GAP) / 2
    sides = {}
    for side in ("a", "b"):
        words = token_texts(
            getattr(ex, f"text_{side}"),
            getattr(ex, f"tokens_{side}"),
            getattr(ex, f"offsets_{side}"),
            getattr(ex, f"special_{side}"),
        )
        sides[side] = (words, _layout(words, col_w))
    lines = max(max((line for _, line in places), default=0) + 1 for _, places in sides.values())
    body = lines * _LINE_HEIGHT + 0.1
    height = _HEAD + body + _FOOT
    fig = new_figure(figsize=(width, height))
    for k, side in enumerate(("a", "b")):
        words, places = sides[side]
        left = _MARGIN + k * (col_w + _GAP)
        ax = fig.add_axes((left / width, _FOOT / height, col_w / width, body / height))
        ax.set_xlim(0, col_w)
        ax.set_ylim(body, 0)
        ax.set_xticks([])
        ax.set_yticks([])
        shade = values[side]
        flat = None if shade is None else np.asarray(shade.detach().cpu().double()).reshape(-1)
        special = getattr(ex, f"special_{side}")
        for i, ((text, _), (x, line)) in enumerate(zip(words, places)):
            y = line * _LINE_HEIGHT + 0.06
            w = len(text) * _CHAR_WIDTH
            face = (1.0, 1.0, 1.0, 1.0) if flat is None else colours(norm(flat[i]))
            ink = "#111" if 0.2126 * face[0] + 0.7152 * face[1] + 0.0722 * face[2] > 0.55 else "white"
            edge = "#e0a800" if i in marked[side] else ("#888" if special[i] else "none")
            ax.add_patch(
                Rectangle((x - 0.01, y - 0.01), w + 0.02, _LINE_HEIGHT * 0.8, fc=face, ec=edge, lw=1.6 if edge else 0)
            )
            ax.text(x, y + _LINE_HEIGHT * 0.4, text, family="monospace", fontsize=FONT_SIZE, va="center", color=ink)
        ax.set_xlabel(captions[side], fontsize=9)
    bar_ax = fig.add_axes((0.3, 0.22 / height, 0.4, 0.14 / height))
    bar = fig.colorbar(
        ScalarMappable(norm=norm, cmap=colours),
        cax=bar_ax,
        orientation="horizontal",
        ticks=[-vmax, -vmax / 2, 0, vmax / 2, vmax],
        format="%.2g",
    )
    bar.set_label("contribution to the similarity (per token; red adds, blue takes away)", fontsize=9)
    headline = score_line(ex) if ex.exact else score_line(ex).replace("APPROXIMATE (linearisation)", "APPROXIMATE")
    fig.suptitle(f"{title or (ex.model_name or 'text similarity')}\n{headline}", fontsize=11, y=1 - 0.12 / height)
    return fig


__all__ = ["FONT_SIZE", "text_figure", "token_texts"]
