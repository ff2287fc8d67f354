"""``LoadedImage``: a decoded photo, the one value the decoder returns and the encoder takes as ``like``."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["LoadedImage"]


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
