"""Real-browser tests: the quickstart notebook in JupyterLab 4 and Notebook 7 (headless Chromium, Playwright),
and the static HTML export without any server. We hover and paint with the mouse and read the heatmap back
from the canvas pixels, decoding colours through the widget's colour table, and compare with an Explanation
computed independently in this test process."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import simvis_widgets as sv

from jupyter_browser import (
    chromium,
    jupyter_server,
    kernel_exec,
    one_cell_notebook,
    open_and_run,
    open_widget,
    voila_server,
)

REPO = Path(__file__).resolve().parents[1]
SCREENSHOTS = REPO / "artifacts" / "screenshots"
NOTEBOOK = "01_quickstart.ipynb"
# Chromium's own noise, not ours: Notebook 7 logs one harmless error on load (environment.md).
HARMLESS = ("ResizeObserver loop",)

READ_CELLS = """([side]) => {
  const view = document.querySelector('.simvis-pair').__simvis;
  const panel = view[side];
  const ctx = panel.heat.getContext('2d');
  const data = ctx.getImageData(0, 0, panel.W, panel.H).data;
  const out = [];
  for (let r = 0; r < panel.gh; r++) for (let c = 0; c < panel.gw; c++) {
    const x = Math.floor(((c + 0.5) * panel.W) / panel.gw), y = Math.floor(((r + 0.5) * panel.H) / panel.gh);
    const k = 4 * (y * panel.W + x);
    out.push([data[k], data[k + 1], data[k + 2], data[k + 3]]);
  }
  return { rgba: out, lut: Array.from(view.lut), grid: [panel.gh, panel.gw] };
}"""


def lut_index(rgba: list[list[int]], lut: list[int]) -> np.ndarray:
    """Decode canvas colours to colour-table indices (0..255); -1 where nothing is drawn."""
    table = np.asarray(lut, float).reshape(256, 3)
    px = np.asarray(rgba, float)
    idx = np.argmin(((px[:, None, :3] - table[None]) ** 2).sum(-1), axis=1)
    return np.where(px[:, 3] > 0, idx, -1)


def expected_index(values: Any) -> np.ndarray:
    v = np.asarray(values, float).ravel()
    return np.round(((v / np.abs(v).max()) + 1) / 2 * 255).astype(int)


def heat_indices(page: Any, side: str) -> np.ndarray:
    out = page.evaluate(READ_CELLS, [side])
    return lut_index(out["rgba"], out["lut"])


def cell_position(page: Any, widget: Any, side: str, row: int, col: int) -> tuple[float, float]:
    canvas = widget.locator(f'[data-testid="mark-{side}"]')
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    gh, gw = page.evaluate(
        f"() => {{ const p = document.querySelector('.simvis-pair').__simvis.{side}; return [p.gh, p.gw]; }}"
    )
    return box["x"] + (col + 0.5) * box["width"] / gw, box["y"] + (row + 0.5) * box["height"] / gh


def wait_for_draw(page: Any, before: int) -> None:
    page.wait_for_function(
        f"() => Number(document.querySelector('.simvis-pair').dataset.draws) > {before}", timeout=10_000
    )


def draws(page: Any) -> int:
    return int(page.evaluate("() => Number(document.querySelector('.simvis-pair').dataset.draws || 0)"))


def hover_cell(page: Any, widget: Any, side: str, row: int, col: int) -> None:
    before = draws(page)
    x, y = cell_position(page, widget, side, row, col)
    page.mouse.move(x, y)
    wait_for_draw(page, before)


def assert_map_shown(page: Any, side: str, expected: Any) -> None:
    """The heat layer of ``side`` shows ``expected`` (cell values): same colours at every cell centre within
    2 steps of the 256-entry table, and its peak cell is the expected one."""
    got = heat_indices(page, side)
    want = expected_index(expected)
    assert (got >= 0).all(), "the heat layer is empty"
    assert np.abs(got - want).max() <= 2, f"max colour-index difference {np.abs(got - want).max()}"
    assert want[int(np.argmax(got))] >= want.max() - 2, "the brightest cell shown is not the expected peak"


@pytest.fixture(scope="module")
def reference() -> sv.Explanation:
    """The quickstart's pair, explained here, independently of the kernel."""
    session = sv.ModelSession.from_pretrained("efficientnet_lite0", device="cpu")
    photos = sv.datasets.demo_images()
    return session.explain(photos["motorcycle_left"], photos["motorcycle_right"])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("notebooks")
    shutil.copy(REPO / "notebooks" / NOTEBOOK, root / NOTEBOOK)
    with jupyter_server(root, tmp_path_factory.mktemp("jupyter")) as srv:
        yield srv


def _page_errors(page: Any) -> list[str]:
    return [e for e in page.errors if not any(h in e for h in HARMLESS)]


def test_jupyterlab_hover_and_paint(server: Any, reference: sv.Explanation, tmp_path: Path) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with chromium(tmp_path) as page:
        widget = open_widget(page, server.lab(NOTEBOOK), ".simvis-pair[data-ready]")
        assert page.evaluate("() => document.querySelector('.simvis-pair').__simvis.a.gw") == reference.grid_a[1]
        assert_map_shown(page, "a", reference.map_a)  # overview, shared scale
        widget.screenshot(path=str(SCREENSHOTS / "lab_overview.png"))

        widget.get_by_role("button", name="Hover").click()
        for row, col in [(9, 16), (3, 4)]:  # the front wheel, then the shelves
            hover_cell(page, widget, "a", row, col)
            assert_map_shown(page, "b", reference.point_map("a", row, col))
            assert heat_indices(page, "a").max() == -1  # the hovered image shows only the marker
        widget.screenshot(path=str(SCREENSHOTS / "lab_hover.png"))
        hover_cell(page, widget, "b", 10, 5)  # the other direction
        assert_map_shown(page, "a", reference.point_map("b", 10, 5))
        printed = kernel_exec(page, "print(explorer.hover_b, explorer.hover_a, explorer.mode)")
        assert printed.split() == ["[10,", "5]", "[]", "hover"]
        before = draws(page)
        kernel_exec(page, "explorer.hover_b = []; explorer.hover_a = [6, 7]")  # Python drives the view too
        wait_for_draw(page, before)
        page.wait_for_function("() => document.querySelector('.simvis-pair').__simvis.model.get('hover_a')[0] === 6")
        assert_map_shown(page, "b", reference.point_map("a", 6, 7))

        widget.get_by_role("button", name="Paint").click()
        x0, y0 = cell_position(page, widget, "a", 9, 14)
        x1, y1 = cell_position(page, widget, "a", 10, 18)
        before = draws(page)
        page.mouse.move(x0, y0)
        page.mouse.down()
        page.mouse.move(x1, y1, steps=12)
        wait_for_draw(page, before)
        assert heat_indices(page, "b").max() >= 0  # the region map shows while the stroke is drawn
        page.mouse.up()
        page.wait_for_timeout(300)
        shown = json.loads(
            kernel_exec(
                page,
                (
                    "import json\n"
                    "w = explorer.explanation.region_weights('a', explorer.mask_a)\n"
                    "print(json.dumps({'weights': w.tolist(), 'score': explorer.region_score('a')}))"
                ),
            )
        )
        weights = np.asarray(shown["weights"])
        assert weights[9, 14] > 0.9 and weights[10, 18] > 0.9 and weights.sum() > 4  # the stroke reached Python
        assert shown["score"] == pytest.approx(reference.region_score("a", weights), rel=1e-4)
        assert_map_shown(page, "b", reference.region_map("a", weights))
        info = widget.locator('[data-testid="info"]').inner_text()
        assert f"{shown['score']:+.4f}" in info
        widget.screenshot(path=str(SCREENSHOTS / "lab_paint.png"))
        assert _page_errors(page) == []


def test_notebook7_hover_and_paint(server: Any, reference: sv.Explanation, tmp_path: Path) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with chromium(tmp_path) as page:
        open_and_run(page, server.classic(NOTEBOOK))
        page.errors.clear()  # Notebook 7 logs errors of its own while loading (environment.md); ours come later
        widget = open_widget(page, None, ".simvis-pair[data-ready]")
        page.keyboard.press("Escape")
        widget.focus()
        page.keyboard.press("h")  # the widget's own shortcut, not Jupyter's
        page.wait_for_function("() => document.querySelector('.simvis-pair').dataset.mode === 'hover'")
        hover_cell(page, widget, "a", 9, 16)
        assert_map_shown(page, "b", reference.point_map("a", 9, 16))
        widget.get_by_role("button", name="Paint").click()
        x0, y0 = cell_position(page, widget, "b", 8, 15)
        x1, y1 = cell_position(page, widget, "b", 9, 17)
        page.mouse.move(x0, y0)
        page.mouse.down()
        page.mouse.move(x1, y1, steps=8)
        page.mouse.up()
        page.wait_for_timeout(300)
        printed = kernel_exec(page, "print(explorer.mask_b is not None, round(float(explorer.mask_b.sum())))")
        ok, pixels = printed.split()
        assert ok == "True" and int(pixels) > 100
        assert heat_indices(page, "a").max() >= 0
        widget.screenshot(path=str(SCREENSHOTS / "notebook7_paint.png"))
        assert _page_errors(page) == []


def test_static_html_export_keeps_hover(tmp_path: Path, reference: sv.Explanation) -> None:
    explorer = sv.PairExplorer.from_explanation(reference)
    path = explorer.to_html(tmp_path / "pair.html")
    with chromium(tmp_path) as page:
        page.goto(path.as_uri())
        page.wait_for_selector(".simvis-pair[data-ready]", timeout=30_000)
        widget = page.locator(".simvis-pair").first
        assert_map_shown(page, "b", reference.map_b)
        widget.get_by_role("button", name="Hover").click()
        hover_cell(page, widget, "a", 9, 16)
        assert_map_shown(page, "b", reference.point_map("a", 9, 16))
        hover_cell(page, widget, "a", 2, 2)
        assert_map_shown(page, "b", reference.point_map("a", 2, 2))
        assert _page_errors(page) == []
        # Without the tests' init script (a new page) the widget works and keeps its view to itself.
        plain = page.context.new_page()
        plain.goto(path.as_uri())
        plain.wait_for_selector(".simvis-pair[data-ready]", timeout=30_000)
        assert plain.evaluate("() => document.querySelector('.simvis-pair').__simvis === undefined")
        assert page.evaluate("() => document.querySelector('.simvis-pair').__simvis !== undefined")


RESULTS = """() => {
  const view = document.querySelector('.simvis-explorer').__simvis;
  const cards = [...document.querySelectorAll('.simvis-explorer .sv-card')];
  return { version: Number(view.root.dataset.strip || 0), indices: cards.map((c) => Number(c.dataset.index)),
           texts: cards.map((c) => c.querySelector('.sv-card-text').textContent), selected: view.model.get('selected'),
           ready: Number(view.root.dataset.ready || 0) };
}"""


def _result_heat(page: Any, rank: int) -> list[int]:
    return page.evaluate(f"""() => {{
      const c = document.querySelector('.simvis-explorer [data-testid="hit-heat-{rank}"]');
      return Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data.filter((_, k) => k % 16 === 0));
    }}""")


def test_retrieval_strip_follows_the_brush_and_opens_the_pair(server: Any, tmp_path: Path) -> None:
    """Notebook 02's RetrievalExplorer (the Explorer's view in paint mode): painting on the query re-ranks the strip
    mid-stroke exactly as ``Gallery.search`` does, and a click puts the hit on the right next to the query."""
    notebook = "02_region_retrieval.ipynb"
    shutil.copy(REPO / "notebooks" / notebook, server.root / notebook)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with chromium(tmp_path, viewport=(1400, 1200)) as page:
        widget = open_widget(page, server.lab(notebook), ".simvis-explorer[data-ready]")
        page.wait_for_function("() => document.querySelectorAll('.simvis-explorer .sv-card').length === 8")
        assert page.evaluate("() => document.querySelector('.simvis-explorer').dataset.mode") == "paint"
        before = page.evaluate(RESULTS)
        kernel_scores = json.loads(
            kernel_exec(page, "import json; print(json.dumps([round(h.score, 4) for h in explorer.results]))")
        )
        assert [float(t.split()[1]) for t in before["texts"]] == pytest.approx(kernel_scores, abs=1e-4)
        heat_before = _result_heat(page, 0)

        canvas = widget.locator('[data-testid="mark-a"]')  # the query
        canvas.scroll_into_view_if_needed()
        box = canvas.bounding_box()
        page.mouse.move(box["x"] + 0.62 * box["width"], box["y"] + 0.65 * box["height"])
        page.mouse.down()
        page.mouse.move(box["x"] + 0.85 * box["width"], box["y"] + 0.9 * box["height"], steps=15)
        # The strip refreshes while the stroke is still being drawn (throttled sends).
        page.wait_for_function(
            f"() => Number(document.querySelector('.simvis-explorer').dataset.strip) > {before['version']}",
            timeout=20_000,
        )
        page.mouse.up()
        page.wait_for_timeout(800)
        after = page.evaluate(RESULTS)
        printed = json.loads(
            kernel_exec(
                page,
                (
                    "import json\n"
                    "mask = explorer.mask_a\n"
                    "hits = gallery.search(explorer.explanation.image_a, mask=mask, k=9, exclude_self=False)\n"
                    "print(json.dumps({'shown': [h.index for h in explorer.results], 'scores': [h.score for h in explorer.results],"
                    " 'expected': [h.index for h in hits if h.index != 0][:8], 'mask': float(mask.mean()), 'mode': explorer.rank_by}))"
                ),
            )
        )
        assert printed["mode"] == "region" and printed["mask"] > 0.01  # the painted mask reached Python
        assert after["indices"] == printed["shown"] == printed["expected"]  # exact region ranking, as shown
        assert [float(t.split()[1]) for t in after["texts"]] == pytest.approx(
            [round(s, 4) for s in printed["scores"]], abs=1e-4
        )
        assert _result_heat(page, 0) != heat_before  # the heatmaps now show where the region is matched
        widget.screenshot(path=str(SCREENSHOTS / "lab_retrieval.png"))

        chosen = next(i for i in after["indices"][1:] if i != after["selected"])
        widget.locator(f'.sv-card[data-index="{chosen}"]').click()
        page.wait_for_function(
            f"() => Number(document.querySelector('.simvis-explorer').dataset.ready) > {after['ready']}",
            timeout=60_000,
        )
        shown = json.loads(
            kernel_exec(
                page,
                "import json; print(json.dumps([explorer.selected, explorer.explanation.score,"
                f" gallery.explain(query, {chosen}).score, session.explain(query, gallery.image({chosen})).score,"
                " explorer.mask_a is not None]))",
            )
        )
        selected, pair_score, stored, fresh, mask_kept = shown
        assert selected == chosen and mask_kept  # the hit is on the right; the query's painted region stays
        assert pair_score == pytest.approx(stored, rel=1e-6)  # the gallery's stored features
        assert pair_score == pytest.approx(fresh, rel=2e-3)  # an independent explanation, float32 features
        assert (
            widget.locator(f'.sv-card[data-index="{chosen}"]').get_attribute("class").split().count("sv-selected") == 1
        )
        readout = widget.locator("[data-testid='readout']").inner_text()
        assert f"score {pair_score:.4f}" in readout
        assert _page_errors(page) == []


COMPARE_NOTEBOOK = one_cell_notebook(
    "import simvis_widgets as sv\n"
    "session = sv.ModelSession.from_pretrained('efficientnet_lite0', size=224)\n"
    "photos = sv.datasets.demo_images()\n"
    "compare = sv.CompareExplorer([session, session.variant(pooling='max'), session.variant(pooling='gem')],\n"
    "                             photos['motorcycle_left'], photos['motorcycle_right'])\n"
    "compare"
)


def test_compare_explorer_hover_drives_every_row(server: Any, tmp_path: Path) -> None:
    (server.root / "compare.ipynb").write_text(json.dumps(COMPARE_NOTEBOOK))
    session = sv.ModelSession.from_pretrained("efficientnet_lite0", size=224, device="cpu")
    photos = sv.datasets.demo_images()
    sessions = [session, session.variant(pooling="max"), session.variant(pooling="gem")]
    refs = [s.explain(photos["motorcycle_left"], photos["motorcycle_right"]) for s in sessions]
    with chromium(tmp_path) as page:
        widget = open_widget(page, server.lab("compare.ipynb"), ".simvis-compare[data-ready]")
        read = """([row, side]) => {
          const view = document.querySelector('.simvis-compare').__simvis;
          const panel = view.rows[row][side];
          const data = panel.heat.getContext('2d').getImageData(0, 0, panel.W, panel.H).data;
          const out = [];
          for (let r = 0; r < panel.gh; r++) for (let c = 0; c < panel.gw; c++) {
            const k = 4 * (Math.floor(((r + 0.5) * panel.H) / panel.gh) * panel.W + Math.floor(((c + 0.5) * panel.W) / panel.gw));
            out.push([data[k], data[k + 1], data[k + 2], data[k + 3]]);
          }
          return { rgba: out, lut: Array.from(view.lut) };
        }"""
        shared = max(float(ex.map_a.abs().max()) for ex in refs)
        shared = max(shared, max(float(ex.map_b.abs().max()) for ex in refs))
        for row, ex in enumerate(refs):  # overview: every row on ONE scale
            out = page.evaluate(read, [row, "a"])
            got = lut_index(out["rgba"], out["lut"])
            want = np.round((ex.map_a.numpy().ravel() / shared + 1) / 2 * 255)
            assert np.abs(got - want).max() <= 2
        widget.get_by_role("button", name="Hover").click()
        canvas = widget.locator('[data-testid="mark-1-a"]')  # hover in the max-pooling row
        canvas.scroll_into_view_if_needed()
        box = canvas.bounding_box()
        gh, gw = refs[1].grid_a
        row_cell, col_cell = 4, 7
        before = int(page.evaluate("() => Number(document.querySelector('.simvis-compare').dataset.draws)"))
        page.mouse.move(
            box["x"] + (col_cell + 0.5) * box["width"] / gw, box["y"] + (row_cell + 0.5) * box["height"] / gh
        )
        page.wait_for_function(f"() => Number(document.querySelector('.simvis-compare').dataset.draws) > {before}")
        rows = [page.evaluate(read, [row, "b"]) for row in range(3)]
        points = [ex.point_map("a", row_cell, col_cell).numpy().ravel() for ex in refs]
        vmax = max(np.abs(p).max() for p in points)
        for out, expected in zip(rows, points):  # every row shows its own row of P for the same cell
            got = lut_index(out["rgba"], out["lut"])
            assert np.abs(got - np.round((expected / vmax + 1) / 2 * 255)).max() <= 2
        captions = [widget.locator(f'[data-testid="row-caption-{i}"]').inner_text() for i in range(3)]
        assert all(f"cell ({row_cell}, {col_cell})" in c for c in captions)
        widget.screenshot(path=str(SCREENSHOTS / "lab_compare.png"))
        assert _page_errors(page) == []


def test_static_html_export_survives_script_breaking_strings(tmp_path: Path) -> None:
    """A model name holding ``<!--<script>`` and ``</script>`` once put the page's JSON into the tokenizer's
    script-data escape states: Chromium swallowed the rest of the page and showed nothing. The widget must
    render, and show the name exactly; a widget whose own module holds such text must run too."""
    from test_static_html import NASTY, _Hostile, nasty_explorer

    from simvis_widgets.widgets.static_html import write_static_html

    explorer = nasty_explorer()
    path = explorer.to_html(tmp_path / "nasty.html")
    with chromium(tmp_path) as page:
        page.goto(path.as_uri())
        page.wait_for_selector(".simvis-pair[data-ready]", timeout=30_000)
        widget = page.locator(".simvis-pair").first
        assert widget.locator("canvas").count() >= 2
        assert widget.locator('[data-testid="mark-a"]').bounding_box()["width"] > 0
        assert NASTY in widget.locator('[data-testid="readout"] .sv-score').text_content()
        assert_map_shown(page, "b", explorer.explanation.map_b)
        assert _page_errors(page) == []

        hostile = write_static_html(_Hostile(), tmp_path / "hostile.html", "hostile")
        page.goto(hostile.as_uri())
        page.wait_for_function("() => document.getElementById('simvis-root').textContent.length > 0", timeout=30_000)
        text = page.evaluate("() => document.getElementById('simvis-root').textContent")
        assert text == "<!--<script></SCRIPT ></script&amp;false" + NASTY
        assert _page_errors(page) == []


def test_make_demo_prints_a_url_that_opens_the_quickstart(tmp_path: Path) -> None:
    """``make demo``'s printed URL once landed on JupyterLab's launcher. It must name the quickstart notebook,
    and the page it serves must open it (``treePath``); ``PORT`` and ``JUPYTER_ARGS`` still apply."""
    import os
    import queue
    import re
    import signal
    import subprocess
    import threading
    import time
    import urllib.parse
    import urllib.request

    from jupyter_browser import free_port

    make = shutil.which("make")
    if make is None:
        pytest.skip("make is not installed")
    port = free_port()
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
    }
    proc = subprocess.Popen(
        [make, "--no-print-directory", "demo", f"PORT={port}", "JUPYTER_ARGS=--no-browser"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    assert proc.stdout is not None
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    try:
        url, seen = None, []
        while url is None:
            line = lines.get(timeout=120)
            seen.append(line)
            match = re.search(rf"http://127\.0\.0\.1:{port}/\S+", line)
            url = match.group(0) if match else None
            assert proc.poll() is None or not lines.empty(), "".join(seen)
        parts = urllib.parse.urlsplit(url)
        assert parts.path == "/lab/tree/01_quickstart.ipynb" and "token=" in parts.query, url
        page, deadline = None, time.monotonic() + 60
        while page is None:  # the server logs its URL just before it binds the port
            try:
                with urllib.request.urlopen(url, timeout=30) as response:
                    page = response.read().decode()
            except OSError as err:
                assert time.monotonic() < deadline and proc.poll() is None, f"{url}: {err}\n{''.join(seen)}"
                time.sleep(0.2)
        config = json.loads(
            re.search(r'<script id="jupyter-config-data" type="application/json">(.*?)</script>', page, re.S).group(1)
        )
        assert config["treePath"] == "01_quickstart.ipynb"
        assert Path(config["serverRoot"]) == REPO / "notebooks"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


EXPLORER_SETUP = (
    "import simvis_widgets as sv\n"
    "session = sv.ModelSession.from_pretrained('efficientnet_lite0', size=224, device='cpu')\n"
    "views = sv.datasets.demo_views(views_per_photo=3, short_side=224,"
    " photos=('motorcycle_left', 'chelsea', 'coffee', 'astronaut'))\n"
    "query = views.images[0]\n"
)
EXPLORER_NOTEBOOK = one_cell_notebook(
    EXPLORER_SETUP
    + "gallery = sv.Gallery.build(views.images, session, labels=views.groups, progress=False)\n"
    + "explorer = sv.Explorer(session, query, gallery=gallery, k=6)\nexplorer"
)

READ_EXPLORER = """() => {
  const view = document.querySelector('.simvis-explorer').__simvis;
  const sample = (canvas, gh, gw, at) => {
    const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
    const out = [];
    for (let r = 0; r < gh; r++) for (let c = 0; c < gw; c++) {
      const [x, y] = at(r, c);
      const k = 4 * (y * canvas.width + x);
      out.push([data[k], data[k + 1], data[k + 2], data[k + 3]]);
    }
    return out;
  };
  const b = view.b;
  const right = sample(b.heat, b.gh, b.gw, (r, c) => [Math.floor(((c + 0.5) * b.W) / b.gw), Math.floor(((r + 0.5) * b.H) / b.gh)]);
  const hits = view.order.map((h) => ({
    index: h.index,
    vmax: h.vmax,
    rgba: sample(h.heat, h.gh, h.gw, (r, c) => [c * h.per + (h.per - 1) / 2, r * h.per + (h.per - 1) / 2]),
  }));
  return { right, hits, vmax: b.vmax, lut: Array.from(view.lut), selected: view.model.get('selected'),
           strip: Number(view.root.dataset.strip || 0), draws: Number(view.root.dataset.draws || 0) };
}"""


def _explorer_state(page: Any) -> dict[str, Any]:
    return dict(page.evaluate(READ_EXPLORER))


def _assert_all_maps(state: dict[str, Any], right: np.ndarray, strip: dict[int, np.ndarray]) -> None:
    """The right-hand canvas shows ``right`` and each thumbnail its map in ``strip`` (by gallery index), all on the
    one scale of the largest magnitude among them, within 2 steps of the colour table."""
    vmax = max(np.abs(right).max(), *(np.abs(m).max() for m in strip.values()))
    assert state["vmax"] == pytest.approx(vmax, rel=5e-3)  # the gallery's float16 features, nothing else
    want = lambda v: np.round((np.asarray(v, float).ravel() / vmax + 1) / 2 * 255)  # noqa: E731
    got = lut_index(state["right"], state["lut"])
    assert (got >= 0).all() and np.abs(got - want(right)).max() <= 2, "right-hand canvas"
    assert sorted(h["index"] for h in state["hits"]) == sorted(strip)
    for hit in state["hits"]:
        got = lut_index(hit["rgba"], state["lut"])
        assert hit["vmax"] == pytest.approx(state["vmax"], rel=1e-6)
        assert (got >= 0).all() and np.abs(got - want(strip[hit["index"]])).max() <= 2, f"thumbnail {hit['index']}"


def _explorer_cell(page: Any, widget: Any, row: int, col: int) -> tuple[float, float]:
    canvas = widget.locator('[data-testid="mark-a"]')
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    gh, gw = page.evaluate(
        "() => { const p = document.querySelector('.simvis-explorer').__simvis.a; return [p.gh, p.gw]; }"
    )
    return box["x"] + (col + 0.5) * box["width"] / gw, box["y"] + (row + 0.5) * box["height"] / gh


@pytest.fixture(scope="module")
def explorer_reference() -> dict[str, Any]:
    """The notebook's session, views and query, made here independently of the kernel."""
    scope: dict[str, Any] = {}
    exec(EXPLORER_SETUP, scope)
    return scope


def _hover_query_check_maps(
    page: Any, widget: Any, reference: dict[str, Any], row: int, col: int
) -> tuple[dict[str, Any], dict[int, np.ndarray]]:
    """Hover cell (row, col) of the query with the mouse; the right-hand canvas and every thumbnail (at least two)
    must change and show that cell's row of P, as independent ``session.explain`` calls predict. Returns the
    widget's state and those maps by gallery index."""
    session, views, query = (reference[k] for k in ("session", "views", "query"))
    widget.get_by_role("button", name="Hover").click()
    page.wait_for_function("() => document.querySelector('.simvis-explorer').dataset.mode === 'hover'")
    before = _explorer_state(page)
    page.mouse.move(*_explorer_cell(page, widget, row, col))
    page.wait_for_function(
        f"() => Number(document.querySelector('.simvis-explorer').dataset.draws) > {before['draws']}"
    )
    state = _explorer_state(page)
    assert len(state["hits"]) >= 2
    assert state["right"] != before["right"], "the right-hand canvas did not change"
    old = {h["index"]: h["rgba"] for h in before["hits"]}
    assert all(h["rgba"] != old.get(h["index"]) for h in state["hits"]), "a thumbnail did not change"
    point = {
        i: session.explain(query, views.images[i]).point_map("a", row, col).numpy() for i in range(len(views.images))
    }
    _assert_all_maps(state, point[state["selected"]], {h["index"]: point[h["index"]] for h in state["hits"]})
    return state, point


def _click_thumbnail_check_swap(
    page: Any, widget: Any, state: dict[str, Any], point: dict[int, np.ndarray]
) -> tuple[int, dict[str, Any]]:
    """Click a thumbnail other than the selected image: it becomes the right-hand image, and with the query's
    hovered cell kept, the right canvas shows its map. Returns the chosen gallery index and the new state."""
    chosen = next(h["index"] for h in state["hits"] if h["index"] != state["selected"])
    ready = int(page.evaluate("() => Number(document.querySelector('.simvis-explorer').dataset.ready)"))
    widget.locator(f'.sv-card[data-index="{chosen}"]').click()
    page.wait_for_function(f"() => Number(document.querySelector('.simvis-explorer').dataset.ready) > {ready}")
    state = _explorer_state(page)
    assert state["selected"] == chosen
    assert widget.locator(f'.sv-card[data-index="{chosen}"]').get_attribute("class").split().count("sv-selected") == 1
    _assert_all_maps(state, point[chosen], {h["index"]: point[h["index"]] for h in state["hits"]})
    return chosen, state


def test_explorer_hover_drives_every_map_click_selects_paint_reranks(
    server: Any, explorer_reference: dict[str, Any], tmp_path: Path
) -> None:
    (server.root / "explorer.ipynb").write_text(json.dumps(EXPLORER_NOTEBOOK))
    session, views, query = (explorer_reference[k] for k in ("session", "views", "query"))
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with chromium(tmp_path, viewport=(1400, 1200)) as page:
        widget = open_widget(page, server.lab("explorer.ipynb"), ".simvis-explorer[data-ready]")
        page.wait_for_function("() => document.querySelector('.simvis-explorer').__simvis.order.length === 6")
        row, col = 3, 2
        state, point = _hover_query_check_maps(page, widget, explorer_reference, row, col)
        chosen, state = _click_thumbnail_check_swap(page, widget, state, point)
        printed = json.loads(
            kernel_exec(page, "import json; print(json.dumps([explorer.selected, explorer.score, explorer.hover_a]))")
        )
        assert printed[0] == chosen and printed[2] == [row, col]  # the query's hovered cell stays
        assert printed[1] == pytest.approx(session.explain(query, views.images[chosen]).score, rel=2e-3)
        widget.screenshot(path=str(SCREENSHOTS / "explorer_hover.png"))

        widget.get_by_role("button", name="Paint").click()
        x0, y0 = _explorer_cell(page, widget, 4, 1)
        x1, y1 = _explorer_cell(page, widget, 5, 5)
        strip_before = state["strip"]
        page.mouse.move(x0, y0)
        page.mouse.down()
        page.mouse.move(x1, y1, steps=15)
        page.wait_for_function(  # the strip re-ranks while the stroke is still being drawn
            f"() => Number(document.querySelector('.simvis-explorer').dataset.strip) > {strip_before}", timeout=20_000
        )
        page.mouse.up()
        page.wait_for_timeout(1000)
        printed = json.loads(
            kernel_exec(
                page,
                (
                    "import json\n"
                    "w = explorer.explanation.region_weights('a', explorer.mask_a)\n"
                    "enc = session.encode(query)\n"
                    "hits = gallery.search_features(enc.features, w, k=6, exclude=enc.hash)\n"
                    "print(json.dumps({'shown': [h.index for h in explorer.results], 'expected': [h.index for h in hits],"
                    " 'weights': w.tolist(), 'mask': float(explorer.mask_a.mean())}))"
                ),
            )
        )
        assert printed["mask"] > 0.01 and printed["shown"] == printed["expected"]  # what Gallery.search ranks
        state = _explorer_state(page)
        assert [h["index"] for h in state["hits"]] == printed["shown"]
        weights = np.asarray(printed["weights"])
        region = {
            i: session.explain(query, views.images[i]).region_map("a", weights).numpy()
            for i in {*printed["shown"], chosen}
        }
        _assert_all_maps(state, region[chosen], {i: region[i] for i in printed["shown"]})
        widget.screenshot(path=str(SCREENSHOTS / "explorer.png"))

        widget.get_by_role("button", name="Clear").click()
        widget.locator('[data-testid="box"]').check()  # a box selection, live as well
        strip_before = _explorer_state(page)["strip"]
        page.mouse.move(*_explorer_cell(page, widget, 1, 4))
        page.mouse.down()
        page.mouse.move(*_explorer_cell(page, widget, 4, 6), steps=10)
        page.wait_for_function(
            f"() => Number(document.querySelector('.simvis-explorer').dataset.strip) > {strip_before}", timeout=20_000
        )
        page.mouse.up()
        page.wait_for_timeout(1000)
        printed = json.loads(
            kernel_exec(
                page,
                (
                    "import json, numpy as np\n"
                    "m = explorer.mask_a\n"
                    "ys, xs = np.nonzero(m)\n"
                    "w = explorer.explanation.region_weights('a', m)\n"
                    "enc = session.encode(query)\n"
                    "hits = gallery.search_features(enc.features, w, k=6, exclude=enc.hash)\n"
                    "print(json.dumps({'shown': [h.index for h in explorer.results], 'expected': [h.index for h in hits],"
                    " 'box': bool(m[ys.min():ys.max() + 1, xs.min():xs.max() + 1].all()), 'cells': w.tolist()}))"
                ),
            )
        )
        assert printed["box"] and printed["shown"] == printed["expected"]  # a filled rectangle, ranked exactly
        cells = np.asarray(printed["cells"])
        # centre of cell (1, 4) to centre of cell (4, 6): half of the edge cells, a quarter of the corners
        assert cells[2:4, 5].min() > 0.99 and 0.2 < cells[1, 4] < 0.35 and 0.4 < cells[2, 4] < 0.6
        assert cells[0].max() == cells[:, :4].max() == cells[5:].max() == cells[:, 7:].max() == 0
        assert [h["index"] for h in _explorer_state(page)["hits"]] == printed["shown"]
        assert _page_errors(page) == []


def test_explorer_static_html_hovers_every_map(explorer_reference: dict[str, Any], tmp_path: Path) -> None:
    session, views, query = (explorer_reference[k] for k in ("session", "views", "query"))
    gallery = sv.Gallery.build(views.images, session, progress=False)
    path = sv.Explorer(session, query, gallery=gallery, k=4).to_html(tmp_path / "explorer.html")
    with chromium(tmp_path) as page:
        page.goto(path.as_uri())
        page.wait_for_selector(".simvis-explorer[data-ready]", timeout=30_000)
        page.wait_for_function("() => document.querySelector('.simvis-explorer').__simvis.order.length === 4")
        widget = page.locator(".simvis-explorer").first
        widget.get_by_role("button", name="Hover").click()
        for row, col in [(1, 1), (5, 4)]:
            before = _explorer_state(page)["draws"]
            page.mouse.move(*_explorer_cell(page, widget, row, col))
            page.wait_for_function(f"() => Number(document.querySelector('.simvis-explorer').dataset.draws) > {before}")
            state = _explorer_state(page)
            point = {
                h["index"]: session.explain(query, views.images[h["index"]]).point_map("a", row, col).numpy()
                for h in state["hits"]
            }
            right = session.explain(query, views.images[state["selected"]]).point_map("a", row, col).numpy()
            _assert_all_maps(state, right, point)
        assert _page_errors(page) == []


def test_notebook7_explorer_hover_drives_every_map(
    server: Any, explorer_reference: dict[str, Any], tmp_path: Path
) -> None:
    (server.root / "explorer.ipynb").write_text(json.dumps(EXPLORER_NOTEBOOK))
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with chromium(tmp_path, viewport=(1400, 1200)) as page:
        open_and_run(page, server.classic("explorer.ipynb"))
        page.errors.clear()  # Notebook 7 logs errors of its own while loading (environment.md); ours come later
        widget = open_widget(page, None, ".simvis-explorer[data-ready]")
        page.wait_for_function("() => document.querySelector('.simvis-explorer').__simvis.order.length === 6")
        assert page.evaluate("() => window.jupyterapp.name") == "Jupyter Notebook"  # Notebook 7, not JupyterLab
        _hover_query_check_maps(page, widget, explorer_reference, 4, 5)
        widget.screenshot(path=str(SCREENSHOTS / "notebook7_explorer.png"))
        assert _page_errors(page) == []


VOILA_TEMPLATE_CDN = "https://cdn.jsdelivr.net/npm/@fortawesome/fontawesome-free@"


def test_voila_explorer_hover_and_click(explorer_reference: dict[str, Any], tmp_path: Path) -> None:
    """Voilà renders the Explorer through anywidget's JupyterLab extension, served by Voilà itself (offline: every
    request leaving the server is refused); hovering the query drives every map and a click swaps the pair, with
    Voilà's kernel."""
    notebook = tmp_path / "notebooks" / "explorer.ipynb"
    notebook.parent.mkdir()
    notebook.write_text(json.dumps(EXPLORER_NOTEBOOK))
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with voila_server(notebook, tmp_path / "voila") as url, chromium(tmp_path, viewport=(1400, 1200)) as page:
        served: list[str] = []
        outside: list[str] = []  # offline: every request that leaves the server fails, and is recorded

        def offline(route: Any) -> None:
            if route.request.url.startswith(url):
                served.append(route.request.url)
                route.continue_()
            else:
                outside.append(route.request.url)
                route.abort()

        page.route("**/*", offline)
        page.goto(url)
        widget = open_widget(page, None, ".simvis-explorer[data-ready]", timeout_s=240)
        page.wait_for_function("() => document.querySelector('.simvis-explorer').__simvis.order.length === 6")
        state, point = _hover_query_check_maps(page, widget, explorer_reference, 3, 2)
        _click_thumbnail_check_swap(page, widget, state, point)
        widget.screenshot(path=str(SCREENSHOTS / "voila_explorer.png"))
        assert any("/labextensions/anywidget/" in u for u in served), served  # the front end came from the server
        # Voilà's own page template links Font Awesome from a CDN (its bundle carries the fonts too); nothing else,
        # in particular no widget code, comes from outside.
        assert all(u.startswith(VOILA_TEMPLATE_CDN) for u in outside), f"requests outside the Voilà server: {outside}"
        assert _page_errors(page) == []
