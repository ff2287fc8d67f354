"""The local part of the prior: what the reference shows that no global colour map explains, read off the same
matches, as a smooth field of colour offsets over the source.

A global lattice L maps one colour one way everywhere. Where the reference shows the same thing in a colour L
does not give it (the sky changed, the sea not, both blue), the matched cells disagree with L. Their
residuals r_i = R_i - L(S_i) (reference cell colour minus the lattice's colour of the source cell), weighted
by the match weight w_i times a Cauchy weight of |r_i| (a wrong match gives a large residual), are spread
over the source's cells by a joint bilateral average (near in place and near in source colour) that shrinks
to zero where few matches support it:

    F_j = sum_i w_i K_s(x_j - x_i) K_c(S_j - S_i) r_i / (sum_i w_i K_s K_c + k)

and sliced to pixels from the 3 x 3 nearest cells, weighted by a tent and by colour (a pixel takes the
offset of the cells of its own colour, so the field stops at edges instead of leaking a halo across them).

Settings (``LocalSettings``) were chosen on make-bench's first 40 pairs and the local benchmark's pairs 20-60
(docs/results.md): a wider K_s (5 cells rather than 3) and a tighter Cauchy scale (0.1 rather than 0.25) help
both; denser matches (every cell's best match, not only mutual ones) made it worse.

NumPy only, like the rest of the prior.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recolorize.prior.lattice import apply_lattice
from recolorize.prior.matching import Matches

__all__ = ["LocalSettings", "LocalField", "local_field", "apply_local_field"]


@dataclass(frozen=True)
class LocalSettings:
    """How the field is read off the matches (cell units: one cell = 1/48 of the photo's side)."""

    spatial_sigma: float = 5.0  # K_s, in cells
    colour_sigma: float = 0.1  # K_c, RGB units, between cell colours
    shrink: float = 1.0  # k: the total weight at which the field is half its matches' mean
    residual_scale: float = 0.1  # Cauchy scale of |r_i|
    slice_sigma: float = 0.1  # pixel-to-cell colour kernel when slicing


@dataclass(frozen=True)
class LocalField:
    """Offsets (rows, cols, 3) on the source's cell grid, and the source's cell colours (rows, cols, 3)."""

    offsets: np.ndarray
    colours: np.ndarray


def local_field(
    matches: Matches, lattice: np.ndarray, grid: tuple[int, int], settings: LocalSettings = LocalSettings()
) -> LocalField:
    """F on the source's ``grid`` of cells from the pair's matches and the fitted lattice."""
    rows, cols = grid
    source = matches.source.astype(np.float32)
    residual = matches.reference - apply_lattice(lattice, source).astype(np.float64)
    size = np.sqrt((residual * residual).sum(axis=1))
    weight = matches.weight / (1.0 + (size / settings.residual_scale) ** 2)
    used = weight > 0
    if not used.any():
        return LocalField(np.zeros((rows, cols, 3), np.float32), source.reshape(rows, cols, 3))
    # K_s K_c = exp(-|z_j - z_i|^2 / 2) with z = (position / sigma_s, colour / sigma_c): one product of the
    # cells' (N, 5) and the used matches' (M, 5) coordinates, in float32 (no (N, M, 5) differences)
    yy, xx = np.mgrid[0:rows, 0:cols]
    position = np.stack([yy.ravel(), xx.ravel()], axis=1) / settings.spatial_sigma
    z = np.concatenate([position, source / settings.colour_sigma], axis=1).astype(np.float32)
    norms = (z * z).sum(axis=1)
    exponent = z @ z[used].T
    exponent -= 0.5 * norms[:, None]
    exponent -= 0.5 * norms[None, used]
    kernel = np.exp(np.minimum(exponent, 0.0, out=exponent), out=exponent)
    kernel *= weight[used].astype(np.float32)
    total = kernel.sum(axis=1, keepdims=True, dtype=np.float64)
    offsets = kernel @ residual[used].astype(np.float32) / (total + settings.shrink)
    return LocalField(offsets.reshape(rows, cols, 3).astype(np.float32), source.reshape(rows, cols, 3))


def apply_local_field(
    field: LocalField, image: np.ndarray, settings: LocalSettings = LocalSettings()
) -> np.ndarray:
    """The field's offset at every pixel of ``image`` (H, W, 3) (the source at any size), (H, W, 3) float32:
    the 3 x 3 nearest cells, each weighted by a tent 1.5 cells wide and by how close its colour is to the
    pixel's. The pixel rows of one cell row share their cells, so each tap is a broadcast, not a gather."""
    height, width, _ = image.shape
    rows, cols, _ = field.offsets.shape
    out = np.empty((height, width, 3), np.float32)
    cy = (np.arange(height) + 0.5) * rows / height - 0.5
    cx = (np.arange(width) + 0.5) * cols / width - 0.5
    y0 = np.rint(cy).astype(np.int64)  # the nearest cell
    x0 = np.rint(cx).astype(np.int64)
    inv = np.float32(-1.0 / (2 * settings.slice_sigma**2))
    # per column offset: the cells' colours and offsets gathered along x as planes (rows, 3, W), the tent
    colour_planes = np.ascontiguousarray(field.colours.transpose(0, 2, 1), dtype=np.float32)
    offset_planes = np.ascontiguousarray(field.offsets.transpose(0, 2, 1), dtype=np.float32)
    taps = []
    for dx in (-1, 0, 1):
        xs = x0 + dx
        tent = np.maximum(0.0, 1.5 - np.abs(cx - xs)).astype(np.float32)
        xs = np.clip(xs, 0, cols - 1)
        taps.append((colour_planes[:, :, xs], offset_planes[:, :, xs], tent))
    starts = np.searchsorted(y0, np.arange(-1, rows + 1))
    for cell_row in range(-1, rows + 1):
        top, bottom = starts[cell_row + 1], (starts[cell_row + 2] if cell_row + 2 < len(starts) else height)
        if top >= bottom:
            continue
        # the pixels' channels as planes (3, h, W): every operation below runs along whole rows
        pixels = np.ascontiguousarray(np.moveaxis(np.asarray(image[top:bottom], dtype=np.float32), -1, 0))
        total = np.zeros((bottom - top, width), np.float32)
        acc = np.zeros((3, bottom - top, width), np.float32)
        weight = np.empty_like(total)
        part = np.empty_like(total)
        for dy in (-1, 0, 1):
            row = cell_row + dy
            ty = np.maximum(0.0, 1.5 - np.abs(cy[top:bottom] - row)).astype(np.float32)
            row = min(max(row, 0), rows - 1)
            for colours, offsets, tx in taps:
                weight.fill(0.0)
                for channel in range(3):
                    np.subtract(pixels[channel], colours[row, channel], out=part)
                    part *= part
                    weight += part
                weight *= inv
                np.exp(weight, out=weight)
                weight *= ty[:, None]
                weight *= tx[None, :]
                total += weight
                for channel in range(3):
                    acc[channel] += np.multiply(weight, offsets[row, channel], out=part)
        np.maximum(total, 1e-6, out=total)
        acc /= total
        out[top:bottom] = np.moveaxis(acc, 0, -1)
    return out
