"""Benchmark: the forward pass on a CUDA device, against the raw forward there (issue 14, its GPU half).

Network: the embedded EfficientNet-Lite0 (real weights, offline), ``forward_features``, at 224 and 448 px, batch
``--batch`` (64). Unlike the CPU benchmark (``bench_forward.py``) every setting runs in one process, one after
another, repeated ``--rounds`` times with the median reported: a GPU holds no process-wide allocator state that
would flatter whatever runs second, and each fresh process would pay CUDA's start-up again. Every timed batch
ends in ``torch.cuda.synchronize``.

Raw forward passes (a float batch already on the device, no session):

* ``eager``           float32, NCHW: what a user's own loop does;
* ``channels_last``   float32, channels-last model and input;
* ``folded``          that plus the batch norms and timm's "same" padding folded into the convolutions
  (:func:`simvis_widgets.fusion.inference_copy`): **the raw forward sessions run**;
* ``amp``             ``folded`` under float16 autocast (the session's ``amp=True``), with its largest deviation
  from the float32 eager features (``max |a - b| / max |b|``).

Through the library, on pre-sized uint8 images in host memory:

* ``to_input``        ``session.to_input`` alone: stack, pinned copy to the device, normalisation (the input
  pipeline's ceiling);
* ``embed_many``      one ``session.embed_many`` call (``amp=False``, the default);
* ``embed_many_amp``  the same on ``session.variant(amp=True)``;
* ``gallery_build``   ``Gallery.build`` into a new Lance dataset (features stored; its data loader pins memory);
* ``explain``         ``session.explain(a, b)`` of two uncached images, as pairs per second.

For each: images per second, the multiple of ``eager``, the share of ``folded`` (``amp`` rows: of ``amp``), and
the peak device memory (``torch.cuda.max_memory_allocated``). ``--device cpu`` runs the same code on the CPU
(use small ``--sizes`` and ``--batch``): the check that this script works, on machines without a GPU.

Run from the repository root on a machine with a GPU::

    python -m benchmarks.bench_forward_gpu --json forward_gpu.json          # 2-3 minutes on one GPU
    python -m benchmarks.bench_forward_gpu --quick                          # 1 round, fewer batches
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from benchmarks.harness import Run, arg_parser, header, machine_info, random_images, require_positive, write_json

RAW = ("eager", "channels_last", "folded", "amp")
LIBRARY = ("to_input", "embed_many", "embed_many_amp", "gallery_build", "explain")
SETTINGS = RAW + LIBRARY


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _rate(step: Callable[[], object], images_per_step: int, steps: int, device: torch.device) -> float:
    """Images per second over ``steps`` timed calls of ``step`` after one untimed warm-up call."""
    step()
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return images_per_step * steps / (time.perf_counter() - t0)


def _raw(setting: str, size: int, batch: int, steps: int, device: torch.device) -> dict[str, Any]:
    from simvis_widgets.fusion import inference_copy, relative_difference
    from simvis_widgets.models import build_backbone

    model, _ = build_backbone("efficientnet_lite0")
    model = model.eval().to(device)
    x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(0)).to(device)
    out: dict[str, Any] = {}
    with torch.inference_mode():
        reference = model.forward_features(x)
    if setting != "eager":
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    if setting in ("folded", "amp"):
        found = inference_copy(model, lambda network, b: network.forward_features(b), x[:1])
        assert found is not None, "EfficientNet-Lite0 has batch norms to fold"
        model = found.network
    autocast = setting == "amp" and device.type == "cuda"

    def step() -> torch.Tensor:
        with torch.inference_mode(), torch.autocast(device.type, dtype=torch.float16, enabled=autocast):
            return model.forward_features(x)

    out["max_rel_dev"] = relative_difference(step().float(), reference)
    out["img_s"] = _rate(step, batch, steps, device)
    return out


def _library(setting: str, size: int, batch: int, steps: int, device: torch.device) -> dict[str, Any]:
    import simvis_widgets as sv

    session = sv.ModelSession.from_pretrained("efficientnet_lite0", size=size, device=str(device))
    images = random_images(batch * steps, size, 1)
    if setting == "to_input":
        return {"img_s": _rate(lambda: session.to_input(images[:batch]), batch, steps, device)}
    if setting in ("embed_many", "embed_many_amp"):
        runner = session.variant(amp=True) if setting == "embed_many_amp" else session
        runner.embed_many(images[:batch], batch_size=batch, progress=False)  # warm-up
        _sync(device)
        t0 = time.perf_counter()
        runner.embed_many(images, batch_size=batch, progress=False)
        _sync(device)
        return {"img_s": len(images) / (time.perf_counter() - t0)}
    if setting == "gallery_build":
        sv.Gallery.build(images[:batch], session, progress=False, batch_size=batch)  # warm-up
        with tempfile.TemporaryDirectory() as folder:
            _sync(device)
            t0 = time.perf_counter()
            sv.Gallery.build(images, session, Path(folder) / "g.lance", progress=False, batch_size=batch)
            _sync(device)
            return {"img_s": len(images) / (time.perf_counter() - t0)}
    pairs = random_images(2 * max(3, steps) + 2, size, 7)
    session.explain(pairs[-2], pairs[-1])  # warm-up
    times = []
    for i in range(max(3, steps)):
        session.clear_cache()
        _sync(device)
        t0 = time.perf_counter()
        session.explain(pairs[2 * i], pairs[2 * i + 1])
        _sync(device)
        times.append(time.perf_counter() - t0)
    return {"img_s": 2 / statistics.median(times), "ms_per_pair": 1000 * statistics.median(times)}


def missing(setting: str) -> str | None:
    """The package ``setting`` needs that is not installed (a lent GPU machine cannot carry pylance), or None."""
    import importlib.util

    if setting == "gallery_build" and importlib.util.find_spec("lance") is None:
        return "pylance"
    return None


def measure(setting: str, size: int, batch: int, steps: int, device: torch.device) -> dict[str, Any]:
    """One setting at one size: its rate, and the peak device memory it reached (CUDA only)."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    out = (_raw if setting in RAW else _library)(setting, size, batch, steps, device)
    if device.type == "cuda":
        out["peak_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
    return out


def report(results: dict[int, dict[str, list[dict[str, Any]]]], batch: int, device: torch.device) -> list[str]:
    lines = []
    for size, per_setting in results.items():
        med = {s: statistics.median(r["img_s"] for r in runs) for s, runs in per_setting.items() if runs}
        rounds = max(len(runs) for runs in per_setting.values())
        lines.append(f"## {size} px, batch {batch}, {device}, median of {rounds} round(s)")
        lines.append(f"{'setting':<16}{'img/s':>9}{'x eager':>9}{'of raw':>8}{'peak MiB':>10}  notes")
        for s in per_setting:
            if s not in med:
                lines.append(f"{s:<16}  skipped ({missing(s)} not installed)")
        for s, rate in med.items():
            runs = per_setting[s]
            raw = med.get("amp" if s == "embed_many_amp" else "folded", float("nan"))
            notes = []
            if "max_rel_dev" in runs[0]:
                notes.append(f"max rel. deviation from fp32 {max(r['max_rel_dev'] for r in runs):.1e}")
            if "ms_per_pair" in runs[0]:
                notes.append(f"{statistics.median(r['ms_per_pair'] for r in runs):.0f} ms per pair")
            peak = max((r.get("peak_mib", float("nan")) for r in runs), default=float("nan"))
            share = rate / raw if s in LIBRARY else float("nan")
            lines.append(
                f"{s:<16}{rate:>9.1f}{rate / med.get('eager', float('nan')):>9.2f}{share:>8.2f}{peak:>10.0f}  "
                + "; ".join(notes)
            )
        lines.append("")
    return lines


def main() -> None:
    ap = arg_parser(__doc__, "one round, fewer batches", threads=False)
    ap.add_argument("--device", default="cuda", help="cuda (default) or cpu (a check that the script runs)")
    ap.add_argument("--sizes", default="224,448", help="comma-separated input sizes (px)")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--rounds", type=int)
    ap.add_argument("--batches", type=int, help="timed batches per setting (default 10; --quick 4)")
    ap.add_argument("--settings", default=",".join(SETTINGS), help=f"comma-separated subset of {','.join(SETTINGS)}")
    args = ap.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        ap.error("no CUDA device here: run on a machine with a GPU, or pass --device cpu to check the script")
    settings = tuple(args.settings.split(","))
    unknown = set(settings) - set(SETTINGS)
    if unknown:
        ap.error(f"unknown settings {sorted(unknown)}; known: {', '.join(SETTINGS)}")
    require_positive(ap, args, "batch", "rounds", "batches")
    rounds = args.rounds or (1 if args.quick else 2)
    steps = args.batches or (4 if args.quick else 10)
    sizes = tuple(int(s) for s in args.sizes.split(","))
    run = Run.start(None)
    info = machine_info(None, ("timm",))
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    results: dict[int, dict[str, list[dict[str, Any]]]] = {size: {s: [] for s in settings} for size in sizes}
    for r in range(rounds):
        for size in sizes:
            for setting in settings:
                if missing(setting):
                    continue
                got = measure(setting, size, args.batch, steps, device)
                results[size][setting].append(got)
                run.log(f"round {r + 1}/{rounds} {size} px {setting}: {got['img_s']:.1f} img/s")
    run.finish()
    print("\n".join([*header(info, run), "", *report(results, args.batch, device)]))
    write_json(
        args.json,
        {
            "machine": info,
            "run": run.record(),
            "device": str(device),
            "batch": args.batch,
            "results": {str(k): v for k, v in results.items()},
        },
    )


if __name__ == "__main__":
    main()
