"""Geometric alteration of a reference: same content, different framing, so the pair is never aligned.

One affine sample per call: a crop covering 50-100 % of the image area at a random position (the shift),
a rotation of up to 15 degrees, an optional mirror, and a resize to the requested output size. The crop
keeps the output's aspect ratio (no stretching). With ``border="crop"`` the rotated crop is shrunk until
it fits inside the photo (no black corners); with ``border="reflect"`` it may leave the photo and the
outside is filled by reflection.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["GeometryRanges", "GeometryParams", "sample_geometry", "apply_geometry", "alter_geometry"]


@dataclass(frozen=True)
class GeometryRanges:
    """Ranges of the geometric alteration.

    area: fraction of the photo's area covered by the crop (before any shrinking to fit the rotation).
    rotation_degrees: largest absolute rotation.
    flip_probability: chance of a horizontal mirror.
    min_displacement: smallest mean displacement of the sampling grid from the identity, in units of half
        the image side; draws closer to the identity are redrawn so a reference is never aligned.
    border: "crop" (shrink the crop to avoid corners) or "reflect" (fill outside by reflection).
    """

    area: tuple[float, float] = (0.5, 1.0)
    rotation_degrees: float = 15.0
    flip_probability: float = 0.5
    min_displacement: float = 0.1
    border: Literal["crop", "reflect"] = "crop"


@dataclass(frozen=True)
class GeometryParams:
    """One sampled alteration, in coordinates normalised to [-1, 1] over the input (x right, y down).

    centre: crop centre; half_size: crop half-extent along its own axes; angle in radians; flip: mirror.
    """

    centre: tuple[float, float]
    half_size: tuple[float, float]
    angle: float
    flip: bool

    def grid(self, out_h: int, out_w: int, aspect: float) -> torch.Tensor:
        """The (1, out_h, out_w, 2) sampling grid for ``grid_sample``; ``aspect`` = input width / height."""
        u = (torch.arange(out_w, dtype=torch.float64) + 0.5) / out_w * 2 - 1
        v = (torch.arange(out_h, dtype=torch.float64) + 0.5) / out_h * 2 - 1
        vv, uu = torch.meshgrid(v, u, indexing="ij")
        if self.flip:
            uu = -uu
        # rotate in isotropic units (x scaled by the aspect), then back to normalised coordinates
        ox, oy = uu * self.half_size[0] * aspect, vv * self.half_size[1]
        c, s = math.cos(self.angle), math.sin(self.angle)
        gx = self.centre[0] + (c * ox - s * oy) / aspect
        gy = self.centre[1] + (s * ox + c * oy)
        return torch.stack([gx, gy], dim=-1)[None].float()


def sample_geometry(
    rng: np.random.Generator,
    in_size: tuple[int, int],
    out_size: tuple[int, int],
    ranges: GeometryRanges | None = None,
) -> GeometryParams:
    """Draw an alteration for an input of (height, width) ``in_size`` seen at (height, width) ``out_size``."""
    r = ranges if ranges is not None else GeometryRanges()
    in_h, in_w = in_size
    out_h, out_w = out_size
    aspect = in_w / in_h  # isotropic units: y spans [-1, 1], x spans [-aspect, aspect]
    out_aspect = out_w / out_h
    best: GeometryParams | None = None
    for _ in range(20):
        area = rng.uniform(*r.area)
        angle = math.radians(rng.uniform(-r.rotation_degrees, r.rotation_degrees))
        flip = bool(rng.random() < r.flip_probability)
        # crop of the output's aspect covering ``area`` of the image: (2 hw)(2 hh) = area * (2 aspect)(2)
        half_h = math.sqrt(area * aspect / out_aspect)
        half_w = half_h * out_aspect
        scale = min(1.0, aspect / half_w, 1.0 / half_h)  # never larger than the photo
        if r.border == "crop":
            c, s = abs(math.cos(angle)), abs(math.sin(angle))
            scale = min(scale, aspect / (half_w * c + half_h * s), 1.0 / (half_w * s + half_h * c))
            extent_x = (half_w * c + half_h * s) * scale
            extent_y = (half_w * s + half_h * c) * scale
        else:
            extent_x, extent_y = half_w * scale, half_h * scale
        half_w, half_h = half_w * scale, half_h * scale
        cx = rng.uniform(-(aspect - extent_x), aspect - extent_x) if extent_x < aspect else 0.0
        cy = rng.uniform(-(1 - extent_y), 1 - extent_y) if extent_y < 1 else 0.0
        params = GeometryParams((cx / aspect, cy), (half_w / aspect, half_h), angle, flip)
        best = params
        if _displacement(params, out_size, aspect) >= r.min_displacement:
            return params
    assert best is not None
    return GeometryParams(best.centre, best.half_size, best.angle, True)  # a mirror is never aligned


def _displacement(params: GeometryParams, out_size: tuple[int, int], aspect: float) -> float:
    """Mean distance between where output pixels sample and where the identity would sample them."""
    grid = params.grid(8, 8, aspect)[0].double()
    u = (torch.arange(8, dtype=torch.float64) + 0.5) / 8 * 2 - 1
    vv, uu = torch.meshgrid(u, u, indexing="ij")
    return float(torch.sqrt((grid[..., 0] - uu) ** 2 + (grid[..., 1] - vv) ** 2).mean())


def apply_geometry(image: torch.Tensor, params: GeometryParams, out_size: tuple[int, int]) -> torch.Tensor:
    """Resample a (3, H, W) image through ``params`` to (3, *out_size), antialiased when it shrinks."""
    _, in_h, in_w = image.shape
    out_h, out_w = out_size
    source = image.float()[None]
    shrink = min(2 * params.half_size[0] * in_w / out_w, 2 * params.half_size[1] * in_h / out_h) / 2
    if shrink > 1.25:  # downsample first so bilinear sampling does not alias (grid is resolution-free)
        size = (max(1, round(in_h / shrink)), max(1, round(in_w / shrink)))
        source = F.interpolate(source, size=size, mode="bilinear", antialias=True, align_corners=False)
    grid = params.grid(out_h, out_w, in_w / in_h)
    out = F.grid_sample(source, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    return out[0].clamp(0.0, 1.0)


def alter_geometry(
    image: torch.Tensor,
    rng: np.random.Generator,
    ranges: GeometryRanges | None = None,
    out_size: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Randomly crop, rotate, mirror and shift a (3, H, W) image; output (3, *out_size), default (H, W)."""
    size = tuple(out_size) if out_size is not None else tuple(image.shape[1:])
    params = sample_geometry(rng, tuple(image.shape[1:]), size, ranges)
    return apply_geometry(image, params, size)
