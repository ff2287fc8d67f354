"""``recolorize analyse {table3,fig4,fig5,w0}``: the paper's analyses of its latent spaces."""

from __future__ import annotations

import argparse
from pathlib import Path

from recolorize.errors import UserError, require_training
from recolorize.evaluation.analyses import ANALYSES, get_analysis

__all__ = ["register", "run", "parse_point"]


def parse_point(text: str) -> tuple[float, float]:
    """ "ROW,COL" as fractions of the image in [0, 1] -> (row, col)."""
    try:
        row, col = (float(v) for v in text.split(","))
    except ValueError:
        raise UserError(f"--point must be ROW,COL fractions such as 0.5,0.25, got {text!r}") from None
    if not (0.0 <= row <= 1.0 and 0.0 <= col <= 1.0):
        raise UserError(f"--point fractions must lie in [0, 1], got {text!r}")
    return row, col


def run(args: argparse.Namespace) -> int:
    """Check the extra and the options, load the model, run the analysis."""
    require_training("analyse")
    from recolorize.evaluation.analyses.common import AnalysisOptions
    from recolorize.torch_inference.recolorizer import TorchRecolorizer  # they read the torch networks

    analysis = get_analysis(args.analysis)
    if not args.images.is_dir():
        raise UserError(f"image folder {args.images} does not exist or is not a folder")
    for name in ("batch", "k", "queries", "show", "others"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name} must be at least 1, got {getattr(args, name)}")
    if args.steps_code < 0 or args.steps_maps < 0:
        raise UserError("--steps-code and --steps-maps must be >= 0")
    options = AnalysisOptions(
        n=args.n,
        seed=args.seed,
        batch=args.batch,
        steps_code=args.steps_code,
        steps_maps=args.steps_maps,
        lr=args.lr,
        k=args.k,
        queries=args.queries,
        point=parse_point(args.point) if args.point else None,
        show=args.show,
        others=args.others,
    )
    model = TorchRecolorizer.from_pretrained(args.weights, device=args.device).model
    args.out.mkdir(parents=True, exist_ok=True)
    analysis.run(model, args.images, args.out, options)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "analyse",
        help="the paper's latent-space analyses (Table 3, Figures 4-5, w0 reconstruction)",
        description="; ".join(f"{a.name}: {a.description}" for a in ANALYSES.values())
        + ". Each writes OUT/<name>.png, OUT/<name>.json and OUT/<name>.md.",
    )
    parser.add_argument("analysis", choices=list(ANALYSES), help="which analysis")
    parser.add_argument("--images", required=True, type=Path, metavar="DIR", help="folder of photos")
    parser.add_argument("--weights", type=Path, metavar="PATH", help="model weights; default: shipped model")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder")
    parser.add_argument("--n", type=int, help="images (pairs) to use; default per analysis")
    parser.add_argument("--seed", type=int, default=0, help="random seed, default 0")
    parser.add_argument("--batch", type=int, default=8, help="images per forward pass, default 8")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--steps-code", type=int, default=200, help="table3: Adam steps on w, default 200")
    parser.add_argument(
        "--steps-maps", type=int, default=200, help="table3: Adam steps on the maps, default 200"
    )
    parser.add_argument("--lr", type=float, default=0.01, help="table3: Adam learning rate, default 0.01")
    parser.add_argument("--k", type=int, default=5, help="fig4: neighbours shown per query, default 5")
    parser.add_argument("--queries", type=int, default=3, help="fig4: query images, default 3")
    parser.add_argument(
        "--point", metavar="ROW,COL", help="fig5: query point as fractions; default: most colourful"
    )
    parser.add_argument("--show", type=int, default=4, help="fig5: images drawn, default 4")
    parser.add_argument("--others", type=int, default=4, help="w0: other images' codes per image, default 4")
    parser.set_defaults(func=run)
