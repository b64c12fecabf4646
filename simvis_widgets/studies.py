"""Measures for studies of similarity networks: how well embeddings retrieve, and what their explanation maps look
like (how concentrated, how much on the object, how stable between two networks).

Pure maths on embeddings and maps (no models, files or figures), so each measure is tested against a brute-force
or library oracle. Definitions, for a map ``S`` (one image's cell contributions, summing with the global term to
the score):

* ``concentration(S, share)``: the part of the cells' total ``sum_i S_i`` carried by the ``ceil(share * N)``
  largest cells;
* ``object_share(S, mask)``: the part of the positive contribution ``sum_i max(S_i, 0)`` that falls on the object,
  each cell counted by the fraction of its area the object covers;
* ``map_agreement(S, T)``: the Pearson correlation of two maps of the same grid (1: the same pattern).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .decompose import cell_weights
from .errors import DecompositionError


@dataclass(frozen=True)
class RetrievalQuality:
    """Leave-one-out retrieval over a labelled set: every item queries all the others."""

    recall_at_1: float
    """Share of queries whose nearest other item has the query's label."""
    mean_average_precision: float
    """Mean over queries of the average precision of the full ranking (relevant: the same label)."""
    queries: int
    """Items with at least one other item of their label (the others cannot be scored and are left out)."""


def _as_numpy(x: Any, name: str) -> np.ndarray:
    arr = x.detach().cpu().numpy() if isinstance(x, Tensor) else np.asarray(x)
    if arr.size and not np.issubdtype(arr.dtype, np.number):
        raise DecompositionError(f"{name} must be numeric, got dtype {arr.dtype}")
    return arr


def retrieval_quality(embeddings: Any, labels: Any, normalize: bool = True) -> RetrievalQuality:
    """Recall@1 and mAP of ``embeddings`` ``(n, d)`` with ``labels`` ``(n,)``, ranking by cosine
    (``normalize``) or dot product; ties are ranked by position (the order a stable sort gives)."""
    emb = _as_numpy(embeddings, "embeddings").astype(np.float64)
    lab = _as_numpy(labels, "labels")
    if emb.ndim != 2 or lab.shape != (len(emb),):
        raise DecompositionError(f"need embeddings (n, d) and labels (n,); got {emb.shape} and {lab.shape}")
    if len(emb) < 2:
        raise DecompositionError(f"retrieval needs at least 2 items, got {len(emb)}")
    if not np.isfinite(emb).all():
        raise DecompositionError("embeddings contain NaN or infinite values")
    if normalize:
        norms = np.linalg.norm(emb, axis=1, keepdims=True)
        if (norms == 0).any():
            raise DecompositionError(f"embedding {int(np.flatnonzero(norms == 0)[0])} is all zeros: no cosine")
        emb = emb / norms
    sims = emb @ emb.T
    np.fill_diagonal(sims, -np.inf)
    order = np.argsort(-sims, axis=1, kind="stable")[:, :-1]  # the query itself, at -inf, is last
    relevant = lab[order] == lab[:, None]
    counts = relevant.sum(axis=1)
    scored = counts > 0
    if not scored.any():
        raise DecompositionError("no item shares its label with another: nothing to retrieve")
    hits = np.cumsum(relevant, axis=1)
    precision_at_hit = np.where(relevant, hits / np.arange(1, relevant.shape[1] + 1), 0.0)
    ap = precision_at_hit.sum(axis=1)[scored] / counts[scored]
    return RetrievalQuality(float(relevant[scored, 0].mean()), float(ap.mean()), int(scored.sum()))


def _as_map(map_: Any, name: str) -> Tensor:
    m = map_ if isinstance(map_, Tensor) else torch.as_tensor(np.asarray(map_))
    m = m.detach().to("cpu", torch.float64)
    if m.dim() != 2 or m.numel() == 0:
        raise DecompositionError(f"{name} must be a non-empty 2-D map, got shape {tuple(m.shape)}")
    if not bool(torch.isfinite(m).all()):
        raise DecompositionError(f"{name} contains NaN or infinite values")
    return m


def concentration(map_: Any, share: float = 0.1) -> float:
    """``sum`` of the ``ceil(share * N)`` largest cells of ``map_`` over the sum of all its cells (1 when those
    cells carry the whole total; above 1 when the rest sums to a negative amount). NaN when the cells sum to 0."""
    m = _as_map(map_, "map")
    if not 0 < share <= 1:
        raise DecompositionError(f"share must lie in (0, 1], got {share!r}")
    values = m.flatten().sort(descending=True).values
    total = float(values.sum())
    top = float(values[: max(1, math.ceil(share * values.numel()))].sum())
    return top / total if total != 0 else math.nan


def object_share(map_: Any, mask: Any) -> float:
    """The part of the positive contribution of ``map_`` that lies on the object of ``mask`` (a boolean or
    [0, 1] mask at cell or image resolution: see :func:`~simvis_widgets.decompose.cell_weights`). NaN when no
    cell contributes positively."""
    m = _as_map(map_, "map")
    weights = cell_weights(mask, tuple(m.shape), dtype=torch.float64, name="object mask")  # type: ignore[arg-type]
    positive = m.clamp(min=0)
    total = float(positive.sum())
    return float((positive * weights).sum()) / total if total > 0 else math.nan


def map_agreement(map_1: Any, map_2: Any) -> float:
    """Pearson correlation of two maps of one grid; NaN where either map is constant."""
    m1, m2 = _as_map(map_1, "map_1"), _as_map(map_2, "map_2")
    if m1.shape != m2.shape:
        raise DecompositionError(f"the maps have different grids: {tuple(m1.shape)} and {tuple(m2.shape)}")
    a, b = m1.flatten() - m1.mean(), m2.flatten() - m2.mean()
    norm = float(a.norm() * b.norm())
    return float(a @ b) / norm if norm > 0 else math.nan


def silhouette(image: Any, threshold: int = 0) -> np.ndarray:
    """The object of an image on a black background (Fashion-MNIST): pixels brighter than ``threshold`` in any
    channel, as an ``H x W`` bool mask."""
    img = _as_numpy(image, "image")
    if img.ndim == 3:
        img = img.max(axis=2)
    if img.ndim != 2:
        raise DecompositionError(f"image must be H x W or H x W x C, got shape {img.shape}")
    return np.asarray(img > threshold)
