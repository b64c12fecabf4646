"""The notebooks' set-up cell (tools/make_notebooks.py, ``setup_cell``): every notebook's first code cell installs
simvis-widgets only where it is missing, and does nothing at all where it is installed.

The cell runs here in a real IPython shell (the one a Jupyter, VS Code or Colab kernel wraps) in a child process
whose ``%pip`` magic is replaced by a recorder, so no test touches the network or an environment: with the package
present it must call no pip and print nothing; with the package hidden it must either stop with the install
instructions (no install source chosen yet) or call ``%pip install`` exactly once with the chosen requirement.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from types import ModuleType

import nbformat
import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


def _make_notebooks() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_notebooks", REPO / "tools" / "make_notebooks.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


MAKE = _make_notebooks()

# Runs one cell in IPython's InteractiveShell (input transformations, magics, display hooks as in a kernel).
# argv: the cell source, and "hide" to make importlib.util.find_spec report simvis_widgets as missing.
_RUN_CELL = textwrap.dedent(
    """
    import contextlib, importlib.util, io, json, sys
    from IPython.core.interactiveshell import InteractiveShell

    source, hide = sys.argv[1], sys.argv[2] == "hide"
    if hide:
        real_find_spec = importlib.util.find_spec
        def find_spec(name, package=None):
            if name.split(".")[0] == "simvis_widgets":
                return None
            return real_find_spec(name, package)
        importlib.util.find_spec = find_spec

    shell = InteractiveShell.instance()
    pip_calls = []
    shell.register_magic_function(lambda line: pip_calls.append(line), "line", "pip")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        result = shell.run_cell(source, store_history=False)
    error = result.error_before_exec or result.error_in_exec
    print(json.dumps({
        "pip_calls": pip_calls,
        "stdout": out.getvalue(),
        "error": None if error is None else [type(error).__name__, str(error)],
        "imported": "simvis_widgets" in sys.modules,
    }))
    """
)


def _run_cell(source: str, *, hide_package: bool) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", _RUN_CELL, source, "hide" if hide_package else "keep"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout.splitlines()[-1])


def test_the_notebooks_are_there() -> None:
    names = [p.name for p in NOTEBOOKS]
    assert {"01_quickstart.ipynb", "02_region_retrieval.ipynb"} <= set(names), names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_first_code_cell_is_the_setup_cell(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert code, path
    assert code[0].source == MAKE.setup_cell().source, f"{path.name}: regenerate with tools/make_notebooks.py"
    # Nothing before it but markdown (the title), and no other cell installs anything.
    assert all(cell.cell_type == "markdown" for cell in nb.cells[: nb.cells.index(code[0])])
    for cell in code[1:]:
        assert "pip install" not in cell.source and "find_spec('simvis_widgets')" not in cell.source, cell.source


def test_setup_cell_does_nothing_where_the_package_is_installed() -> None:
    assert importlib.util.find_spec("simvis_widgets") is not None  # this environment has it
    for requirement in (None, "simvis-widgets[demo]"):
        ran = _run_cell(MAKE.setup_cell(requirement).source, hide_package=False)
        assert ran == {"pip_calls": [], "stdout": "", "error": None, "imported": False}, (requirement, ran)


def test_setup_cell_without_an_install_source_stops_with_instructions() -> None:
    assert MAKE.INSTALL_REQUIREMENT is None or MAKE.INSTALL_REQUIREMENT.startswith("simvis-widgets")
    ran = _run_cell(MAKE.setup_cell(None).source, hide_package=True)
    assert ran["pip_calls"] == [] and ran["error"] is not None, ran
    kind, message = ran["error"]
    assert kind == "ModuleNotFoundError" and message == MAKE.MISSING_MESSAGE, ran
    assert "pip install" in message and "restart the kernel" in message


@pytest.mark.parametrize(
    "requirement", ["simvis-widgets[demo]", "simvis-widgets[demo] @ git+https://example.org/simvis-widgets.git"]
)
def test_setup_cell_with_an_install_source_installs_once_where_missing(requirement: str) -> None:
    ran = _run_cell(MAKE.setup_cell(requirement).source, hide_package=True)
    assert ran["error"] is None, ran
    assert ran["pip_calls"] == [f"install --quiet {json.dumps(requirement)}"], ran
    assert "installed" in ran["stdout"], ran


def test_the_shipped_cell_matches_the_chosen_install_source() -> None:
    """What the notebooks do where the package is missing follows INSTALL_REQUIREMENT (None: stop and explain)."""
    source = MAKE.setup_cell().source
    if MAKE.INSTALL_REQUIREMENT is None:
        assert "raise ModuleNotFoundError(" in source and "    %pip" not in source
    else:
        assert f"%pip install --quiet {json.dumps(MAKE.INSTALL_REQUIREMENT)}" in source
