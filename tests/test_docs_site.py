"""The documentation site (``make docs``: ``tools/build_docs.py`` + ``mkdocs.yml`` + ``tools/docs_hooks.py``).

Fast: the hooks refuse a page that would fetch from the network or embed a missing file; the API page covers
``simvis_widgets.__all__``; the README sections the benchmarks page includes exist.

Slow (one build per module, into a temporary folder, ~3-5 min on 2 cores): the build passes ``mkdocs build
--strict`` with every notebook executed and every explorer embedded; then headless Chromium opens the BUILT site
from disk with every non-file request refused and recorded, hovers the quickstart's embedded PairExplorer inside
its iframe and reads the other image's heatmap back from the canvas, compared with an explanation computed here
independently (as ``tests/test_browser.py`` does in JupyterLab), and checks every embedded explorer of every
notebook page draws.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from mkdocs.exceptions import PluginError
from test_browser import READ_CELLS, expected_index, lut_index

import simvis_widgets as sv

from jupyter_browser import chromium

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))

import build_docs  # noqa: E402
import docs_hooks  # noqa: E402

NOTEBOOK_PAGES = {  # page -> explorers it embeds (tools/make_notebooks.py); every other notebook is built too
    "notebooks/01_quickstart.html": 2,
    "notebooks/02_region_retrieval.html": 1,
    "notebooks/03_pooling_and_training.html": 2,
    "notebooks/04_your_own_model.html": 1,
}
ALLOWED_REQUESTS: tuple[str, ...] = ("file:", "data:", "blob:")
"""Schemes a page may load: its own files, inline images (notebook outputs are base64 PNGs) and the blob URL of
the ES module each export imports from its own inline text. Anything else is a network request."""


# ------------------------------------------------------------------------------------------------------
# Fast: the hooks and the generated parts
# ------------------------------------------------------------------------------------------------------


def _page(tmp_path: Path, name: str = "page.md") -> Any:
    return SimpleNamespace(file=SimpleNamespace(src_uri=name, abs_src_path=str(tmp_path / name)))


@pytest.mark.parametrize(
    "html",
    [
        '<script src="https://cdn.example.org/x.js"></script>',
        '<img src="//example.org/a.png">',
        '<link rel="stylesheet" href="https://fonts.example.org/css">',
        '<link href="https://fonts.example.org/css" rel="preconnect">',
        "<style>@import 'https://example.org/a.css';</style>",
        '<div style="background: url(https://example.org/a.png)"></div>',
        '<script type="module">await import("https://example.org/m.js");</script>',
    ],
)
def test_hooks_refuse_a_page_that_fetches_from_the_network(tmp_path: Path, html: str) -> None:
    with pytest.raises(PluginError, match="would fetch from the network"):
        docs_hooks.on_post_page(f"<html><body>{html}</body></html>", _page(tmp_path), None)


def test_hooks_keep_links_and_refuse_missing_iframes(tmp_path: Path) -> None:
    ok = '<a href="https://arxiv.org/abs/1901.00536">paper</a><img src="img/a.png"><iframe src="w.html"></iframe>'
    (tmp_path / "w.html").write_text("<p>widget</p>")
    assert docs_hooks.on_post_page(ok, _page(tmp_path), None) == ok
    with pytest.raises(PluginError, match="is not a file of the site"):
        docs_hooks.on_post_page('<iframe src="missing.html"></iframe>', _page(tmp_path), None)


def test_hooks_strip_nbconvert_cdn_scripts_from_notebook_pages(tmp_path: Path) -> None:
    html = (
        '<p>a</p><!-- Load mathjax -->\n<script src="https://cdnjs.cloudflare.com/ajax/libs/mathjax/2.7.7/latest.js'
        '?config=TeX-AMS_CHTML-full,Safe"> </script>\n<script type="text/x-mathjax-config">init();</script><p>b</p>'
    )
    out = docs_hooks.on_page_content(html, _page(tmp_path, "notebooks/n.ipynb"), None, None)
    assert out == "<p>a</p>\n<p>b</p>"
    docs_hooks.on_post_page(out, _page(tmp_path, "notebooks/n.ipynb"), None)  # nothing left to refuse


def test_hooks_turn_sphinx_roles_into_code(tmp_path: Path) -> None:
    html = "see :func:<code>simvis_widgets.decompose</code> and :class:<code>~.pair_base.PairWidget</code>."
    out = docs_hooks.on_page_content(html, _page(tmp_path, "api.md"), None, None)
    assert out == "see <code>simvis_widgets.decompose</code> and <code>PairWidget</code>."


def test_api_page_has_a_block_for_every_public_name() -> None:
    blocks = re.findall(r"^::: simvis_widgets\.(\w+)$", build_docs.api_blocks(), re.M)
    assert sorted(blocks) == sorted(sv.__all__)


def test_readme_sections_the_benchmarks_page_includes_exist() -> None:
    readme = (REPO / "README.md").read_text()
    page = (REPO / "docs" / "benchmarks.md").read_text()
    titles = re.findall(r"<!-- include README.md: (.+?) -->", page)
    assert titles == ["Benchmarks", "Benchmark results"]
    for title in titles:
        section = build_docs.readme_section(readme, title)
        assert section.startswith(f"## {title}\n") and "\n## " not in section
    with pytest.raises(KeyError, match="no '## Nothing' section"):
        build_docs.readme_section(readme, "Nothing")


# ------------------------------------------------------------------------------------------------------
# Slow: the real build, and the built site in Chromium from disk
# ------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """``tools/build_docs.py`` into a temporary folder (strict): the site and what the build printed."""
    root = tmp_path_factory.mktemp("docs-site")
    cmd = [sys.executable, str(REPO / "tools" / "build_docs.py"), "--site-dir", str(root / "site")]
    # a guard against a hang, not a speed check: the build takes 9-10 min, and on a shared machine this session
    # saw the same notebooks run 3-5x slower for minutes at a time
    proc = subprocess.run([*cmd, "--work-dir", str(root / "work")], capture_output=True, text=True, timeout=2700)
    assert proc.returncode == 0, f"the docs build failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    return SimpleNamespace(dir=root / "site", log=proc.stdout + proc.stderr)


@pytest.mark.slow
def test_site_builds_strict_with_every_page_and_embedded_explorer(site: SimpleNamespace) -> None:
    for page in ["index", "method", "scale", "text", "models", "retrieval", "studies", "cli", "api", "benchmarks"]:
        assert (site.dir / f"{page}.html").is_file(), page
    for widget in ["pair_explorer", "explorer", "retrieval_explorer", "compare_explorer"]:
        assert (site.dir / "widgets" / f"{widget}.html").is_file(), widget
    api = (site.dir / "api.html").read_text()
    missing = [name for name in sv.__all__ if f'id="simvis_widgets.{name}"' not in api]
    assert missing == [], f"the API reference lacks {missing}"
    benchmarks = (site.dir / "benchmarks.html").read_text()
    assert "Benchmark results" in benchmarks and 'src="benchmarks/forward_cpu.png"' in benchmarks
    assert (site.dir / "CITATION.cff").read_text() == (REPO / "CITATION.cff").read_text()
    built = {f"notebooks/{nb.stem}.html" for nb in (REPO / "notebooks").glob("0*.ipynb")}
    assert set(NOTEBOOK_PAGES) <= built and set(_notebook_pages(site.dir)) == built
    for page in sorted(built):
        text = (site.dir / page).read_text()
        frames = re.findall(r'<iframe class="simvis-embed"[^>]*src="([^"]+)"', text)
        count = NOTEBOOK_PAGES.get(page, len(frames))
        assert len(frames) == count, f"{page}: {len(frames)} embedded explorers, expected {count}"
        assert "widget-view+json" not in text and "jupyter-widgets" not in text
        for src in frames:
            export = (site.dir / page).parent / src
            assert export.is_file() and export.stat().st_size > 10_000, export
            assert not re.search(r"""\bsrc=["']?(?:https?:)?//""", export.read_text()), f"{export} loads a URL"
    for html in site.dir.rglob("*.html"):
        assert not re.search(r"""<script[^>]*\bsrc=["']?(?:https?:)?//""", html.read_text()), html


@pytest.fixture(scope="module")
def reference() -> sv.Explanation:
    """The quickstart's pair, explained here, independently of the notebook's kernel."""
    session = sv.ModelSession.from_pretrained("efficientnet_lite0", device="cpu")
    photos = sv.datasets.demo_images()
    return session.explain(photos["motorcycle_left"], photos["motorcycle_right"])


def _notebook_pages(site_dir: Path) -> list[str]:
    return sorted(f"notebooks/{p.name}" for p in (site_dir / "notebooks").glob("*.html") if ".widget-" not in p.name)


def _offline_page(page: Any) -> list[str]:
    """Refuse (abort) every request whose URL is not of an :data:`ALLOWED_REQUESTS` scheme; return the list that
    records each refused URL and each request the browser attempted outside those schemes."""
    attempted: list[str] = []

    def refuse(route: Any) -> None:
        url = route.request.url
        if url.startswith(ALLOWED_REQUESTS):
            route.continue_()
        else:
            attempted.append(url)
            route.abort()

    page.context.route("**/*", refuse)
    page.context.on("request", lambda r: None if r.url.startswith(ALLOWED_REQUESTS) else attempted.append(r.url))
    return attempted


def _frame(page: Any, src: str) -> Any:
    for frame in page.frames:
        if frame.url.endswith("/" + src):
            return frame
    raise AssertionError(f"no frame loaded {src}: {[f.url for f in page.frames]}")


def _draws(frame: Any) -> int:
    return int(frame.evaluate("() => Number(document.querySelector('.simvis-pair').dataset.draws || 0)"))


def _hover(page: Any, frame: Any, side: str, row: int, col: int) -> None:
    """Move the real mouse over cell (row, col) of ``side`` inside the iframe; wait for the redraw."""
    canvas = frame.locator(f'[data-testid="mark-{side}"]')
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()  # in the top page's coordinates, iframe offset included
    gh, gw = frame.evaluate(
        f"() => {{ const p = document.querySelector('.simvis-pair').__simvis.{side}; return [p.gh, p.gw]; }}"
    )
    before = _draws(frame)
    page.mouse.move(box["x"] + (col + 0.5) * box["width"] / gw, box["y"] + (row + 0.5) * box["height"] / gh)
    frame.wait_for_function(
        f"() => Number(document.querySelector('.simvis-pair').dataset.draws) > {before}", timeout=10_000
    )


def _heat(frame: Any, side: str) -> np.ndarray:
    out = frame.evaluate(READ_CELLS, [side])
    return lut_index(out["rgba"], out["lut"])


@pytest.mark.slow
def test_built_site_hovers_an_embedded_explorer_offline(
    site: SimpleNamespace, reference: sv.Explanation, tmp_path: Path
) -> None:
    with chromium(tmp_path, viewport=(1400, 1000)) as page:
        attempted = _offline_page(page)
        page.goto((site.dir / "notebooks" / "01_quickstart.html").as_uri())
        iframe = page.locator("iframe.simvis-embed").first
        iframe.scroll_into_view_if_needed()  # the frames load lazily
        src = iframe.get_attribute("src")
        page.wait_for_function(
            "(src) => [...document.querySelectorAll('iframe')].some((f) => f.getAttribute('src') === src)", arg=src
        )
        widget = page.frame_locator("iframe.simvis-embed").first.locator(".simvis-pair[data-ready]")
        widget.wait_for(timeout=60_000)
        frame = _frame(page, src)
        assert frame.evaluate("() => document.querySelector('.simvis-pair').__simvis.a.gw") == reference.grid_a[1]

        # The frame takes the widget's height (the export posts it; docs/overrides/main.html applies it).
        page.wait_for_function(
            "() => document.querySelector('iframe.simvis-embed').style.height !== '760px'", timeout=10_000
        )
        inner = frame.evaluate("() => Math.ceil(document.body.getBoundingClientRect().bottom) + 16")
        assert abs(iframe.bounding_box()["height"] - inner) <= 2

        widget.get_by_role("button", name="Hover").click()
        shown = []
        for row, col in [(9, 16), (3, 4)]:  # the front wheel, then the shelves
            _hover(page, frame, "a", row, col)
            got = _heat(frame, "b")
            want = expected_index(reference.point_map("a", row, col))
            assert (got >= 0).all(), "the right-hand heat layer is blank"
            assert np.abs(got - want).max() <= 2, f"cell {(row, col)}: colour-index error {np.abs(got - want).max()}"
            assert want[int(np.argmax(got))] >= want.max() - 2, "the brightest cell shown is not the expected peak"
            shown.append(got)
        assert (shown[0] != shown[1]).sum() > 0.25 * shown[0].size, "the two hovers drew (almost) the same map"
        assert attempted == [], f"the page tried the network: {attempted}"


@pytest.mark.slow
def test_every_embedded_explorer_draws_offline(site: SimpleNamespace, tmp_path: Path) -> None:
    with chromium(tmp_path, viewport=(1400, 1000)) as page:
        attempted = _offline_page(page)
        for name in _notebook_pages(site.dir):
            page.goto((site.dir / name).as_uri())
            for k in range(page.locator("iframe.simvis-embed").count()):
                iframe = page.locator("iframe.simvis-embed").nth(k)
                iframe.scroll_into_view_if_needed()
                root = page.frame_locator("iframe.simvis-embed").nth(k).locator(".simvis-widget[data-ready]")
                root.wait_for(timeout=60_000)
                painted = _frame(page, str(iframe.get_attribute("src"))).evaluate(
                    """() => [...document.querySelectorAll('canvas')].some((c) => c.width > 0 && c.height > 0 &&
                         c.getContext('2d').getImageData(0, 0, c.width, c.height).data.some((v, i) => i % 4 === 3 && v > 0))"""
                )
                assert painted, f"{name}: explorer {k + 1} drew nothing"
            assert page.errors == [], f"{name}: {page.errors}"
        assert attempted == [], f"the pages tried the network: {attempted}"
