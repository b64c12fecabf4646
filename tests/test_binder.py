"""The Binder configuration (binder/): its pins, and a clean install from it that runs the quickstart.

mybinder.org cannot be tried from here, and neither can the PyTorch CPU index that binder/requirements.txt
names. The slow test therefore installs binder/requirements.txt as repo2docker does (a fresh environment,
``pip install -r`` from the repository root, so the line ``.[demo]`` is this checkout) with two changes:
the index option is dropped and the torch / torchvision pins become the pair that pip finds here. Then it
imports the package in that environment and executes notebooks/01_quickstart.ipynb headless.
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]
BINDER = REPO / "binder"
REQUIREMENTS = BINDER / "requirements.txt"
QUICKSTART = REPO / "notebooks" / "01_quickstart.ipynb"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
INDEX_OPTIONS = ("--extra-index-url", "--index-url", "-i")

# The torch / torchvision pair the slow test installs instead of binder's "+cpu" pins. Those live only on
# the PyTorch CPU index, which is unreachable from the test machines; pip here is capped at torch<=2.14.1 /
# torchvision<=0.29.1 and takes exactly this pair from local disk (a CUDA build, but it runs on the CPU the
# same way). Same choice as tools/venv.sh, which also knows the pair for ARM machines.
LOCAL_TORCH_PAIR = {
    "aarch64": ("2.9.1", "0.24.1"),
    "arm64": ("2.9.1", "0.24.1"),
}.get(platform.machine(), ("2.14.1", "0.29.1"))


def _strip_comment(line: str) -> str:
    """pip's rule: ``#`` starts a comment at the start of a line or after whitespace."""
    return re.sub(r"(^|\s)#.*$", "", line).strip()


def _parse_requirements(text: str) -> tuple[list[list[str]], dict[str, Requirement], list[str]]:
    """(option lines as tokens, named requirements by name, local path requirements)."""
    options, named, local = [], {}, []
    for raw in text.splitlines():
        line = _strip_comment(raw)
        if not line:
            continue
        if line.startswith("-"):
            options.append(line.replace("=", " ", 1).split() if line.startswith("--") else line.split())
        elif line.startswith("."):
            local.append(line)
        else:
            req = Requirement(line)
            named[req.name.lower()] = req
    return options, named, local


def _exact_pin(req: Requirement) -> Version:
    (spec,) = req.specifier
    assert spec.operator == "==", f"{req} must be an exact pin"
    return Version(spec.version)


def _is_matching_torchvision(torch: Version, torchvision: Version) -> bool:
    """torchvision 0.(N+15).P is built against torch 2.N.P (true from torch 2.1: 0.16 <-> 2.1, 0.24 <-> 2.9,
    0.29 <-> 2.14); a mismatched pair fails at import ("operator torchvision::nms does not exist")."""
    return (
        torch.major == 2
        and torch.minor >= 1
        and torchvision.release == (0, torch.minor + 15, torch.micro)
        and torch.local == torchvision.local
    )


def test_requirements_pin_cpu_torch_pair_and_install_the_repo_with_demo_extra():
    options, named, local = _parse_requirements(REQUIREMENTS.read_text())

    # The CPU index is an *extra* index: an --index-url line would apply to every package in the file.
    assert ["--extra-index-url", CPU_INDEX] in options, options
    assert not [o for o in options if o[0] in ("--index-url", "-i")], options

    torch, torchvision = _exact_pin(named["torch"]), _exact_pin(named["torchvision"])
    assert torch.local == "cpu", f"{named['torch']}: only the '+cpu' build keeps the image small"
    assert _is_matching_torchvision(torch, torchvision), (str(torch), str(torchvision))
    assert _is_matching_torchvision(*map(Version, LOCAL_TORCH_PAIR)), LOCAL_TORCH_PAIR

    # The repository itself with its demo extra (scikit-image, scikit-learn, JupyterLab). A local path
    # (not "-e"): the image keeps a built copy, as a user's pip install would.
    assert len(local) == 1, local
    match = re.fullmatch(r"\.(?:\[(?P<extras>[^\]]*)\])?", local[0])
    assert match, f"{local[0]!r}: expected '.[demo]' (the repository root; repo2docker runs pip from there)"
    assert "demo" in {e.strip() for e in (match["extras"] or "").split(",")}, local[0]

    # repo2docker's Python matches the cp311 wheels pinned above and the package's requires-python.
    runtime = (BINDER / "runtime.txt").read_text().strip()
    assert re.fullmatch(r"python-3\.\d+", runtime), runtime
    requires = re.search(r'^requires-python\s*=\s*"([^"]+)"', (REPO / "pyproject.toml").read_text(), re.M)
    assert requires and Version(runtime.removeprefix("python-")) in SpecifierSet(requires[1]), runtime


def _local_requirements() -> str:
    """binder/requirements.txt without its index option(s), with the torch pair pip can install here."""
    torch, torchvision = LOCAL_TORCH_PAIR
    lines = []
    for raw in REQUIREMENTS.read_text().splitlines():
        line = _strip_comment(raw)
        if line.startswith("-") and line.replace("=", " ", 1).split()[0] in INDEX_OPTIONS:
            continue
        if line and not line.startswith(("-", ".")):
            name = Requirement(line).name.lower()
            if name == "torch":
                line = f"torch=={torch}"
            elif name == "torchvision":
                line = f"torchvision=={torchvision}"
        lines.append(line)
    text = "\n".join(line for line in lines if line) + "\n"
    assert CPU_INDEX not in text and "+cpu" not in text, text
    return text


def _run(cmd: list[str], *, cwd: Path, env: dict[str, str], timeout: float) -> str:
    proc = subprocess.run(
        cmd, cwd=cwd, env=env, timeout=timeout, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    output = proc.stdout[-6000:]
    assert proc.returncode == 0, f"{' '.join(cmd)} (cwd {cwd}) exited {proc.returncode}:\n{output}"
    return proc.stdout


def _isolated_env(tmp: Path, venv: Path) -> dict[str, str]:
    """The environment of every command: the new venv first on PATH, offline, nothing written outside tmp."""
    drop = ("PYTHON", "VIRTUAL_ENV", "CONDA", "JUPYTER", "IPYTHON", "MPL", "TORCH_HOME", "XDG_CACHE", "XDG_DATA")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env.update(
        PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
        VIRTUAL_ENV=str(venv),
        SIMVIS_OFFLINE="1",  # the package must not try any download
        PYTHONNOUSERSITE="1",  # nothing from ~/.local leaks into the environment under test
        PIP_NO_CACHE_DIR="1",  # as repo2docker does (--no-cache-dir); pip's config files still apply
        # setuptools builds ".[demo]" in the checkout; keep its build/ directory in tmp instead
        DIST_EXTRA_CONFIG=str(tmp / "setuptools.cfg"),
        XDG_CACHE_HOME=str(tmp / "cache"),
        XDG_DATA_HOME=str(tmp / "data"),
        TORCH_HOME=str(tmp / "torch"),
        MPLCONFIGDIR=str(tmp / "matplotlib"),
        IPYTHONDIR=str(tmp / "ipython"),
        JUPYTER_CONFIG_DIR=str(tmp / "jupyter" / "config"),
        JUPYTER_DATA_DIR=str(tmp / "jupyter" / "data"),
        JUPYTER_RUNTIME_DIR=str(tmp / "jupyter" / "runtime"),
        JUPYTER_PLATFORM_DIRS="1",
        OMP_NUM_THREADS="2",
    )
    (tmp / "setuptools.cfg").write_text(f"[build]\nbuild_base = {tmp / 'build'}\n")
    return env


# Runs in the new environment: the quickstart as Binder opens it (kernel started in notebooks/, kernel
# "python3" = that environment's Python), plus one cell at the end saying where everything came from.
# nbclient comes with the binder requirements (jupyterlab -> jupyter-server -> nbconvert -> nbclient).
_EXECUTE = textwrap.dedent(
    """
    import json, sys
    import nbformat
    from nbclient import NotebookClient

    src, out = sys.argv[1], sys.argv[2]
    nb = nbformat.read(src, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(
        "import json, sys, torch, simvis_widgets\\n"
        "print(json.dumps({'prefix': sys.prefix, 'package': simvis_widgets.__file__,"
        " 'torch': torch.__version__}))"
    ))
    resources = {"metadata": {"path": sys.argv[3]}}  # the kernel's working directory
    client = NotebookClient(nb, timeout=600, kernel_name="python3", resources=resources)
    client.execute()
    nbformat.write(nb, out)
    """
)


@pytest.mark.slow
def test_clean_install_from_binder_requirements_runs_the_quickstart():
    torch_version, torchvision_version = LOCAL_TORCH_PAIR
    with tempfile.TemporaryDirectory(prefix="simvis-binder-", ignore_cleanup_errors=True) as tmp_name:
        tmp = Path(tmp_name)
        venv = tmp / "venv"
        python = str(venv / "bin" / "python")
        env = _isolated_env(tmp, venv)

        _run([sys.executable, "-m", "venv", str(venv)], cwd=tmp, env=env, timeout=300)
        requirements = tmp / "requirements.txt"
        requirements.write_text(_local_requirements())
        # From the repository root, as repo2docker does: "." in the file is the checkout.
        build_dir_before = (REPO / "build").exists()
        _run([python, "-m", "pip", "install", "-r", str(requirements)], cwd=REPO, env=env, timeout=1800)
        assert (REPO / "build").exists() == build_dir_before, "setuptools left build/ in the checkout"

        # Import outside the checkout, so the installed copy is what gets imported.
        probe = (
            "import json, sys, torch, torchvision, timm, simvis_widgets as sv, nbclient, ipykernel\n"
            "print(json.dumps({'prefix': sys.prefix, 'package': sv.__file__, 'torch': torch.__version__,"
            " 'torchvision': torchvision.__version__, 'session': type(sv.ModelSession).__name__}))"
        )
        info = json.loads(_run([python, "-c", probe], cwd=tmp, env=env, timeout=300).splitlines()[-1])
        assert Path(info["prefix"]) == venv, info
        assert Path(info["package"]).is_relative_to(venv), info  # installed from the checkout, not run from it
        assert info["torch"].split("+")[0] == torch_version, info
        assert info["torchvision"].split("+")[0] == torchvision_version, info

        executed = tmp / "01_quickstart.executed.ipynb"
        _run(
            [python, "-c", _EXECUTE, str(QUICKSTART), str(executed), str(QUICKSTART.parent)],
            cwd=tmp,
            env=env,
            timeout=1200,
        )
        nb = json.loads(executed.read_text())
        outputs = [o for cell in nb["cells"] if cell["cell_type"] == "code" for o in cell.get("outputs", [])]
        assert not [o for o in outputs if o["output_type"] == "error"]
        # The PairExplorer cell displays a widget; the figures are real PNGs; the exactness check printed.
        mimes = {m for o in outputs for m in o.get("data", {})}
        assert "application/vnd.jupyter.widget-view+json" in mimes, mimes
        assert "image/png" in mimes, mimes
        text = "".join("".join(o.get("text", "")) for o in outputs if o.get("name") == "stdout")
        assert "sum of map A" in text, text[-2000:]
        last = nb["cells"][-1]["outputs"]
        kernel = json.loads("".join("".join(o.get("text", "")) for o in last if o.get("name") == "stdout"))
        assert Path(kernel["prefix"]) == venv, kernel  # the kernel ran in the new environment
        assert Path(kernel["package"]).is_relative_to(venv), kernel
