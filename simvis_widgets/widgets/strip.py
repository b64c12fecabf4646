"""The checks of a result strip's traits, shared by the Explorer and the TextExplorer: how many hits it shows
(``k``) and which one is selected."""

from __future__ import annotations

from typing import Any

import numpy as np
import traitlets as t

from ..errors import WidgetError


def check_k(k: Any, error: type[Exception] = WidgetError) -> int:
    """``k`` as an int: an integer in [1, 100] (not a bool), else ``error`` naming it."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= 100:
        raise error(f"k must be an integer in [1, 100], got {k!r}")
    return int(k)


def check_selected(value: Any, gallery_size: int, alternative: str | None) -> int:
    """The selected hit as an int: a gallery index in [0, gallery_size), or -1 where the explorer has an
    ``alternative`` to the gallery on its right (named in the error), else a ``TraitError`` naming what is allowed."""
    if value == -1 and alternative is not None:
        return -1
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= value < gallery_size:
        allowed = (
            f"a gallery index in [0, {gallery_size - 1}]" if gallery_size else "no gallery index (there is no gallery)"
        )
        given = f" or -1 ({alternative})" if alternative is not None else ""
        raise t.TraitError(f"selected must be {allowed}{given}, got {value!r}")
    return int(value)
