"""Dataset bias from the explanations of a gallery: where within-class similarity lives (:func:`class_maps`), and
shortcuts -- one small region that makes many images each other's neighbours, such as a watermark, a logo, a
border or a caption (:func:`audit`).

Both work on a :class:`~simvis_widgets.gallery.Gallery` through its public API, with the exact pairwise matrix
``P`` of each pair (docs/method.md): ``P[i, j]`` is what cell ``i`` of image A matched with cell ``j`` of image
B adds to their similarity.

**Class maps.** For a label with members ``m_1 .. m_n`` (``n >= 2``), the map on each member against each other
member, averaged over the ``n (n - 1)`` ordered pairs::

    C = 1 / (n (n - 1)) * sum_{a != b} S_A(m_a, m_b)

at cell resolution when the members share one grid (it then sums to the mean within-class score less the mean
global term), and in image coordinates: each pair's map upsampled bilinearly to ``size`` before averaging.

**Shortcut audit.** A stamp at the same place in two images is matched *at the same place and nowhere else*:
hovering the stamp's cell of A lights up the stamp's cell of B, and no other cell of B matches it as well. Content
is matched at many places (an aligned sleeve also matches the other image's body; a photo's texture recurs). For
a pair of neighbours (A, B) and a cell ``c`` of A, with ``m(c)`` the cell of B at the same relative position,
``far(c)`` the cells at Chebyshev distance ``>= 2`` (cells) from it, and ``mean|P|`` the mean absolute entry::

    peak(c) = P[c, m(c)] / max( max_{j in far(m(c))} P[c, j],  max_{i in far(c)} P[i, m(c)] )
    lift(c) = P[c, m(c)] / mean|P|

The pair is *flagged* at ``c`` when ``peak(c) >= ratio`` and ``lift(c) >= min_lift``: there, the same-place
match is ``ratio`` times stronger than anything the cell matches elsewhere, and stronger than an average entry.
Flags are collected over every pair of ``k`` nearest neighbours on an audit grid (the gallery's most common
feature grid, cells placed by relative position); a cell whose flagged pairs involve at least ``min_images``
distinct images is a finding: its region is that cell with the adjacent cells flagged for at least half as many
images, its images those flagged there. Findings are taken greedily, the largest first, each removing its region
and the cells around it.

**Measured** (EfficientNet-Lite0 with ImageNet weights at 224 px: a 7 x 7 grid, or 7 x 10 for photos; average
pooling; a red / white checkerboard planted 4 px from the bottom-right corner of a quarter of the images). With
the defaults ``k=10, ratio=2, min_lift=1``:

====================================================  ==========  ======  =========================
gallery                                               stamp       found   precision / recall
====================================================  ==========  ======  =========================
80 Fashion-MNIST items (8 per class, 112 px), clean   --          none    largest flagged cell: 5
same, stamped                                         20 px       13      1.00 / 0.65 (too small)
same, stamped                                         24 px       20      1.00 / 1.00
same, stamped                                         30 px       20      1.00 / 1.00
same, stamped                                         36 px       17      1.00 / 0.85
same, stamped                                         40 px       11      1.00 / 0.55 (see below)
66 demo views (11 photos x 6, short side 160), clean  --          none    largest flagged cell: 4
same, stamped                                         50 px       12      1.00 / 0.80
====================================================  ==========  ======  =========================

Every finding sat within one cell of the stamp. With ``k=5`` recall drops (30 px: 0.95, 24 px: 0.90, 36 px:
0.85, 40 px: 0.40); ``ratio=1.5`` flags aligned content (29-32 clean Fashion-MNIST images along the middle
column), ``ratio=2.5`` loses the larger stamps (k=5, 36 px: recall 0.30; 40 px: nothing found). A stamp two and a half cells wide (40 px of 112)
matches its own parts across cells, which lowers the peak; a 30 px stamp on the demo photos did not make the
stamped views each other's neighbours at all (7 of 150 neighbour pairs), so there was nothing to find. At a 5 x 5
grid (160 px input) the centre cell of centred objects is itself "peaked" (16 clean images flagged), so grids
under 6 x 6 are refused. Max pooling is refused (its ``P`` is non-zero only where channels peak, so aligned
content peaks at the same place: 45-67 of 80 clean images flagged), and so is GeM (not measured).
"""

from __future__ import annotations

import contextlib
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from ..decompose import decompose, decompose_many
from ..errors import GalleryError

if TYPE_CHECKING:  # pragma: no cover
    from . import Gallery

DEFAULT_RATIO = 2.0
"""Default ``ratio`` of :func:`audit`: a same-place match at least twice as strong as the cell's best match
elsewhere (see the README's "Dataset bias" section for the measurements behind it)."""
DEFAULT_MIN_LIFT = 1.0
"""Default ``min_lift`` of :func:`audit`: the same-place entry at least the mean absolute entry of ``P`` (leaves
out near-empty cells such as a black background, whose ratios are noise)."""
FAR = 2
"""Cells at Chebyshev distance ``>= FAR`` from a cell are "elsewhere" (a stamp may straddle two cells)."""
MIN_GRID = 6
"""The coarsest audit grid accepted (5 x 5 gave a false finding on clean Fashion-MNIST; 7 x 7 none)."""


# --------------------------------------------------------------------------------------------------
# Class maps
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class ClassMaps:
    """Where within-class similarity lives, per label (see the module docstring)."""

    labels: tuple[Any, ...]
    """The labels with at least two members: as asked, else sorted (in order of first appearance in the gallery
    when they do not compare)."""
    maps: Tensor
    """``(L, H, W)`` float32: the mean map of each label in image coordinates (``size``)."""
    cell_maps: tuple[Tensor | None, ...]
    """Per label, the mean map at cell resolution (None when the members' grids differ)."""
    members: tuple[tuple[int, ...], ...]
    """Per label, the gallery positions of its members."""
    mean_scores: tuple[float, ...]
    """Per label, the mean within-class similarity over the ordered pairs."""
    size: tuple[int, int]
    """``(H, W)`` of :attr:`maps`."""
    left_out: tuple[Any, ...]
    """Labels with a single member (no within-class pair), and None for unlabelled images, if any."""

    def __len__(self) -> int:
        return len(self.labels)

    def map(self, label: Any) -> Tensor:
        """The image-coordinate map of ``label``."""
        if label not in self.labels:
            raise GalleryError(f"no class map for label {label!r}; labels with maps: {list(self.labels)}")
        return self.maps[self.labels.index(label)]


def _upsample(cell_maps: Tensor, size: tuple[int, int]) -> Tensor:
    """``(K, h, w)`` cell maps bilinearly upsampled to ``(K, H, W)`` (the same rule as the figures use)."""
    return torch.nn.functional.interpolate(
        cell_maps[:, None].float().cpu(), size=size, mode="bilinear", align_corners=False
    )[:, 0]


def _check_size(size: Any) -> tuple[int, int]:
    ok = isinstance(size, (tuple, list)) and len(size) == 2
    if ok:
        ok = all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and 0 < v <= 4096 for v in size)
    if not ok:
        raise GalleryError(f"size must be (H, W), two integers in 1..4096, got {size!r}")
    return int(size[0]), int(size[1])


def _modal_grid(gallery: Gallery, indices: Sequence[int]) -> tuple[int, int]:
    return Counter(gallery.grid(i) for i in indices).most_common(1)[0][0]


def class_maps(gallery: Gallery, size: tuple[int, int] | None = None, labels: Sequence[Any] | None = None) -> ClassMaps:
    """The mean map of each label over its within-class pairs (see the module docstring), in image coordinates
    of ``size`` ``(H, W)`` (default: the network's input size for the gallery's most common grid). ``labels``:
    the labels to map (default: every label with two or more members). Meaningful for aligned data (the same
    kind of object at the same place in every image, as in Fashion-MNIST); for photos, positions differ from
    image to image and the mean blurs."""
    n = len(gallery)
    all_labels = gallery.labels
    by_label: dict[Any, list[int]] = {}
    for i, lab in enumerate(all_labels):
        by_label.setdefault(lab, []).append(i)
    unlabelled = None in by_label
    if labels is None:
        wanted = [lab for lab in by_label if lab is not None]
        with contextlib.suppress(TypeError):  # labels that do not compare keep their order of first appearance
            wanted = sorted(wanted)
        if not wanted:
            raise GalleryError("the gallery has no labels: build it with labels=... to get class maps")
    else:
        wanted = list(labels)
        missing = [lab for lab in wanted if lab not in by_label or lab is None]
        if missing:
            known = [lab for lab in by_label if lab is not None]
            raise GalleryError(f"labels {missing} are not in the gallery; its labels: {known}")
    left_out = tuple(lab for lab in wanted if len(by_label[lab]) < 2) + ((None,) if unlabelled else ())
    mapped = [lab for lab in wanted if len(by_label[lab]) >= 2]
    if not mapped:
        raise GalleryError(f"no label has two members (a within-class pair) among {n} images")
    if size is None:
        h, w = _modal_grid(gallery, range(n))
        size = (h * gallery.session.stride, w * gallery.session.stride)
    size = _check_size(size)
    s = gallery.session
    maps, cells, members, scores = [], [], [], []
    for lab in mapped:
        idx = by_label[lab]
        feats = gallery.hit_features(idx)
        total = torch.zeros(size, dtype=torch.float64)
        grids = {tuple(f.shape[1:]) for f in feats}
        cell_total = torch.zeros(next(iter(grids)), dtype=torch.float64) if len(grids) == 1 else None
        score_sum = 0.0
        for a, fa in enumerate(feats):
            others = [b for b in range(len(idx)) if b != a]
            for grid in {tuple(feats[b].shape[1:]) for b in others}:
                group = torch.stack([feats[b] for b in others if tuple(feats[b].shape[1:]) == grid])
                many = decompose_many(fa, group, s.pooling, s.p, s.normalize, s.head)
                total += _upsample(many.maps_a, size).double().sum(0)
                score_sum += float(many.scores.sum())
                if cell_total is not None:
                    cell_total += many.maps_a.double().sum(0).cpu()
        pairs = len(idx) * (len(idx) - 1)
        maps.append((total / pairs).float())
        cells.append((cell_total / pairs).float() if cell_total is not None else None)
        members.append(tuple(idx))
        scores.append(score_sum / pairs)
    return ClassMaps(
        labels=tuple(mapped),
        maps=torch.stack(maps),
        cell_maps=tuple(cells),
        members=tuple(members),
        mean_scores=tuple(scores),
        size=size,
        left_out=left_out,
    )


# --------------------------------------------------------------------------------------------------
# Shortcut audit
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AuditFinding:
    """A small region whose same-place matches link many images (see the module docstring)."""

    images: tuple[int, ...]
    """Gallery positions of the images flagged in the region, ascending."""
    box: tuple[float, float, float, float]
    """``(x0, y0, x1, y1)`` of the region in relative image coordinates (0..1, origin top left)."""
    cells: tuple[tuple[int, int], ...]
    """The region's ``(row, col)`` cells on :attr:`grid`."""
    grid: tuple[int, int]
    """The audit grid (the gallery's most common feature grid)."""
    pairs: int
    """Neighbour pairs flagged in the region."""
    share: float
    """``len(images) / len(gallery)``."""
    peak: float
    """Median ``peak`` of the flagged pairs' cells in the region (how much stronger the same-place match is than
    the best match elsewhere)."""

    def pixel_box(self, image_size: tuple[int, int]) -> tuple[float, float, float, float]:
        """:attr:`box` in pixels of an image of ``image_size`` ``(H, W)``."""
        h, w = image_size
        x0, y0, x1, y1 = self.box
        return (x0 * w, y0 * h, x1 * w, y1 * h)


@dataclass(frozen=True)
class PairPeaks:
    """Per cell of image A of one pair: ``peak`` and ``lift`` (module docstring), and the cell of B at the same
    relative position."""

    peak: Tensor
    """``(h_A, w_A)``"""
    lift: Tensor
    """``(h_A, w_A)``"""
    same: Tensor
    """``(h_A * w_A,)`` int64: flat index of ``m(c)`` in B's grid."""


def _centres(grid: tuple[int, int]) -> tuple[Tensor, Tensor]:
    h, w = grid
    rows = (torch.arange(h, dtype=torch.float64) + 0.5) / h
    cols = (torch.arange(w, dtype=torch.float64) + 0.5) / w
    yy, xx = torch.meshgrid(rows, cols, indexing="ij")
    return yy.flatten(), xx.flatten()


def _far(grid: tuple[int, int]) -> Tensor:
    """``(N, N)`` bool: cells at Chebyshev distance ``>= FAR`` on ``grid``."""
    h, w = grid
    r = torch.arange(h).repeat_interleave(w)
    c = torch.arange(w).repeat(h)
    return torch.maximum((r[:, None] - r[None]).abs(), (c[:, None] - c[None]).abs()) >= FAR


def pair_peaks(pairwise: Tensor, grid_a: tuple[int, int], grid_b: tuple[int, int]) -> PairPeaks:
    """``peak`` and ``lift`` of every cell of A (module docstring) from the pair's ``(N_A, N_B)`` matrix ``P``.
    Cells whose ``far`` set is empty on either side (grids under 3 cells in a direction) get peak 0."""
    p = pairwise.detach().double().cpu()
    ya, xa = _centres(grid_a)
    same = (torch.floor(ya * grid_b[0]).long() * grid_b[1] + torch.floor(xa * grid_b[1]).long()).clamp(
        max=grid_b[0] * grid_b[1] - 1
    )
    far_b = _far(grid_b)[same]  # (N_A, N_B): B's cells far from m(c)
    far_a = _far(grid_a)  # (N_A, N_A)
    rows = torch.arange(p.shape[0])
    diag = p[rows, same]
    elsewhere_b = p.masked_fill(~far_b, -math.inf).amax(1)  # c's best match far from m(c) in B
    elsewhere_a = p.T[same].masked_fill(~far_a, -math.inf).amax(1)  # m(c)'s best match far from c in A
    elsewhere = torch.maximum(elsewhere_b, elsewhere_a)
    peak = torch.where(
        (diag > 0) & torch.isfinite(elsewhere),
        diag / elsewhere.clamp(min=torch.finfo(torch.float64).tiny),
        torch.zeros_like(diag),
    )
    peak = torch.where((diag > 0) & torch.isfinite(elsewhere) & (elsewhere <= 0), math.inf, peak)
    scale = p.abs().mean()
    lift = diag / scale if scale > 0 else torch.zeros_like(diag)
    return PairPeaks(peak.reshape(grid_a).float(), lift.reshape(grid_a).float(), same)


def default_min_images(n: int) -> int:
    """Default ``min_images`` of :func:`audit` for a gallery of ``n`` images: ``max(4, ceil(0.08 n))`` (7 for 80
    images, above the 5 that the clean Fashion-MNIST gallery's largest flagged cell reached)."""
    return max(4, math.ceil(0.08 * n))


def neighbour_pairs(gallery: Gallery, k: int) -> list[tuple[int, int]]:
    """Unordered pairs ``(i, j)``, ``i < j``, with ``j`` among ``i``'s ``k`` most similar images or the reverse, by
    the network's similarity of the stored embeddings (cosine or dot, as the session scores; ties by position).
    Images with the same pixels as ``i`` are not its neighbours."""
    emb = gallery.embeddings.double()
    if gallery.session.normalize:
        emb = emb / emb.norm(dim=1, keepdim=True).clamp(min=torch.finfo(torch.float64).tiny)
    scores = emb @ emb.T
    ids: dict[str, int] = {}
    pixels = torch.tensor([ids.setdefault(e.pixel_hash, len(ids)) for e in gallery.entries])
    same = pixels[:, None] == pixels[None, :]
    scores = scores.masked_fill(same, -math.inf)
    k = min(k, len(gallery) - 1)
    pairs: set[tuple[int, int]] = set()
    for i, row in enumerate(scores):
        order = np.argsort(-row.numpy(), kind="stable")[:k]
        pairs.update((min(i, int(j)), max(i, int(j))) for j in order if math.isfinite(float(row[j])))
    return sorted(pairs)


def _check_positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise GalleryError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _check_positive_number(value: Any, name: str, minimum: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not math.isfinite(value):
        raise GalleryError(f"{name} must be a finite number, got {value!r}")
    if value < minimum:
        raise GalleryError(f"{name} must be >= {minimum:g}, got {value!r}")
    return float(value)


def audit(
    gallery: Gallery,
    k: int = 10,
    *,
    ratio: float = DEFAULT_RATIO,
    min_lift: float = DEFAULT_MIN_LIFT,
    min_images: int | None = None,
    max_findings: int = 3,
) -> tuple[AuditFinding, ...]:
    """Small regions whose same-place matches make many images each other's neighbours (module docstring):
    each pair of ``k`` nearest neighbours is decomposed exactly, its cells flagged where ``peak >= ratio`` and
    ``lift >= min_lift``, and a cell of the audit grid flagged for at least ``min_images`` distinct images
    (default :func:`default_min_images`) is a finding. At most ``max_findings``, the largest first; an empty tuple
    when nothing recurs.

    Reads every image's local features into memory (``n * C * h * w * 4`` bytes: 20 MB for 80 images of
    EfficientNet-Lite0 at 224 px) and decomposes up to ``k`` pairs per image: for galleries up to a few thousand
    images. The audit grid must be at least ``MIN_GRID`` x ``MIN_GRID`` cells, and the pooling average or sum."""
    n = len(gallery)
    k = _check_positive_int(k, "k")
    ratio = _check_positive_number(ratio, "ratio", 1.0)
    min_lift = _check_positive_number(min_lift, "min_lift")
    max_findings = _check_positive_int(max_findings, "max_findings")
    min_images = default_min_images(n) if min_images is None else _check_positive_int(min_images, "min_images")
    if min_images < 2:
        raise GalleryError(f"min_images must be >= 2 (a region shared by one image recurs nowhere), got {min_images}")
    if n < 3:
        raise GalleryError(f"an audit needs at least 3 images, the gallery has {n}")
    if gallery.session.pooling not in ("avg", "sum"):
        raise GalleryError(
            f"the audit is measured for average (and sum) pooling only, not {gallery.session.pooling!r}: with max "
            "pooling P is non-zero only where channels peak, so aligned content peaks at the same place as a stamp "
            "would (measured: findings of 45-67 of 80 clean Fashion-MNIST images); GeM has not been measured. A "
            "gallery of session.variant(pooling='avg') audits the same features pooled by average (a different "
            "similarity)"
        )
    k = min(k, n - 1)
    grid = _modal_grid(gallery, range(n))
    if min(grid) < MIN_GRID:
        raise GalleryError(
            f"the gallery's feature grid {grid} is too coarse for an audit (needs at least {MIN_GRID} x {MIN_GRID} "
            "cells: at 5 x 5 the centre cell of centred objects already looks like a recurring region, a false "
            "finding of 16 of 80 clean Fashion-MNIST images): use a larger input size"
        )
    flagged: dict[tuple[int, int], set[int]] = {}
    pairs_at: Counter[tuple[int, int]] = Counter()
    peaks_at: dict[tuple[int, int], list[float]] = {}
    s = gallery.session
    pairs = neighbour_pairs(gallery, k)
    # P[i, j] = <q_A[i], q_B[j]> * scale (Explanation.pairwise) and peak / lift do not change when P is scaled by
    # a positive constant: each image's projected shares q are computed once, each pair's P up to its scale.
    shares, grids = {}, {}
    for i, f in zip(range(n), gallery.hit_features(list(range(n)))):
        own = decompose(f, f, s.pooling, s.p, s.normalize, s.head, check_values=False)
        shares[i], grids[i] = own.shares_a, own.grid_a
    for i, j in pairs:
        pp = pair_peaks(shares[i] @ shares[j].T, grids[i], grids[j])
        hits = (pp.peak >= ratio) & (pp.lift >= min_lift)
        ya, xa = _centres(grids[i])
        cells = set()
        for flat in torch.nonzero(hits.flatten()).flatten().tolist():
            cell = (min(int(ya[flat] * grid[0]), grid[0] - 1), min(int(xa[flat] * grid[1]), grid[1] - 1))
            cells.add(cell)
            peaks_at.setdefault(cell, []).append(float(pp.peak.flatten()[flat]))
        for cell in cells:
            flagged.setdefault(cell, set()).update((i, j))
            pairs_at[cell] += 1
    return _findings(flagged, pairs_at, peaks_at, grid, n, min_images, max_findings)


def _findings(
    flagged: dict[tuple[int, int], set[int]],
    pairs_at: Counter[tuple[int, int]],
    peaks_at: dict[tuple[int, int], list[float]],
    grid: tuple[int, int],
    n: int,
    min_images: int,
    max_findings: int,
) -> tuple[AuditFinding, ...]:
    """Greedy: the cell flagged for the most images, grown by adjacent cells flagged for at least half as many."""
    open_cells = dict(flagged)
    found: list[AuditFinding] = []
    while open_cells and len(found) < max_findings:
        top = max(open_cells, key=lambda c: (len(open_cells[c]), pairs_at[c], -c[0], -c[1]))
        if len(open_cells[top]) < min_images:
            break
        region = [
            c
            for c in open_cells
            if max(abs(c[0] - top[0]), abs(c[1] - top[1])) <= 1 and 2 * len(open_cells[c]) >= len(open_cells[top])
        ]
        region.sort()
        images = sorted(set().union(*(open_cells[c] for c in region)))
        r0, r1 = min(c[0] for c in region), max(c[0] for c in region) + 1
        c0, c1 = min(c[1] for c in region), max(c[1] for c in region) + 1
        found.append(
            AuditFinding(
                images=tuple(images),
                box=(c0 / grid[1], r0 / grid[0], c1 / grid[1], r1 / grid[0]),
                cells=tuple(region),
                grid=grid,
                pairs=sum(pairs_at[c] for c in region),
                share=len(images) / n,
                peak=float(np.median([v for c in region for v in peaks_at[c]])),
            )
        )
        for c in list(open_cells):
            if any(max(abs(c[0] - r[0]), abs(c[1] - r[1])) <= 1 for r in region):
                del open_cells[c]
    return tuple(found)


__all__ = [
    "DEFAULT_MIN_LIFT",
    "DEFAULT_RATIO",
    "AuditFinding",
    "ClassMaps",
    "PairPeaks",
    "audit",
    "class_maps",
    "audit_gallery",
    "default_min_images",
    "gallery_class_maps",
    "neighbour_pairs",
    "pair_peaks",
]

audit_gallery = audit
"""Alias of :func:`audit` (what :meth:`Gallery.audit` calls; the package's ``audit`` name is this module)."""
gallery_class_maps = class_maps
"""Alias of :func:`class_maps` (what :meth:`Gallery.class_maps` calls)."""
