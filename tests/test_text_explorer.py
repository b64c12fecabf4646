"""TextExplorer without a browser: what it sends (traits, the binary payload decoded by the built bundle's own
JavaScript), span and hover validation, words, exports, the static figure (render_text) against its colour
scale, and, on the real all-MiniLM-L6-v2 session, the pair it explains and the gallery strip against
``gallery.search`` itself."""

from __future__ import annotations

import base64
import dataclasses
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import traitlets

from simvis_widgets.decompose import decompose
from simvis_widgets.errors import WidgetError
from simvis_widgets.render_text import text_figure, token_texts
from simvis_widgets.text import ExplainedText, TextSession
from simvis_widgets.widgets.encoding import STATIC
from simvis_widgets.widgets.text_explorer import TextExplorer

TEXT_A = "Reset my router now."
TOKENS_A = ("[CLS]", "reset", "my", "route", "##r", "now", ".", "[SEP]")
OFFSETS_A = ((0, 0), (0, 5), (6, 8), (9, 14), (14, 15), (16, 19), (19, 20), (0, 0))
WORDS_A = (None, 0, 1, 2, 2, 3, 4, None)
TEXT_B = "Open the admin page of the wireless router."
TOKENS_B = ("[CLS]", "open", "the", "admin", "page", "of", "the", "wireless", "router", ".", "[SEP]")
OFFSETS_B = ((0, 0), (0, 4), (5, 8), (9, 14), (15, 19), (20, 22), (23, 26), (27, 35), (36, 42), (42, 43), (0, 0))
WORDS_B = (None, 0, 1, 2, 3, 4, 5, 6, 7, 8, None)


def synthetic(seed: int = 0, exact: bool = True) -> ExplainedText:
    """A token-level ExplainedText from random token features (mean pooling, cosine): no model needed."""
    g = torch.Generator().manual_seed(seed)
    fa = torch.randn(len(TOKENS_A), 16, generator=g) + 0.3
    fb = torch.randn(len(TOKENS_B), 16, generator=g) + 0.3
    ex = decompose(fa, fb, "avg", grid_a=(1, len(TOKENS_A)), grid_b=(1, len(TOKENS_B)))
    if not exact:
        ex = dataclasses.replace(ex, exact=False)
    return ExplainedText.of(
        ex,
        model_name="toy",
        text_a=TEXT_A,
        text_b=TEXT_B,
        tokens_a=TOKENS_A,
        tokens_b=TOKENS_B,
        offsets_a=OFFSETS_A,
        offsets_b=OFFSETS_B,
        special_a=tuple(w is None for w in WORDS_A),
        special_b=tuple(w is None for w in WORDS_B),
        word_ids_a=WORDS_A,
        word_ids_b=WORDS_B,
    )


@pytest.fixture()
def ex() -> ExplainedText:
    return synthetic()


# ------------------------------------------------------------------------------------------------------
# What goes to the browser
# ------------------------------------------------------------------------------------------------------


def test_traits_carry_the_passages_tokens_and_readout(ex: ExplainedText) -> None:
    w = TextExplorer.from_explanation(ex)
    assert (w.text_a, w.text_b) == (TEXT_A, TEXT_B)
    assert w.tokens_a == list(TOKENS_A) and w.tokens_b == list(TOKENS_B)
    assert w.offsets_b == [list(o) for o in OFFSETS_B]
    assert w.special_a == [True, False, False, False, False, False, False, True]
    assert w.grid_a == [1, len(TOKENS_A)] and w.grid_b == [1, len(TOKENS_B)]
    assert w.score == pytest.approx(ex.score) and w.model_name == "toy" and w.exact
    assert (w.similarity, w.pooling) == ("cosine", "mean pooling")
    assert w.span_a is None and w.span_b is None and w.hover_a == -1
    assert w.gallery_size == 0 and w.strip == [] and not w.words and not w.words_locked
    assert str(w._esm) == (STATIC / "text_explorer.js").read_text(encoding="utf-8")
    assert not TextExplorer.from_explanation(synthetic(exact=False)).exact


def _node() -> str:
    node = shutil.which("node")
    assert node, "node is needed to run the widget's JavaScript (Debian: apt-get install nodejs)"
    return node


def _run_bundle(script: str, data: Any) -> Any:
    """``script`` (an ES module: the built bundle is its last argument, ``data`` as JSON on its stdin) run in node:
    what it printed, parsed as JSON."""
    out = subprocess.run(
        [_node(), "--input-type=module", "-e", script, str(STATIC / "text_explorer.js")],
        input=json.dumps(data),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout)


def _browser_maps(widget: TextExplorer) -> dict[str, Any]:
    """Every hover map the built bundle computes from the widget's payload (its own decodePayload and
    Contributions), in node: rows of P for the tokens of A, columns for those of B, and the decoded shares."""
    state = {k: v for k, v in widget.get_state().items() if not k.startswith("_")}
    for key, value in state.items():
        if isinstance(value, (bytes, memoryview)):
            state[key] = {"__b64__": base64.b64encode(bytes(value)).decode()}
    script = (
        'import { pathToFileURL } from "node:url";\n'
        'import { readFileSync } from "node:fs";\n'
        "const m = await import(pathToFileURL(process.argv.at(-1)).href);\n"
        'const s = JSON.parse(readFileSync(0, "utf8"));\n'
        "for (const [k, v] of Object.entries(s)) if (v && v.__b64__ !== undefined) s[k] = Buffer.from(v.__b64__, 'base64');\n"
        "const p = m.decodePayload(s);\n"
        "const nA = s.grid_a[1], nB = s.grid_b[1];\n"
        "const rows = [], cols = [];\n"
        "for (let i = 0; i < nA; i++) rows.push(Array.from(p.contrib.point('a', i)));\n"
        "for (let j = 0; j < nB; j++) cols.push(Array.from(p.contrib.point('b', j)));\n"
        "const spanA = Array.from(p.contrib.weighted('a', m.spanWeights(nA, [1, 4])));\n"
        "console.log(JSON.stringify({ rows, cols, spanA, mapA: Array.from(p.mapA), mapB: Array.from(p.mapB) }));\n"
    )
    return _run_bundle(script, state)


def test_payload_decodes_to_exactly_the_pairwise_matrix(ex: ExplainedText) -> None:
    w = TextExplorer.from_explanation(ex)
    assert w.matrix_kind == "pairwise" and w.matrix_dtype == "float32"
    decoded = np.frombuffer(w.pairwise, "<f4").reshape(len(TOKENS_A), len(TOKENS_B)) * w.matrix_scale
    np.testing.assert_allclose(decoded, ex.pairwise.numpy(), rtol=1e-6, atol=1e-9)
    np.testing.assert_array_equal(np.frombuffer(w.map_a, "<f4"), ex.map_a.numpy().ravel())
    # The browser's own code (the built bundle, in node): row i of P for token i of A, column j for token j of B.
    maps = _browser_maps(w)
    P = ex.pairwise.numpy()
    np.testing.assert_allclose(np.asarray(maps["rows"]), P, rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(np.asarray(maps["cols"]), P.T, rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(maps["spanA"], ex.span_map("a", 1, 4).numpy().ravel(), rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(maps["mapB"], ex.map_b.numpy().ravel(), rtol=1e-6)


# ------------------------------------------------------------------------------------------------------
# Spans, hovers, words
# ------------------------------------------------------------------------------------------------------


def test_span_score_and_map_are_the_explanations(ex: ExplainedText) -> None:
    w = TextExplorer.from_explanation(ex)
    assert w.span_score("a") is None and w.span_map("b") is None
    w.span_a = [1, 5]
    assert w.span_score("a") == pytest.approx(ex.span_score("a", 1, 5), abs=1e-7)
    assert w.span_score("a") == pytest.approx(float(ex.map_a[0, 1:5].sum()), abs=1e-6)  # the shares, summed
    np.testing.assert_allclose(w.span_map("a"), ex.pairwise[1:5].sum(0).numpy(), rtol=1e-5, atol=1e-8)
    w.span_b = (2, 11)  # a tuple is accepted; stored as a list
    assert w.span_b == [2, 11]
    np.testing.assert_allclose(w.span_map("B"), ex.pairwise[:, 2:11].sum(1).numpy(), rtol=1e-5, atol=1e-8)
    with pytest.raises(WidgetError, match="side must be"):
        w.span_score("c")


@pytest.mark.parametrize(
    "bad",
    [[3, 2], [2, 2], [-1, 2], [0, 9], [1], [0, 1, 2], [0.5, 2], [True, 2], ["0", 2]],
)
def test_invalid_spans_are_refused_with_the_passage_length(ex: ExplainedText, bad: Any) -> None:
    w = TextExplorer.from_explanation(ex)
    with pytest.raises(traitlets.TraitError, match=r"span_a must be None or \[start, stop\).*8 tokens"):
        w.span_a = bad
    assert w.span_a is None


def test_invalid_hover_and_options_are_refused(ex: ExplainedText) -> None:
    w = TextExplorer.from_explanation(ex)
    w.hover_b = 10
    with pytest.raises(traitlets.TraitError, match=r"hover_b must be -1 or a token index in \[0, 10\]"):
        w.hover_b = 11
    with pytest.raises(traitlets.TraitError, match="k must be an integer"):
        w.k = 0
    with pytest.raises(WidgetError, match="unknown colormap"):
        w.cmap = "no-such-map"
    with pytest.raises(traitlets.TraitError, match="no gallery index"):
        w.selected = 0
    with pytest.raises(WidgetError, match="expected an ExplainedText"):
        TextExplorer.from_explanation(decompose(torch.ones(2, 3), torch.ones(2, 3), grid_a=(1, 2), grid_b=(1, 2)))
    with pytest.raises(WidgetError, match="TextSession"):
        TextExplorer("not a session", "a", "b")  # type: ignore[arg-type]


def test_words_regroup_exactly_and_back(ex: ExplainedText) -> None:
    w = TextExplorer.from_explanation(ex)
    version = w._text_version
    w.span_a = [1, 2]
    w.words = True
    words = ex.word_level()
    assert w._text_version == version + 1 and w.span_a is None  # a new pair went to the browser
    assert w.tokens_a == list(words.tokens_a) == ["[CLS]", "Reset", "my", "router", "now", ".", "[SEP]"]
    decoded = np.frombuffer(w.pairwise, "<f4").reshape(words.grid_a[1], words.grid_b[1]) * w.matrix_scale
    np.testing.assert_allclose(decoded, words.pairwise.numpy(), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(decoded.sum(), ex.score, rtol=1e-5)  # still exact
    w.words = False
    assert w.tokens_a == list(TOKENS_A)
    locked = TextExplorer.from_explanation(words)
    assert locked.words and locked.words_locked
    with pytest.raises(traitlets.TraitError, match="word-level explanation"):
        locked.words = False


# ------------------------------------------------------------------------------------------------------
# Exports and the figure
# ------------------------------------------------------------------------------------------------------


def test_to_html_is_self_contained_with_the_payload(ex: ExplainedText, tmp_path: Path) -> None:
    w = TextExplorer.from_explanation(ex)
    w.span_a = [3, 5]
    page = w.to_html(tmp_path / "text.html").read_text(encoding="utf-8")
    assert "simvis-text" in page and '"_static": true' in page and "__b64__" in page
    assert '"span_a": [3, 5]' in page
    assert "http://" not in page.replace("http://www.w3.org", "") and "https://" not in page


def test_save_png_draws_the_current_view(ex: ExplainedText, tmp_path: Path) -> None:
    from PIL import Image

    w = TextExplorer.from_explanation(ex)
    overview = w.save_png(tmp_path / "overview.png")
    w.span_b = [7, 9]
    span = w.save_png(tmp_path / "span.png")
    a, b = np.asarray(Image.open(overview)), np.asarray(Image.open(span))
    assert a.shape[2] in (3, 4) and a.shape[:2] == b.shape[:2] and not np.array_equal(a, b)


def _token_boxes(fig: Any) -> list[list[tuple[float, ...]]]:
    from matplotlib.patches import Rectangle

    return [[tuple(p.get_facecolor()) for p in ax.patches if isinstance(p, Rectangle)] for ax in fig.axes[:2]]


def test_text_figure_shades_every_token_on_one_symmetric_scale(ex: ExplainedText) -> None:
    from matplotlib import colormaps

    cmap = colormaps["RdBu_r"]
    fig = text_figure(ex)
    boxes = _token_boxes(fig)
    vmax = max(float(ex.map_a.abs().max()), float(ex.map_b.abs().max()))
    for got, values in zip(boxes, (ex.map_a, ex.map_b)):
        want = [cmap((float(v) / vmax + 1) / 2) for v in values.ravel()]
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=2 / 255)
    title = fig._suptitle.get_text()
    assert f"{ex.score:.4f}" in title and "toy" in title and "APPROXIMATE" not in title
    assert "APPROXIMATE" in text_figure(synthetic(exact=False))._suptitle.get_text()
    # a span: its passage unshaded, the other shaded by the span's map on its own symmetric scale
    fig = text_figure(ex, span=("a", 1, 4))
    own, other = _token_boxes(fig)
    assert all(c == (1.0, 1.0, 1.0, 1.0) for c in own)
    values = ex.span_map("a", 1, 4).ravel()
    vmax = float(values.abs().max())
    np.testing.assert_allclose(
        np.asarray(other), np.asarray([cmap((float(v) / vmax + 1) / 2) for v in values]), atol=2 / 255
    )
    assert f"{ex.span_score('a', 1, 4):+.4f}" in fig.axes[0].get_xlabel()
    hover = text_figure(ex, hover=("b", 8))
    np.testing.assert_allclose(
        np.asarray(_token_boxes(hover)[0]),
        np.asarray([cmap((float(v) / float(ex.pairwise[:, 8].abs().max()) + 1) / 2) for v in ex.pairwise[:, 8]]),
        atol=2 / 255,
    )


def test_token_texts_follow_the_passage_as_written() -> None:
    shown = token_texts(TEXT_A, TOKENS_A, OFFSETS_A, [w is None for w in WORDS_A])
    assert shown == [
        ("[CLS]", False),
        ("Reset", True),
        ("my", True),
        ("route", True),
        ("r", False),
        ("now", True),
        (".", False),
        ("[SEP]", True),
    ]


# ------------------------------------------------------------------------------------------------------
# The real model: the pair and the gallery strip
# ------------------------------------------------------------------------------------------------------

CORPUS = [
    "To change the password of your wireless router, open its admin page in a browser.",
    "Restart the modem and the router if the internet connection drops.",
    "A sourdough starter needs flour, water and a warm kitchen.",
    "The museum opens at nine and closes at five on weekdays.",
    "Forgot your email password? Use the account recovery page to reset it.",
    "Router bits for woodworking come in many shapes and sizes.",
    "Tomatoes grow best in full sun with regular watering.",
    "The admin page of most home routers is at 192.168.0.1.",
]
QUERY = "How do I reset my router password?"


@pytest.fixture(scope="module")
def text_session() -> Any:
    return TextSession.from_pretrained("all-MiniLM-L6-v2", device="cpu")


@pytest.fixture(scope="module")
def text_gallery(text_session: Any) -> Any:
    from simvis_widgets.gallery.text import TextGallery

    return TextGallery.build(CORPUS, text_session)


def test_session_pair_is_session_explain(text_session: Any) -> None:
    w = TextExplorer(text_session, QUERY, CORPUS[0])
    ref = text_session.explain(QUERY, CORPUS[0])
    assert w.tokens_a == list(ref.tokens_a) and w.score == pytest.approx(ref.score, abs=1e-6)
    decoded = np.frombuffer(w.pairwise, "<f4").reshape(ref.grid_a[1], ref.grid_b[1]) * w.matrix_scale
    np.testing.assert_allclose(decoded, ref.pairwise.numpy(), rtol=1e-5, atol=1e-8)
    assert w.model_name == ref.model_name and w.exact
    w.set_texts(QUERY, CORPUS[5])
    assert w.text_b == CORPUS[5] and w.score == pytest.approx(text_session.explain(QUERY, CORPUS[5]).score, abs=1e-6)
    with pytest.raises(WidgetError, match="text_b"):
        TextExplorer(text_session, QUERY)
    with pytest.raises(WidgetError, match="text_a must be a str"):
        TextExplorer(text_session, 3, "b")  # type: ignore[arg-type]


def test_strip_is_gallery_search_and_follows_the_span(text_session: Any, text_gallery: Any) -> None:
    w = TextExplorer(text_session, QUERY, gallery=text_gallery, k=4)
    hits = text_gallery.search(QUERY, k=4)
    assert [e["index"] for e in w.strip] == [h.index for h in hits] == [h.index for h in w.results]
    assert [e["score"] for e in w.strip] == pytest.approx([h.score for h in hits], abs=1e-6)
    assert w.selected == hits[0].index and w.text_b == CORPUS[hits[0].index]  # the best hit is B
    for entry, hit in zip(w.strip, hits):  # each card: the hit's map over its passage's tokens
        assert entry["text"] == CORPUS[hit.index] and entry["tokens"] == text_session.tokenize(entry["text"])[0]
        np.testing.assert_allclose(entry["map"], hit.map.numpy().ravel(), rtol=1e-5, atol=1e-8)
        full = text_session.explain(QUERY, entry["text"]).map_b.numpy().ravel()  # no span: B's own shares
        np.testing.assert_allclose(entry["map"], full, rtol=1e-4, atol=1e-6)
    version = w.strip_version
    start, stop = w.explanation.char_span("a", QUERY.index("password"), QUERY.index("password") + 8)
    w.span_a = [start, stop]  # "password" only
    span_hits = text_gallery.search(QUERY, span=(start, stop), k=4)
    assert w.strip_version == version + 1
    assert [e["index"] for e in w.strip] == [h.index for h in span_hits]
    assert [e["score"] for e in w.strip] == pytest.approx([h.score for h in span_hits], abs=1e-6)
    # each hit's span score is that passage's explanation restricted to the span (exact span retrieval)
    for e in w.strip:
        ref = text_session.explain(QUERY, CORPUS[e["index"]]).span_score("a", start, stop)
        assert e["score"] == pytest.approx(ref, abs=2e-3)
    # clicking a passage (select) makes it B; A's span stays
    chosen = next(e["index"] for e in w.strip if e["index"] != w.selected)
    pair = w.select(chosen)
    assert w.text_b == CORPUS[chosen] and pair.text_b == CORPUS[chosen] and w.span_a == [start, stop]
    assert w.score == pytest.approx(text_session.explain(QUERY, CORPUS[chosen]).score, abs=1e-6)
    with pytest.raises(WidgetError, match="selected must be a gallery index"):
        w.select(len(CORPUS))
    w.span_a = None
    assert [e["index"] for e in w.strip] == [h.index for h in hits]


def test_a_word_span_ranks_by_all_its_pieces(text_session: Any, text_gallery: Any) -> None:
    w = TextExplorer(text_session, QUERY, CORPUS[0], gallery=text_gallery, k=3, words=True)
    assert w.selected == -1 and w.text_b == CORPUS[0]  # text_b given: B is it, not the best hit
    r = w.tokens_a.index("router")  # one word, two pieces ("route", "r") for the tokenizer
    w.span_a = [r, r + 1]
    start = QUERY.index("router")
    hits = text_gallery.search(QUERY, chars=(start, start + len("router")), k=3)
    assert [e["index"] for e in w.strip] == [h.index for h in hits]
    assert [e["score"] for e in w.strip] == pytest.approx([h.score for h in hits], abs=1e-6)
    token_level = text_session.explain(QUERY, CORPUS[0])
    assert w.span_score("a") == pytest.approx(token_level.span_score("a", r, r + 2), abs=1e-6)


AWKWARD = [
    QUERY,
    "  Hello,   world\twith tabs and  double spaces.  ",
    "naïve café — 3×4 = 12! Ünïcödé ÅNGSTRÖM",
    "emoji 🙂 inside, and a URL https://example.org/a?b=c",
    "unbelievably antidisestablishmentarianism",
]


def test_the_browser_and_the_figure_show_the_passage_as_written(text_session: Any) -> None:
    """On real tokenizations (sub-word pieces, unknown characters, odd spaces): the widget's segments (the built
    bundle's passageSegments, in node) reproduce the passage between [CLS] and [SEP] exactly as written, and
    the figure's token_texts show the same token strings."""
    cases = []
    for text in AWKWARD:
        for words in (False, True):
            ex = text_session.explain(text, "x", words=words)
            cases.append([text, list(ex.tokens_a), [list(o) for o in ex.offsets_a], list(ex.special_a)])
    script = (
        'import { pathToFileURL } from "node:url";\n'
        'import { readFileSync } from "node:fs";\n'
        "const m = await import(pathToFileURL(process.argv.at(-1)).href);\n"
        'const cases = JSON.parse(readFileSync(0, "utf8"));\n'
        "console.log(JSON.stringify(cases.map(([t, tok, off, sp]) => m.passageSegments(t, tok, off, sp))));\n"
    )
    for (text, tokens, offsets, special), segments in zip(cases, _run_bundle(script, cases)):
        shown = "".join(s["text"] for s in segments)
        assert shown == "[CLS]" + (" " if text == text.lstrip() else "") + text.rstrip() + " [SEP]"
        figure = token_texts(text, tokens, [tuple(o) for o in offsets], special)
        assert [t for t, _ in figure] == [s["text"] for s in segments if s["kind"] == "token"]
