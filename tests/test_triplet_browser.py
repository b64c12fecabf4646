"""TripletExplorer in a real browser (JupyterLab 4 + headless Chromium, and the static HTML export): hover an
anchor cell and paint a region with the mouse, read the P and N canvases back through the colour table, and
compare with an ExplainedTriplet computed independently in this test process. Takes the README's screenshot."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import simvis_widgets as sv
from simvis_widgets.triplet import ExplainedTriplet

from jupyter_browser import chromium, jupyter_server, kernel_exec, one_cell_notebook, open_widget

REPO = Path(__file__).resolve().parents[1]
SCREENSHOT = REPO / "docs" / "img" / "triplet_explorer.png"
HARMLESS = ("ResizeObserver loop",)
SELECTOR = ".simvis-triplet[data-ready]"
IMAGES = ("motorcycle_left", "motorcycle_right", "chelsea")  # anchor, positive, negative

NOTEBOOK = one_cell_notebook(
    "import simvis_widgets as sv\n"
    "session = sv.ModelSession.from_pretrained('efficientnet_lite0', size=224)\n"
    "photos = sv.datasets.demo_images()\n"
    f"triplet = sv.TripletExplorer(session, *(photos[k] for k in {IMAGES!r}))\n"
    "triplet"
)

READ = """(side) => {
  const view = document.querySelector('.simvis-triplet').__simvis;
  const panel = view[side];
  const data = panel.heat.getContext('2d').getImageData(0, 0, panel.W, panel.H).data;
  const out = [];
  for (let r = 0; r < panel.gh; r++) for (let c = 0; c < panel.gw; c++) {
    const x = Math.floor(((c + 0.5) * panel.W) / panel.gw), y = Math.floor(((r + 0.5) * panel.H) / panel.gh);
    const k = 4 * (y * panel.W + x);
    out.push([data[k], data[k + 1], data[k + 2], data[k + 3]]);
  }
  return { rgba: out, lut: Array.from(view.lut) };
}"""
DRAWS = "() => Number(document.querySelector('.simvis-triplet').dataset.draws || 0)"


@pytest.fixture(scope="module")
def reference() -> ExplainedTriplet:
    """The notebook's triplet, explained here, independently of the kernel."""
    session = sv.ModelSession.from_pretrained("efficientnet_lite0", size=224, device="cpu")
    photos = sv.datasets.demo_images()
    return session.explain_triplet(*(photos[k] for k in IMAGES))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("notebooks")
    (root / "triplet.ipynb").write_text(json.dumps(NOTEBOOK))
    with jupyter_server(root, tmp_path_factory.mktemp("jupyter")) as srv:
        yield srv


def shown_indices(page: Any, side: str) -> np.ndarray:
    """Colour-table index (0..255) at each cell centre of ``side``'s heat layer; -1 where nothing is drawn."""
    out = page.evaluate(READ, side)
    table = np.asarray(out["lut"], float).reshape(256, 3)
    px = np.asarray(out["rgba"], float)
    idx = np.argmin(((px[:, None, :3] - table[None]) ** 2).sum(-1), axis=1)
    return np.where(px[:, 3] > 0, idx, -1)


def assert_shown(page: Any, shown: dict[str, Any]) -> None:
    """Each side shows its values on ONE scale (the largest magnitude over all of them): every cell's colour
    within 2 steps of the 256-entry table."""
    vmax = max(float(np.abs(np.asarray(v)).max()) for v in shown.values())
    for side, values in shown.items():
        want = np.round((np.asarray(values, float).ravel() / vmax + 1) / 2 * 255).astype(int)
        got = shown_indices(page, side)
        assert (got >= 0).all(), f"the heat layer of {side} is empty"
        assert np.abs(got - want).max() <= 2, f"{side}: max colour-index difference {np.abs(got - want).max()}"


def move_to_cell(page: Any, widget: Any, row: int, col: int, gh: int, gw: int) -> tuple[float, float]:
    canvas = widget.locator('[data-testid="mark-a"]')
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    return box["x"] + (col + 0.5) * box["width"] / gw, box["y"] + (row + 0.5) * box["height"] / gh


def hover(page: Any, widget: Any, row: int, col: int, grid: tuple[int, int]) -> None:
    before = page.evaluate(DRAWS)
    page.mouse.move(*move_to_cell(page, widget, row, col, *grid))
    page.wait_for_function(f"() => ({DRAWS})() > {before}", timeout=10_000)


def errors(page: Any) -> list[str]:
    return [e for e in page.errors if not any(h in e for h in HARMLESS)]


def check_hover(page: Any, widget: Any, reference: ExplainedTriplet, cells: list[tuple[int, int]]) -> None:
    widget.get_by_role("button", name="Hover").click()
    D = reference.difference_map
    for row, col in cells:
        hover(page, widget, row, col, reference.positive.grid_a)
        on_p, on_n = reference.point_maps(row, col)
        assert_shown(page, {"b": on_p, "n": on_n})
        assert shown_indices(page, "a").max() == -1  # the anchor shows only the hovered cell's marker
        info = widget.locator('[data-testid="info"]').inner_text()
        assert f"Cell ({row}, {col})" in info and f"D = {float(D[row, col]):+.4f}" in info, info


def test_jupyterlab_hover_and_paint(server: Any, reference: ExplainedTriplet, tmp_path: Path) -> None:
    with chromium(tmp_path, viewport=(1400, 1000)) as page:
        widget = open_widget(page, server.lab("triplet.ipynb"), SELECTOR)
        gh, gw = reference.positive.grid_a
        assert (
            page.evaluate("() => document.querySelector('.simvis-triplet').__simvis.n.gw")
            == reference.negative.grid_b[1]
        )
        # overview: D on the anchor, each pair's map on P and N, one scale
        assert_shown(
            page, {"a": reference.difference_map, "b": reference.positive.map_b, "n": reference.negative.map_b}
        )
        readout = widget.locator('[data-testid="readout"]').inner_text()
        p, n = reference.positive.score, reference.negative.score
        assert f"s(A,P) = {p:.4f}" in readout and f"s(A,N) = {n:.4f}" in readout
        assert f"margin {p - n:+.4f}" in readout and "exact" in readout and "efficientnet_lite0" in readout
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        widget.screenshot(path=str(SCREENSHOT))

        check_hover(page, widget, reference, [(3, 2), (4, 5)])
        printed = kernel_exec(page, "print(triplet.hover_a, triplet.mode)")
        assert printed.split() == ["[4,", "5]", "hover"]
        before = page.evaluate(DRAWS)
        kernel_exec(page, "triplet.hover_a = [1, 6]")  # Python drives the view too
        page.wait_for_function(f"() => ({DRAWS})() > {before}", timeout=10_000)
        page.wait_for_function("() => document.querySelector('.simvis-triplet').__simvis.model.get('hover_a')[1] === 6")
        assert_shown(page, dict(zip("bn", reference.point_maps(1, 6))))

        widget.get_by_role("button", name="Paint").click()
        x0, y0 = move_to_cell(page, widget, 2, 1, gh, gw)
        x1, y1 = move_to_cell(page, widget, 4, 4, gh, gw)
        page.mouse.move(x0, y0)
        page.mouse.down()
        page.mouse.move(x1, y1, steps=12)
        page.mouse.up()
        page.wait_for_function("() => document.querySelector('.simvis-triplet').__simvis.model.get('mask_a') !== null")
        page.wait_for_timeout(300)
        shown = json.loads(
            kernel_exec(
                page,
                "import json\n"
                "w = triplet.explanation.region_weights('a', triplet.mask_a)\n"
                "print(json.dumps({'weights': w.tolist(), 'margin': triplet.region_margin()}))",
            )
        )
        weights = np.asarray(shown["weights"], np.float32)
        assert weights[2, 1] > 0.9 and weights[4, 4] > 0.9 and weights.sum() > 3  # the stroke reached Python
        assert shown["margin"] == pytest.approx(reference.region_margin(weights), abs=1e-5)
        assert shown["margin"] == pytest.approx(float((weights * reference.difference_map.numpy()).sum()), abs=1e-5)
        r_p, r_n = reference.region_maps(weights)
        assert_shown(page, {"b": r_p, "n": r_n})
        info = widget.locator('[data-testid="info"]').inner_text()
        m = re.search(r"its part of the margin ([+-]\d+\.\d{4})", info)
        assert m, info
        assert float(m.group(1)) == pytest.approx(shown["margin"], abs=1.5e-4)
        widget.screenshot(path=str(tmp_path / "triplet_paint.png"))
        assert errors(page) == []


def test_static_html_export_hovers_without_a_kernel(reference: ExplainedTriplet, tmp_path: Path) -> None:
    path = sv.TripletExplorer.from_triplet(reference).to_html(tmp_path / "triplet.html")
    with chromium(tmp_path) as page:
        page.goto(path.as_uri())
        page.wait_for_selector(SELECTOR, timeout=30_000)
        widget = page.locator(".simvis-triplet").first
        assert_shown(
            page, {"a": reference.difference_map, "b": reference.positive.map_b, "n": reference.negative.map_b}
        )
        check_hover(page, widget, reference, [(1, 6), (5, 0)])
        # hover latency: pointer event to the maps drawn (both pairs' rows computed in the browser)
        grid = reference.positive.grid_a
        spans = []
        for k in range(20):
            x, y = move_to_cell(page, widget, k % grid[0], (3 * k) % grid[1], *grid)
            spans.append(
                page.evaluate(
                    """([x, y]) => { const v = document.querySelector('.simvis-triplet').__simvis;
                    const before = Number(v.root.dataset.draws); const t0 = performance.now();
                    v.a.mark.dispatchEvent(new PointerEvent('pointermove', { clientX: x, clientY: y, bubbles: true }));
                    const t1 = performance.now(); return Number(v.root.dataset.draws) > before ? t1 - t0 : null; }""",
                    [x, y],
                )
            )
        spans = [s for s in spans if s is not None]  # moves drawn at once (not deferred to the next frame)
        assert spans, "no hover was drawn"
        print(f"hover -> P and N drawn: median {np.median(spans):.2f} ms, max {max(spans):.2f} ms ({len(spans)} moves)")
        assert errors(page) == []
