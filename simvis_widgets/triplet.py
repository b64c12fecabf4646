"""An explained triplet: anchor A, positive P, negative N. Metric learning trains ``s(A, P) > s(A, N)``; the
question a triplet answers is *where on the anchor* the network prefers P to N (or, for a hard negative, N to P).

With the pairs' decompositions ``S_A(A, P)`` and ``S_A(A, N)`` on the anchor's cells (same grid: one anchor),

    D = S_A(A, P) - S_A(A, N),     sum_i D_i + (g(A, P) - g(A, N)) = s(A, P) - s(A, N)

exactly (``g``: the pairs' global terms, 0 without a head bias). Cells with ``D_i < 0`` are where the anchor looks
more like the negative. Immutable, like the pairs it holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from .errors import DecompositionError
from .pair import ExplainedPair

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure


@dataclass(frozen=True, eq=False)
class ExplainedTriplet:
    """``positive``: the explained pair (A, P); ``negative``: (A, N); side ``a`` of both is the anchor."""

    positive: ExplainedPair
    negative: ExplainedPair

    def __post_init__(self) -> None:
        for name in ("positive", "negative"):
            if not isinstance(getattr(self, name), ExplainedPair):
                raise DecompositionError(f"{name} must be an ExplainedPair, got {type(getattr(self, name)).__name__}")
        p, n = self.positive, self.negative
        if p.grid_a != n.grid_a:
            raise DecompositionError(f"the pairs have different anchors: grids {p.grid_a} and {n.grid_a}")
        if (p.pooling, p.p, p.normalized, p.exact) != (n.pooling, n.p, n.normalized, n.exact):
            raise DecompositionError("the pairs come from different sessions (pooling, similarity or exactness)")
        if p.embedding_a is not None and n.embedding_a is not None:
            if not torch.allclose(p.embedding_a, n.embedding_a, rtol=1e-5, atol=1e-6):
                raise DecompositionError("the pairs have different anchors: their anchor embeddings differ")

    @property
    def margin(self) -> float:
        """``s(A, P) - s(A, N)``: positive when the network ranks P above N."""
        return self.positive.score - self.negative.score

    @property
    def global_difference(self) -> float:
        """``g(A, P) - g(A, N)``: the part of the margin that belongs to no cell (0 without a head bias)."""
        return self.positive.global_term - self.negative.global_term

    @property
    def difference_map(self) -> Tensor:
        """``D = S_A(A, P) - S_A(A, N)`` on the anchor's grid; ``D.sum() + global_difference == margin``."""
        return self.positive.map_a - self.negative.map_a

    def point_maps(self, row: int, col: int) -> tuple[Tensor, Tensor]:
        """Where anchor cell ``(row, col)`` is matched on P and on N (its rows of the two pairwise matrices)."""
        return self.positive.point_map("a", row, col), self.negative.point_map("a", row, col)

    def region_maps(self, mask: Any) -> tuple[Tensor, Tensor]:
        """Where a region of the anchor (mask as for :meth:`Explanation.region_map`) is matched on P and on N."""
        return self.positive.region_map("a", mask), self.negative.region_map("a", mask)

    def region_margin(self, mask: Any) -> float:
        """The region's part of the margin: ``sum_i w_i D_i``."""
        return self.positive.region_score("a", mask) - self.negative.region_score("a", mask)

    def figure(self, **kwargs: Any) -> Figure:
        """The anchor with ``D``, P and N with their pair maps: :func:`simvis_widgets.render.triplet_figure`."""
        from .render import triplet_figure

        return triplet_figure(self, **kwargs)

    def __repr__(self) -> str:
        return (
            f"ExplainedTriplet(s(A,P)={self.positive.score:.6g}, s(A,N)={self.negative.score:.6g}, "
            f"margin={self.margin:.6g}, {'exact' if self.positive.exact else 'APPROXIMATE'})"
        )
