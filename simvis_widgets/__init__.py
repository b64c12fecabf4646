"""simvis-widgets: why does a deep embedding network find two images similar?

The similarity of two pooled CNN embeddings decomposes exactly into contributions of image locations
(Stylianou, Souvenir, Pless, "Visualizing Deep Similarity Networks", WACV 2019), generalised here to
sum / avg / max / GeM pooling and affine heads.
"""

from . import datasets, render
from .decompose import (
    POOLINGS,
    DecompositionError,
    Explanation,
    LinearHead,
    ManyExplanation,
    cell_weights,
    decompose,
    decompose_many,
    pooling_shares,
    region_query,
)
from .gallery import Gallery, GalleryError, Hit
from .images import ImageInputError, load_image
from .models import ModelError, WeightsUnavailableError, available_models
from .session import ModelSession
from .widgets import (
    CompareExplorer,
    PairExplorer,
    PairExplorerError,
    RetrievalExplorer,
    snapshots,
)

__version__ = "0.1.0"

__all__ = [
    "POOLINGS",
    "CompareExplorer",
    "DecompositionError",
    "Explanation",
    "Gallery",
    "GalleryError",
    "Hit",
    "ImageInputError",
    "LinearHead",
    "ManyExplanation",
    "ModelError",
    "ModelSession",
    "PairExplorer",
    "PairExplorerError",
    "RetrievalExplorer",
    "WeightsUnavailableError",
    "available_models",
    "datasets",
    "render",
    "cell_weights",
    "decompose",
    "decompose_many",
    "load_image",
    "pooling_shares",
    "region_query",
    "snapshots",
]
