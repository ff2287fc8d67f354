"""``recolorize dpst-report``: every method on the DPST pairs; HIS, contact sheets, pair 23 apart."""

from __future__ import annotations

import argparse
from pathlib import Path

from recolorize.commands.eval import DEFAULT_METHODS, command_line
from recolorize.errors import require_training
from recolorize.evaluation.methods import MethodOptions, known_methods, parse_methods, require_method_extras

__all__ = ["register", "run"]


def run(args: argparse.Namespace) -> int:
    """Check the extras (one line each, before anything is read), the pairs and the methods; report."""
    require_training("dpst-report")
    require_method_extras(args.methods, "dpst-report")
    from recolorize.evaluation.dpst import read_dpst_pairs, run_dpst_report  # (the metrics: scikit-image)

    ids = [p.strip() for p in args.pairs.split(",") if p.strip()] if args.pairs else None
    read_dpst_pairs(args.dpst, ids, args.limit)  # check the folder and the ids before loading any model
    options = MethodOptions(weights=args.weights, device=args.device, strength=args.strength)
    methods = parse_methods(args.methods, options)
    flags = {
        "dpst": "--dpst",
        "out": "--out",
        "methods": "--methods",
        "weights": "--weights",
        "size": "--size",
        "pairs": "--pairs",
        "limit": "--limit",
        "per_sheet": "--per-sheet",
        "tile_height": "--tile-height",
        "strength": "--strength",
        "device": "--device",
    }
    run_dpst_report(
        args.dpst,
        methods,
        args.out,
        size=args.size if args.size else None,
        ids=ids,
        limit=args.limit,
        per_sheet=args.per_sheet,
        tile_height=args.tile_height,
        command=command_line("dpst-report", args, flags),
    )
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "dpst-report",
        help="run methods on the DPST benchmark (no ground truth): HIS and contact sheets",
        description="Run each method on the DPST pairs (DIR/pairs.csv) and write OUT/metrics.csv, "
        "OUT/summary.md (mean HIS; pairs whose reference equals the source, e.g. 23, reported apart) and "
        f"OUT/sheets/*.png. Methods: {', '.join(known_methods())}, or ours=PATH.",
    )
    parser.add_argument("--dpst", required=True, type=Path, metavar="DIR", help="DPST folder with pairs.csv")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder")
    parser.add_argument(
        "--methods", default=DEFAULT_METHODS, help=f"comma-separated methods, default {DEFAULT_METHODS}"
    )
    parser.add_argument(
        "--weights", type=Path, metavar="PATH", help="weights of 'ours'; default: shipped model"
    )
    parser.add_argument(
        "--size", type=int, default=512, metavar="PX", help="long side at most PX, default 512 (0: full size)"
    )
    parser.add_argument("--pairs", metavar="IDS", help="only these pair ids, comma-separated (e.g. 1,2,23)")
    parser.add_argument("--limit", type=int, metavar="N", help="only the first N pairs")
    parser.add_argument("--per-sheet", type=int, default=12, metavar="N", help="pairs per contact sheet")
    parser.add_argument(
        "--tile-height", type=int, default=128, metavar="PX", help="cell height of the sheets"
    )
    parser.add_argument("--strength", type=float, default=1.0, help="strength alpha of 'ours', default 1")
    parser.add_argument("--device", default="cpu", help="device of 'ours': cpu or cuda")
    parser.set_defaults(func=run)
