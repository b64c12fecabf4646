"""``simvis``: static figures from the command line.

    simvis explain A.jpg B.jpg -o out.png [--model NAME] [--pooling avg|max|gem|sum] [--p 3] [--size N]
    simvis explain demo:motorcycle_left demo:motorcycle_right -o out.png   # photos shipped with scikit-image
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from .decompose import POOLINGS


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="simvis", description="Explain why a deep embedding network finds two images similar.")
    sub = parser.add_subparsers(dest="command", required=True)
    ex = sub.add_parser("explain", help="write a figure of the exact similarity decomposition of two images")
    ex.add_argument("image_a", help="image file, or demo:NAME for a photo shipped with scikit-image (e.g. demo:chelsea)")
    ex.add_argument("image_b", help="image file or demo:NAME")
    ex.add_argument("-o", "--output", type=Path, required=True, help="figure file (.png, .pdf, .svg)")
    ex.add_argument("--model", default="efficientnet_lite0", help="efficientnet_lite0 (embedded, offline; default), a torchvision name or timm:NAME")
    ex.add_argument("--pooling", default="avg", choices=POOLINGS)
    ex.add_argument("--p", type=float, default=3.0, help="GeM exponent (p >= 1)")
    ex.add_argument("--size", type=int, default=448, help="shorter side of the network input in px (default 448)")
    ex.add_argument("--dot", action="store_true", help="dot product instead of cosine similarity")
    ex.add_argument("--weights", default=None, help="local weights file (loaded with weights_only=True)")
    ex.add_argument("--random-init", action="store_true", help="random weights (no download)")
    ex.add_argument("--approximate", action="store_true",
                    help="CLS-token ViTs (timm:vit_...): a first-order linearisation, labelled APPROXIMATE")
    ex.add_argument("--dpi", type=int, default=120, help="resolution of raster figures (default 120)")
    ex.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    return parser


def _image_arg(arg: str):  # type: ignore[no-untyped-def]
    """A loaded image from a path or ``demo:NAME``."""
    from .datasets import demo_image
    from .images import load_image

    if arg.startswith("demo:"):
        return demo_image(arg.split(":", 1)[1])
    return load_image(Path(arg))


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from .decompose import DecompositionError, check_pooling
    from .images import ImageInputError
    from .models import ModelError

    try:
        check_pooling(args.pooling, args.p)
        images = [_image_arg(arg) for arg in (args.image_a, args.image_b)]  # fail before building any network
        if not args.output.parent.exists():
            raise FileNotFoundError(f"output folder '{args.output.parent}' does not exist")
        from .session import ModelSession

        session = ModelSession.from_pretrained(
            args.model, pooling=args.pooling, p=args.p, size=args.size, normalize=not args.dot,
            pretrained=not args.random_init, weights=args.weights, device=args.device,
            **({"approximate": True} if args.approximate else {}),
        )
        ex = session.explain(*images)
        from .render import save_figure

        save_figure(ex.figure(), args.output, dpi=args.dpi)
    except (FileNotFoundError, KeyError, ImportError, ImageInputError, ModelError, DecompositionError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"simvis: error: {message}", file=sys.stderr)
        return 2
    print(
        f"score={ex.score:.6f} sum(map_a)={float(ex.map_a.sum()):.6f} sum(map_b)={float(ex.map_b.sum()):.6f} "
        f"global={ex.global_term:.6f} -> {args.output}"
    )
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
