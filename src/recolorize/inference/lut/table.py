"""The 3D LUT itself (:class:`Lut3D`: a lattice of output colours, optional 1D shaper curves) and its
application, with NumPy and Pillow only (no torch: issue 22).

Two ways to apply one, both trilinear (the blend of a colour's 8 lattice neighbours, inputs outside the
domain on the lattice's nearest edge):

* :func:`apply_lut`, exact: float32 in NumPy, in blocks of pixels spread over a few threads (NumPy's
  gathers and ufuncs release the GIL), for 16-bit and float inputs and wherever a float result is promised.
* :func:`apply_lut_8bit`, fast: 8-bit samples in and out through Pillow's C ``ImageFilter.Color3DLUT``,
  several times faster (a 12 MP photo in ~0.3 s on one core). Pillow keeps the table as 16-bit integers
  with 1/64 of a level of resolution and rounds once at the end, so its result is within 1 level of the
  exact float result rounded (``tests/test_lut_apply_paths.py`` measures it on every 8-bit colour); a
  LUT it cannot hold exactly (a domain other than 0-1, shaper curves, values beyond +-2, more than 65
  points a side) takes the exact path, rounded.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageFilter

from recolorize.prior.lattice import identity_lattice
from recolorize.threads import cores, in_threads

__all__ = ["LUT_SIZE", "Lut3D", "lattice", "apply_lut", "apply_lut_8bit", "as_unit"]

#: Lattice points per axis of the LUTs we make: 33 is the size editors (Resolve, Premiere) expect.
LUT_SIZE = 33


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

    def apply_8bit(self, rgb: np.ndarray) -> np.ndarray:
        """8-bit samples (uint8, or float holding 8-bit values) through the LUT; uint8. The fast path
        for 8-bit sRGB photos (Pillow's C filter, within 1 level of ``apply`` rounded)."""
        return apply_lut_8bit(self, rgb)


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

    Exact in float32 (the weighted sum of the 8 neighbours, as ``grid_sample`` computed it before), in
    blocks of ``_BLOCK_PIXELS``, so that beyond its float32 copy and the result a 100 MP photo needs only a
    few MB of temporaries, shared among ``_threads()`` threads. A NaN input takes the lattice's upper edge
    (as ``grid_sample`` did); values beyond float32 (a hostile ``.cube``) give infinities, no warning.
    """
    array = as_unit(rgb)
    if array.shape[-1:] != (3,):
        raise ValueError(f"expected colours (..., 3), got shape {array.shape}")
    return _exact(lut, array.reshape(-1, 3), threaded=True).reshape(array.shape)


def apply_lut_8bit(lut: Lut3D, rgb: np.ndarray) -> np.ndarray:
    """``lut`` at every colour of ``rgb`` (..., 3), 8-bit samples (uint8) in and out.

    ``rgb`` is uint8, or float in [0, 1] holding 8-bit values (a decoded 8-bit photo), rounded to 8 bits
    here a band at a time (no full-size copy). Through Pillow's C ``Color3DLUT`` where it holds the LUT
    (within 1 level of :func:`apply_lut` rounded), else :func:`apply_lut` rounded half to even.
    """
    array = np.asarray(rgb)
    if array.shape[-1:] != (3,):
        raise ValueError(f"expected colours (..., 3), got shape {array.shape}")
    flat = array.reshape(-1, 3)
    out = np.empty(flat.shape, dtype=np.uint8)
    lut_filter = _pillow_filter(lut)

    def band(start: int) -> None:
        samples = flat[start : start + _BAND_PIXELS]
        if samples.dtype != np.uint8:
            samples = _to_uint8(samples)
        if lut_filter is None:
            out[start : start + len(samples)] = _to_uint8(
                _exact(lut, samples / np.float32(255), threaded=False)
            )
            return
        image = Image.fromarray(samples.reshape(1, -1, 3), "RGB")
        out[start : start + len(samples)] = np.asarray(image.filter(lut_filter)).reshape(-1, 3)

    in_threads(band, range(0, len(flat), _BAND_PIXELS), _threads())  # each band writes its own rows
    return out.reshape(array.shape)


#: Pixels per block of the exact path: its temporaries (~130 bytes a pixel) stay in the CPU's cache.
_BLOCK_PIXELS = 1 << 15
#: Pixels per band of the 8-bit path (one Pillow image each): ~2 ms of work, a few MB.
_BAND_PIXELS = 1 << 18
#: Pillow's table holds int16 values of 1/64 of a level (``PRECISION_BITS`` 6): +-2.007 at most; beyond
#: that it clamps, which would change the interpolated colours, so such a LUT takes the exact path.
_PILLOW_TABLE_LIMIT = 2.0
#: Pillow's largest lattice (points a side).
_PILLOW_MAX_SIZE = 65


def _threads() -> int:
    """Threads for a full-size apply: ``OMP_NUM_THREADS`` when set (the tests' 1), else the CPUs this
    process may use, at most 4 (the gathers are memory-bound beyond that)."""
    try:
        wanted = int(os.environ.get("OMP_NUM_THREADS", ""))
    except ValueError:
        wanted = cores()
    return max(1, min(4, wanted))


def _exact(lut: Lut3D, colours: np.ndarray, threaded: bool) -> np.ndarray:
    """:func:`apply_lut` on colours (n, 3) in [0, 1]: float32 (n, 3), block by block."""
    pixels = np.ascontiguousarray(colours, dtype=np.float32)
    out = np.empty_like(pixels)
    size = lut.size
    cells = _cells(lut.table)
    low = lut.domain[0].astype(np.float32)
    scale = ((size - 1) / (lut.domain[1] - lut.domain[0])).astype(np.float32)

    def block(start: int) -> None:
        stop = start + _BLOCK_PIXELS
        colours = pixels[start:stop]
        if lut.curves is not None:  # the shaper first, a block at a time (no full-size copy)
            colours = _apply_curves(lut.curves, lut.curves_domain, colours)
        _apply_block(cells, size, low, scale, colours, out[start:stop])

    # each block writes its own slice, so the result does not depend on the thread count
    in_threads(block, range(0, len(pixels), _BLOCK_PIXELS), _threads() if threaded else 1)
    return out


def _cells(table: np.ndarray) -> np.ndarray:
    """The lattice as (24, S^3): for each cell (flat [r, g, b] index of its lower corner) the 8 corners'
    colours, corner-major ((dr, dg, db) in C order) then channel, so one gather per block brings a
    pixel's whole neighbourhood. The upper layers repeat the edge (a pixel on the upper edge has weight
    0 on them)."""
    size = table.shape[0]
    edged = np.pad(np.asarray(table, dtype=np.float32), ((0, 1), (0, 1), (0, 1), (0, 0)), mode="edge")
    corners = [
        edged[dr : dr + size, dg : dg + size, db : db + size]
        for dr in (0, 1)
        for dg in (0, 1)
        for db in (0, 1)
    ]
    return np.ascontiguousarray(np.stack(corners, axis=0).transpose(0, 4, 1, 2, 3).reshape(24, size**3))


def _apply_block(
    cells: np.ndarray, size: int, low: np.ndarray, scale: np.ndarray, pixels: np.ndarray, out: np.ndarray
) -> None:
    """Trilinear interpolation of one block of ``pixels`` (n, 3) into ``out`` (n, 3)."""
    with np.errstate(over="ignore", invalid="ignore"):
        position = (pixels - low) * scale
        np.fmin(position, size - 1, out=position)  # fmin first: NaN -> the upper edge, as grid_sample
        np.fmax(position, 0.0, out=position)
        base = position.astype(np.int32)
        np.minimum(base, size - 2, out=base)
        np.subtract(position, base, out=position, dtype=np.float32)
        high = position.T  # (3, n): the weights of the upper neighbours
        lower = 1.0 - high
        index = base[:, 0] * (size * size)
        index += base[:, 1] * size
        index += base[:, 2]
        weights = np.empty((8, 1, len(pixels)), dtype=np.float32)
        corner = 0
        for wr in (lower[0], high[0]):
            for wg in (lower[1], high[1]):
                rg = wr * wg
                np.multiply(rg, lower[2], out=weights[corner, 0])
                np.multiply(rg, high[2], out=weights[corner + 1, 0])
                corner += 2
        values = np.take(cells, index, axis=1).reshape(8, 3, len(pixels))
        values *= weights
        out[:] = values.sum(axis=0).T


def _pillow_filter(lut: Lut3D) -> ImageFilter.Color3DLUT | None:
    """The LUT as Pillow's ``Color3DLUT`` when Pillow applies it as we do: domain 0-1, no curves, at most
    65 points a side and values within +-2 (Pillow's table range); else None."""
    table = lut.table
    if (
        lut.curves is not None
        or not np.array_equal(lut.domain, _UNIT_DOMAIN)
        or lut.size > _PILLOW_MAX_SIZE
        or not np.all(np.abs(table) <= _PILLOW_TABLE_LIMIT)  # (NaN fails it too)
    ):
        return None
    # Pillow's table runs red fastest, then green, then blue: [b, g, r, channel] in C order
    ordered = np.ascontiguousarray(table.transpose(2, 1, 0, 3))
    return ImageFilter.Color3DLUT(lut.size, ordered, _copy_table=False)


def _to_uint8(x: np.ndarray) -> np.ndarray:
    """Float [0, 1] -> uint8 as ``imaging.to_uint8`` (clip, x 255, round half to even), NaN -> 0, in one
    float32 temporary: ~7x faster than ``to_uint8`` with a NaN guard, which cost a 12 MP photo 0.25 s."""
    scaled = np.fmax(x, 0.0, dtype=np.float32)  # (fmax first: NaN -> 0; clipped before scaling: no overflow)
    np.fmin(scaled, 1.0, out=scaled)
    scaled *= np.float32(255.0)
    return np.rint(scaled, out=scaled).astype(np.uint8)


_UNIT_DOMAIN = np.array([[0.0] * 3, [1.0] * 3])


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
