"""Regions of a photo for local colour changes: merging small regions, feathered (soft) region weights.

Used by the colour augmentation (``augment.py``) and the large region edits (``region_edits.py``).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["merge_regions", "region_weights"]


def merge_regions(labels: np.ndarray, max_regions: int, min_fraction: float = 0.0) -> np.ndarray:
    """Relabel to at most ``max_regions`` regions (0..K-1) by merging the smallest into its main neighbour.

    A region also goes when it covers less than ``min_fraction`` of the image (tiny regions with their own
    colour look like stains). The neighbour is the one sharing the longest boundary; a region touching
    nothing joins the largest one.
    """
    values, flat = np.unique(labels, return_inverse=True)
    flat = flat.reshape(labels.shape)
    k = len(values)
    area = np.bincount(flat.ravel(), minlength=k).astype(np.int64)
    pairs = [(flat[:, :-1], flat[:, 1:]), (flat[:-1, :], flat[1:, :])]
    touch = np.zeros((k, k), dtype=np.int64)
    for a, b in pairs:
        differ = a != b
        codes = a[differ].astype(np.int64) * k + b[differ]
        touch += np.bincount(codes, minlength=k * k).reshape(k, k)
    touch += touch.T
    parent = np.arange(k)
    active = np.ones(k, dtype=bool)
    minimum = min_fraction * labels.size
    while active.sum() > 1:
        candidates = np.where(active, area, np.iinfo(np.int64).max)
        small = int(candidates.argmin())
        if active.sum() <= max_regions and area[small] >= minimum:
            break
        neighbours = np.where(active, touch[small], -1)
        neighbours[small] = -1
        target = int(neighbours.argmax())
        if neighbours[target] <= 0:
            sizes = np.where(active, area, -1)
            sizes[small] = -1
            target = int(sizes.argmax())
        area[target] += area[small]
        touch[target] += touch[small]
        touch[:, target] += touch[:, small]
        touch[target, target] = 0
        touch[small] = 0
        touch[:, small] = 0
        active[small] = False
        parent[parent == small] = target
    _, compact = np.unique(parent, return_inverse=True)
    return compact[flat].astype(np.int64)


def _gaussian_kernel(sigma: float) -> torch.Tensor:
    radius = max(1, int(math.ceil(3 * sigma)))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    return kernel / kernel.sum()


def region_weights(labels: np.ndarray, sigma: float) -> torch.Tensor:
    """(K, H, W) soft region weights summing to 1 per pixel: one-hot masks blurred with ``sigma`` px.

    The blur runs at reduced resolution (sigma of about 1.5 cells) and is upsampled bilinearly, so
    its cost does not grow with the sigma.
    """
    height, width = labels.shape
    k = int(labels.max()) + 1
    one_hot = (torch.from_numpy(labels)[None] == torch.arange(k)[:, None, None]).float()[None]
    if sigma <= 0 or k == 1:
        return one_hot[0]
    factor = max(1, int(sigma / 1.5))
    small = F.interpolate(one_hot, size=(max(1, height // factor), max(1, width // factor)), mode="area")
    kernel = _gaussian_kernel(sigma / factor)
    radius = len(kernel) // 2
    channels = small.reshape(k, 1, *small.shape[2:])
    for dim in (2, 3):  # separable blur, reflected borders
        pad = (radius, radius, 0, 0) if dim == 3 else (0, 0, radius, radius)
        mode = "reflect" if channels.shape[dim] > radius else "replicate"
        weight = kernel.reshape(1, 1, -1, 1) if dim == 2 else kernel.reshape(1, 1, 1, -1)
        channels = F.conv2d(F.pad(channels, pad, mode=mode), weight)
    blurred = F.interpolate(
        channels.reshape(1, k, *channels.shape[2:]),
        size=(height, width),
        mode="bilinear",
        align_corners=False,
    )[0]
    return blurred / blurred.sum(0, keepdim=True).clamp_min(1e-6)
