"""The ``simvis`` CLI and the static figures: real photos in, a PNG out, bad input -> clear error and no file."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from PIL import Image

import simvis_widgets as sv
from simvis_widgets import cli, render


@pytest.fixture()
def pair(tmp_path: Path, photos: dict) -> tuple[Path, Path]:
    a, b = tmp_path / "left.png", tmp_path / "right.jpg"
    Image.fromarray(photos["motorcycle_left"]).save(a)
    Image.fromarray(photos["motorcycle_right"]).save(b, quality=92)
    return a, b


def test_cli_writes_a_figure(pair: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "fig.png"
    code = cli.main(["explain", str(pair[0]), str(pair[1]), "-o", str(out), "--pooling", "gem", "--size", "224"])
    assert code == 0
    printed = capsys.readouterr().out
    values = dict(kv.split("=") for kv in printed.split(" -> ")[0].split())
    assert float(values["score"]) == pytest.approx(float(values["sum(map_a)"]), abs=2e-6)
    with Image.open(out) as img:
        assert img.format == "PNG" and img.width > 600
        pixels = np.asarray(img.convert("RGB")).astype(int)
    # The heatmap is drawn: strongly red pixels exist somewhere in the figure.
    assert ((pixels[..., 0] - pixels[..., 2]) > 80).any()
    assert list(tmp_path.glob(".fig.png.*")) == []  # no temporary files left behind
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask  # like any file the user writes, not mkstemp's 0600


def test_cli_takes_demo_photos(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "demo.png"
    assert cli.main(["explain", "demo:chelsea", "demo:coffee", "-o", str(out), "--size", "96", "--dpi", "50"]) == 0
    assert out.stat().st_size > 0
    assert cli.main(["explain", "demo:nope", "demo:coffee", "-o", str(out)]) == 2
    assert "unknown demo image 'nope'" in capsys.readouterr().err


def test_cli_entry_point_runs_as_a_program(pair: tuple[Path, Path], tmp_path: Path) -> None:
    out = tmp_path / "fig.svg"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "simvis_widgets.cli",
            "explain",
            str(pair[0]),
            str(pair[1]),
            "-o",
            str(out),
            "--model",
            "resnet18",
            "--random-init",
            "--size",
            "96",
            "--pooling",
            "max",
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert out.read_text().lstrip().startswith(("<?xml", "<svg"))


@pytest.mark.parametrize(
    "args, message",
    [
        (["missing.png", "B"], "missing.png' does not exist"),
        (["EMPTY", "B"], "is empty (0 bytes)"),
        (["A", "B", "--pooling", "gem", "--p", "0.5"], "GeM needs a real p with 1 <= p"),
        (["A", "B", "--model", "resnet5000"], "unknown model 'resnet5000'"),
        (["A", "B", "--model", "resnet50"], "cannot be reached"),  # offline, no cached weights
    ],
)
def test_cli_errors_are_clear_and_write_nothing(
    args: list[str],
    message: str,
    pair: tuple[Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    (tmp_path / "EMPTY").write_bytes(b"")
    names = {
        "A": str(pair[0]),
        "B": str(pair[1]),
        "EMPTY": str(tmp_path / "EMPTY"),
        "missing.png": str(tmp_path / "missing.png"),
    }
    out = tmp_path / "out.png"
    code = cli.main(["explain", *[names.get(a, a) for a in args], "-o", str(out)])
    assert code == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_cli_approximate_vit(pair: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "vit.png"
    args = [
        "explain",
        str(pair[0]),
        str(pair[1]),
        "-o",
        str(out),
        "--model",
        "timm:vit_tiny_patch16_224",
        "--random-init",
        "--size",
        "64",
    ]
    assert cli.main(args) == 2 and "approximate=True" in capsys.readouterr().err  # a CLS ViT is refused by default
    assert cli.main([*args, "--approximate"]) == 0 and out.stat().st_size > 0


def test_cli_output_folder_must_exist(
    pair: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(["explain", str(pair[0]), str(pair[1]), "-o", str(tmp_path / "no" / "such" / "dir.png")])
    assert code == 2 and "does not exist" in capsys.readouterr().err


def test_interrupted_save_keeps_the_previous_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "figure.png"
    target.write_bytes(b"previous figure")
    fig = Figure(figsize=(2, 1))
    fig.add_subplot().imshow(np_feats(1)[0].numpy())

    def fail_half_way(fh: object, **kwargs: object) -> None:
        fh.write(b"\x89PNG half")  # type: ignore[attr-defined]
        raise KeyboardInterrupt

    monkeypatch.setattr(fig, "savefig", fail_half_way)
    with pytest.raises(KeyboardInterrupt):
        render.save_figure(fig, target)
    assert target.read_bytes() == b"previous figure"
    assert [p.name for p in tmp_path.iterdir()] == ["figure.png"]


def np_feats(seed: int) -> torch.Tensor:
    return torch.rand(8, 3, 4, generator=torch.Generator().manual_seed(seed))


def test_figure_uses_one_scale_centred_on_zero(resnet18_random: sv.ModelSession, photos: dict) -> None:
    ex = resnet18_random.explain(photos["chelsea"], photos["coffee"])
    fig = ex.figure()
    heat = [im for ax in fig.axes[:2] for im in ax.get_images()][1::2]
    assert len(heat) == 2
    limits = {(im.norm.vmin, im.norm.vmax) for im in heat}
    assert len(limits) == 1
    vmin, vmax = limits.pop()
    assert vmin == -vmax == -render.shared_limit(ex.map_a, ex.map_b)
    assert f"{ex.score:.4f}" in fig._suptitle.get_text()


def test_explanation_save(tmp_path: Path, resnet18_random: sv.ModelSession, photos: dict) -> None:
    ex = resnet18_random.explain(photos["chelsea"], photos["coffee"])
    ex.save(tmp_path / "ex.pdf")
    assert (tmp_path / "ex.pdf").read_bytes().startswith(b"%PDF")
