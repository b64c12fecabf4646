"""Jupyter widgets (anywidget): one Python class and one ES module per widget, no build step."""

from ..errors import PairExplorerError
from .compare_explorer import CompareExplorer
from .pair_explorer import PairExplorer
from .retrieval_explorer import RetrievalExplorer

__all__ = ["CompareExplorer", "PairExplorer", "PairExplorerError", "RetrievalExplorer"]
