"""The outputs of ``recolorize transfer``: checked before any work, written atomically after it.

An output must be a free file name in a folder we can write (``--overwrite`` replaces a file, even the
source); a batch's ``-o`` must be a folder. The re-coloured photo is rendered as 8-bit samples when the
output stores nothing finer (no full-size float copy), written with the source's ICC profile, EXIF, alpha
and bit depth, and, with ``--lut``, followed by the transfer's look as a ``.cube``.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from recolorize.errors import UserError
from recolorize.io_utils import output_file_problem

if TYPE_CHECKING:
    from recolorize.commands.transfer_plan import Job

__all__ = ["check_output", "check_output_folder", "render_dtype", "for_saving", "write_outputs"]

logger = logging.getLogger(__name__)


def check_output_folder(folder: Path) -> None:
    """A batch writes into ``folder``: it must be a folder (or not exist yet, under a writable one)."""
    if folder.exists() and not folder.is_dir():
        raise UserError(f"the output of a batch must be a folder, and {folder} is a file")
    if (problem := output_file_problem(folder / "x", create_folder=True)) is not None:
        raise UserError(problem.replace(f"cannot write {folder / 'x'}", f"cannot create folder {folder}"))


def check_output(job: Job, source_path: Path, overwrite: bool, batch: bool = True) -> None:
    """``job.output`` can be written: not the source or an existing file (unless ``overwrite``), not a
    folder, a name the filesystem takes, in a writable folder (``io_utils.output_file_problem``). That
    folder may be made in a batch (under its ``-o`` folder); one output file's folder (``batch=False``,
    as the commands check a single output before any work) must exist, as with ``cp``."""
    if job.output.resolve() == source_path.resolve() and not overwrite:
        raise UserError(f"output {job.output} is the source itself; use --overwrite to replace it")
    if job.output.exists() and not overwrite:
        raise UserError(f"output {job.output} exists; use --overwrite to replace it")
    if job.output.is_dir():
        raise UserError(f"output {job.output} is a folder; give a file name")
    if (problem := output_file_problem(job.output, create_folder=batch)) is not None:
        raise UserError(problem)


def render_dtype(job: Job, source: Any, wants_float: bool = False) -> type:
    """uint8 when the output stores 8-bit sRGB samples (``takes_8bit_srgb``): the full-resolution step then
    writes them tile by tile, the same samples without a full-size float copy; else float32."""
    import numpy as np

    from recolorize.imaging import output_format, takes_8bit_srgb

    if not wants_float and takes_8bit_srgb(source, output_format(job.output)):
        return np.uint8
    return np.float32


def for_saving(source: Any, rgb: Any) -> Any:
    """What the saver needs of ``source`` for ``rgb``: its metadata alone when ``rgb`` holds 8-bit samples
    (the float pixels can go before the encoder copies the samples), else the whole image."""
    return source.metadata_only() if getattr(rgb, "dtype", None) == "uint8" else source


def write_outputs(job: Job, source: Any, rgb: Any, args: argparse.Namespace, base: Any = None) -> None:
    """Write the re-coloured ``rgb`` to ``job.output`` like ``source`` (pass ``for_saving(source, rgb)``),
    then, with ``--lut``, the transfer's look fitted to it (float ``rgb``, the whole source needed): the
    model's prior LUT ``base`` exactly plus the change fitted on top, as ``recolorize lut`` writes it."""
    from recolorize.imaging import save_image

    overwrite = args.overwrite  # without it, a file written meanwhile (another run) is not replaced
    save_image(
        job.output, rgb, like=source, quality=args.quality, overwrite=overwrite, source_path=job.source
    )
    lut_path = getattr(args, "lut", None)
    if lut_path is not None:
        from recolorize.inference.lut import Lut3D, write_cube
        from recolorize.inference.lut.from_transfer import lut_from_rendering

        lut = lut_from_rendering(source.rgb, rgb, base) if args.strength > 0 else Lut3D.identity()
        write_cube(lut, lut_path, overwrite=overwrite)
        logger.info("wrote %s (%d^3 LUT)", lut_path, lut.size)
