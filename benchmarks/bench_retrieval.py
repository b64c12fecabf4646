"""Benchmark: region retrieval at scale -- search latency, indexing throughput, browser refresh, memory, quality.

Five measurements in one run, on the CPU (``--threads``, default 2):

1. **Search latency vs gallery size.** For N = 1k, 10k, 100k, 1M synthetic embeddings (random normal rows,
   L2-normalised, float32, built in 64k-row chunks) and D = 1280 and 2048, the median time of

   * ``ours``   ``ExactIndex(matrix).search(q, 10)``: the exact torch path ``Gallery.search`` uses;
   * ``plain``  ``torch.topk(torch.matmul(matrix, q), 10)`` on the same matrix, in the same run;
   * ``faiss``  ``FaissIndex(matrix).search(q, 10)`` (``faiss.IndexFlatIP``; it holds its own copy of the rows);
   * ``gallery`` (informational) ``Gallery.search_features(feats, None, 10)`` on a ``Gallery`` over the same rows
     (``efficientnet_lite0`` for D = 1280, a random-init ``resnet50`` for D = 2048: whole-image query, the top-k
     plus the 10 hits' region maps), with ``exclude=None`` and with an ``exclude`` hash as the RetrievalExplorer
     passes (``exclude_self=True``, its default).

   The ratio ours / plain is printed (goal: within 2x at 1M), and whether the three give the same top-10 indices
   (in order). 1M x 2048 float32 is 8 GB and FAISS copies it (16 GB): a size whose memory is not available
   (``psutil.virtual_memory().available``) is skipped and the table says so.
2. **Indexing throughput.** ``Gallery.build`` on ``demo_views(views_per_photo=15)`` (150 augmented views of the
   10 shipped real photos, shorter side 320 px) with ``ModelSession.from_pretrained("efficientnet_lite0",
   size=224)``, batch 16, ``num_workers`` 0 and 2, in images/s, next to the raw forward pass of the same model on
   the same preprocessed inputs in the same batches (``Gallery.build`` groups each batch of 16 by input shape;
   the baseline uses exactly those groups): ``session.forward(session.to_input(group))`` timed alone, resizing
   done beforehand. Goal: build throughput >= 90 % of the forward pass's. Runs are interleaved (forward, build 0,
   build 2, forward, ...), median of ``--index-repeats``.
3. **Paint stroke -> strip refreshed, in a real browser.** A notebook generated in a temporary directory builds,
   without running the model on the gallery, a 10k-image ``Gallery(session, entries, embeddings, features,
   images=...)`` (``entries``: one ``GalleryEntry`` per image): random normalised
   ``(10000, 1280)`` embeddings, one shared ``(1280, 7, 7)`` float16 feature array for every image, 10 small
   thumbnails of the demo photos cycled over the 10k entries; the query is the motorcycle photo. It shows
   ``sv.RetrievalExplorer(session, gallery, query)``; JupyterLab 4 (``tests/jupyter_browser.py``: loopback, fresh
   config) and headless Debian Chromium (Playwright) run it. With ``window.__SIMVIS_TRACE__ = true`` the widget
   appends ``{sent, shown, version}`` to its trace on every strip render (``sent`` = ``performance.now()`` of the
   last region send). We paint ``--strokes`` horizontal strokes (mouse down, one move every 16.7 ms, up; the
   Clear button between strokes, outside the measured windows) and report ``shown - sent`` over the renders
   during the strokes: p50, p95, count. Goal p50 <= 100 ms.

   ``sent`` is the *latest* send, which may be newer than the send a render answers (the kernel was still busy
   with an older region, or ipywidgets merged pending updates), so it can under-state the delay. So the script
   also matches every render to the send it answers: in the kernel, ``explorer.search`` is wrapped (an instance
   attribute; the library is unchanged) to record a signature of the region it searched under the
   ``results_version`` it produced, and in the page ``view.sendRegion`` is wrapped to log each send's time and the
   same signature (``sum_k w_k (k + 1)`` over the cell weights, computed in the same order on the same doubles in
   JS and Python: exactly equal). The matched delay is ``shown`` - the first send of that region (a repeated
   identical send triggers no search). Both are printed. Also timed in the kernel: ``explorer.search()``
   (search + region maps + thumbnails + sending the payload), ``gallery.search_features`` and
   ``gallery.index.search`` alone, for a painted region.
4. **Memory of a 100k-image gallery.** Embeddings: 100k x 1280 float32; what a ``Gallery`` over them holds (the
   embeddings and its scoring matrix, measured by RSS growth of this process). Local features on disk: a 10k
   gallery (7x7 grid) and a 1k gallery (14x14) are saved with ``Gallery.save``; the script checks the file sizes
   against the format's formula, then gives the 100k size from the formula (features and embeddings exact, the
   JSON header scaled linearly from the saved files). Loading the saved 10k gallery with ``mmap=True`` and
   ``mmap=False`` in fresh subprocesses: RSS growth (``/proc/self/status``), scaled linearly to 100k.
5. **Quality.** ``demo_views(views_per_photo=5)`` (50 images in 10 groups) embedded with the default
   ``efficientnet_lite0`` at size 320: whole-image precision@1 and mAP over the groups, each image a query with
   itself left out (``exclude_self=True``), and for region queries -- each photo's first view with a box over its
   central half (``box=(w/4, h/4, 3w/4, 3h/4)``) -- precision@1 / mAP of region search, next to whole-image
   search for the same 10 queries. Informational: whatever comes out.

Run from the repository root::

    python -m benchmarks.bench_retrieval             # ~3-5 minutes on 2 CPU cores, 24 GiB RAM (peak RSS ~17 GB)
    python -m benchmarks.bench_retrieval --quick     # no 1M, fewer repeats and strokes: ~1.5-2 minutes
    python -m benchmarks.bench_retrieval --smoke     # every part at toy sizes: only checks that the script runs
    python -m benchmarks.bench_retrieval --json results.json --parts 1 3

Timings on a shared machine are noisy: the load average at start and end is printed, with a warning when it was
high; ``--wait-load`` first waits (up to 10 minutes) for the 1-minute load average to drop below 1.2.
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import math
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from benchmarks.harness import (
    REPO,
    Run,
    Timing,
    arg_parser,
    available_bytes,
    header,
    jupyter_browser,
    lab,
    machine_info,
    measure,
    notebook,
    override,
    percentile,
    proc_status,
    seconds,
    to_jsonable,
    verdict,
    write_json,
)

K = 10
PACKAGES = ("faiss-cpu", "jupyterlab", "playwright")
GiB = 1 << 30
MB = 1e6


# --------------------------------------------------------------------------------------------------
# Settings and helpers
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    sizes: tuple[int, ...] = (1_000, 10_000, 100_000, 1_000_000)
    dims: tuple[int, ...] = (1280, 2048)
    search_repeats: int = 15
    """Timed runs per method for N < 1M (after one warm-up)."""
    search_repeats_large: int = 5
    """Timed runs per method for N >= 1M."""
    gallery_repeats_large: int = 3
    index_views: int = 15
    """views_per_photo for the indexing part (10 photos each)."""
    index_repeats: int = 3
    batch_size: int = 16
    browser_gallery: int = 10_000
    strokes: int = 8
    stroke_moves: int = 40
    memory_full: int = 100_000
    memory_saved: int = 10_000
    memory_saved_14: int = 1_000
    quality_views: int = 5
    quality_size: int = 320
    threads: int = 2
    quick: bool = False


QUICK = Settings(
    sizes=(1_000, 10_000, 100_000),
    search_repeats=7,
    index_views=6,
    index_repeats=2,
    strokes=4,
    stroke_moves=30,
    memory_saved=5_000,
    memory_saved_14=500,
    quick=True,
)
SMOKE = Settings(
    sizes=(1_000,),
    dims=(1280,),
    search_repeats=2,
    index_views=1,
    index_repeats=1,
    browser_gallery=200,
    strokes=1,
    stroke_moves=10,
    memory_full=10_000,
    memory_saved=500,
    memory_saved_14=100,
    quality_views=2,
    quick=True,
)
"""Toy sizes, every part: checks that the script runs (its numbers mean nothing)."""


def random_rows(n: int, d: int, seed: int, chunk: int = 65_536) -> Tensor:
    """``(n, d)`` float32 rows, standard normal then L2-normalised, filled in place chunk by chunk."""
    gen = torch.Generator().manual_seed(seed)
    out = torch.empty(n, d, dtype=torch.float32)
    for start in range(0, n, chunk):
        block = out[start : start + chunk]
        torch.randn(block.shape, generator=gen, out=block)
        block.div_(block.norm(dim=1, keepdim=True))
    return out


def _fmt_ms(x: float | None) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x * 1e3:.3f}" if x < 0.01 else f"{x * 1e3:.2f}" if x < 1 else f"{x * 1e3:.0f}"


# --------------------------------------------------------------------------------------------------
# (1) Search latency vs gallery size
# --------------------------------------------------------------------------------------------------


@dataclass
class SearchRow:
    n: int
    d: int
    runs: int = 0
    ours: Timing | None = None
    plain: Timing | None = None
    faiss: Timing | None = None
    faiss_build_s: float | None = None
    gallery: Timing | None = None
    gallery_exclude: Timing | None = None
    agree_plain: str = "-"
    agree_faiss: str = "-"
    notes: list[str] = field(default_factory=list)

    @property
    def ratio(self) -> float | None:
        if self.ours is None or self.plain is None:
            return None
        return self.ours.median_s / self.plain.median_s


def _agreement(a: Tensor, b: Tensor) -> str:
    if torch.equal(a, b):
        return "same"
    if set(a.tolist()) == set(b.tolist()):
        return "same set, order differs"
    return f"DIFFER ({len(set(a.tolist()) & set(b.tolist()))}/{len(a)} common)"


def _plain_topk(matrix: Tensor, q: Tensor) -> Any:
    return torch.topk(torch.matmul(matrix, q), K)


def bench_search(s: Settings, sessions: dict[int, Any], log: Callable[[str], None]) -> list[SearchRow]:
    from simvis_widgets.gallery import ExactIndex, FaissIndex, Gallery, GalleryEntry

    rows: list[SearchRow] = []
    for d in s.dims:
        session = sessions.get(d)
        gen = torch.Generator().manual_seed(d)
        q = torch.randn(d, generator=gen)
        q /= q.norm()
        feats = torch.rand(d, 7, 7, generator=gen)  # a whole-image query for the Gallery path
        for n in s.sizes:
            row = SearchRow(n, d)
            rows.append(row)
            need = n * d * 4
            if need + GiB > available_bytes():
                row.notes.append(f"skipped: {need / GiB:.1f} GiB matrix, {available_bytes() / GiB:.1f} GiB available")
                log(f"  N={n:,} D={d}: skipped (memory)")
                continue
            log(f"  N={n:,} D={d}: building the {need / GiB:.2f} GiB matrix ...")
            matrix = random_rows(n, d, seed=n + d)
            repeats = s.search_repeats_large if n >= 1_000_000 else s.search_repeats
            row.runs = repeats
            ours = ExactIndex(matrix)
            row.ours = measure(functools.partial(ours.search, q, K), repeats)
            row.plain = measure(functools.partial(_plain_topk, matrix, q), repeats)
            i_ours = ours.search(q, K)[1]
            i_plain = _plain_topk(matrix, q).indices
            row.agree_plain = _agreement(i_ours, i_plain)
            if need + GiB <= available_bytes():
                t0 = time.perf_counter()
                findex = FaissIndex(matrix)
                row.faiss_build_s = time.perf_counter() - t0
                row.faiss = measure(functools.partial(findex.search, q, K), repeats)
                row.agree_faiss = _agreement(i_ours, findex.search(q, K)[1])
                del findex
                gc.collect()
            else:
                row.notes.append(
                    f"FAISS skipped: its copy needs {need / GiB:.1f} GiB, {available_bytes() / GiB:.1f} GiB available"
                )
            # The Gallery path: the constructor makes the scoring matrix (a copy) and a transient; needs 2 x matrix.
            if session is None:
                row.notes.append(f"gallery path skipped: no {d}-channel session")
            elif 2 * need + GiB > available_bytes():
                row.notes.append(
                    f"gallery path skipped: Gallery() needs ~{2 * need / GiB:.1f} GiB more "
                    f"(scoring copy + transient), {available_bytes() / GiB:.1f} GiB available"
                )
            else:
                entries = [GalleryEntry(i, "", None, (7, 7)) for i in range(n)]
                shared = np.random.default_rng(d).random((d, 7, 7), dtype=np.float32).astype(np.float16)
                gallery = Gallery(session, entries, matrix, [shared] * n)
                g_repeats = s.gallery_repeats_large if n >= 1_000_000 else repeats
                search = functools.partial(gallery.search_features, feats, None, K)
                row.gallery = measure(search, g_repeats)
                row.gallery_exclude = measure(functools.partial(search, exclude="0" * 40), g_repeats)
                del search
                del gallery, entries
            log(
                f"    ours {_fmt_ms(row.ours.median_s)} ms, plain {_fmt_ms(row.plain.median_s)} ms, "
                f"faiss {_fmt_ms(row.faiss.median_s if row.faiss else None)} ms, "
                f"gallery {_fmt_ms(row.gallery.median_s if row.gallery else None)} ms"
            )
            del ours, matrix
            gc.collect()
    return rows


def format_search(rows: list[SearchRow], s: Settings) -> list[str]:
    lines = [
        (
            "(1) search latency, top-10 of N random normalised float32 rows (median ms; ours = ExactIndex.search, "
            "plain = torch.matmul + torch.topk, faiss = IndexFlatIP; gallery = Gallery.search_features, whole image, "
            "incl. 10 region maps; +excl = with an exclude hash, as RetrievalExplorer's default exclude_self=True)"
        ),
        (
            f"   {'D':>5} {'N':>10} {'runs':>5} {'ours':>9} {'plain':>9} {'ours/plain':>10} {'faiss':>9} "
            f"{'gallery':>9} {'+excl':>9}  {'top-10: ours vs plain / vs faiss'}"
        ),
    ]
    for r in rows:
        if r.ours is None or r.plain is None:
            lines.append(f"   {r.d:>5} {r.n:>10,} {'-':>5}  {'; '.join(r.notes)}")
            continue
        ratio = r.ratio or float("nan")
        lines.append(
            f"   {r.d:>5} {r.n:>10,} {r.runs:>5} {_fmt_ms(r.ours.median_s):>9} {_fmt_ms(r.plain.median_s):>9} "
            f"{ratio:>9.2f}x {_fmt_ms(r.faiss.median_s if r.faiss else None):>9} "
            f"{_fmt_ms(r.gallery.median_s if r.gallery else None):>9} "
            f"{_fmt_ms(r.gallery_exclude.median_s if r.gallery_exclude else None):>9}  {r.agree_plain} / {r.agree_faiss}"
        )
        for note in r.notes:
            lines.append(f"   {'':>5} {'':>10}  note: {note}")
    builds = [
        f"N={r.n:,} D={r.d}: {r.faiss_build_s:.2f} s" for r in rows if r.faiss_build_s is not None and r.n >= 100_000
    ]
    if builds:
        lines.append("   FAISS index build (copy of the rows): " + ", ".join(builds))
    for d in s.dims:
        big = [r for r in rows if r.d == d and r.n == max(s.sizes)]
        if big and big[0].ratio is not None:
            ratio = big[0].ratio
            lines.append(
                f"   goal: ours within 2x of plain matmul at N={max(s.sizes):,}, D={d}: {ratio:.2f}x   "
                f"{verdict(ratio <= 2.0) if max(s.sizes) >= 1_000_000 else 'info (no 1M in --quick)'}"
            )
        elif big:
            lines.append(
                f"   goal: ours within 2x of plain matmul at N={max(s.sizes):,}, D={d}: not measured ({'; '.join(big[0].notes)})"
            )
    return lines


# --------------------------------------------------------------------------------------------------
# (2) Indexing throughput
# --------------------------------------------------------------------------------------------------


@dataclass
class IndexResult:
    images: int
    batch_size: int
    groups: int
    forward: Timing
    builds: dict[int, Timing]
    shapes: int

    def rate(self, t: Timing) -> float:
        return self.images / t.median_s


def bench_indexing(session: Any, s: Settings, log: Callable[[str], None]) -> IndexResult:
    from simvis_widgets.datasets import demo_views
    from simvis_widgets.gallery import Gallery

    views = demo_views(views_per_photo=s.index_views)
    images = views.images
    prepared = [session.prepare(im) for im in images]
    groups: list[list[np.ndarray]] = []
    for start in range(0, len(prepared), s.batch_size):  # Gallery.build: batches of batch_size, split by shape
        by_shape: dict[tuple[int, ...], list[np.ndarray]] = {}
        for p in prepared[start : start + s.batch_size]:
            by_shape.setdefault(p.shape, []).append(p)
        groups.extend(by_shape.values())

    def forward_all() -> None:
        for g in groups:
            session.forward(session.to_input(g))

    def build(workers: int) -> Callable[[], object]:
        return lambda: Gallery.build(images, session, batch_size=s.batch_size, num_workers=workers, progress=False)

    log(f"  {len(images)} images, {len(groups)} forward groups; warm-up ...")
    forward_all()
    build(0)()
    runs: dict[str, list[float]] = {"forward": [], "0": [], "2": []}
    for r in range(s.index_repeats):
        for key, fn in (("forward", forward_all), ("0", build(0)), ("2", build(2))):
            runs[key].append(seconds(fn))
        log(
            f"  round {r + 1}: forward {runs['forward'][-1]:.2f} s, build(nw=0) {runs['0'][-1]:.2f} s, build(nw=2) {runs['2'][-1]:.2f} s"
        )
    timing = {k: Timing(tuple(v)) for k, v in runs.items()}
    return IndexResult(
        len(images),
        s.batch_size,
        len(groups),
        timing["forward"],
        {0: timing["0"], 2: timing["2"]},
        len({p.shape for p in prepared}),
    )


def format_indexing(r: IndexResult, session: Any) -> list[str]:
    fwd = r.rate(r.forward)
    lines = [
        (
            f"(2) indexing throughput: Gallery.build on {r.images} demo views ({r.shapes} input shapes), {session.name} "
            f"size {session.size}, batch {r.batch_size} ({r.groups} same-shape forward groups), median of {r.forward.n} interleaved runs"
        ),
        f"   {'what':<58}{'time':>9}{'images/s':>10}{'of forward':>12}   goal      result",
        f"   {'raw forward: forward(to_input(group)), inputs pre-resized':<58}{r.forward.median_s:>8.2f}s{fwd:>10.1f}{'100.0 %':>12}",
    ]
    for workers, t in r.builds.items():
        share = r.rate(t) / fwd
        lines.append(
            f"   {f'Gallery.build(num_workers={workers})':<58}{t.median_s:>8.2f}s{r.rate(t):>10.1f}"
            f"{100 * share:>10.1f} %   >= 90 %   {verdict(share >= 0.9)}"
        )
    return lines


# --------------------------------------------------------------------------------------------------
# (3) Paint stroke -> strip refreshed, in a real browser
# --------------------------------------------------------------------------------------------------

SETUP_CELL = """import numpy as np
import torch
from PIL import Image

import simvis_widgets as sv
from simvis_widgets.gallery import GalleryEntry


def make(n, seed=0):
    \"\"\"A synthetic n-image gallery: no model runs on the gallery images.\"\"\"
    torch.set_num_threads({threads})
    session = sv.ModelSession.from_pretrained("efficientnet_lite0", size=224, device="cpu")
    gen = torch.Generator().manual_seed(seed)
    embeddings = torch.randn(n, session.channels, generator=gen)
    embeddings /= embeddings.norm(dim=1, keepdim=True)
    shared = np.random.default_rng(seed).random((session.channels, 7, 7), dtype=np.float32).astype(np.float16)
    photos = sv.datasets.GALLERY_PHOTOS
    thumbs = []
    for name in photos:
        img = Image.fromarray(sv.datasets.demo_image(name))
        img.thumbnail((224, 224))
        thumbs.append(np.array(img))
    entries = [GalleryEntry(source=i, pixel_hash=f"{{i:040x}}", file_hash=None, grid=(7, 7), label=photos[i % len(photos)])
               for i in range(n)]
    gallery = sv.Gallery(session, entries, embeddings, [shared] * n, images=[thumbs[i % len(thumbs)] for i in range(n)])
    return session, gallery, sv.datasets.demo_image("motorcycle_left")


session, gallery, query = make({n})
gallery"""

TRACE_HOOK = """() => {
  window.__SIMVIS_TRACE__ = true;
  const view = document.querySelector('.simvis-retrieval').__simvis;
  view.trace = [];
  window.__benchSends = [];
  const sig = (r) => {
    if (!r || r.kind !== 'cells') return -1;
    let s = 0;
    for (let k = 0; k < r.weights.length; k++) s += r.weights[k] * (k + 1);
    return s;
  };
  const original = view.sendRegion.bind(view);
  view.sendRegion = function (force = false) {
    const before = this.requestId, region = this.model.get('query_region');
    original(force);
    const now = this.model.get('query_region');
    if (this.requestId !== before || now !== region) window.__benchSends.push({ t: this.sentAt.get(this.requestId), sig: sig(now) });
  };
  return true;
}"""

KERNEL_HOOK = """import json as _json
import time as _time
_answered = {}
_search = explorer.search
def _traced_search():
    _t0 = _time.time() * 1000
    _r = explorer.view.query_region
    _s = -1
    if explorer.view.region_mode != 'whole' and _r.get('kind') == 'cells':
        _s = 0.0
        for _k, _w in enumerate(_r['weights']):
            _s += _w * (_k + 1)
    _hits = _search()
    _answered[explorer.view.results_version] = [_s, _t0, _time.time() * 1000]
    return _hits
explorer.search = _traced_search
explorer.view.region_mode = 'region'
print('hooked')"""

KERNEL_TIMING = """import json, statistics, time
import torch
from simvis_widgets.decompose import region_query
gh, gw = explorer.view.query_grid
w = [0.0] * (gh * gw)
for r in range(gh // 3, 2 * gh // 3 + 1):
    for c in range(gw // 3, 2 * gw // 3 + 1):
        w[r * gw + c] = 1.0
explorer.search = _search
explorer.view.region_mode = 'region'
explorer.view.query_region = {{'kind': 'cells', 'weights': w}}
wt = explorer.weights()
s = session
enc = session.encode(query)  # the explorer's query, from the session's cache
q, e = region_query(enc.features, wt, s.pooling, s.p, s.head)
q = q.float() / float(e.norm())
def med(fn, n={n}):
    fn()
    runs = []
    for _ in range(n):
        t0 = time.perf_counter(); fn(); runs.append(time.perf_counter() - t0)
    return statistics.median(runs)
out = {{
    'explorer_search': med(explorer.search),
    'search_features': med(lambda: gallery.search_features(enc.features, wt, 8, exclude=enc.hash)),
    'search_features_no_exclude': med(lambda: gallery.search_features(enc.features, wt, 8)),
    'index_search': med(lambda: gallery.index.search(q, 8)),
    'threads': torch.get_num_threads(),
}}
print(json.dumps(out))"""


@dataclass
class BrowserResult:
    gallery: int = 0
    strokes: int = 0
    sends: int = 0
    trace_ms: list[float] = field(default_factory=list)
    matched_ms: list[float] = field(default_factory=list)
    unmatched: int = 0
    stale: int = 0
    phases: list[list[float]] = field(default_factory=list)
    """Per matched render: [send -> search starts in the kernel, search, search done -> shown] (ms, wall clock)."""
    kernel: dict[str, float] = field(default_factory=dict)
    canvas: list[float] = field(default_factory=list)
    query_grid: list[int] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    error: str | None = None


def _match(
    trace: list[dict[str, Any]], sends: list[dict[str, Any]], answered: dict[int, list[float]]
) -> list[int | None]:
    """Per render: the index in ``sends`` of the first send of the region it answers (see the module
    docstring); None where no send matches. ``answered``: results_version -> [signature, start, end]."""
    out: list[int | None] = []
    for entry in trace:
        sig = answered[int(entry["version"])][0] if int(entry["version"]) in answered else None
        idx = [i for i, snd in enumerate(sends) if snd["t"] <= entry["shown"] and snd["sig"] == sig]
        if sig is None or not idx:
            out.append(None)
            continue
        i = idx[-1]
        while i > 0 and sends[i - 1]["sig"] == sig:
            i -= 1
        out.append(i)
    return out


def bench_browser(s: Settings, log: Callable[[str], None]) -> BrowserResult:
    jb = jupyter_browser()
    open_and_run, kernel_exec = jb.open_and_run, jb.kernel_exec
    res = BrowserResult(gallery=s.browser_gallery, strokes=s.strokes)
    t_start = time.perf_counter()
    nb = notebook(
        [
            SETUP_CELL.format(threads=s.threads, n=s.browser_gallery),
            "explorer = sv.RetrievalExplorer(session, gallery, query)\nexplorer",
        ]
    )
    with lab("simvis-bench-retrieval-", {"bench_retrieval.ipynb": json.dumps(nb, indent=1)}) as (server, page):
        log("  JupyterLab up; running the notebook ...")
        open_and_run(page, server.lab("bench_retrieval.ipynb"))
        page.wait_for_selector(".simvis-retrieval[data-results]", timeout=300_000)
        page.wait_for_function(
            "() => document.querySelectorAll('.simvis-retrieval .sv-card').length === 8", timeout=60_000
        )
        widget = page.locator(".simvis-retrieval").first
        widget.scroll_into_view_if_needed()
        if "hooked" not in kernel_exec(page, KERNEL_HOOK):
            raise RuntimeError("could not wrap explorer.search in the kernel")
        page.wait_for_timeout(800)  # the region_mode change's search
        page.evaluate(TRACE_HOOK)
        res.query_grid = page.evaluate(
            "() => document.querySelector('.simvis-retrieval').__simvis.model.get('query_grid')"
        )
        canvas = widget.locator('[data-testid="mark-q"]')
        canvas.scroll_into_view_if_needed()
        box = canvas.bounding_box()
        res.canvas = [box["width"], box["height"]]
        log(
            f"  widget ready (query canvas {box['width']:.0f} x {box['height']:.0f} px, grid {res.query_grid}); painting {s.strokes} strokes ..."
        )
        windows: list[tuple[float, float]] = []
        clear = widget.get_by_role("button", name="Clear")
        for stroke in range(s.strokes):
            y = box["y"] + box["height"] * (0.15 + 0.7 * (stroke % 5) / 4 + 0.03 * (stroke // 5))
            x0, x1 = box["x"] + 0.08 * box["width"], box["x"] + 0.92 * box["width"]
            if stroke % 2:
                x0, x1 = x1, x0
            page.mouse.move(x0, y)
            t_begin = float(page.evaluate("() => performance.now()"))
            page.mouse.down()
            next_at = time.perf_counter()
            for m in range(1, s.stroke_moves + 1):
                next_at += 1 / 60
                page.mouse.move(x0 + (x1 - x0) * m / s.stroke_moves, y + 6 * math.sin(m / 3))
                delay = next_at - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            page.mouse.up()
            # settle: no new render for 600 ms (at most 15 s)
            last, quiet_since, deadline = -1, time.perf_counter(), time.perf_counter() + 15
            while time.perf_counter() < deadline:
                count = int(page.evaluate("() => document.querySelector('.simvis-retrieval').__simvis.trace.length"))
                if count != last:
                    last, quiet_since = count, time.perf_counter()
                elif time.perf_counter() - quiet_since > 0.6:
                    break
                page.wait_for_timeout(50)
            windows.append((t_begin, float(page.evaluate("() => performance.now()"))))
            clear.click()
            page.wait_for_timeout(700)
        trace = page.evaluate("() => document.querySelector('.simvis-retrieval').__simvis.trace")
        sends = page.evaluate("() => window.__benchSends")
        answered = {int(k): v for k, v in json.loads(kernel_exec(page, "print(_json.dumps(_answered))")).items()}
        in_strokes = [e for e in trace if any(a <= e["shown"] <= b for a, b in windows)]
        res.sends = sum(1 for snd in sends if any(a <= snd["t"] <= b for a, b in windows))
        res.trace_ms = [float(e["shown"]) - float(e["sent"]) for e in in_strokes]
        origin = float(page.evaluate("() => performance.timeOrigin"))
        for e, i in zip(in_strokes, _match(in_strokes, sends, answered)):
            if i is None:
                res.unmatched += 1
                continue
            sent, shown = float(sends[i]["t"]), float(e["shown"])
            res.matched_ms.append(shown - sent)
            res.stale += int(sent < float(e["sent"]))
            _, k0, k1 = answered[int(e["version"])]
            res.phases.append([k0 - (origin + sent), k1 - k0, origin + shown - k1])
        log(f"  {len(in_strokes)} refreshes during strokes; timing the search in the kernel ...")
        printed = kernel_exec(page, KERNEL_TIMING.format(n=10 if s.quick else 30))
        try:
            res.kernel = json.loads(printed.strip().splitlines()[-1])
        except (json.JSONDecodeError, IndexError):
            res.error = f"kernel timing failed: {printed[-500:]}"
        res.page_errors = [e for e in page.errors if "ResizeObserver loop" not in e][:5]  # type: ignore[attr-defined]
    res.wall_s = time.perf_counter() - t_start
    return res


def format_browser(r: BrowserResult) -> list[str]:
    def stats(v: list[float]) -> str:
        if not v:
            return "no refreshes"
        return (
            f"p50 {percentile(v, 50):7.1f} ms   p95 {percentile(v, 95):7.1f} ms   max {max(v):7.1f} ms   count {len(v)}"
        )

    lines = [
        (
            f"(3) paint stroke -> strip refreshed in JupyterLab + headless Chromium, RetrievalExplorer on a {r.gallery:,}-image "
            f"gallery (1280-d, k=8, exclude_self), {r.strokes} strokes at 60 Hz, query grid {r.query_grid}"
        ),
    ]
    if r.error and not r.trace_ms:
        return lines + [f"   FAILED: {r.error}"]
    lines += [
        (
            f"   {r.sends} region sends during the strokes; {len(r.trace_ms)} strip renders, {r.stale} of them answering an older "
            "region than the latest send"
        ),
        f"   widget trace: shown - sent, by request id:   {stats(r.trace_ms)}",
        f"   matched to the send each render answers:     {stats(r.matched_ms)}"
        + (f"   ({r.unmatched} unmatched)" if r.unmatched else ""),
    ]
    if r.phases:
        ph = np.asarray(r.phases)
        lines.append(
            f"   matched delay split (p50, wall clocks of page and kernel): send -> explorer.search starts {np.median(ph[:, 0]):.1f} ms, "
            f"explorer.search {np.median(ph[:, 1]):.1f} ms, search done -> strip shown {np.median(ph[:, 2]):.1f} ms"
        )
    p50 = percentile(r.trace_ms, 50)
    p50m = percentile(r.matched_ms, 50)
    lines.append(
        f"   goal p50 <= 100 ms: trace {p50:.1f} ms {verdict(p50 <= 100) if r.trace_ms else 'not measured'}; "
        f"matched {p50m:.1f} ms {verdict(p50m <= 100) if r.matched_ms else 'not measured'}"
    )
    k = r.kernel
    if k:
        lines.append(
            f"   in the kernel ({int(k.get('threads', 0))} torch threads, median): explorer.search() {k['explorer_search'] * 1e3:.2f} ms "
            f"(search + maps + thumbnails + payload); gallery.search_features {k['search_features'] * 1e3:.2f} ms with the "
            f"exclude hash, {k['search_features_no_exclude'] * 1e3:.2f} ms without; gallery.index.search {k['index_search'] * 1e3:.2f} ms"
        )
    if r.error:
        lines.append(f"   note: {r.error}")
    if r.page_errors:
        lines.append(f"   page errors: {r.page_errors}")
    return lines


# --------------------------------------------------------------------------------------------------
# (4) Memory
# --------------------------------------------------------------------------------------------------

LOAD_SCRIPT = """import json, time
import torch
import simvis_widgets as sv
from simvis_widgets.gallery import Gallery
from benchmarks.harness import proc_status  # run with the repository root as the working directory
torch.set_num_threads({threads})
session = sv.ModelSession.from_pretrained("efficientnet_lite0", size=224, device="cpu")
import gc; gc.collect()
before = proc_status()
t0 = time.perf_counter()
gallery = Gallery.load({path!r}, session, mmap={mmap})
load_s = time.perf_counter() - t0
loaded = proc_status()
hits = gallery.search_features(torch.rand(session.channels, 7, 7), None, 10)
searched = proc_status()
print(json.dumps({{"before": before, "loaded": loaded, "searched": searched, "load_s": load_s}}))
"""


@dataclass
class MemoryResult:
    n_full: int
    dim: int
    embeddings_bytes: int
    gallery_rss_growth: int
    scoring_is_copy: bool
    saved: list[dict[str, Any]]
    loads: dict[str, dict[str, Any]]
    n_loaded: int


def _save_gallery(session: Any, n: int, grid: int, path: Path) -> dict[str, Any]:
    from simvis_widgets.gallery import Gallery, GalleryEntry

    c = session.channels
    entries = [GalleryEntry(i, f"{i:040x}", None, (grid, grid), f"group{i % 10}") for i in range(n)]
    shared = np.random.default_rng(grid).random((c, grid, grid), dtype=np.float32).astype(np.float16)
    gallery = Gallery(session, entries, random_rows(n, c, seed=grid), [shared] * n)
    t0 = time.perf_counter()
    gallery.save(path)
    save_s = time.perf_counter() - t0
    size = path.stat().st_size
    with open(path, "rb") as fh:
        fh.seek(8)
        header_len = int.from_bytes(fh.read(8), "little")
    features = n * c * grid * grid * 2
    embeddings = n * c * 4
    # the format: MAGIC + u64 + header (padded) -> align 64 -> embeddings -> align 64 -> features

    def align(v: int) -> int:
        return (v + 63) // 64 * 64

    formula = align(align(8 + 8 + header_len) + embeddings) + features
    return {
        "n": n,
        "grid": grid,
        "file_bytes": size,
        "formula_bytes": formula,
        "header_bytes": header_len,
        "features_bytes": features,
        "embeddings_bytes": embeddings,
        "save_s": save_s,
    }


def bench_memory(session: Any, s: Settings, log: Callable[[str], None]) -> MemoryResult:
    from simvis_widgets.gallery import Gallery, GalleryEntry

    n, c = s.memory_full, session.channels
    log(f"  a {n:,}-image in-memory Gallery ...")
    emb = random_rows(n, c, seed=1)
    entries = [GalleryEntry(i, f"{i:040x}", None, (7, 7)) for i in range(n)]
    shared = np.random.default_rng(0).random((c, 7, 7), dtype=np.float32).astype(np.float16)
    gc.collect()
    before = proc_status().get("VmRSS", 0)
    gallery = Gallery(session, entries, emb, [shared] * n)
    growth = proc_status().get("VmRSS", 0) - before
    is_copy = gallery.scoring_matrix().data_ptr() != gallery.embeddings.data_ptr()
    del gallery, emb, entries
    gc.collect()

    saved: list[dict[str, Any]] = []
    loads: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="simvis-bench-memory-") as tmp:
        for count, grid in ((s.memory_saved, 7), (s.memory_saved_14, 14)):
            log(f"  saving a {count:,}-image gallery, {grid}x{grid} features ...")
            saved.append(_save_gallery(session, count, grid, Path(tmp) / f"g{grid}.simvis"))
            gc.collect()
        path = Path(tmp) / "g7.simvis"
        for mmap in (True, False):
            log(f"  loading it in a fresh process, mmap={mmap} ...")
            script = LOAD_SCRIPT.format(threads=s.threads, path=str(path), mmap=mmap)
            proc = subprocess.run(
                [sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=300, check=False
            )
            if proc.returncode != 0:
                loads[str(mmap)] = {"error": proc.stderr[-800:]}
            else:
                loads[str(mmap)] = json.loads(proc.stdout.strip().splitlines()[-1])
    return MemoryResult(n, c, n * c * 4, growth, is_copy, saved, loads, s.memory_saved)


def format_memory(r: MemoryResult) -> list[str]:
    lines = [f"(4) memory of a {r.n_full:,}-image gallery (D={r.dim})"]
    lines.append(
        f"   embeddings {r.n_full:,} x {r.dim} float32: {r.embeddings_bytes / MB:,.0f} MB; a Gallery over them grew RSS by "
        f"{r.gallery_rss_growth / MB:,.0f} MB ({'the scoring matrix is a second copy' if r.scoring_is_copy else 'scoring matrix shares the embeddings'}"
        f"; the caller's embeddings tensor is kept as Gallery.embeddings)"
    )
    lines.append(
        "   saved file (Gallery.save): measured vs the format's formula, and the 100k size from the formula "
        "(features + embeddings exact, JSON header scaled linearly)"
    )
    lines.append(
        f"   {'grid':>6} {'saved N':>8} {'file MB':>10} {'formula':>10} {'header MB':>10} {'features/img':>13} "
        f"{'100k file GB':>13} {'100k features GB':>17}"
    )
    for sv_ in r.saved:
        scale = r.n_full / sv_["n"]
        per_img = sv_["features_bytes"] / sv_["n"]
        full = (sv_["header_bytes"] * scale + 16 + 128) + r.n_full * r.dim * 4 + r.n_full * per_img
        lines.append(
            f"   {sv_['grid']:>4}^2 {sv_['n']:>8,} {sv_['file_bytes'] / MB:>10,.1f} "
            f"{'exact' if sv_['formula_bytes'] == sv_['file_bytes'] else 'DIFFERS':>10} {sv_['header_bytes'] / MB:>10.2f} "
            f"{per_img / 1e3:>10.1f} kB {full / 1e9:>13.2f} {r.n_full * per_img / 1e9:>17.2f}"
        )
    lines.append(
        f"   loading the saved {r.n_loaded:,}-image 7x7 gallery in a fresh process (page cache warm: it was just written); "
        f"RSS growth, and x{r.n_full // r.n_loaded} for {r.n_full:,}:"
    )
    for mmap, d in r.loads.items():
        if "error" in d:
            lines.append(f"   mmap={mmap}: FAILED {d['error'][-300:]}")
            continue
        b, lo, se = d["before"], d["loaded"], d["searched"]
        grow = lo["VmRSS"] - b["VmRSS"]
        peak = max(0, lo["VmHWM"] - b["VmRSS"])
        after = se["VmRSS"] - b["VmRSS"]
        scale = r.n_full / r.n_loaded
        lines.append(
            f"   mmap={mmap!s:<5}  load {d['load_s']:.2f} s; RSS +{grow / MB:,.0f} MB after load (anon +"
            f"{(lo['RssAnon'] - b['RssAnon']) / MB:,.0f}, file-backed +{(lo['RssFile'] - b['RssFile']) / MB:,.0f}), "
            f"+{after / MB:,.0f} MB after one search, peak +{peak / MB:,.0f} MB  ->  100k: ~{grow * scale / 1e9:.2f} GB"
        )
    return lines


# --------------------------------------------------------------------------------------------------
# (5) Quality
# --------------------------------------------------------------------------------------------------


@dataclass
class QualityResult:
    images: int
    groups: int
    size: int
    whole_p1: float
    whole_map: float
    region_queries: int
    region_p1: float
    region_map: float
    region_whole_p1: float
    region_whole_map: float
    wall_s: float


def _ap(labels: list[Any], target: Any) -> tuple[float, float]:
    """(precision@1, average precision) of a ranked list of labels for ``target``."""
    rel = [lab == target for lab in labels]
    hits, total = 0, 0.0
    for rank, r in enumerate(rel, start=1):
        if r:
            hits += 1
            total += hits / rank
    return float(rel[0]) if rel else 0.0, total / max(1, sum(rel))


def bench_quality(s: Settings, log: Callable[[str], None]) -> QualityResult:
    from simvis_widgets import ModelSession
    from simvis_widgets.datasets import demo_views
    from simvis_widgets.gallery import Gallery

    t0 = time.perf_counter()
    session = ModelSession.from_pretrained("efficientnet_lite0", size=s.quality_size, device="cpu")
    views = demo_views(views_per_photo=s.quality_views)
    gallery = Gallery.build(views.images, session, labels=views.groups, progress=False)
    n = len(gallery)
    log(f"  {n} images embedded; {n} whole-image queries + {len(set(views.groups))} region queries ...")
    whole = [
        _ap([h.label for h in gallery.search(img, k=n - 1, exclude_self=True)], grp)
        for img, grp in zip(views.images, views.groups)
    ]
    firsts = [i for i, name in enumerate(views.names) if name.endswith("/0")]
    region, region_whole = [], []
    for i in firsts:
        img, grp = views.images[i], views.groups[i]
        h, w = img.shape[:2]
        hits = gallery.search(img, box=(w / 4, h / 4, 3 * w / 4, 3 * h / 4), k=n - 1, exclude_self=True)
        if len(hits) != n - 1:
            raise RuntimeError(f"exclude_self left {len(hits)} hits of {n - 1}")
        region.append(_ap([x.label for x in hits], grp))
        region_whole.append(whole[i])

    def mean(v: list[tuple[float, float]], j: int) -> float:
        return float(np.mean([x[j] for x in v]))

    return QualityResult(
        n,
        len(set(views.groups)),
        s.quality_size,
        mean(whole, 0),
        mean(whole, 1),
        len(firsts),
        mean(region, 0),
        mean(region, 1),
        mean(region_whole, 0),
        mean(region_whole, 1),
        time.perf_counter() - t0,
    )


def format_quality(r: QualityResult) -> list[str]:
    return [
        (
            f"(5) quality: demo_views({r.images // r.groups}) = {r.images} images in {r.groups} groups, efficientnet_lite0 size {r.size}, "
            "query left out (exclude_self), relevant = same source photo (informational)"
        ),
        f"   {'queries':<58}{'precision@1':>12}{'mAP':>8}",
        f"   {f'whole image, all {r.images} views':<58}{r.whole_p1:>12.3f}{r.whole_map:>8.3f}",
        f"   {f'whole image, the {r.region_queries} first views':<58}{r.region_whole_p1:>12.3f}{r.region_whole_map:>8.3f}",
        f"   {f'region: central half box of the {r.region_queries} first views':<58}{r.region_p1:>12.3f}{r.region_map:>8.3f}",
    ]


# --------------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = arg_parser(__doc__, "no 1M rows, fewer repeats and strokes (~1.5-2 minutes)")
    ap.add_argument("--smoke", action="store_true", help="every part at toy sizes: checks that the script runs")
    ap.add_argument(
        "--parts",
        type=int,
        nargs="+",
        default=[1, 2, 3, 4, 5],
        choices=[1, 2, 3, 4, 5],
        help="which parts to run (default: all)",
    )
    ap.add_argument(
        "--sizes", type=int, nargs="+", help="gallery sizes for part 1 (default 1k 10k 100k 1M; no 1M with --quick)"
    )
    ap.add_argument(
        "--wait-load",
        action="store_true",
        help="first wait (up to 10 minutes) until the 1-minute load average is below 1.2",
    )
    return ap.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    base = SMOKE if args.smoke else QUICK if args.quick else Settings()
    s = override(base, threads=args.threads, sizes=tuple(args.sizes) if args.sizes else None)
    run = Run.start(s.threads, wait_load=1.2 if args.wait_load else None)
    log = run.log
    from simvis_widgets import ModelSession

    sessions: dict[int, Any] = {}
    out: dict[str, Any] = {"settings": asdict(s)}
    lines: list[str] = []
    parts = set(args.parts)
    if parts & {1, 2, 4}:
        sessions[1280] = ModelSession.from_pretrained("efficientnet_lite0", size=224, device="cpu")
    if 1 in parts:
        if 2048 in s.dims:
            sessions[2048] = ModelSession.from_pretrained("resnet50", pretrained=False, size=224, device="cpu")
        log("(1) search latency ...")
        rows = bench_search(s, sessions, log)
        out["search"] = rows
        lines += format_search(rows, s) + [""]
        sessions.pop(2048, None)
        gc.collect()
    if 2 in parts:
        log("(2) indexing throughput ...")
        idx = bench_indexing(sessions[1280], s, log)
        out["indexing"] = idx
        lines += format_indexing(idx, sessions[1280]) + [""]
    if 3 in parts:
        log("(3) browser: paint stroke -> strip ...")
        try:
            br = bench_browser(s, log)
        except Exception as err:  # noqa: BLE001 -- report and go on with the other parts
            br = BrowserResult(gallery=s.browser_gallery, strokes=s.strokes, error=f"{type(err).__name__}: {err}")
        out["browser"] = br
        lines += format_browser(br) + [""]
    if 4 in parts:
        log("(4) memory ...")
        mem = bench_memory(sessions[1280], s, log)
        out["memory"] = mem
        lines += format_memory(mem) + [""]
    if 5 in parts:
        log("(5) quality ...")
        qual = bench_quality(s, log)
        out["quality"] = qual
        lines += format_quality(qual) + [""]
    run.finish()
    info = machine_info(s.threads, PACKAGES)

    print("simvis_widgets retrieval benchmark (CPU): search latency, indexing, browser refresh, memory, quality")
    print("\n".join(header(info, run)))
    print(f"mode {'smoke' if args.smoke else 'quick' if s.quick else 'default'}; parts {sorted(parts)}")
    busy = run.busy_note("timings are noisy (part (3) itself runs a browser, JupyterLab and a kernel)", start_share=0.6)
    if busy:
        print(busy)
    print()
    for ln in lines:
        print(ln)
    print(f"total benchmark time {run.total_s:.0f} s")
    out.update({"machine": info, **run.record()})
    write_json(args.json, out)
    return to_jsonable(out)


if __name__ == "__main__":
    main()
