"""Benchmark: how fast does the forward pass run on the CPU, and what do the session's settings buy?

Network: the embedded EfficientNet-Lite0 (real weights, offline), ``forward_features``, batch 16, at 224 and 448
px. Every setting runs in a **fresh process** (the allocator state is process-wide and a warm heap would flatter
whatever runs second), the settings one after another within a round, and the report takes the median over
``--rounds`` rounds, so slow drift of the machine's load hits every setting alike.

Raw forward passes (``model.forward_features`` on a random float batch, no session), ``16 x 4 x --batches``
images like the library settings below, each rate taken over the whole run (total images / total time, as the
library settings are timed; the median batch's rate is kept in the JSON as ``median_img_s``):

* ``eager``           plain torch eager, glibc's default allocator: what a user's own loop does;
* ``jemalloc``        the same with jemalloc preloaded (``LD_PRELOAD``, ``MALLOC_CONF`` =
  :data:`JEMALLOC_CONF`; skipped when Debian's libjemalloc2 is missing);
* ``mallopt``         the same after :func:`simvis_widgets.runtime.tune_allocator` (what sessions set);
* ``tuned``           that plus ``channels_last`` model and input;
* ``folded``          that plus the batch norms folded into their convolutions
  (:func:`simvis_widgets.fusion.inference_copy` with ``padding=False``);
* ``folded_pad``      that plus timm's TensorFlow "same" padding folded into its convolutions
  (:func:`simvis_widgets.fusion.inference_copy`): the **new raw forward**, what sessions run;
* ``compile``         ``folded`` through ``torch.compile`` (inductor, default mode; the first call's compile time
  is reported apart);
* ``compile_freeze``  ``folded_pad`` through ``torch.compile`` with inductor's ``freezing`` (weights folded and
  prepacked for oneDNN; set process-wide, which only a benchmark child may do);
* ``onednn_graph``    ``folded_pad`` traced and frozen by TorchScript with oneDNN Graph fusion on
  (``torch.jit.enable_onednn_fusion``; ``torch.jit.freeze`` is deprecated in favour of ``torch.compile``);
* ``bf16``            ``folded`` under bfloat16 autocast (the session's ``amp=True`` on a CPU; AMX where the CPU
  has it);
* ``onnxruntime``     the plain network exported to ONNX for this one input shape (``torch.onnx.export``,
  TorchScript exporter) and run by ONNX Runtime's CPU provider with as many threads (it fuses the batch norms
  itself); the export time is reported apart. Skipped unless ``onnxruntime`` and ``onnx`` are installed (they
  are not dependencies of the package);
* ``openvino``        the plain network converted by OpenVINO (``openvino.convert_model``) with a dynamic batch and
  image size, as a session would need it, compiled for the CPU in float32 (``INFERENCE_PRECISION_HINT=f32``:
  OpenVINO's default on AMX / AVX-512-BF16 CPUs is bfloat16) with as many threads; the conversion and compile
  time is reported apart;
* ``openvino_static`` the same compiled for this one input shape. Both are skipped unless ``openvino`` is
  installed (not a dependency of the package).

Every setting from ``folded`` on reports its largest deviation from the float32 eager features
(``max |a - b| / max |b|``): bf16 changes the features, the others only round differently.

Through the library, on pre-sized uint8 images (the resize is a no-op, hashing and checks included):

* ``embed_many``      one ``session.embed_many`` call on ``16 x 4 x --batches`` images (320 by default: fixed
  costs amortised as in real use) with the default session (``batch_size=16``);
* ``gallery_build``   ``Gallery.build`` of as many images into a new Lance dataset (``features="store"``, the
  default; the verified open at the end included);
* ``gallery_paired``  ``Gallery.build`` and the raw ``folded_pad`` forward alternated in one process (ABBA, as many
  images a run as ``gallery_build``, :data:`PAIRS` pairs): the median per-pair ratio, which the machine's drift
  between the fresh processes above does not touch (on these shared cores one setting's rate moved by 1.5x
  between rounds);
* ``explain``         ``session.explain(a, b)`` of two images not in the cache (two forward passes of one image,
  then the decomposition), as pairs per second.

Each child also reports its resident memory: the peak (VmHWM), after the timed runs, and after
:func:`simvis_widgets.runtime.release_memory`. The compute limit: GFLOP per image (torch's flop counter, a
multiply-add counted as 2) times images per second, next to the float32 matrix-multiply rate measured on the
same cores (``torch.mm`` 2048 x 2048, the practical peak).

Goals (issue 14): ``embed_many`` >= 2.5 x ``eager`` at 224 px and >= 4 x at 448 px; ``gallery_build`` >= 90 % of
``folded_pad`` (both the fresh-process ratio and the paired one are reported).

Run from the repository root::

    python -m benchmarks.bench_forward                  # ~12 minutes on 2 cores (3 rounds)
    python -m benchmarks.bench_forward --quick          # 1 round, fewer batches: ~4 minutes
    python -m benchmarks.bench_forward --json out.json
"""

from __future__ import annotations

import argparse
import ctypes.util
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.harness import (
    REPO,
    Run,
    arg_parser,
    header,
    machine_info,
    proc_status,
    random_images,
    require_positive,
    verdict,
    write_json,
)

RAW = (
    "eager",
    "jemalloc",
    "mallopt",
    "tuned",
    "folded",
    "folded_pad",
    "compile",
    "compile_freeze",
    "onednn_graph",
    "bf16",
    "onnxruntime",
    "openvino",
    "openvino_static",
)
AS_BUILT = ("eager", "jemalloc", "mallopt", "tuned")
"""Settings that run the network as built: no copy or export whose features need comparing."""
ON_PADDING_FOLD = ("folded_pad", "compile_freeze", "onednn_graph")
"""Settings that run the sessions' inference copy (batch norms and same padding folded)."""
EXPORTED = ("onnxruntime", "openvino", "openvino_static")
"""Settings that run the plain network in another runtime (converted once per process, the time reported)."""
LIBRARY = ("embed_many", "gallery_build", "gallery_paired", "explain")
SETTINGS = RAW + LIBRARY
SIZES = (224, 448)
BATCH = 16
JEMALLOC_CONF = "dirty_decay_ms:-1,muzzy_decay_ms:-1"
"""Keep freed pages (jemalloc's default decay hands them back within 10 s: measured slower than glibc here)."""
LIBRARY_BATCHES = 4
"""Every setting times this many times ``--batches`` batches: embed_many and Gallery.build in one call."""
GOALS = {224: 2.5, 448: 4.0}
GALLERY_SHARE = 0.9
NEW_RAW = "folded_pad"
"""The raw forward sessions run: the gallery goal's reference."""
PAIRS = 4
"""``gallery_paired`` alternates this many raw-forward and Gallery.build runs (ABBA order)."""


@dataclasses.dataclass(frozen=True)
class Settings:
    rounds: int = 3
    batches: int = 5
    sizes: tuple[int, ...] = SIZES
    settings: tuple[str, ...] = SETTINGS


QUICK = Settings(rounds=1, batches=3)


def jemalloc_path() -> str | None:
    found = ctypes.util.find_library("jemalloc")
    for candidate in (
        found,
        "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2",
        "/usr/lib/aarch64-linux-gnu/libjemalloc.so.2",
    ):
        if candidate and Path(candidate).exists():
            return candidate
    return None


# --------------------------------------------------------------------------------------------------
# The child: one setting at one size, in its own process
# --------------------------------------------------------------------------------------------------


def _raw_step(setting: str, size: int) -> tuple[Any, dict[str, Any]]:
    """One batch of the raw forward pass of ``setting`` at ``size`` px, as a function of nothing, and what its
    preparation measured (compile or export time, deviation from the float32 eager features)."""
    import torch

    from simvis_widgets.fusion import inference_copy, relative_difference
    from simvis_widgets.models import build_backbone
    from simvis_widgets.runtime import tune_allocator

    if setting != "eager" and setting != "jemalloc":
        tune_allocator()
    model, _ = build_backbone("efficientnet_lite0")
    x = torch.randn(BATCH, 3, size, size)
    extra: dict[str, Any] = {}
    if setting not in AS_BUILT:
        with torch.inference_mode():
            reference = model.forward_features(x)
    if setting in ("tuned", "folded", "compile", "bf16", *ON_PADDING_FOLD):
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    if setting in ("folded", "compile", "bf16", *ON_PADDING_FOLD):
        found = inference_copy(
            model, lambda network, batch: network.forward_features(batch), x[:1], padding=setting in ON_PADDING_FOLD
        )
        assert found is not None, "EfficientNet-Lite0 has batch norms to fold"
        model = found.network
    forward = model.forward_features
    t0 = time.perf_counter()
    if setting in ("compile", "compile_freeze"):
        import torch._inductor.config as inductor_config

        inductor_config.freezing = setting == "compile_freeze"
        forward = torch.compile(model.forward_features)
    if setting == "onednn_graph":
        torch.jit.enable_onednn_fusion(True)
        with torch.no_grad():
            forward = torch.jit.freeze(torch.jit.trace(_features_module(model), x))
            forward(x)  # the profiling executor fuses on the second call
    if setting in ("compile", "compile_freeze", "onednn_graph"):
        with torch.inference_mode():
            forward(x)
        extra["compile_s"] = time.perf_counter() - t0
    if setting == "onnxruntime":
        forward, extra["export_s"] = _onnx_forward(model, x)
    if setting.startswith("openvino"):
        forward, extra["export_s"] = _openvino_forward(model, x, dynamic=setting == "openvino")
    if setting not in AS_BUILT:
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=setting == "bf16"):
            extra["max_rel_dev"] = relative_difference(forward(x).float(), reference)

    def step() -> None:
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=setting == "bf16"):
            forward(x)

    step()  # warm-up: first-touch of the heap, oneDNN primitive creation
    return step, extra


def _timed(step: Any, batches: int) -> list[float]:
    times = []
    for _ in range(batches):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return times


def _raw(setting: str, size: int, batches: int) -> dict[str, Any]:
    step, extra = _raw_step(setting, size)
    times = _timed(step, LIBRARY_BATCHES * batches)
    # the rate over the whole run, as the library settings are timed (a median of batches would leave out the
    # slow batches that a whole embed_many or Gallery.build run pays for)
    return {"img_s": BATCH * len(times) / sum(times), "median_img_s": BATCH / statistics.median(times), **extra}


def _features_module(model: Any) -> Any:
    """``model.forward_features`` as a module's ``forward`` (what exporters trace)."""
    import torch

    class Features(torch.nn.Module):
        def __init__(self, network: Any) -> None:
            super().__init__()
            self.network = network

        def forward(self, batch: Any) -> Any:
            return self.network.forward_features(batch)

    return Features(model).eval()


def _onnx_forward(model: Any, x: Any) -> tuple[Any, float]:
    """``model.forward_features`` exported for ``x``'s shape and served by ONNX Runtime, with the export time."""
    import io

    import onnxruntime as ort
    import torch

    t0 = time.perf_counter()
    buffer = io.BytesIO()
    torch.onnx.export(_features_module(model), (x,), buffer, dynamo=False, input_names=["x"], opset_version=17)
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    session = ort.InferenceSession(buffer.getvalue(), options, providers=["CPUExecutionProvider"])
    took = time.perf_counter() - t0

    def forward(batch: Any) -> Any:
        return torch.from_numpy(session.run(None, {"x": batch.contiguous().numpy()})[0])

    return forward, took


def _openvino_forward(model: Any, x: Any, dynamic: bool) -> tuple[Any, float]:
    """``model.forward_features`` converted by OpenVINO (a dynamic batch and image size, or ``x``'s shape) and
    compiled for the CPU in float32 with torch's thread count, with the conversion and compile time."""
    import openvino as ov
    import torch

    t0 = time.perf_counter()
    shape = ov.PartialShape([-1, 3, -1, -1] if dynamic else list(x.shape))
    converted = ov.convert_model(_features_module(model), example_input=x, input=[shape])
    config = {"INFERENCE_NUM_THREADS": torch.get_num_threads(), "INFERENCE_PRECISION_HINT": "f32"}
    request = ov.Core().compile_model(converted, "CPU", config).create_infer_request()
    took = time.perf_counter() - t0

    def forward(batch: Any) -> Any:
        return torch.from_numpy(request.infer({0: batch.contiguous().numpy()})[0].copy())

    return forward, took


def _available(setting: str) -> bool:
    if setting == "jemalloc":
        return jemalloc_path() is not None
    if setting in EXPORTED:
        import importlib.util

        needs = ("onnxruntime", "onnx") if setting == "onnxruntime" else ("openvino",)
        return all(importlib.util.find_spec(name) is not None for name in needs)
    return True


def _library(setting: str, size: int, batches: int) -> dict[str, Any]:
    import simvis_widgets as sv

    session = sv.ModelSession.from_pretrained("efficientnet_lite0", size=size)
    if setting == "embed_many":
        session.embed_many(random_images(BATCH, size, 99), batch_size=BATCH, progress=False)  # warm-up
        images = random_images(BATCH * LIBRARY_BATCHES * batches, size, 1)
        t0 = time.perf_counter()
        session.embed_many(images, batch_size=BATCH, progress=False)
        return {"img_s": len(images) / (time.perf_counter() - t0)}
    if setting == "gallery_build":
        sv.Gallery.build(random_images(BATCH, size, 99), session, progress=False, batch_size=BATCH)  # warm-up
        images = random_images(BATCH * LIBRARY_BATCHES * batches, size, 1)
        with tempfile.TemporaryDirectory() as folder:
            t0 = time.perf_counter()
            sv.Gallery.build(images, session, Path(folder) / "g.lance", progress=False, batch_size=BATCH)
            took = time.perf_counter() - t0
        return {"img_s": len(images) / took}
    if setting == "gallery_paired":
        return _gallery_paired(session, size, batches)
    pairs = max(3, batches)
    images = random_images(2 * pairs + 2, size, 7)
    session.explain(images[-2], images[-1])  # warm-up
    times = []
    for i in range(pairs):
        session.clear_cache()
        t0 = time.perf_counter()
        session.explain(images[2 * i], images[2 * i + 1])
        times.append(time.perf_counter() - t0)
    return {"pairs_s": 1 / statistics.median(times), "img_s": 2 / statistics.median(times)}


def _gallery_paired(session: Any, size: int, batches: int) -> dict[str, Any]:
    """``Gallery.build`` against the raw ``folded_pad`` forward in one process, alternated run by run in ABBA order
    so that the machine's drift (large on shared cores) hits both alike: the median of the per-pair ratios.

    Each build of ``n`` images is followed by one of a single batch, which splits its time into a fixed cost per
    build ``F`` and a cost per image ``c`` (``t(m) = F + m c`` through both): ``share_per_image`` is the rate
    ``1 / c`` against the raw forward's, what a large gallery approaches."""
    import simvis_widgets as sv

    step, _ = _raw_step(NEW_RAW, size)
    sv.Gallery.build(random_images(BATCH, size, 99), session, progress=False, batch_size=BATCH)  # warm-up
    n = LIBRARY_BATCHES * batches  # as many images as gallery_build: a build's fixed cost (~0.1 s) counts alike
    images = random_images(BATCH * n, size, 1)
    raw_rates, build_times, small_times = [], [], []
    with tempfile.TemporaryDirectory() as folder:
        for i in range(PAIRS):
            for what in ("raw", "build") if i % 2 == 0 else ("build", "raw"):
                if what == "raw":
                    raw_rates.append(BATCH * n / sum(_timed(step, n)))
                    continue
                for subset, times in ((images, build_times), (images[:BATCH], small_times)):
                    t0 = time.perf_counter()
                    sv.Gallery.build(
                        subset, session, Path(folder) / f"g{i}_{len(subset)}.lance", progress=False, batch_size=BATCH
                    )
                    times.append(time.perf_counter() - t0)
    shares = [len(images) / t / r for t, r in zip(build_times, raw_rates)]
    per_image = [(t - s) / (len(images) - BATCH) for t, s in zip(build_times, small_times)]
    return {
        "img_s": statistics.median(len(images) / t for t in build_times),
        "raw_img_s": statistics.median(raw_rates),
        "share": statistics.median(shares),
        "shares": shares,
        "fixed_s": statistics.median(s - BATCH * c for s, c in zip(small_times, per_image)),
        "share_per_image": statistics.median(1 / c / r for c, r in zip(per_image, raw_rates)),
    }


def _flops(size: int) -> dict[str, float]:
    """GFLOP of one image's forward pass, and the float32 matmul rate of these cores (GFLOP/s)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from simvis_widgets.models import build_backbone
    from simvis_widgets.runtime import tune_allocator

    tune_allocator()
    model, _ = build_backbone("efficientnet_lite0")
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        model.forward_features(torch.randn(1, 3, size, size))
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    torch.mm(a, b)
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        torch.mm(a, b)
        times.append(time.perf_counter() - t0)
    return {
        "gflop_per_img": counter.get_total_flops() / 1e9,
        "mm_gflop_s": 2 * 2048**3 / statistics.median(times) / 1e9,
    }


def child(setting: str, size: int, batches: int, threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    if setting == "flops":
        out: dict[str, Any] = _flops(size)
    else:
        out = (_raw if setting in RAW else _library)(setting, size, batches)
        from simvis_widgets.runtime import allocator, release_memory

        status = proc_status()
        release_memory()
        out.update(
            peak_rss=status.get("VmHWM"),
            rss_after=status.get("VmRSS"),
            rss_released=proc_status().get("VmRSS"),
            allocator=allocator(),
        )
    print("RESULT " + json.dumps(out), flush=True)


# --------------------------------------------------------------------------------------------------
# The parent: fresh processes, side by side
# --------------------------------------------------------------------------------------------------


def run_child(setting: str, size: int, batches: int, threads: int) -> dict[str, Any] | None:
    if not _available(setting):
        return None
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "SIMVIS_MALLOC")}
    if setting == "jemalloc":
        env["LD_PRELOAD"] = str(jemalloc_path())
        env["MALLOC_CONF"] = JEMALLOC_CONF
    cmd = [sys.executable, "-m", "benchmarks.bench_forward", "--child", setting, "--size", str(size)]
    cmd += ["--batches", str(batches), "--threads", str(threads)]
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=1200)
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"{setting} at {size} px failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(lines[-1][len("RESULT ") :])
    return result


def _median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def main() -> None:
    ap = arg_parser(__doc__, "one round, 3 batches per setting (about 4 minutes)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batches", type=int)
    ap.add_argument("--rounds", type=int)
    ap.add_argument("--settings", help=f"comma-separated subset of {','.join(SETTINGS)}")
    ap.add_argument("--sizes", help="comma-separated sizes (default 224,448)")
    args = ap.parse_args()
    require_positive(ap, args, "batches", "rounds", "threads")
    if args.child:
        child(args.child, args.size, args.batches or 5, args.threads)
        return
    cfg = QUICK if args.quick else Settings()
    cfg = dataclasses.replace(
        cfg,
        rounds=args.rounds or cfg.rounds,
        batches=args.batches or cfg.batches,
        sizes=tuple(int(s) for s in args.sizes.split(",")) if args.sizes else cfg.sizes,
        settings=tuple(args.settings.split(",")) if args.settings else cfg.settings,
    )
    unknown = set(cfg.settings) - set(SETTINGS)
    if unknown:
        ap.error(f"unknown settings {sorted(unknown)}; known: {', '.join(SETTINGS)}")
    run = Run.start(None)
    info = machine_info(args.threads, ("timm", "pylance"))
    results: dict[int, dict[str, list[dict[str, Any]]]] = {size: {s: [] for s in cfg.settings} for size in cfg.sizes}
    flops = {size: run_child("flops", size, 1, args.threads) for size in cfg.sizes}
    for r in range(cfg.rounds):
        for size in cfg.sizes:
            for setting in cfg.settings:
                got = run_child(setting, size, cfg.batches, args.threads)
                if got is not None:
                    results[size][setting].append(got)
                    run.log(f"round {r + 1}/{cfg.rounds} {size} px {setting}: {got['img_s']:.1f} img/s")
    run.finish()

    lines = [*header(info, run), f"allocator in the tuned children: {_first(results, 'allocator')}", ""]
    summary: dict[str, Any] = {}
    for size in cfg.sizes:
        fl = flops[size] or {}
        gflop, peak = fl.get("gflop_per_img", float("nan")), fl.get("mm_gflop_s", float("nan"))
        lines.append(f"## {size} px, batch {BATCH}, {args.threads} threads, median of {cfg.rounds} round(s)")
        lines.append(
            f"{'setting':<16}{'img/s':>8}{'x eager':>9}{'GFLOP/s':>9}{'% of mm':>9}"
            f"{'peak RSS':>10}{'RSS after':>11}{'released':>10}  notes"
        )
        med = {s: _median([g["img_s"] for g in results[size][s]]) for s in cfg.settings}
        eager = med.get("eager", float("nan"))
        for s in cfg.settings:
            got = results[size][s]
            if not got:
                missing = {"jemalloc": "libjemalloc2", "onnxruntime": "onnxruntime, onnx"}.get(s, "openvino")
                lines.append(f"{s:<16}  skipped ({missing} not installed)")
                continue
            mib = {
                k: _median([g[k] / 2**20 for g in got if g.get(k)]) for k in ("peak_rss", "rss_after", "rss_released")
            }
            notes = []
            if "compile_s" in got[0]:
                notes.append(f"compile {_median([g['compile_s'] for g in got]):.0f} s")
            if "export_s" in got[0]:
                per = "once, any input shape" if s == "openvino" else "per input shape"
                notes.append(f"export {_median([g['export_s'] for g in got]):.1f} s {per}")
            if "max_rel_dev" in got[0]:
                notes.append(f"max rel. deviation from fp32 {max(g['max_rel_dev'] for g in got):.1e}")
            if "share" in got[0]:
                shares = [x for g in got for x in g["shares"]]
                notes.append(
                    f"{NEW_RAW} alongside {_median([g['raw_img_s'] for g in got]):.1f} img/s; per-pair share "
                    f"{min(shares):.2f}-{max(shares):.2f}; fixed cost per build "
                    f"{1000 * _median([g['fixed_s'] for g in got]):.0f} ms"
                )
            if "pairs_s" in got[0]:
                notes.append(f"{1000 / _median([g['pairs_s'] for g in got]):.0f} ms per pair")
            rate = med[s] * gflop
            lines.append(
                f"{s:<16}{med[s]:>8.1f}{med[s] / eager:>9.2f}{rate:>9.1f}{100 * rate / peak:>8.1f}%"
                f"{mib['peak_rss']:>9.0f}M{mib['rss_after']:>10.0f}M{mib['rss_released']:>9.0f}M  {'; '.join(notes)}"
            )
        lines.append(f"forward: {gflop:.2f} GFLOP per image; float32 matmul on these cores: {peak:.0f} GFLOP/s")
        goals = []
        if "embed_many" in med and size in GOALS:
            ratio = med["embed_many"] / eager
            goals.append(f"embed_many / eager = {ratio:.2f} (goal >= {GOALS[size]}): {verdict(ratio >= GOALS[size])}")
        if "gallery_build" in med and NEW_RAW in med:
            share = med["gallery_build"] / med[NEW_RAW]
            fastest = _median([g["median_img_s"] for g in results[size][NEW_RAW] if "median_img_s" in g])
            goals.append(
                f"gallery_build / {NEW_RAW} = {share:.2f} (goal >= {GALLERY_SHARE}): {verdict(share >= GALLERY_SHARE)}; "
                f"against {NEW_RAW}'s median batch: {med['gallery_build'] / fastest:.2f}"
            )
        if "gallery_paired" in med:
            paired = results[size]["gallery_paired"]
            share = _median([g["share"] for g in paired])
            goals.append(
                f"gallery_build / {NEW_RAW}, paired in one process = {share:.2f} (goal >= {GALLERY_SHARE}): "
                f"{verdict(share >= GALLERY_SHARE)}; less the fixed cost per build: "
                f"{_median([g['share_per_image'] for g in paired]):.2f}"
            )
        lines += goals + [""]
        summary[str(size)] = {"median_img_s": med, "runs": results[size], "flops": fl}
    note = run.busy_note("the rates are low and noisy; the ratios, measured side by side, less so")
    if note:
        lines.append(note)
    print("\n".join(lines))
    write_json(args.json, {"machine": info, "run": run.record(), "settings": dataclasses.asdict(cfg), **summary})


def _first(results: dict[int, dict[str, list[dict[str, Any]]]], key: str) -> str:
    for per_size in results.values():
        for setting in (NEW_RAW, "folded", "tuned", "mallopt", "embed_many"):
            for got in per_size.get(setting, []):
                return str(got.get(key))
    return "?"


if __name__ == "__main__":
    main()
