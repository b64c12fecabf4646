"""MkDocs hooks of the documentation site (``mkdocs.yml``: ``hooks``): every page must work from disk with no
network.

- Notebook pages: nbconvert's templates (which mkdocs-jupyter uses) add a MathJax ``<script src>`` from a CDN and
  a Mermaid loader that imports from one; both are removed (maths stays TeX source, and no notebook has a Mermaid
  diagram).
- API pages: the docstrings' Sphinx roles (``:class:`~.pair.ExplainedPair```), which mkdocstrings leaves as text
  before the code, become plain code (``ExplainedPair``: the last part when the target starts with ``~``).
- Every page: any remaining reference that a browser would fetch from the network (``src``, ``srcset``,
  stylesheet/preload/icon ``href``, CSS ``url(...)``, ``@import``, a module ``import`` of a URL) is an error that
  fails the build, as is an ``<iframe>`` whose file is not in the site (the embedded explorers).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from mkdocs.exceptions import PluginError

_CDN_SCRIPTS = [
    re.compile(r'<!-- Load mathjax -->\s*<script\s+src="(?:https?://[^"]*mathjax[^"]*)?">\s*</script>', re.I),
    re.compile(r'<script type="text/x-mathjax-config">.*?</script>', re.S),
    re.compile(r'<script type="module">\s*document\.addEventListener\("DOMContentLoaded".*?mermaid.*?</script>', re.S),
]
_NETWORK = [
    re.compile(r"""\b(?:src|srcset|poster|data)\s*=\s*["']?\s*(?:https?:)?//""", re.I),
    re.compile(
        r"""<link\b[^>]*\brel=["']?(?:stylesheet|preload|prefetch|preconnect|dns-prefetch|icon|modulepreload|manifest)[^>]*\bhref=["']?\s*(?:https?:)?//""",
        re.I,
    ),
    re.compile(
        r"""<link\b[^>]*\bhref=["']?\s*(?:https?:)?//[^>]*\brel=["']?(?:stylesheet|preload|prefetch|preconnect|dns-prefetch|icon|modulepreload|manifest)""",
        re.I,
    ),
    re.compile(r"""url\(\s*["']?\s*(?:https?:)?//""", re.I),
    re.compile(r"""@import\s+["']?\s*(?:https?:)?//""", re.I),
    re.compile(r"""\bimport\s*\(\s*["'`]\s*(?:https?:)?//""", re.I),
]
_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|attr|data|mod|exc|obj):<code>(~?)\.?([^<]*)</code>")
_IFRAME = re.compile(r'<iframe\b[^>]*\bsrc="([^"]+)"', re.I)


def _role(match: re.Match[str]) -> str:
    target = match.group(2)
    return f"<code>{target.rsplit('.', 1)[-1] if match.group(1) else target}</code>"


def on_page_content(html: str, page: Any, config: Any, files: Any) -> str:
    """Drop nbconvert's CDN scripts from a notebook page; turn Sphinx roles into code."""
    if page.file.src_uri.endswith(".ipynb"):
        for pattern in _CDN_SCRIPTS:
            html = pattern.sub("", html)
    return _ROLE.sub(_role, html)


def on_post_page(output: str, page: Any, config: Any) -> str:
    """Refuse a page that would fetch from the network or embed a missing file."""
    where = page.file.src_uri
    for pattern in _NETWORK:
        match = pattern.search(output)
        if match:
            context = output[max(0, match.start() - 80) : match.end() + 80]
            raise PluginError(f"{where}: the page would fetch from the network: ...{context}...")
    for src in _IFRAME.findall(output):
        target = Path(page.file.abs_src_path).parent / src
        if "//" in src or not target.is_file():
            raise PluginError(f"{where}: <iframe src={src!r}> is not a file of the site")
    return output
