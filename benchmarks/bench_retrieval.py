"""Benchmark: region retrieval over the Lance gallery -- exact search at scale, indexing, browser refresh, storage, quality.

Six measurements in one run, on the CPU (``--threads``, default 2, for torch; the int8 scan uses
``Int8Index.threads`` = min(4, cores)):

1. **Exact search vs gallery size.** For N = 10k, 100k, 1M synthetic embeddings (standard normal rows,
   L2-normalised, float32, made in 64k-row chunks) and D = 1280 and 2048, the median time of a top-10 search
   for one random unit query ``q``, every method in the same run on the same rows:

   * ``torch``   ``torch.topk(torch.matmul(matrix, q), 10)`` on the contiguous ``(N, D)`` float32 matrix: the
     baseline;
   * ``int8``    ``Int8Index.build(ArrayKeys(keys)).search(kq, 10)``: ``keys`` = ``scoring_keys(rows, None,
     normalize=True)`` (``(N, D + 1)`` float32 in RAM, filled chunk by chunk; the last value of a key is
     ``1/|e|``), ``kq`` = ``region_key_query(q, 1.0)``: the keys and query a cosine gallery searches with; the
     re-rank reads the exact keys from the in-RAM array;
   * ``lance``   ``gallery.index.search(kq, 10)`` on a real ``Gallery.open``-ed Lance dataset holding the same
     rows (written with ``GalleryWriter.commit`` in 50k-row commits, ``StoredRow`` per row, ``(1, 1)`` float16
     local features for D = 1280 -- the part (3) gallery --, none (``"recompute"``) for D = 2048): the same index,
     its re-rank reading and verifying the candidates' embeddings from the dataset;
   * ``int8 D``  (diagnostic) ``Int8Index.build(ArrayKeys(rows))``: the index over the bare ``(N, D)`` rows
     (no ``1/|e|`` column), to show what the scan gives when the int8 scale of a row is set by its embedding
     values alone.

   For each: ``index.reranked`` (rows re-ranked exactly by the timed search), whether its top-10 indices equal
   torch's (in order) and the largest score difference (goal: identical, scores within 1e-6), the time ratio to
   torch (goal at 1M: <= 0.4x), and the RAM of the index: ``Int8Index.nbytes`` and the RSS growth (VmRSS) of
   ``Int8Index.build`` / ``Gallery.open`` against the ``N x D x 4`` bytes of the float32 matrix (goal: <= half).
   Also printed: the write time of the Lance dataset (rows -> ``StoredRow`` -> commits), its size on disk and the
   ``Gallery.open`` time. A search whose first (warm-up) call takes over 5 s is timed by that one call only (the
   table marks it ``*``). A variant whose memory (``psutil.virtual_memory().available``, matrix + keys +
   re-rank transient) or disk (dataset estimate + 3 GB) is not available is skipped and the table says so.
2. **Indexing throughput.** ``Gallery.build`` (rows committed to a new Lance dataset in a temporary folder,
   ``features="store"``) on ``demo_views(views_per_photo=15)`` (150 augmented views of the 10 shipped real photos,
   shorter side 320 px) with ``ModelSession.from_pretrained("efficientnet_lite0", size=224)``, batch 16,
   ``num_workers`` 0 and 2, in images/s, next to the raw forward pass of the same model on the same preprocessed
   inputs in the same batches (``Gallery.build`` groups each batch of 16 by input shape; the baseline uses exactly
   those groups): ``session.forward(session.to_input(group))`` timed alone, resizing done beforehand. Goal: build
   throughput >= 90 % of the forward pass's. Runs are interleaved (forward, build 0, build 2, forward, ...),
   median of ``--index-repeats``; every build writes a fresh dataset.
3. **Paint stroke -> strip refreshed, in a real browser.** A synthetic Lance gallery of 1M rows (``--quick``:
   10k; ``--browser-gallery N``): the part (1) D = 1280 dataset when part (1) wrote one of that size, else written
   the same way -- random normalised embeddings, one ``(1280, 1, 1)`` float16 local-feature array per row (2.5 kB;
   7x7 features would make 125 GB at 1M, so the hits' region maps are 1x1 here: their map cost at 7x7 is part (4)'s
   ``store`` column), pixel hashes and labels of 10 small thumbnails of the demo photos cycled over the rows. A
   notebook generated in a temporary directory opens it with ``Gallery.open(path, session, images=thumbnails
   cycled)`` (the open time is printed) and shows ``sv.RetrievalExplorer(session, gallery, query)`` (the Explorer in
   paint mode: query on the left, the selected hit on the right, the strip below; query: the
   motorcycle photo); JupyterLab 4 (``tests/jupyter_browser.py``: loopback, fresh config) and headless Debian
   Chromium (Playwright) run it. One ``explorer.search()`` is first timed in the kernel: when it takes over
   ``--browser-max-search`` seconds (default 3) the strokes are not painted (each would wait that long per
   refresh, and each timing below would take as long) and the report says so. Otherwise (the widget's view is
   ``root.__simvis``: ``tests/jupyter_browser.py`` sets ``__SIMVIS_TEST_HOOKS__`` by an init script), with
   ``window.__SIMVIS_TRACE__ = true`` the widget appends
   ``{sent, shown, version, id}`` to its ``stripTrace`` on every strip render (``sent`` = ``performance.now()`` of the last
   region send). We paint ``--strokes`` horizontal strokes (mouse down, one move every 16.7 ms, up; the Clear
   button between strokes, outside the measured windows; a stroke's window ends once no render came for 600 ms or
   twice the first search's time) and report ``shown - sent`` over the renders during the
   strokes: p50, p95, count. Goal p50 <= 100 ms at 1M.

   ``sent`` is the *latest* send, which may be newer than the send a render answers (the kernel was still busy
   with an older region, or ipywidgets merged pending updates), so it can under-state the delay. So the script
   also matches every render to the send it answers: in the kernel, ``explorer.search`` is wrapped (an instance
   attribute; the library is unchanged) to record a signature of the region it searched under the
   ``strip_version`` it produced, and in the page the view's ``RegionSender.send`` is wrapped to log each
   send's time and the same signature (``sum_k w_k (k + 1)`` over the cell weights, computed in the same order on
   the same doubles in JS and Python: exactly equal). The matched delay is ``shown`` - the first send of that region (a repeated
   identical send triggers no search). Both are printed. Also timed in the kernel (median, each at most ~20 s of
   runs): ``explorer.search()`` (search + region maps + thumbnails + sending the payload),
   ``gallery.search_features`` with and without the exclude hash, ``gallery.index.search`` alone (and its
   ``reranked``) and ``gallery.hit_features`` of the 8 hits, for a painted region.
4. **Storage vs search cost: ``features="store"`` vs ``"recompute"``.** (a) Disk: 1k synthetic rows (random
   float16 features, 1280 channels) written with ``GalleryWriter`` at 7x7 and 14x14 grids in each mode; the
   dataset folder's size (all files) per image. (b) Per-search cost: ``demo_views(views_per_photo=5)`` (50 images)
   built with ``Gallery.build(..., features="store")`` and ``"recompute"`` (efficientnet_lite0, size 224); the
   folder size per image of each, and the median time of a k=8 search with region maps --
   ``gallery.search_features(features, weights, 8, exclude=hash)`` for the motorcycle photo with its central-half
   box (the query encoded once, beforehand) -- on each (recompute runs the network on the 8 hits); the two must
   return the same hits. Reported as disk per image vs ms per search, and the break-even in words.
5. **Quality.** ``demo_views(views_per_photo=5)`` (50 images in 10 groups) embedded with the default
   ``efficientnet_lite0`` at size 320: whole-image precision@1 and mAP over the groups, each image a query with
   itself left out (``exclude_self=True``), and for region queries -- each photo's first view with a box over its
   central half (``box=(w/4, h/4, 3w/4, 3h/4)``) -- precision@1 / mAP of region search, next to whole-image
   search for the same 10 queries. Informational: whatever comes out.
6. **Approximate search** (galleries too big to scan): the parts of ``benchmarks/bench_ann.py`` in this run --
   FAISS IVF-PQ + exact re-rank (``IvfPqIndex``) against Lance's own IVF_PQ on 1M x 1280, and 10M x 256
   clustered keys (goals: recall@10 >= 0.95 against exact, p50 <= 50 ms, peak RSS <= 4 GB); ``--quick``: 50k x
   1280 and 200k x 256. About 15 minutes and 10 GB of disk at full size.

Run from the repository root::

    python -m benchmarks.bench_retrieval             # with 1M rows: ~30+ minutes on 2 CPU cores, 24 GiB RAM, ~10 GB disk
    python -m benchmarks.bench_retrieval --quick     # no 1M, fewer repeats and strokes, 10k browser gallery: ~5 minutes
    python -m benchmarks.bench_retrieval --smoke     # every part at toy sizes: only checks that the script runs
    python -m benchmarks.bench_retrieval --json results.json --parts 1 3 --sizes 100000 --browser-gallery 100000

Timings on a shared machine are noisy: the load average at start and end is printed, with a warning when it was
high; ``--wait-load`` first waits (up to 10 minutes) for the 1-minute load average to drop below 1.2.
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import math
import shutil
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
PACKAGES = ("pylance", "simsimd", "jupyterlab", "playwright")
GiB = 1 << 30
MB = 1e6
COMMIT_ROWS = 50_000
SLOW_S = 5.0
"""A search whose warm-up call takes longer is timed by that call alone."""


# --------------------------------------------------------------------------------------------------
# Settings and helpers
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    sizes: tuple[int, ...] = (10_000, 100_000, 1_000_000)
    dims: tuple[int, ...] = (1280, 2048)
    search_repeats: int = 15
    """Timed runs per method for N < 1M (after one warm-up)."""
    search_repeats_large: int = 5
    """Timed runs per method for N >= 1M."""
    index_views: int = 15
    """views_per_photo for the indexing part (10 photos each)."""
    index_repeats: int = 3
    batch_size: int = 16
    browser_gallery: int = 1_000_000
    browser_max_search_s: float = 3.0
    browser_index: str = "exact"
    """Part (3)'s index: "exact" (the gallery's Int8Index) or "ivfpq" (IvfPqIndex.build(gallery.keys))."""
    strokes: int = 8
    stroke_moves: int = 40
    storage_images: int = 1_000
    storage_views: int = 5
    storage_repeats: int = 7
    quality_views: int = 5
    quality_size: int = 320
    threads: int = 2
    quick: bool = False


QUICK = Settings(
    sizes=(10_000, 100_000),
    search_repeats=7,
    index_views=6,
    index_repeats=2,
    browser_gallery=10_000,
    strokes=4,
    stroke_moves=30,
    storage_repeats=3,
    quick=True,
)
SMOKE = Settings(
    sizes=(1_000,),
    dims=(1280,),
    search_repeats=2,
    index_views=1,
    index_repeats=1,
    browser_gallery=1_000,
    strokes=1,
    stroke_moves=10,
    storage_images=50,
    storage_views=1,
    storage_repeats=1,
    quality_views=2,
    quick=True,
)
"""Toy sizes, every part: checks that the script runs (its numbers mean nothing)."""

THUMBS_CODE = '''def thumbnails():
    """10 small thumbnails of the demo photos, and their labels."""
    import numpy as np
    from PIL import Image
    import simvis_widgets as sv

    out = []
    for name in sv.datasets.GALLERY_PHOTOS:
        img = Image.fromarray(sv.datasets.demo_image(name))
        img.thumbnail((224, 224))
        out.append(np.array(img))
    return out, list(sv.datasets.GALLERY_PHOTOS)
'''
"""Run in this process (for the rows' pixel hashes) and in the part (3) kernel (for ``images=``)."""


def thumbnails() -> tuple[list[np.ndarray], list[str]]:
    scope: dict[str, Any] = {}
    exec(THUMBS_CODE, scope)  # noqa: S102 -- our own constant, shared with the notebook
    return scope["thumbnails"]()


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


def folder_bytes(path: str | Path) -> int:
    """Bytes of all files under ``path`` (what the dataset takes on disk, apparent size)."""
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def rss() -> int:
    gc.collect()
    return proc_status().get("VmRSS", 0)


@dataclass(frozen=True)
class Synthetic:
    """What :func:`write_synthetic` wrote."""

    uri: str
    n: int
    dim: int
    grid: int
    features: str
    write_s: float
    commits: int
    disk_bytes: int


def dataset_estimate(n: int, dim: int, channels: int, grid: int, features: str) -> int:
    """Rough bytes on disk of a synthetic dataset (vectors plus ~200 bytes of facts per row)."""
    per_row = dim * 4 + 200 + (channels * grid * grid * 2 if features == "store" else 0)
    return n * per_row


def write_synthetic(
    uri: str,
    session: Any,
    embeddings: np.ndarray,
    *,
    grid: int,
    features: str,
    hashes: Sequence[str],
    labels: Sequence[Any] | None = None,
    feature_fn: Callable[[int], np.ndarray] | None = None,
    log: Callable[[str], None] | None = None,
) -> Synthetic:
    """A gallery dataset of these embeddings without running the network: ``StoredRow`` per row (in-memory image
    ``i``, pixel hash ``hashes[i % len]``), committed every ``COMMIT_ROWS`` rows. Local features (``"store"``):
    ``feature_fn(i)`` or one shared random float16 ``(C, grid, grid)`` array."""
    from simvis_widgets.gallery.store import GalleryWriter, StoredRow

    n = len(embeddings)
    shared = None
    if features == "store" and feature_fn is None:
        shared = np.random.default_rng(grid).random((session.channels, grid, grid), dtype=np.float32)
        shared = shared.astype(np.float16)
    writer = GalleryWriter(uri, session.fingerprint(), session.channels, features)
    t0 = time.perf_counter()
    commits = 0
    for start in range(0, n, COMMIT_ROWS):
        stop = min(n, start + COMMIT_ROWS)
        rows = [
            StoredRow(
                key=f"memory:{i}:{hashes[i % len(hashes)]}",
                source=str(i),
                in_memory=True,
                label=labels[i % len(labels)] if labels else None,
                pixel_hash=hashes[i % len(hashes)],
                file_hash=None,
                grid=(grid, grid),
                embedding=embeddings[i],
                features=(feature_fn(i) if feature_fn else shared) if features == "store" else None,
            )
            for i in range(start, stop)
        ]
        writer.commit(rows)
        commits += 1
        del rows
        if log and n >= 200_000:
            log(f"    committed {stop:,} / {n:,} rows ({time.perf_counter() - t0:.0f} s)")
    write_s = time.perf_counter() - t0
    return Synthetic(uri, n, embeddings.shape[1], grid, features, write_s, commits, folder_bytes(uri))


def timed(fn: Callable[[], object], repeats: int) -> tuple[Timing, bool]:
    """(timing, cold): one warm-up call; if it took over ``SLOW_S``, that call is the timing (cold = True)."""
    first = seconds(fn)
    if first > SLOW_S:
        return Timing((first,)), True
    return measure(fn, repeats, warmup=False), False


# --------------------------------------------------------------------------------------------------
# (1) Exact search vs gallery size
# --------------------------------------------------------------------------------------------------


@dataclass
class Variant:
    """One searched index in part (1)."""

    timing: Timing | None = None
    cold: bool = False
    reranked: int = 0
    agree: str = "-"
    score_err: float | None = None
    nbytes: int | None = None
    rss_growth: int | None = None
    build_s: float | None = None
    note: str = ""

    @property
    def exact(self) -> bool:
        return self.agree == "same" and self.score_err is not None and self.score_err <= 1e-6


@dataclass
class SearchRow:
    n: int
    d: int
    runs: int = 0
    torch: Timing | None = None
    int8: Variant = field(default_factory=Variant)
    lance: Variant = field(default_factory=Variant)
    int8_d: Variant = field(default_factory=Variant)
    lance_write_s: float | None = None
    lance_disk: int | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def matrix_bytes(self) -> int:
        return self.n * self.d * 4

    def ratio(self, v: Variant) -> float | None:
        if v.timing is None or self.torch is None:
            return None
        return v.timing.median_s / self.torch.median_s


def _agreement(ref_i: np.ndarray, ref_s: np.ndarray, idx: np.ndarray, scores: np.ndarray) -> tuple[str, float]:
    """Top-k indices compared in order, and the largest score difference (as float64)."""
    idx, scores = np.asarray(idx), np.asarray(scores, np.float64)
    if np.array_equal(idx, ref_i):
        agree = "same"
    elif set(idx.tolist()) == set(ref_i.tolist()):
        agree = "same set, order differs"
    else:
        agree = f"DIFFER ({len(set(idx.tolist()) & set(ref_i.tolist()))}/{len(ref_i)} common)"
    err = float(np.abs(np.sort(scores)[::-1] - np.sort(np.asarray(ref_s, np.float64))[::-1]).max())
    return agree, err


def _search_variant(
    v: Variant, index: Any, query: np.ndarray, repeats: int, ref: tuple[np.ndarray, np.ndarray]
) -> None:
    search = functools.partial(index.search, query, K)
    v.timing, v.cold = timed(search, repeats)
    scores, idx = search()
    v.reranked = int(index.reranked)
    v.agree, v.score_err = _agreement(ref[0], ref[1], idx, scores)
    v.nbytes = int(index.nbytes)


def bench_search(
    s: Settings, sessions: dict[int, Any], tmp: Path, keep: dict[tuple[int, int], Synthetic], log: Callable[[str], None]
) -> list[SearchRow]:
    """Part (1). D = 1280 datasets of size ``s.browser_gallery`` are kept (in ``keep``) for part (3)."""
    from simvis_widgets.gallery import ArrayKeys, Gallery, Int8Index
    from simvis_widgets.gallery.keys import region_key_query, scoring_keys

    hashes = [f"{i:040x}" for i in range(10)]
    _, labels = thumbnails()
    thumbs_hashes = _thumb_hashes()
    rows: list[SearchRow] = []
    for d in s.dims:
        session = sessions.get(d)
        gen = torch.Generator().manual_seed(d)
        q = torch.randn(d, generator=gen)
        q /= q.norm()
        qn = q.numpy()
        kq = region_key_query(qn, 1.0)
        for n in s.sizes:
            row = SearchRow(n, d)
            rows.append(row)
            need = row.matrix_bytes
            if need + GiB > available_bytes():
                row.notes.append(f"skipped: {need / GiB:.1f} GiB matrix, {available_bytes() / GiB:.1f} GiB available")
                log(f"  N={n:,} D={d}: skipped (memory)")
                continue
            log(f"  N={n:,} D={d}: building the {need / GiB:.2f} GiB matrix ...")
            matrix = random_rows(n, d, seed=n + d)
            rows_np = matrix.numpy()
            repeats = s.search_repeats_large if n >= 1_000_000 else s.search_repeats
            row.runs = repeats

            # The Lance dataset first (it needs the rows); searched after the in-RAM arrays are freed.
            synth: Synthetic | None = None
            mode, grid = ("store", 1) if d == 1280 else ("recompute", 1)
            est = dataset_estimate(n, d, d, grid, mode)
            if session is None:
                row.lance.note = f"no {d}-channel session"
            elif est + 3 * GiB > shutil.disk_usage(tmp).free:
                row.lance.note = f"skipped: the dataset needs ~{est / GiB:.1f} GiB disk, {shutil.disk_usage(tmp).free / GiB:.1f} free"
            else:
                log(f"    writing the Lance dataset ({mode}, ~{est / GiB:.2f} GiB) ...")
                is_browser = d == 1280 and n == s.browser_gallery
                synth = write_synthetic(
                    str(tmp / f"search-{n}-{d}.lance"),
                    session,
                    rows_np,
                    grid=grid,
                    features=mode,
                    hashes=thumbs_hashes if is_browser else hashes,
                    labels=labels if is_browser else None,
                    log=log,
                )
                row.lance_write_s, row.lance_disk = synth.write_s, synth.disk_bytes

            # torch fp32: the baseline and the reference top-10.
            plain = functools.partial(lambda m, v: torch.topk(torch.matmul(m, v), K), matrix, q)
            row.torch = measure(plain, repeats)
            top = plain()
            ref = (top.indices.numpy().astype(np.int64), top.values.numpy())

            # Diagnostic: the index over the bare rows (D values, no 1/|e| column).
            log("    int8 over the bare rows (diagnostic) ...")
            t0 = time.perf_counter()
            bare = Int8Index.build(ArrayKeys(rows_np))
            row.int8_d.build_s = time.perf_counter() - t0
            _search_variant(row.int8_d, bare, qn, repeats, ref)
            del bare

            # The gallery's keys (D + 1 values) in RAM.
            keys_bytes = n * (d + 1) * 4
            rerank_transient = keys_bytes  # a search that re-ranks every row copies all keys once
            if keys_bytes + rerank_transient + GiB > available_bytes():
                row.int8.note = (
                    f"skipped: keys {keys_bytes / GiB:.1f} GiB + re-rank transient, "
                    f"{available_bytes() / GiB:.1f} GiB available"
                )
            else:
                log("    int8 over ArrayKeys(scoring_keys) ...")
                keys = np.empty((n, d + 1), np.float32)
                for start in range(0, n, 65_536):
                    keys[start : start + 65_536] = scoring_keys(rows_np[start : start + 65_536], None, True)
                before = rss()
                t0 = time.perf_counter()
                index = Int8Index.build(ArrayKeys(keys))
                row.int8.build_s = time.perf_counter() - t0
                row.int8.rss_growth = rss() - before
                _search_variant(row.int8, index, kq, repeats, ref)
                del index, keys
            del plain, top, matrix, rows_np
            gc.collect()

            if synth is not None:
                log("    Gallery.open on the Lance dataset ...")
                before = rss()
                t0 = time.perf_counter()
                gallery = Gallery.open(synth.uri, session)
                row.lance.build_s = time.perf_counter() - t0
                row.lance.rss_growth = rss() - before
                if keys_bytes * 2 + GiB > available_bytes():
                    row.lance.note = "search skipped: a full re-rank's transient would not fit in memory"
                else:
                    log(f"    opened in {row.lance.build_s:.1f} s; searching ...")
                    _search_variant(row.lance, gallery.index, kq, repeats, ref)
                del gallery
                gc.collect()
                if d == 1280 and n == s.browser_gallery:
                    keep[(n, d)] = synth
                else:
                    shutil.rmtree(synth.uri, ignore_errors=True)
            log(
                f"    torch {_fmt_ms(row.torch.median_s)} ms, int8 {_fmt_ms(_med(row.int8))} ms "
                f"(reranked {row.int8.reranked:,}), lance {_fmt_ms(_med(row.lance))} ms (reranked {row.lance.reranked:,}), "
                f"int8 D {_fmt_ms(_med(row.int8_d))} ms (reranked {row.int8_d.reranked:,})"
            )
    return rows


def _med(v: Variant) -> float | None:
    return v.timing.median_s if v.timing is not None else None


def _thumb_hashes() -> list[str]:
    from simvis_widgets._io import image_hash

    return [image_hash(t) for t in thumbnails()[0]]


def format_search(rows: list[SearchRow], s: Settings) -> list[str]:
    lines = [
        (
            "(1) exact top-10 of N random normalised float32 rows, same run (median ms; torch = matmul + topk on the "
            "(N, D) float32 matrix; int8 = Int8Index over ArrayKeys(scoring_keys), D+1 values; lance = "
            "gallery.index of a Gallery.open-ed Lance dataset, re-rank read from storage; int8 D = diagnostic, the "
            "index over the bare D-value rows)"
        ),
        (
            f"   {'D':>5} {'N':>10} {'runs':>4} {'torch':>8} | {'variant':<7} {'ms':>9} {'x torch':>8} "
            f"{'reranked':>10} {'top-10 vs torch':<26} {'|d score|':>9} {'nbytes MB':>10} {'RSS +MB':>8} "
            f"{'of fp32':>8} {'build/open s':>12}"
        ),
    ]
    for r in rows:
        if r.torch is None:
            lines.append(f"   {r.d:>5} {r.n:>10,} {'-':>4}  {'; '.join(r.notes)}")
            continue
        first = True
        for name, v in (("int8", r.int8), ("lance", r.lance), ("int8 D", r.int8_d)):
            lead = (
                f"   {r.d:>5} {r.n:>10,} {r.runs:>4} {_fmt_ms(r.torch.median_s):>8} |"
                if first
                else f"   {'':>5} {'':>10} {'':>4} {'':>8} |"
            )
            first = False
            if v.timing is None:
                extra = ""
                if v.build_s is not None:
                    extra = f" (opened in {v.build_s:.1f} s, RSS +{(v.rss_growth or 0) / MB:,.0f} MB)"
                lines.append(f"{lead} {name:<7} {'-':>9}  {v.note or 'not run'}{extra}")
                continue
            ratio = r.ratio(v) or float("nan")
            ram = max(v.nbytes or 0, v.rss_growth or 0)
            ms = _fmt_ms(v.timing.median_s) + ("*" if v.cold else "")
            lines.append(
                f"{lead} {name:<7} {ms:>9} {ratio:>7.2f}x {v.reranked:>10,} {v.agree:<26} "
                f"{v.score_err:>9.1e} {(v.nbytes or 0) / MB:>10,.0f} "
                f"{(v.rss_growth / MB if v.rss_growth is not None else float('nan')):>8,.0f} "
                f"{ram / r.matrix_bytes:>7.2f}x {v.build_s if v.build_s is not None else float('nan'):>12.1f}"
            )
        if r.lance_write_s is not None:
            lines.append(
                f"   {'':>5} {'':>10}  Lance dataset: written in {r.lance_write_s:.1f} s "
                f"({r.n / r.lance_write_s:,.0f} rows/s, {COMMIT_ROWS:,}-row commits), {r.lance_disk / MB:,.0f} MB on disk"
            )
        for note in r.notes:
            lines.append(f"   {'':>5} {'':>10}  note: {note}")
    lines.append(
        "   * = one cold run (the warm-up took over 5 s); 'of fp32' = max(nbytes, RSS growth) / (N x D x 4); "
        "build/open = Int8Index.build or Gallery.open seconds"
    )
    big_n = max(s.sizes)
    for d in s.dims:
        big = [r for r in rows if r.d == d and r.n == big_n]
        if not big or big[0].torch is None:
            lines.append(f"   goals at N={big_n:,}, D={d}: not measured")
            continue
        r = big[0]
        tag = "" if big_n >= 1_000_000 else " (info: no 1M in this run)"
        for name, v in (("int8 (ArrayKeys)", r.int8), ("lance (Gallery)", r.lance)):
            if v.timing is None:
                lines.append(f"   goals at N={big_n:,}, D={d}, {name}: not measured ({v.note})")
                continue
            ratio = r.ratio(v) or float("nan")
            ram = max(v.nbytes or 0, v.rss_growth or 0) / r.matrix_bytes
            lines.append(
                f"   goals at N={big_n:,}, D={d}, {name}{tag}: time {ratio:.2f}x torch (<= 0.4x) {verdict(ratio <= 0.4)}; "
                f"top-10 identical, scores within 1e-6 {verdict(v.exact)}; RAM {ram:.2f}x fp32 (<= 0.5x) "
                f"{verdict(ram <= 0.5)}"
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


def bench_indexing(session: Any, s: Settings, tmp: Path, log: Callable[[str], None]) -> IndexResult:
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

    counter = iter(range(1_000_000))

    def build(workers: int) -> Callable[[], object]:
        def run() -> object:  # a fresh dataset every time (building into an existing one would reuse its rows)
            path = tmp / f"build-{next(counter)}.lance"
            return Gallery.build(images, session, path, batch_size=s.batch_size, num_workers=workers, progress=False)

        return run

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
            f"(2) indexing throughput: Gallery.build (Lance commits, features='store') on {r.images} demo views ({r.shapes} input shapes), {session.name} "
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

SETUP_CELL = """import time

import torch

import simvis_widgets as sv
from simvis_widgets.gallery import Gallery

torch.set_num_threads({threads})
{thumbs_code}

session = sv.ModelSession.from_pretrained("efficientnet_lite0", size=224, device="cpu")
thumbs, _ = thumbnails()
_t0 = time.perf_counter()
gallery = Gallery.open({uri!r}, session, images=[thumbs[i % len(thumbs)] for i in range({n})])
open_s = time.perf_counter() - _t0
{index_code}
query = sv.datasets.demo_image("motorcycle_left")
print(f"opened in {{open_s:.1f}} s")
gallery"""

IVFPQ_CODE = """from simvis_widgets.gallery.ann import IvfPqIndex

_t0 = time.perf_counter()
gallery.use_index(IvfPqIndex.build(gallery.keys))
print(f"IVF-PQ index built in {time.perf_counter() - _t0:.0f} s")"""

PROBE = """import time as _time
_t0 = _time.perf_counter()
explorer.search()
print(_time.perf_counter() - _t0)"""

TRACE_HOOK = """() => {
  window.__SIMVIS_TRACE__ = true;
  const view = document.querySelector('.simvis-explorer').__simvis;
  view.stripTrace = [];
  window.__benchSends = [];
  const sig = (r) => {
    if (!r || r.kind !== 'cells') return -1;
    let s = 0;
    for (let k = 0; k < r.weights.length; k++) s += r.weights[k] * (k + 1);
    return s;
  };
  const sender = view.sender;  // js/lib/region_sender.js: its own timers call this.send too
  const original = sender.send.bind(sender);
  sender.send = function (force = false) {
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
    _r = explorer.query_region
    _s = -1
    if explorer.rank_by == 'region' and _r.get('kind') == 'cells':
        _s = 0.0
        for _k, _w in enumerate(_r['weights']):
            _s += _w * (_k + 1)
    _hits = _search()
    _answered[explorer.strip_version] = [_s, _t0, _time.time() * 1000]
    return _hits
explorer.search = _traced_search
explorer.rank_by = 'region'
print('hooked')"""

KERNEL_TIMING = """import json, statistics, time
import torch
from simvis_widgets.decompose import region_query
from simvis_widgets.gallery.keys import region_key_query
gh, gw = explorer.grid_a
w = [0.0] * (gh * gw)
for r in range(gh // 3, 2 * gh // 3 + 1):
    for c in range(gw // 3, 2 * gw // 3 + 1):
        w[r * gw + c] = 1.0
explorer.search = _search
explorer.rank_by = 'region'
explorer.query_region = {{'kind': 'cells', 'weights': w}}
wt = explorer.weights()
s = session
enc = session.encode(query)  # the explorer's query, from the session's cache
q, e = region_query(enc.features, wt, s.pooling, s.p, s.head)
kq = region_key_query(q.detach().float().cpu().numpy(), 1.0 / float(e.norm()))
hits = gallery.index.search(kq, 8)[1].tolist()
def med(fn, n={n}, budget=20.0):
    fn()
    runs = []
    while len(runs) < n and sum(runs) < budget:
        t0 = time.perf_counter(); fn(); runs.append(time.perf_counter() - t0)
    return statistics.median(runs)
out = {{
    'explorer_search': med(explorer.search),
    'search_features': med(lambda: gallery.search_features(enc.features, wt, 8, exclude=enc.hash)),
    'search_features_no_exclude': med(lambda: gallery.search_features(enc.features, wt, 8)),
    'index_search': med(lambda: gallery.index.search(kq, 8)),
    'reranked': getattr(gallery.index, "reranked", None),
    'hit_features': med(lambda: gallery.hit_features(hits)),
    'hit_grid': list(gallery.grid(hits[0])),
    'open_s': open_s,
    'threads': torch.get_num_threads(),
}}
print(json.dumps(out))"""


@dataclass
class BrowserResult:
    gallery: int = 0
    index: str = "exact"
    strokes: int = 0
    sends: int = 0
    trace_ms: list[float] = field(default_factory=list)
    matched_ms: list[float] = field(default_factory=list)
    unmatched: int = 0
    stale: int = 0
    phases: list[list[float]] = field(default_factory=list)
    """Per matched render: [send -> search starts in the kernel, search, search done -> shown] (ms, wall clock)."""
    kernel: dict[str, Any] = field(default_factory=dict)
    probe_s: float | None = None
    """One explorer.search() in the kernel before any stroke."""
    skipped: str | None = None
    canvas: list[float] = field(default_factory=list)
    query_grid: list[int] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    error: str | None = None


def _match(
    trace: list[dict[str, Any]], sends: list[dict[str, Any]], answered: dict[int, list[float]]
) -> list[int | None]:
    """Per render: the index in ``sends`` of the first send of the region it answers (see the module
    docstring); None where no send matches. ``answered``: strip_version -> [signature, start, end]."""
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


def browser_dataset(
    s: Settings, session: Any, tmp: Path, keep: dict[tuple[int, int], Synthetic], log: Callable[[str], None]
) -> Synthetic:
    """The part (3) gallery: part (1)'s when it wrote one of this size, else a new one (same recipe)."""
    n = s.browser_gallery
    if (n, 1280) in keep:
        return keep[(n, 1280)]
    est = dataset_estimate(n, session.channels, session.channels, 1, "store")
    if est + 3 * GiB > shutil.disk_usage(tmp).free:
        raise RuntimeError(f"the {n:,}-row dataset needs ~{est / GiB:.1f} GiB disk")
    if n * session.channels * 4 + 2 * GiB > available_bytes():
        raise RuntimeError(f"the {n:,}-row embeddings need {n * session.channels * 4 / GiB:.1f} GiB RAM")
    log(f"  writing a {n:,}-row Lance gallery ...")
    rows = random_rows(n, session.channels, seed=n + session.channels).numpy()
    synth = write_synthetic(
        str(tmp / f"browser-{n}.lance"),
        session,
        rows,
        grid=1,
        features="store",
        hashes=_thumb_hashes(),
        labels=thumbnails()[1],
        log=log,
    )
    del rows
    gc.collect()
    keep[(n, 1280)] = synth
    return synth


def bench_browser(s: Settings, synth: Synthetic, log: Callable[[str], None]) -> BrowserResult:
    jb = jupyter_browser()
    open_and_run, kernel_exec = jb.open_and_run, jb.kernel_exec
    res = BrowserResult(gallery=synth.n, index=s.browser_index, strokes=s.strokes)
    t_start = time.perf_counter()
    nb = notebook(
        [
            SETUP_CELL.format(
                threads=s.threads,
                n=synth.n,
                uri=synth.uri,
                thumbs_code=THUMBS_CODE,
                index_code=IVFPQ_CODE if s.browser_index == "ivfpq" else "",
            ),
            "explorer = sv.RetrievalExplorer(session, gallery, query)\nexplorer",
        ]
    )
    with lab("simvis-bench-retrieval-", {"bench_retrieval.ipynb": json.dumps(nb, indent=1)}) as (server, page):
        log("  JupyterLab up; running the notebook ...")
        open_and_run(page, server.lab("bench_retrieval.ipynb"))
        page.wait_for_selector(".simvis-explorer[data-ready]", timeout=900_000)
        page.wait_for_function(
            "() => document.querySelectorAll('.simvis-explorer .sv-card').length === 8", timeout=60_000
        )
        widget = page.locator(".simvis-explorer").first
        widget.scroll_into_view_if_needed()
        probe = kernel_exec(page, PROBE)
        try:
            res.probe_s = float(probe.strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise RuntimeError(f"could not time explorer.search in the kernel: {probe[-300:]}") from None
        log(f"  one explorer.search() in the kernel: {res.probe_s:.2f} s")
        if res.probe_s > s.browser_max_search_s:
            res.skipped = (
                f"strokes not painted: one explorer.search() took {res.probe_s:.1f} s in the kernel "
                f"(> {s.browser_max_search_s:g} s), so every refresh would take at least that long"
            )
            res.wall_s = time.perf_counter() - t_start
            return res
        if "hooked" not in kernel_exec(page, KERNEL_HOOK):
            raise RuntimeError("could not wrap explorer.search in the kernel")
        page.wait_for_timeout(800)  # a search the rank_by change may start
        page.evaluate(TRACE_HOOK)
        res.query_grid = page.evaluate("() => document.querySelector('.simvis-explorer').__simvis.model.get('grid_a')")
        canvas = widget.locator('[data-testid="mark-a"]')  # the query
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
            # settle: no new render for 600 ms or twice the probe search, whichever is longer (at most 15 s)
            quiet = max(0.6, 2 * (res.probe_s or 0.0))
            last, quiet_since, deadline = -1, time.perf_counter(), time.perf_counter() + 15
            while time.perf_counter() < deadline:
                count = int(
                    page.evaluate("() => document.querySelector('.simvis-explorer').__simvis.stripTrace.length")
                )
                if count != last:
                    last, quiet_since = count, time.perf_counter()
                elif time.perf_counter() - quiet_since > quiet:
                    break
                page.wait_for_timeout(50)
            windows.append((t_begin, float(page.evaluate("() => performance.now()"))))
            clear.click()
            page.wait_for_timeout(700)
        trace = page.evaluate("() => document.querySelector('.simvis-explorer').__simvis.stripTrace")
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
    lines = [
        (
            f"(3) paint stroke -> strip refreshed in JupyterLab + headless Chromium, RetrievalExplorer on a {r.gallery:,}-image "
            f"synthetic Lance gallery (1280-d, 1x1 stored features, k=8, exclude_self, {r.index} index), {r.strokes} strokes at 60 Hz, "
            f"query grid {r.query_grid}"
        ),
    ]
    if r.error and not r.trace_ms:
        return lines + [f"   FAILED: {r.error}"]
    if r.probe_s is not None:
        lines.append(f"   one explorer.search() in the kernel before the strokes: {r.probe_s * 1e3:.0f} ms")
    if r.skipped:
        lines.append(f"   {r.skipped}; goal p50 <= 100 ms: NOT MET (lower bound {r.probe_s * 1e3:.0f} ms)")
    if not r.skipped:
        lines += _stroke_lines(r)
    k = r.kernel
    if k:
        lines.append(
            f"   in the kernel ({int(k.get('threads', 0))} torch threads, median; Gallery.open took {k['open_s']:.1f} s): "
            f"explorer.search() {k['explorer_search'] * 1e3:.1f} ms (search + maps + thumbnails + payload); "
            f"gallery.search_features {k['search_features'] * 1e3:.1f} ms with the exclude hash, "
            f"{k['search_features_no_exclude'] * 1e3:.1f} ms without; gallery.index.search {k['index_search'] * 1e3:.1f} ms "
            f"({'reranked ' + format(int(k['reranked']), ',') + ' rows' if k.get('reranked') is not None else 'IVF-PQ: 200 candidates re-ranked'}); hit_features of the 8 hits ({k['hit_grid'][0]}x{k['hit_grid'][1]} grids) "
            f"{k['hit_features'] * 1e3:.1f} ms"
        )
    if r.error:
        lines.append(f"   note: {r.error}")
    if r.page_errors:
        lines.append(f"   page errors: {r.page_errors}")
    return lines


def _stroke_lines(r: BrowserResult) -> list[str]:
    def stats(v: list[float]) -> str:
        if not v:
            return "no refreshes"
        return (
            f"p50 {percentile(v, 50):7.1f} ms   p95 {percentile(v, 95):7.1f} ms   max {max(v):7.1f} ms   count {len(v)}"
        )

    lines = [
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
    at = "" if r.gallery >= 1_000_000 else f" (the goal is at 1M; this gallery has {r.gallery:,} rows)"
    lines.append(
        f"   goal p50 <= 100 ms{at}: trace {p50:.1f} ms {verdict(p50 <= 100) if r.trace_ms else 'not measured'}; "
        f"matched {p50m:.1f} ms {verdict(p50m <= 100) if r.matched_ms else 'not measured'}"
    )
    return lines


# --------------------------------------------------------------------------------------------------
# (4) Storage vs search cost: features="store" vs "recompute"
# --------------------------------------------------------------------------------------------------


@dataclass
class StorageResult:
    synthetic: list[dict[str, Any]]
    """Per (grid, mode): rows, bytes on disk, bytes per image."""
    real_images: int
    real_grids: list[list[int]]
    real_bytes: dict[str, int]
    search: dict[str, Timing]
    same_hits: bool
    build_s: dict[str, float]


def bench_storage(session: Any, s: Settings, tmp: Path, log: Callable[[str], None]) -> StorageResult:
    from simvis_widgets.datasets import demo_image, demo_views
    from simvis_widgets.gallery import Gallery

    c = session.channels
    synthetic = []
    emb = random_rows(s.storage_images, c, seed=4).numpy()
    for grid in (7, 14):
        pool = np.random.default_rng(grid).random((16, c, grid, grid), dtype=np.float32).astype(np.float16)
        for mode in ("store", "recompute"):
            log(f"  {s.storage_images:,} synthetic rows, {grid}x{grid} grid, features={mode!r} ...")
            synth = write_synthetic(
                str(tmp / f"storage-{grid}-{mode}.lance"),
                session,
                emb,
                grid=grid,
                features=mode,
                hashes=[f"{i:040x}" for i in range(s.storage_images)],
                # distinct bytes per row (random values: no compression can shrink them), as real features differ
                feature_fn=lambda i, p=pool: p[i % len(p)] + np.float16(i % 7),
            )
            synthetic.append(
                {"grid": grid, "mode": mode, "rows": synth.n, "bytes": synth.disk_bytes, "write_s": synth.write_s}
            )
            shutil.rmtree(synth.uri, ignore_errors=True)

    views = demo_views(views_per_photo=s.storage_views)
    query = demo_image("motorcycle_left")
    enc = session.encode(query)
    h, w = enc.source_size
    built: dict[str, Any] = {}
    build_s: dict[str, float] = {}
    for mode in ("store", "recompute"):
        log(f"  Gallery.build on {len(views.images)} demo views, features={mode!r} ...")
        t0 = time.perf_counter()
        built[mode] = Gallery.build(views.images, session, tmp / f"real-{mode}.lance", features=mode, progress=False)
        build_s[mode] = time.perf_counter() - t0
    weights = built["store"].query_weights(enc.source_size, enc.grid, box=(w / 4, h / 4, 3 * w / 4, 3 * h / 4))
    k = min(8, len(views.images))
    search: dict[str, Timing] = {}
    results: dict[str, list[tuple[int, float]]] = {}
    for mode, gallery in built.items():
        fn = functools.partial(gallery.search_features, enc.features, weights, k, exclude=enc.hash)
        search[mode] = measure(fn, s.storage_repeats)
        results[mode] = [(hit.index, round(hit.score, 5)) for hit in fn()]
    grids = sorted({tuple(e.grid) for e in built["store"].entries})
    return StorageResult(
        synthetic,
        len(views.images),
        [list(g) for g in grids],
        {mode: folder_bytes(g.path) for mode, g in built.items()},
        search,
        results["store"] == results["recompute"],
        build_s,
    )


def format_storage(r: StorageResult, s: Settings) -> list[str]:
    lines = [
        "(4) storage vs search cost, features='store' vs 'recompute' (efficientnet_lite0, 1280 channels)",
        f"   (a) synthetic rows (random float16 features), dataset folder size:   {'grid':>6} {'store':>12} {'recompute':>12} {'features/img':>13}",
    ]
    by = {(d["grid"], d["mode"]): d for d in r.synthetic}
    per: dict[int, tuple[float, float]] = {}
    for grid in (7, 14):
        st, rc = by[(grid, "store")], by[(grid, "recompute")]
        a, b = st["bytes"] / st["rows"], rc["bytes"] / rc["rows"]
        per[grid] = (a, b)
        lines.append(
            f"   {str(st['rows']) + ' rows':<68}{f'{grid}x{grid}':>6} {a / 1e3:>9.1f} kB {b / 1e3:>9.1f} kB "
            f"{1280 * grid * grid * 2 / 1e3:>10.1f} kB"
        )
    st_b, rc_b = r.real_bytes["store"] / r.real_images, r.real_bytes["recompute"] / r.real_images
    ms_st, ms_rc = r.search["store"].median_s * 1e3, r.search["recompute"].median_s * 1e3
    grids = ", ".join(f"{g[0]}x{g[1]}" for g in r.real_grids)
    lines += [
        (
            f"   (b) Gallery.build on {r.real_images} demo views (grids {grids}); k=8 region search with maps "
            f"(search_features, median of {r.search['store'].n}); the same hits in both: {r.same_hits}"
        ),
        f"   {'mode':<12}{'disk per image':>16}{'ms per search':>15}{'build s':>9}",
        f"   {'store':<12}{st_b / 1e3:>13.1f} kB{ms_st:>15.1f}{r.build_s['store']:>9.1f}",
        f"   {'recompute':<12}{rc_b / 1e3:>13.1f} kB{ms_rc:>15.1f}{r.build_s['recompute']:>9.1f}",
    ]
    extra_ms = ms_rc - ms_st
    saved = st_b - rc_b
    lines.append(
        f"   break-even: storing features costs {saved / 1e3:.0f} kB more per image ({saved * 1e6 / 1e9:,.0f} GB per million "
        f"images at this grid; {per[14][0] / 1e3 - per[14][1] / 1e3:.0f} kB at 14x14), recomputing costs {extra_ms:+.0f} ms per "
        f"k=8 search ({extra_ms / 8:+.1f} ms per hit). Recompute pays when disk is the constraint and searches are "
        f"rare; {'with a 100 ms paint budget it is over budget on its own' if ms_rc > 100 else 'it stays within a 100 ms paint budget here'} "
        "(CPU, 2 threads), so interactive galleries should store features."
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


def bench_quality(s: Settings, tmp: Path, log: Callable[[str], None]) -> QualityResult:
    from simvis_widgets import ModelSession
    from simvis_widgets.datasets import demo_views
    from simvis_widgets.gallery import Gallery

    t0 = time.perf_counter()
    session = ModelSession.from_pretrained("efficientnet_lite0", size=s.quality_size, device="cpu")
    views = demo_views(views_per_photo=s.quality_views)
    gallery = Gallery.build(views.images, session, tmp / "quality.lance", labels=views.groups, progress=False)
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
    ap = arg_parser(__doc__, "no 1M rows, fewer repeats and strokes, a 10k browser gallery (~5 minutes)")
    ap.add_argument("--smoke", action="store_true", help="every part at toy sizes: checks that the script runs")
    ap.add_argument(
        "--parts",
        type=int,
        nargs="+",
        default=[1, 2, 3, 4, 5, 6],
        choices=[1, 2, 3, 4, 5, 6],
        help="which parts to run (default: all)",
    )
    ap.add_argument(
        "--sizes", type=int, nargs="+", help="gallery sizes for part 1 (default 10k 100k 1M; no 1M with --quick)"
    )
    ap.add_argument("--dims", type=int, nargs="+", help="embedding widths for part 1 (default 1280 2048)")
    ap.add_argument("--browser-gallery", type=int, help="rows of the part 3 gallery (default 1M; 10k with --quick)")
    ap.add_argument(
        "--browser-max-search",
        type=float,
        help="part 3 paints no strokes when one explorer.search() takes longer (seconds, default 3)",
    )
    ap.add_argument(
        "--browser-index",
        choices=["exact", "ivfpq"],
        help="part 3's index: the exact Int8Index (default) or IVF-PQ with exact re-rank",
    )
    ap.add_argument(
        "--wait-load",
        type=float,
        nargs="?",
        const=1.2,
        metavar="LOAD",
        help="first wait (up to 10 minutes) until the 1-minute load average is below LOAD (default 1.2)",
    )
    return ap.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    base = SMOKE if args.smoke else QUICK if args.quick else Settings()
    s = override(
        base,
        threads=args.threads,
        sizes=tuple(args.sizes) if args.sizes else None,
        dims=tuple(args.dims) if args.dims else None,
        browser_gallery=args.browser_gallery,
        browser_max_search_s=args.browser_max_search,
        browser_index=args.browser_index,
    )
    run = Run.start(s.threads, wait_load=args.wait_load)
    log = run.log
    from simvis_widgets import ModelSession

    sessions: dict[int, Any] = {}
    out: dict[str, Any] = {"settings": asdict(s)}
    lines: list[str] = []
    parts = set(args.parts)
    sessions[1280] = ModelSession.from_pretrained("efficientnet_lite0", size=224, device="cpu")
    keep: dict[tuple[int, int], Synthetic] = {}
    with tempfile.TemporaryDirectory(prefix="simvis-bench-retrieval-") as tmp_dir:
        tmp = Path(tmp_dir)
        if 1 in parts:
            if 2048 in s.dims:
                sessions[2048] = ModelSession.from_pretrained("resnet50", pretrained=False, size=224, device="cpu")
            log("(1) exact search ...")
            rows = bench_search(s, sessions, tmp, keep if 3 in parts else {}, log)
            out["search"] = rows
            lines += format_search(rows, s) + [""]
            sessions.pop(2048, None)
            gc.collect()
        if 2 in parts:
            log("(2) indexing throughput ...")
            idx = bench_indexing(sessions[1280], s, tmp, log)
            out["indexing"] = idx
            lines += format_indexing(idx, sessions[1280]) + [""]
        if 3 in parts:
            log("(3) browser: paint stroke -> strip ...")
            try:
                synth = browser_dataset(s, sessions[1280], tmp, keep, log)
                out["browser_dataset"] = synth
                br = bench_browser(s, synth, log)
            except Exception as err:  # noqa: BLE001 -- report and go on with the other parts
                br = BrowserResult(gallery=s.browser_gallery, strokes=s.strokes, error=f"{type(err).__name__}: {err}")
            for synth in keep.values():
                shutil.rmtree(synth.uri, ignore_errors=True)
            out["browser"] = br
            lines += format_browser(br) + [""]
        if 4 in parts:
            log("(4) storage: store vs recompute ...")
            st = bench_storage(sessions[1280], s, tmp, log)
            out["storage"] = st
            lines += format_storage(st, s) + [""]
        if 6 in parts:
            from benchmarks import bench_ann

            log("(6) approximate search (bench_ann's parts) ...")
            ann_settings = bench_ann.QUICK if (s.quick or args.smoke) else bench_ann.Settings()
            bench_ann.ROOT.mkdir(parents=True, exist_ok=True)
            try:
                ann = [bench_ann.run_part(part, ann_settings, log) for part in ann_settings.parts]
            finally:
                shutil.rmtree(bench_ann.ROOT, ignore_errors=True)
            out["approximate"] = ann
            lines += ["(6) approximate search: FAISS IVF-PQ + exact re-rank (see benchmarks/bench_ann.py)"]
            lines += [bench_ann.format_part(r) for r in ann] + [""]
        if 5 in parts:
            log("(5) quality ...")
            qual = bench_quality(s, tmp, log)
            out["quality"] = qual
            lines += format_quality(qual) + [""]
    run.finish()
    info = machine_info(s.threads, PACKAGES)

    print("simvis_widgets retrieval benchmark (CPU): exact search, indexing, browser refresh, storage, quality")
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
