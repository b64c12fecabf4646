"""Jupyter widgets (anywidget): one Python class and one ES module per widget, no build step."""

from .compare_explorer import CompareExplorer, snapshots
from .pair_explorer import PairExplorer, PairExplorerError
from .retrieval_explorer import RetrievalExplorer

__all__ = ["CompareExplorer", "PairExplorer", "PairExplorerError", "RetrievalExplorer", "snapshots"]
