"""Self-contained HTML export of an anywidget: its ES module, CSS and state inline, no kernel, no CDN.

The page runs the widget's own ``render({model, el})`` with a minimal model object (``get``, ``set``, ``on``,
``off``, ``save_changes``, ``send``); binary traits travel as base64 and arrive as ``DataView``s, as they do
from a Jupyter kernel.
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
<script type="text/plain" id="simvis-esm">{esm}</script>
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
const source = document.getElementById("simvis-esm").textContent;
const url = URL.createObjectURL(new Blob([source], {{ type: "text/javascript" }}));
const module = await import(url);
const widget = module.default;
if (widget.initialize) await widget.initialize({{ model }});
await widget.render({{ model, el: document.getElementById("simvis-root") }});
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


def _inline(text: str) -> str:
    """Text safe inside a <script> element (no closing tag can end it early)."""
    return text.replace("</", "<\\/")


def write_static_html(widget: anywidget.AnyWidget, path: Path, title: str) -> Path:
    """Write ``widget`` as one HTML file at ``path`` (atomically)."""
    state = widget.get_state()
    state = {k: v for k, v in state.items() if not k.startswith("_model") and not k.startswith("_view") and k not in ("_esm", "_css", "_anywidget_id", "layout", "tabbable", "tooltip", "_dom_classes")}
    state["_static"] = True
    page = _PAGE.format(
        title=html.escape(title),
        css=_inline(str(widget._css)),
        state=_inline(json.dumps(_encode(state))),
        esm=_inline(str(widget._esm)),
    )
    with atomic_write(path, text=True) as fh:
        fh.write(page)
    return Path(path)
