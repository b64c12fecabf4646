"""Process-wide memory settings that make the CPU forward pass fast without changing what it computes.

Why: glibc's ``malloc`` serves every block above ``M_MMAP_THRESHOLD`` (adjusted at run time, at most 32 MiB)
with its own ``mmap`` and hands it back with ``munmap`` when freed, and trims the top of the heap once more
than ``M_TRIM_THRESHOLD`` is free there. A CNN's activations at batch 16 are 10-200 MB each, so every batch
maps them afresh and the kernel zero-fills and faults in every page again: on this project's 2-core machines
EfficientNet-Lite0 at 448 px spent three quarters of its time in page faults (8 img/s).

What :func:`tune_allocator` sets, once per process, on Linux with glibc only:

* ``mallopt(M_MMAP_THRESHOLD, 1 GiB)``: blocks under 1 GiB come from the heap and are reused from batch to batch;
* ``mallopt(M_TRIM_THRESHOLD, 2**31 - 1)``: free memory at the top of the heap is not handed back after each
  batch.

When: the first time a :class:`~simvis_widgets.session.ModelSession` on the CPU is made (never at import). It is
skipped where another allocator was preloaded (jemalloc or tcmalloc via ``LD_PRELOAD``: they already reuse
memory) and where the C library is not glibc (macOS, Windows, musl).

The cost: memory freed after a peak stays in the process (resident) until :func:`release_memory` gives it back;
``embed_many`` and ``Gallery.build`` call it when they finish, so what stays is the peak of one batch at most
between interactive calls.

Opting out: set the environment variable ``SIMVIS_MALLOC=system`` before the first session is made (values:
``tuned``, the default, or ``system``). Settings made by :func:`tune_allocator` cannot be undone in a running
process; restart it to opt out.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import platform
import sys
import threading
from pathlib import Path

from .errors import ModelError

ENV_VAR = "SIMVIS_MALLOC"
"""The environment variable that chooses the allocator policy: ``tuned`` (default) or ``system``."""

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 1 << 30
TRIM_THRESHOLD_BYTES = 2**31 - 1

_lock = threading.Lock()
_state: str | None = None


def _glibc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


def preloaded_allocator() -> str | None:
    """``"jemalloc"``, ``"tcmalloc"`` or ``"mimalloc"`` when that allocator is mapped into this process (so it
    serves ``malloc``), else None."""
    try:
        maps = Path("/proc/self/maps").read_text(errors="replace")
    except OSError:
        return None
    for name in ("jemalloc", "tcmalloc", "mimalloc"):
        if f"lib{name}" in maps:
            return name
    return None


def _policy() -> str:
    value = os.environ.get(ENV_VAR, "tuned").strip().lower() or "tuned"
    if value not in ("tuned", "system"):
        raise ModelError(f"{ENV_VAR}={os.environ[ENV_VAR]!r} is not a setting: use 'tuned' (default) or 'system'")
    return value


def tune_allocator() -> str:
    """Apply the settings above once per process (later calls only report) and return :func:`allocator`.

    Raises :class:`~simvis_widgets.errors.ModelError` when ``SIMVIS_MALLOC`` holds another value than ``tuned``
    or ``system``."""
    global _state
    with _lock:
        if _state is not None:
            return _state
        policy = _policy()
        other = preloaded_allocator()
        libc = _glibc()
        if other is not None:
            _state = f"{other} (preloaded)"
        elif libc is None:
            _state = "system (not glibc)"
        elif policy == "system":
            _state = f"glibc (default; {ENV_VAR}=system)"
        elif libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1 and libc.mallopt(
            M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES
        ):
            _state = "glibc (tuned: mmap threshold 1 GiB, no automatic trim)"
        else:
            _state = "glibc (default; mallopt refused the settings)"
        return _state


def allocator() -> str:
    """What serves ``malloc`` in this process, in words: tuned glibc, default glibc (and why), or a preloaded
    allocator. Before any session was made: what :func:`tune_allocator` would find, with "not yet tuned"."""
    with _lock:
        if _state is not None:
            return _state
    other = preloaded_allocator()
    if other is not None:
        return f"{other} (preloaded)"
    return "glibc (default; not yet tuned)" if _glibc() is not None else "system (not glibc)"


def release_memory() -> None:
    """Hand memory that was freed inside this process back to the system: Arrow's pool (when pyarrow is loaded)
    and glibc's heap (``malloc_trim(0)``). Safe to call any time; a no-op elsewhere."""
    if "pyarrow" in sys.modules:
        import pyarrow as pa

        pa.default_memory_pool().release_unused()
    libc = _glibc()
    if libc is not None:
        with contextlib.suppress(AttributeError):
            libc.malloc_trim(0)
