"""``LoadedImage``: a decoded photo, the one value the decoder returns and the encoder takes as ``like``."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from recolorize.imaging.convert import unit_float

__all__ = ["LoadedImage"]


@dataclass(frozen=True, eq=False)
class LoadedImage:
    """A decoded photo: upright sRGB pixels plus what must survive a round trip.

    ``pixels`` are the photo's sRGB samples, upright, (H, W, 3): uint8 as decoded for an 8-bit sRGB photo
    (no conversion was needed), else float32 in [0, 1]. ``rgb`` is always them as float32 in [0, 1]: for
    uint8 pixels it is made on first use (``x / 255``) and kept. Why both: a 12-MP photo's float copy is
    144 MB and ~0.2 s to make, and re-colouring an 8-bit photo at full size needs only its samples
    (``inference.carry``), so the transfer never makes it.

    ``alpha`` is the source's alpha channel, upright, in its original dtype (uint8 / uint16, or float32 for
    float arrays) so it can be written back bit-exactly. ``icc_profile`` and ``exif`` are the source's bytes
    (EXIF orientation already reset to 1). ``bit_depth`` is 8 or 16 per sample; ``greyscale`` says the
    source had no colour. ``samples`` are the source's own decoded RGB samples (uint8 / uint16, upright, in
    its ICC profile's space) when that profile is not sRGB, else None: ``rgb`` is clipped to sRGB, so the
    saver needs them to write back what a re-colouring did not change, out-of-sRGB colours included.
    """

    pixels: np.ndarray
    alpha: np.ndarray | None = None
    icc_profile: bytes | None = None
    exif: bytes | None = None
    greyscale: bool = False
    bit_depth: int = 8
    path: Path | None = None
    format: str | None = None
    samples: np.ndarray | None = None

    def __post_init__(self) -> None:
        pixels = self.pixels
        if pixels.ndim != 3 or pixels.shape[2] != 3 or pixels.dtype not in (np.uint8, np.float32):
            raise ValueError(f"pixels must be (H, W, 3) uint8 or float32, got {pixels.dtype} {pixels.shape}")

    @property
    def rgb(self) -> np.ndarray:
        """The pixels as float32 (H, W, 3) in [0, 1] (uint8 pixels converted once, then kept)."""
        if self.pixels.dtype == np.float32:
            return self.pixels
        converted = self.__dict__.get("_rgb")
        if converted is None:
            converted = unit_float(self.pixels)
            object.__setattr__(self, "_rgb", converted)  # a cache, not a field: frozen for the caller
        return converted

    @property
    def srgb8(self) -> np.ndarray | None:
        """The 8-bit sRGB samples the photo was decoded to (``rgb`` is exactly them / 255), or None."""
        return self.pixels if self.pixels.dtype == np.uint8 else None

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    def tensor(self) -> Any:
        """The pixels as a float32 torch tensor (1, 3, H, W), the library's image convention."""
        import torch

        return torch.from_numpy(np.ascontiguousarray(self.rgb.transpose(2, 0, 1)))[None]

    def metadata_only(self) -> LoadedImage:
        """This image with its pixels released: ``pixels`` (and ``rgb``) become a read-only all-zero float
        view of the same shape (no memory); profile, EXIF, alpha, bit depth, format, path and ``samples``
        are kept.

        Why: writing 8-bit sRGB samples rendered from a photo (``takes_8bit_srgb``) needs only its
        metadata, and letting the pixels go before the encoder copies the samples keeps a 12-MP transfer's
        peak lower. Not for saving float renderings (the savers compare with ``rgb``).
        """
        zeros = np.broadcast_to(np.zeros((), dtype=np.float32), self.pixels.shape)
        return dataclasses.replace(self, pixels=zeros)
