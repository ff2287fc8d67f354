"""8-bit RGB pixels shared between Pillow and NumPy, without copies.

Why: Pillow keeps an RGB image as four bytes a pixel (R, G, B and a pad byte), and ``np.asarray(im)``
copies it out twice (``tobytes`` in pieces, then joined): for a 12-MP photo that is ~70 ms and ~110 MB of
fresh memory, nearly as much as the JPEG decode itself. ``Image.fromarray`` copies the pixels back in
again, for the networks' smaller copy and for the encoder. Here:

* ``rgb_view`` views a decoded RGB image's memory as (H, W, 4) through the Arrow C data interface that
  Pillow exports (Pillow >= 11.2), and hands out the (H, W, 3) view of its first three bytes;
* ``rgbx_array`` makes a new (H, W, 3) array laid out the same way (an output to encode);
* ``as_pil`` gives such an array back to Pillow as an "RGBX" image on the same memory
  (``Image.frombuffer``): resizing and JPEG encoding read it as they read an RGB image, with the same
  results (tests).

Where no view can be made (an older Pillow, an image held in several blocks, another layout) the callers
copy, as before; the numbers are the same either way.
"""

from __future__ import annotations

import contextlib
import ctypes
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
from PIL import Image

__all__ = ["as_pil", "is_rgbx", "one_block", "rgb_view", "rgbx_array"]

#: Pillow's block size while ``one_block`` is open: an image up to this many bytes is one block, so its
#: rows can be viewed as one array (Pillow's limit: a multiple of 4096 that fits a C int).
_ONE_BLOCK = (1 << 31) - 4096

_block_lock = threading.Lock()
_block_users = 0
_block_saved = 0


@contextlib.contextmanager
def one_block() -> Iterator[None]:
    """While open, Pillow allocates each new image as a single block (its default splits images over
    16 MB into several, which cannot be viewed as one array). Nested and concurrent uses share one
    setting, and the caller's own block size comes back when the last one closes."""
    global _block_users, _block_saved
    core = Image.core
    with _block_lock:
        if _block_users == 0:
            _block_saved = core.get_block_size()
            core.set_block_size(max(_block_saved, _ONE_BLOCK))
        _block_users += 1
    try:
        yield
    finally:
        with _block_lock:
            _block_users -= 1
            if _block_users == 0:
                core.set_block_size(_block_saved)


class _ArrowArray(ctypes.Structure):
    """The Arrow C data interface's ``struct ArrowArray`` (a stable ABI)."""


_ArrowArray._fields_ = [
    ("length", ctypes.c_int64),
    ("null_count", ctypes.c_int64),
    ("offset", ctypes.c_int64),
    ("n_buffers", ctypes.c_int64),
    ("n_children", ctypes.c_int64),
    ("buffers", ctypes.POINTER(ctypes.c_void_p)),
    ("children", ctypes.POINTER(ctypes.POINTER(_ArrowArray))),
    ("dictionary", ctypes.c_void_p),
    ("release", ctypes.c_void_p),
    ("private_data", ctypes.c_void_p),
]

_capsule_pointer = ctypes.pythonapi.PyCapsule_GetPointer
_capsule_pointer.restype = ctypes.c_void_p
_capsule_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]


class _Exported:
    """Pillow's export of an image, held for as long as a NumPy array views its memory: the capsules'
    destructors give the memory back to Pillow, so they must outlive every view."""

    def __init__(self, image: Image.Image, capsules: tuple[Any, Any], pointer: int, shape: tuple[int, ...]):
        self._keep = (image, capsules)
        self.__array_interface__ = {"version": 3, "shape": shape, "typestr": "|u1", "data": (pointer, True)}


def rgb_view(im: Image.Image) -> np.ndarray | None:
    """A loaded "RGB" image's pixels as a read-only (H, W, 3) uint8 view of Pillow's own memory, or None
    where Pillow cannot export it whole (then copy with ``np.asarray``)."""
    if im.mode != "RGB" or not hasattr(im, "__arrow_c_array__"):
        return None
    width, height = im.size
    try:
        capsules = im.__arrow_c_array__()
    except (ValueError, TypeError, NotImplementedError):  # several blocks, or no export for this image
        return None
    array = _ArrowArray.from_address(_capsule_pointer(capsules[1], b"arrow_array"))
    if array.length != width * height or array.offset != 0 or array.n_children != 1:
        return None
    child = array.children[0].contents
    if child.length != 4 * width * height or child.offset != 0 or child.n_buffers != 2:
        return None
    pointer = child.buffers[1]
    if not pointer:
        return None
    four = np.asarray(_Exported(im, capsules, pointer, (height, width, 4)))
    return four[:, :, :3]


def rgbx_array(height: int, width: int) -> np.ndarray:
    """A new (H, W, 3) uint8 array in four-byte pixels, which ``as_pil`` hands to Pillow without a copy
    (the fourth byte of each pixel is never read)."""
    return np.empty((height, width, 4), dtype=np.uint8)[:, :, :3]


def as_pil(pixels: np.ndarray) -> Image.Image | None:
    """An "RGBX" image on the memory of ``pixels`` (from ``rgb_view`` or ``rgbx_array``), read-only in
    Pillow, or None for any other array (then ``Image.fromarray`` copies)."""
    four = _four_bytes(pixels)
    if four is None:
        return None
    height, width = pixels.shape[:2]
    return Image.frombuffer("RGBX", (width, height), four, "raw", "RGBX", 0, 1)


def is_rgbx(pixels: np.ndarray) -> bool:
    """Whether ``as_pil`` can hand ``pixels`` to Pillow without a copy."""
    return _four_bytes(pixels) is not None


def _four_bytes(pixels: np.ndarray) -> np.ndarray | None:
    """The (H, W, 4) array whose first three bytes ``pixels`` views, or None."""
    if not isinstance(pixels, np.ndarray) or pixels.dtype != np.uint8 or pixels.ndim != 3:
        return None
    height, width, channels = pixels.shape
    if channels != 3 or pixels.strides != (4 * width, 4, 1):
        return None
    base = pixels.base
    if not isinstance(base, np.ndarray) or base.shape != (height, width, 4) or not base.flags.c_contiguous:
        return None
    if base.ctypes.data != pixels.ctypes.data:
        return None
    return base
