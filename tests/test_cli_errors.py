"""``simvis`` with bad input: exit status 2, one line ``simvis: error: ...``, no traceback, and no model built
for anything that can be checked without one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from simvis_widgets import cli
from simvis_widgets.session import ModelSession


@pytest.fixture()
def pair(tmp_path: Path, photos: dict) -> tuple[str, str]:
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    Image.fromarray(photos["chelsea"]).save(a)
    Image.fromarray(photos["coffee"]).save(b)
    return str(a), str(b)


@pytest.fixture()
def no_model(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("a model was built for an input that could be checked without one")

    monkeypatch.setattr(ModelSession, "from_pretrained", refuse)


NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")

BAD = [
    (["-o", "{tmp}/out.xyz"], "unknown format '.xyz'"),
    (["-o", "{tmp}/out.PNGX"], "unknown format '.pngx'"),
    (["-o", "{tmp}"], "is a folder"),
    (["-o", "{tmp}/a.png/out.png"], "is not a folder"),
    (["-o", "{tmp}/missing/out.png"], "does not exist"),
    (["--dpi", "0"], "--dpi must be a positive number, got 0"),
    (["--dpi", "-120"], "--dpi must be a positive number"),
    (["--dpi", "nan"], "--dpi must be a positive number"),
    (["--dpi", "5000"], "MAX_FIGURE_PIXELS"),
    (["--dpi", "1200"], "MAX_FIGURE_PIXELS"),  # only over the budget at the images' aspect ratio
    (["--size", "100000"], "MAX_INPUT_PIXELS"),
    (["--size", "6000"], "above the limit of 9,437,184 pixels"),
    (["--size", "0"], "positive number of pixels, got 0"),
    (["--size", "-5"], "positive number of pixels, got -5"),
    (["--device", "bogus"], "unknown device 'bogus'"),
    (["--device", "cuda:x"], "unknown device 'cuda:x'"),
    (["--pooling", "gem", "--p", "0.5"], "GeM needs"),
    (["--pooling", "gem", "--p", "nan"], "GeM needs"),
    (["--image-a", "https://example.com/cat.jpg"], "URLs are not fetched"),
    (["--image-b", "s3://bucket/cat.jpg"], "URLs are not fetched"),
    (["--image-a", ""], "empty string"),
    (["--image-a", "{tmp}"], "is a directory"),
    (["--image-b", "{tmp}/nope.png"], "nope.png' does not exist"),
]


def _argv(extra: list[str], pair: tuple[str, str], tmp: Path) -> list[str]:
    """``explain A B -o tmp/out.png`` with ``extra`` (``--image-a X`` / ``--image-b X`` replace an image)."""
    extra = [e.replace("{tmp}", str(tmp)) for e in extra]
    images = list(pair)
    for i, flag in enumerate(("--image-a", "--image-b")):
        if flag in extra:
            at = extra.index(flag)
            images[i] = extra[at + 1]
            del extra[at : at + 2]
    out = [] if "-o" in extra else ["-o", str(tmp / "out.png")]
    return ["explain", *images, *out, *extra]


@pytest.mark.parametrize("extra, message", BAD)
def test_bad_input_is_refused_before_any_model(
    extra: list[str],
    message: str,
    pair: tuple[str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    no_model: None,
) -> None:
    before = sorted(tmp_path.rglob("*"))
    assert cli.main(_argv(extra, pair, tmp_path)) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("simvis: error: "), captured.err
    assert message in lines[0]
    assert sorted(tmp_path.rglob("*")) == before  # nothing written


@NO_CUDA
def test_cuda_without_cuda_is_refused_before_any_model(
    pair: tuple[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str], no_model: None
) -> None:
    assert cli.main(_argv(["--device", "cuda"], pair, tmp_path)) == 2
    assert "CUDA is not available here: use --device cpu" in capsys.readouterr().err


def test_argparse_errors_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        cli.main(["explain", "a.png", "b.png", "-o", "out.png", "--size", "big"])
    assert stop.value.code == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("simvis: error: argument --size: invalid int value: 'big'")


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SIMVIS_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, *args], check=False, capture_output=True, text=True, timeout=300, cwd=cwd, env=env
    )


@pytest.mark.parametrize(
    "program, extra, message",
    [
        (["-m", "simvis_widgets"], ["-o", "{tmp}/out.xyz"], "unknown format '.xyz'"),
        (["-m", "simvis_widgets"], ["-o", "{tmp}"], "is a folder"),
        (["-m", "simvis_widgets"], ["--dpi", "5000"], "MAX_FIGURE_PIXELS"),
        (["-m", "simvis_widgets"], ["--size", "100000"], "MAX_INPUT_PIXELS"),
        (["-m", "simvis_widgets"], ["--device", "bogus"], "unknown device 'bogus'"),
        (["-m", "simvis_widgets"], ["--image-a", "https://example.com/a.jpg"], "URLs are not fetched"),
        (["-m", "simvis_widgets"], ["--size", "big"], "invalid int value"),
        (["-m", "simvis_widgets.cli"], ["--dpi", "0"], "--dpi must be a positive number"),
        (["-m", "simvis_widgets.cli"], ["--model", "resnet5000"], "unknown model 'resnet5000'"),
    ],
)
def test_programs_exit_with_status_2_and_no_traceback(
    program: list[str], extra: list[str], message: str, pair: tuple[str, str], tmp_path: Path
) -> None:
    result = _run(*program, *_argv(extra, pair, tmp_path), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("simvis: error: ") and message in lines[0], result.stderr
    assert not (tmp_path / "out.png").exists()


def test_python_m_simvis_widgets_writes_a_figure(pair: tuple[str, str], tmp_path: Path) -> None:
    out = tmp_path / "fig.jpg"
    argv = ["explain", *pair, "-o", str(out), "--model", "resnet18", "--random-init", "--size", "64", "--dpi", "40"]
    result = _run("-m", "simvis_widgets", *argv, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("score=")
    with Image.open(out) as img:
        assert img.format == "JPEG"
