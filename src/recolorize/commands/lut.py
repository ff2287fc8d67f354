"""``recolorize lut``: write a transfer's look as a 3D LUT (``.cube``) that editors load, and nothing else.

Checks come first, as in ``transfer``: the options, both photos' paths, the ``.cube`` output, the weight
file's header; then the photos are decoded and the model loaded.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from recolorize.errors import UserError

__all__ = ["register", "run", "check_lut_output", "LUT_SUFFIX", "MAX_LUT_SIZE"]

LUT_SUFFIX = ".cube"
#: Largest lattice ``--lut-size`` accepts: 65^3 is the finest editors commonly load.
MAX_LUT_SIZE = 65

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``lut`` subcommand."""
    from recolorize.inference.lut import LUT_METHODS, LUT_SIZE

    parser = subparsers.add_parser(
        "lut",
        help="write the look of SOURCE re-coloured after REFERENCE as a 3D LUT (.cube)",
        description="Re-colour SOURCE after REFERENCE and write the colour mapping as a 3D LUT (.cube, "
        "Adobe/Resolve layout: LUT_3D_SIZE, domain 0-1, red fastest) that DaVinci Resolve, Premiere, "
        "Photoshop, OBS or ffmpeg's lut3d load. A LUT is one global mapping: the local part of the "
        "transfer (different regions mapped differently) is averaged away. On held-out pairs the fitted "
        "LUT stays within a mean ΔE2000 of 0.75 of the model's own output; where one colour changes "
        "differently in different places (a red cup turned blue on a warm table), the LUT cannot follow, "
        "so grade the photo itself with 'recolorize transfer' and use the LUT for other photos or video.",
    )
    parser.add_argument("source", type=Path, help="source photo")
    parser.add_argument("reference", type=Path, help="reference photo")
    parser.add_argument("-o", "--output", type=Path, required=True, help="the LUT file to write (.cube)")
    parser.add_argument("--strength", type=float, default=1.0, help="0 = the identity LUT, 1 = full transfer")
    parser.add_argument(
        "--method",
        choices=LUT_METHODS,
        default=LUT_METHODS[0],
        help="fit: the model's colour prior exactly plus its learned change fitted as a LUT (default); "
        "prior: the colour prior alone, exactly; pooled: the generator with its latent maps averaged over "
        "the photo",
    )
    parser.add_argument(
        "--lut-size",
        type=int,
        default=LUT_SIZE,
        help=f"lattice points per axis, 2-{MAX_LUT_SIZE} (default 33)",
    )
    parser.add_argument("--size", type=int, help="working resolution, as for transfer (default: the model's)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--weights", type=Path, help="model weights (.safetensors); default: shipped model")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing LUT file")
    parser.add_argument(
        "--max-pixels", default=None, metavar="N", help="decompression-bomb limit, as for transfer"
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="also log what is loaded"
    )
    parser.set_defaults(func=run)


def check_lut_output(path: Path, overwrite: bool) -> None:
    """A ``.cube`` output that can be written: checked before any work."""
    from recolorize.io_utils import name_problem, output_file_problem

    if (problem := name_problem(path)) is not None:
        raise UserError(problem)
    if path.suffix.lower() != LUT_SUFFIX:
        raise UserError(f"the LUT file {path} must end in {LUT_SUFFIX}")
    if path.is_dir():
        raise UserError(f"the LUT file {path} is a folder; give a file name")
    if path.exists() and not overwrite:
        raise UserError(f"LUT file {path} exists; use --overwrite to replace it")
    if (problem := output_file_problem(path)) is not None:
        raise UserError(problem)


def run(args: argparse.Namespace) -> int:
    """Check everything, decode both photos, load the model, render, fit and write the LUT atomically."""
    from recolorize.commands.job_logs import held_logs
    from recolorize.commands.transfer_run import load_model, out_of_memory_is_an_error
    from recolorize.config import resolution_problem
    from recolorize.imaging import load_image, photo_size, resolve_max_pixels
    from recolorize.io_utils import name_problem

    if not 0.0 <= args.strength <= 1.0:
        raise UserError(f"--strength must be between 0 and 1, got {args.strength}")
    if not 2 <= args.lut_size <= MAX_LUT_SIZE:
        raise UserError(f"--lut-size must be from 2 to {MAX_LUT_SIZE}, got {args.lut_size}")
    if args.size is not None and (problem := resolution_problem(args.size)) is not None:
        raise UserError(f"--size {problem}")
    max_pixels = resolve_max_pixels(args.max_pixels)
    if (problem := name_problem(args.output)) is not None:
        raise UserError(problem)
    for path in (args.source, args.reference):  # a text file named .jpg: refused now, not after torch
        photo_size(path, max_pixels)
    check_lut_output(args.output, args.overwrite)

    from recolorize.process import heavy_imports

    with heavy_imports():
        from recolorize.inference.lut import transfer_lut, write_cube
        from recolorize.inference.pipeline import check_device, default_weights_path  # imports torch
    from recolorize.networks.weights_file import check_weights

    check_device(args.device)
    weights = args.weights if args.weights is not None else default_weights_path()
    check_weights(weights / "model.safetensors" if weights.is_dir() else weights)
    with held_logs():
        source = load_image(args.source, max_pixels=max_pixels)
        reference = load_image(args.reference, max_pixels=max_pixels)
    recolorizer = load_model(args)
    with out_of_memory_is_an_error(args):
        prepared = recolorizer.prepare(source, reference)
        lut = transfer_lut(recolorizer, prepared, args.strength, args.lut_size, args.method)
    write_cube(lut, args.output, overwrite=args.overwrite)  # a file written meanwhile is not replaced
    logger.info(
        "wrote %s (%d^3 LUT, method %s, strength %g)", args.output, lut.size, args.method, args.strength
    )
    return 0
