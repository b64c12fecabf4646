"""Every error this library raises on purpose derives from :class:`SimvisError`, so ``except SimvisError``
catches ours and nothing else. Errors about bad values also derive from ``ValueError`` (as they always have).
"""

from __future__ import annotations


class SimvisError(Exception):
    """Base of every error simvis-widgets raises on purpose; the message names the input and the problem."""


class DecompositionError(SimvisError, ValueError):
    """Inputs the decomposition cannot take (shapes, values, options), or a result it cannot compute exactly."""


class CellIndexError(DecompositionError, IndexError):
    """A feature cell given by a non-integer or outside its grid."""


class ImageInputError(SimvisError, ValueError):
    """An input that cannot be used as an image; the message names the input and the problem."""


class TextInputError(SimvisError, ValueError):
    """A passage that cannot be explained: not a str, empty or blank, or longer than the model takes (without
    ``truncate=True``); the message names the input, its length and the limit."""


class LimitError(SimvisError, ValueError):
    """A request above a documented resource limit (pixels of a network input or a figure)."""


class ModelError(SimvisError, ValueError):
    """A model, layer, head or weights file that cannot be used."""


class WeightsUnavailableError(ModelError, RuntimeError):
    """Pretrained weights that are not on this machine and cannot be downloaded (offline)."""


class LinearisationError(SimvisError, ValueError):
    """A model the APPROXIMATE (linearised) explanation cannot handle."""


class GalleryError(SimvisError, ValueError):
    """A gallery problem: empty, incompatible session, corrupt file, bad query."""


class WidgetError(SimvisError, ValueError):
    """Bad input to a widget."""


PairExplorerError = WidgetError
"""The name widgets' errors had before :class:`WidgetError`; kept so existing ``except`` clauses still work."""

__all__ = [
    "CellIndexError",
    "DecompositionError",
    "GalleryError",
    "ImageInputError",
    "LimitError",
    "LinearisationError",
    "ModelError",
    "PairExplorerError",
    "SimvisError",
    "TextInputError",
    "WeightsUnavailableError",
    "WidgetError",
]
