"""An explained pair: the :class:`~simvis_widgets.decompose.Explanation` of two images plus the images as the
network saw them, their sizes as given and the model's name -- what ``session.explain`` returns and what the
figures and widgets draw. Immutable, like the Explanation it extends.

The figure methods are conveniences that call :mod:`simvis_widgets.render` (imported when called: render sits
above this module and draws pairs; the maths below never depends on it).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from .decompose import Explanation, Side
from .errors import DecompositionError

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure


@dataclass(frozen=True, eq=False, repr=False)
class ExplainedPair(Explanation):
    """An :class:`Explanation` that also carries its images: ``image_a`` / ``image_b`` as the network saw them
    (``H x W x 3`` uint8, or None where unknown), ``source_size_a`` / ``source_size_b`` (``(H, W)`` as given,
    before resizing) and ``model_name``.

    Masks may be given at cell resolution, at the network input's size or at the size as given; any other size
    is an error (a bare Explanation accepts any size)."""

    model_name: str | None = None
    image_a: np.ndarray | None = field(repr=False, default=None)
    image_b: np.ndarray | None = field(repr=False, default=None)
    source_size_a: tuple[int, int] | None = field(repr=False, default=None)
    source_size_b: tuple[int, int] | None = field(repr=False, default=None)

    SWAPPED_FIELDS: ClassVar[tuple[tuple[str, str], ...]] = Explanation.SWAPPED_FIELDS + (
        ("image_a", "image_b"),
        ("source_size_a", "source_size_b"),
    )

    def __post_init__(self) -> None:
        for side in ("a", "b"):
            image = getattr(self, f"image_{side}")
            if image is None:
                continue
            if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
                raise DecompositionError(
                    f"image_{side} must be an H x W x 3 uint8 array, got {getattr(image, 'shape', type(image).__name__)}"
                )
            view = image.view()
            view.setflags(write=False)  # read-only for this object; the caller's array stays as it was
            object.__setattr__(self, f"image_{side}", view)

    @classmethod
    def of(
        cls,
        explanation: Explanation,
        image_a: np.ndarray | None = None,
        image_b: np.ndarray | None = None,
        *,
        source_size_a: tuple[int, int] | None = None,
        source_size_b: tuple[int, int] | None = None,
        model_name: str | None = None,
    ) -> ExplainedPair:
        """``explanation`` with images attached (a new object; ``explanation`` is not changed). Fields of an
        ExplainedPair given here are kept unless replaced."""
        values = {f.name: getattr(explanation, f.name) for f in dataclasses.fields(Explanation)}
        if isinstance(explanation, ExplainedPair):
            values.update(
                {f.name: getattr(explanation, f.name) for f in dataclasses.fields(cls) if f.name not in values}
            )
        given = dict(
            image_a=image_a,
            image_b=image_b,
            source_size_a=source_size_a,
            source_size_b=source_size_b,
            model_name=model_name,
        )
        values.update({k: v for k, v in given.items() if v is not None})
        for side in ("a", "b"):
            image = values.get(f"image_{side}")
            if image is not None and values.get(f"source_size_{side}") is None:
                values[f"source_size_{side}"] = tuple(image.shape[:2])
        return cls(**values)

    @property
    def image_size_a(self) -> tuple[int, int] | None:
        return None if self.image_a is None else (int(self.image_a.shape[0]), int(self.image_a.shape[1]))

    @property
    def image_size_b(self) -> tuple[int, int] | None:
        return None if self.image_b is None else (int(self.image_b.shape[0]), int(self.image_b.shape[1]))

    def mask_sizes(self, side: Side) -> list[tuple[int, int]] | None:
        """The network input's size and the size as given, where known (None: any size)."""
        sizes = [self.image_size_a, self.source_size_a] if side == "a" else [self.image_size_b, self.source_size_b]
        known: list[tuple[int, int]] = []
        for size in sizes:
            if size is not None and tuple(size) not in known:
                known.append((int(size[0]), int(size[1])))
        return known or None

    # ---- views (matplotlib, via render) -----------------------------------------------------------------

    def figure(self, **kwargs: Any) -> Figure:
        """Both images with their maps; see :func:`simvis_widgets.render.explanation_figure`."""
        from .render import explanation_figure

        return explanation_figure(self, **kwargs)

    def point_figure(self, side: str, row: int, col: int, **kwargs: Any) -> Figure:
        """A figure of :meth:`point_map`: the cell marked on ``side``, its contributions on the other image."""
        from .render import point_figure

        return point_figure(self, side, row, col, **kwargs)

    def region_figure(self, side: str, mask: Any, **kwargs: Any) -> Figure:
        """A figure of :meth:`region_map`: the region outlined on ``side``, its map on the other image."""
        from .render import region_figure

        return region_figure(self, side, mask, **kwargs)

    def save(self, path: str | os.PathLike[str], dpi: int = 120, **kwargs: Any) -> Path:
        """Write :meth:`figure` to ``path`` atomically (PNG, PDF, SVG ... by extension)."""
        from .render import save_figure

        return save_figure(self.figure(**kwargs), path, dpi=dpi)

    def describe(self) -> str:
        return super().describe() + (f", model={self.model_name!r}" if self.model_name else "")
