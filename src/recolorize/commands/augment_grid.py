"""``recolorize augment-grid``: a contact sheet of the training augmentations, for a person to judge.

One row per photo: original | global grade | local grades | both (a grade target) | region edit (a strong
local re-colouring: hue rotation, recolouring or desaturation of 1-3 regions, ``data/region_edits.py``) |
reference (the region-edit target re-framed by the geometric alteration).
"""

from __future__ import annotations

import argparse
import logging
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageDraw

from recolorize.errors import UserError, require_training
from recolorize.io_utils import atomic_write

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["register", "run", "build_grid", "COLUMNS"]

logger = logging.getLogger(__name__)

COLUMNS: tuple[str, ...] = ("original", "global", "local", "global + local", "region edit", "reference")
_GAP = 4
_HEADER = 18


def _to_pil(image: torch.Tensor) -> Image.Image:
    """A (3, H, W) [0, 1] tensor as an RGB PIL image (8-bit as every writer quantises: ``to_uint8``)."""
    from recolorize.evaluation.grids import tile_to_pil
    from recolorize.imaging import to_uint8

    return tile_to_pil(to_uint8(image.permute(1, 2, 0).numpy()))


def build_grid(
    folders: list[str], n: int, seed: int, size: int, exclude: list[str] | None = None
) -> Image.Image:
    """The grid image for ``n`` photos drawn (deterministically for ``seed``) from ``folders``."""
    # here, not at the top: ``recolorize --help`` imports this module, and torch is the train extra's
    from recolorize.data.augment import ColourAugmenter
    from recolorize.data.folders import discover_photos
    from recolorize.data.geometry import alter_geometry
    from recolorize.data.pairs import load_crop
    from recolorize.data.region_edits import edit_regions

    photos = discover_photos(folders, exclude=exclude or ())
    chosen = sorted(np.random.default_rng(seed).permutation(len(photos))[: min(n, len(photos))].tolist())
    augmenter = ColourAugmenter()
    cols, rows = len(COLUMNS), len(chosen)
    sheet = Image.new("RGB", (cols * size + (cols - 1) * _GAP, _HEADER + rows * (size + _GAP)), "white")
    draw = ImageDraw.Draw(sheet)
    for c, title in enumerate(COLUMNS):
        draw.text((c * (size + _GAP) + 4, 3), title, fill="black")
    for r, index in enumerate(chosen):
        rng = np.random.default_rng([seed, r])
        image, regions = load_crop(photos[index], size, rng, crop_scale=(0.8, 1.0), flip_probability=0.0)
        target = augmenter(image, regions, rng)
        edited = edit_regions(image, regions, rng)
        cells = (
            image,
            augmenter.apply_global(image, rng),
            augmenter.apply_local(image, regions, rng),
            target,
            edited,
            alter_geometry(edited, rng),
        )
        for c, cell in enumerate(cells):
            sheet.paste(_to_pil(cell), (c * (size + _GAP), _HEADER + r * (size + _GAP)))
    return sheet


def run(args: argparse.Namespace) -> int:
    """Check the extra and the options, then draw the photos and write the grid."""
    require_training("augment-grid")
    if args.n < 1 or args.size < 16:
        raise UserError("--n must be at least 1 and --size at least 16")
    sheet = build_grid(args.data, args.n, args.seed, args.size, args.exclude)
    with atomic_write(args.out) as tmp:
        sheet.save(tmp, format="PNG")
    logger.info("wrote %s", args.out)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "augment-grid",
        help="write a grid of colour/geometry augmentations to look at",
        description="Write a PNG grid (original | global | local | global + local | region edit | "
        "reference) of the training augmentations applied to photos from the given folders.",
    )
    parser.add_argument("--data", nargs="+", required=True, metavar="DIR", help="photo folders")
    parser.add_argument("--out", required=True, metavar="PNG", help="where to write the grid")
    parser.add_argument("--n", type=int, default=8, help="number of photos (rows), default 8")
    parser.add_argument("--seed", type=int, default=0, help="random seed, default 0")
    parser.add_argument("--size", type=int, default=256, help="cell size in pixels, default 256")
    parser.add_argument("--exclude", nargs="*", default=[], metavar="DIR", help="folders to leave out")
    parser.set_defaults(func=run)
