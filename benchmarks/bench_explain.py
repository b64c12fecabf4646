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
* ``forward``       the raw forward pass to the feature layer of both images (``session._forward`` on the
  tensors of ``session._to_input([session.prepare(img)])``, one call per image), no decomposition;
* ``gradcam``       ``pytorch_grad_cam.GradCAM`` on a module that maps an image tensor to the session's
  (un-normalised) pooled embedding, target layer = the module whose output is the feature map, target =
  the dot product with image B's fixed embedding. One call gives ONE map (image A); a pair needs 2 calls;
* ``captum_ig``     ``captum.attr.IntegratedGradients`` (``n_steps=50``, black baseline) on A's input pixels
  with the same dot-product target. One call gives ONE map; a pair needs 2 calls. The timed calls use
  ``internal_batch_size=2`` (``--ig-batch``): on 2 CPU cores small internal batches are the fastest per
  step, so Captum is not handicapped; the default run adds one informational call with 10 (``--ig-batch-ref``).

All methods see the same input tensor: the session's own input size (shorter side 448 px by default).
Every timing is the median of several repeats after one warm-up (``time.perf_counter``); slow methods get
fewer repeats. The ratios against the goals of the issue are printed and marked met / not met:

1. Grad-CAM per pair (2 calls) / ours_cached            goal >= 20x
2. Grad-CAM per pair (2 calls, forward + backward) / ours_full   goal >= 2x
3. Captum IG per pair (2 calls) / ours_full              goal >= 200x
4. ours_cached / forward of the two images               goal <= 5 %

Run from the repository root::

    python benchmarks/bench_explain.py            # ~2-4 minutes on 2 CPU cores
    python benchmarks/bench_explain.py --quick    # fewer repeats, under a minute
    python benchmarks/bench_explain.py --json results.json

Timings on a shared machine are noisy: the load average at start and end is printed with the results, with a
warning when other processes competed for the cores. ``--models`` restricts the run to one model.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _machine  # noqa: E402  (the benchmarks folder)

from simvis_widgets import ModelSession
from simvis_widgets.decompose import decompose, pool

IG_STEPS = 50
MODELS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("efficientnet_lite0", {}),
    ("resnet50", {"pretrained": False}),
)


# --------------------------------------------------------------------------------------------------
# Settings and timing
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


QUICK = Settings(fast_repeats=5, full_repeats=3, gradcam_repeats=2, ig_repeats=1, ig_budget_s=0.0, ig_batch_ref=0,
                 quick=True)


@dataclass
class Timing:
    """Wall-clock seconds of the timed repeats (warm-up excluded) and their median."""

    median_s: float
    runs_s: list[float]

    @property
    def n(self) -> int:
        return len(self.runs_s)


def measure(
    fn: Callable[[Any], object],
    repeats: int,
    *,
    warmup: Callable[[], object] | None = None,
    setup: Callable[[], Any] | None = None,
    budget_s: float = math.inf,
) -> Timing:
    """Run ``warmup`` (default: ``fn`` once), then ``repeats`` timed calls ``fn(setup())`` (``setup`` untimed).

    Stops early, after at least one timed call, when the timed calls so far took ``budget_s`` seconds.
    """
    if warmup is None:
        fn(setup() if setup is not None else None)
    else:
        warmup()
    runs: list[float] = []
    for _ in range(max(1, repeats)):
        arg = setup() if setup is not None else None
        t0 = time.perf_counter()
        fn(arg)
        runs.append(time.perf_counter() - t0)
        if sum(runs) >= budget_s:
            break
    return Timing(statistics.median(runs), runs)


# --------------------------------------------------------------------------------------------------
# The embedding as a differentiable module, for Grad-CAM and Captum
# --------------------------------------------------------------------------------------------------


class EmbeddingNet(nn.Module):
    """Image tensor ``(B, 3, H, W)`` -> the session's pooled embedding ``(B, D)`` (head applied if any), without
    L2 normalisation and without ``inference_mode``, so gradients flow."""

    def __init__(self, session: ModelSession) -> None:
        super().__init__()
        self.model = session.model  # a submodule: Grad-CAM reads the device from its parameters
        self.extract: Callable[[Tensor], Tensor] = session._extract
        self.pooling = session.pooling
        self.p = session.p
        self.head = session.head

    def forward(self, x: Tensor) -> Tensor:
        feats = self.extract(x)
        e = pool(feats.flatten(2).transpose(1, 2), self.pooling, self.p)  # avg: mean over H, W
        if self.head is not None:
            e = e @ self.head.weight.T
            if self.head.bias is not None:
                e = e + self.head.bias
        return e


class DotTarget:
    """Grad-CAM target: the dot product of the output embedding with a fixed (detached) embedding."""

    def __init__(self, other: Tensor) -> None:
        self.other = other.detach()

    def __call__(self, model_output: Tensor) -> Tensor:
        return (model_output * self.other).sum(-1)


def feature_module(session: ModelSession) -> tuple[str, nn.Module, bool]:
    """The submodule whose output is the session's feature map: (name, module, output equals the features)."""
    module = getattr(session._extract, "module", None)
    if isinstance(module, nn.Module):
        return str(session.layer), module, True
    named = dict(session.model.named_modules())
    probe = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0)).to(session.device)
    reference = session._forward(probe)
    fallback: tuple[str, nn.Module, bool] | None = None
    for name in ("bn2", "conv_head"):
        if name not in named:
            continue
        captured: list[Tensor] = []
        handle = named[name].register_forward_hook(lambda _m, _i, out: captured.append(out.detach().clone()))
        try:
            with torch.no_grad():
                session._extract(probe)
        finally:
            handle.remove()
        if captured and captured[-1].shape == reference.shape:
            if torch.allclose(captured[-1].float(), reference, atol=1e-5):
                return name, named[name], True
            fallback = fallback or (name, named[name], False)
    if fallback is None:
        raise RuntimeError(f"no submodule of {session.name} outputs the feature map {tuple(reference.shape)}")
    return fallback


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


def _corr(x: Tensor | np.ndarray, y: Tensor | np.ndarray) -> float:
    a = np.asarray(x, dtype=np.float64).ravel()
    b = np.asarray(y, dtype=np.float64).ravel()
    if a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def _to_grid(m: Tensor | np.ndarray, grid: Sequence[int]) -> Tensor:
    """Average an ``(H, W)`` pixel map over the feature cells (exact when the cells tile the input)."""
    t = torch.as_tensor(np.asarray(m, dtype=np.float32)).reshape(1, 1, *np.asarray(m).shape[-2:])
    return F.adaptive_avg_pool2d(t, tuple(int(g) for g in grid))[0, 0]


def bench_model(name: str, kwargs: dict[str, Any], img_a: np.ndarray, img_b: np.ndarray, s: Settings,
                log: Callable[[str], None]) -> ModelResult:
    from captum.attr import IntegratedGradients
    from pytorch_grad_cam import GradCAM

    session = ModelSession.from_pretrained(name, **kwargs, device="cpu")
    prep_a, prep_b = session.prepare(img_a), session.prepare(img_b)
    x_a, x_b = session._to_input([prep_a]), session._to_input([prep_b])
    ex = session.explain(img_a, img_b)  # fills the cache
    layer_name, layer_module, layer_exact = feature_module(session)
    res = ModelResult(
        model=session.name, layer=str(session.layer), gradcam_layer=layer_name, gradcam_layer_exact=layer_exact,
        image_size=list(img_a.shape[:2]), input_a=list(prep_a.shape[:2]), input_b=list(prep_b.shape[:2]),
        grid_a=list(ex.grid_a), grid_b=list(ex.grid_b), channels=session.channels, stride=session.stride,
        score=ex.score,
    )
    log(f"  {session!r}")
    t = res.timings

    # ---- ours -------------------------------------------------------------------------------------
    log("  timing ours_cached / decompose / pairwise ...")
    t["ours_cached"] = measure(lambda _: session.explain(img_a, img_b), s.fast_repeats)
    t["ours_cached_prepared"] = measure(lambda _: session.explain(prep_a, prep_b), s.fast_repeats)
    (_, feats_a), (_, feats_b) = session._lookup([prep_a, prep_b])
    t["decompose_only"] = measure(
        lambda _: decompose(feats_a, feats_b, session.pooling, session.p, session.normalize, session.head),
        s.fast_repeats)
    t["pairwise"] = measure(lambda fresh: fresh.pairwise, s.fast_repeats, setup=lambda: session.explain(img_a, img_b))
    log("  timing ours_full ...")
    t["ours_full"] = measure(lambda _: session.explain(img_a, img_b), s.full_repeats, setup=session.clear_cache)
    session.explain(img_a, img_b)
    log("  timing forward ...")
    t["forward"] = measure(lambda _: (session._forward(x_a), session._forward(x_b)), s.full_repeats)
    x_ab = torch.cat([x_a, x_b])
    t["forward_batch2"] = measure(lambda _: session._forward(x_ab), s.full_repeats)

    # ---- Grad-CAM ---------------------------------------------------------------------------------
    net = EmbeddingNet(session).eval()
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
        t["gradcam"] = measure(lambda _: cams.append(cam(input_tensor=x_a, targets=[DotTarget(e_b)])),
                               s.gradcam_repeats)
        acts = cam.activations_and_grads.activations[0][0]
        grads = cam.activations_and_grads.gradients[0][0]
    cam_pre_relu = (grads.mean(dim=(1, 2))[:, None, None] * acts).sum(0)  # Grad-CAM before its ReLU
    net.zero_grad(set_to_none=True)
    res.sanity["corr_gradcam_returned_vs_map_a"] = _corr(_to_grid(cams[-1][0], ex.grid_a), ex.map_a)
    res.sanity["corr_gradcam_pre_relu_vs_map_a"] = _corr(cam_pre_relu, ex.map_a)

    # ---- Captum Integrated Gradients --------------------------------------------------------------
    def forward_func(x: Tensor) -> Tensor:
        return net(x) @ e_b

    ig = IntegratedGradients(forward_func)
    res.ig_batches = {"captum_ig": s.ig_batch, "captum_ig_ref": s.ig_batch_ref}
    black = session._to_input([np.zeros_like(prep_a)])  # a black image, normalised like every input
    attributions: list[Tensor] = []
    log(f"  timing captum_ig (n_steps={IG_STEPS}, internal_batch_size={s.ig_batch}; seconds to tens of seconds per call) ...")
    t["captum_ig"] = measure(
        lambda _: attributions.append(ig.attribute(x_a, baselines=black, n_steps=IG_STEPS,
                                                   internal_batch_size=s.ig_batch).detach()),
        s.ig_repeats,
        # warm-up: one internal batch of the same shape as the timed calls, 1/5 of the cost
        warmup=lambda: ig.attribute(x_a, baselines=black, n_steps=s.ig_batch, internal_batch_size=s.ig_batch),
        budget_s=s.ig_budget_s,
    )
    res.sanity["corr_ig_channel_sum_vs_map_a"] = _corr(_to_grid(attributions[-1][0].sum(0), ex.grid_a), ex.map_a)
    if s.ig_batch_ref > 0 and s.ig_batch_ref != s.ig_batch:
        log(f"  one informational captum_ig call with internal_batch_size={s.ig_batch_ref} ...")
        t["captum_ig_ref"] = measure(
            lambda _: ig.attribute(x_a, baselines=black, n_steps=IG_STEPS, internal_batch_size=s.ig_batch_ref),
            1, warmup=lambda: ig.attribute(x_a, baselines=black, n_steps=s.ig_batch_ref,
                                           internal_batch_size=s.ig_batch_ref))
    net.zero_grad(set_to_none=True)

    # ---- ratios -----------------------------------------------------------------------------------
    cached, full = t["ours_cached"].median_s, t["ours_full"].median_s
    gradcam_pair, ig_pair = 2 * t["gradcam"].median_s, 2 * t["captum_ig"].median_s
    fwd = t["forward"].median_s
    res.ratios = {
        "gradcam_pair_over_ours_cached": {"value": gradcam_pair / cached, "goal": ">= 20x", "met": gradcam_pair / cached >= 20},
        "gradcam_pair_over_ours_full": {"value": gradcam_pair / full, "goal": ">= 2x", "met": gradcam_pair / full >= 2},
        "captum_ig_pair_over_ours_full": {"value": ig_pair / full, "goal": ">= 200x", "met": ig_pair / full >= 200},
        "ours_cached_over_forward": {"value": cached / fwd, "goal": "<= 5 %", "met": cached / fwd <= 0.05},
        # informational: explain on inputs already at network size (no resize), and the decomposition alone
        "ours_cached_prepared_over_forward": {"value": t["ours_cached_prepared"].median_s / fwd, "goal": "info", "met": None},
        "decompose_only_over_forward": {"value": t["decompose_only"].median_s / fwd, "goal": "info", "met": None},
    }
    return res


# --------------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------------


def _ms(x: float) -> str:
    return f"{x * 1e3:10.2f} ms" if x < 10 else f"{x:10.2f} s "


def machine_info(threads: int) -> dict[str, Any]:
    return _machine.machine_info(threads, ("grad-cam", "captum", "timm", "torchvision"))


ROWS: tuple[tuple[str, str, int, str], ...] = (
    # key, label, calls per pair, description
    ("ours_cached", "ours_cached", 1, "explain(a, b), features cached: load+hash both (no resize on a hit) + decompose (2 maps + score)"),
    ("ours_cached_prepared", "  explain, prepared", 1, "the same on inputs already at network size: no resize, only hash + decompose"),
    ("decompose_only", "  decompose only", 1, "decompose(feats_a, feats_b) on the cached features"),
    ("pairwise", "  ex.pairwise", 1, "full N_A x N_B matrix on a fresh Explanation (on demand, extra)"),
    ("ours_full", "ours_full", 1, "explain(a, b) after clear_cache(): 2 forwards (one per image on CPU) + decompose"),
    ("forward", "forward", 1, "session._forward, image A then image B (2 calls), no decomposition"),
    ("forward_batch2", "  forward batch of 2", 1, "session._forward on A and B as one batch (informational; explain runs one per image on CPU)"),
    ("gradcam", "gradcam", 2, "GradCAM call = forward + backward, ONE map (A); pair = 2 calls"),
    ("captum_ig", "captum_ig", 2, f"IntegratedGradients n_steps={IG_STEPS}, black baseline, ONE map (A); pair = 2 calls"),
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
        f"== {r.model}: feature layer {r.layer!r}, C={r.channels}, stride {r.stride}; "
        f"Grad-CAM target layer {r.gradcam_layer!r} (output equals the feature map: {'yes' if r.gradcam_layer_exact else 'NO'})",
        f"   photo {r.image_size[0]}x{r.image_size[1]} px -> input A {r.input_a[0]}x{r.input_a[1]} px, "
        f"B {r.input_b[0]}x{r.input_b[1]} px (H x W, same tensor for every method); "
        f"grid A {r.grid_a[0]}x{r.grid_a[1]}, B {r.grid_b[0]}x{r.grid_b[1]}; score (cosine) {r.score:.4f}",
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
        verdict = "info" if ratio["met"] is None else ("MET" if ratio["met"] else "NOT MET")
        goal = "" if ratio["goal"] == "info" else ratio["goal"]
        lines.append(f"   {label:<55}{value:>10}   {goal:<8} {verdict}")
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
    d = asdict(r)
    d["timings"] = {k: {"median_s": v.median_s, "runs_s": v.runs_s, "n": v.n} for k, v in r.timings.items()}
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
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--quick", action="store_true", help="fewer repeats (about 1-1.5 minutes on 2 cores)")
    ap.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    ap.add_argument("--ig-batch", type=int, default=Settings.ig_batch,
                    help=f"Captum internal_batch_size of the timed IG calls (default {Settings.ig_batch})")
    ap.add_argument("--ig-batch-ref", type=int, default=None,
                    help=f"one extra informational IG call with this internal_batch_size (default {Settings.ig_batch_ref}, "
                    "none with --quick; 0: skip)")
    ap.add_argument("--models", nargs="+", default=[m for m, _ in MODELS], choices=[m for m, _ in MODELS],
                    help="models to benchmark (default: both)")
    return ap.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    import skimage.data

    base = QUICK if args.quick else Settings()
    overrides: dict[str, Any] = {"threads": args.threads, "ig_batch": args.ig_batch}
    if args.ig_batch_ref is not None:
        overrides["ig_batch_ref"] = args.ig_batch_ref
    settings = Settings(**{**asdict(base), **overrides})
    torch.set_num_threads(settings.threads)
    torch.manual_seed(0)
    started = time.perf_counter()
    load_start = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - started:6.1f} s]{msg}", file=sys.stderr, flush=True)

    img_a, img_b, _ = skimage.data.stereo_motorcycle()
    info = machine_info(settings.threads)
    results: list[ModelResult] = []
    for name, kwargs in MODELS:
        if name not in args.models:
            continue
        log(f" {name} ...")
        results.append(bench_model(name, kwargs, img_a, img_b, settings, log))
    load_end = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    total = time.perf_counter() - started

    print("simvis_widgets explanation benchmark (CPU): ours vs Grad-CAM vs Captum Integrated Gradients")
    print(f"machine: torch {info['torch']}, threads {info['threads']} (interop {info['interop_threads']}), "
          f"os.cpu_count() {info['cpu_count']}, CPU {info['cpu']}, python {info['python']}")
    print(f"         grad-cam {info['grad-cam']}, captum {info['captum']}, timm {info['timm']}, "
          f"torchvision {info['torchvision']}; load average start {load_start[0]:.2f}, end {load_end[0]:.2f}")
    print(f"images:  skimage.data.stereo_motorcycle() left (A) and right (B); mode {'quick' if settings.quick else 'default'}: "
          f"median of up to {settings.fast_repeats} (fast) / {settings.full_repeats} (full, forward) / "
          f"{settings.gradcam_repeats} (Grad-CAM) / {settings.ig_repeats} (IG) runs after one warm-up")
    print("per pair: Grad-CAM and IG give one map per call, so a pair (maps of A and B) = 2 x one call (measured on A)")
    cores = os.cpu_count() or 1
    if load_start[0] > 0.5 * cores or load_end[0] > 1.5 * max(settings.threads, 1):
        print(f"WARNING: the machine was busy (load average {load_start[0]:.2f} at start, {load_end[0]:.2f} at end, "
              f"{cores} CPUs): other processes competed for the cores, timings are noisy")
    for r in results:
        print()
        print(format_model(r))
    print()
    print("summary (goals met):")
    for r in results:
        flags = ", ".join(f"({i}) {'met' if r.ratios[k]['met'] else 'NOT met'}"
                          for i, k in enumerate(list(RATIO_LABELS)[:4], start=1))
        print(f"   {r.model:<28}{flags}")
    print(f"total benchmark time {total:.0f} s")

    out: dict[str, Any] = {
        "machine": info, "load_average_start": list(load_start), "load_average_end": list(load_end),
        "settings": asdict(settings), "ig_n_steps": IG_STEPS, "total_s": total,
        "images": "skimage.data.stereo_motorcycle() left (A), right (B)",
        "models": [_jsonable(r) for r in results],
    }
    if args.json:
        _machine.write_json(args.json, out)
    return out


if __name__ == "__main__":
    main()
