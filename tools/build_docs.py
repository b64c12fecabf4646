"""Build the documentation site offline: execute the notebooks, embed their explorers, run ``mkdocs build --strict``.

    python tools/build_docs.py                          # site/ (what `make docs` runs)
    python tools/build_docs.py --site-dir /tmp/site --work-dir /tmp/work

Steps:

1. ``docs/`` is copied to ``WORK/docs`` (the checkout's ``docs/`` is never written to), with what its pages take
   from the rest of the repository (:func:`stage`): ``CITATION.cff``, the benchmarks' kept outputs and figures
   drawn from them, the README's benchmark sections and one mkdocstrings block per name of ``__all__``.
2. Each ``notebooks/0*.ipynb`` (stored without outputs) is executed with nbclient into ``WORK/docs/notebooks/``.
   Before the notebook's first cell a preamble (run in the kernel, never stored in the notebook) registers an
   IPython mime-bundle printer for anywidgets: it displays each widget as usual and remembers the simvis widgets
   it showed, by model id. After the last cell two more cells (never stored either) list them and write each as
   its self-contained static export (``to_html``; :func:`simvis_widgets.widgets.static_html.write_static_html`
   for a widget without one) in its state at the end of the run, as JupyterLab shows it after "Run all", to
   ``NAME.widget-K.html`` next to the notebook. Each of their widget-view outputs is replaced by an ``<iframe>``
   of that file, so the built page hovers and paints with no kernel and no network; other libraries' widgets
   (tqdm's progress bars) keep only their text. The notebooks' widget-state metadata is not stored (nbconvert
   would load the widget manager from a CDN for it).
3. ``mkdocs build --strict`` with ``docs_dir = WORK/docs`` renders the executed notebooks (mkdocs-jupyter,
   ``execute: false``) and the pages into the site directory. ``tools/docs_hooks.py`` refuses any page that
   would fetch something from the network and any iframe whose file is missing.
"""

from __future__ import annotations

import argparse
import html
import json
import logging
import os
import re
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
from nbclient import NotebookClient

REPO = Path(__file__).resolve().parents[1]
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
DISPLAYS = ("display_data", "execute_result")
NOTEBOOK_TIMEOUT_S = 900
"""Per cell; a whole notebook takes 35-80 s on 2 cores."""

PREAMBLE = """\
def __simvis_docs_record():
    import anywidget
    from IPython import get_ipython

    shown = {}

    def show(widget, include=None, exclude=None):
        if type(widget).__module__.startswith("simvis_widgets."):
            shown[widget.model_id] = widget  # by model id: the id the notebook's widget-view output names
        return widget._repr_mimebundle_(include=include, exclude=exclude)

    get_ipython().display_formatter.mimebundle_formatter.for_type(anywidget.AnyWidget, show)
    return shown


__simvis_docs_shown = __simvis_docs_record()
"""

QUERY = """\
import json as __json

print(__json.dumps({__id: type(__widget).__name__ for __id, __widget in __simvis_docs_shown.items()}))
"""

EXPORT = """\
import json as __json
from pathlib import Path as __Path

from simvis_widgets.widgets.static_html import write_static_html as __write

for __id, __path in __json.loads({targets!r}).items():
    __widget = __simvis_docs_shown[__id]
    if hasattr(__widget, "to_html"):
        __widget.to_html(__path)
    else:
        __write(__widget, __Path(__path), "simvis-widgets " + type(__widget).__name__)
"""

IFRAME = (
    '<iframe class="simvis-embed" src="{src}" title="{title}" loading="lazy" '
    'style="width: 100%; height: {height}px; border: 0;"></iframe>'
)
IFRAME_HEIGHT = 760
"""Height (px) before the export reports its own (``static_html``'s resize message, ``docs/overrides/main.html``)."""


@dataclass
class Executed:
    """One executed notebook: where it was written, its exports and how long it ran."""

    path: Path
    exports: list[Path] = field(default_factory=list)
    seconds: float = 0.0


def _widget_outputs(cells: list[nbformat.NotebookNode]) -> list[tuple[nbformat.NotebookNode, dict[str, object]]]:
    """Every (output, widget-view data) of the code ``cells``, in order."""
    found = []
    for cell in cells:
        for output in cell.get("outputs", []):
            view = output.get("data", {}).get(WIDGET_VIEW)
            if view is not None:
                found.append((output, view))
    return found


def execute_notebook(source: Path, out_dir: Path) -> Executed:
    """Execute ``source`` (working directory: its own folder) into ``out_dir``; embed its simvis widgets as
    static exports (see the module docstring). Raises nbclient's CellExecutionError on a failing cell."""
    started = time.perf_counter()
    nb = nbformat.read(source, as_version=4)
    client = NotebookClient(
        nb,
        timeout=NOTEBOOK_TIMEOUT_S,
        kernel_name="python3",
        resources={"metadata": {"path": str(source.parent)}},
        store_widget_state=False,
    )
    stem = source.stem
    preamble, query, export = (nbformat.v4.new_code_cell(code) for code in (PREAMBLE, QUERY, ""))
    cells = list(nb.cells)
    nb.cells = [preamble, *cells, query, export]  # nbclient writes each executed cell back into nb.cells
    targets: dict[str, str] = {}
    exports: list[Path] = []
    with client.setup_kernel():
        client.execute_cell(preamble, 0, store_history=False)
        for index, cell in enumerate(cells, 1):
            client.execute_cell(cell, index)
        client.execute_cell(query, len(cells) + 1, store_history=False)
        shown: dict[str, str] = json.loads(
            "".join(o.get("text", "") for o in query.outputs if o.output_type == "stream")
        )
        for output, view in _widget_outputs(cells):
            model_id = str(view["model_id"])
            if model_id not in shown:  # another library's widget (a tqdm bar): keep its text, if any
                output["data"].pop(WIDGET_VIEW)
                continue
            path = out_dir / f"{stem}.widget-{len(exports) + 1}.html"
            targets[model_id] = str(path)
            exports.append(path)
            title = html.escape(f"simvis-widgets {shown[model_id]} (static export)")
            output["data"] = {"text/html": IFRAME.format(src=path.name, title=title, height=IFRAME_HEIGHT)}
            output["metadata"] = {}
        for cell in cells:
            if cell.cell_type == "code":  # a display left with no data is dropped
                cell.outputs = [o for o in cell.outputs if o.output_type not in DISPLAYS or o["data"]]
        export.source = EXPORT.format(targets=json.dumps(targets))
        client.execute_cell(export, len(cells) + 2, store_history=False)
    nb.cells = cells
    for path in exports:
        if not path.is_file():
            raise RuntimeError(f"{source.name}: the export {path.name} was not written")
    nb.metadata.pop("widgets", None)
    nbformat.write(nb, out_dir / source.name)
    return Executed(out_dir / source.name, exports, time.perf_counter() - started)


def readme_section(readme: str, title: str) -> str:
    """The ``## title`` section of the README (heading included), up to the next ``## `` heading; links into
    ``docs/`` made relative to the site's pages. Raises KeyError when the README has no such section."""
    match = re.search(rf"^## {re.escape(title)}[ \t]*\n(.*?)(?=^## |\Z)", readme, re.S | re.M)
    if match is None:
        raise KeyError(f"README.md has no '## {title}' section")
    return match.group(0).replace("](docs/", "](")


def api_blocks() -> str:
    """One mkdocstrings block per name of ``simvis_widgets.__all__``, grouped: sessions and explanations,
    galleries, widgets, functions, modules and constants, errors (each group in ``__all__`` order)."""
    import inspect

    import simvis_widgets as sv

    groups: dict[str, list[str]] = {
        "Sessions and explanations": [],
        "Galleries": [],
        "Widgets": [],
        "Functions": [],
        "Modules and constants": [],
        "Errors": [],
    }
    for name in sv.__all__:
        obj = getattr(sv, name)
        module = getattr(obj, "__module__", "") or ""
        if inspect.isclass(obj) and issubclass(obj, Exception):
            group = "Errors"
        elif inspect.isclass(obj) and module.startswith("simvis_widgets.widgets"):
            group = "Widgets"
        elif inspect.isclass(obj) and module.startswith("simvis_widgets.gallery"):
            group = "Galleries"
        elif inspect.isclass(obj):
            group = "Sessions and explanations"
        elif inspect.isfunction(obj):
            group = "Functions"
        else:
            group = "Modules and constants"
        groups[group].append(name)
    parts = []
    for group, names in groups.items():
        if names:
            parts.append(f"## {group}\n")
            parts += [f"::: simvis_widgets.{name}\n" for name in names]
    return "\n".join(parts)


def benchmark_figures(out: Path) -> list[tuple[str, str]]:
    """Figures drawn from the benchmarks' kept JSON outputs (``benchmarks/results/``), as (file name, caption):
    the CPU forward pass per setting, and paint stroke -> strip refreshed on a 1M-image gallery."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = REPO / "benchmarks" / "results"
    figures = []
    forward = json.loads((results / "forward_cpu_padfold.json").read_text())
    measured = forward["224"]["median_img_s"]
    settings = [k for k, rate in measured.items() if rate is not None]  # a skipped setting has none
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, size in zip(axes, ("224", "448")):
        rates = forward[size]["median_img_s"]
        ax.barh(settings, [rates[k] for k in settings], color="#3f51b5")
        ax.axvline(rates["eager"], color="grey", lw=1, ls="--")
        ax.set_title(f"{size} px, batch 16, 2 threads")
        ax.set_xlabel("images / s (median)")
    axes[0].invert_yaxis()
    fig.tight_layout()
    fig.savefig(out / "forward_cpu.png", dpi=110)
    plt.close(fig)
    figures.append(
        (
            "forward_cpu.png",
            "EfficientNet-Lite0 on 2 CPU cores, images per second: the forward pass per setting, then the library's own `embed_many`, `Gallery.build` (alone and paired with the raw forward) and `explain` (`forward_cpu_padfold.json`; dashed: plain eager).",
        )
    )

    fig, ax = plt.subplots(figsize=(8, 3))
    for name, label in (
        ("retrieval_1m_explorer.json", "exact int8 index"),
        ("retrieval_1m_ivfpq_explorer.json", "IVF-PQ + exact re-rank"),
    ):
        trace = json.loads((results / name).read_text())["browser"]["trace_ms"]
        ax.hist(trace, bins=30, alpha=0.6, label=f"{label} (n = {len(trace)})")
    ax.axvline(100, color="grey", lw=1, ls="--")
    ax.set_xlabel("paint stroke -> strip refreshed (ms); dashed: the 100 ms goal")
    ax.set_ylabel("strokes")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "retrieval_1m_explorer.png", dpi=110)
    plt.close(fig)
    figures.append(
        (
            "retrieval_1m_explorer.png",
            "RetrievalExplorer on a 1M-image gallery in JupyterLab + Chromium (`retrieval_1m_explorer.json`, `retrieval_1m_ivfpq_explorer.json`).",
        )
    )
    return figures


def printed(notebook: Path) -> str:
    """Everything an executed notebook printed (its stream outputs), in order, as a fenced text block."""
    cells = nbformat.read(notebook, as_version=4).cells
    text = "".join(o.text for c in cells if c.cell_type == "code" for o in c.outputs if o.output_type == "stream")
    return "```text\n" + re.sub(r"\n{2,}", "\n", text).strip() + "\n```"


def stage(docs: Path, executed_dir: Path) -> None:
    """``docs/`` copied to ``docs`` (replaced), with what the pages take from elsewhere in the repository:
    ``CITATION.cff``, the benchmark outputs, the README's benchmark sections, the API blocks, and (for a
    ``<!-- printed notebooks/NAME.ipynb -->`` line) what the executed notebook in ``executed_dir`` printed."""
    shutil.rmtree(docs, ignore_errors=True)
    shutil.copytree(REPO / "docs", docs)
    shutil.copy2(REPO / "CITATION.cff", docs / "CITATION.cff")
    results = docs / "benchmarks"
    results.mkdir()
    outputs = sorted((REPO / "benchmarks").glob("results_*.txt")) + sorted(
        (REPO / "benchmarks" / "results").glob("*.txt")
    )
    for path in outputs:
        shutil.copy2(path, results / path.name)
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    page = docs / "benchmarks.md"
    text = page.read_text(encoding="utf-8")
    text = re.sub(r"<!-- include README.md: (.+?) -->", lambda m: readme_section(readme, m.group(1)), text)
    listing = "\n".join(f"- [`{p.name}`](benchmarks/{p.name})" for p in outputs)
    drawn = "\n\n".join(f"![{name}](benchmarks/{name})\n\n*{caption}*" for name, caption in benchmark_figures(results))
    text = text.replace("<!-- figures -->", drawn)
    page.write_text(text.replace("<!-- list benchmarks/results -->", listing), encoding="utf-8")
    page = docs / "api.md"
    page.write_text(page.read_text(encoding="utf-8").replace("<!-- api: simvis_widgets.__all__ -->", api_blocks()))
    for page in docs.rglob("*.md"):
        text = page.read_text(encoding="utf-8")
        expanded = re.sub(
            r"<!-- printed notebooks/(.+?\.ipynb) -->", lambda m: printed(executed_dir / m.group(1)), text
        )
        if expanded != text:
            page.write_text(expanded, encoding="utf-8")


def notebook_title(path: Path) -> str:
    """A notebook's first Markdown heading (its page title), else its file name."""
    for cell in nbformat.read(path, as_version=4).cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("#"):
                    return line.lstrip("#").strip()
    return path.stem


def add_notebooks_to_nav(nav: list[Any], notebooks: list[Path]) -> list[str]:
    """Append the notebooks that ``nav`` (mkdocs.yml's) does not list to its "Notebooks" section, titled by their
    first heading; returns the pages added."""
    section = next(item["Notebooks"] for item in nav if isinstance(item, dict) and "Notebooks" in item)
    listed = {page for entry in section for page in (entry.values() if isinstance(entry, dict) else [entry])}
    added = [f"notebooks/{path.name}" for path in notebooks if f"notebooks/{path.name}" not in listed]
    section += [
        {notebook_title(path): f"notebooks/{path.name}"} for path in notebooks if f"notebooks/{path.name}" in added
    ]
    return added


def build(
    site_dir: Path, work_dir: Path, notebooks: list[Path], execute: bool = True, strict: bool = True
) -> list[Executed]:
    """The whole site (module docstring); returns the executed notebooks. ``execute=False`` reuses the notebooks
    (and exports) the last build executed into ``work_dir`` (for editing pages: the outputs may be stale)."""
    from mkdocs.commands.build import build as mkdocs_build
    from mkdocs.config import load_config

    executed_dir = work_dir / "notebooks"
    executed = []
    if execute:
        shutil.rmtree(executed_dir, ignore_errors=True)
        executed_dir.mkdir(parents=True)
        os.environ.setdefault("SIMVIS_OFFLINE", "1")  # the kernels inherit it: no download is ever tried
        for source in notebooks:
            print(f"executing {source.name} ...", flush=True)
            executed.append(execute_notebook(source, executed_dir))
            print(f"  {executed[-1].seconds:.0f} s, {len(executed[-1].exports)} embedded explorer(s)", flush=True)
    else:
        for source in notebooks:
            path = executed_dir / source.name
            if not path.is_file():
                raise FileNotFoundError(f"{path} does not exist: build once without --skip-execution")
            executed.append(Executed(path, sorted(executed_dir.glob(f"{source.stem}.widget-*.html"))))
    docs = work_dir / "docs"
    stage(docs, executed_dir)
    shutil.copytree(executed_dir, docs / "notebooks")
    config = load_config(
        config_file=str(REPO / "mkdocs.yml"), docs_dir=str(docs), site_dir=str(site_dir), strict=strict
    )
    for page in add_notebooks_to_nav(config.nav, [e.path for e in executed]):
        print(f"{page}: not in mkdocs.yml's nav, added at the end of Notebooks", flush=True)
    mkdocs_build(config)
    return executed


def main(argv: list[str] | None = None) -> int:
    from mkdocs.exceptions import Abort

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--site-dir", type=Path, default=REPO / "site", help="output folder (default site/)")
    parser.add_argument(
        "--work-dir", type=Path, default=REPO / "build" / "docs", help="executed notebooks (default build/docs/)"
    )
    parser.add_argument(
        "--notebooks", nargs="*", type=Path, default=None, help="notebooks to execute (default notebooks/0*.ipynb)"
    )
    parser.add_argument(
        "--skip-execution", action="store_true", help="reuse the notebooks the last build executed (editing pages)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    notebooks = args.notebooks if args.notebooks is not None else sorted((REPO / "notebooks").glob("0*.ipynb"))
    started = time.perf_counter()
    try:
        executed = build(
            args.site_dir.resolve(),
            args.work_dir.resolve(),
            [n.resolve() for n in notebooks],
            execute=not args.skip_execution,
        )
    except Abort as err:  # mkdocs --strict: the warnings above say why
        print(f"docs build failed: {err}", file=sys.stderr)
        return 1
    for nb in executed:
        for path in nb.exports:
            print(f"{path.name}: {path.stat().st_size / 1e6:.2f} MB")
    pages = sum(1 for _ in args.site_dir.rglob("*.html")) - sum(len(nb.exports) for nb in executed)
    print(f"built {args.site_dir} ({pages} pages) in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
