"""Pixel conversions: float <-> integer samples, arrays <-> tensors, and the shared resizes.

``to_uint8`` is the one float -> 8-bit conversion; ``resize_for_network`` the one resize of tensors
(inference, evaluation, the app's previews), ``resize_image`` the one resize of arrays with a Pillow
filter and an optional crop box (training crops: bicubic; the benchmark builder: Lanczos).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from recolorize.imaging.pillow_memory import as_pil
from recolorize.threads import in_threads

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = [
    "RESAMPLING",
    "fit_long_side",
    "resize_array",
    "resize_for_network",
    "resize_image",
    "to_uint8",
    "unit_float",
]


def unit_float(data: np.ndarray) -> np.ndarray:
    """Samples as float32 in [0, 1]: integer samples divided by their full scale in one pass into the
    float copy (``float32(x) / float32(scale)``, the same numbers as converting then dividing), a large photo
    in two row blocks in threads (NumPy lets go of Python's lock): a 12-MP photo 0.25 s -> ~0.06 s."""
    if data.dtype not in (np.uint8, np.uint16):
        out = data.astype(np.float32)
        return np.clip(out, 0.0, 1.0, out=out)
    scale = np.float32(255.0 if data.dtype == np.uint8 else 65535.0)
    out = np.empty(data.shape, dtype=np.float32)
    if data.ndim == 0 or data.size < 1 << 22:
        return np.divide(data, scale, out=out, dtype=np.float32)
    half = data.shape[0] // 2

    def divide(rows: slice) -> None:
        np.divide(data[rows], scale, out=out[rows])

    in_threads(divide, [slice(0, half), slice(half, None)])
    return out


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


def resize_for_network(image: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """Resize ``(B, C, H, W)`` to ``size`` (int = square) with antialiasing, in float32.

    Bilinear with ``antialias=True`` is an area-weighted (triangle) filter when shrinking and plain
    bilinear when enlarging, so a 12-MP photo shrunk to 256 does not alias; pixel centres are aligned
    (``align_corners=False``), matching the coefficient upsampling of the carry-up (``inference.carry``).
    """
    import torch.nn.functional as F  # here, so that importing the codec does not import torch

    if image.dim() != 4:
        raise ValueError(f"expected a (B, C, H, W) tensor, got shape {tuple(image.shape)}")
    out_hw = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if tuple(image.shape[-2:]) == out_hw:
        return image.float()
    out = F.interpolate(image.float(), size=out_hw, mode="bilinear", align_corners=False, antialias=True)
    return out.clamp_(0.0, 1.0)


def resize_array(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``rgb`` (H, W, C) float, or (H, W, 3) uint8 samples, resized to ``size`` = (height, width) as float32
    in [0, 1]: what ``resize_for_network`` computes (the antialiased bilinear filter, pixel centres aligned)
    without torch.

    Pillow's bilinear filter on float ("F") channels is the same triangle filter, widened by the scale when
    shrinking, with pixel centres aligned (torch's antialiased mode was written to match it): the two agree
    to ~2e-5 (a test holds them so), far below a level of an 8-bit file.
    """
    height, width = int(size[0]), int(size[1])
    if rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3:
        # 8-bit samples: Pillow's 8-bit filter (the same triangle, rounded to a level; a 12-MP photo's
        # copy in ~0.08 s against ~0.3 s through three float planes, and no float copy of the photo)
        if rgb.shape[:2] != (height, width):
            shared = as_pil(rgb)  # a decoded photo's own memory (``pillow_memory``): no copy into Pillow
            im = Image.fromarray(rgb, "RGB") if shared is None else shared
            rgb = np.asarray(im.resize((width, height), Image.Resampling.BILINEAR))[:, :, :3]
        return unit_float(rgb)
    if rgb.shape[:2] == (height, width):
        return np.ascontiguousarray(rgb, dtype=np.float32)
    out = np.empty((height, width, rgb.shape[2]), dtype=np.float32)
    # one plane at a time: three at once in threads (Pillow lets go of Python's lock) made a 12-MP photo's
    # copy 0.20 s -> 0.13 s but its whole run peak ~55 MB higher (each plane's float copy at once)
    for channel in range(rgb.shape[2]):
        plane = Image.fromarray(np.ascontiguousarray(rgb[..., channel], dtype=np.float32), "F")
        out[..., channel] = np.asarray(plane.resize((width, height), Image.Resampling.BILINEAR))
    return np.clip(out, 0.0, 1.0, out=out)


def fit_long_side(rgb: np.ndarray, long_side: int | None) -> np.ndarray:
    """``rgb`` (H, W, 3) float32 shrunk by ``resize_array`` so its long side is at most ``long_side``.

    Never enlarges (an image already small enough, or ``long_side`` None, comes back as a contiguous
    float32 array); sides are rounded and at least 1 pixel.
    """
    height, width = rgb.shape[:2]
    if long_side is None or max(height, width) <= long_side:
        return np.ascontiguousarray(rgb, dtype=np.float32)
    scale = long_side / max(height, width)
    return resize_array(rgb, (max(1, round(height * scale)), max(1, round(width * scale))))


#: Pillow filters ``resize_image`` takes, by name.
RESAMPLING: dict[str, Image.Resampling] = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}


def resize_image(
    pixels: np.ndarray,
    size: tuple[int, int],
    resample: str = "bicubic",
    box: tuple[float, float, float, float] | None = None,
) -> np.ndarray:
    """``pixels`` (H, W, 3), the part inside ``box`` (left, top, right, bottom; fractional, default all),
    resized to ``size`` = (width, height) with a Pillow filter (a name in ``RESAMPLING``).

    uint8 in, uint8 out (Pillow's 8-bit RGB resampling, exactly as ``Image.resize``: what training
    crops and the benchmark builder have always used); float in, float32 out, each channel resampled in
    float (Pillow's "F" mode) and clipped to [0, 1]. Pillow's filters are antialiased when shrinking.
    """
    if resample not in RESAMPLING:
        raise ValueError(f"unknown filter {resample!r}; use one of {', '.join(RESAMPLING)}")
    if pixels.ndim != 3 or pixels.shape[-1] != 3:
        raise ValueError(f"expected an (H, W, 3) image, got shape {pixels.shape}")
    size = (int(size[0]), int(size[1]))
    if pixels.dtype == np.uint8:
        im = Image.fromarray(np.ascontiguousarray(pixels), "RGB")
        return np.asarray(im.resize(size, RESAMPLING[resample], box=box))
    channels = [
        np.asarray(
            Image.fromarray(np.ascontiguousarray(pixels[..., c], dtype=np.float32), "F").resize(
                size, RESAMPLING[resample], box=box
            )
        )
        for c in range(3)
    ]
    return np.clip(np.stack(channels, axis=-1), 0.0, 1.0)
