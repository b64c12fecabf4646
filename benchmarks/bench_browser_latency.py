"""Benchmark: live-hover latency of ``sv.PairExplorer`` in a real browser, next to a kernel-round-trip ipycanvas
hover (the design we rejected).

What runs
---------
A notebook generated in a temporary directory is served by the project's JupyterLab 4 helper
(``tests/jupyter_browser.py``: loopback, token, fresh config dirs) and opened in headless Debian Chromium driven
by Playwright. It builds, without a model, one explanation per grid size (7x7, 14x14, 32x32 cells per image):
``sv.decompose(torch.rand(64, g, g), torch.rand(64, g, g))`` with the scikit-image stereo photos (motorcycle left
/ right, resized to ``32 g`` px square; a uniform grey image if scikit-image is missing) attached as
``image_a`` / ``image_b`` (``sv.ExplainedPair.of``), and shows for each

* ``anywidget``: ``sv.PairExplorer.from_explanation(ex, mode="hover")``; the hover map (row of P over B) is
  computed and drawn in the browser (``pair_explorer.js``);
* ``ipycanvas``: one ``ipycanvas.Canvas`` (A | B side by side, displayed at exactly the size of the
  PairExplorer's panels). ``canvas.on_mouse_move(handler)`` runs in the kernel for every DOM mousemove: it
  takes the row of P of the hovered cell (numpy), colour-maps it through a 256-entry matplotlib ``RdBu_r``
  table, upsamples it with ``np.repeat``, blends it over image B (opacity 0.6, as the widget) and draws it with
  ``canvas.put_image_data`` (ipycanvas ships 3-channel images as JPEG).

Both are hovered over image A only. Three measurements per front end and grid:

(a) single move -> heatmap painted: ``--moves`` (default 200; 100 with ``--quick``) real mouse moves (Playwright ``page.mouse.move``,
    i.e. CDP input through the browser's input pipeline), each to a cell other than the previous one (random
    point inside the cell). After each move the script waits until that move's result is painted, then
    ``--gap-ms`` (50 ms) more, so moves never overlap. Latency = paint time - ``event.timeStamp``. p50, p95.
(b) 60 Hz drag: 120 real mouse moves (``page.mouse.move`` from Python, one every 16.7 ms on a deadline
    schedule, along a serpentine over image A). ``page.mouse.move`` returns only once the renderer has taken
    the input, so a busy page slows the sender down: the achieved interval is printed. A move is *shown* if it was
    the latest event of some draw (not superseded before drawing). A dispatched move the browser itself
    coalesced into a later pointermove (Chromium aligns mouse input to frames) never reaches the page and
    counts as not shown; the share the page received is printed next to it. Lag of what is shown: p50 / p90 of
    paint time - ``event.timeStamp`` over the shown moves.
(c) burst: 120 synthetic events dispatched in one in-page loop, as fast as possible, along the same serpentine
    (anywidget: ``PointerEvent("pointermove")`` on ``[data-testid="mark-a"]``; ipycanvas: ``MouseEvent("mousemove")``
    on the canvas, which is what ipycanvas listens to). Settle time = paint time of the last event's result -
    ``timeStamp`` of the first event.

How "painted" is known
----------------------
* anywidget: ``window.__SIMVIS_TRACE__ = true`` (init script: set before the widgets render, it also turns their
  test hooks on, so each view is ``root.__simvis``) makes every draw append ``{event, drawn, batch}``
  to ``root.__simvis.trace``: ``event`` is the pointer event's ``timeStamp``, ``drawn`` is ``performance.now()``
  after the draw, ``batch`` the number of events that draw consumed (pushed together, latest last). A capture
  listener on ``document`` records every ``pointermove`` that reaches the mark canvas (its ``timeStamp`` and
  coordinates), so each move is matched to its trace entry by ``timeStamp`` (the same event object), and it was
  shown iff it is the last entry of its batch. As a diagnostic the script also wraps ``view.draw`` to time
  every draw (traced or not) and to log the hovered cell it drew: "first draw" = the first draw after a move
  that already shows that move's cell (see the notes printed under the table).
* ipycanvas: the handler draws, in the same ``hold_canvas()`` batch right after ``put_image_data``, a 1x1
  ``fill_rect`` whose colour encodes the coordinates the handler received: ``code = int(x) * 2048 + int(y)``
  (canvas pixels, < 2^22), ``fill_style = "#%06x" % code``. An init script wraps
  ``CanvasRenderingContext2D.prototype.fillRect`` (a 1x1 fill on ipycanvas's off-screen model canvas queues the
  decoded code) and ``drawImage`` (when ipycanvas copies its model canvas onto the visible view canvas, every
  queued code is stamped with ``performance.now()``: that move's heatmap is now on screen). The capture listener
  computes, for every ``mousemove`` on the canvas, the very same coordinates with ipycanvas's own formula
  (``el.width * (clientX - rect.left) / rect.width``, floored) and so the same code. A painted code therefore
  names the exact move whose result was painted, with no assumption on order or on how many moves were
  dropped; the positions of each phase are chosen so that no two moves share a code (checked; duplicates and
  painted codes that match no move are counted and printed). ipycanvas never drops a move, so "shown" means
  its result was painted at all; staleness shows up in the lag.

Both "painted" times are main-thread times right after the pixels were written into the visible canvas; the
compositor presents them with the next frame (headless Chromium, software rendering, ``--disable-gpu``).

Run from the repository root::

    python -m benchmarks.bench_browser_latency             # ~2.5-3 minutes on 2 CPU cores
    python -m benchmarks.bench_browser_latency --quick     # 100 single moves, ipycanvas on 14x14 only; ~1 minute
    python -m benchmarks.bench_browser_latency --quick --grids 7 --moves 10   # the quickest check that it runs
    python -m benchmarks.bench_browser_latency --json results.json

Goals (printed next to the anywidget results): p50 <= 4 ms, p95 <= 16 ms, >= 95 % of drag moves shown, burst
settles in <= 50 ms.

``sv.Explorer`` (``--explorer-k``, default 8; 0 skips it) is measured the same way as a third front end: the
query and the best of a 12-image gallery of square demo views at 448 px (14 x 14 cells each, EfficientNet-Lite0),
with ``k`` thumbnails below, hovered over the query. One draw updates the selected image's map and every
thumbnail's, so "painted" means every visible map is updated. Goals: p50 <= 8 ms, p95 <= 16 ms. Timings on a shared 2-core machine are noisy: the load average is printed with the results.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from benchmarks.harness import (
    Run,
    arg_parser,
    cpu_seconds,
    header,
    jupyter_browser,
    lab,
    machine_info,
    notebook,
    percentile,
    write_json,
)

PACKAGES = ("jupyterlab", "playwright", "anywidget", "ipycanvas")
GRIDS = (7, 14, 32)
CHANNELS = 64
CELL_PX = 32
DRAG_MOVES = 120
DRAG_INTERVAL_MS = 1000.0 / 60.0
BURST_MOVES = 120
GOALS = {"p50_ms": 4.0, "p95_ms": 16.0, "drag_shown_pct": 95.0, "burst_settle_ms": 50.0}
EXPLORER_GOALS = {"p50_ms": 8.0, "p95_ms": 16.0}
"""sv.Explorer, k=8 at 14x14: mouse move -> the selected image's map AND every thumbnail's drawn (one draw)."""
NOTEBOOK = "bench_latency.ipynb"

# ------------------------------------------------------------------------------------------------------------
# In-page instrumentation (an init script: present before JupyterLab or any widget loads)
# ------------------------------------------------------------------------------------------------------------

INIT_SCRIPT = r"""
(() => {
  window.__SIMVIS_TRACE__ = true;
  const B = window.__bench = { kind: null, target: null, view: null, recording: false,
                               moves: [], draws: [], pending: [], painted: [] };
  document.addEventListener('pointermove', (e) => {
    if (!B.recording || B.kind !== 'aw' || e.target !== B.target) return;
    const h = performance.now();
    const loc = B.view.a.locate(e);
    B.moves.push({ t: e.timeStamp, h, x: e.clientX, y: e.clientY, cell: loc.row + ',' + loc.col, trusted: e.isTrusted });
  }, true);
  document.addEventListener('mousemove', (e) => {
    if (!B.recording || B.kind !== 'ipc' || e.target !== B.target) return;
    const h = performance.now();
    const el = e.target, r = el.getBoundingClientRect();
    // exactly ipycanvas's CanvasView.getCoordinates
    const x = el.width * (e.clientX - r.left) / r.width, y = el.height * (e.clientY - r.top) / r.height;
    B.moves.push({ t: e.timeStamp, h, x: e.clientX, y: e.clientY, key: Math.floor(x) * 2048 + Math.floor(y), trusted: e.isTrusted });
  }, true);
  const proto = CanvasRenderingContext2D.prototype;
  const fillRect = proto.fillRect, drawImage = proto.drawImage;
  proto.fillRect = function (x, y, w, h) {
    fillRect.call(this, x, y, w, h);
    if (w === 1 && h === 1 && this.canvas && !this.canvas.isConnected && typeof this.fillStyle === 'string' && this.fillStyle[0] === '#')
      B.pending.push(parseInt(this.fillStyle.slice(1), 16));
  };
  proto.drawImage = function (...args) {
    drawImage.apply(this, args);
    if (B.pending.length && this.canvas && this.canvas.classList && this.canvas.classList.contains('bench-ipc')) {
      const t = performance.now();
      for (const key of B.pending) B.painted.push({ key, t });
      B.pending = [];
    }
  };
})();
"""

SELECT_TARGET = r"""([kind, grid, rootSelector]) => {
  const B = window.__bench;
  B.recording = false;
  B.kind = kind;
  let el, region;
  if (kind === 'aw') {
    const root = document.querySelector(rootSelector);
    const v = root.__simvis;
    if (!v.__benchWrapped) {
      const orig = v.draw;
      v.draw = function (times) {
        const t0 = performance.now();
        orig.call(v, times);
        const t = performance.now();
        if (B.recording) B.draws.push({ t0, t, cell: (v.model.get('hover_a') || []).join(','), traced: !!times });
      };
      v.__benchWrapped = true;
    }
    B.view = v;
    el = root.querySelector('[data-testid="mark-a"]');
  } else {
    el = document.querySelector(`canvas.bench-ipc-${grid}`);
    B.view = null;
  }
  B.target = el;
  el.scrollIntoView({ block: 'center' });
  const r = el.getBoundingClientRect();
  const w = kind === 'aw' ? r.width : r.width / 2;  // ipycanvas: image A is the left half
  return { left: r.left, top: r.top, width: w, height: r.height, canvasW: el.width, canvasH: el.height, fullWidth: r.width };
}"""

START = r"""() => {
  const B = window.__bench;
  B.moves = []; B.draws = []; B.pending = []; B.painted = [];
  if (B.view) B.view.trace.length = 0;
  B.drawCount0 = B.view ? Number(B.view.root.dataset.draws || 0) : 0;
  B.recording = true;
}"""

# Resolves true once the n-th recorded move's result is painted (false after timeout_ms).
WAIT_FOR_MOVE = r"""async ([n, timeoutMs]) => {
  const B = window.__bench;
  const t0 = performance.now();
  const done = () => {
    if (B.moves.length < n) return false;
    const m = B.moves[n - 1];
    if (B.kind === 'aw') return B.view.trace.some((e) => e.event === m.t);
    return B.painted.some((p) => p.key === m.key);
  };
  while (!done()) {
    if (performance.now() - t0 > timeoutMs) return false;
    await new Promise((r) => setTimeout(r, 2));
  }
  return true;
}"""

# Resolves when the latest recorded move's result is painted and nothing new happened for quietMs.
WAIT_SETTLED = r"""async ([expected, timeoutMs]) => {
  const B = window.__bench;
  const t0 = performance.now();
  const lastDone = () => {
    if (B.moves.length === 0) return false;
    const m = B.moves[B.moves.length - 1];
    if (B.kind === 'aw') return B.view.trace.some((e) => e.event === m.t);
    return B.painted.some((p) => p.key === m.key);
  };
  while (!(lastDone() && (B.kind === 'aw' || B.painted.length >= Math.min(expected, B.moves.length)))) {
    if (performance.now() - t0 > timeoutMs) return false;
    await new Promise((r) => setTimeout(r, 5));
  }
  return true;
}"""

COLLECT = r"""() => {
  const B = window.__bench;
  B.recording = false;
  const out = { moves: B.moves.slice(), draws: B.draws.slice(), painted: B.painted.slice(),
                trace: B.view ? B.view.trace.slice() : [], drawCount: B.view ? Number(B.view.root.dataset.draws || 0) - B.drawCount0 : 0 };
  return out;
}"""

BURST = r"""async ([points, timeoutMs]) => {
  const B = window.__bench;
  const el = B.target;
  B.moves = []; B.draws = []; B.pending = []; B.painted = [];
  if (B.view) B.view.trace.length = 0;
  B.drawCount0 = B.view ? Number(B.view.root.dataset.draws || 0) : 0;
  B.recording = true;
  const start = performance.now();
  for (const [x, y] of points) {
    const init = { clientX: x, clientY: y, bubbles: true, cancelable: true, composed: true, view: window };
    const ev = B.kind === 'aw'
      ? new PointerEvent('pointermove', { ...init, pointerId: 1, pointerType: 'mouse', isPrimary: true })
      : new MouseEvent('mousemove', init);
    el.dispatchEvent(ev);
  }
  const dispatchMs = performance.now() - start;
  const t0 = performance.now();
  const m = B.moves[B.moves.length - 1];
  const done = () => B.kind === 'aw' ? B.view.trace.some((e) => e.event === m.t) : B.painted.some((p) => p.key === m.key);
  let settled = true;
  while (!done()) {
    if (performance.now() - t0 > timeoutMs) { settled = false; break; }
    await new Promise((r) => setTimeout(r, 1));
  }
  B.recording = false;
  return { dispatchMs, settled, moves: B.moves.slice(), draws: B.draws.slice(), painted: B.painted.slice(),
           trace: B.view ? B.view.trace.slice() : [], drawCount: B.view ? Number(B.view.root.dataset.draws || 0) - B.drawCount0 : 0 };
}"""

# A second, unmeasured burst with the widget's hot functions wrapped: where does the time of one burst go?
BURST_PROFILE = r"""async ([points]) => {
  const B = window.__bench;
  const v = B.view, m = v.model, el = B.target;
  const T = { locate: 0, save_changes: 0, draw: 0, drawCaptions: 0, drawHeat: 0, drawMarks: 0, point: 0,
              n_save_changes: 0, n_draw: 0 };
  const wrap = (obj, name, key) => {
    const had = Object.prototype.hasOwnProperty.call(obj, name), orig = obj[name];
    obj[name] = function (...args) {
      const t = performance.now();
      try { return orig.apply(this, args); } finally { T[key] += performance.now() - t; if (('n_' + key) in T) T['n_' + key]++; }
    };
    return () => { if (had) obj[name] = orig; else delete obj[name]; };
  };
  const undo = [wrap(v.a, 'locate', 'locate'), wrap(m, 'save_changes', 'save_changes'), wrap(v, 'draw', 'draw'),
                wrap(v, 'drawCaptions', 'drawCaptions'), wrap(v.a, 'drawHeat', 'drawHeat'), wrap(v.b, 'drawHeat', 'drawHeat'),
                wrap(v.a, 'drawMarks', 'drawMarks'), wrap(v.b, 'drawMarks', 'drawMarks'), wrap(v.contrib, 'point', 'point')];
  const start = performance.now();
  try {
    for (const [x, y] of points)
      el.dispatchEvent(new PointerEvent('pointermove', { clientX: x, clientY: y, bubbles: true, cancelable: true, composed: true,
                                                         view: window, pointerId: 1, pointerType: 'mouse', isPrimary: true }));
    T.loop = performance.now() - start;
    await new Promise((r) => requestAnimationFrame(() => setTimeout(r, 0)));
  } finally {
    for (const f of undo.reverse()) f();
  }
  return T;
}"""

# ------------------------------------------------------------------------------------------------------------
# The notebook
# ------------------------------------------------------------------------------------------------------------

SETUP_CELL = """\
import numpy as np
import torch
from PIL import Image
from matplotlib import colormaps
from ipycanvas import Canvas, hold_canvas
import simvis_widgets as sv

GRIDS = {grids!r}
IPC_GRIDS = {ipc_grids!r}
ALPHA = 0.6
LUT = np.round(colormaps["RdBu_r"](np.linspace(0.0, 1.0, 256))[:, :3] * 255).astype(np.uint8)  # matplotlib LUT

def photo(index, size):
    try:
        from skimage import data
        img = data.stereo_motorcycle()[index]
        return np.asarray(Image.fromarray(img).resize((size, size), Image.Resampling.BILINEAR))
    except Exception:  # no scikit-image: a uniform grey image
        return np.full((size, size, 3), 128, np.uint8)

torch.manual_seed(0)
explanations, explorers, canvases = {{}}, {{}}, {{}}
for g in GRIDS:
    ex = sv.decompose(torch.rand({channels}, g, g), torch.rand({channels}, g, g))
    ex = sv.ExplainedPair.of(ex, photo(0, g * {cell_px}), photo(1, g * {cell_px}))
    explanations[g] = ex
    explorers[g] = sv.PairExplorer.from_explanation(ex, mode="hover")
    explorers[g].add_class(f"bench-aw-{{g}}")

def make_canvas(g):
    ex = explanations[g]
    P = ex.pairwise.detach().cpu().numpy().astype(np.float32)
    A, B = ex.image_a, ex.image_b
    H, W = A.shape[:2]
    base_b = B.astype(np.float32) * (1 - ALPHA)
    canvas = Canvas(width=2 * W, height=H)
    canvas.add_class("bench-ipc")
    canvas.add_class(f"bench-ipc-{{g}}")

    def on_move(x, y):
        if not (0 <= x < W and 0 <= y < H):
            return
        i = min(g - 1, int(y * g / H)) * g + min(g - 1, int(x * g / W))
        row = P[i]
        idx = np.clip(np.rint((row / max(float(np.abs(row).max()), 1e-30) + 1) * 127.5), 0, 255).astype(np.intp)
        heat = LUT[idx].reshape(g, g, 3)
        up = np.repeat(np.repeat(heat, H // g, axis=0), W // g, axis=1)
        out = (base_b + up * ALPHA).astype(np.uint8)
        code = int(x) * 2048 + int(y)  # which move this paint answers (decoded in the page)
        with hold_canvas():
            canvas.put_image_data(out, W, 0)
            canvas.fill_style = "#%06x" % code
            canvas.fill_rect(0, 0, 1, 1)

    def first_draw():
        with hold_canvas():
            canvas.put_image_data(A, 0, 0)
            canvas.put_image_data(B, W, 0)

    canvas.on_mouse_move(on_move)
    canvas.first_draw = first_draw
    return canvas

for g in IPC_GRIDS:
    canvases[g] = make_canvas(g)
"""

# The Explorer case: a real session at 448 px (14 x 14 cells on square images) over a gallery of square demo views.
EXPLORER_CELL = """\
session = sv.ModelSession.from_pretrained("efficientnet_lite0", size=448, device="cpu")
views = sv.datasets.demo_views(views_per_photo=3, short_side=448, photos=("motorcycle_left", "chelsea", "coffee", "astronaut"))
squares = [np.asarray(Image.fromarray(v).resize((448, 448), Image.Resampling.BILINEAR)) for v in views.images]
gallery = sv.Gallery.build(squares, session, progress=False)
explorer_view = sv.Explorer(session, squares[0], gallery=gallery, k={k}, mode="hover")
explorer_view.add_class("bench-ex-14")
explorer_view
"""


def notebook_json(grids: Sequence[int], ipc_grids: Sequence[int], explorer_k: int = 0) -> dict[str, Any]:
    setup = SETUP_CELL.format(grids=tuple(grids), ipc_grids=tuple(ipc_grids), channels=CHANNELS, cell_px=CELL_PX)
    cells = [setup, *(f"explorers[{g}]" for g in grids), *(f"canvases[{g}]" for g in ipc_grids)]
    if explorer_k:
        cells.append(EXPLORER_CELL.format(k=explorer_k))
    return notebook(cells)


# ------------------------------------------------------------------------------------------------------------
# Results
# ------------------------------------------------------------------------------------------------------------


@dataclass
class Single:
    n: int = 0
    missing: int = 0
    p50_ms: float = float("nan")
    p95_ms: float = float("nan")
    max_ms: float = float("nan")
    dispatch_p50_ms: float = float("nan")
    """event.timeStamp -> the page's handler runs (browser input queueing)."""
    dispatch_p95_ms: float = float("nan")
    first_draw_p50_ms: float = float("nan")
    first_draw_p95_ms: float = float("nan")
    """anywidget only: event.timeStamp -> end of the first draw that shows the move's cell (traced or not)."""
    draws_per_move: float = float("nan")
    draw_cost_p50_ms: float = float("nan")
    draw_cost_max_ms: float = float("nan")


@dataclass
class Drag:
    dispatched: int = 0
    received: int = 0
    shown: int = 0
    shown_pct: float = float("nan")
    received_pct: float = float("nan")
    shown_of_received_pct: float = float("nan")
    lag_p50_ms: float = float("nan")
    lag_p90_ms: float = float("nan")
    lag_max_ms: float = float("nan")
    interval_p50_ms: float = float("nan")
    """achieved interval between mouse.move calls (Python side)."""
    event_interval_p50_ms: float = float("nan")
    """interval between pointermove / mousemove events the page received."""
    settle_after_last_ms: float = float("nan")
    queueing_p50_ms: float = float("nan")
    """event.timeStamp -> the page's handler runs, over the received drag moves (browser input queueing)."""
    queueing_p90_ms: float = float("nan")
    settled: bool = True
    draws: int = 0


@dataclass
class Burst:
    events: int = 0
    settled: bool = True
    settle_ms: float = float("nan")
    dispatch_loop_ms: float = float("nan")
    """how long the synchronous dispatch loop itself took."""
    draws: int = 0
    """all draws of the widget in the burst (traced or not); ipycanvas: paints."""
    traced_draws: int = 0
    profile: dict[str, float] = field(default_factory=dict)
    """anywidget: ms spent in the widget's functions during a second (unmeasured) burst, and call counts."""


@dataclass
class Case:
    front_end: str
    grid: int
    image_px: int
    display_px: float
    single: Single = field(default_factory=Single)
    drag: Drag = field(default_factory=Drag)
    burst: Burst = field(default_factory=Burst)
    problems: list[str] = field(default_factory=list)


# ------------------------------------------------------------------------------------------------------------
# Paths of pointer positions
# ------------------------------------------------------------------------------------------------------------


@dataclass
class Region:
    left: float
    top: float
    width: float
    height: float
    canvas_w: int
    canvas_h: int
    full_width: float

    def client(self, fx: float, fy: float) -> tuple[int, int]:
        x = round(self.left + fx * self.width)
        y = round(self.top + fy * self.height)
        x = min(max(x, int(np.ceil(self.left)) + 1), int(self.left + self.width) - 2)
        y = min(max(y, int(np.ceil(self.top)) + 1), int(self.top + self.height) - 2)
        return x, y

    def key(self, x: int, y: int) -> int:
        """ipycanvas's coordinates of a client point, encoded as the handler does (approximately: for dedup)."""
        cx = self.canvas_w * (x - self.left) / self.full_width
        cy = self.canvas_h * (y - self.top) / self.height
        return int(cx) * 2048 + int(cy)


def unique_points(
    region: Region, fractions: Sequence[tuple[float, float]], rng: random.Random, wiggle: float
) -> list[tuple[int, int]]:
    """Client points for ``fractions`` of the region with no two equal (client px or ipycanvas code)."""
    seen_xy: set[tuple[int, int]] = set()
    seen_key: set[int] = set()
    out = []
    for fx, fy in fractions:
        for attempt in range(50):
            jx = (rng.random() - 0.5) * wiggle * attempt / 10
            jy = (rng.random() - 0.5) * wiggle * attempt / 10
            p = region.client(min(0.999, max(0.001, fx + jx)), min(0.999, max(0.001, fy + jy)))
            k = region.key(*p)
            if p not in seen_xy and k not in seen_key:
                break
        seen_xy.add(p)
        seen_key.add(k)
        out.append(p)
    return out


def single_fractions(grid: int, n: int, rng: random.Random) -> tuple[list[tuple[float, float]], list[tuple[int, int]]]:
    """``n`` points, each in a cell other than the previous one, at a random spot in the cell's middle half."""
    cells = [(r, c) for r in range(grid) for c in range(grid)]
    order: list[tuple[int, int]] = []
    while len(order) < n:
        batch = cells[:]
        rng.shuffle(batch)
        for cell in batch:
            if not order or order[-1] != cell:
                order.append(cell)
    order = order[:n]
    fr = [((c + 0.25 + 0.5 * rng.random()) / grid, (r + 0.25 + 0.5 * rng.random()) / grid) for r, c in order]
    return fr, order


def serpentine(n: int, rows: int = 6) -> list[tuple[float, float]]:
    """``n`` points over ``rows`` horizontal passes, alternating direction (a hand sweeping the image)."""
    per = int(np.ceil(n / rows))
    out = []
    for k in range(n):
        r, i = divmod(k, per)
        fx = 0.04 + 0.92 * (i / max(1, per - 1))
        if r % 2:
            fx = 1.0 - fx
        fy = (r + 0.5) / rows
        out.append((fx, fy))
    return out


# ------------------------------------------------------------------------------------------------------------
# Measurements
# ------------------------------------------------------------------------------------------------------------


def trace_groups(trace: list[dict[str, float]]) -> dict[float, tuple[float, bool]]:
    """event timeStamp -> (drawn, shown): entries of one draw are pushed together, latest last."""
    out: dict[float, tuple[float, bool]] = {}
    i = 0
    while i < len(trace):
        batch = max(1, int(trace[i]["batch"]))
        group = trace[i : i + batch]
        for j, e in enumerate(group):
            shown = j == len(group) - 1
            prev = out.get(e["event"])
            if prev is None or (shown and not prev[1]):
                out[e["event"]] = (e["drawn"], shown)
        i += batch
    return out


def paint_times(data: dict[str, Any]) -> dict[int, float]:
    """ipycanvas: code -> first time it was painted."""
    out: dict[int, float] = {}
    for p in data["painted"]:
        out.setdefault(int(p["key"]), float(p["t"]))
    return out


def measure_single(page: Any, case: Case, region: Region, n: int, gap_ms: float, rng: random.Random) -> None:
    kind = "ipc" if case.front_end == "ipycanvas" else "aw"
    fractions, _cells = single_fractions(case.grid, n + 1, rng)
    points = unique_points(region, fractions, rng, wiggle=0.2 / case.grid)
    timeout = 3000 if kind == "aw" else 20000
    # a first move onto the image, not measured
    page.mouse.move(*points[0])
    page.wait_for_timeout(300 if kind == "aw" else 1500)
    page.evaluate(START)
    timeouts = 0
    for k, p in enumerate(points[1:], start=1):
        page.mouse.move(*p)
        if not page.evaluate(WAIT_FOR_MOVE, [k, timeout]):
            timeouts += 1
            if timeouts >= 5:
                case.problems.append(f"single: gave up after {timeouts} moves were not painted within {timeout} ms")
                break
        time.sleep(gap_ms / 1000)
    data = page.evaluate(COLLECT)
    moves = data["moves"]
    s = case.single
    s.n = len(moves)
    lat: list[float] = []
    dispatch = [m["h"] - m["t"] for m in moves]
    if kind == "aw":
        groups = trace_groups(data["trace"])
        for m in moves:
            g = groups.get(m["t"])
            if g is None:
                s.missing += 1
            else:
                lat.append(g[0] - m["t"])
        first = []
        draws = data["draws"]
        for m in moves:
            hit = next((d for d in draws if d["t"] > m["t"] and d["cell"] == m["cell"]), None)
            if hit is not None:
                first.append(hit["t"] - m["t"])
        s.first_draw_p50_ms, s.first_draw_p95_ms = percentile(first, 50), percentile(first, 95)
        s.draws_per_move = data["drawCount"] / max(1, len(moves))
        costs = [d["t"] - d["t0"] for d in draws]
        s.draw_cost_p50_ms, s.draw_cost_max_ms = percentile(costs, 50), (max(costs) if costs else float("nan"))
    else:
        painted = paint_times(data)
        keys = [m["key"] for m in moves]
        if len(set(keys)) != len(keys):
            case.problems.append(f"single: {len(keys) - len(set(keys))} duplicate ipycanvas codes")
        unknown = set(painted) - set(keys)
        if unknown:
            case.problems.append(f"single: {len(unknown)} painted codes match no recorded move")
        for m in moves:
            t = painted.get(m["key"])
            if t is None:
                s.missing += 1
            else:
                lat.append(t - m["t"])
        s.draws_per_move = len(data["painted"]) / max(1, len(moves))
    if len(moves) != len(points) - 1:
        case.problems.append(f"single: {len(points) - 1} moves sent, {len(moves)} received by the page")
    s.p50_ms, s.p95_ms = percentile(lat, 50), percentile(lat, 95)
    s.max_ms = max(lat) if lat else float("nan")
    s.dispatch_p50_ms, s.dispatch_p95_ms = percentile(dispatch, 50), percentile(dispatch, 95)


def measure_drag(page: Any, case: Case, region: Region) -> None:
    kind = "ipc" if case.front_end == "ipycanvas" else "aw"
    points = unique_points(region, serpentine(DRAG_MOVES), random.Random(1), wiggle=0.01)
    start = region.client(0.02, (0.5) / 6)
    page.mouse.move(*start)
    page.wait_for_timeout(300 if kind == "aw" else 1500)
    page.evaluate(START)
    sent_at: list[float] = []
    t0 = time.perf_counter()
    for k, p in enumerate(points):
        due = t0 + k * DRAG_INTERVAL_MS / 1000
        while True:
            now = time.perf_counter()
            if now >= due:
                break
            time.sleep(min(0.002, due - now))
        sent_at.append(time.perf_counter())
        page.mouse.move(*p)
    settled = page.evaluate(WAIT_SETTLED, [len(points), 5000 if kind == "aw" else 120000])
    data = page.evaluate(COLLECT)
    d = case.drag
    d.dispatched = len(points)
    d.settled = bool(settled)
    d.interval_p50_ms = percentile(np.diff(sent_at) * 1000, 50)
    moves = data["moves"]
    d.event_interval_p50_ms = percentile(np.diff([m["t"] for m in moves]), 50) if len(moves) > 1 else float("nan")
    queueing = [m["h"] - m["t"] for m in moves]
    d.queueing_p50_ms, d.queueing_p90_ms = percentile(queueing, 50), percentile(queueing, 90)
    by_xy = {(round(m["x"]), round(m["y"])): m for m in moves}
    received = [by_xy.get(p) for p in points]
    d.received = sum(m is not None for m in received)
    lags: list[float] = []
    shown = 0
    last_paint = float("nan")
    if kind == "aw":
        groups = trace_groups(data["trace"])
        for m in received:
            if m is None:
                continue
            g = groups.get(m["t"])
            if g is not None and g[1]:
                shown += 1
                lags.append(g[0] - m["t"])
        d.draws = data["drawCount"]
        if data["trace"]:
            last_paint = max(e["drawn"] for e in data["trace"])
    else:
        painted = paint_times(data)
        unknown = set(painted) - {m["key"] for m in moves}
        if unknown:
            case.problems.append(f"drag: {len(unknown)} painted codes match no recorded move")
        for m in received:
            if m is None:
                continue
            t = painted.get(m["key"])
            if t is not None:
                shown += 1
                lags.append(t - m["t"])
        d.draws = len(data["painted"])
        if painted:
            last_paint = max(painted.values())
    if moves:
        d.settle_after_last_ms = last_paint - moves[-1]["t"]
    d.shown = shown
    d.shown_pct = 100.0 * shown / max(1, d.dispatched)
    d.received_pct = 100.0 * d.received / max(1, d.dispatched)
    d.shown_of_received_pct = 100.0 * shown / max(1, d.received)
    d.lag_p50_ms, d.lag_p90_ms = percentile(lags, 50), percentile(lags, 90)
    d.lag_max_ms = max(lags) if lags else float("nan")
    if not settled:
        case.problems.append("drag: the last move was not painted before the timeout")


def measure_burst(page: Any, case: Case, region: Region) -> None:
    kind = "ipc" if case.front_end == "ipycanvas" else "aw"
    points = unique_points(region, serpentine(BURST_MOVES), random.Random(2), wiggle=0.01)
    # park the real pointer on the image (so the widget's state is the one it has mid-hover), let it settle
    page.mouse.move(*region.client(0.5, 0.02))
    page.wait_for_timeout(300 if kind == "aw" else 1500)
    data = page.evaluate(BURST, [[list(p) for p in points], 5000 if kind == "aw" else 180000])
    b = case.burst
    moves = data["moves"]
    b.events = len(moves)
    b.settled = bool(data["settled"])
    b.dispatch_loop_ms = float(data["dispatchMs"])
    if not moves:
        case.problems.append("burst: no event reached the page")
        return
    first, last = moves[0], moves[-1]
    if kind == "aw":
        groups = trace_groups(data["trace"])
        g = groups.get(last["t"])
        if g is not None:
            b.settle_ms = g[0] - first["t"]
        b.draws = data["drawCount"]
        b.traced_draws = len({e["drawn"] for e in data["trace"]})
    else:
        painted = paint_times(data)
        t = painted.get(last["key"])
        if t is not None:
            b.settle_ms = t - first["t"]
        b.draws = b.traced_draws = len(data["painted"])
    if not b.settled:
        case.problems.append("burst: the last event was not painted before the timeout")
    if kind == "aw":
        page.wait_for_timeout(200)
        b.profile = {k: float(v) for k, v in page.evaluate(BURST_PROFILE, [[list(p) for p in points]]).items()}


# ------------------------------------------------------------------------------------------------------------
# Driver
# ------------------------------------------------------------------------------------------------------------


@dataclass
class Config:
    grids: tuple[int, ...]
    ipc_grids: tuple[int, ...]
    moves: int
    gap_ms: float
    quick: bool
    explorer_k: int = 8


def measure_cases(cfg: Config, run: Run) -> tuple[list[Case], dict[str, Any]]:
    jb = jupyter_browser()
    open_and_run, kernel_exec = jb.open_and_run, jb.kernel_exec
    cases: list[Case] = []
    env: dict[str, Any] = {}
    busy0, mine0 = cpu_seconds()
    files = {NOTEBOOK: json.dumps(notebook_json(cfg.grids, cfg.ipc_grids, cfg.explorer_k), indent=1)}
    with lab("simvis-bench-latency-", files) as (server, page):
        page.add_init_script(INIT_SCRIPT)
        run.log("JupyterLab up; opening the notebook")
        open_and_run(page, server.lab(NOTEBOOK))
        page.wait_for_function(
            f"() => document.querySelectorAll('.simvis-pair[data-ready]').length >= {len(cfg.grids)}"
            f" && document.querySelectorAll('.simvis-explorer[data-ready][data-strip]').length >= {int(bool(cfg.explorer_k))}"
            f" && document.querySelectorAll('canvas.bench-ipc').length >= {len(cfg.ipc_grids)}",
            timeout=300_000,
        )
        kernel_exec(page, "print('idle')")  # all cells ran
        env["user_agent"] = page.evaluate("() => navigator.userAgent")
        # the ipycanvas canvases get exactly the PairExplorer panels' displayed geometry
        size = page.evaluate(
            "() => { const r = document.querySelector('.simvis-pair [data-testid=\"mark-a\"]').getBoundingClientRect(); return [r.width, r.height]; }"
        )
        if cfg.ipc_grids:
            printed = kernel_exec(
                page,
                (
                    "for _c in canvases.values():\n"
                    f"    _c.layout.width = '{2 * size[0]}px'; _c.layout.height = '{size[1]}px'\n"
                    "    _c.first_draw()\n"
                    "print('ok')"
                ),
            )
            if "ok" not in printed:
                raise RuntimeError(f"sizing the ipycanvas canvases failed: {printed}")
            page.wait_for_timeout(1500)
        run.log(f"widgets ready (panel {size[0]:.0f} x {size[1]:.0f} px)")
        targets = [("anywidget", g) for g in cfg.grids] + [("ipycanvas", g) for g in cfg.ipc_grids]
        if cfg.explorer_k:
            shown = page.evaluate(
                "() => { const v = document.querySelector('.bench-ex-14').__simvis;"
                " return [v.order.length, v.a.gh, v.a.gw, v.b.gh, v.b.gw, ...v.order.map((h) => h.gh * 100 + h.gw)]; }"
            )
            if shown[0] != cfg.explorer_k or any(x != 14 for x in shown[1:5]) or any(x != 1414 for x in shown[5:]):
                raise RuntimeError(f"the Explorer does not show k={cfg.explorer_k} hits at 14x14 cells: {shown}")
            targets.append(("explorer", 14))
        for front_end, grid in targets:
            kind = "ipc" if front_end == "ipycanvas" else "aw"
            root = f".bench-ex-{grid}" if front_end == "explorer" else f".bench-aw-{grid}"
            r = page.evaluate(SELECT_TARGET, [kind, grid, root])
            page.wait_for_timeout(400)
            r = page.evaluate(SELECT_TARGET, [kind, grid, root])  # after scrolling settled
            region = Region(
                r["left"], r["top"], r["width"], r["height"], int(r["canvasW"]), int(r["canvasH"]), r["fullWidth"]
            )
            case = Case(front_end, grid, grid * CELL_PX, region.width)
            rng = random.Random(grid)
            measure_single(page, case, region, cfg.moves, cfg.gap_ms, rng)
            measure_drag(page, case, region)
            measure_burst(page, case, region)
            cases.append(case)
            run.log(
                f"{front_end} {grid}x{grid}: single p50 {case.single.p50_ms:.1f} ms, "
                f"drag shown {case.drag.shown_pct:.0f} %, burst {case.burst.settle_ms:.1f} ms"
            )
        busy1, mine = cpu_seconds()  # before the server and the browser stop
        wall = run.elapsed()
        env["other_cpu_pct"] = 100.0 * max(0.0, busy1 - busy0 - (mine - mine0)) / (wall * (os.cpu_count() or 1))
        errors = [e for e in page.errors if "ResizeObserver loop" not in e]  # type: ignore[attr-defined]
        if errors:
            env["page_errors"] = errors[:10]
    return cases, env


def fmt(v: float, digits: int = 1) -> str:
    return "n/a" if v is None or not np.isfinite(v) else f"{v:.{digits}f}"


def mark(ok: bool) -> str:
    return "met" if ok else "NOT met"


def report(
    cfg: Config, cases: list[Case], env: dict[str, Any], run: Run, info: dict[str, Any]
) -> tuple[str, dict[str, Any]]:
    lines: list[str] = []
    add = lines.append
    add(
        "Live-hover latency in JupyterLab 4 + headless Chromium (Playwright), PairExplorer (anywidget, maps computed in JS)"
    )
    add("vs ipycanvas with the map computed in the kernel per mouse move.")
    lines.extend(header(info, run))
    add(
        f"browser: {env.get('user_agent', '?')}; wall time {run.total_s:.0f} s; other processes "
        f"(not this benchmark, its server, kernel or browser) kept the CPUs {fmt(env.get('other_cpu_pct', float('nan')), 0)} % busy"
    )
    if env.get("other_cpu_pct", 0.0) > 10:
        add("WARNING: other processes competed for the CPUs during the run: timings are inflated and noisy")
    add(
        f"single moves: {cfg.moves} per case, {cfg.gap_ms:.0f} ms pause after each paint; drag: {DRAG_MOVES} real moves at 60 Hz "
        f"(page.mouse.move); burst: {BURST_MOVES} synthetic in-page events"
    )
    if cfg.quick:
        add("--quick: ipycanvas measured on " + ", ".join(f"{g}x{g}" for g in cfg.ipc_grids) + " only")
    add("")
    head = (
        f"{'front end':<10} {'grid':>5} {'img px':>6} | {'(a) single move: p50':>20} {'p95':>6} {'max':>6} {'n':>4} | "
        f"{'(b) drag: shown':>15} {'recv':>5} {'lag p50':>7} {'p90':>6} | {'(c) burst settle':>16} {'loop':>6}"
    )
    add(head)
    add("-" * len(head))
    for c in cases:
        s, d, b = c.single, c.drag, c.burst
        add(
            f"{c.front_end:<10} {c.grid:>2}x{c.grid:<2} {c.image_px:>6} | {fmt(s.p50_ms):>17} ms {fmt(s.p95_ms):>6} {fmt(s.max_ms):>6} {s.n:>4} | "
            f"{fmt(d.shown_pct, 0):>13} % {fmt(d.received_pct, 0):>4}% {fmt(d.lag_p50_ms):>7} {fmt(d.lag_p90_ms):>6} | "
            f"{fmt(b.settle_ms):>13} ms {fmt(b.dispatch_loop_ms):>6}"
        )
    add(
        f"{'goal':<10} {'':>5} {'':>6} | {'<= ' + fmt(GOALS['p50_ms'], 0):>17} ms {'<= ' + fmt(GOALS['p95_ms'], 0):>6} {'':>6} {'':>4} | "
        f"{'>= ' + fmt(GOALS['drag_shown_pct'], 0):>13} % {'':>5} {'':>7} {'':>6} | {'<= ' + fmt(GOALS['burst_settle_ms'], 0):>13} ms"
    )
    add(
        "(all times ms; 'recv' = share of the dispatched drag moves the page received as events; 'loop' = duration of the in-page dispatch loop)"
    )
    add("")
    add("Goals (anywidget):")
    goals: dict[str, Any] = {}
    for c in cases:
        if c.front_end == "explorer":
            checks = {
                "p50": c.single.p50_ms <= EXPLORER_GOALS["p50_ms"],
                "p95": c.single.p95_ms <= EXPLORER_GOALS["p95_ms"],
            }
            goals[f"explorer {c.grid}x{c.grid} k={cfg.explorer_k}"] = checks
            add(
                f"  Explorer {c.grid}x{c.grid}, k={cfg.explorer_k} (every visible map, goal p50 <= "
                f"{fmt(EXPLORER_GOALS['p50_ms'], 0)} / p95 <= {fmt(EXPLORER_GOALS['p95_ms'], 0)} ms): "
                + ", ".join(f"{k} {mark(v)}" for k, v in checks.items())
            )
            continue
        if c.front_end != "anywidget":
            continue
        checks = {
            "p50": c.single.p50_ms <= GOALS["p50_ms"],
            "p95": c.single.p95_ms <= GOALS["p95_ms"],
            "drag shown": c.drag.shown_pct >= GOALS["drag_shown_pct"],
            "burst": c.burst.settle_ms <= GOALS["burst_settle_ms"],
        }
        goals[f"{c.grid}x{c.grid}"] = checks
        add(f"  {c.grid:>2}x{c.grid:<2}: " + ", ".join(f"{k} {mark(v)}" for k, v in checks.items()))
    ratios: dict[str, Any] = {}
    aw = {c.grid: c for c in cases if c.front_end == "anywidget"}
    ipc = {c.grid: c for c in cases if c.front_end == "ipycanvas"}
    if ipc:
        add("")
        add("ipycanvas / anywidget (higher = anywidget faster):")
        add(f"  {'grid':>5} | {'single p50':>10} {'single p95':>10} {'drag lag p50':>12} {'burst settle':>12}")
        for g in sorted(ipc):
            if g not in aw:
                continue
            a, i = aw[g], ipc[g]
            r = {
                "single_p50": i.single.p50_ms / a.single.p50_ms,
                "single_p95": i.single.p95_ms / a.single.p95_ms,
                "drag_lag_p50": i.drag.lag_p50_ms / a.drag.lag_p50_ms,
                "burst_settle": i.burst.settle_ms / a.burst.settle_ms,
            }
            ratios[f"{g}x{g}"] = r
            add(
                f"  {g:>2}x{g:<2} | {fmt(r['single_p50']):>9}x {fmt(r['single_p95']):>9}x {fmt(r['drag_lag_p50']):>11}x {fmt(r['burst_settle']):>11}x"
            )
        missing = [g for g in aw if g not in ipc]
        if missing:
            add("  (ipycanvas not measured for " + ", ".join(f"{g}x{g}" for g in missing) + ")")
    add("")
    add("Diagnostics:")
    for c in cases:
        s, d, b = c.single, c.drag, c.burst
        if c.front_end != "ipycanvas":
            add(
                f"  {c.front_end} {c.grid:>2}x{c.grid:<2}: input queueing (timeStamp -> handler) p50 {fmt(s.dispatch_p50_ms)}; "
                f"first draw showing the moved-to cell p50 {fmt(s.first_draw_p50_ms)} p95 {fmt(s.first_draw_p95_ms)}; "
                f"draws per single move {fmt(s.draws_per_move, 2)}; one draw p50 {fmt(s.draw_cost_p50_ms, 2)} max {fmt(s.draw_cost_max_ms, 2)}; "
                f"drag: {d.draws} draws, input queueing p50 {fmt(d.queueing_p50_ms)} p90 {fmt(d.queueing_p90_ms)}, event interval p50 {fmt(d.event_interval_p50_ms)} (Python {fmt(d.interval_p50_ms)}); "
                f"burst: {b.draws} draws ({b.traced_draws} traced), dispatch loop {fmt(b.dispatch_loop_ms)}"
            )
            add(
                f"      input queueing p95 {fmt(s.dispatch_p95_ms)}; burst profile (second burst, ms in): "
                + ", ".join(f"{k} {fmt(v, 0 if k.startswith('n_') else 1)}" for k, v in b.profile.items())
            )
        else:
            add(
                f"  ipycanvas {c.grid:>2}x{c.grid:<2}: input queueing p50 {fmt(s.dispatch_p50_ms)}; "
                f"p95 {fmt(s.dispatch_p95_ms)}; drag: {d.draws} paints, input queueing p50 {fmt(d.queueing_p50_ms)}, last move painted {fmt(d.settle_after_last_ms, 0)} ms after it happened, event interval p50 "
                f"{fmt(d.event_interval_p50_ms)} (Python {fmt(d.interval_p50_ms)}); burst: {b.draws} paints"
            )
        for p in c.problems:
            add(f"    problem: {p}")
    add("")
    add("Notes: 'input queueing' = event.timeStamp -> the page's first pointermove/mousemove listener runs (Chromium's")
    add("input pipeline; part of every latency above). 'first draw showing the moved-to cell' = end of the first")
    add("widget draw (traced or not) that already shows the cell of the move: the model's change:hover_* listener")
    add("redraws synchronously inside the pointermove handler, and the traced draw that follows is then deferred")
    add("to the next animation frame ('draws per single move' 2.00 = every cell change draws twice). The burst")
    add("profile is a second, unmeasured burst with the widget's functions wrapped (inclusive ms; draw contains")
    add("drawCaptions / drawHeat / drawMarks / point).")
    if env.get("page_errors"):
        add("page errors: " + " | ".join(env["page_errors"]))
    result = {
        "config": asdict(cfg),
        "goals": GOALS,
        "machine": info,
        "env": {**env, **run.record()},
        "cases": [asdict(c) for c in cases],
        "goals_met": goals,
        "ratios_ipycanvas_over_anywidget": ratios,
    }
    return "\n".join(lines), result


def main(argv: Sequence[str] | None = None) -> int:
    parser = arg_parser(__doc__, "ipycanvas on 14x14 only, 100 single moves", threads=False)
    parser.add_argument("--moves", type=int, default=None, help="single moves per case (default 200; 100 with --quick)")
    parser.add_argument("--gap-ms", type=float, default=50.0, help="pause after each single move's paint (default 50)")
    parser.add_argument(
        "--grids", type=int, nargs="+", default=list(GRIDS), help="cells per image side (default 7 14 32)"
    )
    parser.add_argument(
        "--explorer-k",
        type=int,
        default=8,
        help="also measure sv.Explorer at 14x14 with this many strip thumbnails (default 8; 0 skips it)",
    )
    args = parser.parse_args(argv)
    grids = tuple(args.grids)
    ipc_grids = (tuple(g for g in grids if g == 14) or grids[:1]) if args.quick else grids
    moves = args.moves if args.moves is not None else (100 if args.quick else 200)
    cfg = Config(
        grids=grids, ipc_grids=ipc_grids, moves=moves, gap_ms=args.gap_ms, quick=args.quick, explorer_k=args.explorer_k
    )
    run = Run.start()
    cases, env = measure_cases(cfg, run)
    run.finish()
    text, result = report(cfg, cases, env, run, machine_info(None, PACKAGES))
    print()
    print(text)
    write_json(args.json, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
