"""A 3D colour lattice (a LUT) as NumPy maths: trilinear weights, the identity lattice, and applying a lattice
to an image. No torch: the prior is fitted and applied by inference as by training's cache.

A lattice is a float32 array ``(S, S, S, 3)`` indexed ``[r, g, b]`` (red first, as a .cube lists it
fastest-last), whose point ``[i, j, k]`` holds the output colour of the input ``(i, j, k) / (S - 1)``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["identity_lattice", "trilinear_weights", "apply_lattice", "lerp_lattice"]

#: Pixels per block when applying a lattice: bounds the temporaries (~100 bytes a pixel) of a large photo.
_BLOCK_PIXELS = 1 << 20


def identity_lattice(size: int) -> np.ndarray:
    """The lattice that maps every colour to itself, (size, size, size, 3) float32."""
    axis = np.linspace(0.0, 1.0, size, dtype=np.float32)
    r, g, b = np.meshgrid(axis, axis, axis, indexing="ij")
    return np.stack([r, g, b], axis=-1)


def trilinear_weights(colours: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Flat lattice indices (N, 8) and weights (N, 8) of each colour's trilinear blend; colours (N, 3) are
    clipped to [0, 1]. Flat index = (r * S + g) * S + b, as ``lattice.reshape(-1, 3)`` orders the points."""
    scaled = np.clip(colours, 0.0, 1.0) * (size - 1)
    low = np.minimum(np.floor(scaled), size - 2).astype(np.int64)
    frac = scaled - low
    indices = np.empty((len(colours), 8), dtype=np.int64)
    weights = np.empty((len(colours), 8), dtype=scaled.dtype)
    corner = 0
    for dr in (0, 1):
        wr = frac[:, 0] if dr else 1.0 - frac[:, 0]
        for dg in (0, 1):
            wg = frac[:, 1] if dg else 1.0 - frac[:, 1]
            for db in (0, 1):
                wb = frac[:, 2] if db else 1.0 - frac[:, 2]
                indices[:, corner] = ((low[:, 0] + dr) * size + low[:, 1] + dg) * size + low[:, 2] + db
                weights[:, corner] = wr * wg * wb
                corner += 1
    return indices, weights


def apply_lattice(lattice: np.ndarray, image: np.ndarray) -> np.ndarray:
    """The lattice's colours at every pixel of ``image`` (..., 3) in [0, 1] by trilinear interpolation,
    float32, not clipped; in blocks, so memory stays bounded at any size."""
    size = lattice.shape[0]
    flat = lattice.reshape(-1, 3).astype(np.float32, copy=False)
    pixels = np.asarray(image, dtype=np.float32).reshape(-1, 3)
    out = np.empty_like(pixels)
    for start in range(0, len(pixels), _BLOCK_PIXELS):
        block = pixels[start : start + _BLOCK_PIXELS]
        indices, weights = trilinear_weights(block, size)
        acc = flat[indices[:, 0]] * weights[:, :1]
        for corner in range(1, 8):
            acc += flat[indices[:, corner]] * weights[:, corner : corner + 1]
        out[start : start + len(block)] = acc
    return out.reshape(np.shape(image))


def lerp_lattice(lattice: np.ndarray, strength: float) -> np.ndarray:
    """The lattice ``strength`` of the way from the identity (0) to ``lattice`` (1). Trilinear application is
    linear in the lattice, so this is also the blend of the two outputs."""
    identity = identity_lattice(lattice.shape[0])
    return (identity + np.float32(strength) * (lattice.astype(np.float32) - identity)).astype(np.float32)
