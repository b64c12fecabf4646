"""The widgets' front end as shipped: the committed bundles in ``simvis_widgets/widgets/static/`` are exactly what
esbuild (the version pinned in package-lock.json) builds from ``simvis_widgets/widgets/js/`` today, the widgets
load those files, and the shared modules pass their node unit tests (``tests/js/*.test.mjs``)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from simvis_widgets.widgets.compare_explorer import CompareExplorer
from simvis_widgets.widgets.encoding import STATIC
from simvis_widgets.widgets.explorer import Explorer
from simvis_widgets.widgets.pair_explorer import PairExplorer
from simvis_widgets.widgets.text_explorer import TextExplorer
from simvis_widgets.widgets.triplet_explorer import TripletExplorer

REPO = Path(__file__).resolve().parents[1]
WIDGETS = {
    "pair_explorer": PairExplorer,
    "compare_explorer": CompareExplorer,
    "explorer": Explorer,
    "text_explorer": TextExplorer,
    "triplet_explorer": TripletExplorer,
}


def _node() -> str:
    node = shutil.which("node")
    assert node, "node is needed to build and test the widgets' JavaScript (Debian: apt-get install nodejs npm)"
    return node


def test_committed_bundles_equal_a_fresh_build(tmp_path: Path) -> None:
    """Byte for byte: a source edited without ``npm run build`` (or a hand-edited bundle) fails here."""
    if not (REPO / "node_modules" / "esbuild").is_dir():
        pytest.fail("esbuild is not installed: run `npm ci` in the repository (make lint does)")
    out = subprocess.run(
        [_node(), "tools/build_js.mjs", str(tmp_path)], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    built = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    committed = {p.name: p.read_bytes() for p in STATIC.iterdir()}
    assert sorted(built) == sorted(committed), "static/ does not hold exactly the built files"
    stale = sorted(name for name in built if built[name] != committed[name])
    assert stale == [], f"stale bundles {stale}: run `npm run build` and commit static/"


@pytest.mark.parametrize("name", sorted(WIDGETS))
def test_widgets_load_the_built_files(name: str) -> None:
    """Each widget's module and style are its built files, read as they are (anywidget's file contents)."""
    widget = WIDGETS[name]
    assert str(widget._esm) == (STATIC / f"{name}.js").read_text(encoding="utf-8")
    assert str(widget._css) == (STATIC / f"{name}.css").read_text(encoding="utf-8")


def test_shared_modules_pass_their_node_unit_tests() -> None:
    out = subprocess.run(
        [_node(), "--test", "--test-reporter=tap", "tests/js/"], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stdout[-6000:] + out.stderr[-2000:]
    assert "# fail 0" in out.stdout and "# pass 0" not in out.stdout, out.stdout[-2000:]
