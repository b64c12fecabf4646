"""What every benchmark prints about the machine it ran on, and how it saves its JSON."""

from __future__ import annotations

import json
import os
import platform
from importlib import metadata
from typing import Any, Sequence

import torch


def package_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "?"


def machine_info(threads: int, packages: Sequence[str]) -> dict[str, Any]:
    """CPU, thread counts, Python / torch versions and the versions of ``packages``."""
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), cpu)
    except OSError:
        pass
    info: dict[str, Any] = {
        "torch": torch.__version__, "threads": torch.get_num_threads(), "threads_requested": threads,
        "interop_threads": torch.get_num_interop_threads(), "cpu_count": os.cpu_count(), "cpu": cpu,
        "python": platform.python_version(), "platform": platform.platform(),
    }
    try:
        import psutil

        info["ram_gib"] = psutil.virtual_memory().total / (1 << 30)
    except ImportError:  # pragma: no cover
        info["ram_gib"] = 0.0
    info.update({name: package_version(name) for name in (*packages, "simvis-widgets")})
    return info


def write_json(path: str | None, out: dict[str, Any]) -> None:
    if path:
        with open(path, "w") as fh:
            json.dump(out, fh, indent=2)
        print(f"wrote {path}")
