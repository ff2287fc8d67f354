"""EXIF: the orientation a photo is shown in, applied to its pixels and then reset in the kept EXIF block.

The pixels are stored upright after decoding, so the EXIF block handed back on save says orientation 1;
every other byte of it (maker notes, thumbnails, offsets) is kept exactly as the camera wrote it.
"""

from __future__ import annotations

import logging
import struct

import numpy as np
from PIL import Image

from recolorize.errors import one_line

logger = logging.getLogger(__name__)

_ORIENTATION = 0x0112
_EXIF_HEADER = b"Exif\x00\x00"
#: EXIF orientations that swap width and height (the transposes and the quarter turns).
_TURNED = frozenset({5, 6, 7, 8})


def _reset_orientation(exif: bytes) -> bytes:
    """Return the EXIF block with the orientation entry set to SHORT 1, every other byte unchanged.

    A malformed orientation (text, a count of 2, 9) becomes 1 too, as the pixels were read with 1.
    Patching the entry in place (instead of re-serialising through ``Image.Exif``) keeps maker notes,
    thumbnails and offsets exactly as the camera wrote them.
    """
    body = exif[6:] if exif.startswith(_EXIF_HEADER) else exif
    buf = bytearray(body)
    try:
        endian = {b"II": "<", b"MM": ">"}[bytes(buf[:2])]
        ifd = struct.unpack_from(endian + "I", buf, 4)[0]
        (count,) = struct.unpack_from(endian + "H", buf, ifd)
        for k in range(count):
            entry = ifd + 2 + 12 * k
            tag, typ, n = struct.unpack_from(endian + "HHI", buf, entry)
            if tag == _ORIENTATION:  # rewritten as SHORT 1 whatever it was (text, a list, 9): 12 bytes
                struct.pack_into(endian + "HIHH", buf, entry + 2, 3, 1, 1, 0)
    except (KeyError, struct.error):
        logger.debug("EXIF block is malformed; keeping it unchanged")  # not ours to mend, nor to warn about
    return _EXIF_HEADER + bytes(buf)


def _source_exif(im: Image.Image) -> bytes | None:
    raw = im.info.get("exif")
    if isinstance(raw, Image.Exif):
        raw = raw.tobytes()
    if not raw:
        return None
    return _reset_orientation(bytes(raw))


def _orientation(im: Image.Image, name: str) -> int:
    """The EXIF orientation 1-8; anything else (text, a list, 0, 9, an unreadable EXIF block) counts as 1."""
    try:
        value = im.getexif().get(_ORIENTATION, 1)
    except Exception as exc:  # noqa: BLE001 - a corrupt EXIF block must not stop the photo
        logger.debug("%s: EXIF block is unreadable (%s); orientation taken as 1", name, one_line(exc))
        return 1
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 8:
        return value
    if value is not None:
        logger.debug("%s: EXIF orientation %r is not 1-8; taken as 1", name, value)
    return 1


def _orient(a: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation to an (H, W[, C]) array exactly as ``ImageOps.exif_transpose`` does.

    The transposes are done on the decoded arrays so that 16-bit samples and alpha (which never pass
    through a PIL image here) turn with the pixels; the test checks agreement with Pillow.
    """
    ops = {
        2: lambda x: x[:, ::-1],  # FLIP_LEFT_RIGHT
        3: lambda x: x[::-1, ::-1],  # ROTATE_180
        4: lambda x: x[::-1],  # FLIP_TOP_BOTTOM
        5: lambda x: np.swapaxes(x, 0, 1),  # TRANSPOSE
        6: lambda x: np.rot90(x, -1),  # ROTATE_270 (clockwise)
        7: lambda x: np.swapaxes(x, 0, 1)[::-1, ::-1],  # TRANSVERSE
        8: lambda x: np.rot90(x, 1),  # ROTATE_90
    }
    op = ops.get(int(orientation))
    return np.ascontiguousarray(op(a)) if op else a


def _header_orientation(im: Image.Image) -> int:
    """The EXIF orientation known before decoding (1-8; anything unusable counts as 1), read quietly.

    JPEG, TIFF and WebP carry EXIF ahead of the pixels; a PNG's eXIf chunk may follow them, and reading it
    would decode the image, so a PNG without EXIF in its header counts as 1 here.
    """
    if im.format == "PNG" and "exif" not in im.info:
        return 1
    try:
        value = im.getexif().get(_ORIENTATION, 1)
    except Exception:  # noqa: BLE001 - a corrupt EXIF block: the decoder warns when it reads it
        return 1
    return value if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 8 else 1
