"""The exact decomposition of a pooled-embedding similarity into image locations.

Pure torch: no images, files or figures. The derivation, with a worked example, is in ``docs/method.md``;
in short:

* local features ``a_i`` (``i = 1..N_A``) pool to ``f_A[k] = sum_i r_A[i, k]``, where ``r_A`` are the
  *shares* of the pooling (avg: ``a/N``; sum: ``a``; max: the max at the argmax, split equally between
  ties; GeM(p): ``f * a^p / sum_j a^p``);
* a linear head ``e = W f + c`` projects every share, ``q_A[i] = W r_A[i]``, so ``e_A = sum_i q_A[i] + c``;
* the score is ``s = <e_A, e_B> * scale`` with ``scale = 1 / (|e_A| |e_B|)`` (cosine) or ``1`` (dot);
* ``P[i, j] = <q_A[i], q_B[j]> * scale``; ``S_A = P.sum(1)``, ``S_B = P.sum(0)``;
* ``global_term = (<c, g_B> + <g_A, c> + <c, c>) * scale`` with ``g = sum_i q[i]`` -- every part of the
  score that involves the head's bias, and so no location.

Then ``S_A.sum() + global_term == S_B.sum() + global_term == P.sum() + global_term == s`` exactly (up to
float rounding), for every pooling and head. The score itself is computed the way the network computes it
(torch pooling, then the head), not from the shares, so the identity is a real check.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, TypeVar

import numpy as np
import torch
from torch import Tensor, nn
from typing_extensions import Self

from ._io import digest, tensor_bytes
from .errors import CellIndexError, DecompositionError

POOLINGS: tuple[str, ...] = ("avg", "sum", "max", "gem")
Pooling = Literal["avg", "sum", "max", "gem"]
Side = Literal["a", "b"]
GEM_EPS = 1e-6
"""GeM clamps features at this floor before the power, as the standard GeM layer does."""
MAX_GEM_P = 1e4
"""The largest GeM exponent accepted. Above it GeM is max pooling to float precision (use ``pooling="max"``), and
``p * log(a)`` loses the digits that tell locations apart."""


# --------------------------------------------------------------------------------------------------
# Validation of options and features
# --------------------------------------------------------------------------------------------------


def check_pooling(pooling: str, p: float = 3.0) -> str:
    """Return the pooling name, or raise naming the problem (unknown name, GeM ``p < 1``)."""
    if not isinstance(pooling, str) or pooling.lower() not in POOLINGS:
        raise DecompositionError(f"unknown pooling {pooling!r}; choose one of {', '.join(POOLINGS)}")
    pooling = pooling.lower()
    if pooling == "gem":
        if not isinstance(p, numbers.Real) or isinstance(p, bool) or not math.isfinite(p) or not 1 <= p <= MAX_GEM_P:
            raise DecompositionError(
                f"GeM needs a real p with 1 <= p <= {MAX_GEM_P:g} (p = 1 is average pooling); got p={p!r}. "
                "For p -> infinity use pooling='max'."
            )
    return pooling


def as_locations(
    feats: Tensor, grid: Sequence[int] | None = None, name: str = "feats"
) -> tuple[Tensor, tuple[int, int]]:
    """Local features as a ``(N, C)`` matrix of locations plus their ``(h, w)`` grid.

    ``feats`` is a ``(C, H, W)`` map (the grid is ``(H, W)``) or ``(N, C)`` tokens with ``grid=(h, w)``,
    ``h * w == N``.
    """
    if not isinstance(feats, Tensor):
        raise DecompositionError(f"{name} must be a torch.Tensor, got {type(feats).__name__}")
    if feats.dim() == 3:
        c, h, w = feats.shape
        if grid is not None and tuple(grid) != (h, w):
            raise DecompositionError(f"{name} has a {h}x{w} map but grid={tuple(grid)} was given")
        locs = feats.reshape(c, h * w).transpose(0, 1)
    elif feats.dim() == 2:
        if grid is None:
            raise DecompositionError(f"{name} are tokens of shape {tuple(feats.shape)}; pass their grid=(h, w)")
        h, w = (int(g) for g in grid)
        if h * w != feats.shape[0]:
            raise DecompositionError(f"{name} has {feats.shape[0]} tokens but grid {h}x{w} holds {h * w}")
        locs = feats
    else:
        raise DecompositionError(
            f"{name} must be a (C, H, W) feature map or (N, C) tokens; got shape {tuple(feats.shape)}"
        )
    if locs.shape[0] == 0 or locs.shape[1] == 0:
        raise DecompositionError(f"{name} is empty: shape {tuple(feats.shape)}")
    return locs, (h, w)


def check_finite(x: Tensor, name: str) -> None:
    """Raise naming ``name`` and the count of NaN / inf entries, if any."""
    finite = torch.isfinite(x)
    if not bool(finite.all()):
        n_nan = int(torch.isnan(x).sum())
        n_inf = int((~finite).sum()) - n_nan
        raise DecompositionError(f"{name} contains {n_nan} NaN and {n_inf} infinite values")


def _compute_dtype(*tensors: Tensor) -> torch.dtype:
    """float64 if any input is float64, else float32 (half precision is upcast for exactness)."""
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


# --------------------------------------------------------------------------------------------------
# Heads
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class LinearHead:
    """An affine head after pooling, ``e = weight @ n(f) + bias``: a linear layer, PCA-whitening
    (``bias = -weight @ mean``), an eval-mode BatchNorm1d folded into a diagonal ``weight``, or a LayerNorm
    (``n(f) = (f - mean_k f) / sqrt(var_k f + eps)`` when ``layer_norm_eps`` is set, else ``n(f) = f``).

    A LayerNorm's mean and std are per-image constants: with them held fixed the decomposition stays exact
    (each share is centred on its own channel mean and divided by the image's std)."""

    weight: Tensor
    """``(D, C)``"""
    bias: Tensor | None = None
    """``(D,)`` or None"""
    layer_norm_eps: float | None = None
    """Normalise the pooled vector over its channels first (a LayerNorm without its affine part)."""

    def __post_init__(self) -> None:
        if not isinstance(self.weight, Tensor) or self.weight.dim() != 2:
            raise DecompositionError(
                f"head weight must be a (D, C) tensor, got {getattr(self.weight, 'shape', self.weight)!r}"
            )
        if self.bias is not None and (
            not isinstance(self.bias, Tensor) or tuple(self.bias.shape) != (self.weight.shape[0],)
        ):
            raise DecompositionError(
                f"head bias must have shape ({self.weight.shape[0]},), got {tuple(getattr(self.bias, 'shape', ()))}"
            )
        check_finite(self.weight, "head weight")
        if self.bias is not None:
            check_finite(self.bias, "head bias")

    @functools.cached_property
    def digest(self) -> str:
        """SHA-256 over the weight, bias and LayerNorm epsilon: equal digests, equal heads (equality and hashing
        use it, so heads can sit in a frozen :class:`~simvis_widgets.session.SessionOptions`)."""
        parts = [str(self.layer_norm_eps).encode(), tensor_bytes(self.weight)]
        parts.append(b"" if self.bias is None else tensor_bytes(self.bias))
        return digest(*parts)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LinearHead) and self.digest == other.digest

    def __hash__(self) -> int:
        return hash(self.digest)

    def to(self, device: torch.device | str) -> LinearHead:
        """The same head with its tensors on ``device``."""
        return LinearHead(
            self.weight.to(device), None if self.bias is None else self.bias.to(device), self.layer_norm_eps
        )

    @classmethod
    def coerce(cls, head: Any) -> LinearHead | None:
        """Accept None, a LinearHead, an ``nn.Linear``, an eval-mode ``nn.BatchNorm1d``, a ``(W, b)`` pair or a
        bare weight tensor."""
        if head is None or isinstance(head, LinearHead):
            return head
        if isinstance(head, nn.Linear):
            return cls(head.weight.detach(), None if head.bias is None else head.bias.detach())
        if isinstance(head, nn.BatchNorm1d):
            if head.training:
                raise DecompositionError(
                    "a BatchNorm1d head must be in eval mode (call .eval()): batch statistics are not per-image"
                )
            if head.running_var is None or head.running_mean is None:
                raise DecompositionError("a BatchNorm1d head needs running statistics (track_running_stats=True)")
            inv_std = torch.rsqrt(head.running_var + head.eps)
            scale = head.weight.detach() * inv_std if head.affine else inv_std
            shift = -head.running_mean * scale + (head.bias.detach() if head.affine else 0)
            return cls(torch.diag(scale), shift)
        if isinstance(head, nn.LayerNorm):
            if len(head.normalized_shape) != 1:
                raise DecompositionError(
                    f"a LayerNorm head must normalise one dimension, got {tuple(head.normalized_shape)}"
                )
            c = head.normalized_shape[0]
            weight = head.weight.detach() if head.weight is not None else torch.ones(c)
            bias = head.bias.detach() if head.bias is not None else None
            return cls(torch.diag(weight), bias, float(head.eps))
        if isinstance(head, nn.Sequential):
            composed: LinearHead | None = None
            for position, layer in enumerate(head):
                if isinstance(layer, (nn.Identity, nn.Dropout)):
                    continue
                if not isinstance(layer, (nn.Linear, nn.BatchNorm1d, nn.LayerNorm, nn.Sequential)):
                    raise DecompositionError(
                        f"head layer {position} of the nn.Sequential is a {type(layer).__name__}: only affine layers "
                        "(Linear, eval-mode BatchNorm1d, LayerNorm first) keep the decomposition exact"
                    )
                step = cls.coerce(layer)
                if step is None:
                    continue
                if composed is not None and step.weight.shape[1] != composed.weight.shape[0]:
                    raise DecompositionError(
                        f"head layer {position} of the nn.Sequential takes {step.weight.shape[1]} inputs but the layers "
                        f"before it give {composed.weight.shape[0]}"
                    )
                composed = step if composed is None else composed.then(step)
            return composed
        if isinstance(head, Tensor):
            return cls(head, None)
        if isinstance(head, (tuple, list)) and len(head) == 2:
            return cls(head[0], head[1])
        raise DecompositionError(
            "head must be None, an nn.Linear, an eval-mode nn.BatchNorm1d, an nn.LayerNorm, an nn.Sequential of "
            f"those, a (weight, bias) pair or a weight tensor; got {type(head).__name__}"
        )

    def then(self, after: LinearHead) -> LinearHead:
        """The head ``after(self(f))`` as one LinearHead (``after`` may not normalise: that is not affine)."""
        if after.layer_norm_eps is not None:
            raise DecompositionError(
                "a LayerNorm after a linear layer is not affine in the pooled vector: not supported"
            )
        if after.weight.shape[1] != self.weight.shape[0]:
            raise DecompositionError(
                f"cannot compose heads: the second takes {after.weight.shape[1]} inputs, the first gives {self.weight.shape[0]}"
            )
        weight = after.weight.to(self.weight) @ self.weight
        bias = after.bias.to(self.weight) if after.bias is not None else None
        if self.bias is not None:
            moved = after.weight.to(self.weight) @ self.bias
            bias = moved if bias is None else bias + moved
        return LinearHead(weight, bias, self.layer_norm_eps)


# --------------------------------------------------------------------------------------------------
# Pooling and its shares
# --------------------------------------------------------------------------------------------------


def pool(locs: Tensor, pooling: str, p: float = 3.0) -> Tensor:
    """Pool ``(..., N, C)`` locations to ``(..., C)`` the way the network does (not through shares)."""
    pooling = check_pooling(pooling, p)
    if pooling == "avg":
        return locs.mean(dim=-2)
    if pooling == "sum":
        return locs.sum(dim=-2)
    if pooling == "max":
        return locs.amax(dim=-2)
    log_x = locs.clamp(min=GEM_EPS).log()
    n = locs.shape[-2]
    return torch.exp((torch.logsumexp(p * log_x, dim=-2) - math.log(n)) / p)


def pooling_shares(locs: Tensor, pooling: str, p: float = 3.0) -> Tensor:
    """Each location's share of each pooled channel, ``r[..., i, k]`` with ``sum_i r[..., i, k] = f[..., k]``.

    * avg: ``r = a / N``; sum: ``r = a``;
    * max: ``r = f[k]`` at the argmax of channel ``k``, divided equally among tied locations, 0 elsewhere
      (the paper's surrogate activation tensor divided by ``N``);
    * gem: ``r = f[k] * a[i, k]^p / sum_j a[j, k]^p`` with ``a`` clamped at ``GEM_EPS`` (computed as a softmax
      of ``p log a`` over locations, so large ``p`` does not overflow).
    """
    pooling = check_pooling(pooling, p)
    if pooling == "avg":
        return locs / locs.shape[-2]
    if pooling == "sum":
        return locs
    if pooling == "max":
        peak = locs.amax(dim=-2, keepdim=True)
        at_peak = (locs == peak).to(locs.dtype)
        return at_peak * (peak / at_peak.sum(dim=-2, keepdim=True))
    weights = torch.softmax(p * locs.clamp(min=GEM_EPS).log(), dim=-2)
    return weights * pool(locs, "gem", p).unsqueeze(-2)


# --------------------------------------------------------------------------------------------------
# Region weights
# --------------------------------------------------------------------------------------------------


def _overlap(n_pixels: int, n_cells: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """``(n_cells, n_pixels)``: the fraction of each cell's extent covered by each pixel (rows sum to 1)."""
    cell_size = n_pixels / n_cells
    cell_lo = torch.arange(n_cells, dtype=torch.float64, device=device)[:, None] * cell_size
    pix_lo = torch.arange(n_pixels, dtype=torch.float64, device=device)[None, :]
    overlap = (torch.minimum(cell_lo + cell_size, pix_lo + 1) - torch.maximum(cell_lo, pix_lo)).clamp(min=0)
    return (overlap / cell_size).to(dtype)


def cell_weights(
    mask: Any,
    grid: tuple[int, int],
    image_size: tuple[int, int] | Sequence[tuple[int, int]] | None = None,
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
    name: str = "mask",
) -> Tensor:
    """Weights ``w`` (``grid``-shaped, in [0, 1]) of the feature cells covered by ``mask``.

    ``mask`` is a bool or float array/tensor with values in [0, 1], either at cell resolution (its shape equals
    ``grid``) or at image resolution (any other shape; the image spans the whole grid). At image resolution
    ``w[i]`` is the exact fraction of cell ``i``'s area covered (area-weighted average of the mask over the
    cell). When ``image_size`` is known (one size or several accepted ones, e.g. the network input and the
    original photo, which share an aspect ratio), a mask matching neither it nor the grid is an error.
    """
    m = mask if isinstance(mask, Tensor) else torch.as_tensor(np.array(mask))
    if m.dim() != 2:
        raise DecompositionError(f"{name} must be 2-D (H, W); got shape {tuple(m.shape)}")
    if m.numel() == 0:
        raise DecompositionError(f"{name} is empty: shape {tuple(m.shape)}")
    m = m.to(device=device, dtype=torch.float64)
    check_finite(m, name)
    if bool((m < 0).any()) or bool((m > 1).any()):
        raise DecompositionError(
            f"{name} values must lie in [0, 1]; got range [{m.min().item():g}, {m.max().item():g}]"
        )
    shape = tuple(m.shape)
    if shape == tuple(grid):
        return m.to(dtype)
    if image_size is not None:
        sizes = [tuple(image_size)] if isinstance(image_size[0], int) else [tuple(s) for s in image_size]  # type: ignore[arg-type]
        if shape not in sizes:
            expected = " or ".join(str(s) for s in sizes)
            raise DecompositionError(
                f"{name} has shape {shape}; expected the image size {expected} or the cell grid {tuple(grid)}"
            )
    rows = _overlap(shape[0], grid[0], torch.float64, m.device)
    cols = _overlap(shape[1], grid[1], torch.float64, m.device)
    return (rows @ m @ cols.T).to(dtype)


# --------------------------------------------------------------------------------------------------
# Projection: features -> projected shares, embeddings
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Projected:
    shares: Tensor  # (..., N, D): q[i] = W r[i] (or r[i] without a head)
    embedding: Tensor  # (..., D): e = W f + c, f pooled the network's way
    summed: Tensor  # (..., D): g = sum_i q[i]


def _head_of_pooled(pooled: Tensor, head: LinearHead) -> tuple[Tensor, Tensor, Tensor | None]:
    """``(g, e, 1/sigma)`` of pooled vectors ``f``: ``g = W n(f)``, ``e = g + c``; ``n`` is the head's layer norm
    (identity without one, and then ``1/sigma`` is None)."""
    inv_sigma = None
    if head.layer_norm_eps is not None:
        inv_sigma = torch.rsqrt(pooled.var(dim=-1, unbiased=False, keepdim=True) + head.layer_norm_eps)
        pooled = (pooled - pooled.mean(dim=-1, keepdim=True)) * inv_sigma
    summed = pooled @ head.weight.to(pooled).T
    embedding = summed if head.bias is None else summed + head.bias.to(pooled)
    return summed, embedding, inv_sigma


def _project(locs: Tensor, pooling: str, p: float, head: LinearHead | None) -> _Projected:
    shares = pooling_shares(locs, pooling, p)
    pooled = pool(locs, pooling, p)
    if head is None:
        return _Projected(shares, pooled, shares.sum(dim=-2))
    _, embedding, inv_sigma = _head_of_pooled(pooled, head)
    if inv_sigma is not None:
        # n(f) = (f - mu) / sigma with mu = mean_k f = sum_i mean_k r[i]: centre every share on its own
        # channel mean, divide all by the image's sigma -- the shares still sum to n(f).
        shares = (shares - shares.mean(dim=-1, keepdim=True)) * inv_sigma.unsqueeze(-2)
    projected = shares @ head.weight.to(locs).T
    return _Projected(projected, embedding, projected.sum(dim=-2))


def _scale(e_a: Tensor, e_b: Tensor, normalize: bool) -> Tensor:
    if not normalize:
        return torch.ones(torch.broadcast_shapes(e_a.shape[:-1], e_b.shape[:-1]), dtype=e_a.dtype, device=e_a.device)
    n_a, n_b = e_a.norm(dim=-1), e_b.norm(dim=-1)
    if bool((n_a == 0).any()) or bool((n_b == 0).any()):
        side = "A" if bool((n_a == 0).any()) else "B"
        raise DecompositionError(
            f"the embedding of image {side} is all zeros: cosine similarity is undefined (use normalize=False)"
        )
    return 1.0 / (n_a * n_b)


def _global(g_a: Tensor, g_b: Tensor, bias: Tensor | None, scale: Tensor) -> Tensor:
    """``(<c, g_B> + <g_A, c> + <c, c>) * scale``: all the score's terms that involve the bias."""
    if bias is None:
        return torch.zeros_like(scale)
    c = bias.to(g_a)
    return ((g_b * c).sum(-1) + (g_a * c).sum(-1) + (c * c).sum()) * scale


def _prepare(
    feats_a: Tensor,
    feats_b: Tensor,
    grid_a: Sequence[int] | None,
    grid_b: Sequence[int] | None,
    pooling: str,
    p: float,
    head: Any,
    check_values: bool,
) -> tuple[Tensor, tuple[int, int], Tensor, tuple[int, int], str, LinearHead | None]:
    pooling = check_pooling(pooling, p)
    head = LinearHead.coerce(head)
    locs_a, grid_a = as_locations(feats_a, grid_a, "feats_a")
    if feats_b.dim() == 4 or (feats_b.dim() == 3 and grid_b is not None and feats_a.dim() == 2):
        raise DecompositionError("feats_b holds a batch: use decompose_many for one query against many")
    locs_b, grid_b = as_locations(feats_b, grid_b, "feats_b")
    _check_pair(locs_a, locs_b, head, check_values)
    return locs_a, grid_a, locs_b, grid_b, pooling, head


def _check_pair(locs_a: Tensor, locs_b: Tensor, head: LinearHead | None, check_values: bool = True) -> None:
    if locs_a.shape[-1] != locs_b.shape[-1]:
        raise DecompositionError(
            f"feature dimensions differ: A has {locs_a.shape[-1]} channels, B has {locs_b.shape[-1]}"
        )
    if locs_a.device != locs_b.device:
        raise DecompositionError(f"feats_a is on {locs_a.device} but feats_b on {locs_b.device}")
    if head is not None and head.weight.shape[1] != locs_a.shape[-1]:
        raise DecompositionError(
            f"head weight has shape {tuple(head.weight.shape)} but the features have {locs_a.shape[-1]} channels"
        )
    if check_values:
        check_finite(locs_a, "feats_a")
        check_finite(locs_b, "feats_b")


# --------------------------------------------------------------------------------------------------
# One pair
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Explanation:
    """The exact decomposition of one pair's similarity (see the module docstring for the formulas).

    ``map_a.sum() + global_term == map_b.sum() + global_term == pairwise.sum() + global_term == score``.
    Maps are signed contributions at feature-cell resolution, on the device of the features. Immutable: the
    maths of one pair and nothing else (images and figures belong to :class:`simvis_widgets.pair.ExplainedPair`,
    which ``session.explain`` returns).
    """

    score: float
    """The similarity the network computes: cosine of the embeddings (``normalized``) or their dot product."""
    map_a: Tensor
    """``(h_A, w_A)``: ``S_A[i] = sum_j P[i, j]``."""
    map_b: Tensor
    """``(h_B, w_B)``: ``S_B[j] = sum_i P[i, j]``."""
    global_term: float
    """The part of the score that belongs to no location (the head's bias); 0 without a bias."""
    grid_a: tuple[int, int]
    grid_b: tuple[int, int]
    shares_a: Tensor = field(repr=False)
    """``(N_A, D)``: projected pooling shares ``q_A``."""
    shares_b: Tensor = field(repr=False)
    scale: float = field(repr=False, default=1.0)
    """``1 / (|e_A| |e_B|)`` (cosine) or 1 (dot)."""
    embedding_a: Tensor | None = field(repr=False, default=None)
    embedding_b: Tensor | None = field(repr=False, default=None)
    pooling: str = "avg"
    p: float | None = None
    normalized: bool = True
    exact: bool = True
    """False where the decomposition is a linearisation (labelled APPROXIMATE in every view)."""

    SWAPPED_FIELDS: ClassVar[tuple[tuple[str, str], ...]] = (
        ("map_a", "map_b"),
        ("grid_a", "grid_b"),
        ("shares_a", "shares_b"),
        ("embedding_a", "embedding_b"),
    )
    """Pairs of fields that :meth:`swapped` exchanges (subclasses add theirs)."""

    @functools.cached_property
    def pairwise(self) -> Tensor:
        """``(N_A, N_B)``: ``P[i, j] = <q_A[i], q_B[j]> * scale``; cells in row-major order of their grids."""
        return (self.shares_a @ self.shares_b.T) * self.scale

    def mask_sizes(self, side: Side) -> list[tuple[int, int]] | None:
        """The pixel sizes a mask on ``side`` may have besides the cell grid; None: any size (the mask then spans
        the whole image). A bare Explanation knows no images, so any size is accepted."""
        return None

    def _side(self, side: str) -> tuple[Side, Tensor, Tensor, tuple[int, int], tuple[int, int]]:
        """(side, shares of the chosen side, shares of the other, grid of the chosen, grid of the other)."""
        s = str(side).lower()
        if s == "a":
            return "a", self.shares_a, self.shares_b, self.grid_a, self.grid_b
        if s == "b":
            return "b", self.shares_b, self.shares_a, self.grid_b, self.grid_a
        raise DecompositionError(f"side must be 'a' or 'b', got {side!r}")

    def point_map(self, side: str, row: int, col: int) -> Tensor:
        """Contributions of cell ``(row, col)`` of ``side`` paired with every cell of the other image: that
        cell's row (side 'a') or column (side 'b') of ``P``, shaped as the other image's grid.

        ``row`` and ``col`` must be integers (numpy integers too) inside the grid: :class:`CellIndexError`
        otherwise, never a silent truncation of ``2.7`` to ``2``."""
        s, mine, other, grid, other_grid = self._side(side)
        r, c = as_index(row, "cell row"), as_index(col, "cell col")
        h, w = grid
        if not (0 <= r < h and 0 <= c < w):
            raise CellIndexError(f"cell ({r}, {c}) is outside image {s.upper()}'s {h}x{w} grid")
        return ((other @ mine[r * w + c]) * self.scale).reshape(other_grid)

    def region_weights(self, side: str, mask: Any) -> Tensor:
        """Cell weights of ``mask`` on ``side`` (see :func:`cell_weights`), shaped as that side's grid."""
        s, mine, _, grid, _ = self._side(side)
        return cell_weights(
            mask, grid, self.mask_sizes(s), dtype=mine.dtype, device=mine.device, name=f"mask for image {s.upper()}"
        )

    def region_map(self, side: str, mask: Any) -> Tensor:
        """``sum_i w_i P[i, :]`` (side 'a') over the other image's grid; ``w`` from :meth:`region_weights`."""
        _, mine, other, _, other_grid = self._side(side)
        w = self.region_weights(side, mask).reshape(-1)
        return ((other @ (w @ mine)) * self.scale).reshape(other_grid)

    def region_score(self, side: str, mask: Any) -> float:
        """``s_R = sum_i w_i S[i]``: the part of the score that the masked region of ``side`` carries."""
        s = self._side(side)[0]
        own_map = self.map_a if s == "a" else self.map_b
        return float((self.region_weights(side, mask) * own_map).sum())

    def swapped(self) -> Self:
        """The same pair with A and B exchanged (``pairwise`` transposed); the score is symmetric."""
        changes = {}
        for a, b in self.SWAPPED_FIELDS:
            changes[a], changes[b] = getattr(self, b), getattr(self, a)
        return dataclasses.replace(self, **changes)

    def describe(self) -> str:
        """The fields of :meth:`__repr__` without the class name."""
        kind = "exact" if self.exact else "APPROXIMATE"
        return (
            f"score={self.score:.6g}, {'cosine' if self.normalized else 'dot'}, pooling={self.pooling!r}, "
            f"grid_a={self.grid_a}, grid_b={self.grid_b}, sum_a={float(self.map_a.sum()):.6g}, "
            f"sum_b={float(self.map_b.sum()):.6g}, global_term={self.global_term:.6g}, {kind}"
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.describe()})"


def as_index(value: Any, name: str) -> int:
    """``value`` as a Python int if it is an integer (numpy integers too; bool excluded), else
    :class:`CellIndexError` naming ``name``: never a silent truncation of ``2.7`` to ``2``."""
    if isinstance(value, bool):
        raise CellIndexError(f"{name} must be an integer, got {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise CellIndexError(f"{name} must be an integer, got {value!r} ({type(value).__name__})") from None


def decompose(
    feats_a: Tensor,
    feats_b: Tensor,
    pooling: str = "avg",
    p: float = 3.0,
    normalize: bool = True,
    head: Any = None,
    *,
    grid_a: Sequence[int] | None = None,
    grid_b: Sequence[int] | None = None,
    check_values: bool = True,
) -> Explanation:
    """Decompose the similarity of two pooled embeddings into contributions of locations.

    ``feats_a`` / ``feats_b``: ``(C, H, W)`` maps (sizes may differ) or ``(N, C)`` tokens with ``grid_a`` /
    ``grid_b``. ``pooling`` in ``avg | sum | max | gem`` (``p`` for GeM, ``p >= 1``); ``normalize``: cosine
    (True) or dot product; ``head``: an affine head after pooling (:class:`LinearHead`, ``nn.Linear``,
    ``(W, b)``), or None. Computed in float32 (float64 if an input is float64) on the features' device.
    ``check_values=False`` skips the scan for NaN / inf (for callers that already checked the features).
    """
    locs_a, grid_a, locs_b, grid_b, pooling, head = _prepare(
        feats_a, feats_b, grid_a, grid_b, pooling, p, head, check_values
    )
    inputs = _PairInputs(locs_a, grid_a, locs_b, grid_b, pooling, p, normalize, head)
    return _finite_result(_decompose_as, _all_finite, inputs)


@dataclass(frozen=True)
class _PairInputs:
    """Validated inputs of one decomposition (one pair, or one query against a batch)."""

    locs_a: Tensor
    grid_a: tuple[int, int]
    locs_b: Tensor
    grid_b: tuple[int, int]
    pooling: str
    p: float
    normalize: bool
    head: LinearHead | None

    def fields(self) -> tuple[Tensor, tuple[int, int], Tensor, tuple[int, int], str, float, bool, LinearHead | None]:
        """The fields in order, as they are (``dataclasses.astuple`` would copy the tensors and the head)."""
        return (self.locs_a, self.grid_a, self.locs_b, self.grid_b, self.pooling, self.p, self.normalize, self.head)


_Result = TypeVar("_Result")


def _finite_result(
    compute: Callable[[torch.dtype, _PairInputs], _Result], finite: Callable[[_Result], bool], x: _PairInputs
) -> _Result:
    """``compute`` in the inputs' precision, again in float64 if anything overflowed (float32 stops at ~3.4e38:
    products of features around 1e19, a huge head), and a :class:`DecompositionError` naming the cause if even
    float64 overflows. Never a NaN or infinite result."""
    dtype = _compute_dtype(x.locs_a, x.locs_b)
    result = compute(dtype, x)
    if not finite(result) and dtype != torch.float64:
        result = compute(torch.float64, x)
    if not finite(result):
        big = max(float(x.locs_a.abs().max()), float(x.locs_b.abs().max()))
        gem = f" p={x.p:g}" if x.pooling == "gem" else ""
        raise DecompositionError(
            f"the score or the maps are not finite even in float64 (largest feature magnitude {big:.3g}, pooling "
            f"{x.pooling}{gem}, head {'yes' if x.head is not None else 'no'}): the features or the head overflow; "
            "rescale them"
        )
    return result


def _all_finite(ex: Explanation) -> bool:
    return (
        math.isfinite(ex.score)
        and math.isfinite(ex.global_term)
        and math.isfinite(ex.scale)
        and bool(torch.isfinite(ex.map_a).all())
        and bool(torch.isfinite(ex.map_b).all())
    )


def _decompose_as(dtype: torch.dtype, x: _PairInputs) -> Explanation:
    locs_a, grid_a, locs_b, grid_b, pooling, p, normalize, head = x.fields()
    pa = _project(locs_a.to(dtype), pooling, p, head)
    pb = _project(locs_b.to(dtype), pooling, p, head)
    scale = _scale(pa.embedding, pb.embedding, normalize)
    score = (pa.embedding * pb.embedding).sum() * scale
    bias = head.bias if head is not None else None
    return Explanation(
        score=float(score),
        map_a=((pa.shares @ pb.summed) * scale).reshape(grid_a),
        map_b=((pb.shares @ pa.summed) * scale).reshape(grid_b),
        global_term=float(_global(pa.summed, pb.summed, bias, scale)),
        grid_a=grid_a,
        grid_b=grid_b,
        shares_a=pa.shares,
        shares_b=pb.shares,
        scale=float(scale),
        embedding_a=pa.embedding,
        embedding_b=pb.embedding,
        pooling=pooling,
        p=float(p) if pooling == "gem" else None,
        normalized=normalize,
    )


def from_contributions(
    shares_a: Tensor,
    shares_b: Tensor,
    embedding_a: Tensor,
    embedding_b: Tensor,
    grid_a: tuple[int, int],
    grid_b: tuple[int, int],
    normalize: bool = True,
    exact: bool = False,
) -> Explanation:
    """An Explanation from per-location contribution vectors ``q`` that need not sum to the embeddings (e.g. a
    linearisation): ``P = q_A q_B^T * scale``, the score from the embeddings themselves, and everything that
    no location pair carries (``score - sum P``) as the global term, so the sums still equal the score."""
    if shares_a.shape[0] != grid_a[0] * grid_a[1] or shares_b.shape[0] != grid_b[0] * grid_b[1]:
        raise DecompositionError(
            f"{shares_a.shape[0]} / {shares_b.shape[0]} contributions for grids {grid_a} / {grid_b}"
        )
    scale = _scale(embedding_a, embedding_b, normalize)
    score = float((embedding_a * embedding_b).sum() * scale)
    map_a = ((shares_a @ shares_b.sum(0)) * scale).reshape(grid_a)
    return Explanation(
        score=score,
        map_a=map_a,
        map_b=((shares_b @ shares_a.sum(0)) * scale).reshape(grid_b),
        global_term=score - float(map_a.sum()),
        grid_a=(int(grid_a[0]), int(grid_a[1])),
        grid_b=(int(grid_b[0]), int(grid_b[1])),
        shares_a=shares_a,
        shares_b=shares_b,
        scale=float(scale),
        embedding_a=embedding_a,
        embedding_b=embedding_b,
        pooling="linearised",
        normalized=normalize,
        exact=exact,
    )


# --------------------------------------------------------------------------------------------------
# One query against many
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class ManyExplanation:
    """One query A against a batch of B images of one grid size: scores and both maps per pair, without
    forming any pairwise matrix. Row ``k`` equals ``decompose(feats_a, feats_b[k])``'s values."""

    scores: Tensor
    """``(K,)``"""
    maps_a: Tensor
    """``(K, h_A, w_A)``: the query's map against each B."""
    maps_b: Tensor
    """``(K, h_B, w_B)``"""
    global_terms: Tensor
    """``(K,)``"""
    grid_a: tuple[int, int]
    grid_b: tuple[int, int]


def decompose_many(
    feats_a: Tensor,
    feats_b: Tensor,
    pooling: str = "avg",
    p: float = 3.0,
    normalize: bool = True,
    head: Any = None,
    *,
    grid_a: Sequence[int] | None = None,
    grid_b: Sequence[int] | None = None,
) -> ManyExplanation:
    """:func:`decompose` for one query ``feats_a`` (``(C, H, W)`` or ``(N, C)`` + grid) against a batch
    ``feats_b`` (``(K, C, H, W)`` or ``(K, N, C)`` + grid). Two batched matrix-vector products; no loops."""
    pooling = check_pooling(pooling, p)
    head = LinearHead.coerce(head)
    locs_a, grid_a = as_locations(feats_a, grid_a, "feats_a")
    if feats_b.dim() == 4:
        k, c, h, w = feats_b.shape
        locs_b = feats_b.reshape(k, c, h * w).transpose(1, 2)
        grid_b = (h, w)
    elif feats_b.dim() == 3 and grid_b is not None:
        h, w = (int(g) for g in grid_b)
        if h * w != feats_b.shape[1]:
            raise DecompositionError(f"feats_b has {feats_b.shape[1]} tokens but grid {h}x{w} holds {h * w}")
        locs_b, grid_b = feats_b, (h, w)
    else:
        raise DecompositionError(
            f"feats_b must be a batch (K, C, H, W) or (K, N, C) with grid_b; got shape {tuple(feats_b.shape)}"
        )
    if locs_b.shape[0] == 0:
        raise DecompositionError("feats_b is an empty batch")
    _check_pair(locs_a, locs_b, head)
    inputs = _PairInputs(locs_a, grid_a, locs_b, grid_b, pooling, p, normalize, head)
    return _finite_result(_decompose_many_as, _all_finite_many, inputs)


def _all_finite_many(many: ManyExplanation) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in (many.scores, many.maps_a, many.maps_b, many.global_terms))


def _decompose_many_as(dtype: torch.dtype, x: _PairInputs) -> ManyExplanation:
    locs_a, grid_a, locs_b, grid_b, pooling, p, normalize, head = x.fields()
    pa = _project(locs_a.to(dtype), pooling, p, head)
    pb = _project(locs_b.to(dtype), pooling, p, head)
    scale = _scale(pa.embedding.unsqueeze(0), pb.embedding, normalize)  # (K,)
    scores = (pb.embedding @ pa.embedding) * scale
    maps_a = (pb.summed @ pa.shares.T) * scale[:, None]  # (K, N_A)
    maps_b = (pb.shares @ pa.summed) * scale[:, None]  # (K, N_B)
    bias = head.bias if head is not None else None
    return ManyExplanation(
        scores=scores,
        maps_a=maps_a.reshape(-1, *grid_a),
        maps_b=maps_b.reshape(-1, *grid_b),
        global_terms=_global(pa.summed.unsqueeze(0), pb.summed, bias, scale),
        grid_a=grid_a,
        grid_b=grid_b,
    )


def pooled_embeddings(feats: Tensor, pooling: str = "avg", p: float = 3.0, head: Any = None) -> tuple[Tensor, Tensor]:
    """For a batch ``(K, C, H, W)`` (or one ``(C, H, W)``) of local features: ``(g, e)`` with ``e = W f + c``
    the embeddings (pooled the network's way, not normalised) and ``g = e - c`` (``e`` without a bias).

    No pooling shares are formed (an embedding needs only the pooled vector), so this costs one pass over the
    features: it is what sessions and galleries embed with."""
    pooling = check_pooling(pooling, p)
    head = LinearHead.coerce(head)
    if feats.dim() not in (3, 4):
        raise DecompositionError(f"feats must be (C, H, W) or (K, C, H, W); got shape {tuple(feats.shape)}")
    locs = feats.flatten(-2).transpose(-1, -2)
    pooled = pool(locs.to(_compute_dtype(locs)), pooling, p)
    if head is None:
        return pooled, pooled
    summed, embedding, _ = _head_of_pooled(pooled, head)
    return summed, embedding


def region_query(
    feats: Tensor,
    weights: Tensor | None,
    pooling: str = "avg",
    p: float = 3.0,
    head: Any = None,
    *,
    grid: Sequence[int] | None = None,
) -> tuple[Tensor, Tensor]:
    """The region-retrieval query vector ``sum_i w_i q[i]`` and the image's embedding ``e``.

    The exact region score against any image B is then ``s_R(B) = <query, g_B> * scale``, where
    ``g_B = e_B - c`` is B's embedding less the head's bias (``e_B`` itself without a bias) and
    ``scale = 1 / (|e| |e_B|)`` (cosine) or 1 -- one matrix multiply against a gallery. With ``weights=None``
    the whole image is the region (``query = g = e - c``).
    """
    pooling = check_pooling(pooling, p)
    head = LinearHead.coerce(head)
    locs, grid = as_locations(feats, grid, "feats")
    check_finite(locs, "feats")
    pr = _project(locs.to(_compute_dtype(locs)), pooling, p, head)
    if weights is None:
        return pr.summed, pr.embedding
    w = torch.as_tensor(weights, dtype=pr.shares.dtype, device=pr.shares.device)
    if tuple(w.shape) not in (tuple(grid), (grid[0] * grid[1],)):
        raise DecompositionError(f"weights must have the grid's shape {tuple(grid)}; got {tuple(w.shape)}")
    return w.reshape(-1) @ pr.shares, pr.embedding
