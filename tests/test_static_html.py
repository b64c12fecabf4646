"""The self-contained HTML export (``write_static_html``) without a browser: strings that would switch the HTML
tokenizer into its script-data escape states (``<!--<script>``) or close a script early (``</script``) must
reach the page's JavaScript unchanged, and must not appear raw inside any ``<script>`` element.
(``tests/test_browser.py`` opens the same kind of page in Chromium.)"""

from __future__ import annotations

import json
import re
from pathlib import Path

import anywidget
import numpy as np
import torch
import traitlets

import simvis_widgets as sv
from simvis_widgets.widgets.static_html import write_static_html

NASTY = "x<!--<script>y</script>z&amp;"
"""Every sequence that matters inside a <script> element: an escape-state opener, a nested script start tag,
an end tag and a character reference."""


def nasty_explorer() -> sv.PairExplorer:
    """A PairExplorer on synthetic features whose model name is :data:`NASTY`."""
    g = torch.Generator().manual_seed(0)
    ex = sv.decompose(torch.rand(8, 3, 4, generator=g), torch.rand(8, 4, 3, generator=g), "avg")
    image_a, image_b = np.full((48, 64, 3), 120, np.uint8), np.full((64, 48, 3), 60, np.uint8)
    explorer = sv.PairExplorer.from_explanation(ex, image_a, image_b)
    explorer.model_name = NASTY
    return explorer


def script_bodies(page: str) -> dict[str, str]:
    """The text of each ``<script id=...>`` element, ended (as an HTML parser ends it) at the first ``</script``."""
    out = {}
    for m in re.finditer(r'<script\b[^>]*\bid="([^"]+)"[^>]*>', page):
        end = page.lower().find("</script", m.end())
        out[m.group(1)] = page[m.end() : end]
    return out


def assert_inert(text: str, what: str) -> None:
    """Nothing in ``text`` can change how the HTML tokenizer reads a script element."""
    lowered = text.lower()
    for needle in ("<!--", "<script", "</script", "-->"):
        assert needle not in lowered, f"{what} contains {needle!r}"


def test_widget_state_round_trips_script_breaking_strings(tmp_path: Path) -> None:
    explorer = nasty_explorer()
    assert explorer.model_name == NASTY
    page = write_static_html(explorer, tmp_path / "pair.html", "t").read_text()
    scripts = script_bodies(page)
    state_text = scripts["simvis-state"]
    assert not set("<>&") & set(state_text), "the embedded JSON still holds raw < > &"
    state = json.loads(state_text)  # still valid JSON, read exactly as the page's JSON.parse reads it
    assert state["model_name"] == NASTY
    assert state["grid_a"] == [3, 4] and state["_static"] is True
    assert_inert(scripts["simvis-esm"], "the inlined module")
    assert json.loads(scripts["simvis-esm"]) == str(explorer._esm)


class _Hostile(anywidget.AnyWidget):
    """A widget whose own module holds every sequence that could end or confuse its script element."""

    _esm = traitlets.Unicode(
        "// a comment with </script> and <!-- and -->\n"
        "const text = \"<!--<script>\" + '</SCRIPT >' + `</script` + '&amp;';\n"
        "const odd = 2 </1/.source.length;  // a comparison with a regex: '<\\/' would be a syntax error here\n"
        "export default { render({ model, el }) { el.textContent = text + odd + model.get('label'); } };\n"
    ).tag(sync=True)
    _css = traitlets.Unicode(".x::after { content: '</style>'; }").tag(sync=True)
    label = traitlets.Unicode(NASTY).tag(sync=True)


def test_inlined_module_and_css_survive_hostile_text(tmp_path: Path) -> None:
    widget = _Hostile()
    page = write_static_html(widget, tmp_path / "hostile.html", "</title><!--").read_text()
    scripts = script_bodies(page)
    assert_inert(scripts["simvis-esm"], "the inlined module")
    assert json.loads(scripts["simvis-esm"]) == widget._esm  # byte for byte the module it was given
    assert json.loads(scripts["simvis-state"])["label"] == NASTY
    assert re.findall(r"<style>(.*?)</style", page, re.S)[1] == ".x::after { content: '<\\/style>'; }"
    assert "<title>&lt;/title&gt;&lt;!--</title>" in page
