"""Labelled image grids for reports: one comparison row per pair, contact sheets of many pairs.

A *tile* is ``(label, image)`` with the image a NumPy (H, W, 3) float array in [0, 1] (the library's I/O
convention), a uint8 array, or a PIL image. Every tile is letterboxed into a cell of the same size so that
columns line up even when the source and the reference have different aspect ratios; its label is drawn
above it with PIL's default font. Files are written atomically.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from recolorize.imaging import to_uint8
from recolorize.io_utils import atomic_write

__all__ = [
    "Tile",
    "tile_to_pil",
    "thumbnail",
    "cell_size",
    "labelled_row",
    "comparison_grid",
    "contact_sheet",
    "save_png",
]

Tile = tuple[str, "np.ndarray | Image.Image"]

BACKGROUND = (24, 24, 24)
TEXT = (235, 235, 235)
GAP = 4
PAD = 3
#: Cells are never wider than this many times their height (panoramas are letterboxed).
MAX_ASPECT = 2.0


@functools.cache
def _font() -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """PIL's built-in font (no font file is needed on the machine)."""
    return ImageFont.load_default()


def _text_size(text: str) -> tuple[int, int]:
    left, top, right, bottom = _font().getbbox(text or " ")
    return int(right - left), int(bottom - top)


def _label_height() -> int:
    return _text_size("Ag|0.99")[1] + 2 * PAD


def tile_to_pil(image: np.ndarray | Image.Image) -> Image.Image:
    """A plain RGB PIL image of a tile: a PIL image, a uint8 array or a float (H, W, 3) array in [0, 1]
    (alpha dropped, NaN as 0; no ICC or EXIF, unlike ``imaging.to_pil``, which renders a photo like its
    source)."""
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    array = np.asarray(image)
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] not in (3, 4):
        raise ValueError(f"expected an (H, W, 3) image, got shape {array.shape}")
    array = array[..., :3]
    if array.dtype != np.uint8:
        array = to_uint8(np.nan_to_num(array.astype(np.float64)))
    return Image.fromarray(np.ascontiguousarray(array), "RGB")


def thumbnail(image: np.ndarray | Image.Image, size: tuple[int, int]) -> Image.Image:
    """Fit ``image`` inside ``size`` = (width, height) keeping its aspect, centred on the background."""
    pil = tile_to_pil(image)
    width, height = size
    scale = min(width / pil.width, height / pil.height)
    fitted = pil.resize(
        (max(1, round(pil.width * scale)), max(1, round(pil.height * scale))), Image.Resampling.LANCZOS
    )
    cell = Image.new("RGB", size, BACKGROUND)
    cell.paste(fitted, ((width - fitted.width) // 2, (height - fitted.height) // 2))
    return cell


def cell_size(images: Sequence[np.ndarray | Image.Image], height: int) -> tuple[int, int]:
    """(width, height) of a cell that holds the widest of ``images`` at ``height`` px (aspect <= 2)."""
    aspects = []
    for image in images:
        if isinstance(image, Image.Image):
            aspects.append(image.width / image.height)
        else:
            aspects.append(image.shape[1] / image.shape[0])
    aspect = min(max(aspects, default=1.0), MAX_ASPECT)
    return max(1, round(height * aspect)), int(height)


def _labelled_cell(label: str, image: np.ndarray | Image.Image, size: tuple[int, int]) -> Image.Image:
    label_h = _label_height()
    cell = Image.new("RGB", (size[0], size[1] + label_h), BACKGROUND)
    cell.paste(thumbnail(image, size), (0, label_h))
    draw = ImageDraw.Draw(cell)
    text = label
    while text and _text_size(text)[0] > size[0] - 2 * PAD:  # shorten labels that do not fit
        text = text[:-2] + "~" if len(text) > 2 else ""
    draw.text((PAD, PAD), text, fill=TEXT, font=_font())
    return cell


def _draw_centred(draw: ImageDraw.ImageDraw, text: str, height: int, top: int = 0) -> None:
    """Draw ``text`` at the left edge, vertically centred in a band of ``height`` px starting at ``top``."""
    draw.text((PAD, top + (height - _text_size(text)[1]) // 2), text, fill=TEXT, font=_font())


def labelled_row(tiles: Sequence[Tile], size: tuple[int, int], title: str | None = None) -> Image.Image:
    """One row of labelled cells of ``size`` = (width, height), with an optional title column on the left."""
    if not tiles:
        raise ValueError("a row needs at least one tile")
    cells = [_labelled_cell(label, image, size) for label, image in tiles]
    title_w = _text_size(title)[0] + 2 * PAD + GAP if title else 0
    width = title_w + len(cells) * size[0] + (len(cells) - 1) * GAP
    row = Image.new("RGB", (width, cells[0].height), BACKGROUND)
    if title:
        _draw_centred(ImageDraw.Draw(row), title, cells[0].height)
    for i, cell in enumerate(cells):
        row.paste(cell, (title_w + i * (size[0] + GAP), 0))
    return row


def comparison_grid(tiles: Sequence[Tile], height: int = 256) -> Image.Image:
    """One labelled row (e.g. source | reference | each method | target), every cell ``height`` px tall."""
    return labelled_row(tiles, cell_size([image for _, image in tiles], height))


def contact_sheet(
    rows: Sequence[Sequence[Tile]], titles: Sequence[str] | None = None, height: int = 128
) -> Image.Image:
    """Many labelled rows stacked, all cells the same size so that columns line up.

    rows: one tile sequence per row (rows may differ in length). titles: a label per row drawn on the left
    (None: none). height: cell height in pixels.
    """
    if not rows:
        raise ValueError("a contact sheet needs at least one row")
    if titles is not None and len(titles) != len(rows):
        raise ValueError(f"{len(titles)} titles for {len(rows)} rows")
    size = cell_size([image for row in rows for _, image in row], height)
    title_w = max((_text_size(t)[0] for t in titles), default=0) + 2 * PAD + GAP if titles else 0
    rendered = [labelled_row(row, size) for row in rows]
    width = title_w + max(r.width for r in rendered)
    sheet = Image.new("RGB", (width, sum(r.height for r in rendered) + GAP * (len(rows) - 1)), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    y = 0
    for i, row in enumerate(rendered):
        sheet.paste(row, (title_w, y))
        if titles:
            _draw_centred(draw, titles[i], row.height, y)
        y += row.height + GAP
    return sheet


def save_png(image: np.ndarray | Image.Image, path: str | os.PathLike[str]) -> Path:
    """Write ``image`` (a tile: PIL image, uint8 or float [0, 1] (H, W, 3) array) as a plain 8-bit RGB PNG,
    atomically; returns the path. The one PNG writer of reports and the benchmark builder."""
    if not isinstance(image, Image.Image):
        image = tile_to_pil(image)
    path = Path(path)
    with atomic_write(path, suffix=".png") as tmp:
        image.save(tmp, format="PNG", optimize=False)
    return path
