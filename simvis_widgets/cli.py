"""``simvis``: static figures from the command line.

    simvis explain A.jpg B.jpg -o out.png [--model NAME] [--pooling avg|max|gem|sum] [--p 3] [--size N]
    simvis explain demo:motorcycle_left demo:motorcycle_right -o out.png   # photos shipped with scikit-image
    python -m simvis_widgets explain ...                                   # the same command

Every bad input (arguments, images, output path, model, device, resource limits) exits with status 2 and one
line ``simvis: error: ...`` on stderr, never a traceback. Everything that can be checked without a network is
checked before any model is built.
"""

from __future__ import annotations

import argparse
import math
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from .decompose import POOLINGS
from .errors import LimitError, SimvisError

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

_FIGURE_WIDTH = 11.0
"""Width in inches of the explanation figure; its height is ``_FIGURE_WIDTH / 2 * (height / width of the taller
image) + 1.3`` (see :mod:`simvis_widgets.render`), used to check ``--dpi`` before any model is built."""

EXIT_BAD_INPUT = 2


class _ArgumentError(SimvisError, ValueError):
    """A command-line argument that cannot be used (output format, device)."""


class _Parser(argparse.ArgumentParser):
    """argparse with the CLI's one-line error format (``simvis: error: ...``, status 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"simvis: error: {message} (see '{self.prog} --help')\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="simvis", description="Explain why a deep embedding network finds two images similar.")
    sub = parser.add_subparsers(dest="command", required=True)
    ex = sub.add_parser("explain", help="write a figure of the exact similarity decomposition of two images")
    ex.add_argument(
        "image_a",
        help="image file, or demo:NAME for a demo photo shipped with scikit-image or scikit-learn (e.g. demo:chelsea, demo:china)",
    )
    ex.add_argument("image_b", help="image file or demo:NAME")
    ex.add_argument("-o", "--output", type=Path, required=True, help="figure file (.png, .pdf, .svg, .jpg ...)")
    ex.add_argument(
        "--model",
        default="efficientnet_lite0",
        help="efficientnet_lite0 (embedded, offline; default), a torchvision name or timm:NAME",
    )
    ex.add_argument("--pooling", default="avg", choices=POOLINGS)
    ex.add_argument("--p", type=float, default=3.0, help="GeM exponent (p >= 1)")
    ex.add_argument("--size", type=int, default=448, help="shorter side of the network input in px (default 448)")
    ex.add_argument("--dot", action="store_true", help="dot product instead of cosine similarity")
    ex.add_argument("--weights", default=None, help="local weights file (loaded with weights_only=True)")
    ex.add_argument("--random-init", action="store_true", help="random weights (no download)")
    ex.add_argument(
        "--approximate",
        action="store_true",
        help="CLS-token ViTs (timm:vit_...): a first-order linearisation, labelled APPROXIMATE",
    )
    ex.add_argument("--dpi", type=float, default=120, help="resolution of the figure (default 120)")
    ex.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    return parser


def _image_arg(arg: str) -> np.ndarray:
    """A loaded image from a path or ``demo:NAME``."""
    from .datasets import demo_image
    from .images import load_image

    if arg.startswith("demo:"):
        return demo_image(arg.split(":", 1)[1])
    return load_image(arg)


def _check_output(path: Path) -> str:
    """The figure format of ``path`` (its suffix; none: png). Raises :class:`_ArgumentError` unless matplotlib's
    Agg canvas can write that format (``.pgf`` only with its TeX system installed), ``IsADirectoryError`` when
    ``path`` is a folder and ``FileNotFoundError`` when its folder does not exist."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fmt = path.suffix.lstrip(".").lower() or "png"
    formats = dict(FigureCanvasAgg.get_supported_filetypes())
    if fmt == "pgf":
        import matplotlib

        if shutil.which(matplotlib.rcParams["pgf.texsystem"]) is None:
            formats.pop("pgf")
    if fmt not in formats:
        raise _ArgumentError(
            f"cannot write a figure as '{path}': unknown format '.{fmt}' (use one of "
            f"{', '.join('.' + f for f in sorted(formats))})"
        )
    if path.is_dir():
        raise IsADirectoryError(f"output '{path}' is a folder: give a file name such as '{path / 'figure.png'}'")
    if not path.parent.is_dir():
        what = "is not a folder" if path.parent.exists() else "does not exist"
        raise FileNotFoundError(f"output folder '{path.parent}' {what}")
    return fmt


def _check_device(device: str | None) -> None:
    """Raises :class:`_ArgumentError` unless ``device`` (None: automatic) names a torch device this machine has."""
    if device is None:
        return
    import torch

    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError) as err:
        raise _ArgumentError(f"unknown device '{device}' ({err}); use cpu, cuda, cuda:N or mps") from None
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise _ArgumentError(f"device '{device}' asked for, but CUDA is not available here: use --device cpu")
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise _ArgumentError(f"device '{device}': this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif parsed.type == "mps" and not torch.backends.mps.is_available():
        raise _ArgumentError(f"device '{device}' asked for, but MPS is not available here: use --device cpu")


def _check_dpi(dpi: float, images: Sequence[np.ndarray] = ()) -> None:
    """Raises :class:`LimitError` unless ``dpi`` is a positive finite number whose figure of ``images`` stays
    within :data:`simvis_widgets.render.MAX_FIGURE_PIXELS` (estimated from the images' aspect ratio; the saved
    figure is checked exactly by :func:`~simvis_widgets.render.save_figure`)."""
    from .render import MAX_FIGURE_PIXELS

    if not math.isfinite(dpi) or dpi <= 0:
        raise LimitError(f"--dpi must be a positive number, got {dpi:g}")
    aspect = max((img.shape[0] / img.shape[1] for img in images), default=0.0)
    inches = _FIGURE_WIDTH * (_FIGURE_WIDTH / 2 * aspect + 1.3)
    if inches * dpi * dpi > MAX_FIGURE_PIXELS:
        most = math.floor(math.sqrt(MAX_FIGURE_PIXELS / inches))
        raise LimitError(
            f"--dpi {dpi:g} would draw a figure of about {inches * dpi * dpi:,.0f} pixels, above the limit of "
            f"{MAX_FIGURE_PIXELS:,} (MAX_FIGURE_PIXELS): use --dpi {most} or less"
        )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``simvis`` command; returns the exit status (0, or 2 for any bad input, with one error line)."""
    args = _parser().parse_args(argv)
    from .decompose import check_pooling
    from .images import check_short_side

    try:
        check_pooling(args.pooling, args.p)
        check_short_side(args.size, 3.0)
        _check_dpi(args.dpi)
        _check_output(args.output)
        _check_device(args.device)
        images = [_image_arg(arg) for arg in (args.image_a, args.image_b)]
        _check_dpi(args.dpi, images)
        from .session import ModelSession

        session = ModelSession.from_pretrained(
            args.model,
            pooling=args.pooling,
            p=args.p,
            size=args.size,
            normalize=not args.dot,
            pretrained=not args.random_init,
            weights=args.weights,
            device=args.device,
            approximate=args.approximate,
        )
        ex = session.explain(*images)
        from .render import save_figure

        save_figure(ex.figure(), args.output, dpi=args.dpi)
    except (
        SimvisError,
        FileNotFoundError,
        IsADirectoryError,
        NotADirectoryError,
        PermissionError,
        KeyError,
        ImportError,
    ) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"simvis: error: {message}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(
        f"score={ex.score:.6f} sum(map_a)={float(ex.map_a.sum()):.6f} sum(map_b)={float(ex.map_b.sum()):.6f} "
        f"global={ex.global_term:.6f} -> {args.output}"
    )
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
