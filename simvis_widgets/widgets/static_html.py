"""Self-contained HTML export of an anywidget: its ES module, CSS and state inline, no kernel, no CDN.

The page runs the widget's own ``render({model, el})`` with a minimal model object (``get``, ``set``, ``on``,
``off``, ``save_changes``, ``send``); binary traits travel as base64 and arrive as ``DataView``s, as they do
from a Jupyter kernel.

Any text may sit in the state (labels, model and file names) or the module: both are embedded as JSON in
``<script type="application/json">`` elements with every ``<``, ``>`` and ``&`` written as ``\\u003c``,
``\\u003e``, ``\\u0026`` (:func:`script_json`), so no ``</script`` can end the element early and no ``<!--`` /
``<script`` can send the HTML tokenizer into its script-data escape states (which swallow the rest of the page:
Chromium then shows nothing). The module is read back with ``JSON.parse`` and imported byte for byte.

Embedded in another page as an ``<iframe>`` (the documentation site does this), the page posts
``{simvisHeight: px}`` to its parent whenever its body resizes (the top margin, the body and a 16 px bottom
margin), so the parent can size the frame to the widget; standalone it posts nothing.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

import anywidget

from .._io import atomic_write

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>body {{ margin: 16px; font-family: system-ui, sans-serif; }}</style>
<style>{css}</style>
</head>
<body>
<div id="simvis-root"></div>
<script type="application/json" id="simvis-state">{state}</script>
<script type="application/json" id="simvis-esm">{esm}</script>
<script type="module">
const decode = (value) => {{
  if (value && typeof value === "object" && !Array.isArray(value)) {{
    if ("__b64__" in value) {{
      const raw = atob(value.__b64__);
      const bytes = new Uint8Array(raw.length);
      for (let k = 0; k < raw.length; k++) bytes[k] = raw.charCodeAt(k);
      return new DataView(bytes.buffer);
    }}
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, decode(v)]));
  }}
  return Array.isArray(value) ? value.map(decode) : value;
}};
const state = decode(JSON.parse(document.getElementById("simvis-state").textContent));
const listeners = {{}};
const model = {{
  get: (name) => state[name],
  set: (name, value) => {{
    state[name] = value;
    for (const cb of listeners["change:" + name] || []) cb();
  }},
  on: (event, cb) => {{ (listeners[event] = listeners[event] || []).push(cb); }},
  off: (event, cb) => {{ listeners[event] = (listeners[event] || []).filter((f) => f !== cb); }},
  save_changes: () => {{}},
  send: () => {{}},
}};
const source = JSON.parse(document.getElementById("simvis-esm").textContent);
const url = URL.createObjectURL(new Blob([source], {{ type: "text/javascript" }}));
const module = await import(url);
const widget = module.default;
if (widget.initialize) await widget.initialize({{ model }});
await widget.render({{ model, el: document.getElementById("simvis-root") }});
if (window.parent !== window) {{
  const post = () => {{
    const simvisHeight = Math.ceil(document.body.getBoundingClientRect().bottom) + 16;
    window.parent.postMessage({{ simvisHeight }}, "*");
  }};
  new ResizeObserver(post).observe(document.body);
}}
</script>
</body>
</html>
"""


def _encode(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"__b64__": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encode(v) for v in value]
    return value


_SCRIPT_SAFE = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026"})


def script_json(value: Any) -> str:
    """``value`` as JSON that is inert inside a ``<script>`` element: ``<``, ``>`` and ``&`` (which JSON only
    has inside strings) become ``\\u003c``, ``\\u003e``, ``\\u0026``. Still valid JSON, parsing to ``value``."""
    return json.dumps(value).translate(_SCRIPT_SAFE)


def _inline_css(text: str) -> str:
    """CSS safe inside a ``<style>`` element (raw text that only ``</style`` ends): ``</`` becomes ``<\\/``, the
    same characters to CSS (a backslash before ``/`` escapes it)."""
    return text.replace("</", "<\\/")


def write_static_html(widget: anywidget.AnyWidget, path: Path, title: str) -> Path:
    """Write ``widget`` as one HTML file at ``path`` (atomically): its CSS, its state and its ES module inline
    (see the module docstring for how any text in them is kept inert). ``title`` is HTML-escaped."""
    state = widget.get_state()  # anywidget syncs its module and style as the _esm / _css traits
    esm, css = str(state.get("_esm", "")), str(state.get("_css", ""))
    skip = ("_esm", "_css", "_anywidget_id", "layout", "tabbable", "tooltip", "_dom_classes")
    state = {k: v for k, v in state.items() if not k.startswith(("_model", "_view")) and k not in skip}
    state["_static"] = True
    page = _PAGE.format(
        title=html.escape(title),
        css=_inline_css(css),
        state=script_json(_encode(state)),
        esm=script_json(esm),
    )
    with atomic_write(path, text=True) as fh:
        fh.write(page)
    return Path(path)
