"""The decoder's limits: the pixel cap against decompression bombs, the formats tried, the smallest side.

Hostile files: only the formats in ``READ_FORMATS`` are tried (no Ghostscript EPS, no font or icon
containers); Pillow's decompression-bomb cap is set to our own pixel limit for the duration of a load
(``_pil_limit``), and the size is checked from the header before any pixel is decoded, so decoding never
allocates more than the limit allows (about ``DECODE_BYTES_PER_PIXEL`` bytes per pixel, 8-bit RGB; see
the README). ``DEFAULT_MAX_PIXELS`` itself lives in ``recolorize.image_formats`` (stdlib only, for the CLI).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import threading
import warnings
from collections.abc import Iterator

import numpy as np
from PIL import Image

from recolorize.errors import UserError, one_line
from recolorize.image_formats import DEFAULT_MAX_PIXELS

__all__ = [
    "DECODE_BYTES_PER_PIXEL",
    "DEFAULT_MAX_PIXELS",
    "MAX_PIXELS_ENV",
    "MIN_SIDE",
    "READ_FORMATS",
    "parse_max_pixels",
    "resolve_max_pixels",
]

logger = logging.getLogger(__name__)

#: Environment variable that overrides ``DEFAULT_MAX_PIXELS`` (a whole pixel count, e.g. 40000000 or 4e7).
MAX_PIXELS_ENV = "RECOLORIZE_MAX_PIXELS"
#: Peak memory of decoding an 8-bit RGB photo, in bytes per pixel (measured: Pillow's 4-byte RGBX
#: buffer, the uint8 array and the float32 result); 16-bit and ICC-converted files take up to ~1.5x.
DECODE_BYTES_PER_PIXEL = 20
#: Pillow formats ``load_image`` opens; everything else is "not an image" (no EPS, which runs
#: Ghostscript, and no containers whose decoded size the header does not state). JPEG covers MPO.
READ_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "TIFF", "WEBP", "BMP", "GIF", "PPM", "TGA")
#: The network needs some content to look at; smaller images are refused with a clear message.
MIN_SIDE = 32


def parse_max_pixels(value: object, what: str = "--max-pixels") -> int:
    """A pixel limit from the command line, the environment or the API, as a positive int.

    The one reader of the limit, so ``--max-pixels`` and ``$RECOLORIZE_MAX_PIXELS`` follow one rule: a
    whole number of pixels of at least 1, written as an integer (``40000000``, ``40_000_000``) or as a
    float that is a whole number (``4e7``). Zero, negatives, fractions and text are a ``UserError``
    naming ``what`` (there is no "unlimited": a limit is what keeps a 35 KB file from taking 10 GB).
    """
    count: int | None = None
    if isinstance(value, bool):
        count = None
    elif isinstance(value, int | np.integer):
        count = int(value)
    elif isinstance(value, float | str):
        text = str(value).strip()
        try:
            count = int(text.replace("_", ""), 10) if isinstance(value, str) else None
        except ValueError:
            count = None
        if count is None:
            try:
                number = float(text)
            except ValueError:
                number = math.nan
            count = int(number) if math.isfinite(number) and number == int(number) else None
    if count is None:
        raise UserError(f"{what} must be a whole number of pixels such as 40000000 or 4e7, got {value!r}")
    if count < 1:
        raise UserError(f"{what} must be at least 1 pixel, got {count}")
    return count


def resolve_max_pixels(max_pixels: object = None) -> int:
    """The bomb limit: ``max_pixels`` if given, else ``$RECOLORIZE_MAX_PIXELS`` if set and not empty, else
    ``DEFAULT_MAX_PIXELS``; each checked by ``parse_max_pixels``."""
    if max_pixels is not None:
        return parse_max_pixels(max_pixels, "--max-pixels" if isinstance(max_pixels, str) else "max_pixels")
    env = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if env:
        return parse_max_pixels(env, MAX_PIXELS_ENV)
    return DEFAULT_MAX_PIXELS


# Pillow's cap is one global for every thread: while loads run it is the largest of their limits (each
# load still checks its own limit from the header before decoding), and it goes back when none runs.
_PIL_LOCK = threading.Lock()
_PIL_ACTIVE: list[int] = []
_PIL_SAVED: list[int | None] = [None]


@contextlib.contextmanager
def _pil_limit(limit: int) -> Iterator[None]:
    """Set Pillow's decompression-bomb cap to our limit, so its own checks (frames, tiles) use it too,
    and keep Pillow's warnings off stderr."""
    with _PIL_LOCK:
        if not _PIL_ACTIVE:
            _PIL_SAVED[0] = Image.MAX_IMAGE_PIXELS
        _PIL_ACTIVE.append(limit)
        Image.MAX_IMAGE_PIXELS = max(_PIL_ACTIVE)
    try:
        # Pillow warns about odd files (bomb-sized, corrupt EXIF, truncated reads): our checks and errors
        # say what matters in one line, so its warnings go to the debug log instead of stderr.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
        for warning in caught:
            logger.debug("while decoding: %s: %s", warning.category.__name__, one_line(warning.message))
    finally:
        with _PIL_LOCK:
            _PIL_ACTIVE.remove(limit)
            Image.MAX_IMAGE_PIXELS = max(_PIL_ACTIVE) if _PIL_ACTIVE else _PIL_SAVED[0]


def _limit_hint(limit: int) -> str:
    return f"the limit of {limit:,} pixels (raise it with --max-pixels or {MAX_PIXELS_ENV})"


def _check_size(width: int, height: int, name: str, limit: int) -> None:
    if width * height > limit:
        raise UserError(
            f"{name} has {width}x{height} = {width * height:,} pixels, more than {_limit_hint(limit)}"
        )
    if min(width, height) < MIN_SIDE:
        raise UserError(f"{name} is {width}x{height} pixels; both sides must be at least {MIN_SIDE}")


def _bomb_message(name: str, exc: Exception, limit: int) -> str:
    """Pillow's DecompressionBombError restated with the user's limit (Pillow quotes twice its cap)."""
    found = re.search(r"\((\d+) pixels\)", str(exc))
    size = f"{int(found.group(1)):,} pixels" if found else "more pixels than allowed"
    return f"{name} has {size}, more than {_limit_hint(limit)}"
