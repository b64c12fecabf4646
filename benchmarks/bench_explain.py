"""Benchmark: how fast is an exact similarity explanation, next to Grad-CAM and Integrated Gradients?

For two models -- the embedded default ``ModelSession.from_pretrained("efficientnet_lite0")`` (real ImageNet
weights, offline) and ``ModelSession.from_pretrained("resnet50", pretrained=False)`` (random init, offline) --
and one pair of real photos (``skimage.data.stereo_motorcycle()``, left and right views), this script times,
side by side in one run, on the CPU:

* ``ours_cached``   ``session.explain(a, b)`` with both images' features already cached: load / resize /
  hash of both photos + the decomposition (both maps and the score). Also reported separately: the bare
  ``decompose`` call on the cached features, and building the full pairwise matrix ``ex.pairwise`` on a
  fresh :class:`~simvis_widgets.Explanation`;
* ``ours_full``     ``session.explain(a, b)`` after ``session.clear_cache()``: including the forward passes;
* ``forward``       the raw forward pass to the feature layer of both images (``session.forward`` on the
  tensors of ``session.to_input([session.prepare(img)])``, one call per image), no decomposition;
* ``gradcam``       ``pytorch_grad_cam.GradCAM`` on a module that maps an image tensor to the session's
  (un-normalised) pooled embedding, target layer = the module whose output is the feature map, target =
  the dot product with image B's fixed embedding. One call gives ONE map (image A); a pair needs 2 calls;
* ``captum_ig``     ``captum.attr.IntegratedGradients`` (``n_steps=50``, black baseline) on A's input pixels
  with the same dot-product target. One call gives ONE map; a pair needs 2 calls. The timed calls use
  ``internal_batch_size=2`` (``--ig-batch``): on 2 CPU cores small internal batches are the fastest per
  step, so Captum is not handicapped; the default run adds one informational call with 10 (``--ig-batch-ref``).

All methods see the same input tensor: the session's own input size (shorter side 448 px by default).
Every timing is the median of several repeats after one warm-up (``benchmarks.harness.measure``); slow methods
get fewer repeats. The ratios against the goals of the issue are printed and marked met / not met:

1. Grad-CAM per pair (2 calls) / ours_cached            goal >= 20x
2. Grad-CAM per pair (2 calls, forward + backward) / ours_full   goal >= 2x
3. Captum IG per pair (2 calls) / ours_full              goal >= 200x
4. ours_cached / forward of the two images               goal <= 5 %

Run from the repository root::

    python -m benchmarks.bench_explain            # ~2-4 minutes on 2 CPU cores
    python -m benchmarks.bench_explain --quick    # fewer repeats, about 1-1.5 minutes
    python -m benchmarks.bench_explain --json results.json

Timings on a shared machine are noisy: the load average at start and end is printed with the results, with a
warning when other processes competed for the cores. ``--models`` restricts the run to one model (the quickest
check that the script runs: ``--quick --models efficientnet_lite0``).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from benchmarks.attribution import PACKAGES, DotTarget, EmbeddingNet, corr, feature_module, to_grid
from benchmarks.harness import (
    Run,
    Timing,
    arg_parser,
    header,
    machine_info,
    measure,
    override,
    to_jsonable,
    verdict,
    write_json,
)
from simvis_widgets import ModelSession
from simvis_widgets.decompose import decompose

IG_STEPS = 50
MODELS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("efficientnet_lite0", {}),
    ("resnet50", {"pretrained": False}),
)


# --------------------------------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    """Repeats per method (after one warm-up each) and time caps for the slow ones."""

    fast_repeats: int = 30
    """ours_cached, decompose only, pairwise."""
    full_repeats: int = 5
    """ours_full and forward."""
    gradcam_repeats: int = 5
    ig_repeats: int = 2
    ig_budget_s: float = 45.0
    """No further IG repeat once the IG repeats so far took this long."""
    ig_batch: int = 2
    """Captum ``internal_batch_size`` of the timed IG calls (on 2 CPU cores 1-2 is fastest per step; 10 is ~1.8x
    slower per step, see ``ig_batch_ref``)."""
    ig_batch_ref: int = 10
    """One extra, informational IG call with this ``internal_batch_size`` (0: skip)."""
    threads: int = 2
    quick: bool = False


QUICK = Settings(
    fast_repeats=5, full_repeats=3, gradcam_repeats=2, ig_repeats=1, ig_budget_s=0.0, ig_batch_ref=0, quick=True
)


# --------------------------------------------------------------------------------------------------
# One model
# --------------------------------------------------------------------------------------------------


@dataclass
class ModelResult:
    model: str
    layer: str
    gradcam_layer: str
    gradcam_layer_exact: bool
    image_size: list[int]
    input_a: list[int]
    input_b: list[int]
    grid_a: list[int]
    grid_b: list[int]
    channels: int
    stride: int
    score: float
    timings: dict[str, Timing] = field(default_factory=dict)
    ratios: dict[str, dict[str, Any]] = field(default_factory=dict)
    sanity: dict[str, float] = field(default_factory=dict)
    ig_batches: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def bench_model(
    name: str, kwargs: dict[str, Any], img_a: np.ndarray, img_b: np.ndarray, s: Settings, log: Callable[[str], None]
) -> ModelResult:
    from captum.attr import IntegratedGradients
    from pytorch_grad_cam import GradCAM

    session = ModelSession.from_pretrained(name, **kwargs, device="cpu")
    prep_a, prep_b = session.prepare(img_a), session.prepare(img_b)
    x_a, x_b = session.to_input([prep_a]), session.to_input([prep_b])
    ex = session.explain(img_a, img_b)  # fills the cache
    net = EmbeddingNet(session).eval()
    layer_name, layer_module, layer_exact = feature_module(session, net)
    res = ModelResult(
        model=session.name,
        layer=str(session.layer),
        gradcam_layer=layer_name,
        gradcam_layer_exact=layer_exact,
        image_size=list(img_a.shape[:2]),
        input_a=list(prep_a.shape[:2]),
        input_b=list(prep_b.shape[:2]),
        grid_a=list(ex.grid_a),
        grid_b=list(ex.grid_b),
        channels=session.channels,
        stride=session.stride,
        score=ex.score,
    )
    log(f"  {session!r}")
    t = res.timings

    # ---- ours -------------------------------------------------------------------------------------
    log("  timing ours_cached / decompose / pairwise ...")
    t["ours_cached"] = measure(lambda: session.explain(img_a, img_b), s.fast_repeats)
    t["ours_cached_prepared"] = measure(lambda: session.explain(prep_a, prep_b), s.fast_repeats)
    enc_a, enc_b = session.encode_many([prep_a, prep_b])
    feats_a, feats_b = enc_a.features, enc_b.features
    t["decompose_only"] = measure(
        lambda: decompose(feats_a, feats_b, session.pooling, session.p, session.normalize, session.head), s.fast_repeats
    )
    t["pairwise"] = measure(lambda fresh: fresh.pairwise, s.fast_repeats, setup=lambda: session.explain(img_a, img_b))
    log("  timing ours_full ...")
    t["ours_full"] = measure(lambda _: session.explain(img_a, img_b), s.full_repeats, setup=session.clear_cache)
    session.explain(img_a, img_b)
    log("  timing forward ...")
    t["forward"] = measure(lambda: (session.forward(x_a), session.forward(x_b)), s.full_repeats)
    x_ab = torch.cat([x_a, x_b])
    t["forward_batch2"] = measure(lambda: session.forward(x_ab), s.full_repeats)

    # ---- Grad-CAM ---------------------------------------------------------------------------------
    frozen = [p for p in net.parameters() if not p.requires_grad]
    for p in frozen:
        p.requires_grad_(True)
    if frozen:
        res.notes.append(f"{len(frozen)} parameters had requires_grad=False; set to True for Grad-CAM")
    with torch.no_grad():
        e_a, e_b = net(x_a)[0].detach(), net(x_b)[0].detach()
    cos = float(F.cosine_similarity(e_a, e_b, dim=0))
    res.sanity["score_from_module_minus_ex_score"] = cos - ex.score
    log("  timing gradcam ...")
    cams: list[np.ndarray] = []
    with GradCAM(model=net, target_layers=[layer_module]) as cam:
        t["gradcam"] = measure(lambda: cams.append(cam(input_tensor=x_a, targets=[DotTarget(e_b)])), s.gradcam_repeats)
        acts = cam.activations_and_grads.activations[0][0]
        grads = cam.activations_and_grads.gradients[0][0]
    cam_pre_relu = (grads.mean(dim=(1, 2))[:, None, None] * acts).sum(0)  # Grad-CAM before its ReLU
    net.zero_grad(set_to_none=True)
    res.sanity["corr_gradcam_returned_vs_map_a"] = corr(to_grid(cams[-1][0], ex.grid_a), ex.map_a)
    res.sanity["corr_gradcam_pre_relu_vs_map_a"] = corr(cam_pre_relu, ex.map_a)

    # ---- Captum Integrated Gradients --------------------------------------------------------------
    def forward_func(x: Tensor) -> Tensor:
        return net(x) @ e_b

    ig = IntegratedGradients(forward_func)
    res.ig_batches = {"captum_ig": s.ig_batch, "captum_ig_ref": s.ig_batch_ref}
    black = session.to_input([np.zeros_like(prep_a)])  # a black image, normalised like every input
    attributions: list[Tensor] = []
    log(
        f"  timing captum_ig (n_steps={IG_STEPS}, internal_batch_size={s.ig_batch}; seconds to tens of seconds per call) ..."
    )
    t["captum_ig"] = measure(
        lambda: attributions.append(
            ig.attribute(x_a, baselines=black, n_steps=IG_STEPS, internal_batch_size=s.ig_batch).detach()
        ),
        s.ig_repeats,
        # warm-up: one internal batch of the same shape as the timed calls, 1/5 of the cost
        warmup=lambda: ig.attribute(x_a, baselines=black, n_steps=s.ig_batch, internal_batch_size=s.ig_batch),
        budget_s=s.ig_budget_s,
    )
    res.sanity["corr_ig_channel_sum_vs_map_a"] = corr(to_grid(attributions[-1][0].sum(0), ex.grid_a), ex.map_a)
    if s.ig_batch_ref > 0 and s.ig_batch_ref != s.ig_batch:
        log(f"  one informational captum_ig call with internal_batch_size={s.ig_batch_ref} ...")
        t["captum_ig_ref"] = measure(
            lambda: ig.attribute(x_a, baselines=black, n_steps=IG_STEPS, internal_batch_size=s.ig_batch_ref),
            1,
            warmup=lambda: ig.attribute(
                x_a, baselines=black, n_steps=s.ig_batch_ref, internal_batch_size=s.ig_batch_ref
            ),
        )
    net.zero_grad(set_to_none=True)

    # ---- ratios -----------------------------------------------------------------------------------
    cached, full = t["ours_cached"].median_s, t["ours_full"].median_s
    gradcam_pair, ig_pair = 2 * t["gradcam"].median_s, 2 * t["captum_ig"].median_s
    fwd = t["forward"].median_s
    res.ratios = {
        "gradcam_pair_over_ours_cached": {
            "value": gradcam_pair / cached,
            "goal": ">= 20x",
            "met": gradcam_pair / cached >= 20,
        },
        "gradcam_pair_over_ours_full": {"value": gradcam_pair / full, "goal": ">= 2x", "met": gradcam_pair / full >= 2},
        "captum_ig_pair_over_ours_full": {"value": ig_pair / full, "goal": ">= 200x", "met": ig_pair / full >= 200},
        "ours_cached_over_forward": {"value": cached / fwd, "goal": "<= 5 %", "met": cached / fwd <= 0.05},
        # informational: explain on inputs already at network size (no resize), and the decomposition alone
        "ours_cached_prepared_over_forward": {
            "value": t["ours_cached_prepared"].median_s / fwd,
            "goal": "info",
            "met": None,
        },
        "decompose_only_over_forward": {"value": t["decompose_only"].median_s / fwd, "goal": "info", "met": None},
    }
    return res


# --------------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------------


def _ms(x: float) -> str:
    return f"{x * 1e3:10.2f} ms" if x < 10 else f"{x:10.2f} s "


ROWS: tuple[tuple[str, str, int, str], ...] = (
    # key, label, calls per pair, description
    (
        "ours_cached",
        "ours_cached",
        1,
        "explain(a, b), features cached: load+hash both (no resize on a hit) + decompose (2 maps + score)",
    ),
    (
        "ours_cached_prepared",
        "  explain, prepared",
        1,
        "the same on inputs already at network size: no resize, only hash + decompose",
    ),
    ("decompose_only", "  decompose only", 1, "decompose(feats_a, feats_b) on the cached features"),
    ("pairwise", "  ex.pairwise", 1, "full N_A x N_B matrix on a fresh Explanation (on demand, extra)"),
    ("ours_full", "ours_full", 1, "explain(a, b) after clear_cache(): 2 forwards (one per image on CPU) + decompose"),
    ("forward", "forward", 1, "session.forward, image A then image B (2 calls), no decomposition"),
    (
        "forward_batch2",
        "  forward batch of 2",
        1,
        "session.forward on A and B as one batch (informational; explain runs one per image on CPU)",
    ),
    ("gradcam", "gradcam", 2, "GradCAM call = forward + backward, ONE map (A); pair = 2 calls"),
    (
        "captum_ig",
        "captum_ig",
        2,
        f"IntegratedGradients n_steps={IG_STEPS}, black baseline, ONE map (A); pair = 2 calls",
    ),
    ("captum_ig_ref", "  captum_ig batch ref", 2, "the same with the reference internal_batch_size (informational)"),
)

RATIO_LABELS: dict[str, str] = {
    "gradcam_pair_over_ours_cached": "(1) Grad-CAM per pair (2 calls) / ours_cached",
    "gradcam_pair_over_ours_full": "(2) Grad-CAM per pair (2 calls, fwd+bwd) / ours_full",
    "captum_ig_pair_over_ours_full": "(3) Captum IG per pair (2 calls) / ours_full",
    "ours_cached_over_forward": "(4) ours_cached / forward of both images",
    "ours_cached_prepared_over_forward": "    explain on prepared inputs / forward of both images",
    "decompose_only_over_forward": "    decompose only / forward of both images",
}


def format_model(r: ModelResult) -> str:
    lines = [
        (
            f"== {r.model}: feature layer {r.layer!r}, C={r.channels}, stride {r.stride}; "
            f"Grad-CAM target layer {r.gradcam_layer!r} (output equals the feature map: {'yes' if r.gradcam_layer_exact else 'NO'})"
        ),
        (
            f"   photo {r.image_size[0]}x{r.image_size[1]} px -> input A {r.input_a[0]}x{r.input_a[1]} px, "
            f"B {r.input_b[0]}x{r.input_b[1]} px (H x W, same tensor for every method); "
            f"grid A {r.grid_a[0]}x{r.grid_a[1]}, B {r.grid_b[0]}x{r.grid_b[1]}; score (cosine) {r.score:.4f}"
        ),
        f"   {'method':<22}{'median':>13}{'runs':>6}{'per pair':>14}   what",
    ]
    for key, label, calls, what in ROWS:
        if key not in r.timings:
            continue
        tm = r.timings[key]
        if key.startswith("captum_ig"):
            what = f"{what} [internal_batch_size={r.ig_batches[key]}]"
        lines.append(f"   {label:<22}{_ms(tm.median_s)}{tm.n:>6}{_ms(calls * tm.median_s)}   {what}")
    lines.append(f"   {'ratio':<55}{'value':>10}   {'goal':<8} result")
    for key, label in RATIO_LABELS.items():
        ratio = r.ratios[key]
        value = f"{100 * ratio['value']:8.2f} %" if key.endswith("forward") else f"{ratio['value']:8.1f} x"
        goal = "" if ratio["goal"] == "info" else ratio["goal"]
        lines.append(f"   {label:<55}{value:>10}   {goal:<8} {verdict(ratio['met'])}")
    sn = r.sanity
    lines.append(
        f"   sanity: cosine of the benchmark module's embeddings - ex.score = {sn['score_from_module_minus_ex_score']:+.2e}"
    )
    lines.append(
        "   sanity (informational, equality NOT required): corr with our map_a of "
        f"Grad-CAM's returned map (ReLU, min-max, upsampled) averaged to the grid = {sn['corr_gradcam_returned_vs_map_a']:.4f}; "
        f"Grad-CAM before its ReLU (from its captured activations/gradients) = {sn['corr_gradcam_pre_relu_vs_map_a']:.4f}; "
        f"IG attribution summed over channels, averaged to the grid = {sn['corr_ig_channel_sum_vs_map_a']:.4f}"
    )
    lines.extend(f"   note: {n}" for n in r.notes)
    return "\n".join(lines)


def _jsonable(r: ModelResult) -> dict[str, Any]:
    d = to_jsonable(r)
    d["timings"]["gradcam"]["per_pair_s"] = 2 * r.timings["gradcam"].median_s
    for key in ("captum_ig", "captum_ig_ref"):
        if key in d["timings"]:
            d["timings"][key]["per_pair_s"] = 2 * r.timings[key].median_s
            d["timings"][key]["internal_batch_size"] = r.ig_batches[key]
    return d


# --------------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = arg_parser(__doc__, "fewer repeats (about 1-1.5 minutes on 2 cores)")
    ap.add_argument(
        "--ig-batch",
        type=int,
        default=Settings.ig_batch,
        help=f"Captum internal_batch_size of the timed IG calls (default {Settings.ig_batch})",
    )
    ap.add_argument(
        "--ig-batch-ref",
        type=int,
        default=None,
        help=f"one extra informational IG call with this internal_batch_size (default {Settings.ig_batch_ref}, "
        "none with --quick; 0: skip)",
    )
    ap.add_argument(
        "--models",
        nargs="+",
        default=[m for m, _ in MODELS],
        choices=[m for m, _ in MODELS],
        help="models to benchmark (default: both)",
    )
    return ap.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    import skimage.data

    settings = override(
        QUICK if args.quick else Settings(),
        threads=args.threads,
        ig_batch=args.ig_batch,
        ig_batch_ref=args.ig_batch_ref,
    )
    run = Run.start(settings.threads)
    img_a, img_b, _ = skimage.data.stereo_motorcycle()
    info = machine_info(settings.threads, PACKAGES)
    results: list[ModelResult] = []
    for name, kwargs in MODELS:
        if name not in args.models:
            continue
        run.log(f"{name} ...")
        results.append(bench_model(name, kwargs, img_a, img_b, settings, run.log))
    run.finish()

    print("simvis_widgets explanation benchmark (CPU): ours vs Grad-CAM vs Captum Integrated Gradients")
    print("\n".join(header(info, run)))
    print(
        f"images:  skimage.data.stereo_motorcycle() left (A) and right (B); mode {'quick' if settings.quick else 'default'}: "
        f"median of up to {settings.fast_repeats} (fast) / {settings.full_repeats} (full, forward) / "
        f"{settings.gradcam_repeats} (Grad-CAM) / {settings.ig_repeats} (IG) runs after one warm-up"
    )
    print("per pair: Grad-CAM and IG give one map per call, so a pair (maps of A and B) = 2 x one call (measured on A)")
    busy = run.busy_note("other processes competed for the cores, timings are noisy")
    if busy:
        print(busy)
    for r in results:
        print()
        print(format_model(r))
    print()
    print("summary (goals met):")
    for r in results:
        flags = ", ".join(
            f"({i}) {'met' if r.ratios[k]['met'] else 'NOT met'}" for i, k in enumerate(list(RATIO_LABELS)[:4], start=1)
        )
        print(f"   {r.model:<28}{flags}")
    print(f"total benchmark time {run.total_s:.0f} s")

    out: dict[str, Any] = {
        "machine": info,
        **run.record(),
        "settings": asdict(settings),
        "ig_n_steps": IG_STEPS,
        "images": "skimage.data.stereo_motorcycle() left (A), right (B)",
        "models": [_jsonable(r) for r in results],
    }
    write_json(args.json, out)
    return out


if __name__ == "__main__":
    main()
