"""Benchmark: deletion-curve faithfulness of the exact contribution map, next to Grad-CAM and random maps.

A map over image A's feature cells is *faithful* to the similarity ``s(A, B)`` when removing the cells it
ranks highest makes the score fall fastest. For each pair (A, B) of offline photos this script ranks the
feature cells of A by a map, removes the top ``k`` % of them (``k = 0, 5, ..., 100``; ``0, 10, ..., 100`` with
``--quick``) and recomputes the network's score of the modified A against the unmodified B. Removal is
done in pixel space on the network input (``session.prepare(A)``: its sides are multiples of the stride,
so each feature cell is exactly one ``stride x stride`` block of it), in two ways:

* ``mean``  the block's pixels are replaced by the mean colour of image A;
* ``blur``  the block's pixels are replaced by a Gaussian-blurred copy of image A (``--blur-sigma``, in px).

The score of a modified image is ``<embed(A_mod), embed(B)>`` (L2-normalised embeddings, so the session's
cosine; identical to ``session.explain(A_mod, B).score``, checked on one image per run); modified images go
through ``session.embed_many`` (one forward per image, no feature cache), so nothing stale is ever reused.

Maps compared (all at feature-cell resolution, highest first unless said):

* ``ours``          ``session.explain(A, B).map_a``: the exact contribution of every cell to the score;
* ``gradcam_dot``   ``pytorch_grad_cam.GradCAM`` on a module mapping the image tensor to the (un-normalised)
  pooled embedding, target layer = the module whose output is the feature map (``bn2`` for the default
  model), target = dot product of the output embedding with B's embedding. Its returned map (ReLU,
  min-max, bilinearly upsampled to the input) is averaged over each cell;
* ``gradcam_cos``   the same with a cosine-similarity target (extra: the other common choice; cosine is
  0-homogeneous, so this Grad-CAM shows deviations rather than contributions, see the method notes);
* ``random``        a random order, averaged over ``--seeds`` seeds per pair;
* ``ours_reversed`` ours, lowest first: a sanity bound (it should be the slowest to fall).

Ties (Grad-CAM zeros after its ReLU) are broken in a random order (seeded). Per method and removal type the
table gives, averaged over pairs with a 95 % confidence interval (t distribution): the area under the
normalised deletion curve ``s(k) / s(0)`` over ``k`` in [0, 1] (trapezoid; LOWER = the map found the cells that
carry the similarity), the absolute score drops ``s(0) - s(10 %)`` and ``s(0) - s(20 %)`` (HIGHER = better), and
the paired AUC difference against ``ours`` (negative = that method beats ours) with the number of pairs on
which it beats ours. Mean curves and a split into same-photo and cross-photo pairs follow.

Pairs come from ``simvis_widgets.datasets.demo_views(views_per_photo=3)``: view 0 (the photo) vs view 1 and
view 0 vs view 2 of each photo (similar pairs), plus view 0 of one photo vs view 1 of the next (cross pairs).
Model: the embedded default ``ModelSession.from_pretrained("efficientnet_lite0", size=224)`` on the CPU.

Run from the repository root::

    python -m benchmarks.bench_faithfulness            # 10 photos, 26 pairs: ~2-5 minutes on 2 CPU cores
    python -m benchmarks.bench_faithfulness --quick    # 5 photos, 12 pairs, coarser grid: under 2 minutes
    python -m benchmarks.bench_faithfulness --quick --photos 1   # 2 pairs: the quickest check that it runs
    python -m benchmarks.bench_faithfulness --json results.json

``--pooling max|gem`` runs the same on a session variant with another pooling (for average pooling and a
dot target, Grad-CAM's pre-ReLU map equals ours up to a positive factor, so only its ReLU, bilinear upsampling
and cell averaging can make it differ; with other poolings the two maps differ in substance).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from benchmarks.attribution import PACKAGES, CosTarget, DotTarget, EmbeddingNet, corr, feature_module, to_grid
from benchmarks.harness import Run, arg_parser, header, machine_info, override, write_json
from simvis_widgets import ModelSession
from simvis_widgets.datasets import GALLERY_PHOTOS, demo_views

REMOVALS: tuple[str, ...] = ("mean", "blur")
METHODS: tuple[str, ...] = ("ours", "gradcam_dot", "gradcam_cos", "random", "ours_reversed")
METHOD_LABELS: dict[str, str] = {
    "ours": "ours (exact map_a)",
    "gradcam_dot": "Grad-CAM, dot target",
    "gradcam_cos": "Grad-CAM, cosine target",
    "random": "random (mean of seeds)",
    "ours_reversed": "ours reversed (bound)",
}


# --------------------------------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    photos: int = 10
    """How many demo photos (of ``GALLERY_PHOTOS``, in order); 2 similar pairs per photo."""
    cross_pairs: int = 6
    """Pairs of view 0 of photo i and view 1 of photo i + 1 (different photos)."""
    step_percent: int = 5
    """k = 0, step, 2 step, ..., 100 % of the cells."""
    seeds: int = 3
    """Random orders per pair (their curves are averaged)."""
    size: int = 224
    """Shorter side of the network input (the demo views are made at this size too)."""
    blur_sigma: float = 16.0
    """Standard deviation (px, on the network input) of the Gaussian blur used by the ``blur`` removal."""
    pooling: str = "avg"
    threads: int = 2
    quick: bool = False


QUICK = Settings(photos=5, cross_pairs=2, step_percent=10, seeds=2, quick=True)


# --------------------------------------------------------------------------------------------------
# Maps, orders and removal
# --------------------------------------------------------------------------------------------------


def order_cells(values: np.ndarray, rng: np.random.Generator, descending: bool = True) -> np.ndarray:
    """Flat cell indices by value (highest first when ``descending``), ties in a random order."""
    v = np.asarray(values, dtype=np.float64).ravel()
    return np.lexsort((rng.random(v.size), -v if descending else v))


def remove_cells(
    image: np.ndarray, fill: np.ndarray, cells: np.ndarray, grid: tuple[int, int], stride: int
) -> np.ndarray:
    """``image`` with the ``stride x stride`` blocks of the flat cell indices ``cells`` taken from ``fill``."""
    mask = np.zeros(grid[0] * grid[1], dtype=bool)
    mask[cells] = True
    pixel_mask = np.repeat(np.repeat(mask.reshape(grid), stride, axis=0), stride, axis=1)
    return np.where(pixel_mask[..., None], fill, image)


def blurred(image: np.ndarray, sigma: float) -> np.ndarray:
    from PIL import Image, ImageFilter

    return np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(radius=sigma)))


def mean_filled(image: np.ndarray) -> np.ndarray:
    colour = np.round(image.reshape(-1, 3).astype(np.float64).mean(0)).astype(np.uint8)
    return np.broadcast_to(colour, image.shape).copy()


def trapezoid(y: Sequence[float], x: Sequence[float]) -> float:
    y, x = np.asarray(y, dtype=np.float64), np.asarray(x, dtype=np.float64)
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2))


# --------------------------------------------------------------------------------------------------
# One pair
# --------------------------------------------------------------------------------------------------


@dataclass
class PairResult:
    a: str
    b: str
    group: str
    """"same" (two views of one photo) or "cross" (different photos)."""
    input_a: list[int]
    grid_a: list[int]
    score: float
    """s(0): the network's cosine of A and B."""
    curves: dict[str, dict[str, list[float]]]
    """removal -> method -> s(k) for every k of the grid (absolute scores)."""
    auc: dict[str, dict[str, float]]
    """removal -> method -> area under s(k) / s(0)."""
    corr_gradcam_dot_vs_ours: float
    """Pearson correlation of Grad-CAM's (dot) cell-averaged map with ours."""
    corr_gradcam_dot_pre_relu_vs_ours: float
    spearman_gradcam_dot_vs_ours: float
    corr_gradcam_cos_vs_ours: float


class Scorer:
    """Scores of modified versions of one prepared image A against a fixed B: one forward per distinct
    number of removed cells per order, memoised by (order, n)."""

    def __init__(self, session: ModelSession, e_b: Tensor) -> None:
        self.session, self.e_b = session, e_b
        self.forwards = 0

    def scores(self, images: list[np.ndarray]) -> list[float]:
        if not images:
            return []
        self.forwards += len(images)
        emb = self.session.embed_many(images, batch_size=1, progress=False)
        return (emb @ self.e_b).tolist()


def _rankdata(x: np.ndarray) -> np.ndarray:
    r = np.empty(x.size)
    r[np.argsort(x, kind="stable")] = np.arange(x.size)
    return r


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
    grid = tuple(int(g) for g in ex.grid_a)
    stride = session.stride
    assert prep_a.shape[0] == grid[0] * stride and prep_a.shape[1] == grid[1] * stride, "cells must tile the input"
    n_cells = grid[0] * grid[1]
    e_b = session.embed(img_b)
    scorer = Scorer(session, e_b)
    s0 = scorer.scores([prep_a])[0]
    sanity.setdefault("max_abs_embed_score_minus_explain_score", 0.0)
    sanity["max_abs_embed_score_minus_explain_score"] = max(
        sanity["max_abs_embed_score_minus_explain_score"], abs(s0 - ex.score)
    )
    sanity.setdefault("max_abs_map_sum_plus_global_minus_score", 0.0)
    sanity["max_abs_map_sum_plus_global_minus_score"] = max(
        sanity["max_abs_map_sum_plus_global_minus_score"], abs(float(ex.map_a.sum()) + ex.global_term - ex.score)
    )

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

    # ---- deletion curves --------------------------------------------------------------------------
    counts = [round(float(k) * n_cells) for k in steps]
    curves: dict[str, dict[str, list[float]]] = {}
    auc: dict[str, dict[str, float]] = {}
    for removal in REMOVALS:
        fill = mean_filled(prep_a) if removal == "mean" else blurred(prep_a, s.blur_sigma)
        s_full = scorer.scores([fill])[0]
        curves[removal], auc[removal] = {}, {}
        for method, method_orders in orders.items():
            per_order: list[list[float]] = []
            for order in method_orders:
                inner = sorted({n for n in counts if 0 < n < n_cells})
                images = [remove_cells(prep_a, fill, order[:n], grid, stride) for n in inner]
                by_n = dict(zip(inner, scorer.scores(images)))
                by_n[0], by_n[n_cells] = s0, s_full
                per_order.append([by_n[n] for n in counts])
                if "explain_vs_embed_on_modified" not in sanity and images:
                    check = session.explain(images[len(images) // 2], img_b).score
                    sanity["explain_vs_embed_on_modified"] = abs(check - by_n[inner[len(images) // 2]])
            curve = np.mean(per_order, axis=0)
            curves[removal][method] = curve.tolist()
            auc[removal][method] = trapezoid(curve / s0, steps)
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
    chosen = [p for p in pairs if groups is None or p.group in groups]
    i10, i20 = int(np.argmin(abs(steps - 0.1))), int(np.argmin(abs(steps - 0.2)))
    out: dict[str, Any] = {}
    for removal in REMOVALS:
        out[removal] = {}
        for method in METHODS:
            aucs = [p.auc[removal][method] for p in chosen]
            diffs = [p.auc[removal][method] - p.auc[removal]["ours"] for p in chosen]
            drop10 = [p.score - p.curves[removal][method][i10] for p in chosen]
            drop20 = [p.score - p.curves[removal][method][i20] for p in chosen]
            out[removal][method] = {
                "auc": summary(aucs),
                "drop10": summary(drop10),
                "drop20": summary(drop20),
                "auc_minus_ours": summary(diffs),
                "pairs_better_than_ours": int(sum(d < 0 for d in diffs)),
                "mean_curve_normalised": np.mean(
                    [np.asarray(p.curves[removal][method]) / p.score for p in chosen], axis=0
                ).tolist(),
            }
        out[removal]["floor_normalised"] = summary([p.curves[removal]["ours"][-1] / p.score for p in chosen])
    return out


def _pm(d: dict[str, float], fmt: str = "{:.3f}") -> str:
    return f"{fmt.format(d['mean'])} ± {fmt.format(d['ci95'])}"


def format_report(pairs: list[PairResult], steps: np.ndarray, stats: dict[str, Any], by_group: dict[str, Any]) -> str:
    lines: list[str] = []
    n = len(pairs)
    lines.append(
        f"deletion AUC of s(k)/s(0) over k in [0, 1] (lower = better) and absolute score drops after removing the top "
        f"10 % / 20 % of cells (higher = better); mean ± 95 % CI over {n} pairs (std in brackets)"
    )
    head = (
        f"   {'removal':<8}{'method':<26}{'AUC':>25}{'drop @10 %':>25}{'drop @20 %':>25}"
        f"{'AUC - AUC(ours)':>24}{'beats ours':>12}"
    )
    lines.append(head)
    for removal in REMOVALS:
        for method in METHODS:
            r = stats[removal][method]
            beats = "-" if method == "ours" else f"{r['pairs_better_than_ours']}/{n}"
            diff = (
                "-" if method == "ours" else f"{r['auc_minus_ours']['mean']:+.4f} ± {r['auc_minus_ours']['ci95']:.4f}"
            )
            cells = "".join(
                f"{_pm(r[key]) + ' (' + format(r[key]['std'], '.3f') + ')':>25}" for key in ("auc", "drop10", "drop20")
            )
            lines.append(f"   {removal:<8}{METHOD_LABELS[method]:<26}{cells}{diff:>24}{beats:>12}")
        fl = stats[removal]["floor_normalised"]
        lines.append(f"   {removal:<8}{'(all cells removed)':<26}   s(100 %)/s(0) = {_pm(fl)} (same for every method)")
    lines.append("")
    lines.append("AUC by pair group (mean ± 95 % CI)")
    groups = [g for g in ("same", "cross") if g in by_group]
    counts = {g: sum(p.group == g for p in pairs) for g in groups}
    lines.append(
        f"   {'removal':<8}{'method':<26}" + "".join(f"{f'{g} photo ({counts[g]} pairs)':>26}" for g in groups)
    )
    for removal in REMOVALS:
        for method in METHODS:
            lines.append(
                f"   {removal:<8}{METHOD_LABELS[method]:<26}"
                + "".join(f"{_pm(by_group[g][removal][method]['auc']):>26}" for g in groups)
            )
    lines.append("")
    lines.append("mean deletion curves s(k)/s(0) over all pairs")
    for removal in REMOVALS:
        lines.append(f"   removal {removal}:")
        lines.append(f"   {'k %':>6}" + "".join(f"{m:>15}" for m in METHODS))
        for i, k in enumerate(steps):
            lines.append(
                f"   {100 * k:6.0f}"
                + "".join(f"{stats[removal][m]['mean_curve_normalised'][i]:15.4f}" for m in METHODS)
            )
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------------


def make_pairs(s: Settings) -> tuple[list[tuple[np.ndarray, np.ndarray, tuple[str, str], str]], list[str]]:
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
    return pairs, list(photos)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = arg_parser(__doc__, "5 photos, 12 pairs, 10 %% steps, 2 random seeds (under 2 minutes)")
    ap.add_argument(
        "--size", type=int, default=None, help=f"shorter side of the network input (default {Settings.size})"
    )
    ap.add_argument(
        "--pooling", choices=("avg", "max", "gem"), default="avg", help="pooling of the session (default avg)"
    )
    ap.add_argument("--seeds", type=int, default=None, help="random orders per pair (default 3, 2 with --quick)")
    ap.add_argument(
        "--blur-sigma", type=float, default=None, help=f"Gaussian blur sigma in px (default {Settings.blur_sigma:g})"
    )
    ap.add_argument(
        "--photos",
        type=int,
        default=None,
        help=f"number of demo photos (default {Settings.photos}, at most {len(GALLERY_PHOTOS)})",
    )
    return ap.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    from pytorch_grad_cam import GradCAM

    s = override(
        QUICK if args.quick else Settings(),
        threads=args.threads,
        pooling=args.pooling,
        size=args.size,
        seeds=args.seeds,
        blur_sigma=args.blur_sigma,
        photos=args.photos,
    )
    run = Run.start(s.threads)
    log = run.log
    session = ModelSession.from_pretrained("efficientnet_lite0", size=s.size, device="cpu", cache_size=8)
    if s.pooling != "avg":
        session = session.variant(pooling=s.pooling)
    log(repr(session))
    net = EmbeddingNet(session).eval()
    layer_name, layer_module, layer_exact = feature_module(session, net)
    for p in net.parameters():
        p.requires_grad_(True)
    pairs, photos = make_pairs(s)
    steps = np.arange(0, 100 + s.step_percent / 2, s.step_percent) / 100.0
    assert np.isclose(steps, 0.1).any() and np.isclose(steps, 0.2).any(), "the grid must hold 10 % and 20 %"
    log(f"{len(pairs)} pairs from {len(photos)} photos; k grid {len(steps)} points; Grad-CAM layer {layer_name!r}")

    results: list[PairResult] = []
    sanity: dict[str, Any] = {}
    forwards = 0
    with GradCAM(model=net, target_layers=[layer_module]) as cam:
        for i, (img_a, img_b, names, group) in enumerate(pairs):
            rng = np.random.default_rng([0, i])
            res, n_fwd = bench_pair(session, net, cam, img_a, img_b, names, group, s, rng, steps, sanity)
            forwards += n_fwd
            results.append(res)
            log(
                f"pair {i + 1}/{len(pairs)} {names[0]} vs {names[1]} ({group}): s={res.score:.4f}, grid "
                f"{res.grid_a[0]}x{res.grid_a[1]}, AUC mean ours {res.auc['mean']['ours']:.3f} / gradcam_dot "
                f"{res.auc['mean']['gradcam_dot']:.3f} / random {res.auc['mean']['random']:.3f}; {n_fwd} forwards"
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
        f"simvis_widgets faithfulness benchmark (CPU): deletion curves of ours vs Grad-CAM vs random "
        f"({'quick' if s.quick else 'default'} mode)"
    )
    print("\n".join(header(info, run)))
    print(
        f"model:   {session!r}; Grad-CAM target layer {layer_name!r} (output equals the feature map: "
        f"{'yes' if layer_exact else 'NO'})"
    )
    same = sum(p.group == "same" for p in results)
    print(
        f"pairs:   {len(results)} ({same} same-photo: view 0 vs views 1 and 2 of {', '.join(photos)}; "
        f"{len(results) - same} cross-photo: view 0 of one photo vs view 1 of the next); A = the first of each pair"
    )
    grids = sorted({f"{p.grid_a[0]}x{p.grid_a[1]}" for p in results})
    print(
        f"removal: top k % of A's {'/'.join(grids)} feature cells (stride {session.stride} px blocks of the network "
        f"input), k = 0..100 % in steps of {s.step_percent} %; mean = A's mean colour, blur = Gaussian sigma "
        f"{s.blur_sigma:g} px; random = mean of {s.seeds} seeds per pair; {forwards} forward passes"
    )
    print()
    print(format_report(results, steps, stats, by_group))
    print()
    print(
        f"sanity: max |embed-based s(0) - explain(A, B).score| = {sanity['max_abs_embed_score_minus_explain_score']:.2e}; "
        f"|explain(A_mod, B).score - embed-based score| on one modified image = {sanity.get('explain_vs_embed_on_modified', float('nan')):.2e}; "
        f"max |map_a.sum() + global_term - score| = {sanity['max_abs_map_sum_plus_global_minus_score']:.2e}"
    )
    print(
        f"sanity: correlation of the cell maps with ours, mean over pairs: Grad-CAM dot (returned map, cell-averaged) "
        f"Pearson {sanity['mean_corr_gradcam_dot_vs_ours']:.4f} (min {sanity['min_corr_gradcam_dot_vs_ours']:.4f}), "
        f"Spearman {sanity['mean_spearman_gradcam_dot_vs_ours']:.4f}; Grad-CAM dot before ReLU/upsampling "
        f"{sanity['mean_corr_gradcam_dot_pre_relu_vs_ours']:.4f}; Grad-CAM cosine {sanity['mean_corr_gradcam_cos_vs_ours']:.4f}"
    )
    if s.pooling == "avg":
        print(
            "note: with average pooling and no head, Grad-CAM's channel weights for a dot target are B's embedding / N, "
            "so its pre-ReLU map is <a_i, e_B> / N, proportional to ours; the two rankings differ only through "
            "Grad-CAM's ReLU, min-max scaling, bilinear upsampling and the cell averaging."
        )
        print(
            "note: removing a cell changes the cosine by (to first order) <a_fill - a_i, e_B/|e_B| - s e_A/|e_A|> / (N |e_A|): "
            "the pre-ReLU map of Grad-CAM with a COSINE target is this marginal effect, while ours is the cell's share "
            "<a_i, e_B/|e_B|> / (N |e_A|) of the score (it omits the -s <a_i, e_A/|e_A|> term: removing a cell also "
            "shrinks |e_A|). A deletion curve measures the marginal effect; the first-order picture holds only for small k and "
            "ignores the receptive fields' spread beyond a cell, so the curves above are the test of which ranking works."
        )
    print(
        "note: on cross-photo pairs s(0) is small and the filled image can be as similar to B as A is, so s(k)/s(0) "
        "can exceed 1 (AUC > 1); compare methods on the paired differences and the same-photo group."
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
