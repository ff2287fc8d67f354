"""``recolorize lut-apply``: grade photos with a 3D LUT (``.cube``, ours or anyone's) at full resolution.

No model is loaded: the LUT is read (a malformed file is one error line, exit 2), each photo is decoded as
``transfer`` decodes it (EXIF orientation, ICC profile to sRGB, 16 bits) and written back as ``transfer``
writes it (the source's ICC profile, EXIF, alpha and bit depth; atomically). In a folder, a photo that fails
is named in one line and skipped, existing outputs are skipped unless ``--overwrite``, and the command exits
1 at the end.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from tqdm import tqdm

from recolorize.errors import UserError, one_line, shown
from recolorize.image_formats import WRITE_SUFFIXES

__all__ = ["register", "run"]

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``lut-apply`` subcommand."""
    parser = subparsers.add_parser(
        "lut-apply",
        help="apply a 3D LUT (.cube) to a photo or a folder of photos",
        description="Apply LUT (a .cube file: 3D, 1D, or a Resolve 1D shaper + 3D; trilinear interpolation "
        "on sRGB values) to PHOTO at full resolution, keeping its ICC profile, EXIF, alpha and bit depth. "
        "PHOTO may be a folder; then -o is a folder.",
    )
    parser.add_argument("lut", type=Path, help="the LUT (.cube)")
    parser.add_argument("photo", type=Path, help="photo or folder of photos")
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        required=True,
        help=f"output file (its suffix picks the format: {' '.join(WRITE_SUFFIXES)}) or folder",
    )
    parser.add_argument("--quality", type=int, default=95, help="JPEG quality of the output (1-100)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs (even the source)")
    parser.add_argument(
        "--max-pixels", default=None, metavar="N", help="decompression-bomb limit, as for transfer"
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="also log what is loaded"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Check the options and paths, read the LUT, then grade each photo and write it atomically."""
    from recolorize.imaging import check_output_fits, check_regular_file, output_format
    from recolorize.inference.jobs import (
        Job,
        TransferSettings,
        check_output,
        check_output_folder,
        held_logs,
        images_in,
    )
    from recolorize.inference.lut import read_cube
    from recolorize.io_utils import name_problem

    settings = TransferSettings(quality=args.quality, max_pixels=args.max_pixels, overwrite=args.overwrite)
    max_pixels = settings.pixel_limit
    if (problem := name_problem(args.output)) is not None:
        raise UserError(problem)
    batch = args.photo.is_dir()
    if batch:
        check_output_folder(args.output)
        photos = images_in(args.photo)
        if not photos:
            raise UserError(f"no images in folder {args.photo}")
        jobs = [Job(p, args.lut, args.output / p.name) for p in photos]
    else:
        check_regular_file(args.photo)
        output = args.output / args.photo.name if args.output.is_dir() else args.output
        output_format(output)
        jobs = [Job(args.photo, args.lut, output)]
        check_output(jobs[0], args.overwrite, batch=False)
        check_output_fits(output, args.photo, max_pixels)  # the format's size limits, from the header
    lut = read_cube(args.lut)
    if not batch:
        with held_logs():
            _grade(jobs[0], lut, args, max_pixels)
        return 0

    failures = 0
    todo = []
    for job in jobs:
        if job.output.exists() and not args.overwrite:
            logger.info("skipping %s: %s exists (use --overwrite)", job.source, job.output)
        else:
            todo.append(job)
    for job in tqdm(todo, desc="grading", unit="photo", disable=not todo):
        try:
            with held_logs():
                check_output(job, args.overwrite)
                check_output_fits(job.output, job.source, max_pixels)
                _grade(job, lut, args, max_pixels)
        except UserError as error:
            failures += 1
            tqdm.write(f"recolorize: error: {one_line(error, 500)}", file=sys.stderr)
        except Exception as error:  # noqa: BLE001 - one bad photo must never stop the batch
            failures += 1
            logger.debug("grading %s failed", job.source, exc_info=True)
            tqdm.write(
                f"recolorize: error: {shown(job.source)} failed "
                f"({type(error).__name__}: {one_line(error)}); skipped",
                file=sys.stderr,
            )
    if failures:
        tqdm.write(f"recolorize: {failures} of {len(jobs)} photos failed", file=sys.stderr)
        return 1
    return 0


def _grade(job: Any, lut: Any, args: argparse.Namespace, max_pixels: int) -> None:
    """Decode ``job.source``, apply ``lut`` and write ``job.output`` like the source (atomically; without
    ``--overwrite`` a file written meanwhile is not replaced).

    An 8-bit photo written as 8-bit sRGB (``takes_8bit_srgb``: the output only quantises) goes through
    the 8-bit path (Pillow's C filter, within 1 level of the float path rounded, ~4x faster), and its
    float pixels are let go before encoding; 16-bit photos and those written back into another profile
    keep the exact float path, whose result the encoder converts.
    """
    from recolorize.imaging import load_image, output_format, save_image, takes_8bit_srgb

    photo = load_image(job.source, max_pixels=max_pixels)
    if photo.bit_depth == 8 and takes_8bit_srgb(photo, output_format(job.output)):
        # the decoded 8-bit samples themselves (a greyscale or converted photo: its float pixels, rounded
        # back exactly), so no float copy of the photo is made
        graded = lut.apply_8bit(photo.srgb8 if photo.srgb8 is not None else photo.rgb)
        photo = photo.metadata_only()
    else:
        graded = lut.apply(photo.rgb)
    save_image(
        job.output,
        graded,
        like=photo,
        quality=args.quality,
        overwrite=args.overwrite,
        source_path=job.source,
    )
