"""What a user of the published package gets: the sdist and the wheel, built as ``python -m build`` builds them
(isolated build environment, the wheel built from the sdist), pass ``twine check --strict``, and the wheel,
installed (not editable) into a fresh virtual environment, runs.

The fresh environment gets the package from the wheel only (``--no-deps``); its heavy dependencies (torch,
timm, anywidget, scikit-image ...) come from this test's own environment through one ``.pth`` line naming that
environment's site-packages, so nothing is copied or downloaded. A path line in a ``.pth`` file does not run the
``.pth`` files of the folder it adds, so the checkout's editable install stays out; the tests check that the
package, its metadata and its front-end bundles are the installed copies, with the checkout not on ``sys.path``,
and run every command from a temporary folder.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import sysconfig
import tarfile
import textwrap
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import simvis_widgets

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
STATIC = REPO / "simvis_widgets" / "widgets" / "static"
NAME = f"simvis_widgets-{simvis_widgets.__version__}"


@dataclass
class Dist:
    sdist: Path
    wheel: Path
    twine: str


@dataclass
class WheelVenv:
    root: Path
    python: Path
    env: dict[str, str]
    cwd: Path

    def run(self, *cmd: str | Path, timeout: float = 300) -> str:
        proc = subprocess.run(
            [str(c) for c in cmd], cwd=self.cwd, env=self.env, capture_output=True, text=True, timeout=timeout
        )
        assert proc.returncode == 0, f"{cmd} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
        return proc.stdout

    def python_json(self, code: str) -> dict:
        return json.loads(self.run(self.python, "-c", textwrap.dedent(code)).splitlines()[-1])


def _clean_env(**extra: str) -> dict[str, str]:
    drop = ("PYTHON", "VIRTUAL_ENV", "JUPYTER", "IPYTHON", "MPL")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env.update(PYTHONNOUSERSITE="1", SIMVIS_OFFLINE="1", **extra)
    return env


def _git_files(under: str) -> set[str]:
    """The repository's files under ``under`` (tracked, and new ones not ignored), relative to the root."""
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", under],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {line for line in out.splitlines() if (REPO / line).is_file()}


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Dist:
    out = tmp_path_factory.mktemp("dist")
    work = tmp_path_factory.mktemp("build-cwd")
    env = _clean_env()
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(REPO)],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, f"python -m build failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    # Without --sdist/--wheel, build makes the sdist first and the wheel from the unpacked sdist.
    assert "Building wheel from sdist" in proc.stdout + proc.stderr, proc.stderr[-2000:]
    (sdist,) = out.glob("*.tar.gz")
    (wheel,) = out.glob("*.whl")
    print(f"built in {time.perf_counter() - start:.1f} s: {sdist.name} {sdist.stat().st_size} B, "
          f"{wheel.name} {wheel.stat().st_size} B")  # fmt: skip
    twine = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", str(sdist), str(wheel)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert twine.returncode == 0, twine.stdout + twine.stderr
    return Dist(sdist, wheel, twine.stdout)


@pytest.fixture(scope="module")
def wheel_venv(dist: Dist, tmp_path_factory: pytest.TempPathFactory) -> WheelVenv:
    root = tmp_path_factory.mktemp("wheel-venv") / "venv"
    cwd = tmp_path_factory.mktemp("wheel-cwd")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True, timeout=120)
    python = root / "bin" / "python"
    purelib = Path(
        subprocess.run(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    # The dependencies: this environment's site-packages, after the new one's own on sys.path.
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (purelib / "project_dependencies.pth").write_text("".join(f"{p}\n" for p in sorted(ours)))
    env = _clean_env(
        PATH=f"{root / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        VIRTUAL_ENV=str(root),
        MPLCONFIGDIR=str(cwd / "matplotlib"),
        OMP_NUM_THREADS="2",
    )
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", "--no-index", str(dist.wheel)],
        env=env,
        cwd=cwd,
        check=True,
        timeout=300,
    )  # fmt: skip
    return WheelVenv(root, python, env, cwd)


def test_wheel_and_sdist_pass_twine_check(dist: Dist) -> None:
    assert dist.twine.count("PASSED") == 2, dist.twine


def test_versions_agree(dist: Dist) -> None:
    """The built metadata, ``__version__`` and the newest released heading of CHANGELOG.md are one version."""
    with zipfile.ZipFile(dist.wheel) as zf:
        metadata = zf.read(f"{NAME}.dist-info/METADATA").decode()
    with tarfile.open(dist.sdist) as tf:
        pkg_info = tf.extractfile(f"{NAME}/PKG-INFO").read().decode()  # type: ignore[union-attr]
    versions = {re.search(r"^Version: (.+)$", text, re.M)[1] for text in (metadata, pkg_info)}  # type: ignore[index]
    changelog = re.search(r"^## \[(\d[^\]]*)\] - \d{4}-\d{2}-\d{2}$", (REPO / "CHANGELOG.md").read_text(), re.M)
    assert changelog is not None
    assert versions == {simvis_widgets.__version__} == {changelog[1]}, (versions, changelog[1])
    assert dist.wheel.name == f"{NAME}-py3-none-any.whl" and dist.sdist.name == f"{NAME}.tar.gz"


def test_wheel_holds_the_package_and_its_bundles_only(dist: Dist) -> None:
    with zipfile.ZipFile(dist.wheel) as zf:
        names = set(zf.namelist())
    package = {n for n in _git_files("simvis_widgets") if not n.startswith("simvis_widgets/widgets/js/")}
    assert package - names == set(), "package files missing from the wheel"
    assert {n for n in names if not n.startswith(f"{NAME}.dist-info/")} == package, "unexpected files in the wheel"
    assert any(n.startswith("simvis_widgets/widgets/static/") and n.endswith(".js") for n in names)
    for name in names:
        assert "/js/" not in name and not name.startswith(("tests/", "notebooks/", "docs/", "benchmarks/")), name
        assert not name.endswith((".ipynb", ".mjs", ".pyc")) and "__pycache__" not in name, name
    assert f"{NAME}.dist-info/licenses/LICENSE" in names


def test_sdist_holds_what_a_build_needs(dist: Dist) -> None:
    """The wheel was built from this sdist (fixture); here: its files are the package, the bundles and the
    project files, and not the JavaScript sources, the tests or the notebooks."""
    with tarfile.open(dist.sdist) as tf:
        names = {m.name.split("/", 1)[1] for m in tf.getmembers() if m.isfile()}
    project = {"pyproject.toml", "README.md", "LICENSE", "MANIFEST.in", "CHANGELOG.md", "CITATION.cff", "PKG-INFO"}
    assert project <= names, project - names
    package = {n for n in _git_files("simvis_widgets") if not n.startswith("simvis_widgets/widgets/js/")}
    assert package <= names, package - names
    extra = names - project - package - {"setup.cfg"}
    assert all(n.startswith("simvis_widgets.egg-info/") for n in extra), sorted(extra)


def test_installed_copy_is_the_one_imported(wheel_venv: WheelVenv) -> None:
    info = wheel_venv.python_json(
        """
        import importlib.metadata, json, sys
        import simvis_widgets
        dist = importlib.metadata.distribution("simvis-widgets")
        print(json.dumps({"file": simvis_widgets.__file__, "version": simvis_widgets.__version__,
                          "metadata_version": dist.version, "metadata_at": str(dist.locate_file("")),
                          "path": sys.path, "prefix": sys.prefix}))
        """
    )
    venv = wheel_venv.root
    assert Path(info["prefix"]) == venv
    assert Path(info["file"]).is_relative_to(venv), info["file"]
    assert Path(info["metadata_at"]).is_relative_to(venv), info["metadata_at"]
    assert info["version"] == info["metadata_version"] == simvis_widgets.__version__
    for entry in info["path"]:
        resolved = Path(entry or wheel_venv.cwd).resolve()
        assert not (resolved == REPO or resolved.is_relative_to(REPO)), f"the checkout is on sys.path: {entry}"


def test_cli_runs_from_the_wheel(wheel_venv: WheelVenv) -> None:
    help_text = wheel_venv.run("simvis", "--help")
    assert "explain" in help_text and "usage: simvis" in help_text
    out = wheel_venv.cwd / "demo.png"
    printed = wheel_venv.run(
        wheel_venv.root / "bin" / "simvis",
        "explain", "demo:chelsea", "demo:coffee", "-o", out, "--size", "96", "--dpi", "50",
    )  # fmt: skip
    values = dict(kv.split("=") for kv in printed.split(" -> ")[0].split())
    assert float(values["score"]) == pytest.approx(float(values["sum(map_a)"]), abs=2e-6), printed
    with Image.open(out) as img:
        assert img.format == "PNG"
        pixels = np.asarray(img.convert("RGB")).astype(int)
    assert ((pixels[..., 0] - pixels[..., 2]) > 80).any()  # the heatmap is drawn
    assert "usage:" in wheel_venv.run(wheel_venv.python, "-m", "simvis_widgets", "--help")


def test_every_widget_imports_and_loads_its_bundle_from_the_installed_package(wheel_venv: WheelVenv) -> None:
    info = wheel_venv.python_json(
        """
        import json
        from pathlib import Path
        import anywidget, numpy as np, torch
        import simvis_widgets as sv, simvis_widgets.widgets as widgets

        from simvis_widgets.widgets.encoding import STATIC

        # anywidget replaces a class's _esm / _css paths by the files' text: find the installed file it read.
        files = {p.read_text(): str(p) for p in Path(STATIC).iterdir()}
        names = sorted({*sv.__all__, *widgets.__all__})
        classes = {n: getattr(widgets, n, None) or getattr(sv, n) for n in names}
        found = {n: {"esm": files.get(str(c._esm)), "css": files.get(str(c._css))} for n, c in classes.items()
                 if isinstance(c, type) and issubclass(c, anywidget.AnyWidget)}
        torch.manual_seed(0)
        ex = sv.decompose(torch.rand(8, 4, 5), torch.rand(8, 3, 3))
        image = np.full((40, 50, 3), 128, np.uint8)
        widget = sv.PairExplorer.from_explanation(ex, img_a=image, img_b=image)
        print(json.dumps({"widgets": found, "esm": widget._esm, "score": ex.score}))
        """
    )
    widgets = info["widgets"]
    assert {"PairExplorer", "Explorer", "RetrievalExplorer", "CompareExplorer"} <= set(widgets), widgets
    for name, files in widgets.items():
        for kind, suffix in (("esm", ".js"), ("css", ".css")):
            assert files[kind] is not None, f"{name}.{kind} is not the text of an installed static file"
            path = Path(files[kind])
            assert path.is_relative_to(wheel_venv.root) and path.suffix == suffix, (name, kind, path)
    # The front end a displayed widget sends is the installed bundle, byte for byte the committed one.
    assert info["esm"] == (STATIC / "pair_explorer.js").read_text()


def test_shipped_bundles_parse_as_es_modules(wheel_venv: WheelVenv) -> None:
    static = Path(
        wheel_venv.python_json(
            "import json, simvis_widgets.widgets.encoding as e; print(json.dumps({'static': str(e.STATIC)}))"
        )["static"]
    )
    assert static.is_relative_to(wheel_venv.root)
    bundles = sorted(static.glob("*.js"))
    assert {b.name for b in bundles} == {p.name for p in STATIC.glob("*.js")}
    assert {p.name for p in static.glob("*.css")} == {p.name for p in STATIC.glob("*.css")}
    for bundle in bundles:
        with bundle.open() as source:
            check = subprocess.run(
                ["node", "--check", "--input-type=module"], stdin=source, capture_output=True, text=True, timeout=60
            )
        assert check.returncode == 0, f"{bundle.name}: {check.stderr}"
        # anywidget calls the module's default export's render(): it must be there once the module loads.
        load = subprocess.run(
            [
                "node",
                "--input-type=module",
                "-e",
                f"const m = await import({json.dumps(bundle.as_uri())}); console.log(typeof m.default?.render)",
            ],
            cwd=wheel_venv.cwd,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert load.returncode == 0 and load.stdout.strip() == "function", f"{bundle.name}: {load.stderr}"
