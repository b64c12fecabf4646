"""Real-browser tests of the TextExplorer (headless Chromium, Playwright): a notebook in JupyterLab 4 with the real
all-MiniLM-L6-v2 session, and the static HTML export opened from a file with no server. We hover tokens and drag
spans with the mouse, read the computed background colour of every token element back, decode it through the
widget's colour table, and compare it with P from an explanation computed independently in this test process."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import simvis_widgets as sv
from simvis_widgets.text import TextSession

from jupyter_browser import chromium, jupyter_server, kernel_exec, one_cell_notebook, open_widget

REPO = Path(__file__).resolve().parents[1]
SCREENSHOT = REPO / "docs" / "img" / "text_explorer.png"
SCREENSHOTS = REPO / "artifacts" / "screenshots"
NOTEBOOK = "text_explorer.ipynb"
GALLERY_NOTEBOOK = "text_gallery.ipynb"
CORPUS = [
    "If you forgot the router password, hold the reset button on the back for ten seconds.",
    "To change the password of your wireless router, open its admin page in a browser and log in.",
    "Forgot your email password? Use the account recovery page to reset it.",
    "Router bits for woodworking come in many shapes: round-over, chamfer and cove.",
    "The admin page of most home routers is at 192.168.0.1 or 192.168.1.1.",
    "Sourdough bread needs a lively starter, flour, water, salt and patience.",
    "Restart the modem and the router when the internet connection keeps dropping.",
    "A strong Wi-Fi password has at least twelve characters and no dictionary words.",
]
QUERY = "How do I reset my router password?"
PASSAGE = "To change the password of your wireless router, open its admin page in a browser and log in."
HARMLESS = ("ResizeObserver loop",)
ROOT = ".simvis-text"

CELL = (
    "import simvis_widgets as sv\n"
    "from simvis_widgets.text import TextSession\n"
    "session = TextSession.from_pretrained('all-MiniLM-L6-v2', device='cpu')\n"
    f"explorer = sv.TextExplorer(session, {QUERY!r}, {PASSAGE!r})\n"
    "explorer"
)

GALLERY_CELL = (
    "import simvis_widgets as sv\n"
    "from simvis_widgets.gallery.text import TextGallery\n"
    "from simvis_widgets.text import TextSession\n"
    "session = TextSession.from_pretrained('all-MiniLM-L6-v2', device='cpu')\n"
    f"corpus = {CORPUS!r}\n"
    "gallery = TextGallery.build(corpus, session)\n"
    f"explorer = sv.TextExplorer(session, {QUERY!r}, gallery=gallery, k=5, words=True)\n"
    "explorer"
)

STRIP = """() => {
  const root = document.querySelector('.simvis-text');
  const cards = [...root.querySelectorAll('.sv-text-card')];
  return { version: Number(root.dataset.strip || 0), ready: Number(root.dataset.ready || 0),
           indices: cards.map((c) => Number(c.dataset.index)),
           scores: cards.map((c) => Number(c.querySelector('.sv-card-text').textContent.split(' ')[1])),
           selected: cards.filter((c) => c.classList.contains('sv-selected')).map((c) => Number(c.dataset.index)) };
}"""

READ_TOKENS = """([side]) => {
  const view = document.querySelector('.simvis-text').__simvis;
  const nodes = side.length === 1 ? view[side].tokens : [...document.querySelectorAll(`[data-testid^="tok-${side}-"]`)];
  return { rgb: nodes.map((n) => getComputedStyle(n).backgroundColor), lut: Array.from(view.lut) };
}"""


def token_indices(page: Any, side: str) -> np.ndarray:
    """The colour-table index (0..255) of each token's computed background; -1 for an unshaded token."""
    out = page.evaluate(READ_TOKENS, [side])
    table = np.asarray(out["lut"], float).reshape(256, 3)
    idx = []
    for css in out["rgb"]:
        m = re.fullmatch(r"rgba?\((\d+), (\d+), (\d+)(?:, ([\d.]+))?\)", css)
        assert m, f"unexpected colour {css!r}"
        if m.group(4) is not None and float(m.group(4)) == 0:
            idx.append(-1)
            continue
        rgb = np.asarray([float(m.group(k)) for k in (1, 2, 3)])
        dist = ((table - rgb) ** 2).sum(1)
        assert dist.min() == 0, f"{css} is not a colour of the widget's table"
        idx.append(int(np.argmin(dist)))
    return np.asarray(idx)


def expected_indices(values: Any, vmax: float | None = None) -> np.ndarray:
    v = np.asarray(values, float).ravel()
    vmax = float(np.abs(v).max()) if vmax is None else vmax
    return np.clip(np.round((v / vmax + 1) / 2 * 255), 0, 255).astype(int)


def assert_shading(page: Any, side: str, values: Any, vmax: float | None = None) -> None:
    """Every token of ``side`` shows ``values`` on the symmetric scale (one table step of float32 rounding)."""
    got, want = token_indices(page, side), expected_indices(values, vmax)
    assert got.shape == want.shape, f"{got.shape[0]} tokens shown, {want.shape[0]} expected"
    assert (got >= 0).all(), "a token is not shaded"
    assert np.abs(got - want).max() <= 1, f"colour indices {got.tolist()} != {want.tolist()}"


def draws(page: Any) -> int:
    return int(page.evaluate(f"() => Number(document.querySelector('{ROOT}').dataset.draws || 0)"))


def token_centre(page: Any, side: str, i: int) -> tuple[float, float]:
    node = page.locator(f'{ROOT} [data-testid="tok-{side}-{i}"]')
    node.scroll_into_view_if_needed()
    box = node.bounding_box()
    return box["x"] + box["width"] / 2, box["y"] + box["height"] / 2


def hover_token(page: Any, side: str, i: int) -> None:
    before = draws(page)
    page.mouse.move(*token_centre(page, side, i))
    page.wait_for_function(f"() => Number(document.querySelector('{ROOT}').dataset.draws) > {before}", timeout=10_000)


def token_index(ex: Any, side: str, word: str) -> int:
    return list(getattr(ex, f"tokens_{side}")).index(word)


def _errors(page: Any) -> list[str]:
    return [e for e in page.errors if not any(h in e for h in HARMLESS)]


@pytest.fixture(scope="module")
def reference() -> Any:
    """The notebook's pair, explained here, independently of the kernel."""
    session = TextSession.from_pretrained("all-MiniLM-L6-v2", device="cpu")
    return session.explain(QUERY, PASSAGE)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("notebooks")
    (root / NOTEBOOK).write_text(json.dumps(one_cell_notebook(CELL)))
    (root / GALLERY_NOTEBOOK).write_text(json.dumps(one_cell_notebook(GALLERY_CELL)))
    with jupyter_server(root, tmp_path_factory.mktemp("jupyter")) as srv:
        yield srv


def check_hover_both_ways(page: Any, reference: Any) -> None:
    P = reference.pairwise.numpy()
    i = token_index(reference, "a", "password")
    hover_token(page, "a", i)
    assert_shading(page, "b", P[i])  # row i of P over B
    assert (token_indices(page, "a") == -1).all()  # the hovered passage shows only the marked token
    j = token_index(reference, "b", "wireless")
    hover_token(page, "b", j)
    assert_shading(page, "a", P[:, j])  # column j of P over A
    info = page.locator(f'{ROOT} [data-testid="info"]').inner_text()
    assert f"{float(reference.map_b[0, j]):+.4f}" in info


def test_jupyterlab_hover_shades_the_other_passage_and_spans_score(server: Any, reference: Any, tmp_path: Path) -> None:
    with chromium(tmp_path, viewport=(1300, 900)) as page:
        widget = open_widget(page, server.lab(NOTEBOOK), f"{ROOT}[data-ready]", timeout_s=240)
        # overview: both passages on one scale (the larger of the two maps' magnitudes)
        vmax = max(float(reference.map_a.abs().max()), float(reference.map_b.abs().max()))
        assert_shading(page, "a", reference.map_a, vmax)
        assert_shading(page, "b", reference.map_b, vmax)
        readout = widget.locator('[data-testid="score"]').inner_text()
        assert f"score {reference.score:.4f}" in readout and "all-MiniLM-L6-v2" in readout and "exact" in readout

        check_hover_both_ways(page, reference)
        i = token_index(reference, "a", "reset")
        hover_token(page, "a", i)
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        widget.screenshot(path=str(SCREENSHOTS / "text_hover.png"))
        page.wait_for_timeout(200)
        printed = kernel_exec(page, "print(explorer.hover_a, explorer.hover_b)")
        assert printed.split() == [str(i), "-1"]  # the hovered token reached Python

        # hover latency: pointer event -> every token of the other passage restyled (the view's own trace)
        page.evaluate("() => { globalThis.__SIMVIS_TRACE__ = true; }")
        centres = [token_centre(page, "a", k) for k in range(1, len(reference.tokens_a) - 1)]
        for _ in range(4):
            for x, y in centres + centres[::-1]:
                page.mouse.move(x, y)
        trace = page.evaluate(f"() => document.querySelector('{ROOT}').__simvis.trace.map((t) => t.drawn - t.event)")
        assert len(trace) >= 40
        print(
            f"\nhover -> redraw latency over {len(trace)} moves: p50 {np.percentile(trace, 50):.2f} ms, "
            f"p95 {np.percentile(trace, 95):.2f} ms"
        )
        page.evaluate("() => { globalThis.__SIMVIS_TRACE__ = false; }")

        # a span dragged over "router password"
        start, stop = reference.char_span("a", QUERY.index("router"), QUERY.index("?"))
        page.mouse.move(*token_centre(page, "a", start))
        page.mouse.down()
        page.mouse.move(*token_centre(page, "a", stop - 1), steps=6)
        page.mouse.up()
        page.mouse.move(5, 5)
        page.wait_for_timeout(300)
        shown = json.loads(
            kernel_exec(page, "import json; print(json.dumps([explorer.span_a, explorer.span_score('a')]))")
        )
        assert shown[0] == [start, stop]
        want = reference.span_score("a", start, stop)
        assert shown[1] == pytest.approx(want, abs=1e-5)
        info = widget.locator('[data-testid="info"]').inner_text()
        assert f"span score {want:+.4f}" in info
        assert_shading(page, "b", reference.span_map("a", start, stop))

        # shift-click on B: a span on B replaces it; Python can set one too
        page.mouse.click(*token_centre(page, "b", 2))
        page.keyboard.down("Shift")
        page.mouse.click(*token_centre(page, "b", 4))
        page.keyboard.up("Shift")
        page.mouse.move(5, 5)
        page.wait_for_timeout(300)
        printed = kernel_exec(page, "print(explorer.span_a, explorer.span_b)")
        assert printed.split() == ["None", "[2,", "5]"]
        assert_shading(page, "a", reference.span_map("b", 2, 5))
        before = draws(page)
        kernel_exec(page, "explorer.span_b = None; explorer.span_a = [1, 3]")
        page.wait_for_function(f"() => Number(document.querySelector('{ROOT}').dataset.draws) > {before}")
        page.wait_for_timeout(200)
        assert_shading(page, "b", reference.span_map("a", 1, 3))
        assert _errors(page) == []


def test_static_html_export_hovers_without_a_kernel(reference: Any, tmp_path: Path) -> None:
    path = sv.TextExplorer.from_explanation(reference).to_html(tmp_path / "text.html")
    with chromium(tmp_path) as page:
        page.goto(path.as_uri())
        page.wait_for_selector(f"{ROOT}[data-ready]", timeout=30_000)
        check_hover_both_ways(page, reference)
        page.mouse.move(*token_centre(page, "a", 1))
        page.mouse.down()
        page.mouse.move(*token_centre(page, "a", 3), steps=4)
        page.mouse.up()
        page.mouse.move(5, 5)
        page.wait_for_timeout(100)
        assert_shading(page, "b", reference.span_map("a", 1, 4))
        info = page.locator(f'{ROOT} [data-testid="info"]').inner_text()
        assert f"span score {reference.span_score('a', 1, 4):+.4f}" in info
        assert _errors(page) == []


def test_jupyterlab_strip_follows_the_span_and_a_click_makes_passage_b(server: Any, tmp_path: Path) -> None:
    """The strip is ``gallery.search`` for the query, then for the span dragged over a word (all its pieces); a click
    on a passage explains it against the query and shows it as passage B."""
    session = TextSession.from_pretrained("all-MiniLM-L6-v2", device="cpu")
    words = session.explain(QUERY, CORPUS[0], words=True)
    with chromium(tmp_path, viewport=(1300, 1000)) as page:
        widget = open_widget(page, server.lab(GALLERY_NOTEBOOK), f"{ROOT}[data-ready]", timeout_s=240)
        page.wait_for_function(f"() => document.querySelectorAll('{ROOT} .sv-text-card').length === 5")
        before = page.evaluate(STRIP)
        kernel = json.loads(
            kernel_exec(
                page,
                "import json; print(json.dumps([[h.index, h.score] for h in gallery.search(explorer.text_a, k=5)]))",
            )
        )
        assert before["indices"] == [i for i, _ in kernel]
        assert before["scores"] == pytest.approx([s for _, s in kernel], abs=1e-4)
        assert before["selected"] == [kernel[0][0]]  # the best passage is B

        r = list(words.tokens_a).index("router")  # one word: two tokenizer pieces
        page.mouse.click(*token_centre(page, "a", r))
        page.mouse.move(5, 5)
        page.wait_for_function(
            f"() => Number(document.querySelector('{ROOT}').dataset.strip) > {before['version']}", timeout=60_000
        )
        after = page.evaluate(STRIP)
        start = QUERY.index("router")
        expected = json.loads(
            kernel_exec(
                page,
                "import json; print(json.dumps([[h.index, h.score] for h in "
                f"gallery.search(explorer.text_a, chars=({start}, {start + 6}), k=5)] + [explorer.span_a]))",
            )
        )
        assert expected[-1] == [r, r + 1]
        assert after["indices"] == [i for i, _ in expected[:-1]]
        assert after["scores"] == pytest.approx([s for _, s in expected[:-1]], abs=1e-4)
        maps = json.loads(kernel_exec(page, "import json; print(json.dumps([e['map'] for e in explorer.strip]))"))
        vmax = max(abs(v) for m in maps for v in m)
        for rank in range(5):  # every card shaded by its hit's span map, one scale for the strip
            assert_shading(page, f"hit{rank}", maps[rank], vmax)
        status = widget.locator('[data-testid="strip-status"]').inner_text()
        assert f"span A [{r}, {r + 1})" in status

        chosen = next(i for i in after["indices"] if i not in after["selected"])
        widget.locator(f'.sv-text-card[data-index="{chosen}"]').click()
        page.wait_for_function(
            f"() => Number(document.querySelector('{ROOT}').dataset.ready) > {after['ready']}", timeout=60_000
        )
        passage_b = widget.locator('[data-testid="passage-b"]').inner_text()
        assert all(word in passage_b for word in CORPUS[chosen].replace(",", " ").replace(".", " ").split())
        shown = json.loads(
            kernel_exec(page, "import json; print(json.dumps([explorer.selected, explorer.score, explorer.span_a]))")
        )
        assert shown[0] == chosen and shown[2] == [r, r + 1]  # A's span stays
        assert shown[1] == pytest.approx(session.explain(QUERY, CORPUS[chosen]).score, abs=1e-5)
        reference = session.explain(QUERY, CORPUS[chosen], words=True)
        assert_shading(page, "b", reference.span_map("a", r, r + 1))
        hover_token(page, "a", list(reference.tokens_a).index("password"))
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        widget.screenshot(path=str(SCREENSHOT))
        assert _errors(page) == []
