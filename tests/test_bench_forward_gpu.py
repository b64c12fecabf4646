"""``benchmarks/bench_forward_gpu.py`` runs end to end (on the CPU, with ``--device cpu``, tiny sizes) so that a
session lent a GPU can run it at once: every setting reports a positive rate, the folded and channels-last raw
forwards keep the features (to 1e-4), and without a GPU the default device is refused by name, fast."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "benchmarks.bench_forward_gpu", *args]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)


def test_every_setting_runs_on_the_cpu(tmp_path: Path) -> None:
    out = tmp_path / "gpu.json"
    done = _run("--device", "cpu", "--sizes", "32", "--batch", "2", "--batches", "1", "--quick", "--json", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    data = json.loads(out.read_text())
    runs = data["results"]["32"]
    from benchmarks.bench_forward_gpu import SETTINGS

    assert set(runs) == set(SETTINGS)
    assert all(len(r) == 1 and r[0]["img_s"] > 0 for r in runs.values())
    assert runs["eager"][0]["max_rel_dev"] == 0.0
    assert max(runs[s][0]["max_rel_dev"] for s in ("channels_last", "folded")) < 1e-4
    assert "embed_many_amp" in done.stdout and "ms per pair" in done.stdout


def test_counts_below_one_are_refused_by_name() -> None:
    for option in ("--batch", "--rounds", "--batches"):
        done = _run("--device", "cpu", option, "0")
        assert done.returncode == 2 and f"{option} must be at least 1, got 0" in done.stderr
    for option in ("--rounds", "--batches", "--threads"):  # the CPU benchmark's twin options
        cmd = [sys.executable, "-m", "benchmarks.bench_forward", option, "0"]
        done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
        assert done.returncode == 2 and f"{option} must be at least 1, got 0" in done.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal where there is no GPU")
def test_without_a_gpu_the_default_device_is_refused() -> None:
    done = _run("--quick")
    assert done.returncode == 2 and "no CUDA device here" in done.stderr


def test_gallery_build_is_skipped_by_name_where_pylance_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    """A lent GPU machine cannot carry pylance: the benchmark skips Gallery.build there and says why."""
    import importlib.util

    from benchmarks import bench_forward_gpu

    real = importlib.util.find_spec
    assert bench_forward_gpu.missing("gallery_build") is None  # installed here
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "lance" else real(name, *a))
    assert bench_forward_gpu.missing("gallery_build") == "pylance"
    assert bench_forward_gpu.missing("embed_many") is None
    lines = bench_forward_gpu.report({32: {"gallery_build": [], "eager": [{"img_s": 4.0}]}}, 2, torch.device("cpu"))
    assert any("gallery_build" in ln and "skipped (pylance not installed)" in ln for ln in lines)
