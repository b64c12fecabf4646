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

(``slack`` covers float32 rounding in the exact re-rank and float64 rounding here). The index keeps the largest
of these norms over all rows, so one ``beta`` bounds every row. Re-ranking the ``m`` candidates with the best
approximate scores by their exact keys certifies the exact top-k once the k-th exact score is >= the best
approximate score left out plus ``beta``; otherwise more candidates are re-ranked (up to every row). The
top-k and its scores therefore equal an exact float32 scan's, ties within float32 rounding aside.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

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
    """Quantised keys (all values but the last), the exact last values, and the largest norms the error bound
    needs (upper bounds over all rows, rounded up)."""

    codes: np.ndarray
    scales: np.ndarray
    tails: np.ndarray
    max_residual: float
    """max over rows of ``|u_b - s_b i_b|``."""
    max_code_norm: float
    """max over rows of ``|s_b i_b|``."""
    max_key_norm: float
    """max over rows of ``|k_b|``."""
    max_tail: float
    """max over rows of ``|t_b|``."""

    @classmethod
    def from_blocks(cls, blocks: Iterable[np.ndarray], dim: int) -> Int8Codes:
        """Quantise float32 key blocks of ``dim`` values (consumed once, in row order).

        Norms are taken in units of each row's scale ``s``: ``|u| = s |u / s|``, ``|u - s i| = s |u / s - i|``
        (the subtraction is exact: ``u / s`` is within 1/2 of the integer ``i``), ``|s i| = s sqrt(sum i^2)``
        (an exact integer sum). The float32 rounding of ``u / s`` (at most ``127 * 2**-24`` per value) is added
        to the residual as ``sqrt(D) 2**-16``; every norm is then rounded up by ``(D + 8) 2**-24``."""
        if dim < 1:
            raise GalleryError(f"keys need at least one value, got dim={dim}")
        codes, scales, tails = [], [], []
        res = cn = kn = tl = 0.0
        for block in blocks:
            block = np.ascontiguousarray(block, dtype=np.float32).reshape(-1, dim)
            if not len(block):
                continue
            c, s, scaled = _quantise(block[:, :-1])
            s64 = s.astype(np.float64)
            tail = block[:, -1].astype(np.float64)
            codes.append(c)
            scales.append(s64)
            tails.append(tail)
            body_norm = s64 * row_norms(scaled)
            kn = max(kn, float(np.sqrt(body_norm**2 + tail**2).max()))
            cn = max(cn, float((s64 * np.sqrt(np.einsum("ij,ij->i", c, c, dtype=np.int64))).max()))
            tl = max(tl, float(np.abs(tail).max()))
            np.subtract(scaled, c, out=scaled)
            res = max(res, float((s64 * (row_norms(scaled).astype(np.float64) + np.sqrt(dim) * 2.0**-16)).max()))
        up = 1 + (dim + 8) * 2.0**-24
        return cls(
            codes=np.concatenate(codes) if codes else np.zeros((0, dim - 1), np.int8),
            scales=np.concatenate(scales) if scales else np.zeros(0),
            tails=np.concatenate(tails) if tails else np.zeros(0),
            max_residual=res * up,
            max_code_norm=cn * up,
            max_key_norm=kn * up,
            max_tail=tl,
        )


class Int8Index:
    """Exact top-k by an int8 scan with integer accumulation and a certified float32 re-rank (module docstring).

    RAM: ``D + 15`` bytes per row (about a quarter of a float32 matrix). Re-ranks from ``keys``."""

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
        self._bounds = codes
        self.reranked = 0
        """Rows re-ranked exactly by the last search (for benchmarks)."""

    @classmethod
    def build(cls, keys: KeyRows, rows_per_block: int = 65536) -> Int8Index:
        """An index over all of ``keys``."""
        return cls(keys, Int8Codes.from_blocks(keys.blocks(rows_per_block), keys.dim))

    @property
    def nbytes(self) -> int:
        """RAM held by the index."""
        return int(self._codes.nbytes + self._scales.nbytes + self._tails.nbytes)

    def _approximate(self, query: np.ndarray) -> tuple[np.ndarray, float]:
        """The scan's scores ``approx_b`` (float64) and ``beta``, a bound on ``|<k_b, query> - approx_b|`` that
        holds for every row (module docstring; the maxima over rows replace the per-row norms)."""
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
        q_residual = float(np.linalg.norm(body - q_approx))
        if len(self._codes) and self._codes.shape[1]:
            approx = np.asarray(simsimd.cdist(q_codes, self._codes, metric="dot", threads=self.threads), np.float64)
            approx = approx.reshape(-1)
            approx *= self._scales
            approx *= float(q_scale[0])
        else:
            approx = np.zeros(len(self._codes))
        if q_tail:
            approx += self._tails * q_tail
        b = self._bounds
        beta = (
            b.max_residual * float(np.linalg.norm(body))
            + b.max_code_norm * q_residual * (1 + 1e-6)
            # float32 rounding of the exact re-rank: relative, plus absolute steps of 2**-149 among subnormals
            + FLOAT32_SLACK * (dim + 2) * b.max_key_norm * float(np.linalg.norm(q.astype(np.float64)))
            + (dim + 2) * 2.0**-149
            # float64 rounding of approx itself (four operations)
            + 2.0**-50 * (b.max_code_norm * float(np.linalg.norm(q_approx)) + b.max_tail * abs(q_tail))
        )
        return approx, beta

    def upper_bounds(self, query: np.ndarray) -> np.ndarray:
        """For every row, a number >= its exact score ``<k_b, query>``: ``approx_b + beta``."""
        approx, beta = self._approximate(query)
        return approx + beta

    def search(self, query: np.ndarray, k: int, exclude: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The exact top-``k`` rows of ``<k_b, query>`` (scores float32, best first), never a row of ``exclude``."""
        approx, beta = self._approximate(query)
        if exclude is not None and len(exclude):
            approx[np.asarray(exclude, dtype=np.int64)] = -np.inf
        eligible = int(np.isfinite(approx).sum())
        k = min(k, eligible)
        if k <= 0:
            return np.zeros(0, np.float32), np.zeros(0, np.int64)
        m = min(eligible, max(4 * k, k + 32))
        while True:
            if m < eligible:
                part = np.argpartition(approx, len(approx) - m - 1)
                cands, bound_outside = part[-m:], float(approx[part[-m - 1]]) + beta
            else:
                cands, bound_outside = np.flatnonzero(np.isfinite(approx)), -np.inf
            scores = exact_scores(self._keys.keys(cands), np.asarray(query, np.float32))
            order = np.lexsort((cands, -scores.astype(np.float64)))[:k]
            if float(scores[order[-1]]) >= bound_outside or m >= eligible:
                self.reranked = len(cands)
                return scores[order].astype(np.float32), cands[order].astype(np.int64)
            m = min(eligible, 4 * m)
