"""``recolorize transfer``: the main job, re-colour photos after a reference with the shipped model.

Everything that can be checked cheaply is checked before anything slow runs: the options, every path
(regular files only: a FIFO would block the open forever), the output's suffix and folder, each pairs-CSV
row (an output must stay inside ``-o``) and the weight file's header; then the photos are decoded, and
only then is the model loaded. An error is one line on stderr with exit code 2 (1 when the re-colouring
itself fails, not the input); in a batch (a folder or ``--pairs``) a bad pair, whatever went wrong with
it, is named in one line and skipped, and the command exits 1 at the end.

This module is the command line and the order of the checks; ``transfer_plan`` turns the arguments into
jobs (one pair is a batch of one), ``transfer_run`` runs them (``--jobs N``: N at once in threads) and
``transfer_output`` checks and writes the outputs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from recolorize.commands.transfer_plan import Job, Plan, plan_jobs
from recolorize.config import MAX_RESOLUTION, MIN_RESOLUTION, resolution_problem
from recolorize.errors import UserError
from recolorize.image_formats import DEFAULT_MAX_PIXELS, WRITE_SUFFIXES

__all__ = ["register", "run", "plan_jobs", "Job", "Plan", "MIN_SIZE", "MAX_SIZE"]

#: Bounds of ``--size``: the working resolution's one range (``config.MIN_RESOLUTION``, ``MAX_RESOLUTION``,
#: checked by ``config.resolution_problem``, as for a model's config). The attention between source and
#: reference positions grows with the fourth power of the size: measured peak memory with the shipped
#: model is 0.8 GB at 512 and 4.9 GB at 1024 (2048 would need ~70 GB), so 1024 is the most a workstation
#: can run.
MIN_SIZE, MAX_SIZE = MIN_RESOLUTION, MAX_RESOLUTION
#: Most processes ``--jobs`` may ask for (each loads the model; see transfer_helpers).
MAX_JOBS = 16


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
        help=f"working resolution, a multiple of 64 from {MIN_SIZE} to {MAX_SIZE} (default: the model's; "
        "memory grows with its 4th power: 512 takes ~0.8 GB, 1024 ~5 GB)",
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
        help="batch only: re-colour N photos at once, in this process and N - 1 helper processes that "
        f"each load the model (1-{MAX_JOBS}, at most one process per CPU core; default 1; each process "
        "takes about as much memory as one --jobs 1 run)",
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


def _check_options(args: argparse.Namespace) -> int:
    """Check every option (cheap, nothing loaded); returns the pixel limit."""
    from recolorize.imaging import resolve_max_pixels
    from recolorize.io_utils import name_problem

    if not 0.0 <= args.strength <= 1.0:
        raise UserError(f"--strength must be between 0 and 1, got {args.strength}")
    if not 1 <= args.quality <= 100:
        raise UserError(f"--quality must be between 1 and 100, got {args.quality}")
    if args.size is not None and (problem := resolution_problem(args.size)) is not None:
        raise UserError(f"--size {problem}")
    jobs = getattr(args, "jobs", 1)
    if not 1 <= jobs <= MAX_JOBS:
        raise UserError(f"--jobs must be between 1 and {MAX_JOBS}, got {jobs}")
    for output in (args.output, getattr(args, "lut", None)):
        if output is not None and (problem := name_problem(output)) is not None:
            raise UserError(problem)
    return resolve_max_pixels(args.max_pixels)


def _check_headers(args: argparse.Namespace, plan: Plan, max_pixels: int) -> None:
    """Read the headers of the photos every job needs (the one source, the references of a folder
    batch), so that a text file named .jpg is refused at once, not after torch's import (2-3 s)."""
    from recolorize.commands.transfer_plan import reference_paths
    from recolorize.imaging import photo_size

    if args.pairs is not None:  # each row's photos are checked with its row; a bad row is skipped
        return
    for path in reference_paths(args.reference):
        photo_size(path, max_pixels)
    if not plan.batch:
        photo_size(plan.jobs[0].source, max_pixels)


def run(args: argparse.Namespace) -> int:
    """Check everything, decode the photos, load the model, re-colour, write atomically."""
    max_pixels = _check_options(args)
    plan = plan_jobs(args)
    _check_headers(args, plan, max_pixels)
    if getattr(args, "lut", None) is not None:
        from recolorize.commands.lut import check_lut_output

        if plan.batch:
            raise UserError("--lut writes the look of one transfer: give one SOURCE and REFERENCE")
        check_lut_output(args.lut, args.overwrite)

    from recolorize.commands.transfer_first import FirstDecode
    from recolorize.commands.transfer_run import run_jobs

    first = FirstDecode(args, plan, max_pixels)  # the first photos decode while torch is imported
    helpers = None
    if getattr(args, "jobs", 1) > 1:  # --jobs N: N - 1 processes start loading now
        from recolorize.commands.transfer_helpers import Helpers

        helpers = Helpers.start(args, plan, max_pixels)
    try:
        from recolorize.process import heavy_imports

        with heavy_imports():
            from recolorize.inference.pipeline import check_device, default_weights_path  # imports torch
            from recolorize.networks.weights_file import check_weights

        check_device(args.device)
        weights = args.weights if args.weights is not None else default_weights_path()
        check_weights(weights / "model.safetensors" if weights.is_dir() else weights)
        return run_jobs(args, plan, max_pixels, first, helpers)
    finally:
        first.close()
        if helpers is not None:
            helpers.close()
