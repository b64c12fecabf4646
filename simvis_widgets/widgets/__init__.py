"""Jupyter widgets (anywidget): one Python class per widget, and its ES module and CSS built by esbuild from
``js/`` into ``static/`` (see :data:`~simvis_widgets.widgets.encoding.STATIC`)."""

from ..errors import PairExplorerError
from .compare_explorer import CompareExplorer
from .explorer import Explorer
from .pair_explorer import PairExplorer
from .retrieval_explorer import RetrievalExplorer
from .text_explorer import TextExplorer
from .triplet_explorer import TripletExplorer

__all__ = [
    "CompareExplorer",
    "Explorer",
    "PairExplorer",
    "PairExplorerError",
    "RetrievalExplorer",
    "TextExplorer",
    "TripletExplorer",
]
