"""Matrix/TRC ICC profiles as unbounded float maths, so wide-gamut colours survive a re-colouring.

Pillow's littleCMS binding converts RGB at 8 bits and clips to the destination's gamut, which is right
for showing a photo and wrong for editing one: an Adobe RGB green converted to sRGB and back comes
out as a duller green. The usual camera and editor RGB spaces (sRGB, Adobe RGB, Display P3, ProPhoto
RGB, most monitor profiles) are *matrix/TRC* profiles: three tone curves (``rTRC gTRC bTRC``) take the
encoded samples to linear light, and the colorant matrix (``rXYZ gXYZ bXYZ``, already adapted to the
D50 connection space) takes linear RGB to XYZ. Both are easy to evaluate in float64 and to invert
exactly, so this module does them itself:

* ``MatrixProfile.from_icc`` reads such a profile (curve types ``curv`` with 0, 1 or n entries and
  ``para`` types 0-4); anything else, including every profile with ``A2B``/``B2A`` lookup tables
  (which littleCMS would prefer), gives None and callers keep littleCMS.
* ``convert`` maps samples from one profile to another (relative colorimetric: both matrices share
  the D50 PCS, as in littleCMS), clipping only if asked.
* ``carry_edit`` is the re-colouring rule: ``out = source + F(after) - F(before)`` with ``F`` the
  unclipped sRGB -> profile conversion. Where the sRGB rendering left a colour unchanged
  (``after == before``) the source's own samples come back exactly, out-of-sRGB values included; where
  it moved a colour, the move is expressed in the source's space; clipping happens once, at the end,
  in the source's space.

Curves are extended beyond [0, 1] so nothing clips in between: above 1 by their own formula (a table by
its last segment's slope), below 0 by point symmetry about ``f(0)`` (for the usual ``f(0) = 0`` that is
``f(-x) = -f(x)``, the scRGB convention).
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = ["MatrixProfile", "ToneCurve", "carry_edit", "convert", "srgb_profile"]

#: Pixels per block of the float64 maths: a 12-MP photo never holds more than a few 24-MB temporaries.
BLOCK_PIXELS = 1 << 20

_Fn = Callable[[np.ndarray], np.ndarray]


def _s15(buf: bytes, off: int) -> float:
    return struct.unpack_from(">i", buf, off)[0] / 65536.0


@dataclass(frozen=True, eq=False)
class ToneCurve:
    """One channel's tone curve: ``to_linear`` (the ICC TRC) and its exact inverse ``to_encoded``.

    ``forward`` and ``inverse`` are defined on [0, 1] (and beyond, by their formula); the methods add
    the point-symmetric extension below 0.
    """

    forward: _Fn
    inverse: _Fn

    @functools.cached_property
    def _zero(self) -> float:
        return float(self.forward(np.zeros(1))[0])

    def to_linear(self, x: np.ndarray) -> np.ndarray:
        if not (x < 0).any():
            return self.forward(x)
        y = self.forward(np.abs(x))
        return np.where(x < 0, 2 * self._zero - y, y)

    def to_encoded(self, y: np.ndarray) -> np.ndarray:
        z = self._zero
        if not (y < z).any():
            return self.inverse(y)
        x = self.inverse(z + np.abs(y - z))
        return np.where(y < z, -x, x)

    @classmethod
    def gamma(cls, g: float) -> ToneCurve:
        return cls(lambda x: np.power(x, g), lambda y: np.power(y, 1.0 / g))

    @classmethod
    def table(cls, values: np.ndarray) -> ToneCurve:
        """A sampled curve, linear between samples and beyond 1 (its inverse is exact: axes swapped)."""
        n = len(values)
        grid = np.linspace(0.0, 1.0, n)
        # Strictly increasing so the swapped interpolation is well defined (flat runs get 1e-12 steps).
        table = np.maximum.accumulate(values.astype(np.float64)) + np.arange(n) * 1e-12
        slope = (table[-1] - table[-2]) * (n - 1)

        def forward(x: np.ndarray) -> np.ndarray:
            return np.where(x > 1.0, table[-1] + (x - 1.0) * slope, np.interp(x, grid, table))

        def inverse(y: np.ndarray) -> np.ndarray:
            return np.where(y > table[-1], 1.0 + (y - table[-1]) / slope, np.interp(y, table, grid))

        return cls(forward, inverse)

    @classmethod
    def parametric(cls, g: float, a: float, b: float, c: float, d: float, e: float, f: float) -> ToneCurve:
        """ICC ``para`` in its general form: ``(a x + b)^g + e`` for ``x >= d``, ``c x + f`` below."""
        top = float(np.power(max(a * d + b, 0.0), g) + e)  # the curve's value at d, from above

        def forward(x: np.ndarray) -> np.ndarray:
            return np.where(x >= d, np.power(np.maximum(a * x + b, 0.0), g) + e, c * x + f)

        def inverse(y: np.ndarray) -> np.ndarray:
            upper = (np.power(np.maximum(y - e, 0.0), 1.0 / g) - b) / a
            lower = (y - f) / c if c != 0 else np.full_like(y, d)
            return np.where(y >= top, upper, np.minimum(lower, d))

        return cls(forward, inverse)

    @classmethod
    def from_icc(cls, icc: bytes, off: int) -> ToneCurve:
        """Parse a ``curv`` or ``para`` tag at ``off``; ``ValueError`` for anything else."""
        sig = icc[off : off + 4]
        if sig == b"curv":
            (n,) = struct.unpack_from(">I", icc, off + 8)
            if n == 0:
                return cls(lambda x: x, lambda y: y)
            if n == 1:
                return cls.gamma(struct.unpack_from(">H", icc, off + 12)[0] / 256.0)
            if off + 12 + 2 * n > len(icc):
                raise ValueError("curve table runs past the end of the profile")
            return cls.table(np.frombuffer(icc, dtype=">u2", count=n, offset=off + 12) / 65535.0)
        if sig == b"para":
            (kind,) = struct.unpack_from(">H", icc, off + 8)
            if kind not in (0, 1, 2, 3, 4):
                raise ValueError(f"unknown parametric curve type {kind}")
            count = (1, 3, 4, 5, 7)[kind]
            p = [_s15(icc, off + 12 + 4 * i) for i in range(count)]
            if kind == 0:
                return cls.gamma(p[0])
            if kind == 1:  # (a x + b)^g above -b/a, 0 below
                return cls.parametric(p[0], p[1], p[2], 0.0, -p[2] / p[1], 0.0, 0.0)
            if kind == 2:  # (a x + b)^g + c above -b/a, c below
                return cls.parametric(p[0], p[1], p[2], 0.0, -p[2] / p[1], p[3], p[3])
            if kind == 3:
                return cls.parametric(p[0], p[1], p[2], p[3], p[4], 0.0, 0.0)
            return cls.parametric(p[0], p[1], p[2], p[3], p[4], p[5], p[6])
        raise ValueError(f"unsupported curve type {sig!r}")

    def check(self) -> None:
        """``ValueError`` unless the curve is finite, rising over [0, 1] and inverted by ``to_encoded``
        (a hostile or broken profile must fall back to littleCMS, not produce NaNs)."""
        x = np.linspace(0.0, 1.0, 1025)
        with np.errstate(all="ignore"):
            y = self.to_linear(x)
            back = self.to_linear(self.to_encoded(y))
        if not (np.isfinite(y).all() and np.isfinite(back).all()):
            raise ValueError("curve is not finite on [0, 1]")
        if (np.diff(y) < -1e-9).any() or not y[-1] > y[0] + 1e-3:
            raise ValueError("curve does not rise over [0, 1]")
        if np.abs(back - y).max() > 1e-6:
            raise ValueError("curve cannot be inverted")


@dataclass(frozen=True, eq=False)
class MatrixProfile:
    """A matrix/TRC RGB profile: ``matrix`` takes linear RGB to XYZ (D50 PCS), ``curves`` encode it."""

    matrix: np.ndarray
    curves: tuple[ToneCurve, ToneCurve, ToneCurve]

    @classmethod
    def from_icc(cls, icc: bytes | None) -> MatrixProfile | None:
        """The profile's colorants and curves, or None for table-based, non-RGB or unusable profiles."""
        if not icc or len(icc) < 132 or icc[16:20] != b"RGB ":
            return None
        try:
            (count,) = struct.unpack_from(">I", icc, 128)
            if count > 1000:
                return None
            tags = {}
            for k in range(count):
                sig, off, _size = struct.unpack_from(">4sII", icc, 132 + 12 * k)
                tags[sig] = off
            if any(t in tags for t in (b"A2B0", b"A2B1", b"A2B2", b"B2A0", b"B2A1", b"B2A2")):
                return None  # littleCMS prefers the tables; so do we, by leaving them to it
            cols = []
            for t in (b"rXYZ", b"gXYZ", b"bXYZ"):
                off = tags[t]
                if icc[off : off + 4] != b"XYZ ":
                    return None
                cols.append([_s15(icc, off + 8 + 4 * i) for i in range(3)])
            matrix = np.array(cols, dtype=np.float64).T
            curves = tuple(ToneCurve.from_icc(icc, tags[t]) for t in (b"rTRC", b"gTRC", b"bTRC"))
            for curve in curves:
                curve.check()
            if not np.isfinite(matrix).all() or abs(np.linalg.det(matrix)) < 1e-4:
                return None
            if np.linalg.cond(matrix) > 1e4:
                return None
        except (KeyError, ValueError, IndexError, struct.error, ZeroDivisionError, np.linalg.LinAlgError):
            return None
        return cls(matrix, curves)  # type: ignore[arg-type]

    def to_linear(self, rgb: np.ndarray) -> np.ndarray:
        return np.stack([self.curves[i].to_linear(rgb[..., i]) for i in range(3)], axis=-1)

    def to_encoded(self, lin: np.ndarray) -> np.ndarray:
        return np.stack([self.curves[i].to_encoded(lin[..., i]) for i in range(3)], axis=-1)

    def matrix_to(self, other: MatrixProfile) -> np.ndarray:
        """Linear RGB of this profile -> linear RGB of ``other``, for row vectors (``x @ m``)."""
        return np.linalg.solve(other.matrix, self.matrix).T


@functools.lru_cache(maxsize=1)
def srgb_profile() -> MatrixProfile:
    """littleCMS's own sRGB profile, so this maths and the 8-bit littleCMS path agree on "sRGB"."""
    from PIL import ImageCms

    profile = MatrixProfile.from_icc(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    if profile is None:  # pragma: no cover - littleCMS's sRGB is a plain matrix/TRC profile
        raise RuntimeError("cannot read littleCMS's built-in sRGB profile")
    return profile


def _blocks(height: int, width: int) -> range:
    return range(0, height, max(1, BLOCK_PIXELS // max(1, width)))


def convert(
    rgb: np.ndarray,
    src: MatrixProfile,
    dst: MatrixProfile,
    clip: bool = False,
    precision: type[np.floating] = np.float64,
) -> np.ndarray:
    """(H, W, 3) samples encoded in ``src`` -> encoded in ``dst``, float32.

    Unbounded unless ``clip``: colours outside ``dst``'s gamut keep values below 0 or above 1. With
    ``clip`` the linear values are clipped to [0, 1] before encoding (what a display conversion does).
    ``precision`` is the dtype of the maths: float32 is ~10x faster (vectorised powers) and ample for
    8-bit output; float64 keeps 16-bit output exact near black, where a pure gamma curve is steep.
    """
    m = src.matrix_to(dst).astype(precision)
    out = np.empty(rgb.shape, dtype=np.float32)
    rows = _blocks(rgb.shape[0], rgb.shape[1])
    for y in rows:
        lin = src.to_linear(rgb[y : y + rows.step].astype(precision)) @ m
        if clip:
            np.clip(lin, 0.0, 1.0, out=lin)
        out[y : y + rows.step] = dst.to_encoded(lin)
    return out


def carry_edit(
    source: np.ndarray,
    before: np.ndarray,
    after: np.ndarray,
    profile: MatrixProfile,
    precision: type[np.floating] = np.float64,
) -> np.ndarray:
    """The source re-coloured as ``before -> after`` (both sRGB), in the source's own space, unclipped.

    ``source`` holds the source's samples in ``profile`` (uint8, uint16 or float in [0, 1]), ``before``
    the sRGB version the model saw and ``after`` its sRGB rendering, all (H, W, 3). Returns float32
    ``source + F(after) - F(before)``, ``F`` the unclipped sRGB -> ``profile`` conversion: a pixel
    with ``after == before`` gets exactly its source value back, whatever its gamut. ``precision`` as
    in ``convert``.
    """
    if not source.shape == before.shape == after.shape:
        raise ValueError(f"shapes differ: {source.shape}, {before.shape}, {after.shape}")
    srgb = srgb_profile()
    m = srgb.matrix_to(profile).astype(precision)
    scale = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}.get(source.dtype, 1.0)
    out = np.empty(source.shape, dtype=np.float32)
    rows = _blocks(source.shape[0], source.shape[1])
    for y in rows:
        part = slice(y, y + rows.step)
        a = profile.to_encoded(srgb.to_linear(after[part].astype(precision)) @ m)
        b = profile.to_encoded(srgb.to_linear(before[part].astype(precision)) @ m)
        a -= b
        a += source[part].astype(precision) / precision(scale)
        out[part] = a
    return out
