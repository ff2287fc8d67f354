"""Colour management: a photo's ICC profile to sRGB on decode, and the change back into it on encode.

The network works in sRGB, so ``LoadedImage.rgb`` is the photo converted to sRGB and clipped to sRGB's
gamut. A wide-gamut photo (Adobe RGB, Display P3, ProPhoto RGB; any RGB profile that is not sRGB) also
keeps its own decoded samples, unclipped, in ``LoadedImage.samples``. Saving with ``like=source`` treats
the pixels as the source re-coloured and writes them in the source's profile:

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
  samples). Untagged and sRGB photos are sRGB throughout.

Known limits: 16-bit data with a table-based (LUT) ICC profile is converted at 8-bit precision
(matrix/TRC profiles are converted in float); CMYK and grey sources are written as sRGB RGB without
their profile.
"""

from __future__ import annotations

import io
import logging

import numpy as np
from PIL import Image, ImageCms

from recolorize.imaging.convert import _quantise, unit_float
from recolorize.imaging.icc import MatrixProfile, carry_edit, convert, srgb_profile
from recolorize.imaging.loaded import LoadedImage

logger = logging.getLogger(__name__)

_INTENT = ImageCms.Intent.RELATIVE_COLORIMETRIC


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


def _quiet_profile(icc: bytes) -> ImageCms.ImageCmsProfile | None:
    """``_cms_profile`` without its warning (for checks made before the saver, which warns once)."""
    try:
        return ImageCms.ImageCmsProfile(io.BytesIO(icc))
    except (OSError, ValueError, TypeError):
        return None


# --- matrix/TRC profiles in float maths (``icc.py``): Pillow's colour management is 8-bit and clips ---


def _matrix_convert(rgb: np.ndarray, src_icc: bytes, dst_icc: bytes) -> np.ndarray | None:
    """Float colour conversion between two matrix/TRC profiles (relative colorimetric), clipped to the
    destination's gamut as a display conversion is; None when either profile is not matrix/TRC."""
    src, dst = MatrixProfile.from_icc(src_icc), MatrixProfile.from_icc(dst_icc)
    if src is None or dst is None:
        return None
    return convert(rgb, src, dst, clip=True)


def _to_srgb(data: np.ndarray, space: str, icc: bytes | None, name: str) -> tuple[np.ndarray, bool]:
    """Colour samples in ``space`` (possibly described by ``icc``) -> sRGB (H, W, 3), and whether RGB samples
    were converted from a non-sRGB profile (then they differ from ``rgb``'s encoding). 8-bit samples that
    need no conversion come back as they are (uint8), everything else as float32 in [0, 1]."""
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
    if not usable:  # sRGB already: 8-bit samples stay as they are (``LoadedImage.pixels``)
        unit = data if data.dtype == np.uint8 else unit_float(data)
        return (np.repeat(unit[..., None], 3, axis=-1) if space == "L" else unit), False
    if space == "RGB":
        converted = _matrix_convert(unit_float(data), icc, _srgb_profile().tobytes())
        if converted is not None:
            return converted, True
        logger.warning("%s: 16-bit data with a table-based ICC profile is converted at 8-bit precision", name)
        eight = np.round(unit_float(data) * 255.0).astype(np.uint8)
        out = _cms(Image.fromarray(eight, "RGB"), profile, _srgb_profile(), "RGB")
        return (eight if out is None else out).astype(np.float32) / 255.0, out is not None
    logger.info("%s: grey ICC profile on 16-bit data ignored (treated as sRGB tones)", name)
    return np.repeat(unit_float(data)[..., None], 3, axis=-1), False


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
