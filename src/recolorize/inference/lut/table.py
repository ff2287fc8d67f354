"""The 3D LUT itself (:class:`Lut3D`: a lattice of output colours, optional 1D shaper curves) and its
application: trilinear interpolation with ``torch.nn.functional.grid_sample`` (vectorised, multi-threaded,
float32: a 12 MP photo in a fraction of a second)."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from recolorize.prior.lattice import identity_lattice

__all__ = ["LUT_SIZE", "Lut3D", "lattice", "apply_lut", "as_unit"]

#: Lattice points per axis of the LUTs we make: 33 is the size editors (Resolve, Premiere) expect.
LUT_SIZE = 33
#: Pixels applied per block: bounds the temporary tensors (~100 bytes a pixel) of a 100 MP photo.
_APPLY_BLOCK_PIXELS = 1 << 22


@dataclass(frozen=True, eq=False)
class Lut3D:
    """A 3D colour LUT, optionally preceded by per-channel 1D curves (a Resolve "shaper").

    table: (N, N, N, 3) float32 output colours indexed ``[r, g, b]`` (red index first).
    domain: (2, 3) input values mapped onto the first and last lattice points (default 0 and 1).
    curves: optional (M, 3) 1D LUT applied to each channel first, over ``curves_domain`` (2, 3).
    """

    table: np.ndarray
    domain: np.ndarray = dataclasses.field(default_factory=lambda: np.array([[0.0] * 3, [1.0] * 3]))
    curves: np.ndarray | None = None
    curves_domain: np.ndarray | None = None
    title: str = "recolorize"

    def __post_init__(self) -> None:
        table = np.asarray(self.table, dtype=np.float32)
        if table.ndim != 4 or table.shape[:3] != (table.shape[0],) * 3 or table.shape[3] != 3:
            raise ValueError(f"a 3D LUT table must be (N, N, N, 3), got {table.shape}")
        if table.shape[0] < 2:
            raise ValueError("a 3D LUT needs at least 2 points per axis")
        object.__setattr__(self, "table", table)
        object.__setattr__(self, "domain", _domain(self.domain, "domain"))
        if self.curves is not None:
            curves = np.asarray(self.curves, dtype=np.float32)
            if curves.ndim != 2 or curves.shape[1] != 3 or curves.shape[0] < 2:
                raise ValueError(f"1D curves must be (M >= 2, 3), got {curves.shape}")
            object.__setattr__(self, "curves", curves)
            domain = self.curves_domain if self.curves_domain is not None else [[0.0] * 3, [1.0] * 3]
            object.__setattr__(self, "curves_domain", _domain(domain, "curves domain"))

    @property
    def size(self) -> int:
        """Lattice points per axis."""
        return int(self.table.shape[0])

    @classmethod
    def identity(cls, size: int = LUT_SIZE) -> Lut3D:
        """The LUT that returns every colour unchanged (strength 0)."""
        return cls(lattice(size))

    def apply(self, rgb: np.ndarray) -> np.ndarray:
        """``rgb`` (..., 3) float in [0, 1] (or 8-/16-bit samples) through the LUT (trilinear); float32.

        Inputs outside the domain take the nearest edge of the lattice, as editors do.
        """
        return apply_lut(self, rgb)

    def save(self, path: str | os.PathLike[str], overwrite: bool = True) -> Path:
        """Write this LUT as a ``.cube`` file (see :func:`recolorize.inference.lut.cube.write_cube`)."""
        from recolorize.inference.lut.cube import write_cube  # (it imports this module)

        return write_cube(self, path, overwrite=overwrite)


#: The narrowest span of a LUT's domain on an axis: narrower, float32 inputs (a step of 1.2e-7 near 1) no
#: longer tell the lattice's points apart, and the scale onto it (2 / span) leaves float32 below ~6e-39.
MIN_DOMAIN_SPAN = 1e-6


def _domain(value: Any, what: str) -> np.ndarray:
    """A (2, 3) domain (min row, max row) that float32 maths can use: finite bounds, and on each axis a
    span from ``MIN_DOMAIN_SPAN`` up to float32's largest number (a span of +-1e39, or of 1e-300, would
    turn into infinity in the float32 scale and give every pixel the lattice's edge)."""
    domain = np.asarray(value, dtype=np.float64)
    if domain.shape != (2, 3) or not np.all(np.isfinite(domain)) or np.any(domain[1] <= domain[0]):
        raise ValueError(f"the LUT's {what} must be (2, 3) finite rows with min < max, got {domain.tolist()}")
    span = domain[1] - domain[0]
    if np.any(np.abs(domain) > np.finfo(np.float32).max) or np.any(span > np.finfo(np.float32).max):
        raise ValueError(f"the LUT's {what} {domain.tolist()} does not fit in float32 (beyond 3.4e38)")
    if np.any(span < MIN_DOMAIN_SPAN):
        raise ValueError(
            f"the LUT's {what} {domain.tolist()} is degenerate: min and max must differ by at least "
            f"{MIN_DOMAIN_SPAN:g}"
        )
    return domain


def lattice(size: int) -> np.ndarray:
    """The identity lattice (size, size, size, 3), indexed [r, g, b]."""
    return identity_lattice(size)


def apply_lut(lut: Lut3D, rgb: np.ndarray) -> np.ndarray:
    """Trilinear interpolation of ``lut`` at every colour of ``rgb`` (..., 3); float32, same shape.

    grid_sample runs on torch's intra-op threads, in blocks of ``_APPLY_BLOCK_PIXELS`` so that a 100 MP
    photo needs no more than a few hundred MB of temporaries.
    """
    import torch
    import torch.nn.functional as F

    array = as_unit(rgb)
    if array.shape[-1:] != (3,):
        raise ValueError(f"expected colours (..., 3), got shape {array.shape}")
    pixels = np.ascontiguousarray(array.reshape(-1, 3), dtype=np.float32)
    out = np.empty_like(pixels)
    if lut.curves is not None:
        pixels = _apply_curves(lut.curves, lut.curves_domain, pixels)
    # grid_sample's 5D input is (N, C, D, H, W) and its grid holds (x, y, z) = (W, H, D) coordinates: with
    # the table as (3, r, g, b), x is blue, y green, z red.
    volume = torch.from_numpy(np.ascontiguousarray(lut.table.transpose(3, 0, 1, 2)))[None]
    low = torch.from_numpy(lut.domain[0, ::-1].astype(np.float32).copy())
    scale = torch.from_numpy((2.0 / (lut.domain[1] - lut.domain[0]))[::-1].astype(np.float32).copy())
    for start in range(0, len(pixels), _APPLY_BLOCK_PIXELS):
        block = torch.from_numpy(pixels[start : start + _APPLY_BLOCK_PIXELS])
        grid = (block.flip(-1) - low).mul_(scale).sub_(1.0)
        sampled = F.grid_sample(
            volume, grid.view(1, 1, 1, -1, 3), mode="bilinear", padding_mode="border", align_corners=True
        )
        out[start : start + len(block)] = sampled.view(3, -1).T.numpy()
    return out.reshape(array.shape)


def as_unit(rgb: Any) -> np.ndarray:
    """Colours as floats in [0, 1]: 8- and 16-bit samples are scaled, floats are taken as they are."""
    array = np.asarray(rgb)
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0
    if array.dtype == np.uint16:
        return array.astype(np.float32) / 65535.0
    return array


def _apply_curves(curves: np.ndarray, domain: np.ndarray | None, pixels: np.ndarray) -> np.ndarray:
    """Per-channel 1D LUTs (linear interpolation, clamped at the ends)."""
    low, high = domain if domain is not None else np.array([[0.0] * 3, [1.0] * 3])
    out = np.empty_like(pixels)
    for c in range(3):
        xs = np.linspace(low[c], high[c], curves.shape[0])
        out[:, c] = np.interp(pixels[:, c], xs, curves[:, c])
    return out
