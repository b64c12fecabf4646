"""``python -m simvis_widgets ...``: the ``simvis`` command (see :mod:`simvis_widgets.cli`), same exit status."""

from __future__ import annotations

import sys

from .cli import main

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
