"""Assemble a widget's ES module: ``common.js`` followed by the widget's own file, whose imports from
``./common.js`` are dropped (the names are then in the same module). No build tool: plain text joining, so
the shipped ``.js`` files stay readable and node can still import them one by one."""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).parent


def bundle(widget_file: str) -> str:
    common = (HERE / "common.js").read_text(encoding="utf-8")
    own = [
        line
        for line in (HERE / widget_file).read_text(encoding="utf-8").splitlines()
        if not (line.startswith(("import ", "export {")) and '"./common.js"' in line)
    ]
    return f"{common}\n// ---- {widget_file} ----\n" + "\n".join(own) + "\n"
