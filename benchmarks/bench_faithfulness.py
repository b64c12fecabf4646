"""Benchmark: deletion- and insertion-curve faithfulness of the exact contribution map, next to Grad-CAM and random
maps.

A map over image A's feature cells is *faithful* to the similarity ``s(A, B)`` when removing the cells it
ranks highest makes the score fall fastest (deletion), and restoring them first into a fully removed A makes it
rise fastest (insertion). For each pair (A, B) this script ranks the feature cells of A by a map and, for
``k = 0, 5, ..., 100`` % of the cells (``0, 10, ..., 100`` with ``--quick``), scores against the unmodified B:

* deletion   A with its top ``k`` % cells removed: ``s(0 %) = s(A, B)``, falling to the fully removed A;
* insertion  the fully removed A with its top ``k`` % cells restored: rising back to ``s(100 %) = s(A, B)``.

Both are one operation (take the first ``n`` cells of an order from one image into the other) in two directions.
Removal is done in pixel space on the network input (``session.prepare(A)``: its sides are multiples of the
stride, so each feature cell is exactly one ``stride x stride`` block of it), in two ways:

* ``mean``  the block's pixels are replaced by the mean colour of image A;
* ``blur``  the block's pixels are replaced by a Gaussian-blurred copy of image A (``--blur-sigma``, in px).

The score of a modified image is ``<embed(A_mod), embed(B)>`` (L2-normalised embeddings, so the session's
cosine; identical to ``session.explain(A_mod, B).score``, checked on one image per run); modified images go
through ``session.embed_many`` (one forward per image, no feature cache), so nothing stale is ever reused.

Maps compared (all at feature-cell resolution, highest first unless said):

* ``ours``          ``session.explain(A, B).map_a``: the exact contribution of every cell to the score;
* ``gradcam_dot``   ``pytorch_grad_cam.GradCAM`` on a module mapping the image tensor to the (un-normalised)
  embedding ``head(pool(features))`` (head applied if any), target layer = the module whose output is the
  feature map (``bn2`` for the default model), target = dot product of the output embedding with B's embedding.
  Its returned map (ReLU, min-max, bilinearly upsampled to the input) is averaged over each cell;
* ``gradcam_cos``   the same with a cosine-similarity target (extra: the other common choice; cosine is
  0-homogeneous, so this Grad-CAM shows deviations rather than contributions, see the method notes);
* ``random``        a random order, averaged over ``--seeds`` seeds per pair;
* ``ours_reversed`` ours, lowest first: a sanity bound (it should be the slowest to fall, and to rise).

Ties (Grad-CAM zeros after its ReLU) are broken in a random order (seeded). Per direction, method and removal
type the table gives, averaged over pairs with a 95 % confidence interval (t distribution): the area under the
normalised curve ``s(k) / s(A, B)`` over ``k`` in [0, 1] (trapezoid; deletion: LOWER = the map found the cells
that carry the similarity; insertion: HIGHER = better), the score change after the first 10 % and 20 % of cells
(deletion: the drop ``s(0) - s(k)``, insertion: the rise ``s(k) - s(0)``; HIGHER = better for both), and the
paired AUC difference against ``ours`` with the number of pairs on which that method beats ours. A compact table
(AUCs only), a split into same and cross pairs and the mean curves follow.

Data (``--data``):

* ``demo``     ``simvis_widgets.datasets.demo_views(views_per_photo=3)``: view 0 (the photo) vs view 1 and view 0
  vs view 2 of each photo (same pairs), plus view 0 of one photo vs view 1 of the next (cross pairs);
* ``fashion``  Fashion-MNIST's test split, the classes held out by the training study (5-9: sandal, shirt,
  sneaker, bag, ankle boot; ``--photos`` of them): ``2 * --class-pairs`` images per class drawn with seed 0, images
  0 vs 1, 2 vs 3, ... of each class (same-class pairs), image 0 of one class vs image 1 of the next (cross-class).

Model: the embedded ``ModelSession.from_pretrained("efficientnet_lite0", size=224)`` on the CPU, or with
``--checkpoint PATH --stage N`` a network of the training study (:class:`simvis_widgets.training_study.Trunk`:
EfficientNet-Lite0 up to ``blocks[N]``) with the state dict of PATH (``torch.load(weights_only=True)``);
``--size`` applies to both (the study trains at 112). ``--pooling max|gem`` (``--gem-p``) changes the pooling,
``--head linear`` adds a seeded random affine head ``nn.Linear(C, 128)`` with bias (``--head-seed``), so the
embedding is ``normalize(head(pool(features)))`` and Grad-CAM targets the head's output. Our map stays exact
with a head (the bias is part of the global term, checked: ``map_a.sum() + global_term == score``).

Run from the repository root::

    python -m benchmarks.bench_faithfulness            # 10 photos, 26 pairs: ~4-8 minutes on 2 CPU cores
    python -m benchmarks.bench_faithfulness --quick    # 5 photos, 12 pairs, coarser grid: a few minutes
    python -m benchmarks.bench_faithfulness --quick --photos 1   # 2 pairs: the quickest check that it runs
    python -m benchmarks.bench_faithfulness --json results.json
    python -m benchmarks.bench_faithfulness --quick --data fashion --size 112 --stage 4 \\
        --checkpoint study/checkpoints/finetuned_max/epoch3.pt --pooling max

For average pooling, no head and a dot target, Grad-CAM's pre-ReLU map equals ours up to a positive factor, so
only its ReLU, bilinear upsampling and cell averaging can make it differ; an affine head keeps that (its channel
weights become ``W^T e_B / N``, the bias enters no cell); with max or GeM pooling the two maps differ in substance.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from benchmarks.attribution import PACKAGES, CosTarget, DotTarget, EmbeddingNet, corr, feature_module, to_grid
from benchmarks.harness import Run, arg_parser, header, machine_info, override, write_json
from simvis_widgets import ModelSession
from simvis_widgets.datasets import GALLERY_PHOTOS, demo_views, fashion_mnist
from simvis_widgets.session import snapshots

REMOVALS: tuple[str, ...] = ("mean", "blur")
DIRECTIONS: tuple[str, ...] = ("deletion", "insertion")
SIGN: dict[str, int] = {"deletion": 1, "insertion": -1}
"""+1 where a lower AUC is better (deletion), -1 where a higher one is (insertion)."""
METHODS: tuple[str, ...] = ("ours", "gradcam_dot", "gradcam_cos", "random", "ours_reversed")
METHOD_LABELS: dict[str, str] = {
    "ours": "ours (exact map_a)",
    "gradcam_dot": "Grad-CAM, dot target",
    "gradcam_cos": "Grad-CAM, cosine target",
    "random": "random (mean of seeds)",
    "ours_reversed": "ours reversed (bound)",
}
FASHION_HELDOUT: tuple[int, ...] = (5, 6, 7, 8, 9)
"""Fashion-MNIST classes the training study holds out (``StudyConfig.heldout_classes``)."""
HEAD_DIM = 128

Pair = tuple[np.ndarray, np.ndarray, tuple[str, str], str]


# --------------------------------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    photos: int = 10
    """How many demo photos (of ``GALLERY_PHOTOS``, in order), or Fashion-MNIST held-out classes (at most 5);
    2 same pairs each."""
    cross_pairs: int = 6
    """Pairs of view 0 of photo i and view 1 of photo i + 1 (image 0 of class i and image 1 of class i + 1)."""
    step_percent: int = 5
    """k = 0, step, 2 step, ..., 100 % of the cells."""
    seeds: int = 3
    """Random orders per pair (their curves are averaged)."""
    size: int = 224
    """Shorter side of the network input (the demo views are made at this size too)."""
    blur_sigma: float = 16.0
    """Standard deviation (px, on the network input) of the Gaussian blur used by the ``blur`` removal."""
    pooling: str = "avg"
    gem_p: float = 3.0
    """GeM's exponent (``--pooling gem`` only)."""
    head: str = "none"
    """"none" or "linear" (a seeded random ``nn.Linear(C, 128)`` with bias)."""
    head_seed: int = 0
    data: str = "demo"
    """"demo" (the offline photos) or "fashion" (Fashion-MNIST's held-out test classes)."""
    class_pairs: int = 2
    """Same-class pairs per class (``fashion``): ``2 * class_pairs`` images of each class, 0 vs 1, 2 vs 3, ..."""
    checkpoint: str | None = None
    """A training-study state dict (None: the embedded pretrained EfficientNet-Lite0)."""
    stage: int = 4
    """``Trunk(stage=...)`` of a ``checkpoint``."""
    threads: int = 2
    quick: bool = False


QUICK = Settings(photos=5, cross_pairs=2, step_percent=10, seeds=2, quick=True)


# --------------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------------


def random_head(channels: int, seed: int, dim: int = HEAD_DIM) -> nn.Linear:
    """``nn.Linear(channels, dim)`` with bias, drawn like PyTorch's default initialisation
    (``U(-1/sqrt(channels), 1/sqrt(channels))``) from a generator seeded with ``seed``."""
    head = nn.Linear(channels, dim)
    g = torch.Generator().manual_seed(seed)
    bound = 1.0 / math.sqrt(channels)
    with torch.no_grad():
        head.weight.uniform_(-bound, bound, generator=g)
        head.bias.uniform_(-bound, bound, generator=g)
    return head


def build_session(s: Settings) -> ModelSession:
    """The session the settings describe: the embedded network or a study checkpoint (features = the output of
    its ``blocks``, so Grad-CAM can hook them), then the pooling and head changes."""
    if s.checkpoint is None:
        session = ModelSession.from_pretrained("efficientnet_lite0", size=s.size, device="cpu", cache_size=8)
    else:
        from simvis_widgets.training_study import Trunk

        stage = s.stage
        (session,) = snapshots(
            lambda: Trunk(pretrained=False, stage=stage),
            [s.checkpoint],
            layer="blocks",
            labels=[f"study trunk stage {stage} ({s.checkpoint})"],
            size=s.size,
            device="cpu",
            cache_size=8,
        )
    changes: dict[str, Any] = {}
    if s.pooling != "avg":
        changes["pooling"] = s.pooling
        if s.pooling == "gem":
            changes["p"] = s.gem_p
    if s.head == "linear":
        changes["head"] = random_head(session.channels, s.head_seed)
    return session.variant(**changes) if changes else session


# --------------------------------------------------------------------------------------------------
# Maps, orders and removal
# --------------------------------------------------------------------------------------------------


def order_cells(values: np.ndarray, rng: np.random.Generator, descending: bool = True) -> np.ndarray:
    """Flat cell indices by value (highest first when ``descending``), ties in a random order."""
    v = np.asarray(values, dtype=np.float64).ravel()
    return np.lexsort((rng.random(v.size), -v if descending else v))


def replace_cells(
    image: np.ndarray, source: np.ndarray, cells: np.ndarray, grid: tuple[int, int], stride: int
) -> np.ndarray:
    """``image`` with the ``stride x stride`` blocks of the flat cell indices ``cells`` taken from ``source``
    (removal: ``source`` is the fill; insertion: ``image`` is the fill and ``source`` the original)."""
    mask = np.zeros(grid[0] * grid[1], dtype=bool)
    mask[cells] = True
    pixel_mask = np.repeat(np.repeat(mask.reshape(grid), stride, axis=0), stride, axis=1)
    return np.where(pixel_mask[..., None], source, image)


def blurred(image: np.ndarray, sigma: float) -> np.ndarray:
    from PIL import Image, ImageFilter

    return np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(radius=sigma)))


def mean_filled(image: np.ndarray) -> np.ndarray:
    colour = np.round(image.reshape(-1, 3).astype(np.float64).mean(0)).astype(np.uint8)
    return np.broadcast_to(colour, image.shape).copy()


def trapezoid(y: Sequence[float] | np.ndarray, x: Sequence[float] | np.ndarray) -> float:
    """Area under the polyline through ``(x[i], y[i])``."""
    ya, xa = np.asarray(y, dtype=np.float64), np.asarray(x, dtype=np.float64)
    return float(np.sum((xa[1:] - xa[:-1]) * (ya[1:] + ya[:-1]) / 2))


# --------------------------------------------------------------------------------------------------
# One pair
# --------------------------------------------------------------------------------------------------


@dataclass
class PairResult:
    a: str
    b: str
    group: str
    """"same" (two views of one photo, two items of one class) or "cross" (different photos or classes)."""
    input_a: list[int]
    grid_a: list[int]
    score: float
    """s(A, B): the network's cosine of A and B."""
    curves: dict[str, dict[str, dict[str, list[float]]]]
    """direction -> removal -> method -> s(k) for every k of the grid (absolute scores)."""
    auc: dict[str, dict[str, dict[str, float]]]
    """direction -> removal -> method -> area under s(k) / s(A, B)."""
    corr_gradcam_dot_vs_ours: float
    """Pearson correlation of Grad-CAM's (dot) cell-averaged map with ours."""
    corr_gradcam_dot_pre_relu_vs_ours: float
    spearman_gradcam_dot_vs_ours: float
    corr_gradcam_cos_vs_ours: float


class Scorer:
    """Scores of modified versions of one prepared image A against a fixed B: one forward per image."""

    def __init__(self, session: ModelSession, e_b: Tensor) -> None:
        self.session, self.e_b = session, e_b
        self.forwards = 0

    def scores(self, images: list[np.ndarray]) -> list[float]:
        if not images:
            return []
        self.forwards += len(images)
        emb = self.session.embed_many(images, batch_size=1, progress=False)
        return (emb @ self.e_b).tolist()


def transfer_curve(
    scorer: Scorer,
    start: np.ndarray,
    end: np.ndarray,
    order: np.ndarray,
    counts: Sequence[int],
    grid: tuple[int, int],
    stride: int,
    s_start: float,
    s_end: float,
) -> list[float]:
    """``s(n)`` for every ``n`` of ``counts``: the score of ``start`` with the first ``n`` cells of ``order`` taken
    from ``end``. Deletion: ``start`` = A, ``end`` = the fill; insertion: ``start`` = the fill, ``end`` = A. The
    end points (``n = 0``: ``s_start``, every cell: ``s_end``) are given, the rest scored, one forward each."""
    n_cells = grid[0] * grid[1]
    inner = sorted({n for n in counts if 0 < n < n_cells})
    by_n = dict(zip(inner, scorer.scores([replace_cells(start, end, order[:n], grid, stride) for n in inner])))
    by_n[0], by_n[n_cells] = s_start, s_end
    return [by_n[n] for n in counts]


def _rankdata(x: np.ndarray) -> np.ndarray:
    r = np.empty(x.size)
    r[np.argsort(x, kind="stable")] = np.arange(x.size)
    return r


def _track_max(sanity: dict[str, Any], key: str, value: float) -> None:
    sanity[key] = max(sanity.get(key, 0.0), value)


def bench_pair(
    session: ModelSession,
    net: EmbeddingNet,
    cam: Any,
    img_a: np.ndarray,
    img_b: np.ndarray,
    names: tuple[str, str],
    group: str,
    s: Settings,
    rng: np.random.Generator,
    steps: np.ndarray,
    sanity: dict[str, Any],
) -> tuple[PairResult, int]:
    prep_a = session.prepare(img_a)
    ex = session.explain(prep_a, img_b)
    grid = (int(ex.grid_a[0]), int(ex.grid_a[1]))
    stride = session.stride
    assert prep_a.shape[0] == grid[0] * stride and prep_a.shape[1] == grid[1] * stride, "cells must tile the input"
    n_cells = grid[0] * grid[1]
    e_b = session.embed(img_b)
    scorer = Scorer(session, e_b)
    s0 = scorer.scores([prep_a])[0]
    _track_max(sanity, "max_abs_embed_score_minus_explain_score", abs(s0 - ex.score))
    _track_max(
        sanity, "max_abs_map_sum_plus_global_minus_score", abs(float(ex.map_a.sum()) + ex.global_term - ex.score)
    )
    _track_max(sanity, "max_abs_global_term", abs(ex.global_term))

    # ---- maps -> orders ---------------------------------------------------------------------------
    ours = ex.map_a.detach().cpu().numpy()
    x_a, x_b = session.to_input([prep_a]), session.to_input([session.prepare(img_b)])
    with torch.no_grad():
        e_b_raw = net(x_b)[0].detach()
    cam_dot = cam(input_tensor=x_a, targets=[DotTarget(e_b_raw)])[0]
    acts = cam.activations_and_grads.activations[0][0]
    grads = cam.activations_and_grads.gradients[0][0]
    pre_relu = (grads.mean(dim=(1, 2))[:, None, None] * acts).sum(0).numpy()
    cam_cos = cam(input_tensor=x_a, targets=[CosTarget(e_b_raw)])[0]
    net.zero_grad(set_to_none=True)
    gc_dot = to_grid(cam_dot, grid).numpy()
    gc_cos = to_grid(cam_cos, grid).numpy()

    orders: dict[str, list[np.ndarray]] = {
        "ours": [order_cells(ours, rng)],
        "gradcam_dot": [order_cells(gc_dot, rng)],
        "gradcam_cos": [order_cells(gc_cos, rng)],
        "random": [rng.permutation(n_cells) for _ in range(s.seeds)],
        "ours_reversed": [order_cells(ours, rng, descending=False)],
    }

    # ---- deletion and insertion curves ------------------------------------------------------------
    counts = [round(float(k) * n_cells) for k in steps]
    curves: dict[str, dict[str, dict[str, list[float]]]] = {d: {} for d in DIRECTIONS}
    auc: dict[str, dict[str, dict[str, float]]] = {d: {} for d in DIRECTIONS}
    for removal in REMOVALS:
        fill = mean_filled(prep_a) if removal == "mean" else blurred(prep_a, s.blur_sigma)
        s_removed = scorer.scores([fill])[0]
        if "explain_vs_embed_on_modified" not in sanity:
            half = replace_cells(prep_a, fill, orders["ours"][0][: n_cells // 2], grid, stride)
            check = session.explain(half, img_b).score
            sanity["explain_vs_embed_on_modified"] = abs(check - scorer.scores([half])[0])
        ends = {"deletion": (prep_a, fill, s0, s_removed), "insertion": (fill, prep_a, s_removed, s0)}
        for direction, (start, end, s_start, s_end) in ends.items():
            curves[direction][removal], auc[direction][removal] = {}, {}
            for method, method_orders in orders.items():
                curve = np.mean(
                    [
                        transfer_curve(scorer, start, end, order, counts, grid, stride, s_start, s_end)
                        for order in method_orders
                    ],
                    axis=0,
                )
                curves[direction][removal][method] = curve.tolist()
                auc[direction][removal][method] = trapezoid(curve / s0, steps)
    session.clear_cache()
    res = PairResult(
        a=names[0],
        b=names[1],
        group=group,
        input_a=list(prep_a.shape[:2]),
        grid_a=list(grid),
        score=s0,
        curves=curves,
        auc=auc,
        corr_gradcam_dot_vs_ours=corr(gc_dot, ours),
        corr_gradcam_dot_pre_relu_vs_ours=corr(pre_relu, ours),
        spearman_gradcam_dot_vs_ours=corr(_rankdata(gc_dot.ravel()), _rankdata(ours.ravel())),
        corr_gradcam_cos_vs_ours=corr(gc_cos, ours),
    )
    return res, scorer.forwards


# --------------------------------------------------------------------------------------------------
# Statistics and report
# --------------------------------------------------------------------------------------------------


def _t975(n: int) -> float:
    if n < 2:
        return float("nan")
    try:
        from scipy.stats import t

        return float(t.ppf(0.975, n - 1))
    except ImportError:  # pragma: no cover
        return 1.96


def summary(x: Sequence[float]) -> dict[str, float]:
    a = np.asarray(x, dtype=np.float64)
    n = a.size
    std = float(a.std(ddof=1)) if n > 1 else float("nan")
    return {
        "mean": float(a.mean()),
        "std": std,
        "ci95": _t975(n) * std / math.sqrt(n) if n > 1 else float("nan"),
        "n": n,
    }


def summarise(pairs: list[PairResult], steps: np.ndarray, groups: Sequence[str] | None = None) -> dict[str, Any]:
    """direction -> removal -> method -> statistics over the pairs (of ``groups``). ``change10`` / ``change20``:
    ``SIGN * (s(0) - s(k))`` for k = 10 / 20 % (the drop for deletion, the rise for insertion: higher = better);
    ``pairs_better_than_ours``: pairs whose AUC beats ours (lower for deletion, higher for insertion)."""
    chosen = [p for p in pairs if groups is None or p.group in groups]
    i10, i20 = int(np.argmin(abs(steps - 0.1))), int(np.argmin(abs(steps - 0.2)))
    out: dict[str, Any] = {}
    for direction in DIRECTIONS:
        sign = SIGN[direction]
        out[direction] = {}
        for removal in REMOVALS:
            out[direction][removal] = {}
            for method in METHODS:
                curves = [np.asarray(p.curves[direction][removal][method]) for p in chosen]
                aucs = [p.auc[direction][removal][method] for p in chosen]
                diffs = [p.auc[direction][removal][method] - p.auc[direction][removal]["ours"] for p in chosen]
                out[direction][removal][method] = {
                    "auc": summary(aucs),
                    "change10": summary([sign * (c[0] - c[i10]) for c in curves]),
                    "change20": summary([sign * (c[0] - c[i20]) for c in curves]),
                    "auc_minus_ours": summary(diffs),
                    "pairs_better_than_ours": int(sum(sign * d < 0 for d in diffs)),
                    "mean_curve_normalised": np.mean([c / p.score for c, p in zip(curves, chosen)], axis=0).tolist(),
                }
            out[direction][removal]["floor_normalised"] = summary(
                [p.curves["deletion"][removal]["ours"][-1] / p.score for p in chosen]
            )
    return out


def _pm(d: dict[str, float], fmt: str = "{:.3f}") -> str:
    return f"{fmt.format(d['mean'])} ± {fmt.format(d['ci95'])}"


def compact_table(stats: dict[str, Any], n: int, label: str) -> str:
    """A Markdown table of the AUCs (mean ± 95 % CI over ``n`` pairs) per method, direction and removal."""
    cols = [(d, r) for d in DIRECTIONS for r in REMOVALS]
    arrow = {"deletion": "↓", "insertion": "↑"}
    lines = [
        f"| {label} ({n} pairs) | " + " | ".join(f"{d} {arrow[d]} ({r})" for d, r in cols) + " |",
        "|---|" + "---|" * len(cols),
    ]
    for method in METHODS:
        lines.append(
            f"| {METHOD_LABELS[method]} | " + " | ".join(_pm(stats[d][r][method]["auc"]) for d, r in cols) + " |"
        )
    return "\n".join(lines)


def format_report(pairs: list[PairResult], steps: np.ndarray, stats: dict[str, Any], by_group: dict[str, Any]) -> str:
    lines: list[str] = []
    n = len(pairs)
    for direction in DIRECTIONS:
        better, change = ("lower", "drop") if direction == "deletion" else ("higher", "rise")
        lines.append(
            f"{direction} AUC of s(k)/s(A, B) over k in [0, 1] ({better} = better) and the absolute score {change} "
            f"after the first 10 % / 20 % of cells (higher = better); mean ± 95 % CI over {n} pairs (std in brackets)"
        )
        lines.append(
            f"   {'removal':<8}{'method':<26}{'AUC':>25}{f'{change} @10 %':>25}{f'{change} @20 %':>25}"
            f"{'AUC - AUC(ours)':>24}{'beats ours':>12}"
        )
        for removal in REMOVALS:
            for method in METHODS:
                r = stats[direction][removal][method]
                beats = "-" if method == "ours" else f"{r['pairs_better_than_ours']}/{n}"
                diff = (
                    "-"
                    if method == "ours"
                    else f"{r['auc_minus_ours']['mean']:+.4f} ± {r['auc_minus_ours']['ci95']:.4f}"
                )
                cells = "".join(
                    f"{_pm(r[key]) + ' (' + format(r[key]['std'], '.3f') + ')':>25}"
                    for key in ("auc", "change10", "change20")
                )
                lines.append(f"   {removal:<8}{METHOD_LABELS[method]:<26}{cells}{diff:>24}{beats:>12}")
            fl = stats[direction][removal]["floor_normalised"]
            lines.append(
                f"   {removal:<8}{'(all cells removed)':<26}   s(fill)/s(A, B) = {_pm(fl)} (same for every method)"
            )
        lines.append("")
    lines.append("AUC by pair group (mean ± 95 % CI)")
    groups = [g for g in ("same", "cross") if g in by_group]
    counts = {g: sum(p.group == g for p in pairs) for g in groups}
    lines.append(
        f"   {'direction':<10}{'removal':<8}{'method':<26}"
        + "".join(f"{f'{g} ({counts[g]} pairs)':>26}" for g in groups)
    )
    for direction in DIRECTIONS:
        for removal in REMOVALS:
            for method in METHODS:
                lines.append(
                    f"   {direction:<10}{removal:<8}{METHOD_LABELS[method]:<26}"
                    + "".join(f"{_pm(by_group[g][direction][removal][method]['auc']):>26}" for g in groups)
                )
    lines.append("")
    for direction in DIRECTIONS:
        lines.append(f"mean {direction} curves s(k)/s(A, B) over all pairs")
        for removal in REMOVALS:
            lines.append(f"   removal {removal}:")
            lines.append(f"   {'k %':>6}" + "".join(f"{m:>15}" for m in METHODS))
            for i, k in enumerate(steps):
                lines.append(
                    f"   {100 * k:6.0f}"
                    + "".join(f"{stats[direction][removal][m]['mean_curve_normalised'][i]:15.4f}" for m in METHODS)
                )
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------------


def demo_pairs(s: Settings) -> tuple[list[Pair], str]:
    photos = GALLERY_PHOTOS[: s.photos]
    views = demo_views(views_per_photo=3, short_side=s.size, photos=photos)
    by_name = dict(zip(views.names, views.images))
    pairs = []
    for photo in photos:
        for v in (1, 2):
            a, b = f"{photo}/0", f"{photo}/{v}"
            pairs.append((by_name[a], by_name[b], (a, b), "same"))
    for i in range(min(s.cross_pairs, len(photos) if len(photos) > 1 else 0)):
        a, b = f"{photos[i]}/0", f"{photos[(i + 1) % len(photos)]}/1"
        pairs.append((by_name[a], by_name[b], (a, b), "cross"))
    same = 2 * len(photos)
    return pairs, (
        f"{len(pairs)} ({same} same-photo: view 0 vs views 1 and 2 of {', '.join(photos)}; "
        f"{len(pairs) - same} cross-photo: view 0 of one photo vs view 1 of the next)"
    )


def fashion_pairs(s: Settings) -> tuple[list[Pair], str]:
    if not 1 <= s.photos <= len(FASHION_HELDOUT):
        raise ValueError(f"--photos must be 1..{len(FASHION_HELDOUT)} with --data fashion, got {s.photos}")
    classes = FASHION_HELDOUT[: s.photos]
    if s.class_pairs < 1:
        raise ValueError(f"--class-pairs must be >= 1, got {s.class_pairs}")
    per_class = 2 * s.class_pairs
    data = fashion_mnist("test").subset(classes, per_class=per_class, seed=0)
    members = {c: np.flatnonzero(data.labels == c) for c in classes}

    def item(c: int, j: int) -> tuple[np.ndarray, str]:
        return data.rgb(int(members[c][j])), f"{data.classes[c]}/{j}"

    pairs: list[Pair] = []
    for c in classes:
        for j in range(0, per_class, 2):
            (img_a, a), (img_b, b) = item(c, j), item(c, j + 1)
            pairs.append((img_a, img_b, (a, b), "same"))
    for i in range(min(s.cross_pairs, len(classes) if len(classes) > 1 else 0)):
        (img_a, a), (img_b, b) = item(classes[i], 0), item(classes[(i + 1) % len(classes)], 1)
        pairs.append((img_a, img_b, (a, b), "cross"))
    same = s.class_pairs * len(classes)
    names = ", ".join(data.classes[c] for c in classes)
    return pairs, (
        f"{len(pairs)} from Fashion-MNIST test classes {', '.join(map(str, classes))} ({names}; {per_class} "
        f"images each, seed 0): {same} same-class (images 0 vs 1, 2 vs 3, ...); {len(pairs) - same} cross-class "
        "(image 0 of one class vs image 1 of the next)"
    )


def make_pairs(s: Settings) -> tuple[list[Pair], str]:
    """The (A, B, names, group) pairs of ``s.data`` and a sentence describing them."""
    return fashion_pairs(s) if s.data == "fashion" else demo_pairs(s)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = arg_parser(__doc__, "5 photos (classes), 12 pairs, 10 %% steps, 2 random seeds (a few minutes)")
    ap.add_argument(
        "--size", type=int, default=None, help=f"shorter side of the network input (default {Settings.size})"
    )
    ap.add_argument(
        "--pooling", choices=("avg", "max", "gem"), default="avg", help="pooling of the session (default avg)"
    )
    ap.add_argument("--gem-p", type=float, default=None, help=f"GeM exponent (default {Settings.gem_p:g})")
    ap.add_argument(
        "--head",
        choices=("none", "linear"),
        default="none",
        help=f"linear: a seeded random nn.Linear(C, {HEAD_DIM}) with bias after pooling (default none)",
    )
    ap.add_argument("--head-seed", type=int, default=None, help="seed of the random head (default 0)")
    ap.add_argument("--data", choices=("demo", "fashion"), default="demo", help="pairs (default demo photos)")
    ap.add_argument(
        "--class-pairs",
        type=int,
        default=None,
        help=f"--data fashion: same-class pairs per class (default {Settings.class_pairs})",
    )
    ap.add_argument("--checkpoint", default=None, help="a training-study state dict (.pt) to load into a Trunk")
    ap.add_argument("--stage", type=int, default=None, help=f"Trunk stage of --checkpoint (default {Settings.stage})")
    ap.add_argument("--seeds", type=int, default=None, help="random orders per pair (default 3, 2 with --quick)")
    ap.add_argument(
        "--blur-sigma", type=float, default=None, help=f"Gaussian blur sigma in px (default {Settings.blur_sigma:g})"
    )
    ap.add_argument(
        "--photos",
        type=int,
        default=None,
        help=f"number of demo photos (default {Settings.photos}, at most {len(GALLERY_PHOTOS)}) or of Fashion-MNIST "
        f"held-out classes (at most {len(FASHION_HELDOUT)})",
    )
    args = ap.parse_args(argv)
    if args.stage is not None and args.checkpoint is None:
        ap.error("--stage needs --checkpoint")
    if args.gem_p is not None and args.pooling != "gem":
        ap.error("--gem-p needs --pooling gem")
    if args.class_pairs is not None and args.data != "fashion":
        ap.error("--class-pairs needs --data fashion")
    if args.head_seed is not None and args.head != "linear":
        ap.error("--head-seed needs --head linear")
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    from pytorch_grad_cam import GradCAM

    s = override(
        QUICK if args.quick else Settings(),
        threads=args.threads,
        pooling=args.pooling,
        gem_p=args.gem_p,
        head=args.head,
        head_seed=args.head_seed,
        data=args.data,
        class_pairs=args.class_pairs,
        checkpoint=args.checkpoint,
        stage=args.stage,
        size=args.size,
        seeds=args.seeds,
        blur_sigma=args.blur_sigma,
        photos=args.photos,
    )
    run = Run.start(s.threads)
    log = run.log
    session = build_session(s)
    log(repr(session))
    net = EmbeddingNet(session).eval()
    layer_name, layer_module, layer_exact = feature_module(session, net)
    for p in net.parameters():
        p.requires_grad_(True)
    pairs, described = make_pairs(s)
    steps = np.arange(0, 100 + s.step_percent / 2, s.step_percent) / 100.0
    assert np.isclose(steps, 0.1).any() and np.isclose(steps, 0.2).any(), "the grid must hold 10 % and 20 %"
    log(f"{len(pairs)} pairs ({s.data}); k grid {len(steps)} points; Grad-CAM layer {layer_name!r}")

    results: list[PairResult] = []
    sanity: dict[str, Any] = {}
    forwards = 0
    with GradCAM(model=net, target_layers=[layer_module]) as cam:
        for i, (img_a, img_b, names, group) in enumerate(pairs):
            rng = np.random.default_rng([0, i])
            res, n_fwd = bench_pair(session, net, cam, img_a, img_b, names, group, s, rng, steps, sanity)
            forwards += n_fwd
            results.append(res)
            dele, ins = res.auc["deletion"]["mean"], res.auc["insertion"]["mean"]
            log(
                f"pair {i + 1}/{len(pairs)} {names[0]} vs {names[1]} ({group}): s={res.score:.4f}, grid "
                f"{res.grid_a[0]}x{res.grid_a[1]}, mean-fill AUC deletion/insertion ours {dele['ours']:.3f}/"
                f"{ins['ours']:.3f}, gradcam_dot {dele['gradcam_dot']:.3f}/{ins['gradcam_dot']:.3f}, random "
                f"{dele['random']:.3f}/{ins['random']:.3f}; {n_fwd} forwards"
            )

    stats = summarise(results, steps)
    by_group = {g: summarise(results, steps, [g]) for g in ("same", "cross") if any(p.group == g for p in results)}
    sanity["mean_corr_gradcam_dot_vs_ours"] = float(np.nanmean([p.corr_gradcam_dot_vs_ours for p in results]))
    sanity["min_corr_gradcam_dot_vs_ours"] = float(np.nanmin([p.corr_gradcam_dot_vs_ours for p in results]))
    sanity["mean_spearman_gradcam_dot_vs_ours"] = float(np.nanmean([p.spearman_gradcam_dot_vs_ours for p in results]))
    sanity["mean_corr_gradcam_dot_pre_relu_vs_ours"] = float(
        np.nanmean([p.corr_gradcam_dot_pre_relu_vs_ours for p in results])
    )
    sanity["mean_corr_gradcam_cos_vs_ours"] = float(np.nanmean([p.corr_gradcam_cos_vs_ours for p in results]))
    run.finish()
    info = machine_info(s.threads, PACKAGES)

    print(
        f"simvis_widgets faithfulness benchmark (CPU): deletion and insertion curves of ours vs Grad-CAM vs random "
        f"({'quick' if s.quick else 'default'} mode)"
    )
    print("\n".join(header(info, run)))
    print(
        f"model:   {session!r}; Grad-CAM target layer {layer_name!r} (output equals the feature map: "
        f"{'yes' if layer_exact else 'NO'})"
    )
    if s.checkpoint is not None:
        print(f"weights: {s.checkpoint} (training-study Trunk, stage {s.stage})")
    if s.head == "linear":
        print(f"head:    random nn.Linear({session.channels}, {HEAD_DIM}) with bias, seed {s.head_seed}")
    print(f"pairs:   {described}; A = the first of each pair")
    grids = sorted({f"{p.grid_a[0]}x{p.grid_a[1]}" for p in results})
    print(
        f"removal: top k % of A's {'/'.join(grids)} feature cells (stride {session.stride} px blocks of the network "
        f"input), k = 0..100 % in steps of {s.step_percent} %; mean = A's mean colour, blur = Gaussian sigma "
        f"{s.blur_sigma:g} px; insertion restores the top k % into the fully removed A; random = mean of {s.seeds} "
        f"seeds per pair; {forwards} forward passes"
    )
    print()
    print(format_report(results, steps, stats, by_group))
    print()
    print("compact table (AUC of s(k)/s(A, B), mean ± 95 % CI; deletion lower = better, insertion higher = better)")
    print(compact_table(stats, len(results), s.data))
    print()
    print(
        f"sanity: max |embed-based s(0) - explain(A, B).score| = {sanity['max_abs_embed_score_minus_explain_score']:.2e}; "
        f"|explain(A_mod, B).score - embed-based score| on one modified image = {sanity.get('explain_vs_embed_on_modified', float('nan')):.2e}; "
        f"max |map_a.sum() + global_term - score| = {sanity['max_abs_map_sum_plus_global_minus_score']:.2e} "
        f"(max |global_term| = {sanity['max_abs_global_term']:.2e})"
    )
    print(
        f"sanity: correlation of the cell maps with ours, mean over pairs: Grad-CAM dot (returned map, cell-averaged) "
        f"Pearson {sanity['mean_corr_gradcam_dot_vs_ours']:.4f} (min {sanity['min_corr_gradcam_dot_vs_ours']:.4f}), "
        f"Spearman {sanity['mean_spearman_gradcam_dot_vs_ours']:.4f}; Grad-CAM dot before ReLU/upsampling "
        f"{sanity['mean_corr_gradcam_dot_pre_relu_vs_ours']:.4f}; Grad-CAM cosine {sanity['mean_corr_gradcam_cos_vs_ours']:.4f}"
    )
    if s.pooling == "avg":
        print(
            "note: with average pooling and a dot target, Grad-CAM's channel weights are (W^T) B's embedding / N "
            "(W: the head, if any), so its pre-ReLU map is <a_i, W^T e_B> / N, proportional to ours (a head's bias "
            "enters no cell: it is in our global term); the two rankings differ only through Grad-CAM's ReLU, "
            "min-max scaling, bilinear upsampling and the cell averaging."
        )
        print(
            "note: removing a cell changes the cosine by (to first order) <a_fill - a_i, e_B/|e_B| - s e_A/|e_A|> / (N |e_A|): "
            "the pre-ReLU map of Grad-CAM with a COSINE target is this marginal effect, while ours is the cell's share "
            "<a_i, e_B/|e_B|> / (N |e_A|) of the score (it omits the -s <a_i, e_A/|e_A|> term: removing a cell also "
            "shrinks |e_A|). A deletion curve measures the marginal effect; the first-order picture holds only for small k and "
            "ignores the receptive fields' spread beyond a cell, so the curves above are the test of which ranking works."
        )
    else:
        print(
            f"note: with {s.pooling} pooling ours is each cell's exact share of the score at the full image, while "
            "Grad-CAM weights channels by their mean gradient (a first-order, local sensitivity); a deletion or "
            "insertion curve asks a third question (how the score moves as cells are removed or restored greedily, "
            "with the pooling's winners changing on the way), so neither map is its optimum by construction."
        )
    print(
        "note: on cross pairs s(A, B) is small and the filled image can be as similar to B as A is, so s(k)/s(A, B) "
        "can exceed 1 (deletion AUC > 1, insertion AUC > 1); compare methods on the paired differences and the same group."
    )
    busy = run.busy_note("this affects the runtime only, not the scores", label="note")
    if busy:
        print(busy)
    print(f"total benchmark time {run.total_s:.0f} s")

    out: dict[str, Any] = {
        "machine": info,
        **run.record(),
        "settings": asdict(s),
        "model": repr(session),
        "gradcam_layer": layer_name,
        "gradcam_layer_exact": layer_exact,
        "pairs_described": described,
        "steps": steps.tolist(),
        "forwards": forwards,
        "summary": stats,
        "by_group": by_group,
        "sanity": sanity,
        "pairs": results,
    }
    write_json(args.json, out)
    return out


if __name__ == "__main__":
    main()
