"""In-RAM search over a gallery's scoring keys: an int8 scan with integer accumulation, re-ranked exactly.

Every score the gallery ranks by is one inner product ``score(b) = <k_b, q>`` with a per-image *key*
``k_b = [u_b, t_b]`` (:mod:`simvis_widgets.gallery.keys`: ``u_b`` the scaled embedding, ``t_b`` its last value,
the inverse norm). The exact keys (float32) live in storage; this index keeps ``t_b`` exactly and a quantised
copy of ``u_b``, one byte per value:

    u_b ~ s_b * i_b,   i_b = round(u_b / s_b) in [-127, 127]^(D-1),   s_b = max|u_b| / 127      (same for q's u)

and scans it with exact integer dot products (simsimd; no rounding inside the scan). The last value is kept apart
because it is of another magnitude than the rest (``1/|e|`` next to the values of ``e/|e|``) and would set the
scale of every row. The error of the scan is then bounded row by row, with no assumption on the data:

    |<k_b, q> - (s_b s_q <i_b, j> + t_b q_t)| <= |u_b - s_b i_b| |q_u| + |s_b i_b| |q_u - s_q j| + slack =: beta_b

(``slack`` covers float32 rounding in the exact re-rank and float64 rounding here). A search re-ranks the best
``max(2k, k + 32)`` rows by approximate score with their exact keys; then every other row whose upper bound
``approx_b + beta_b`` reaches the k-th exact score is re-ranked too (found through the largest ``beta`` over all
rows, then each row's own), until none is left. The
top-k and its scores therefore equal an exact float32 scan's, ties within float32 rounding aside.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from ..errors import GalleryError

FLOAT32_SLACK = 2.0**-22
"""Relative slack per dimension for float32 rounding in the exact re-rank (gamma_D of float32 is D * 2**-24)."""


class KeyRows(Protocol):
    """Exact, verified access to a gallery's scoring keys: row ``b``'s key ``k_b`` (float32, ``dim`` values)."""

    @property
    def dim(self) -> int: ...

    def __len__(self) -> int: ...

    def keys(self, rows: np.ndarray) -> np.ndarray:
        """``(len(rows), dim)`` float32 exact keys of ``rows`` (int64), in the order given; raises
        :class:`~simvis_widgets.errors.GalleryError` if stored data fails its checksum."""
        ...

    def blocks(self, rows_per_block: int) -> Iterator[np.ndarray]:
        """All keys in row order, as float32 blocks of at most ``rows_per_block`` rows."""
        ...


class SearchIndex(Protocol):
    """What the gallery asks of an index: the exact top-``k`` rows of ``<k_b, query>``, best first, never
    returning a row of ``exclude``."""

    def search(self, query: np.ndarray, k: int, exclude: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]: ...


class ArrayKeys:
    """:class:`KeyRows` over a float32 array in RAM (tests, small galleries, benchmarks)."""

    def __init__(self, keys: np.ndarray) -> None:
        if keys.ndim != 2:
            raise GalleryError(f"keys must be (rows, dim), got shape {keys.shape}")
        self._keys = np.ascontiguousarray(keys, dtype=np.float32)

    @property
    def dim(self) -> int:
        return int(self._keys.shape[1])

    def __len__(self) -> int:
        return int(self._keys.shape[0])

    def keys(self, rows: np.ndarray) -> np.ndarray:
        return self._keys[np.asarray(rows, dtype=np.int64)]

    def blocks(self, rows_per_block: int) -> Iterator[np.ndarray]:
        for start in range(0, len(self), rows_per_block):
            yield self._keys[start : start + rows_per_block]


def exact_scores(keys: np.ndarray, query: np.ndarray) -> np.ndarray:
    """``keys @ query`` in float32: the scores the gallery reports."""
    return np.asarray(keys, dtype=np.float32) @ np.asarray(query, dtype=np.float32)


def row_norms(block: np.ndarray) -> np.ndarray:
    """Euclidean norm of each row, accumulated in float32 (use on values of moderate magnitude: see
    :meth:`Int8Codes.from_blocks`, which applies it to rows scaled to at most 127)."""
    return np.sqrt(np.einsum("ij,ij->i", block, block, dtype=np.float32))


def _quantise(block: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-row symmetric int8 codes and scales, ``block ~ scale[:, None] * codes``, and ``block / scale`` (float32,
    before rounding: entries in [-127, 127] up to rounding, so its norms neither overflow nor underflow)."""
    block = np.asarray(block, dtype=np.float32)
    peak = np.abs(block).max(axis=1) if block.shape[1] else np.zeros(len(block), np.float32)
    scale = np.where(peak > 0, np.maximum(peak / np.float32(127), np.float32(2.0**-149)), 1).astype(np.float32)
    scaled = np.divide(block, scale[:, None])
    codes = np.clip(np.rint(scaled), -127, 127).astype(np.int8)
    return codes, scale, scaled


@dataclass(frozen=True)
class Int8Codes:
    """Quantised keys (all values but the last), the exact last values, and per row the norms the error bound
    needs (upper bounds, rounded up)."""

    codes: np.ndarray
    scales: np.ndarray
    tails: np.ndarray
    residuals: np.ndarray
    """``|u_b - s_b i_b|``."""
    code_norms: np.ndarray
    """``|s_b i_b|``."""
    key_norms: np.ndarray
    """``|k_b|``."""

    @classmethod
    def from_blocks(cls, blocks: Iterable[np.ndarray], dim: int) -> Int8Codes:
        """Quantise float32 key blocks of ``dim`` values (consumed once, in row order).

        Norms are taken in units of each row's scale ``s``: ``|u| = s |u / s|``, ``|u - s i| = s |u / s - i|``
        (the subtraction is exact: ``u / s`` is within 1/2 of the integer ``i``), ``|s i| = s sqrt(sum i^2)``
        (an exact integer sum). The float32 rounding of ``u / s`` (at most ``127 * 2**-24`` per value) is added
        to the residual as ``sqrt(D) 2**-16``; every norm is then rounded up by ``(D + 8) 2**-24``."""
        if dim < 1:
            raise GalleryError(f"keys need at least one value, got dim={dim}")
        parts: dict[str, list[np.ndarray]] = {n: [] for n in ("codes", "scales", "tails", "res", "cn", "kn")}
        for block in blocks:
            block = np.ascontiguousarray(block, dtype=np.float32).reshape(-1, dim)
            c, s, scaled = _quantise(block[:, :-1])
            s64 = s.astype(np.float64)
            tail = block[:, -1].astype(np.float64)
            parts["codes"].append(c)
            parts["scales"].append(s64)
            parts["tails"].append(tail)
            body_norm = s64 * row_norms(scaled)
            parts["kn"].append(np.sqrt(body_norm**2 + tail**2))
            parts["cn"].append(s64 * np.sqrt(np.einsum("ij,ij->i", c, c, dtype=np.int64).astype(np.float64)))
            np.subtract(scaled, c, out=scaled)
            parts["res"].append(s64 * (row_norms(scaled).astype(np.float64) + np.sqrt(dim) * 2.0**-16))

        def joined(name: str, up: bool = True) -> np.ndarray:
            out = np.concatenate(parts[name]).astype(np.float64) if parts[name] else np.zeros(0)
            return out * (1 + (dim + 8) * 2.0**-24) if up else out

        return cls(
            codes=np.concatenate(parts["codes"]) if parts["codes"] else np.zeros((0, dim - 1), np.int8),
            scales=joined("scales", up=False),
            tails=joined("tails", up=False),
            residuals=joined("res"),
            code_norms=joined("cn"),
            key_norms=joined("kn"),
        )


@dataclass(frozen=True)
class _Scan:
    """One query's scan: the approximate scores of every row and the query's terms of the error bound."""

    approx: np.ndarray
    body_norm: float
    q_residual: float
    q_norm: float
    q_code_norm: float
    q_tail: float
    dim: int

    def beta(self, residual: Any, code_norm: Any, key_norm: Any, tail: Any) -> Any:
        """The bound on ``|<k_b, q> - approx_b|`` of rows with these norms (arrays, or maxima: then it bounds
        every row)."""
        return (
            residual * self.body_norm
            + code_norm * (self.q_residual * (1 + 1e-6))
            # float32 rounding of the exact re-rank: relative, plus absolute steps of 2**-149 among subnormals
            + key_norm * (FLOAT32_SLACK * (self.dim + 2) * self.q_norm)
            + (self.dim + 2) * 2.0**-149
            # float64 rounding of approx itself (four operations)
            + 2.0**-50 * (code_norm * self.q_code_norm + np.abs(tail) * abs(self.q_tail))
        )


class Int8Index:
    """Exact top-k by an int8 scan with integer accumulation and a certified float32 re-rank (module docstring).

    RAM: ``D + 39`` bytes per row (about a quarter of a float32 matrix). Re-ranks from ``keys``."""

    def __init__(self, keys: KeyRows, codes: Int8Codes, *, threads: int = 0) -> None:
        if codes.codes.shape != (len(keys), keys.dim - 1):
            raise GalleryError(
                f"index built from {len(codes.codes)} keys of {codes.codes.shape[1] + 1} values; the gallery has "
                f"{len(keys)} of {keys.dim}"
            )
        self._keys = keys
        self.threads = threads or max(1, min(4, os.cpu_count() or 1))
        self._codes = codes.codes
        self._scales = codes.scales
        self._tails = codes.tails
        self._residuals, self._code_norms, self._key_norms = codes.residuals, codes.code_norms, codes.key_norms
        self._maxima = tuple(float(a.max()) if len(a) else 0.0 for a in (*self._norms(), np.abs(codes.tails)))
        self.reranked = 0
        """Rows re-ranked exactly by the last search (for benchmarks)."""

    @classmethod
    def build(cls, keys: KeyRows, rows_per_block: int = 65536) -> Int8Index:
        """An index over all of ``keys``."""
        return cls(keys, Int8Codes.from_blocks(keys.blocks(rows_per_block), keys.dim))

    def _norms(self, rows: Any = slice(None)) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self._residuals[rows], self._code_norms[rows], self._key_norms[rows]

    @property
    def nbytes(self) -> int:
        """RAM held by the index."""
        arrays = (self._codes, self._scales, self._tails, *self._norms())
        return int(sum(a.nbytes for a in arrays))

    def _scan(self, query: np.ndarray) -> _Scan:
        import simsimd

        q = np.asarray(query, dtype=np.float32)
        dim = self._keys.dim
        if q.shape != (dim,):
            raise GalleryError(f"query has shape {q.shape}; the index's keys have ({dim},)")
        if not np.isfinite(q).all():
            raise GalleryError("query vector is not finite")
        body, q_tail = q[:-1].astype(np.float64), float(q[-1])
        q_codes, q_scale, _ = _quantise(q[None, :-1])
        q_approx = q_codes[0].astype(np.float64) * float(q_scale[0])
        if len(self._codes) and self._codes.shape[1]:
            approx = np.asarray(simsimd.cdist(q_codes, self._codes, metric="dot", threads=self.threads), np.float64)
            approx = approx.reshape(-1)
            approx *= self._scales
            approx *= float(q_scale[0])
        else:
            approx = np.zeros(len(self._codes))
        if q_tail:
            approx += self._tails * q_tail
        return _Scan(
            approx=approx,
            body_norm=float(np.linalg.norm(body)),
            q_residual=float(np.linalg.norm(body - q_approx)),
            q_norm=float(np.linalg.norm(q.astype(np.float64))),
            q_code_norm=float(np.linalg.norm(q_approx)),
            q_tail=q_tail,
            dim=dim,
        )

    def upper_bounds(self, query: np.ndarray) -> np.ndarray:
        """For every row, a number >= its exact score ``<k_b, query>``: ``approx_b + beta_b``."""
        scan = self._scan(query)
        return np.asarray(scan.approx + scan.beta(*self._norms(), self._tails))

    def search(self, query: np.ndarray, k: int, exclude: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The exact top-``k`` rows of ``<k_b, query>`` (scores float32, best first), never a row of ``exclude``."""
        scan = self._scan(query)
        approx = scan.approx
        q = np.asarray(query, np.float32)
        excluded = np.unique(np.asarray(exclude, dtype=np.int64)) if exclude is not None else np.zeros(0, np.int64)
        approx[excluded] = -np.inf
        eligible = len(approx) - len(excluded)
        k = min(k, eligible)
        if k <= 0:
            return np.zeros(0, np.float32), np.zeros(0, np.int64)
        m = min(eligible, max(2 * k, k + 32))
        cands = np.argpartition(approx, len(approx) - m)[-m:] if m < len(approx) else np.flatnonzero(approx > -np.inf)
        scores = exact_scores(self._keys.keys(cands), q)
        beta_max = float(scan.beta(*self._maxima))
        while len(cands) < eligible:
            # Rows outside the candidates that could still beat the k-th exact score: first by the one bound
            # that holds for every row, then by each row's own bound; those are re-ranked too.
            kth = float(np.partition(scores, len(scores) - k)[len(scores) - k])
            maybe = np.flatnonzero(approx >= kth - beta_max)
            maybe = maybe[~np.isin(maybe, cands, assume_unique=True)]
            upper = approx[maybe] + scan.beta(*self._norms(maybe), self._tails[maybe])
            need = maybe[upper >= kth]
            if not len(need):
                break
            cands = np.concatenate([cands, need])
            scores = np.concatenate([scores, exact_scores(self._keys.keys(need), q)])
        self.reranked = len(cands)
        order = np.lexsort((cands, -scores.astype(np.float64)))[:k]
        return scores[order].astype(np.float32), cands[order].astype(np.int64)
