"""Reading and writing photos without losing what the photographer put in them.

Inside the library an image is sRGB float in [0, 1]. At the boundary we keep everything else a photo
carries and hand it back on save: the EXIF block (with the orientation reset, because the pixels are
stored upright), the embedded ICC profile, the alpha channel (passed through bit-exactly) and the bit
depth (16-bit PNG/TIFF in, 16-bit out). Every way a file can be bad becomes a ``UserError`` naming the
file.

Colour spaces. The network works in sRGB, so ``LoadedImage.rgb`` is the photo converted to sRGB and
clipped to sRGB's gamut. A wide-gamut photo (Adobe RGB, Display P3, ProPhoto RGB; any RGB profile that
is not sRGB) also keeps its own decoded samples, unclipped, in ``LoadedImage.samples``. Saving with
``like=source`` treats the pixels as the source re-coloured and writes them in the source's profile:

* a pixel equal to ``source.rgb`` is written as the source's own sample, so strength 0 returns the
  decoded source bit-exactly (8 and 16 bits, any profile littleCMS can read);
* for a matrix/TRC profile (the usual camera and editor RGB spaces) the change is carried into the
  source's space, ``out = source + F(rendered) - F(source.rgb)`` with ``F`` the unclipped float
  sRGB -> profile conversion (``icc.carry_edit``), and clipped once, at the end, in the source's
  space: a colour the transfer does not move keeps its out-of-sRGB values, one it moves is moved by
  the same amount as in sRGB. Adding the change (rather than converting the sRGB result back) is what
  keeps the gamut: the sRGB rendering never held the out-of-gamut part of the colour;
* a table-based (LUT) profile cannot be modelled in float here, so changed pixels take the old path:
  littleCMS from 8-bit sRGB, clipped to sRGB's gamut (pixels left exactly unchanged still keep their
  samples). Untagged and sRGB photos are sRGB throughout, as before.

Pillow has no 16-bit RGB mode: it decodes a 48/64-bit PNG or TIFF to 8 bits by keeping the high
byte. Its decoder is told which byte to keep by the "raw mode", so decoding once more with the byte
order swapped yields the low bytes, and ``high << 8 | low`` is the exact 16-bit image, still decoded
entirely by Pillow's C code. Writing 16-bit RGB(A) uses a small PNG encoder here and ``tifffile``
for TIFF.

Known limits: 16-bit grey+alpha PNGs are read at 8 bits (Pillow has no raw mode for their low bytes);
16-bit data with a table-based (LUT) ICC profile is converted at 8-bit precision (matrix/TRC profiles
are converted in float); CMYK and grey sources are written as sRGB RGB without their profile; a
wide-gamut photo saved as BMP (no profile) is converted to sRGB and clipped; EXIF is not written into
16-bit TIFF output; an already-decoded PIL image is taken at Pillow's 8 bits.

Hostile files: only regular files are opened (a FIFO or device would block or never end); only the
formats in ``READ_FORMATS`` are tried (no Ghostscript EPS, no font or icon containers); Pillow's
decompression-bomb cap is set to our own pixel limit for the duration of a load, and the size is checked
from the header before any pixel is decoded, so decoding never allocates more than the limit allows
(about ``DECODE_BYTES_PER_PIXEL`` bytes per pixel, 8-bit RGB; see the README); and any failure of
the decoders, whatever its type, becomes a ``UserError`` naming the file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import math
import os
import re
import stat
import struct
import sys
import tempfile
import threading
import warnings
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np
from PIL import Image, ImageCms, ImageFile, UnidentifiedImageError

from recolorize.errors import UserError, one_line
from recolorize.image_formats import DEFAULT_MAX_PIXELS, WRITE_FORMATS, WRITE_SUFFIXES
from recolorize.inference.icc import MatrixProfile, carry_edit, convert, srgb_profile
from recolorize.io_utils import atomic_write

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = [
    "DECODE_BYTES_PER_PIXEL",
    "DEFAULT_MAX_PIXELS",
    "MAX_PIXELS_ENV",
    "MIN_SIDE",
    "READ_FORMATS",
    "WRITE_SUFFIXES",
    "LoadedImage",
    "check_regular_file",
    "encode_image",
    "load_image",
    "output_format",
    "parse_max_pixels",
    "resize_for_network",
    "resolve_max_pixels",
    "save_image",
    "takes_8bit_srgb",
    "to_pil",
    "to_uint8",
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

_ORIENTATION = 0x0112
_EXIF_HEADER = b"Exif\x00\x00"
_JPEG_EXIF_LIMIT = 65533
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
_FORMATS = WRITE_FORMATS  # suffix -> Pillow format name; the formats we write
_ALPHA_FORMATS = {"PNG", "TIFF", "WEBP"}
_SIXTEEN_BIT_FORMATS = {"PNG", "TIFF"}
_INTENT = ImageCms.Intent.RELATIVE_COLORIMETRIC


@dataclass(frozen=True, eq=False)
class LoadedImage:
    """A decoded photo: upright sRGB pixels plus what must survive a round trip.

    ``rgb`` is float32 (H, W, 3) in [0, 1], sRGB, upright. ``alpha`` is the source's alpha channel,
    upright, in its original dtype (uint8 / uint16, or float32 for float arrays) so it can be written
    back bit-exactly. ``icc_profile`` and ``exif`` are the source's bytes (EXIF orientation already
    reset to 1). ``bit_depth`` is 8 or 16 per sample; ``greyscale`` says the source had no colour.
    ``samples`` are the source's own decoded RGB samples (uint8 / uint16, upright, in its ICC
    profile's space) when that profile is not sRGB, else None: ``rgb`` is clipped to sRGB, so the
    saver needs them to write back what a re-colouring did not change, out-of-sRGB colours included.
    """

    rgb: np.ndarray
    alpha: np.ndarray | None = None
    icc_profile: bytes | None = None
    exif: bytes | None = None
    greyscale: bool = False
    bit_depth: int = 8
    path: Path | None = None
    format: str | None = None
    samples: np.ndarray | None = None

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])

    def tensor(self) -> Any:
        """The pixels as a float32 torch tensor (1, 3, H, W), the library's image convention."""
        import torch

        return torch.from_numpy(np.ascontiguousarray(self.rgb.transpose(2, 0, 1)))[None]

    def metadata_only(self) -> LoadedImage:
        """This image with its float pixels released: ``rgb`` becomes a read-only all-zero view of the same
        shape (no memory); profile, EXIF, alpha, bit depth, format, path and ``samples`` are kept.

        Why: writing 8-bit sRGB samples rendered from a photo (``takes_8bit_srgb``) needs only its
        metadata, and letting the float pixels go before the encoder copies the samples keeps a 12-MP
        transfer's peak ~140 MB lower. Not for saving float renderings (the savers compare with ``rgb``).
        """
        return dataclasses.replace(self, rgb=np.broadcast_to(np.zeros((), dtype=np.float32), self.rgb.shape))


# ---------------------------------------------------------------------------------------------- load


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


_max_pixels = resolve_max_pixels  # the old private name

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
        logger.warning("EXIF block is malformed; keeping it unchanged")
    return _EXIF_HEADER + bytes(buf)


def _source_exif(im: Image.Image) -> bytes | None:
    raw = im.info.get("exif")
    if isinstance(raw, Image.Exif):
        raw = raw.tobytes()
    if not raw:
        return None
    return _reset_orientation(bytes(raw))


def _profile_space(icc: bytes | None) -> str | None:
    """The ICC header's data colour space: 'RGB', 'GRAY', 'CMYK', ... (None when unreadable)."""
    if not icc or len(icc) < 20:
        return None
    return icc[16:20].decode("ascii", "backslashreplace").strip()


def _cms_profile(icc: bytes) -> ImageCms.ImageCmsProfile | None:
    try:
        return ImageCms.ImageCmsProfile(io.BytesIO(icc))
    except (OSError, ValueError, TypeError) as exc:
        logger.warning("embedded ICC profile is unreadable (%s); treating the image as sRGB", exc)
        return None


def _is_srgb(profile: ImageCms.ImageCmsProfile) -> bool:
    """True for the common sRGB profiles, whose conversion would only add rounding."""
    try:
        desc = ImageCms.getProfileDescription(profile) or ""
    except ImageCms.PyCMSError:
        return False
    return desc.strip().lower().startswith("srgb")


def _srgb_profile() -> ImageCms.ImageCmsProfile:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


def _cms(
    im: Image.Image, src: ImageCms.ImageCmsProfile, dst: ImageCms.ImageCmsProfile, mode: str
) -> np.ndarray | None:
    """littleCMS conversion (relative colorimetric) as an array, or None when the profile cannot be used."""
    try:
        return np.asarray(ImageCms.profileToProfile(im, src, dst, _INTENT, outputMode=mode))
    except (ImageCms.PyCMSError, OSError, ValueError) as exc:
        logger.warning("colour conversion with the embedded ICC profile failed (%s); assuming sRGB", exc)
        return None


# --- matrix/TRC profiles in float maths (``icc.py``): Pillow's colour management is 8-bit and clips ---


def _matrix_convert(rgb: np.ndarray, src_icc: bytes, dst_icc: bytes) -> np.ndarray | None:
    """Float colour conversion between two matrix/TRC profiles (relative colorimetric), clipped to the
    destination's gamut as a display conversion is; None when either profile is not matrix/TRC."""
    src, dst = MatrixProfile.from_icc(src_icc), MatrixProfile.from_icc(dst_icc)
    if src is None or dst is None:
        return None
    return convert(rgb, src, dst, clip=True)


# ---------------------------------------------------------------------------------------------- decode


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
    return np.asarray(im), None, "RGB", 8


def _is_grey(data: np.ndarray, space: str) -> bool:
    if space == "L":
        return True
    if space != "RGB":
        return False
    return bool(np.array_equal(data[..., 0], data[..., 1]) and np.array_equal(data[..., 1], data[..., 2]))


def _unit(data: np.ndarray) -> np.ndarray:
    """Samples as float32 in [0, 1]; scaled in place, so a photo costs one float copy, not two."""
    out = data.astype(np.float32)
    if data.dtype == np.uint8:
        out /= 255.0
    elif data.dtype == np.uint16:
        out /= 65535.0
    else:
        np.clip(out, 0.0, 1.0, out=out)
    return out


def _to_srgb(data: np.ndarray, space: str, icc: bytes | None, name: str) -> tuple[np.ndarray, bool]:
    """Colour samples in ``space`` (possibly described by ``icc``) -> float32 sRGB (H, W, 3), and whether
    RGB samples were converted from a non-sRGB profile (then they differ from ``rgb``'s encoding)."""
    profile = _cms_profile(icc) if icc else None
    pspace = _profile_space(icc)
    usable = profile is not None and pspace == {"RGB": "RGB", "L": "GRAY", "CMYK": "CMYK"}[space]
    if profile is not None and not usable:
        logger.warning(
            "%s: ICC profile describes %s data but the pixels are %s; ignoring it", name, pspace, space
        )
    if usable and space == "RGB" and _is_srgb(profile):
        usable = False
    if space == "CMYK":
        cmyk = Image.fromarray(data, "CMYK")
        out = _cms(cmyk, profile, _srgb_profile(), "RGB") if usable else None
        return (np.asarray(cmyk.convert("RGB")) if out is None else out).astype(np.float32) / 255.0, False
    if usable and data.dtype == np.uint8:
        out = _cms(Image.fromarray(data, "L" if space == "L" else "RGB"), profile, _srgb_profile(), "RGB")
        usable = out is not None
        if usable:
            return out.astype(np.float32) / 255.0, space == "RGB"
    if not usable:
        unit = _unit(data)
        return (np.repeat(unit[..., None], 3, axis=-1) if space == "L" else unit), False
    if space == "RGB":
        converted = _matrix_convert(_unit(data), icc, _srgb_profile().tobytes())
        if converted is not None:
            return converted, True
        logger.warning("%s: 16-bit data with a table-based ICC profile is converted at 8-bit precision", name)
        eight = np.round(_unit(data) * 255.0).astype(np.uint8)
        out = _cms(Image.fromarray(eight, "RGB"), profile, _srgb_profile(), "RGB")
        return (eight if out is None else out).astype(np.float32) / 255.0, out is not None
    logger.info("%s: grey ICC profile on 16-bit data ignored (treated as sRGB tones)", name)
    return np.repeat(_unit(data)[..., None], 3, axis=-1), False


def _from_pil(
    im: Image.Image,
    name: str,
    limit: int,
    path: Path | None,
    opener: Callable[[], Image.Image] | None,
) -> LoadedImage:
    _check_size(im.width, im.height, name, limit)
    tiles = list(getattr(im, "tile", None) or [])
    try:
        with _c_stderr_to_debug_log(name):  # around the C decoders only: our own log lines stay visible
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
        rgb=np.ascontiguousarray(rgb, dtype=np.float32),
        alpha=None if alpha is None else np.ascontiguousarray(alpha),
        icc_profile=bytes(icc) if icc else None,
        exif=exif,
        greyscale=greyscale,
        bit_depth=depth,
        path=path,
        format=fmt,
        samples=np.ascontiguousarray(data) if converted else None,
    )


def _orientation(im: Image.Image, name: str) -> int:
    """The EXIF orientation 1-8; anything else (text, a list, 0, 9, an unreadable EXIF block) counts as 1."""
    try:
        value = im.getexif().get(_ORIENTATION, 1)
    except Exception as exc:  # noqa: BLE001 - a corrupt EXIF block must not stop the photo
        logger.warning("%s: EXIF block is unreadable (%s); orientation taken as 1", name, one_line(exc))
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
        rgb=np.ascontiguousarray(rgb), alpha=alpha, greyscale=_is_grey(a, space), bit_depth=depth
    )


def _bomb_message(name: str, exc: Exception, limit: int) -> str:
    """Pillow's DecompressionBombError restated with the user's limit (Pillow quotes twice its cap)."""
    found = re.search(r"\((\d+) pixels\)", str(exc))
    size = f"{int(found.group(1)):,} pixels" if found else "more pixels than allowed"
    return f"{name} has {size}, more than {_limit_hint(limit)}"


def _open(fp: str | Path | IO[bytes], name: str, limit: int) -> Image.Image:
    """Open (read the header of) an image in one of ``READ_FORMATS``; any failure is a ``UserError``."""
    try:
        return Image.open(fp, formats=READ_FORMATS)
    except UnidentifiedImageError:
        raise UserError(f"{name} is not an image file in a format this program reads") from None
    except Image.DecompressionBombError as exc:
        raise UserError(_bomb_message(name, exc, limit)) from None
    except MemoryError:
        raise UserError(f"{name} cannot be opened: not enough memory") from None
    except Exception as exc:  # noqa: BLE001 - a hostile header can make a plugin raise anything
        logger.debug("opening %s failed", name, exc_info=True)
        raise UserError(f"{name} cannot be opened as an image ({one_line(exc)})") from None


def check_regular_file(path: Path, what: str = "") -> None:
    """Refuse, before opening it, anything at ``path`` that is not a readable regular file.

    A FIFO would block the open forever and a device (``/dev/zero``) never ends; folders, sockets and
    missing paths get their own message. ``what`` (e.g. "pairs file") starts the message.
    """
    label = f"{what} {path}".strip()
    try:
        info = path.stat()
    except FileNotFoundError:
        raise UserError(f"{label} does not exist") from None
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the name
        raise UserError(
            f"{label} cannot be read ({one_line(getattr(exc, 'strerror', None) or exc)})"
        ) from None
    if stat.S_ISDIR(info.st_mode):
        raise UserError(f"{label} is a directory, not a file")
    if not stat.S_ISREG(info.st_mode):
        kind = "a FIFO" if stat.S_ISFIFO(info.st_mode) else "a device or socket"
        raise UserError(f"{label} is {kind}, not a regular file; refusing to read it")
    if not os.access(path, os.R_OK):
        raise UserError(f"{label} is not readable (permission denied)")


@contextlib.contextmanager
def _c_stderr_to_debug_log(name: str) -> Iterator[None]:
    """Send what C decoders print on file descriptor 2 to the debug log.

    libtiff reports a corrupt strip ("ZIPDecode: Decoding error ...") straight to stderr, which would
    put a second line before our one-line error. Only in the main thread (the command line): in a
    server thread, redirecting the process's stderr would also swallow other threads' messages.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no usable fd 2 (a daemon): nothing to protect
        yield
        return
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            for line in sink.read(20_000).decode("utf-8", "replace").splitlines():
                logger.debug("%s: %s", name, line)


def _decode(opener: Callable[[], Image.Image], name: str, limit: int, path: Path | None) -> LoadedImage:
    """Open and decode under our pixel cap; every failure, whatever its type, is a ``UserError``."""
    try:
        with _pil_limit(limit), opener() as im:
            return _from_pil(im, name, limit, path, opener)
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


def load_image(source: Any, max_pixels: int | None = None) -> LoadedImage:
    """Decode ``source`` into an upright sRGB ``LoadedImage``.

    ``source`` may be a path, raw file bytes / a binary file object (web uploads), a PIL image, a
    NumPy array (uint8, uint16 or float in [0, 1]; (H, W), (H, W, 3) or (H, W, 4)) or a
    ``LoadedImage`` (returned as is). ``max_pixels`` is the decompression-bomb limit (default
    ``$RECOLORIZE_MAX_PIXELS`` or 100 MP). Every unusable input raises ``UserError``.
    """
    limit = resolve_max_pixels(max_pixels)
    if isinstance(source, LoadedImage):
        return source
    if isinstance(source, np.ndarray):
        return _from_array(source, limit)
    if isinstance(source, Image.Image):
        filename = getattr(source, "filename", "") or ""
        if isinstance(source, ImageFile.ImageFile) and source.tile and filename and Path(filename).is_file():
            return load_image(Path(filename), limit)  # not decoded yet: read it ourselves (16-bit, checks)
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

        return _decode(opener, name, limit, None)
    path = Path(source)
    check_regular_file(path)

    def path_opener() -> Image.Image:
        check_regular_file(path)  # again: the 16-bit pass reopens it
        return _open(path, str(path), limit)

    return _decode(path_opener, str(path), limit, path)


# ---------------------------------------------------------------------------------------------- save


def output_format(path: str | os.PathLike[str]) -> str:
    """Pillow format name for an output path's suffix; ``UserError`` for suffixes we do not write."""
    suffix = Path(path).suffix.lower()
    if suffix not in _FORMATS:
        known = ", ".join(sorted(_FORMATS))
        raise UserError(f"cannot tell the image format of {path} from its suffix; use one of {known}")
    return _FORMATS[suffix]


def _as_hwc(rgb: Any) -> np.ndarray:
    """Accept (H, W, 3) arrays, (1, 3, H, W) / (3, H, W) tensors or PIL images; return float32 [0,1]."""
    if isinstance(rgb, Image.Image):
        rgb = np.asarray(rgb.convert("RGB"))
    if hasattr(rgb, "detach"):
        t = rgb.detach().float().cpu()
        if t.dim() == 4:
            if t.shape[0] != 1:
                raise ValueError(f"expected one image, got a batch of {t.shape[0]}")
            t = t[0]
        rgb = t.permute(1, 2, 0).numpy()
    a = np.asarray(rgb)
    if a.ndim != 3 or a.shape[-1] != 3:
        raise ValueError(f"expected an (H, W, 3) image, got shape {a.shape}")
    if a.dtype == np.uint8:
        return a.astype(np.float32) / 255.0
    if a.dtype == np.uint16:
        return a.astype(np.float32) / 65535.0
    # One pass into a fresh float32 array (clip maps +-inf to 1 and 0), then NaN -> 0 only if there is one:
    # nan_to_num + astype + clip made three full-size copies, ~1 s of saving a 12-MP result.
    out = np.empty(a.shape, dtype=np.float32)
    np.clip(a, 0.0, 1.0, out=out)
    if np.isnan(out.max()):
        np.nan_to_num(out, copy=False, nan=0.0)
    return out


def to_uint8(x: np.ndarray) -> np.ndarray:
    """Float [0, 1] -> uint8: clip, x 255, round half to even, computed in ``x``'s own float dtype.

    The one float -> 8-bit conversion for writing images (PNG and the rest), used by the savers here, the
    renderer, the app's previews, report grids and the benchmark builder."""
    return np.round(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)


def resize_for_network(image: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """Resize ``(B, C, H, W)`` to ``size`` (int = square) with antialiasing, in float32.

    Bilinear with ``antialias=True`` is an area-weighted (triangle) filter when shrinking and plain
    bilinear when enlarging, so a 12-MP photo shrunk to 256 does not alias; pixel centres are aligned
    (``align_corners=False``), matching the coefficient upsampling of ``fullres.apply_affine``.
    """
    import torch.nn.functional as F  # here, so that importing the codec does not import torch

    if image.dim() != 4:
        raise ValueError(f"expected a (B, C, H, W) tensor, got shape {tuple(image.shape)}")
    out_hw = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if tuple(image.shape[-2:]) == out_hw:
        return image.float()
    out = F.interpolate(image.float(), size=out_hw, mode="bilinear", align_corners=False, antialias=True)
    return out.clamp_(0.0, 1.0)


def _quantise(x: np.ndarray, depth: int, scratch: bool = False) -> np.ndarray:
    """Float [0, 1] -> uint8/uint16; ``scratch`` says ``x`` may be overwritten (saves two full-size
    float temporaries when saving a 12-MP photo)."""
    if not scratch:
        return to_uint8(x) if depth != 16 else np.round(np.clip(x, 0.0, 1.0) * 65535.0).astype(np.uint16)
    scale = 65535.0 if depth == 16 else 255.0
    dtype = np.uint16 if depth == 16 else np.uint8
    np.clip(x, 0.0, 1.0, out=x)
    x *= scale
    return np.round(x, out=x).astype(dtype)


def _alpha_as(alpha: np.ndarray, depth: int) -> np.ndarray:
    if alpha.dtype == (np.uint16 if depth == 16 else np.uint8):
        return alpha
    return _quantise(_unit(alpha), depth)


def _png16(rgb16: np.ndarray, icc: bytes | None, exif: bytes | None) -> bytes:
    """A 16-bit RGB / RGBA PNG (Pillow cannot write one): Sub-filtered rows, zlib level 6."""
    h, w, ch = rgb16.shape
    raw = np.ascontiguousarray(rgb16.astype(">u2")).view(np.uint8).reshape(h, w * ch * 2)
    bpp = ch * 2
    filtered = np.empty((h, raw.shape[1] + 1), dtype=np.uint8)
    filtered[:, 0] = 1  # filter type Sub
    filtered[:, 1 : 1 + bpp] = raw[:, :bpp]
    np.subtract(raw[:, bpp:], raw[:, :-bpp], out=filtered[:, 1 + bpp :])  # uint8 arithmetic wraps mod 256

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    parts = [
        b"\x89PNG\r\n\x1a\n",
        chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 6 if ch == 4 else 2, 0, 0, 0)),
    ]
    if icc:
        parts.append(chunk(b"iCCP", b"ICC profile\x00\x00" + zlib.compress(icc)))
    if exif:
        parts.append(chunk(b"eXIf", exif[6:] if exif.startswith(_EXIF_HEADER) else exif))
    parts.append(chunk(b"IDAT", zlib.compress(filtered.tobytes(), 6)))
    parts.append(chunk(b"IEND", b""))
    return b"".join(parts)


def _tiff16(rgb16: np.ndarray, icc: bytes | None) -> bytes:
    import tifffile  # a scikit-image dependency; only needed for 16-bit TIFF output

    buf = io.BytesIO()
    kwargs: dict[str, Any] = {"photometric": "rgb", "compression": "zlib"}
    if rgb16.shape[-1] == 4:
        kwargs["extrasamples"] = ["unassalpha"]
    if icc:
        kwargs["iccprofile"] = icc
    tifffile.imwrite(buf, rgb16, **kwargs)
    return buf.getvalue()


def _samples_at(samples: np.ndarray, depth: int) -> np.ndarray:
    """A source's integer samples at ``depth`` bits (16 -> 8 rounds, as quantising its float would)."""
    if depth == 16:
        return samples if samples.dtype == np.uint16 else samples.astype(np.uint16) * 257
    if samples.dtype == np.uint8:
        return samples
    return ((samples.astype(np.uint32) + 128) // 257).astype(np.uint8)


def _edit_of(pixels: np.ndarray, like: LoadedImage | None) -> LoadedImage | None:
    """``like`` when ``pixels`` can be a rendering of it (same size) and it kept its own samples."""
    if like is None or like.samples is None:
        return None
    if like.samples.shape != pixels.shape or like.rgb.shape != pixels.shape:
        return None
    return like


def _from_srgb(
    rgb: np.ndarray, icc: bytes, depth: int, like: LoadedImage | None = None, scratch: bool = False
) -> tuple[np.ndarray, bytes | None]:
    """sRGB float -> samples in the source's RGB profile at ``depth`` bits, and the profile to embed.

    With ``like`` (``rgb`` is ``like`` re-coloured, and ``icc`` its profile) the change from ``like.rgb``
    is carried onto ``like.samples`` (``icc.carry_edit``), so colours the rendering did not move keep
    their own samples, out-of-sRGB ones included. Matrix/TRC profiles are converted in unclipped float
    and clipped once, at the end, in the profile's space; table-based ones go through littleCMS at 8
    bits, clipping to sRGB's gamut on the way (only pixels left exactly unchanged keep their samples).
    When the profile cannot be used (unreadable, or littleCMS refuses it) the pixels stay sRGB and no
    profile is embedded, so the file is never labelled with a profile its pixels are not in.
    ``scratch`` says ``rgb`` may be overwritten.
    """
    profile = _cms_profile(icc)
    if profile is None:
        return _quantise(rgb, depth, scratch), None
    if _is_srgb(profile):
        return _quantise(rgb, depth, scratch), icc
    matrix = MatrixProfile.from_icc(icc)
    if matrix is not None:
        precision = np.float64 if depth == 16 else np.float32  # float32: ~10x faster, ample for 8 bits
        if like is not None:
            edited = carry_edit(like.samples, like.rgb, rgb, matrix, precision)
            return _quantise(edited, depth, scratch=True), icc
        converted = convert(rgb, srgb_profile(), matrix, precision=precision)
        return _quantise(converted, depth, scratch=True), icc
    if depth == 16:
        logger.warning("16-bit output in a table-based ICC profile is converted at 8-bit precision")
    eight = _cms(Image.fromarray(_quantise(rgb, 8), "RGB"), _srgb_profile(), profile, "RGB")
    if eight is None:
        return _quantise(rgb, depth), None
    return (eight if depth == 8 else eight.astype(np.uint16) * 257), icc


def _prepare(
    rgb: Any, like: LoadedImage | None, fmt: str | None
) -> tuple[np.ndarray, bytes | None, bytes | None, int]:
    """Samples ready to encode (uint8/uint16, RGB or RGBA, in the source's profile), ICC, EXIF, depth.

    ``fmt`` None means a PIL image: 8-bit, alpha kept. A pixel of ``rgb`` equal to ``like.rgb`` is
    written as the source's own sample when the output carries the source's profile: strength 0 gives
    the decoded source back bit-exactly, whatever its profile.
    """
    eight = rgb if _is_uint8_rgb(rgb) else None
    pixels = eight if eight is not None else _as_hwc(rgb)
    depth = _output_depth(like, fmt)
    icc = _output_icc(like, fmt)
    exif = like.exif if like is not None else None
    alpha = like.alpha if like is not None else None
    if alpha is not None and alpha.shape != pixels.shape[:2]:
        raise ValueError(f"alpha is {alpha.shape} but the image is {pixels.shape[:2]}")
    if alpha is not None and fmt is not None and fmt not in _ALPHA_FORMATS:
        logger.warning("%s has no alpha channel; the source's transparency is dropped", fmt)
        alpha = None
    if fmt == "BMP":
        exif = None
    if fmt == "JPEG" and exif is not None and len(exif) > _JPEG_EXIF_LIMIT:
        logger.warning("EXIF block of %d bytes does not fit in a JPEG; dropped", len(exif))
        exif = None
    if eight is not None and depth == 8 and _srgb_only(icc, like):
        # 8-bit sRGB samples already (``render_array(dtype=np.uint8)``): nothing to convert or quantise.
        readable = icc is not None and _cms_profile(icc) is not None  # warns once, as the float path does
        return _with_alpha(eight, alpha, depth), (icc if readable else None), exif, depth
    if eight is not None:
        pixels = eight.astype(np.float32) / 255.0
    edit = _edit_of(pixels, like) if icc else None
    if icc:
        samples, icc = _from_srgb(pixels, icc, depth, edit, scratch=edit is None)
    else:
        samples = _quantise(pixels, depth, scratch=True)  # ``pixels`` is always a fresh array here
    if edit is not None and edit.samples is not None and icc == edit.icc_profile:
        unchanged = (pixels == edit.rgb).all(axis=-1)
        if unchanged.any():
            samples = samples if samples.flags.writeable else samples.copy()
            samples[unchanged] = _samples_at(edit.samples, depth)[unchanged]
    return _with_alpha(samples, alpha, depth), icc, exif, depth


def _with_alpha(samples: np.ndarray, alpha: np.ndarray | None, depth: int) -> np.ndarray:
    return (
        samples if alpha is None else np.concatenate([samples, _alpha_as(alpha, depth)[..., None]], axis=-1)
    )


def _is_uint8_rgb(rgb: Any) -> bool:
    return isinstance(rgb, np.ndarray) and rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[-1] == 3


def _output_depth(like: LoadedImage | None, fmt: str | None) -> int:
    """Bits per sample written for a rendering of ``like`` as ``fmt`` (None = a PIL image): 16 only for a
    16-bit source written as PNG or TIFF."""
    return 16 if like is not None and like.bit_depth == 16 and fmt in _SIXTEEN_BIT_FORMATS else 8


def _output_icc(like: LoadedImage | None, fmt: str | None) -> bytes | None:
    """The RGB profile a rendering of ``like`` is written in (None: sRGB, untagged); BMP carries none."""
    if like is None or fmt == "BMP" or _profile_space(like.icc_profile) != "RGB":
        return None
    return like.icc_profile


def _quiet_profile(icc: bytes) -> ImageCms.ImageCmsProfile | None:
    """``_cms_profile`` without its warning (for checks made before the saver, which warns once)."""
    try:
        return ImageCms.ImageCmsProfile(io.BytesIO(icc))
    except (OSError, ValueError, TypeError):
        return None


def _srgb_only(icc: bytes | None, like: LoadedImage | None) -> bool:
    """Whether saving to ``icc`` only quantises sRGB: no profile, an unreadable one (dropped) or sRGB."""
    if not icc:
        return True
    profile = _quiet_profile(icc)
    return profile is None or (_is_srgb(profile) and (like is None or like.samples is None))


def takes_8bit_srgb(like: LoadedImage | None, fmt: str | None) -> bool:
    """Whether writing a rendering of ``like`` as ``fmt`` (a Pillow format name; None = ``to_pil``) stores
    8-bit sRGB samples, i.e. only quantises the float pixels: then ``render_array(dtype=np.uint8)`` gives
    the very samples, without a full-size float copy. False for 16-bit output and for wide-gamut or other
    profiles the change is converted into (those need the float result)."""
    return _output_depth(like, fmt) == 8 and _srgb_only(_output_icc(like, fmt), like)


def to_pil(rgb: Any, like: LoadedImage | None = None) -> Image.Image:
    """An 8-bit PIL image of ``rgb`` with ``like``'s alpha, and pixels in ``like``'s RGB ICC profile
    (``rgb`` taken as ``like`` re-coloured, as in ``encode_image``).

    ``info["icc_profile"]`` and ``info["exif"]`` are set so that a caller's ``im.save(...,
    icc_profile=im.info.get("icc_profile"), exif=im.info.get("exif"))`` keeps them. PIL has no 16-bit
    RGB mode: use ``save_image`` / ``encode_image`` to keep 16 bits.
    """
    samples, icc, exif, _ = _prepare(rgb, like, None)
    im = Image.fromarray(samples, "RGBA" if samples.shape[-1] == 4 else "RGB")
    if icc:
        im.info["icc_profile"] = icc
    if exif:
        im.info["exif"] = exif
    return im


def encode_image(rgb: Any, like: LoadedImage | None = None, fmt: str = "PNG", quality: int = 95) -> bytes:
    """Encode ``rgb`` (sRGB, [0, 1]) as ``fmt`` bytes with the metadata of ``like`` put back.

    With ``like``: ``rgb`` is taken as ``like`` re-coloured and written in its RGB ICC profile, the
    profile embedded (unchanged pixels keep ``like``'s own samples, wide-gamut ones included; see the
    module docstring); its EXIF (orientation 1) is kept; its alpha is attached unchanged where the
    format has alpha; 16-bit sources give 16-bit PNG/TIFF. Without ``like``: plain 8-bit sRGB.
    ``fmt`` is a Pillow format name or a suffix ("jpg"); ``quality`` (1-100) applies to JPEG and WebP.
    """
    fmt = fmt.upper().lstrip(".")
    fmt = {"JPG": "JPEG", "TIF": "TIFF"}.get(fmt, fmt)
    if fmt not in set(_FORMATS.values()):
        raise UserError(f"cannot write images in format {fmt!r}; use JPEG, PNG, TIFF, WEBP or BMP")
    if not 1 <= int(quality) <= 100:
        raise UserError(f"quality must be between 1 and 100, got {quality}")
    samples, icc, exif, depth = _prepare(rgb, like, fmt)
    if depth == 16:
        if fmt == "PNG":
            return _png16(samples, icc, exif)
        if exif:
            logger.info("EXIF is not written into 16-bit TIFF output")
        return _tiff16(samples, icc)

    im = Image.fromarray(samples, "RGBA" if samples.shape[-1] == 4 else "RGB")
    params: dict[str, Any] = {}
    if icc:
        params["icc_profile"] = icc
    if exif:
        params["exif"] = exif
    if fmt == "JPEG":
        params.update(quality=int(quality), subsampling=0 if quality >= 90 else 2)
    elif fmt == "WEBP":
        params.update(quality=int(quality))
    elif fmt == "PNG":
        params.update(compress_level=6)
    elif fmt == "TIFF":
        params.update(compression="tiff_deflate")
    buf = io.BytesIO()
    im.save(buf, format=fmt, **params)
    return buf.getvalue()


def _same_file(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return os.path.realpath(a) == os.path.realpath(b)


def save_image(
    path: str | os.PathLike[str],
    rgb: Any,
    like: LoadedImage | None = None,
    quality: int = 95,
    overwrite: bool = False,
    source_path: str | os.PathLike[str] | None = None,
) -> Path:
    """Write ``rgb`` to ``path`` atomically in the format its suffix names; returns the path.

    Refuses (``UserError``) to replace the source image (``source_path``, default ``like.path``) or any
    existing file unless ``overwrite``, and reports an unwritable destination in one sentence. The
    image is encoded in memory first and written through ``atomic_write``, so no error leaves a
    partial or temporary file behind.
    """
    target = Path(path)
    fmt = output_format(target)
    src = Path(source_path) if source_path is not None else (like.path if like is not None else None)
    if target.is_dir():
        raise UserError(f"{target} is a directory; give a file name for the output image")
    if src is not None and _same_file(target, src) and not overwrite:
        raise UserError(
            f"refusing to overwrite the source image {target}; choose another output or --overwrite"
        )
    if target.exists() and not overwrite:
        raise UserError(f"{target} already exists; choose another output or pass --overwrite")
    parent = target.parent
    existing = parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"cannot write {target}: the folder {existing} is not a writable directory")

    data = encode_image(rgb, like, fmt, quality)
    try:
        with atomic_write(target) as tmp:
            tmp.write_bytes(data)
    except OSError as exc:
        raise UserError(f"cannot write {target}: {exc.strerror or exc}") from exc
    logger.info("wrote %s (%s, %d bytes)", target, fmt, len(data))
    return target
