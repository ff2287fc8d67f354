"""``recolorize train``: train the networks stage by stage (paper sections 3.2.2, 3.3, 3.4.4).

    recolorize train --config base --data photos/ more/ --run runs/x [--stage all] [--resume]
    torchrun --nproc_per_node 8 -m recolorize.training --config base --data photos/ --run-dir runs/x

Writes RUN_DIR/checkpoint.safetensors (everything needed to resume), RUN_DIR/{stage}.safetensors when a
stage ends, RUN_DIR/config.json (the resolved model and training configs), RUN_DIR/metrics.csv and
RUN_DIR/samples/{stage}_{step}.png.
"""

from __future__ import annotations

import argparse

from recolorize.training.arguments import DESCRIPTION, add_arguments

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``train`` subcommand (its options: :func:`recolorize.training.arguments.add_arguments`)."""
    parser = subparsers.add_parser(
        "train",
        help="train the networks (generator, W-encoder, W-predictor) on photo folders",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
