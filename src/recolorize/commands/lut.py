"""``recolorize lut``: write a transfer's look as a 3D LUT (``.cube``) that editors load, and nothing else.

Checks come first, as in ``transfer`` (the same ``TransferSettings`` and checks,
``recolorize.inference.jobs``): the options, the ``.cube`` output, both photos' headers, the weight file's
header; then the photos are decoded and the model loaded.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from recolorize.errors import UserError

__all__ = ["register", "run", "MAX_LUT_SIZE"]

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
        help="fit: the model's colour prior LUT exactly plus the change the model and the prior's local "
        "field make, fitted as a LUT (default); prior: the colour prior's LUT alone, exactly; pooled: the "
        "generator with its latent maps averaged over the photo",
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


def run(args: argparse.Namespace) -> int:
    """Check everything, decode both photos, load the model, render, fit and write the LUT atomically."""
    from recolorize.imaging import load_image, photo_size
    from recolorize.inference.jobs import (
        TransferSettings,
        check_lut_output,
        check_model,
        held_logs,
        load_recolorizer,
        out_of_memory_is_an_error,
    )
    from recolorize.io_utils import name_problem

    settings = TransferSettings(
        strength=args.strength,
        size=args.size,
        device=args.device,
        max_pixels=args.max_pixels,
        overwrite=args.overwrite,
    )
    if not 2 <= args.lut_size <= MAX_LUT_SIZE:
        raise UserError(f"--lut-size must be from 2 to {MAX_LUT_SIZE}, got {args.lut_size}")
    if (problem := name_problem(args.output)) is not None:
        raise UserError(problem)
    for path in (args.source, args.reference):  # a text file named .jpg: refused now, not after the model
        photo_size(path, settings.pixel_limit)
    check_lut_output(args.output, args.overwrite)
    from recolorize.inference.lut import transfer_lut, write_cube

    weights = check_model(args.weights, settings.device)
    with held_logs():
        source = load_image(args.source, max_pixels=settings.pixel_limit)
        reference = load_image(args.reference, max_pixels=settings.pixel_limit)
    recolorizer = load_recolorizer(weights, settings)
    with out_of_memory_is_an_error(settings.size):
        prepared = recolorizer.prepare(source, reference)
        lut = transfer_lut(recolorizer, prepared, args.strength, args.lut_size, args.method)
    write_cube(lut, args.output, overwrite=args.overwrite)  # a file written meanwhile is not replaced
    logger.info(
        "wrote %s (%d^3 LUT, method %s, strength %g)", args.output, lut.size, args.method, args.strength
    )
    return 0
