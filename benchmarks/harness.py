"""The one harness every benchmark uses: timing, load average, machine info, command line, JSON, browser set-up.

* **timing**: :func:`measure` (warm-up, then timed repeats; an optional untimed ``setup`` per repeat and a time
  budget) gives a :class:`Timing` (every run, its median and percentiles); :func:`seconds` times one call;
  :func:`percentile` of any list (NaN when empty);
* **the run**: :meth:`Run.start` sets torch's threads and seed, optionally waits for a quiet machine and notes the
  load average; :meth:`Run.log` prints progress with the elapsed time; :meth:`Run.finish` notes the load at the
  end and the total time; :meth:`Run.busy_note` says when other work competed for the cores;
* **the machine**: :func:`machine_info` (CPU, threads, versions), :func:`header` (the lines every report starts
  with), :func:`load_average`, :func:`wait_for_load`, :func:`cpu_seconds`, :func:`proc_status`,
  :func:`available_bytes`;
* **command line and output**: :func:`arg_parser` (``--quick``, ``--json PATH``, ``--threads``), :func:`override`
  (settings from a base and the options given), :func:`verdict`, :func:`to_jsonable` and :func:`write_json`
  (strict JSON: NaN and infinities become null);
* **browser benchmarks**: :func:`notebook`, :func:`jupyter_browser` (the project's JupyterLab + Chromium helpers in
  ``tests/jupyter_browser.py``) and :func:`lab` (a temporary notebook folder served by JupyterLab, open in Chromium).

Benchmarks import it as ``from benchmarks.harness import ...`` and run from the repository root as modules
(``python -m benchmarks.bench_explain``).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib.util
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

REPO = Path(__file__).resolve().parents[1]
"""The repository root (benchmarks run from here: ``python -m benchmarks.NAME``)."""

Load = tuple[float, float, float]
S = TypeVar("S")

# --------------------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------------------


def random_images(n: int, size: int, seed: int) -> list[Any]:
    """``n`` uniform-noise ``size`` x ``size`` x 3 uint8 images, already at the network's size (a resize is a
    no-op), from ``seed``."""
    import numpy as np

    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(n)]


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100, linear interpolation) of ``values``; NaN when there are none."""
    if not len(values):
        return float("nan")
    ordered = sorted(float(v) for v in values)
    pos = (len(ordered) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


@dataclasses.dataclass(frozen=True)
class Timing:
    """Wall-clock seconds of the timed runs (warm-up excluded), with their median and percentiles."""

    runs_s: tuple[float, ...]

    def __post_init__(self) -> None:
        if not self.runs_s:
            raise ValueError("a Timing needs at least one run")
        object.__setattr__(self, "runs_s", tuple(float(r) for r in self.runs_s))

    @property
    def median_s(self) -> float:
        return float(statistics.median(self.runs_s))

    @property
    def n(self) -> int:
        return len(self.runs_s)

    def percentile(self, q: float) -> float:
        return percentile(self.runs_s, q)

    def to_json(self) -> dict[str, Any]:
        return {"median_s": self.median_s, "runs_s": list(self.runs_s), "n": self.n}


def seconds(fn: Callable[[], object]) -> float:
    """Wall-clock seconds of one call of ``fn`` (``time.perf_counter``)."""
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def measure(
    fn: Callable[..., object],
    repeats: int,
    *,
    warmup: bool | Callable[[], object] = True,
    setup: Callable[[], Any] | None = None,
    budget_s: float = math.inf,
) -> Timing:
    """Warm up, then time ``repeats`` calls (at least one) of ``fn()``, or of ``fn(setup())`` when ``setup`` is
    given (``setup`` runs before each call, untimed).

    ``warmup``: True (default) one untimed call like the timed ones, a callable to run instead, False for none.
    Stops early, after at least one timed call, once the timed calls so far took ``budget_s`` seconds.
    """

    args = (lambda: ()) if setup is None else (lambda: (setup(),))
    if callable(warmup):
        warmup()
    elif warmup:
        fn(*args())
    runs: list[float] = []
    for _ in range(max(1, repeats)):
        call_args = args()  # untimed
        t0 = time.perf_counter()
        fn(*call_args)
        runs.append(time.perf_counter() - t0)
        if sum(runs) >= budget_s:
            break
    return Timing(tuple(runs))


# --------------------------------------------------------------------------------------------------
# The machine: load, CPU time, memory, versions
# --------------------------------------------------------------------------------------------------


def load_average() -> Load:
    """The 1, 5 and 15 minute load averages (NaN where the OS has none)."""
    try:
        return os.getloadavg()
    except (AttributeError, OSError):
        return (float("nan"),) * 3


def wait_for_load(threshold: float, max_s: float, log: Callable[[str], None], poll_s: float = 15.0) -> float:
    """Poll until the 1-minute load average is below ``threshold`` (at most ``max_s``); the seconds waited."""
    t0 = time.monotonic()
    while load_average()[0] >= threshold and time.monotonic() - t0 < max_s:
        log(f"load average {load_average()[0]:.2f} >= {threshold}: waiting ...")
        time.sleep(poll_s)
    return time.monotonic() - t0


def cpu_seconds() -> tuple[float, float]:
    """(CPU seconds all processes have been busy since boot, CPU seconds of this process and its descendants,
    counting only those alive now). Linux /proc; (nan, nan) elsewhere."""
    try:
        tick = os.sysconf("SC_CLK_TCK")
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
        values = [int(v) for v in fields]
        busy = (sum(values[:8]) - values[3] - values[4]) / tick  # all but idle and iowait
        parent: dict[int, int] = {}
        cpu: dict[int, float] = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            rest = stat.rsplit(")", 1)[1].split()
            parent[int(entry.name)] = int(rest[1])
            cpu[int(entry.name)] = (int(rest[11]) + int(rest[12]) + int(rest[13]) + int(rest[14])) / tick
        me = os.getpid()
        mine = 0.0
        for pid, used in cpu.items():
            p = pid
            while p > 1 and p != me:
                p = parent.get(p, 0)
            if p == me:
                mine += used
        return busy, mine
    except (OSError, ValueError, IndexError):
        return float("nan"), float("nan")


def proc_status() -> dict[str, int]:
    """VmRSS, VmHWM, RssAnon, RssFile of this process in bytes (Linux; empty elsewhere)."""
    out: dict[str, int] = {}
    try:
        with open("/proc/self/status") as fh:
            for ln in fh:
                key = ln.split(":")[0]
                if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
                    out[key] = int(ln.split()[1]) * 1024
    except OSError:
        pass
    return out


def available_bytes() -> int:
    """Memory available to a new allocation (psutil, else /proc/meminfo)."""
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:  # pragma: no cover
        with open("/proc/meminfo") as fh:
            info = {ln.split(":")[0]: int(ln.split()[1]) * 1024 for ln in fh}
        return info.get("MemAvailable", 0)


def package_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "?"


def machine_info(threads: int | None, packages: Sequence[str]) -> dict[str, Any]:
    """CPU, RAM, thread counts, Python / torch versions and the versions of ``packages`` (by distribution name)."""
    import torch

    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), cpu)
    except OSError:
        pass
    info: dict[str, Any] = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "threads_requested": threads,
        "interop_threads": torch.get_num_interop_threads(),
        "cpu_count": os.cpu_count(),
        "cpu": cpu,
        "machine": platform.machine(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": list(packages),
    }
    try:
        import psutil

        info["ram_gib"] = psutil.virtual_memory().total / (1 << 30)
    except ImportError:  # pragma: no cover
        info["ram_gib"] = float("nan")
    info.update({name: package_version(name) for name in (*packages, "simvis-widgets")})
    return info


# --------------------------------------------------------------------------------------------------
# One run
# --------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Run:
    """One benchmark run: when it started, the load average at its start and end, the total time."""

    threads: int | None
    started: float
    load_start: Load
    waited_s: float = 0.0
    load_end: Load | None = None
    total_s: float | None = None

    @classmethod
    def start(
        cls, threads: int | None = None, *, seed: int = 0, wait_load: float | None = None, wait_max_s: float = 600.0
    ) -> Run:
        """Set torch's intra-op threads and seed (unless ``threads`` is None), start the clock, optionally wait
        (at most ``wait_max_s``) for the 1-minute load average to drop below ``wait_load``, note the load."""
        if threads is not None:
            import torch

            torch.set_num_threads(threads)
            torch.manual_seed(seed)
        run = cls(threads, time.perf_counter(), load_average())
        if wait_load is not None:
            run.waited_s = wait_for_load(wait_load, wait_max_s, run.log)
            run.load_start = load_average()
        return run

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def log(self, msg: str) -> None:
        """Progress, with the seconds since the start, on stderr (the report goes to stdout)."""
        print(f"[{self.elapsed():6.1f} s] {msg}", file=sys.stderr, flush=True)

    def finish(self) -> Run:
        self.load_end = load_average()
        self.total_s = self.elapsed()
        return self

    def load_text(self) -> str:
        end = self.load_end or load_average()
        text = f"load average start {self.load_start[0]:.2f}, end {end[0]:.2f}"
        return text + (f" (waited {self.waited_s:.0f} s for it to drop)" if self.waited_s >= 1 else "")

    def busy_note(self, consequence: str, *, label: str = "WARNING", start_share: float = 0.5) -> str | None:
        """A line saying the machine was busy (1-minute load above ``start_share`` x CPUs at the start, or above
        1.5 x the threads used at the end), or None."""
        cores = os.cpu_count() or 1
        end = self.load_end or load_average()
        if self.load_start[0] > start_share * cores or end[0] > 1.5 * max(self.threads or 1, 1):
            return (
                f"{label}: the machine was busy (load average {self.load_start[0]:.2f} at start, {end[0]:.2f} at "
                f"end, {cores} CPUs): {consequence}"
            )
        return None

    def record(self) -> dict[str, Any]:
        """The run's part of a benchmark's JSON."""
        return {
            "load_average_start": list(self.load_start),
            "load_average_end": list(self.load_end) if self.load_end else None,
            "waited_for_load_s": self.waited_s,
            "total_s": self.total_s,
        }


def header(info: dict[str, Any], run: Run) -> list[str]:
    """The two lines every report starts with: the machine, then the packages' versions and the load."""
    ram = info.get("ram_gib", float("nan"))
    versions = ", ".join(f"{name} {info.get(name, '?')}" for name in info.get("packages", ()))
    return [
        (
            f"machine: torch {info['torch']}, threads {info['threads']} (interop {info['interop_threads']}), "
            f"os.cpu_count() {info['cpu_count']}, CPU {info['cpu']}, RAM {ram:.1f} GiB, python {info['python']}"
        ),
        f"         {versions}{'; ' if versions else ''}{run.load_text()}",
    ]


# --------------------------------------------------------------------------------------------------
# Command line and output
# --------------------------------------------------------------------------------------------------


def arg_parser(doc: str | None, quick_help: str, *, threads: bool = True) -> argparse.ArgumentParser:
    """A parser with the options every benchmark has: ``--quick``, ``--json PATH`` and (``threads``) ``--threads``.
    The description is the first paragraph of ``doc``."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0] if doc else None)
    ap.add_argument("--quick", action="store_true", help=quick_help)
    ap.add_argument("--json", metavar="PATH", type=Path, help="also write the results as JSON to PATH")
    if threads:
        ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    return ap


def require_positive(ap: argparse.ArgumentParser, args: argparse.Namespace, *names: str) -> None:
    """Exit through ``ap.error`` naming the first of the options ``names`` given below 1 (an ``or`` default would
    otherwise silently replace a 0)."""
    for name in names:
        value = getattr(args, name)
        if value is not None and value < 1:
            ap.error(f"--{name} must be at least 1, got {value}")


def override(base: S, **changes: Any) -> S:
    """``base`` (a dataclass of settings) with the ``changes`` that are not None."""
    return dataclasses.replace(base, **{k: v for k, v in changes.items() if v is not None})  # type: ignore[type-var]


def verdict(met: bool | None) -> str:
    """ "MET" / "NOT MET" against a goal, "info" where there is none."""
    return "info" if met is None else ("MET" if met else "NOT MET")


def to_jsonable(obj: Any) -> Any:
    """``obj`` as plain JSON values: dataclasses (a :class:`Timing` with its median) as dicts, tuples as lists,
    numpy / torch values as numbers and lists, paths as strings, NaN and infinities as None."""
    if isinstance(obj, Timing):
        return to_jsonable(obj.to_json())
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (str, bool, int)) or obj is None:
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if hasattr(obj, "tolist"):  # numpy arrays and scalars, torch tensors
        return to_jsonable(obj.tolist())
    return obj


def write_json(path: str | os.PathLike[str] | None, out: dict[str, Any]) -> None:
    """Write ``out`` (through :func:`to_jsonable`) as indented strict JSON to ``path``; nothing when None."""
    if path:
        Path(path).write_text(json.dumps(to_jsonable(out), indent=2, allow_nan=False) + "\n")
        print(f"wrote {path}")


# --------------------------------------------------------------------------------------------------
# Browser benchmarks
# --------------------------------------------------------------------------------------------------


def notebook(sources: Sequence[str]) -> dict[str, Any]:
    """An nbformat 4 notebook (Python 3 kernel) of code cells with these sources, no outputs."""
    cells = [
        {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "source": src} for src in sources
    ]
    return {
        "cells": cells,
        "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }


def jupyter_browser() -> ModuleType:
    """The project's real-browser helpers, ``tests/jupyter_browser.py`` (``jupyter_server``, ``chromium``,
    ``open_and_run``, ``kernel_exec``), loaded from its file (the tests folder is not a package)."""
    name = "simvis_bench_jupyter_browser"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, REPO / "tests" / "jupyter_browser.py")
        if spec is None or spec.loader is None:  # pragma: no cover
            raise ImportError("tests/jupyter_browser.py not found")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # before running it: its dataclasses look their module up
        spec.loader.exec_module(module)
    return sys.modules[name]


@contextlib.contextmanager
def lab(prefix: str, files: dict[str, str]) -> Iterator[tuple[Any, Any]]:
    """A temporary folder holding ``files`` (name -> text, e.g. a notebook's JSON), served by a fresh JupyterLab,
    and a headless Chromium page (both from :func:`jupyter_browser`); yields ``(server, page)``."""
    jb = jupyter_browser()
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        root, work = Path(tmp) / "nb", Path(tmp) / "jupyter"
        root.mkdir()
        work.mkdir()
        for name, text in files.items():
            (root / name).write_text(text)
        with jb.jupyter_server(root, work) as server, jb.chromium(work) as page:
            yield server, page
