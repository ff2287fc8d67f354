"""``recolorize make-bench``: ground-truth triples (source, reference, target) from held-out photos."""

from __future__ import annotations

import argparse

from recolorize.errors import require_training

__all__ = ["register", "run", "KINDS"]

#: ``--kind``'s choices: ``evaluation.bench.BENCH_KINDS``, written out so that ``recolorize --help`` does not
#: import the bench (torch, the train extra's); a test holds the two equal.
KINDS: tuple[str, ...] = ("global", "local")


def run(args: argparse.Namespace) -> int:
    """Check the extra, then build the bench."""
    require_training("make-bench")
    from recolorize.evaluation.bench import make_bench

    make_bench(
        args.images, args.out, n=args.n, seed=args.seed, masks_dir=args.masks, size=args.size, kind=args.kind
    )
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "make-bench",
        help="build ground-truth re-colorization pairs from held-out photos",
        description="Re-colour held-out photos with a random local + global grade (the target), re-frame "
        "that result (the reference) and keep the original (the source); writes source/, reference/, "
        "target/ and pairs.csv.",
    )
    parser.add_argument("--images", required=True, metavar="DIR", help="folder of held-out photos")
    parser.add_argument("--out", required=True, metavar="BENCH", help="output folder")
    parser.add_argument("--n", type=int, default=100, help="number of pairs, default 100")
    parser.add_argument("--seed", type=int, default=0, help="random seed, default 0")
    parser.add_argument("--masks", default=None, metavar="DIR", help="region masks named like the photos")
    parser.add_argument("--size", type=int, default=None, metavar="PX", help="longest side at most PX")
    parser.add_argument(
        "--kind",
        choices=KINDS,
        default="global",
        help="global (default): a random local + global grade, mostly fitted by a global colour map; local: "
        "two places of similar colour changed differently (one only, or both in opposite directions), which "
        "no global colour map can reproduce",
    )
    parser.set_defaults(func=run)
