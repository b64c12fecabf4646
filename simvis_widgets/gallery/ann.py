"""Approximate search for galleries too big to scan: FAISS IVF-PQ candidates, re-ranked with the exact keys.

:class:`IvfPqIndex` implements :class:`~simvis_widgets.gallery.index.SearchIndex` for a gallery whose keys do not
fit in RAM (10M x 256 float32 is 10 GB). It holds only a compressed copy of the keys in RAM -- an inverted file of
``lists`` k-means cells (``faiss.IndexIVFPQ``, inner product) whose rows are product-quantised to
``subquantizers`` bytes each -- and answers a query in two steps:

1. FAISS scans the ``probes`` cells whose centroids score best against the query and returns the ``candidates``
   rows with the best *estimated* (PQ) scores;
2. those rows' exact float32 keys are read from the gallery's :class:`~simvis_widgets.gallery.index.KeyRows` and
   re-scored exactly (:func:`~simvis_widgets.gallery.index.exact_scores`); the best ``k`` are returned.

So every score returned is the exact score ``<k_b, q>`` of the row returned (never a PQ estimate), and the rows
are the exact top-k *of the candidates*: a true top-k row that FAISS did not propose is missed. That is the one
approximation, measured as recall@k by ``benchmarks/bench_ann.py``; more ``probes`` and ``candidates`` trade speed
for recall. Rows of ``exclude`` are never returned (FAISS skips them, so they cost no candidate slots). When ``k``
or the candidate count reaches the number of rows that may be returned, the search is an exact scan instead.

``faiss`` (``pip install faiss-cpu``) is imported only when an index is built or loaded.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from typing import Any

import numpy as np

from ..errors import GalleryError
from .index import KeyRows, exact_scores

_MAGIC = b"SVIVFPQ1"
"""First bytes of :meth:`IvfPqIndex.to_bytes`: then an 8-byte little-endian header length, a JSON header (shape,
settings, SHA-256 of the payload), and the payload, ``faiss.serialize_index`` of the index."""

TRAIN_BYTES_MAX = 1 << 30
"""The default training sample holds at most this many bytes of float32 keys (unless ``39 x lists`` rows need
more: FAISS asks for at least 39 training rows per k-means centroid)."""

ADD_BLOCK_BYTES = 64 << 20
"""Rows are read from the KeyRows and added to the index in blocks of about this many bytes of float32 keys."""

MIN_SCANNED_ROWS = 4096
"""The default ``probes`` scan at least about this many rows' codes (20x the default 200 candidates)."""

PQ_TRAIN_ITERATIONS = 10
"""k-means iterations of each PQ sub-quantizer (FAISS's default: 25)."""

PQ_TRAIN_POINTS_PER_CENTROID = 64
"""Each PQ sub-quantizer trains on at most this many rows per centroid (16,384 at 8 bits; FAISS's default: 256)."""

SUBQUANTIZERS_MAX = 256
"""The default number of PQ sub-quantizers (bytes per row) is about ``dim // 4``, at most this: 10M rows of
2048 values take 2.6 GB of codes (+ 80 MB of ids)."""


def _faiss() -> Any:
    try:
        import faiss
    except ImportError as exc:  # pragma: no cover - faiss-cpu is in the test extras
        raise GalleryError(
            "IvfPqIndex needs FAISS, which is not installed: pip install faiss-cpu (or simvis-widgets[faiss])"
        ) from exc
    return faiss


def _positive_int(name: str, value: object, *, low: int = 1, high: int | None = None) -> int:
    """``value`` as an int in ``[low, high]``, or a GalleryError naming ``name`` and the value."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise GalleryError(f"{name} must be an integer, got {value!r}")
    v = int(value)
    if v < low or (high is not None and v > high):
        bound = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise GalleryError(f"{name} must be {bound}, got {v}")
    return v


def default_lists(rows: int) -> int:
    """``round(4 sqrt(rows))`` k-means cells, at most ``rows // 39`` (FAISS wants >= 39 training rows a cell)."""
    return max(1, min(round(4 * math.sqrt(rows)), rows // 39))


def default_subquantizers(dim: int) -> int:
    """Bytes per row (8-bit sub-quantizers): about ``dim // 4`` (sub-vectors of ~4 values), at most
    :data:`SUBQUANTIZERS_MAX`. From the multiples of 8 between half of that and that (all numbers up to it when
    it is under 8), the one needing the least zero padding of the keys (a divisor of ``dim`` needs none), the
    larger on ties: 1280 -> 256, 256 -> 64, 64 -> 16, 1281 -> 184 (padded to 1288)."""
    target = min(SUBQUANTIZERS_MAX, max(1, dim // 4))
    if target >= 8:
        target -= target % 8
        choices = range(target, max(8, target // 2) - 1, -8)
    else:
        choices = range(target, 0, -1)
    return min(choices, key=lambda m: (-(-dim // m) * m - dim, -m))


def default_probes(lists: int, rows: int) -> int:
    """Cells scanned per query: ``lists // 32``, at least 16 and enough cells for ~:data:`MIN_SCANNED_ROWS` rows
    (small galleries have small cells), at most ``lists``. Measured (benchmarks/bench_ann.py, 10M x 256 in
    4,096 cells, 200 candidates): recall@10 0.960 at 32 probes, 0.972 at 128, p50 6 -> 11 ms; with too few cells
    for the data (1,024 for 10M) even 64 probes gave 0.79, so more cells beat more probes."""
    return min(lists, max(16, lists // 32, -(-lists * MIN_SCANNED_ROWS // max(rows, 1))))


def default_candidates(k: int) -> int:
    """Rows FAISS proposes for exact re-ranking when ``candidates`` is not set: ``max(20 k, 200)``. Measured on
    clustered data (bench_ann): 100 candidates gave recall@10 0.88-0.90, 200 gave 0.96-0.98, 400 gave 0.99-1.0."""
    return max(20 * k, 200)


def default_train_rows(rows: int, lists: int, padded_dim: int) -> int:
    """``max(50 lists, 16384)`` rows, at most :data:`TRAIN_BYTES_MAX` bytes (but never under ``39 lists``) and at
    most ``rows``."""
    want = max(50 * lists, 16_384)
    cap = max(TRAIN_BYTES_MAX // (4 * padded_dim), 39 * lists)
    return min(rows, want, cap)


class IvfPqIndex:
    """FAISS IVF-PQ candidates re-ranked with exact keys; see the module docstring for the contract.

    Build with :meth:`build`, persist with :meth:`to_bytes` / :meth:`from_bytes`. ``probes`` (cells scanned) and
    ``candidates`` (rows re-ranked; None: ``max(20 k, 200)``) may be changed at any time.
    """

    def __init__(self, index: Any, keys: KeyRows, *, candidates: int | None, info: dict[str, Any]) -> None:
        """Wrap a trained, filled ``faiss.IndexIVFPQ`` over ``keys``; use :meth:`build` or :meth:`from_bytes`."""
        self._index = index
        self._keys = keys
        self._dim = int(keys.dim)
        self._rows = int(index.ntotal)
        self._candidates: int | None = None
        self.candidates = candidates
        self._info = dict(info)
        self._last: dict[str, Any] = {}

    # ------------------------------------------------------------------------------------------------
    # Building and persisting
    # ------------------------------------------------------------------------------------------------

    @classmethod
    def build(
        cls,
        keys: KeyRows,
        *,
        lists: int | None = None,
        subquantizers: int | None = None,
        probes: int | None = None,
        candidates: int | None = None,
        train_rows: int | None = None,
        seed: int = 0,
    ) -> IvfPqIndex:
        """Train an IVF-PQ index on ``train_rows`` rows of ``keys`` drawn at random (``seed``), then add every
        row, streamed from ``keys.blocks`` (the keys are never all in RAM at once).

        Defaults (``N`` rows, ``D`` = ``keys.dim``): ``lists`` :func:`default_lists`, ``subquantizers``
        :func:`default_subquantizers` (8-bit codes; keys are padded with zeros to a multiple of it),
        ``probes`` :func:`default_probes`, ``candidates`` None (``max(20 k, 200)`` per search),
        ``train_rows`` :func:`default_train_rows`. Row ``b`` of ``keys`` is FAISS id ``b``.

        Raises GalleryError (naming the argument and value) for an argument out of range, or for empty keys.
        """
        faiss = _faiss()
        n, dim = len(keys), int(keys.dim)
        if dim < 1:
            raise GalleryError(f"keys.dim must be >= 1, got {dim}")
        if n < 1:
            raise GalleryError("keys has no rows: an IvfPqIndex needs at least one row to train on")
        seed = _positive_int("seed", seed, low=0)
        lists = default_lists(n) if lists is None else _positive_int("lists", lists, high=n)
        m = (
            default_subquantizers(dim)
            if subquantizers is None
            else _positive_int("subquantizers", subquantizers, high=dim)
        )
        padded = -(-dim // m) * m
        probes = default_probes(lists, n) if probes is None else _positive_int("probes", probes, high=lists)
        if candidates is not None:
            candidates = _positive_int("candidates", candidates)
        if train_rows is None:
            train_rows = default_train_rows(n, lists, padded)
        else:
            train_rows = _positive_int("train_rows", train_rows, low=min(n, lists), high=n)
        # 8-bit codes need 256 training rows per sub-quantizer; a tiny gallery gets fewer bits.
        bits = 8 if train_rows >= 256 else max(1, int(math.log2(max(train_rows, 2))))

        rng = np.random.default_rng(seed)
        sample = np.sort(rng.choice(n, size=train_rows, replace=False)).astype(np.int64)
        train = _pad(_checked(keys.keys(sample), len(sample), dim, "keys.keys(sample)"), padded)
        if len(train) < 2**bits:  # at most one row: repeat it so PQ has as many points as centroids
            train = np.repeat(train, -(-(2**bits) // len(train)), axis=0)

        quantizer = faiss.IndexFlatIP(padded)
        index = faiss.IndexIVFPQ(quantizer, padded, lists, m, bits, faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = seed
        index.pq.cp.seed = seed
        # PQ sub-vectors are short (~4 values), where k-means is slow per flop: 10 iterations on at most 64 points
        # per centroid (FAISS: 25 on 256) cut its training ~10x for no measurable loss of recall after re-ranking.
        index.pq.cp.niter = PQ_TRAIN_ITERATIONS
        index.pq.cp.max_points_per_centroid = PQ_TRAIN_POINTS_PER_CENTROID
        index.nprobe = probes
        t0 = time.perf_counter()
        index.train(train)
        train_s = time.perf_counter() - t0
        del train

        t0 = time.perf_counter()
        block_rows = max(1, ADD_BLOCK_BYTES // (4 * padded))
        added = 0
        for block in keys.blocks(block_rows):
            block = _checked(block, None, dim, "keys.blocks")
            index.add(_pad(block, padded))
            added += len(block)
        add_s = time.perf_counter() - t0
        if added != n:
            raise GalleryError(f"keys.blocks gave {added} rows but len(keys) is {n}")
        info = {"train_rows": train_rows, "train_s": train_s, "add_s": add_s, "seed": seed}
        return cls(index, keys, candidates=candidates, info=info)

    def to_bytes(self) -> bytes:
        """The index (FAISS's serialisation, with a header: shape, settings, SHA-256 of the payload), for
        :meth:`from_bytes` with the same keys. The keys themselves are not included."""
        faiss = _faiss()
        payload = faiss.serialize_index(self._index).tobytes()
        header = {
            "rows": self._rows,
            "dim": self._dim,
            "padded_dim": int(self._index.d),
            "candidates": self._candidates,
            "probes": self.probes,
            "info": self._info,
            "sha256": hashlib.sha256(payload).hexdigest(),
        }
        head = json.dumps(header, sort_keys=True).encode()
        return _MAGIC + len(head).to_bytes(8, "little") + head + payload

    @classmethod
    def from_bytes(cls, data: bytes, keys: KeyRows) -> IvfPqIndex:
        """The index saved by :meth:`to_bytes`, over ``keys``. Raises GalleryError for bytes that are not such an
        index (wrong header, checksum mismatch, FAISS cannot read them) or whose row count or dim differ from
        ``keys``'s."""
        faiss = _faiss()
        data = bytes(data)
        if not data.startswith(_MAGIC) or len(data) < len(_MAGIC) + 8:
            raise GalleryError("not an IvfPqIndex: the data does not start with its header")
        start = len(_MAGIC) + 8
        head_len = int.from_bytes(data[len(_MAGIC) : start], "little")
        try:
            header = json.loads(data[start : start + head_len])
            rows, dim, padded = int(header["rows"]), int(header["dim"]), int(header["padded_dim"])
            candidates, probes, info = header["candidates"], int(header["probes"]), dict(header["info"])
            digest = str(header["sha256"])
        except (ValueError, KeyError, TypeError) as exc:
            raise GalleryError(f"not an IvfPqIndex: its header cannot be read ({exc})") from exc
        payload = data[start + head_len :]
        if hashlib.sha256(payload).hexdigest() != digest:
            raise GalleryError("IvfPqIndex data is corrupt: its checksum does not match (truncated or altered)")
        if rows != len(keys) or dim != keys.dim:
            raise GalleryError(
                f"IvfPqIndex was built over {rows} rows of dim {dim}, but keys have {len(keys)} rows of dim {keys.dim}"
            )
        try:
            index = faiss.deserialize_index(np.frombuffer(payload, dtype=np.uint8))
        except RuntimeError as exc:
            raise GalleryError(f"IvfPqIndex data cannot be read by FAISS: {exc}") from exc
        if not isinstance(index, faiss.IndexIVFPQ) or index.metric_type != faiss.METRIC_INNER_PRODUCT:
            raise GalleryError(f"IvfPqIndex data holds a {type(index).__name__}, not an inner-product IndexIVFPQ")
        if int(index.ntotal) != rows or int(index.d) != padded or padded < dim:
            raise GalleryError(
                f"IvfPqIndex data is inconsistent: header says {rows} rows (dim {padded}), "
                f"FAISS index has {index.ntotal} (dim {index.d})"
            )
        out = cls(index, keys, candidates=candidates, info=info)
        out.probes = probes
        return out

    # ------------------------------------------------------------------------------------------------
    # Settings and statistics
    # ------------------------------------------------------------------------------------------------

    @property
    def dim(self) -> int:
        """Dimension of the keys (before any zero padding)."""
        return self._dim

    def __len__(self) -> int:
        return self._rows

    @property
    def lists(self) -> int:
        """Number of k-means cells of the inverted file."""
        return int(self._index.nlist)

    @property
    def probes(self) -> int:
        """Cells scanned per query (1 .. ``lists``); more: better recall, slower."""
        return int(self._index.nprobe)

    @probes.setter
    def probes(self, value: int) -> None:
        self._index.nprobe = _positive_int("probes", value, high=self.lists)

    @property
    def candidates(self) -> int | None:
        """Rows proposed by FAISS and re-ranked exactly per query; None: ``max(20 k, 200)``. Never fewer than k."""
        return self._candidates

    @candidates.setter
    def candidates(self, value: int | None) -> None:
        self._candidates = None if value is None else _positive_int("candidates", value)

    @property
    def stats(self) -> dict[str, Any]:
        """Shape, settings, build timings, RAM of the index, and the last search's figures (``last_search``:
        candidates re-ranked, probes used, seconds in FAISS / reading keys / re-scoring, or ``exact_scan``)."""
        m, padded = int(self._index.pq.M), int(self._index.d)
        code = int(self._index.code_size)
        return {
            "rows": self._rows,
            "dim": self._dim,
            "padded_dim": padded,
            "lists": self.lists,
            "subquantizers": m,
            "bits": int(self._index.pq.nbits),
            "probes": self.probes,
            "candidates": self._candidates,
            **self._info,
            # codes + 8-byte ids in the inverted lists, the coarse centroids, the PQ codebooks
            "index_bytes": self._rows * (code + 8)
            + self.lists * padded * 4
            + (2 ** int(self._index.pq.nbits)) * padded * 4,
            "last_search": dict(self._last),
        }

    # ------------------------------------------------------------------------------------------------
    # Search
    # ------------------------------------------------------------------------------------------------

    def search(self, query: np.ndarray, k: int, exclude: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The best ``k`` rows among FAISS's candidates by exact score ``<k_b, query>``: ``(scores, rows)``,
        float32 exact scores best first (ties: lower row first) and int64 rows, never a row of ``exclude``.

        Fewer than ``k`` only when fewer rows are left after ``exclude`` (then all of them, an exact scan).
        Raises GalleryError for a query that is not a finite vector of ``dim`` values, ``k`` not a positive
        integer, or ``exclude`` rows outside ``[0, len)``.
        """
        k = _positive_int("k", k)
        q = np.asarray(query, dtype=np.float32)
        if q.shape != (self._dim,):
            raise GalleryError(f"query must be a vector of {self._dim} values, got shape {np.shape(query)}")
        if not np.isfinite(q).all():
            raise GalleryError("query has NaN or infinite values")
        excl = self._exclude(exclude)
        eligible = self._rows - len(excl)
        want = max(k, default_candidates(k) if self._candidates is None else self._candidates)
        if k >= eligible or want >= eligible:
            return self._exact_scan(q, k, excl)

        faiss = _faiss()
        qp = _pad(q[None, :], int(self._index.d))
        sel = None if not len(excl) else faiss.IDSelectorNot(faiss.IDSelectorBatch(excl))
        probes = self.probes
        t0 = time.perf_counter()
        while True:
            params = faiss.SearchParametersIVF(nprobe=probes, sel=sel)
            _, ids = self._index.search(qp, want, params=params)
            cands = ids[0][ids[0] >= 0]
            # Too few rows in the cells scanned (small cells, or many excluded): scan more cells.
            if len(cands) >= min(want, eligible) or probes >= self.lists:
                break
            probes = min(self.lists, 2 * probes)
        t1 = time.perf_counter()
        cands = np.sort(cands.astype(np.int64))
        if len(excl):  # FAISS honours the selector; checked again so exclude holds whatever FAISS does
            cands = cands[~np.isin(cands, excl)]
        exact = _checked(self._keys.keys(cands), len(cands), self._dim, "keys.keys(candidates)")
        t2 = time.perf_counter()
        scores = exact_scores(exact, q)
        best = _top(scores, cands, k)
        t3 = time.perf_counter()
        self._last = {
            "candidates": len(cands),
            "probes": probes,
            "faiss_s": t1 - t0,
            "keys_s": t2 - t1,
            "rescore_s": t3 - t2,
        }
        return scores[best], cands[best]

    def _exclude(self, exclude: np.ndarray | None) -> np.ndarray:
        if exclude is None:
            return np.empty(0, dtype=np.int64)
        ex = np.asarray(exclude)
        if ex.size == 0:
            return np.empty(0, dtype=np.int64)
        if ex.ndim != 1 or not np.issubdtype(ex.dtype, np.integer):
            raise GalleryError(f"exclude must be a 1-D array of row numbers, got {ex.dtype} shape {ex.shape}")
        ex = np.unique(ex.astype(np.int64))
        if ex[0] < 0 or ex[-1] >= self._rows:
            bad = ex[0] if ex[0] < 0 else ex[-1]
            raise GalleryError(f"exclude row {int(bad)} is outside the gallery's rows [0, {self._rows})")
        return ex

    def _exact_scan(self, q: np.ndarray, k: int, excl: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Every row not in ``excl`` scored exactly (streamed from ``keys.blocks``): the exact top-k."""
        t0 = time.perf_counter()
        parts: list[np.ndarray] = []
        for block in self._keys.blocks(max(1, ADD_BLOCK_BYTES // (4 * self._dim))):
            parts.append(exact_scores(_checked(block, None, self._dim, "keys.blocks"), q))
        scores = np.concatenate(parts) if parts else np.empty(0, dtype=np.float32)
        if len(scores) != self._rows:
            raise GalleryError(f"keys.blocks gave {len(scores)} rows but the index has {self._rows}")
        rows = np.arange(self._rows, dtype=np.int64)
        if len(excl):
            keep = np.ones(self._rows, dtype=bool)
            keep[excl] = False
            scores, rows = scores[keep], rows[keep]
        best = _top(scores, rows, k)
        self._last = {"exact_scan": True, "candidates": len(rows), "seconds": time.perf_counter() - t0}
        return scores[best], rows[best]


def _top(scores: np.ndarray, rows: np.ndarray, k: int) -> np.ndarray:
    """Positions of the best ``k`` scores, best first, ties broken by lower row."""
    if len(scores) > k:
        part = np.argpartition(-scores, k - 1)[:k]
        # rows tied with the k-th score but left out of the partition must compete on row number too
        kth = scores[part].min()
        part = np.union1d(part, np.flatnonzero(scores == kth))
    else:
        part = np.arange(len(scores))
    order = np.lexsort((rows[part], -scores[part]))
    return part[order][:k]


def _pad(x: np.ndarray, width: int) -> np.ndarray:
    """``x`` (rows, d) as C-contiguous float32 with zero columns appended up to ``width``."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.shape[1] == width:
        return x
    out = np.zeros((x.shape[0], width), dtype=np.float32)
    out[:, : x.shape[1]] = x
    return out


def _checked(x: np.ndarray, rows: int | None, dim: int, what: str) -> np.ndarray:
    """``x`` as a float32 ``(rows, dim)`` array, or a GalleryError naming ``what``."""
    arr = np.asarray(x, dtype=np.float32)
    if arr.ndim != 2 or arr.shape[1] != dim or (rows is not None and arr.shape[0] != rows):
        want = f"({rows if rows is not None else 'n'}, {dim})"
        raise GalleryError(f"{what} returned shape {arr.shape}, expected {want}")
    return arr
