"""What the widgets send to the browser: images as PNG / JPEG bytes, masks, the colour table and the matrices
from which the browser computes every hover and paint map. One place for all widgets."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import traitlets as t
from PIL import Image

from ..decompose import Explanation
from ..errors import WidgetError

STATIC = Path(__file__).with_name("static")
"""The built front end: ``static/<widget>.js`` (ES module) and ``static/<widget>.css``, bundled by esbuild from
``js/<widget>.js`` and the shared modules of ``js/lib/`` (``npm run build``; committed, so installs need no Node).
The widgets' ``_esm`` and ``_css`` are these paths: anywidget reads the files and, with ``ANYWIDGET_HMR=1`` in a
source checkout, sends them again whenever they change (``npm run watch`` rebuilds on every edit)."""

PAIRWISE_MAX = 1024 * 1024
"""Largest N_A x N_B sent as P itself (32 x 32 cells per image); above it the per-location shares go."""
FLOAT16_ABOVE = 512 * 512
"""Above this many entries the matrix travels as float16 (display only; the readout numbers use the float32 maps)."""


def _mask_to_json(value: np.ndarray | None, _widget: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    data = np.ascontiguousarray(np.round(np.asarray(value, np.float32) * 255).astype(np.uint8))
    return {"shape": list(data.shape), "data": memoryview(data.tobytes())}


def _mask_from_json(value: dict[str, Any] | None, _widget: Any) -> np.ndarray | None:
    if not value:
        return None
    h, w = (int(v) for v in value["shape"])
    return np.frombuffer(bytes(value["data"]), np.uint8).reshape(h, w).astype(np.float32) / 255.0


MASK_SERIALIZERS = {"to_json": _mask_to_json, "from_json": _mask_from_json}


def region_from_browser(region: dict[str, Any], grid: Sequence[int]) -> torch.Tensor | None:
    """The cell weights (``grid``-shaped float32) of a region the browser sent as ``{"kind": "cells", "weights":
    [...]}`` (the covered fraction of each cell, row-major), or None for the whole image: any other kind, or nothing
    painted (all zero). Weights of the wrong count or outside [0, 1] raise :class:`WidgetError`."""
    if region.get("kind") != "cells":
        return None
    gh, gw = int(grid[0]), int(grid[1])
    try:
        w = torch.tensor(region.get("weights", []), dtype=torch.float32)
    except (TypeError, ValueError):
        raise WidgetError(f"region weights must be a list of numbers, got {region.get('weights')!r:.80}") from None
    if w.numel() != gh * gw:
        raise WidgetError(f"region weights have {w.numel()} cells; the query grid has {gh}x{gw}")
    if not bool(torch.isfinite(w).all()) or bool((w < 0).any()) or bool((w > 1).any()):
        raise WidgetError("region weights must be finite numbers in [0, 1] (the covered fraction of each cell)")
    return w.reshape(gh, gw) if float(w.sum()) > 0 else None


def png_bytes(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def colormap_lut(name: str) -> bytes:
    """256 RGB entries (uint8) of a matplotlib colormap: the browser's colour table."""
    from matplotlib import colormaps

    try:
        cmap = colormaps[name]
    except KeyError:
        raise WidgetError(f"unknown colormap {name!r} (see matplotlib.colormaps)") from None
    rgb = cmap(np.linspace(0.0, 1.0, 256))[:, :3]
    return np.round(rgb * 255).astype(np.uint8).tobytes()


THUMB_SIDE = 160
"""Longer side of result thumbnails, in px."""


def jpeg_thumbnail(image: np.ndarray, side: int = THUMB_SIDE) -> tuple[bytes, list[int]]:
    """``image`` shrunk to at most ``side`` px as JPEG bytes, and its ``[height, width]``."""
    img = Image.fromarray(image)
    img.thumbnail((side, side), Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    img.save(buffer, format="JPEG", quality=85)
    return buffer.getvalue(), [img.height, img.width]


def matrix_payload(ex: Explanation) -> dict[str, Any]:
    """What the browser needs to compute every hover and paint map of ``ex``: ``P`` (float32, or float16
    divided by its largest magnitude ``matrix_scale`` above ``FLOAT16_ABOVE`` entries) or, above
    ``PAIRWISE_MAX`` entries, the shares ``Q_A``, ``Q_B`` with ``P = scale * Q_A Q_B^T``; plus both maps."""
    n_a, n_b = ex.shares_a.shape[0], ex.shares_b.shape[0]
    dtype = np.float16 if n_a * n_b > FLOAT16_ABOVE else np.float32
    out: dict[str, Any] = {"matrix_dtype": "float16" if dtype == np.float16 else "float32"}
    if n_a * n_b <= PAIRWISE_MAX:
        out["pairwise"], out["matrix_scale"] = _normalised_bytes(ex.pairwise, dtype)
        out.update(matrix_kind="pairwise", shares_a=b"", shares_b=b"", factor_dim=0, scale=float(ex.scale))
    else:
        out["shares_a"], scale_a = _normalised_bytes(ex.shares_a, dtype)
        out["shares_b"], scale_b = _normalised_bytes(ex.shares_b, dtype)
        out.update(
            matrix_kind="factors",
            pairwise=b"",
            factor_dim=int(ex.shares_a.shape[1]),
            matrix_scale=1.0,
            scale=float(ex.scale) * scale_a * scale_b,
        )
    out["map_a"], out["map_b"] = _bytes(ex.map_a, np.float32), _bytes(ex.map_b, np.float32)
    return out


def _bytes(tensor: Any, dtype: Any) -> bytes:
    return np.ascontiguousarray(tensor.detach().cpu().numpy().astype(dtype)).tobytes()


def _normalised_bytes(tensor: Any, dtype: Any) -> tuple[bytes, float]:
    """``tensor / m`` as bytes of ``dtype`` and ``m = max |tensor|`` (1 for an all-zero tensor)."""
    values = tensor.detach().cpu().double().numpy()
    m = float(np.abs(values).max()) if values.size else 0.0
    m = m if m > 0 else 1.0
    return np.ascontiguousarray((values / m).astype(dtype)).tobytes(), m


class ContributionTraits(t.HasTraits):
    """The synced traits that carry one explained pair's contributions to the browser (decoded there by
    ``js/lib/contributions.js``), shared by the pair widgets and the TextExplorer; :meth:`send_contributions` fills
    them from an Explanation. ``pooling`` is the label the readout shows; ``cmap`` and its colour table ``lut`` colour
    the maps."""

    grid_a = t.List(t.Int(), [1, 1]).tag(sync=True)
    grid_b = t.List(t.Int(), [1, 1]).tag(sync=True)
    matrix_kind = t.Unicode("pairwise").tag(sync=True)
    matrix_dtype = t.Unicode("float32").tag(sync=True)
    pairwise = t.Bytes(b"").tag(sync=True)
    shares_a = t.Bytes(b"").tag(sync=True)
    shares_b = t.Bytes(b"").tag(sync=True)
    factor_dim = t.Int(0).tag(sync=True)
    matrix_scale = t.Float(1.0).tag(sync=True)
    """P = matrix_scale * decoded pairwise bytes."""
    scale = t.Float(1.0).tag(sync=True)
    """P = scale * Q_A Q_B^T for decoded factors."""
    map_a = t.Bytes(b"").tag(sync=True)
    map_b = t.Bytes(b"").tag(sync=True)
    score = t.Float(0.0).tag(sync=True)
    global_term = t.Float(0.0).tag(sync=True)
    similarity = t.Unicode("cosine").tag(sync=True)
    pooling = t.Unicode("avg pooling").tag(sync=True)
    model_name = t.Unicode("").tag(sync=True)
    exact = t.Bool(True).tag(sync=True)
    cmap = t.Unicode("RdBu_r").tag(sync=True)
    """A matplotlib colormap name (checked when set)."""
    lut = t.Bytes(b"").tag(sync=True)
    """``cmap``'s colour table (:func:`colormap_lut`), kept in step with it."""

    @t.default("lut")
    def _default_lut(self) -> bytes:
        return colormap_lut(self.cmap)

    @t.validate("cmap")
    def _valid_cmap(self, proposal: t.Bunch) -> str:
        colormap_lut(proposal["value"])
        return str(proposal["value"])

    @t.observe("cmap")
    def _cmap_changed(self, change: t.Bunch) -> None:
        self.lut = colormap_lut(change["new"])

    def send_contributions(self, ex: Explanation, pooling: str, model_name: str) -> None:
        """Set every trait above but ``lut`` from ``ex`` (:func:`matrix_payload` and the readout's numbers)."""
        self.grid_a, self.grid_b = list(ex.grid_a), list(ex.grid_b)
        for name, value in matrix_payload(ex).items():
            setattr(self, name, value)
        self.score, self.global_term = float(ex.score), float(ex.global_term)
        self.similarity = "cosine" if ex.normalized else "dot product"
        self.pooling = pooling
        self.model_name = model_name
        self.exact = ex.exact
