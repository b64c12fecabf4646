"""Benchmark: approximate search (FAISS IVF-PQ + exact re-rank from a Lance dataset) on galleries too big to scan.

Synthetic clustered keys, generated deterministically block by block (``C`` Gaussian cluster centres, unit
norm; row = centre + Gaussian noise of norm ~``noise``, L2-normalised), are written to a Lance dataset under
``/tmp/simvis_bench`` (column ``vec``: ``fixed_size_list<float32>[D]``, and ``id``: int64). The exact keys used
for re-ranking come from that dataset (:class:`LanceKeys`, ``ds.take``): at 10M rows they cannot live in RAM.
Queries: ``--queries`` (50) points near random centres (noise ``query_noise``), normalised. Their exact top-10 is
computed while the data are generated, by a blocked numpy scan of every row (``block @ Q.T`` in float32): the
oracle is independent of both indexes.

1. **1M x 1280** (1,000 centres): :class:`~simvis_widgets.gallery.ann.IvfPqIndex` (FAISS ``IndexIVFPQ``, inner
   product, 8-bit codes) built from the Lance keys (train + add seconds); then for each (probes, candidates):
   recall@10 against the exact top-10, search p50 / p95 ms (one query at a time, FAISS candidates + ``ds.take``
   of their keys + exact re-score), process RSS. Side by side, Lance's own IVF_PQ index on the same column with
   the same cells and sub-vectors (``ds.create_index("vec", "IVF_PQ", metric="dot")``; searched with
   ``ds.to_table(nearest={..., "nprobes": p, "refine_factor": candidates / 10})``: Lance's own exact re-rank).
2. **10M x 256** (10,000 centres): IvfPqIndex only: build seconds, recall@10, p50 / p95 ms, peak RSS during the
   searches (``VmHWM`` reset through ``/proc/self/clear_refs`` before them). Goals: recall@10 >= 0.95,
   p50 <= 50 ms, peak RSS <= 4 GB, for at least one (probes, candidates) setting.

Run from the repository root::

    python -m benchmarks.bench_ann                 # ~15 minutes on 2 CPU cores; 10.3 GB of disk at peak
    python -m benchmarks.bench_ann --quick         # 50k x 1280 and 200k x 256: ~2 minutes
    python -m benchmarks.bench_ann --parts 2 1 --rows2 3000000 --json benchmarks/results_ann_cpu.json

``--rows2`` shrinks part 2 where disk or time is short (10M x 256 is 10.3 GB of Lance data); each part's table
is printed (and the JSON written) as soon as the part is done.

The datasets are deleted at the end (``--keep`` keeps them). Timings on a shared machine are noisy: the load
average at start and end is printed, with a warning when it was high.
"""

from __future__ import annotations

import argparse
import gc
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.harness import (
    Run,
    arg_parser,
    header,
    machine_info,
    percentile,
    proc_status,
    to_jsonable,
    verdict,
    write_json,
)
from simvis_widgets.gallery.ann import IvfPqIndex, default_candidates, default_probes

K = 10
PACKAGES = ("faiss-cpu", "pylance", "pyarrow", "numpy")
ROOT = Path("/tmp/simvis_bench")
GB = 1e9
BLOCK_BYTES = 128 << 20
"""Rows are generated (and the oracle computed) in blocks of about this many bytes."""


@dataclass(frozen=True)
class Part:
    name: str
    rows: int
    dim: int
    centres: int
    lists: int
    subquantizers: int
    probes: tuple[int, ...]
    candidates: tuple[int, ...]
    lance: bool
    """Also build and search Lance's own IVF_PQ index."""
    goals: bool
    """Check the 10M goals (recall >= 0.95, p50 <= 50 ms, peak RSS <= 4 GB)."""


@dataclass(frozen=True)
class Settings:
    parts: tuple[Part, ...] = (
        Part("1M x 1280", 1_000_000, 1280, 1_000, 1024, 256, (8, 16, 32), (100, 200, 400), True, False),
        Part("10M x 256", 10_000_000, 256, 10_000, 4096, 64, (32, 64, 128), (100, 200, 400), False, True),
    )
    queries: int = 50
    noise: float = 1.0
    query_noise: float = 0.5
    seed: int = 0
    threads: int = 2
    quick: bool = False


QUICK = Settings(
    parts=(
        Part("50k x 1280", 50_000, 1280, 100, 256, 256, (8, 16), (100, 200), True, False),
        Part("200k x 256", 200_000, 256, 400, 512, 64, (8, 16), (100, 200), False, True),
    ),
    queries=20,
    quick=True,
)


# --------------------------------------------------------------------------------------------------
# Data: clustered keys in a Lance dataset, and the exact top-10 of the queries
# --------------------------------------------------------------------------------------------------


def _normalise(x: np.ndarray) -> np.ndarray:
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def centres_and_queries(part: Part, s: Settings) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng([s.seed, part.rows, part.dim])
    centres = _normalise(rng.standard_normal((part.centres, part.dim), dtype=np.float32))
    noise = rng.standard_normal((s.queries, part.dim), dtype=np.float32) * (s.query_noise / np.sqrt(part.dim))
    queries = _normalise(centres[rng.integers(0, part.centres, s.queries)] + noise)
    return centres, queries


def generate(part: Part, s: Settings, centres: np.ndarray) -> Iterator[np.ndarray]:
    """The rows in blocks, deterministically (block ``i`` from its own seed)."""
    block = max(1, BLOCK_BYTES // (4 * part.dim))
    for i, start in enumerate(range(0, part.rows, block)):
        n = min(block, part.rows - start)
        rng = np.random.default_rng([s.seed, part.rows, part.dim, i])
        x = rng.standard_normal((n, part.dim), dtype=np.float32)
        x *= np.float32(s.noise / np.sqrt(part.dim))
        x += centres[rng.integers(0, part.centres, n)]
        yield _normalise(x)


class TopK:
    """The exact top-k rows of each query over blocks of rows seen in order (a blocked numpy scan)."""

    def __init__(self, queries: np.ndarray, k: int) -> None:
        self.q = queries
        self.k = k
        self.scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        self.rows = np.full((len(queries), k), -1, dtype=np.int64)
        self.seen = 0

    def update(self, block: np.ndarray) -> None:
        s = block @ self.q.T  # (n, queries) float32
        kk = min(self.k, len(block))
        top = np.argpartition(-s, kk - 1, axis=0)[:kk].T  # (queries, kk)
        scores = np.concatenate([self.scores, np.take_along_axis(s.T, top, axis=1)], axis=1)
        rows = np.concatenate([self.rows, top + self.seen], axis=1)
        order = _best(scores, rows, self.k)
        self.scores = np.take_along_axis(scores, order, axis=1)
        self.rows = np.take_along_axis(rows, order, axis=1)
        self.seen += len(block)


def _best(scores: np.ndarray, rows: np.ndarray, k: int) -> np.ndarray:
    """Per query (row of the arrays): positions of the best k scores, ties by lower row."""
    return np.stack([np.lexsort((r, -sc))[:k] for sc, r in zip(scores, rows)])


def write_lance(path: Path, part: Part, s: Settings, centres: np.ndarray, oracle: TopK) -> Any:
    import lance
    import pyarrow as pa

    schema = pa.schema([("id", pa.int64()), ("vec", pa.list_(pa.float32(), part.dim))])

    def batches() -> Iterator[pa.RecordBatch]:
        start = 0
        for x in generate(part, s, centres):
            oracle.update(x)
            vec = pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), part.dim)
            ids = pa.array(np.arange(start, start + len(x), dtype=np.int64))
            start += len(x)
            yield pa.RecordBatch.from_arrays([ids, vec], schema=schema)

    reader = pa.RecordBatchReader.from_batches(schema, batches())
    return lance.write_dataset(reader, str(path), schema=schema, max_rows_per_group=8192)


class LanceKeys:
    """:class:`~simvis_widgets.gallery.index.KeyRows` over the ``vec`` column of a Lance dataset (row = offset)."""

    def __init__(self, ds: Any, column: str = "vec") -> None:
        self.ds = ds
        self.column = column
        self._dim = int(ds.schema.field(column).type.list_size)
        self._rows = int(ds.count_rows())

    @property
    def dim(self) -> int:
        return self._dim

    def __len__(self) -> int:
        return self._rows

    def _numpy(self, col: Any) -> np.ndarray:
        flat = col.combine_chunks().flatten() if hasattr(col, "combine_chunks") else col.flatten()
        return flat.to_numpy(zero_copy_only=False).reshape(-1, self._dim)

    def keys(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.int64)
        if not len(rows):
            return np.empty((0, self._dim), dtype=np.float32)
        return self._numpy(self.ds.take(rows, columns=[self.column]).column(self.column))

    def blocks(self, rows_per_block: int) -> Iterator[np.ndarray]:
        for batch in self.ds.to_batches(columns=[self.column], batch_size=rows_per_block):
            yield self._numpy(batch.column(0))


# --------------------------------------------------------------------------------------------------
# Searching and measuring
# --------------------------------------------------------------------------------------------------


def rss() -> dict[str, float]:
    st = proc_status()
    return {"rss_gb": st.get("VmRSS", 0) / GB, "peak_rss_gb": st.get("VmHWM", 0) / GB}


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where that is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


@dataclass
class Sweep:
    method: str
    probes: int
    candidates: int
    recall: float
    p50_ms: float
    p95_ms: float
    rss_gb: float
    peak_rss_gb: float
    exact_scores: bool | None = None
    """IvfPqIndex: every returned score equals the oracle's float32 score of that row (to 1e-5)."""


def sweep(
    method: str,
    search: Callable[[np.ndarray], np.ndarray],
    queries: np.ndarray,
    truth: np.ndarray,
    probes: int,
    candidates: int,
) -> Sweep:
    """Warm up with one query, then time each query once; recall@10 over all of them."""
    search(queries[0])
    times, hits = [], 0
    for q, t in zip(queries, truth):
        t0 = time.perf_counter()
        rows = search(q)
        times.append(time.perf_counter() - t0)
        hits += len(np.intersect1d(rows[:K], t))
    st = rss()
    return Sweep(
        method,
        probes,
        candidates,
        hits / truth.size,
        percentile(times, 50) * 1e3,
        percentile(times, 95) * 1e3,
        st["rss_gb"],
        st["peak_rss_gb"],
    )


@dataclass
class PartResult:
    part: Part
    write_s: float = 0.0
    dataset_gb: float = 0.0
    faiss: dict[str, Any] = field(default_factory=dict)
    lance: dict[str, Any] = field(default_factory=dict)
    sweeps: list[Sweep] = field(default_factory=list)
    best: Sweep | None = None
    goals: dict[str, Any] = field(default_factory=dict)


def du(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / GB


def run_part(part: Part, s: Settings, log: Callable[[str], None]) -> PartResult:
    import faiss
    import lance

    faiss.omp_set_num_threads(s.threads)
    res = PartResult(part)
    path = ROOT / f"keys_{part.rows}x{part.dim}.lance"
    shutil.rmtree(path, ignore_errors=True)
    centres, queries = centres_and_queries(part, s)
    oracle = TopK(queries, K)
    log(f"{part.name}: writing {part.rows:,} rows to {path} (and the exact top-{K} of {len(queries)} queries) ...")
    t0 = time.perf_counter()
    write_lance(path, part, s, centres, oracle)
    res.write_s = time.perf_counter() - t0
    res.dataset_gb = du(path)
    truth = oracle.rows
    assert oracle.seen == part.rows
    del centres
    gc.collect()
    ds = lance.dataset(str(path))
    keys = LanceKeys(ds)

    log(f"{part.name}: IvfPqIndex.build(lists={part.lists}, subquantizers={part.subquantizers}) ...")
    reset_peak_rss()
    t0 = time.perf_counter()
    index = IvfPqIndex.build(keys, lists=part.lists, subquantizers=part.subquantizers)
    build_s = time.perf_counter() - t0
    st = index.stats
    res.faiss = {
        "build_s": build_s,
        "train_s": st["train_s"],
        "add_s": st["add_s"],
        "train_rows": st["train_rows"],
        "index_gb": st["index_bytes"] / GB,
        "default_probes": st["probes"],
        **{f"build_{k}": v for k, v in rss().items()},
    }
    log(f"{part.name}: built in {build_s:.0f} s (train {st['train_s']:.0f} s, add {st['add_s']:.0f} s)")

    gc.collect()
    reset_peak_rss()
    settings = sorted(
        {(p, c) for p in part.probes for c in part.candidates}
        | {(default_probes(part.lists, part.rows), default_candidates(K))}
    )
    for p, c in settings:
        index.probes, index.candidates = p, c
        exact_ok = True

        def faiss_search(q: np.ndarray, index: IvfPqIndex = index, keys: LanceKeys = keys) -> np.ndarray:
            nonlocal exact_ok
            scores, rows = index.search(q, K)
            exact_ok &= bool(np.allclose(scores, keys.keys(rows) @ q, rtol=0, atol=1e-5))
            return rows

        sw = sweep("faiss ivfpq + exact", faiss_search, queries, truth, p, c)
        sw.exact_scores = exact_ok
        res.sweeps.append(sw)
        log(f"   faiss probes {p:4d} candidates {c:4d}: recall {sw.recall:.3f}, p50 {sw.p50_ms:.1f} ms")
    res.faiss["search_peak_rss_gb"] = rss()["peak_rss_gb"]
    res.faiss["last_search"] = index.stats["last_search"]
    del index
    gc.collect()

    if part.lance:
        log(f"{part.name}: Lance IVF_PQ (num_partitions={part.lists}, num_sub_vectors={part.subquantizers}) ...")
        t0 = time.perf_counter()
        ds = ds.create_index(
            "vec",
            index_type="IVF_PQ",
            num_partitions=part.lists,
            num_sub_vectors=part.subquantizers,
            metric="dot",
            sample_rate=50,  # as IvfPqIndex: 50 training rows a cell, 10 k-means iterations (Lance: 256, 50)
            max_iters=10,
        )
        res.lance = {"build_s": time.perf_counter() - t0}
        log(f"{part.name}: Lance index built in {res.lance['build_s']:.0f} s")
        reset_peak_rss()
        for p, c in settings:

            def lance_search(q: np.ndarray, p: int = p, c: int = c, ds: Any = ds) -> np.ndarray:
                tab = ds.to_table(
                    columns=["id", "_distance"],
                    nearest={"column": "vec", "q": q, "k": K, "nprobes": p, "refine_factor": max(1, c // K)},
                )
                return tab.column("id").to_numpy()

            sw = sweep("lance ivf_pq + refine", lance_search, queries, truth, p, c)
            res.sweeps.append(sw)
            log(f"   lance probes {p:4d} refine {c // K:4d}: recall {sw.recall:.3f}, p50 {sw.p50_ms:.1f} ms")
        res.lance["search_peak_rss_gb"] = rss()["peak_rss_gb"]

    ours = [w for w in res.sweeps if w.method.startswith("faiss")]
    good = [w for w in ours if w.recall >= 0.95]
    res.best = min(good, key=lambda w: w.p50_ms) if good else max(ours, key=lambda w: w.recall)
    if part.goals:
        b = res.best
        res.goals = {
            "recall>=0.95": b.recall >= 0.95,
            "p50<=50ms": b.p50_ms <= 50,
            "peak_rss<=4GB": res.faiss["search_peak_rss_gb"] <= 4.0,
        }
    del ds, keys
    gc.collect()
    shutil.rmtree(path, ignore_errors=True)
    return res


# --------------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------------


def format_part(r: PartResult) -> str:
    p = r.part
    f = r.faiss
    lines = [
        f"({p.name}) {p.rows:,} rows x {p.dim}, {p.centres:,} centres; Lance dataset {r.dataset_gb:.2f} GB written "
        f"in {r.write_s:.0f} s (with the exact top-{K} oracle)",
        f"   IvfPqIndex: lists {p.lists}, subquantizers {p.subquantizers} x 8 bits; build {f['build_s']:.1f} s "
        f"(train {f['train_s']:.1f} s on {f['train_rows']:,} rows, add {f['add_s']:.1f} s); index {f['index_gb']:.2f} "
        f"GB; RSS after build {f['build_rss_gb']:.2f} GB (peak during build {f['build_peak_rss_gb']:.2f} GB); "
        f"peak RSS during searches {f['search_peak_rss_gb']:.2f} GB",
    ]
    if r.lance:
        lines.append(
            f"   Lance IVF_PQ: same partitions / sub-vectors, metric dot; build {r.lance['build_s']:.1f} s; "
            f"peak RSS during its searches {r.lance['search_peak_rss_gb']:.2f} GB (same process, after ours)"
        )
    lines.append(
        f"   {'method':<24}{'probes':>7}{'cands':>7}{'recall@10':>11}{'p50 ms':>9}{'p95 ms':>9}{'RSS GB':>8}  scores exact"
    )
    for w in r.sweeps:
        ex = "-" if w.exact_scores is None else ("yes" if w.exact_scores else "NO")
        lines.append(
            f"   {w.method:<24}{w.probes:>7}{w.candidates:>7}{w.recall:>11.3f}{w.p50_ms:>9.1f}{w.p95_ms:>9.1f}"
            f"{w.rss_gb:>8.2f}  {ex}"
        )
    if r.best is not None:
        b = r.best
        lines.append(
            f"   best IvfPqIndex setting (recall >= 0.95, lowest p50): probes {b.probes}, candidates {b.candidates}: "
            f"recall {b.recall:.3f}, p50 {b.p50_ms:.1f} ms"
        )
    for goal, met in r.goals.items():
        lines.append(f"   goal {goal}: {verdict(met)}")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = arg_parser(__doc__, "50k x 1280 and 200k x 256 instead of 1M and 10M (~2 minutes)")
    ap.add_argument("--parts", type=int, nargs="+", default=[1, 2], choices=[1, 2], help="parts to run, in this order")
    ap.add_argument("--keep", action="store_true", help=f"keep {ROOT} at the end")
    ap.add_argument("--lists2", type=int, help="IVF cells of part 2 (default 4096)")
    ap.add_argument("--probes2", type=int, nargs="+", help="probes swept in part 2 (default 32 64 128)")
    ap.add_argument(
        "--rows2",
        type=int,
        help="rows of part 2 (default 10M): less where the disk (4.1 GB a 1M rows) or time is short",
    )
    return ap.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    s = QUICK if args.quick else Settings()
    parts = s.parts
    if args.lists2 or args.probes2:
        two = parts[1]
        parts = (parts[0], replace(two, lists=args.lists2 or two.lists, probes=tuple(args.probes2 or two.probes)))
    if args.rows2:
        two = parts[1]
        name = f"{args.rows2 / 1e6:g}M x {two.dim}" if args.rows2 >= 1e6 else f"{args.rows2:,} x {two.dim}"
        parts = (parts[0], replace(two, name=name, rows=args.rows2, centres=max(1, args.rows2 // 1000)))
    s = Settings(**{**asdict(s), "parts": parts, "threads": args.threads})
    run = Run.start(None)
    ROOT.mkdir(parents=True, exist_ok=True)
    results = []
    try:
        for i in args.parts:  # in the order given
            results.append(run_part(s.parts[i - 1], s, run.log))
            print(format_part(results[-1]), flush=True)  # as soon as it is known (repeated below)
            write_json(args.json, {"settings": to_jsonable(s), "parts": [to_jsonable(r) for r in results]})
    finally:
        if not args.keep:
            shutil.rmtree(ROOT, ignore_errors=True)
    run.finish()
    info = machine_info(s.threads, PACKAGES)  # after the measurements: it imports torch (RSS)

    print(
        "simvis_widgets approximate search benchmark (CPU): FAISS IVF-PQ + exact re-rank (IvfPqIndex) vs Lance IVF_PQ"
    )
    print("\n".join(header(info, run)))
    print(
        f"mode {'quick' if s.quick else 'default'}; {s.queries} queries near random centres (noise {s.query_noise}), "
        f"rows = centre + noise {s.noise}, normalised; one query at a time, {s.threads} threads; exact keys for "
        f"re-ranking read from the Lance dataset (ds.take)"
    )
    busy = run.busy_note("other processes competed for the cores, timings are noisy")
    if busy:
        print(busy)
    for r in results:
        print()
        print(format_part(r))
    print(f"\ntotal benchmark time {run.total_s:.0f} s")
    out = {
        "machine": info,
        **run.record(),
        "settings": to_jsonable(s),
        "parts": [to_jsonable(r) for r in results],
    }
    write_json(args.json, out)
    return out


if __name__ == "__main__":
    main()
