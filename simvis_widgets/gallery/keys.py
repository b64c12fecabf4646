"""Scoring keys: every score a gallery ranks by is one inner product with a per-image key.

For gallery image ``b`` with embedding ``e_b``, head bias ``c`` (zero without a biased head) and
``s_b = 1 / |e_b|`` (cosine) or ``1`` (dot product), the key is ``k_b = [(e_b - c) s_b, s_b]`` (``D + 1`` values).
Then, with ``scale = 1 / |e_A|`` (cosine) or ``1``:

* a region query with region vector ``q`` (method.md: ``s_R(B) = <q, e_B - c> s_B scale``) is ``[q scale, 0]``;
* the whole image under a biased head (the similarity itself, global term included:
  ``<e_A, e_B> s_B scale``) is ``[e_A scale, <c, e_A> scale]``, since
  ``<(e_B - c) s_B, e_A> + s_B <c, e_A> = <e_B, e_A> s_B``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import GalleryError


def scoring_keys(embeddings: np.ndarray, bias: np.ndarray | None, normalize: bool) -> np.ndarray:
    """``(n, D + 1)`` float32 keys of ``(n, D)`` embeddings."""
    e = np.asarray(embeddings, dtype=np.float32)
    if normalize:
        norms = np.sqrt(np.einsum("ij,ij->i", e, e, dtype=np.float32))
        if (norms == 0).any():
            raise GalleryError("a gallery image has an all-zero embedding: cosine similarity is undefined")
        s = (np.float32(1) / norms).astype(np.float32)
    else:
        s = np.ones(len(e), np.float32)
    out = np.empty((len(e), e.shape[1] + 1), np.float32)
    body = out[:, :-1]
    if bias is not None:
        np.subtract(e, bias.astype(np.float32), out=body)
        np.multiply(body, s[:, None], out=body)
    else:
        np.multiply(e, s[:, None], out=body)
    out[:, -1] = s
    return out


def region_key_query(q: np.ndarray, scale: float) -> np.ndarray:
    """The query for a region vector ``q``."""
    return np.append(np.asarray(q, np.float32) * np.float32(scale), np.float32(0))


def similarity_key_query(e: np.ndarray, bias: np.ndarray | None, scale: float) -> np.ndarray:
    """The query whose scores are the similarity ``<e_A, e_B> s_B scale`` itself (bias terms included)."""
    e = np.asarray(e, np.float32)
    offset = float(np.dot(bias.astype(np.float64), e.astype(np.float64))) if bias is not None else 0.0
    return np.append(e * np.float32(scale), np.float32(offset * scale))


def search_key_query(q: Any, e: Any, bias: np.ndarray | None, normalize: bool, whole: bool) -> np.ndarray:
    """The query a search ranks a gallery's keys with, from a query's region vector ``q`` and embedding ``e``
    (:func:`~simvis_widgets.decompose.region_query`; tensors or arrays), with ``scale = 1 / |e|`` (cosine) or 1.

    ``whole`` (no region) with a biased head: the similarity itself, bias terms (the global term) included, which
    the region scoring leaves out; otherwise the region query, whose scores are the exact region scores ``s_R``."""
    e_np = _as_numpy(e)
    norm = float(e.norm()) if hasattr(e, "norm") else float(np.linalg.norm(e_np))
    scale = 1.0 / norm if normalize else 1.0
    if whole and bias is not None:
        return similarity_key_query(e_np, bias, scale)
    return region_key_query(_as_numpy(q), scale)


def _as_numpy(x: Any) -> np.ndarray:
    """A float32 numpy copy of a tensor (any device, detached) or array."""
    if hasattr(x, "detach"):
        x = x.detach().float().cpu().numpy()
    return np.asarray(x, np.float32)
