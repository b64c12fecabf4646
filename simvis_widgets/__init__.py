"""simvis-widgets: why does a deep embedding network find two images similar?

The similarity of two pooled CNN embeddings decomposes exactly into contributions of image locations
(Stylianou, Souvenir, Pless, "Visualizing Deep Similarity Networks", WACV 2019), generalised here to
sum / avg / max / GeM pooling and affine heads. The derivation is in ``docs/method.md``.

Data flow (and import direction): images -> :class:`ModelSession` (features) -> :func:`decompose`
(an immutable :class:`Explanation`) -> :class:`ExplainedPair` (plus the images) -> figures and widgets.
The maths helpers below the public API (shares, region queries) live in :mod:`simvis_widgets.decompose`.
"""

from . import datasets, render
from .decompose import POOLINGS, Explanation, LinearHead, ManyExplanation, cell_weights, decompose, decompose_many
from .errors import (
    CellIndexError,
    DecompositionError,
    GalleryError,
    ImageInputError,
    LimitError,
    LinearisationError,
    ModelError,
    PairExplorerError,
    SimvisError,
    TextInputError,
    WeightsUnavailableError,
    WidgetError,
)
from .gallery import Gallery, Hit
from .gallery.text import TextGallery, TextHit
from .images import load_image
from .models import available_models
from .pair import ExplainedPair
from .session import Encoded, ModelSession, SessionOptions, snapshots
from .text import ExplainedText, TextSession
from .widgets import CompareExplorer, Explorer, PairExplorer, RetrievalExplorer, TextExplorer, TripletExplorer

__version__ = "0.1.0"

__all__ = [
    "POOLINGS",
    "CellIndexError",
    "CompareExplorer",
    "DecompositionError",
    "Encoded",
    "ExplainedPair",
    "ExplainedText",
    "Explanation",
    "Explorer",
    "Gallery",
    "GalleryError",
    "Hit",
    "ImageInputError",
    "LimitError",
    "LinearHead",
    "LinearisationError",
    "ManyExplanation",
    "ModelError",
    "ModelSession",
    "PairExplorer",
    "PairExplorerError",
    "RetrievalExplorer",
    "SessionOptions",
    "SimvisError",
    "TextExplorer",
    "TextGallery",
    "TextHit",
    "TextInputError",
    "TextSession",
    "TripletExplorer",
    "WeightsUnavailableError",
    "WidgetError",
    "available_models",
    "cell_weights",
    "datasets",
    "decompose",
    "decompose_many",
    "load_image",
    "render",
    "snapshots",
]
