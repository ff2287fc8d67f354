"""Decoding a photo the one way every part of the library sees it: upright, sRGB, checked.

``load_image`` opens a file, bytes, a PIL image or an array; applies the EXIF orientation
(``exif.py``); converts the colours from the embedded ICC profile to sRGB (``cms.py``); keeps the
alpha channel, the profile, the EXIF block and the bit depth for the encoder; and refuses, before any
pixel is decoded, what is over the pixel limit or under ``MIN_SIDE`` (``limits.py``). Training crops,
the benchmark builder, evaluation, the CLI and the app all decode through it.

Any failure of the decoders, whatever its type, becomes a ``UserError`` naming the file. An
already-decoded PIL image is taken at Pillow's 8 bits.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import struct
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageFile

from recolorize.errors import UserError, one_line
from recolorize.imaging.cms import _to_srgb
from recolorize.imaging.exif import _TURNED, _header_orientation, _orient, _orientation, _source_exif
from recolorize.imaging.files import _c_stderr_to_debug_log, _open, check_regular_file
from recolorize.imaging.limits import _bomb_message, _check_size, _pil_limit, resolve_max_pixels
from recolorize.imaging.loaded import LoadedImage
from recolorize.imaging.pillow_memory import is_rgbx, one_block
from recolorize.imaging.samples import _high_low_16, _is_grey, _pixels

__all__ = ["load_image", "photo_size"]

logger = logging.getLogger(__name__)


#: Bytes of the file handed to Pillow's decoder per call (Pillow's default: 64 kB). Why more: Pillow's
#: decoders let go of Python's lock only inside each call, and a photo decoded while another thread runs
#: Python (the model loading: ``inference.jobs``) waited for the lock after every 64 kB, up to ~5 ms each:
#: a 12-MP JPEG took ~0.14 s instead of ~0.09. The same pixels; the file's bytes are read in one piece.
DECODE_READ_BYTES = 1 << 26


def _from_pil(
    im: Image.Image,
    name: str,
    limit: int,
    path: Path | None,
    opener: Callable[[], Image.Image] | None,
    reduce_to: tuple[int, int] | None = None,
) -> LoadedImage:
    _check_size(im.width, im.height, name, limit)
    if reduce_to is not None:
        _draft(im, reduce_to)
    tiles = list(getattr(im, "tile", None) or [])
    try:
        # one block: an RGB photo's pixels are then viewed where Pillow decoded them, not copied out
        with _c_stderr_to_debug_log(name), one_block():  # the log: around the C decoders only
            im.decodermaxblock = DECODE_READ_BYTES
            im.load()
            sixteen = _high_low_16(opener, im, tiles) if opener is not None else None
    except (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error, IndexError) as exc:
        raise UserError(f"{name} is truncated or corrupt and cannot be decoded ({exc})") from exc
    exif = _source_exif(im)
    icc = im.info.get("icc_profile") or None
    fmt = im.format
    data, alpha, space, depth = _pixels(im, sixteen, name)
    orientation = _orientation(im, name)
    if orientation != 1:
        data, alpha = _orient(data, orientation), (None if alpha is None else _orient(alpha, orientation))
    greyscale = _is_grey(data, space)
    rgb, converted = _to_srgb(data, space, icc, name)
    logger.debug(
        "loaded %s: %s %dx%d, %d-bit, icc=%s", name, fmt, rgb.shape[1], rgb.shape[0], depth, bool(icc)
    )
    return LoadedImage(
        pixels=rgb if is_rgbx(rgb) else np.ascontiguousarray(rgb),  # a view Pillow can read back
        alpha=None if alpha is None else np.ascontiguousarray(alpha),
        icc_profile=bytes(icc) if icc else None,
        exif=exif,
        greyscale=greyscale,
        bit_depth=depth,
        path=path,
        format=fmt,
        samples=np.ascontiguousarray(data) if converted else None,
    )


def _from_array(array: np.ndarray, limit: int) -> LoadedImage:
    name = "the image array"
    a = np.asarray(array)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[-1] not in (2, 3, 4)):
        raise UserError(f"{name} has shape {a.shape}; expected (H, W), (H, W, 3) or (H, W, 4)")
    if a.dtype == np.uint8:
        depth = 8
    elif a.dtype == np.uint16:
        depth = 16
    elif np.issubdtype(a.dtype, np.floating):
        if not np.isfinite(a).all():
            raise UserError(f"{name} contains NaN or infinite values")
        a, depth = np.clip(a.astype(np.float32), 0.0, 1.0), 8
    else:
        raise UserError(f"{name} has dtype {a.dtype}; expected uint8, uint16 or float in [0, 1]")
    _check_size(a.shape[1], a.shape[0], name, limit)
    alpha = None
    if a.ndim == 3 and a.shape[-1] in (2, 4):
        alpha, a = a[..., -1].copy(), a[..., :-1]
        if a.shape[-1] == 1:
            a = a[..., 0]
    space = "L" if a.ndim == 2 else "RGB"
    rgb, _ = _to_srgb(a, space, None, name)
    return LoadedImage(
        pixels=np.ascontiguousarray(rgb), alpha=alpha, greyscale=_is_grey(a, space), bit_depth=depth
    )


def _draft(im: Image.Image, reduce_to: tuple[int, int]) -> None:
    """Let a JPEG decode at the smallest DCT scale (1/2, 1/4, 1/8) that keeps both sides at least
    ``reduce_to`` (upright width, height); other formats decode at full size."""
    if im.format != "JPEG":
        return
    width, height = (max(1, int(v)) for v in reduce_to)
    if _header_orientation(im) in _TURNED:
        width, height = height, width
    im.draft(None, (width, height))


@contextlib.contextmanager
def _decoder_errors(name: str, limit: int) -> Iterator[None]:
    """Every failure of opening or decoding, whatever its type, as a ``UserError`` naming the file."""
    try:
        yield
    except UserError:
        raise
    except Image.DecompressionBombError as exc:
        raise UserError(_bomb_message(name, exc, limit)) from None
    except MemoryError:
        raise UserError(
            f"{name} is too large to decode in the memory available; lower --max-pixels"
        ) from None
    except Exception as exc:  # noqa: BLE001 - hostile files reach code paths no test thought of
        logger.debug("decoding %s failed", name, exc_info=True)
        raise UserError(
            f"{name} is corrupt and cannot be decoded ({type(exc).__name__}: {one_line(exc)})"
        ) from None


def _decode(
    opener: Callable[[], Image.Image],
    name: str,
    limit: int,
    path: Path | None,
    reduce_to: tuple[int, int] | None = None,
) -> LoadedImage:
    """Open and decode under our pixel cap; every failure, whatever its type, is a ``UserError``."""
    with _decoder_errors(name, limit), _pil_limit(limit), opener() as im:
        return _from_pil(im, name, limit, path, opener, reduce_to)


def load_image(
    source: Any, max_pixels: int | None = None, *, reduce_to: tuple[int, int] | None = None
) -> LoadedImage:
    """Decode ``source`` into an upright sRGB ``LoadedImage``.

    ``source`` may be a path, raw file bytes / a binary file object (web uploads), a PIL image, a
    NumPy array (uint8, uint16 or float in [0, 1]; (H, W), (H, W, 3) or (H, W, 4)) or a
    ``LoadedImage`` (returned as is). ``max_pixels`` is the decompression-bomb limit (default
    ``$RECOLORIZE_MAX_PIXELS`` or 100 MP). Every unusable input raises ``UserError``.

    ``reduce_to`` (upright width, height), for callers that shrink the photo anyway (training crops,
    the benchmark builder): a JPEG file may then be decoded at a reduced DCT scale that keeps both sides
    at least this big (Pillow's ``draft``), so the result can be smaller than the photo (``photo_size``
    gives the full size). Ignored for other formats and already-decoded inputs.
    """
    limit = resolve_max_pixels(max_pixels)
    if isinstance(source, LoadedImage):
        return source
    if isinstance(source, np.ndarray):
        return _from_array(source, limit)
    if isinstance(source, Image.Image):
        filename = getattr(source, "filename", "") or ""
        if isinstance(source, ImageFile.ImageFile) and source.tile and filename and Path(filename).is_file():
            # not decoded yet: read it ourselves (16-bit, checks)
            return load_image(Path(filename), limit, reduce_to=reduce_to)
        try:
            with _pil_limit(limit):
                return _from_pil(source, filename or "the image", limit, None, None)
        except UserError:
            raise
        except Exception as exc:  # noqa: BLE001 - same promise as for files
            raise UserError(f"{filename or 'the image'} cannot be decoded ({one_line(exc)})") from None
    if isinstance(source, (bytes, bytearray, memoryview)) or hasattr(source, "read"):
        data = bytes(source) if not hasattr(source, "read") else source.read()
        name = getattr(source, "name", None) or "the uploaded image"

        def opener() -> Image.Image:
            return _open(io.BytesIO(data), name, limit)

        return _decode(opener, name, limit, None, reduce_to)
    path = Path(source)
    check_regular_file(path)

    def path_opener() -> Image.Image:
        check_regular_file(path)  # again: the 16-bit pass reopens it
        return _open(path, str(path), limit)

    return _decode(path_opener, str(path), limit, path, reduce_to)


def photo_size(
    source: str | os.PathLike[str], max_pixels: int | None = None, verify: bool = False
) -> tuple[int, int]:
    """The upright (width, height) of the photo at ``source``, read from its header: the size
    ``load_image`` gives without ``reduce_to``.

    Refuses (``UserError``) what ``load_image`` refuses before decoding: a path that is not a readable
    regular file, a file that is not an image in ``READ_FORMATS``, more pixels than the limit, a side
    under ``MIN_SIDE``. ``verify`` also reads the pixel data cheaply, to catch truncated files: a JPEG
    is decoded at 1/8 scale (~1 ms), other formats run Pillow's ``verify`` (PNG chunk CRCs).
    """
    limit = resolve_max_pixels(max_pixels)
    path = Path(source)
    name = str(path)
    check_regular_file(path)
    with _decoder_errors(name, limit), _pil_limit(limit), _open(path, name, limit) as im:
        _check_size(im.width, im.height, name, limit)
        width, height = im.size
        turned = _header_orientation(im) in _TURNED
        if verify:
            with _c_stderr_to_debug_log(name):
                if im.format == "JPEG":
                    im.draft("RGB", (max(1, width // 8), max(1, height // 8)))
                    im.load()
                else:
                    im.verify()
    return (height, width) if turned else (width, height)
