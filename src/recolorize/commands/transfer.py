"""``recolorize transfer``: the main job, re-colour photos after a reference with the shipped model.

A shell over ``recolorize.inference.jobs``: the options become a ``TransferSettings`` (each checked there,
once), the paths a plan (every path checked before anything slow), the weight file is checked, and
``run_transfer`` does the work. This module only turns the outcome into lines and an exit code: an error
is one line on stderr with exit code 2 (1 when the re-colouring itself fails, not the input); in a batch
(a folder or ``--pairs``) a bad pair, whatever went wrong with it, is named in one line and skipped, and the
command exits 1 at the end with a count.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from recolorize.config import MAX_RESOLUTION, MIN_RESOLUTION
from recolorize.errors import UserError, one_line, shown
from recolorize.image_formats import DEFAULT_MAX_PIXELS, WRITE_SUFFIXES
from recolorize.inference.jobs import (
    MAX_JOBS,
    Job,
    Plan,
    TransferReport,
    TransferSettings,
    check_model,
    describe_reference,
    plan_transfer,
    run_transfer,
)

__all__ = ["register", "run", "failure_line"]

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``transfer`` subcommand."""
    parser = subparsers.add_parser(
        "transfer",
        help="re-colour a photo (or a folder, or a CSV of pairs) after a reference photo",
        description="Re-colour SOURCE after REFERENCE at full resolution. Several references may be "
        "given: each region then takes its colour from its best match in any of them. SOURCE may be a "
        "folder (then -o is a folder); --pairs runs a CSV with columns source,reference[,output] (paths "
        "relative to the CSV, several references separated by ';'; outputs relative to -o and kept inside "
        "it).",
    )
    parser.add_argument("source", nargs="?", type=Path, help="source photo or folder of photos")
    parser.add_argument(
        "reference",
        nargs="*",
        type=Path,
        help="reference photo; give several to let each region take its colour from its best match",
    )
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        required=True,
        help=f"output file (its suffix picks the format: {' '.join(WRITE_SUFFIXES)}) or folder",
    )
    parser.add_argument("--pairs", type=Path, help="CSV of pairs (columns source,reference[,output])")
    parser.add_argument(
        "--lut",
        type=Path,
        help="also write the transfer's colour mapping as a 3D LUT (.cube, 33^3) to this file (one photo)",
    )
    parser.add_argument("--strength", type=float, default=1.0, help="0 = the source, 1 = full transfer")
    parser.add_argument(
        "--size",
        type=int,
        help=f"working resolution, a multiple of 64 from {MIN_RESOLUTION} to {MAX_RESOLUTION} (default: "
        "the model's; memory grows with its 4th power: 512 takes ~0.8 GB, 1024 ~5 GB)",
    )
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--weights", type=Path, help="model weights (.safetensors); default: shipped model")
    parser.add_argument("--quality", type=int, default=95, help="JPEG quality of the output (1-100)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs (even the source)")
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        metavar="N",
        help=f"batch only: re-colour N photos at once in N worker processes that each load the model (1-"
        f"{MAX_JOBS}, at most one process per CPU core; default 1; each process takes about as much memory "
        "as one --jobs 1 run)",
    )
    parser.add_argument(
        "--max-pixels",
        default=None,
        metavar="N",
        help="decompression-bomb limit: a whole number of pixels >= 1, e.g. 40000000 or 4e7 (default: "
        f"$RECOLORIZE_MAX_PIXELS, else {DEFAULT_MAX_PIXELS}); 0 is refused here and in the variable alike",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=argparse.SUPPRESS,
        help="also log what is loaded and from where (normal output is the result line only)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Options -> settings, paths -> plan, the weight file checked, then the jobs run: the exit code."""
    settings = TransferSettings(
        strength=args.strength,
        size=args.size,
        device=args.device,
        quality=args.quality,
        max_pixels=args.max_pixels,
        overwrite=args.overwrite,
        lut=args.lut,
        jobs=args.jobs,
    )
    plan = plan_transfer(args.output, settings, args.source, args.reference, args.pairs)
    weights = check_model(args.weights, settings.device)
    for message in plan.rejected:
        print(f"recolorize: error: {message}", file=sys.stderr)
    report = run_transfer(plan, settings, weights, on_failure=_name_failure if plan.batch else None)
    return _exit_code(plan, report)


def _name_failure(job: Job, error: BaseException) -> None:
    """A batch names each failed pair at once, in one line above its progress bar."""
    from tqdm import tqdm

    tqdm.write(failure_line(job, error), file=sys.stderr)


def _exit_code(plan: Plan, report: TransferReport) -> int:
    """0 when every job succeeded. One pair: its ``UserError`` is raised for the CLI (one line, exit 2), any
    other error is one line and exit 1. A batch: the count of failures in one line, exit 1."""
    if not plan.batch and report.failures:
        job, error = report.failures[0]
        if isinstance(error, UserError):
            raise error
        print(failure_line(job, error, skipped=False), file=sys.stderr)
        return 1
    failures = len(plan.rejected) + len(report.failures)
    if failures:
        total = len(plan.jobs) + len(plan.rejected)
        print(f"recolorize: {failures} of {total} photos failed", file=sys.stderr)
        return 1
    return 0


def failure_line(job: Job, error: BaseException, skipped: bool = True) -> str:
    """The one line that names a failed pair (a ``UserError`` says itself what went wrong)."""
    if isinstance(error, UserError):
        return f"recolorize: error: {one_line(error, 500)}"
    logger.debug("pair %s / %s failed", job.source, describe_reference(job.reference), exc_info=error)
    return (
        f"recolorize: error: {shown(job.source)} with {shown(describe_reference(job.reference))} failed "
        f"({type(error).__name__}: {one_line(error)}){'; skipped' if skipped else ''}"
    )
