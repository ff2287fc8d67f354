"""The ``train`` options (:func:`add_arguments`), shared by ``recolorize train`` (``commands/train.py``
registers them) and torchrun's ``python -m recolorize.training`` (:func:`main`), and the request they make
(:func:`run`). Here rather than in ``commands`` so that training's own entry point imports nothing above
the training package."""

from __future__ import annotations

import argparse
import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from recolorize.config import CONFIGS, STAGE_NAMES
from recolorize.errors import OneLineParser, UserError, exit_code, refuse_non_finite_options, require_training

__all__ = ["DESCRIPTION", "add_arguments", "main", "run", "parse_setting"]

#: The help text of ``recolorize train`` and ``python -m recolorize.training``.
DESCRIPTION = """``recolorize train``: train the networks stage by stage (paper sections 3.2.2, 3.3, 3.4.4).

    recolorize train --config base --data photos/ more/ --run runs/x [--stage all] [--resume]
    torchrun --nproc_per_node 8 -m recolorize.training --config base --data photos/ --run-dir runs/x

Writes RUN_DIR/checkpoint.safetensors (everything needed to resume), RUN_DIR/{stage}.safetensors when a
stage ends, RUN_DIR/config.json (the resolved model and training configs), RUN_DIR/metrics.csv and
RUN_DIR/samples/{stage}_{step}.png.
"""


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m recolorize.training ARGS`` (torchrun's entry point) = ``recolorize train ARGS``.

    A parser of its own, so that training's entry point reaches this module only, not ``recolorize.cli``,
    ``recolorize.commands`` and the other subcommands.
    """
    parser = OneLineParser(  # option errors in one line, as recolorize's
        prog="python -m recolorize.training",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("PIL").setLevel(logging.INFO)  # as ``recolorize``: our messages, not Pillow's

    def command() -> int:
        refuse_non_finite_options(args)  # any float option of any command: nan, inf, 1e400
        return run(args)

    return exit_code(command)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``train`` options, on ``recolorize train``'s parser or on :func:`main`'s."""
    parser.add_argument("--config", choices=sorted(CONFIGS), help="model size (default: the checkpoint's)")
    parser.add_argument("--data", nargs="+", required=True, type=Path, metavar="DIR", help="photo folders")
    parser.add_argument("--exclude", nargs="+", default=[], type=Path, metavar="DIR", help="held-out folders")
    parser.add_argument(
        "--run",
        "--run-dir",
        dest="run",
        required=True,
        type=Path,
        metavar="RUN_DIR",
        help="output folder of the run (--run-dir under torchrun, which reads --run as its --run-path)",
    )
    parser.add_argument("--stage", choices=[*STAGE_NAMES, "all"], default="all", help="stage(s) to train")
    parser.add_argument("--steps", type=int, help="steps of each selected stage")
    parser.add_argument("--batch", type=int, help="global batch of each selected stage")
    parser.add_argument("--lr", type=float, help="Adam learning rate of each selected stage")
    parser.add_argument("--seed", type=int, help="random seed (default: the config's)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any training setting, e.g. log_every=1, checkpoint_every=50, predictor.w0=0.5 (JSON values)",
    )
    parser.add_argument("--resume", action="store_true", help="continue from RUN_DIR's checkpoint")
    parser.add_argument("--init", type=Path, metavar="WEIGHTS", help="start from these model weights")
    parser.add_argument("--device", choices=["cpu", "cuda"], help="default: cuda when available")
    parser.add_argument("--workers", type=int, help="data loader processes (default: 0 on the CPU)")
    parser.add_argument(
        "--rank-digests",
        action="store_true",
        help="debug: each process writes RUN_DIR/digest_rank{R}.txt, a hash of its weights, after each stage",
    )
    parser.set_defaults(func=run)


def parse_setting(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` -> (key, value); the value is read as JSON when it parses, else kept as text."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise UserError(f"--set needs KEY=VALUE, got {text!r}")
    try:
        return key.strip(), json.loads(value)
    except json.JSONDecodeError:
        return key.strip(), value


def run(args: argparse.Namespace) -> int:
    """Check the extra, build the request from the arguments and train."""
    require_training("train")
    from recolorize.training.loop import TrainRequest, train  # torch: here, so that --help needs none

    stages = STAGE_NAMES if args.stage == "all" else (args.stage,)
    if args.lr is not None and not math.isfinite(args.lr):  # argparse's float takes nan and inf
        raise UserError(f"--lr must be a finite number, got {args.lr}")
    overrides: dict[str, Any] = dict(parse_setting(text) for text in args.set)
    if args.seed is not None:
        overrides["seed"] = args.seed
    for option in ("steps", "batch", "lr"):
        value = getattr(args, option)
        if value is not None:
            overrides.update({f"{stage}.{option}": value for stage in stages})
    request = TrainRequest(
        run_dir=args.run,
        data=tuple(args.data),
        stages=tuple(stages),
        config=args.config,
        exclude=tuple(args.exclude),
        overrides=overrides,
        resume=args.resume,
        init=args.init,
        device=args.device,
        workers=args.workers,
        rank_digests=args.rank_digests,
    )
    train(request)
    return 0
