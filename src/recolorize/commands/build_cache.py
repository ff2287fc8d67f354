"""``recolorize build-cache``: make the training cache the CPU recipe trains from (data/cache.py).

    recolorize build-cache --data photos/ more/ --exclude held_out/ --out runs/cache128 [--items 12288]
    recolorize train --config pointwise --data runs/cache128 --run runs/x

Triples (source, reference, target) at the working resolution and their frozen EfficientNet-Lite0 features,
written in resumable shards: run the same command again after an interruption and it finishes the job.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from recolorize.errors import UserError, require_training

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``build-cache`` subcommand."""
    parser = subparsers.add_parser(
        "build-cache",
        help="precompute training triples and frozen features (the fast CPU training recipe)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--data", nargs="+", required=True, type=Path, metavar="DIR", help="photo folders")
    parser.add_argument("--exclude", nargs="+", default=[], type=Path, metavar="DIR", help="held-out folders")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="cache folder")
    parser.add_argument("--items", type=int, default=12288, help="number of triples (default 12288)")
    parser.add_argument("--resolution", type=int, default=128, help="side of the crops (default 128)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--prior-size",
        type=int,
        default=0,
        metavar="PX",
        help="crop at PX (384: the colour prior's size), fit and store each triple's prior lattice there, "
        "store the images at --resolution (default 0: no prior)",
    )
    parser.add_argument("--shard-size", type=int, default=512, help="triples per shard file (default 512)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Check the extra, discover the photos and build (or finish) the cache."""
    require_training("build-cache")
    from recolorize.data.cache import CacheSettings, build_cache
    from recolorize.data.folders import discover_photos

    if args.items < 1 or args.shard_size < 1:
        raise UserError("--items and --shard-size must be at least 1")
    if args.resolution < 64 or args.resolution % 64:
        raise UserError(f"--resolution must be a multiple of 64, got {args.resolution}")
    for folder in args.data:
        if not folder.is_dir():
            raise UserError(f"--data folder not found: {folder}")
    photos = discover_photos(args.data, exclude=args.exclude)
    if not photos:
        raise UserError("no photos found under --data")
    if args.prior_size and args.prior_size != 384:
        raise UserError(
            f"--prior-size is 0 or 384 (the size inference fits the prior at), got {args.prior_size}"
        )
    settings = CacheSettings(
        resolution=args.resolution,
        items=args.items,
        seed=args.seed,
        shard_size=args.shard_size,
        prior_size=args.prior_size,
    )
    try:
        out = build_cache(photos, args.out, settings)
    except ValueError as error:
        raise UserError(str(error)) from error
    print(f"wrote the training cache {out} ({settings.items} triples from {len(photos)} photos)")
    return 0
