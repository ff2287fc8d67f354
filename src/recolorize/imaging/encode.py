"""Writing photos with what the source carried: its ICC profile, EXIF, alpha and bit depth.

``encode_image`` / ``save_image`` / ``to_pil`` take sRGB float pixels and, with ``like=source``, write
them in the source's RGB profile (``cms.py``), with its EXIF block (orientation 1, the pixels being
upright), its alpha channel (bit-exact, where the format has alpha) and its bit depth (16-bit PNG/TIFF
in, 16-bit out: a small PNG encoder here, ``tifffile`` for TIFF).

Known limits: a wide-gamut photo saved as BMP (no profile) is converted to sRGB and clipped; EXIF is
not written into 16-bit TIFF output.
"""

from __future__ import annotations

import io
import logging
import os
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from recolorize.errors import UserError, shown
from recolorize.image_formats import WRITE_FORMATS
from recolorize.imaging.cms import _cms_profile, _from_srgb, _is_srgb, _profile_space, _quiet_profile
from recolorize.imaging.convert import _as_hwc, _quantise, unit_float
from recolorize.imaging.exif import _EXIF_HEADER
from recolorize.imaging.loaded import LoadedImage
from recolorize.imaging.pillow_memory import as_pil
from recolorize.io_utils import atomic_write

__all__ = [
    "EncoderError",
    "MAX_OUTPUT_SIDE",
    "check_encodable",
    "check_output_fits",
    "encode_image",
    "output_format",
    "save_image",
    "takes_8bit_srgb",
    "to_pil",
]

logger = logging.getLogger(__name__)

_JPEG_EXIF_LIMIT = 65533
_FORMATS = WRITE_FORMATS  # suffix -> Pillow format name; the formats we write
_ALPHA_FORMATS = {"PNG", "TIFF", "WEBP"}
_SIXTEEN_BIT_FORMATS = {"PNG", "TIFF"}
#: The longest side each written format holds (its header's field or its codec's limit): libjpeg's
#: 65,500, WebP's 14-bit sizes, PNG's and BMP's signed 32-bit fields, TIFF's 32-bit ones.
MAX_OUTPUT_SIDE = {"JPEG": 65500, "WEBP": 16383, "PNG": 2**31 - 1, "BMP": 2**31 - 1, "TIFF": 2**32 - 1}


class EncoderError(UserError):
    """An image the output format cannot hold, or that its encoder refused: one line, no codec text."""


def check_encodable(fmt: str, size: tuple[int, int], name: object = None) -> None:
    """Refuse (:class:`EncoderError`) an image of ``size`` (width, height) that ``fmt`` (a Pillow format
    name or an output path) cannot hold; ``name`` (the output) is named in the message. The one check of
    the formats' size limits: ``encode_image`` makes it, and the commands make it from the source's
    header (:func:`check_output_fits`) before anything is decoded."""
    if not isinstance(fmt, str) or fmt.upper() not in MAX_OUTPUT_SIDE:
        name = fmt if name is None else name
        fmt = output_format(fmt)
    fmt = fmt.upper()
    width, height = size
    most = MAX_OUTPUT_SIDE[fmt]
    if max(width, height) > most:
        what = f"cannot write {shown(name)}: " if name is not None else ""
        raise EncoderError(
            f"{what}{fmt} holds at most {most:,} pixels a side and the image is {width:,} x {height:,}; "
            f"choose another output format (.png or .tif)"
        )


def check_output_fits(
    output: str | os.PathLike[str], source: str | os.PathLike[str], max_pixels: Any
) -> None:
    """Before decoding ``source``: its upright size, read from its header, fits ``output``'s format
    (``check_encodable``). Refuses what ``load_image`` would refuse from the header, too."""
    from recolorize.imaging.decode import photo_size

    check_encodable(output_format(output), photo_size(source, max_pixels=max_pixels), output)


def output_format(path: str | os.PathLike[str]) -> str:
    """Pillow format name for an output path's suffix; ``UserError`` for suffixes we do not write."""
    suffix = Path(path).suffix.lower()
    if suffix not in _FORMATS:
        known = ", ".join(sorted(_FORMATS))
        raise UserError(f"cannot tell the image format of {path} from its suffix; use one of {known}")
    return _FORMATS[suffix]


def _alpha_as(alpha: np.ndarray, depth: int) -> np.ndarray:
    if alpha.dtype == (np.uint16 if depth == 16 else np.uint8):
        return alpha
    return _quantise(unit_float(alpha), depth)


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
    check_encodable(fmt, (samples.shape[1], samples.shape[0]))  # its limits, not the codec's raw text
    try:
        return _encode(samples, icc, exif, depth, fmt, quality)
    except Exception as exc:  # noqa: BLE001 - a codec's refusal, whatever its type, is one clean line
        if exif:  # an EXIF block the encoder cannot parse (TIFF reads it as a TIFF): the image without it
            logger.debug("the %s encoder refused the EXIF block", fmt, exc_info=True)
            try:
                data = _encode(samples, icc, None, depth, fmt, quality)
            except Exception:  # noqa: BLE001
                logger.debug("the %s encoder refused the image", fmt, exc_info=True)
            else:
                logger.warning("the source's EXIF block is malformed; written without it")
                return data
        logger.debug("the %s encoder refused the image", fmt, exc_info=exc)
        raise EncoderError(f"the {fmt} encoder could not write this image") from None


def _encode(
    samples: np.ndarray, icc: bytes | None, exif: bytes | None, depth: int, fmt: str, quality: int
) -> bytes:
    """``samples`` as ``fmt`` bytes (``encode_image`` after ``_prepare``)."""
    if depth == 16:
        if fmt == "PNG":
            return _png16(samples, icc, exif)
        if exif:
            logger.info("EXIF is not written into 16-bit TIFF output")
        return _tiff16(samples, icc)

    im = as_pil(samples) if fmt == "JPEG" else None  # a rendering's own memory: no copy into Pillow
    if im is None:
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
    partial or temporary file behind. Without ``overwrite`` the file is created without replacing
    anything (``atomic_write(replace=False)``): of two writers racing for one name, the second is refused.
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

    try:
        data = encode_image(rgb, like, fmt, quality)
    except EncoderError as exc:
        message = str(exc)
        if message.startswith("cannot write"):
            raise
        raise EncoderError(f"cannot write {shown(target)}: {message}") from None
    try:
        with atomic_write(target, replace=overwrite) as tmp:
            tmp.write_bytes(data)
    except FileExistsError:  # written meanwhile by someone else (another run to the same output)
        raise UserError(f"{target} already exists; choose another output or pass --overwrite") from None
    except OSError as exc:
        raise UserError(f"cannot write {target}: {exc.strerror or exc}") from exc
    logger.info("wrote %s (%s, %d bytes)", target, fmt, len(data))
    return target
