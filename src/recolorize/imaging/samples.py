"""A PIL image's samples as arrays: 8 or 16 bits per sample, colour space, alpha.

Pillow has no 16-bit RGB mode: it decodes a 48/64-bit PNG or TIFF to 8 bits by keeping the high
byte. Its decoder is told which byte to keep by the "raw mode", so decoding once more with the byte
order swapped yields the low bytes, and ``high << 8 | low`` is the exact 16-bit image, still decoded
entirely by Pillow's C code. Known limit: 16-bit grey+alpha PNGs are read at 8 bits (Pillow has no raw
mode for their low bytes).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import numpy as np
from PIL import Image

from recolorize.errors import UserError
from recolorize.imaging.pillow_memory import rgb_view

# Pillow raw modes of 16-bit-per-sample RGB(A) and the mode that picks the *other* byte of each sample.
_NATIVE_PARTNER = "L" if sys.byteorder == "big" else "B"
_LOW_BYTE_RAWMODE = {
    "RGB;16B": "RGB;16L",
    "RGB;16L": "RGB;16B",
    "RGB;16N": f"RGB;16{_NATIVE_PARTNER}",
    "RGBA;16B": "RGBA;16L",
    "RGBA;16L": "RGBA;16B",
    "RGBA;16N": f"RGBA;16{_NATIVE_PARTNER}",
}


def _high_low_16(opener: Callable[[], Image.Image], im: Image.Image, tiles: list[Any]) -> np.ndarray | None:
    """Exact 16-bit samples of a 48/64-bit RGB(A) image that Pillow decoded to 8 bits, else None."""
    rawmode = tiles[0].args if tiles and isinstance(tiles[0].args, str) else None
    if tiles and isinstance(tiles[0].args, tuple) and tiles[0].args:
        rawmode = tiles[0].args[0]
    if rawmode not in _LOW_BYTE_RAWMODE or len(tiles) == 0:
        return None
    partner = _LOW_BYTE_RAWMODE[rawmode]
    with opener() as low:
        new_tiles = []
        for t in low.tile:
            args = t.args
            if isinstance(args, str):
                args = partner
            elif isinstance(args, tuple) and args and args[0] == rawmode:
                args = (partner, *args[1:])
            new_tiles.append(t._replace(args=args))
        low.tile = new_tiles
        low.load()
        lo = np.asarray(low)
    hi = np.asarray(im)
    if lo.shape != hi.shape:
        return None
    return (hi.astype(np.uint16) << 8) | lo.astype(np.uint16)


def _pixels(
    im: Image.Image, sixteen: np.ndarray | None, name: str
) -> tuple[np.ndarray, np.ndarray | None, str, int]:
    """Split a loaded PIL image into (colour samples, alpha, colour space, bit depth)."""
    mode = im.mode
    if sixteen is not None:
        alpha = sixteen[..., 3].copy() if sixteen.shape[-1] == 4 else None
        return sixteen[..., :3], alpha, "RGB", 16
    if mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        return np.asarray(im).astype(np.uint16), None, "L", 16
    if mode == "I":
        return np.clip(np.asarray(im), 0, 65535).astype(np.uint16), None, "L", 16
    if mode == "F":
        return np.clip(np.nan_to_num(np.asarray(im, dtype=np.float32)), 0.0, 1.0), None, "L", 16
    if mode == "1":
        return np.asarray(im.convert("L")), None, "L", 8
    if mode == "L":
        return np.asarray(im), None, "L", 8
    if mode == "LA":
        a = np.asarray(im)
        return a[..., 0], a[..., 1].copy(), "L", 8
    if mode == "CMYK":
        return np.asarray(im), None, "CMYK", 8
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
        mode = im.mode
    if mode in ("PA", "RGBa", "La"):
        im = im.convert("RGBA")
        mode = "RGBA"
    if mode == "RGBA":
        a = np.asarray(im)
        return a[..., :3], a[..., 3].copy(), "RGB", 8
    if mode != "RGB":
        try:
            im = im.convert("RGB")
        except ValueError as exc:
            raise UserError(f"{name} has the image mode {mode}, which cannot be converted to RGB") from exc
    view = rgb_view(im)  # Pillow's own memory, where it can be viewed whole (``pillow_memory``)
    return (np.asarray(im) if view is None else view), None, "RGB", 8


def _is_grey(data: np.ndarray, space: str) -> bool:
    if space == "L":
        return True
    if space != "RGB":
        return False
    return bool(np.array_equal(data[..., 0], data[..., 1]) and np.array_equal(data[..., 1], data[..., 2]))
