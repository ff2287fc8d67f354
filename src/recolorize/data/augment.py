"""Colour augmentation that imitates a photographer's grade: one global look plus different local changes.

Images are torch float32 ``(3, H, W)`` sRGB in [0, 1] (the library convention); region maps are ``(H, W)``
integer labels (numpy or torch). Every random number comes from the numpy ``Generator`` passed in, so a
seed gives the same result on any machine.

A grade is applied in the order a raw developer would: linear light (exposure, white balance, channel
mixing, a smooth highlight shoulder instead of hard clipping) -> hue rotation and saturation in Oklab
(perceptual, so a rotation keeps lightness and moves every hue by a similar visual amount) -> sRGB
encoding -> per-channel tone curve (gamma, contrast, a random monotone curve, split toning). Local
grades (exposure, white balance, hue, saturation) are drawn per region; their matrices are blended per
pixel with feathered (Gaussian-blurred) region weights and composed with the global grade, so e.g. the
sky shifts differently from the ground without seams, at the cost of a single grade.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.interpolate import PchipInterpolator

from recolorize.colour import REC709_LUMA, linear_to_oklab, linear_to_srgb, oklab_to_linear, srgb_to_linear
from recolorize.data.folders import superpixel_regions
from recolorize.data.regions import merge_regions, region_weights

__all__ = [
    "AugmentationRanges",
    "Grade",
    "ColourAugmenter",
    "sample_global_grade",
    "sample_local_grade",
    "apply_grade",
    "render",
    "merge_regions",
    "region_weights",
]

_LOG = {"kind": "log"}  # a multiplicative range: sampled log-uniformly, scaled in log space


@dataclass(frozen=True)
class AugmentationRanges:
    """Every range of the colour augmentation; defaults tuned by eye (docs/images/augmentation_grid.png).

    Ranges are (low, high), sampled uniformly; fields marked multiplicative (contrast, gamma, saturation)
    are sampled log-uniformly. Identity always lies inside each range.

    Global grade:
      exposure_ev: exposure change in stops (linear light).
      temperature: log gain of red over blue (+ = warmer); tint: log gain of magenta over green.
      channel_mix: largest off-diagonal weight of the 3x3 linear-light channel mixer (rows sum to 1 so
        greys stay grey).
      contrast: slope of the tone curve at mid-grey (>1 an S-curve, <1 an inverse S; ends stay fixed).
      gamma: exponent applied to the encoded values (>1 darker mid-tones).
      tone_curve: largest offset of a random monotone curve at 1/4, 1/2 and 3/4.
      black_lift / white_roll: raise black / lower white by this much (faded, matte looks).
      split_toning: largest per-channel offset added to shadows and to highlights (teal/orange looks).
      hue_degrees: hue rotation (Oklab hue angle). saturation: chroma scale.
    Local grade (one per region, blended with feathered masks):
      local_exposure_ev, local_temperature, local_tint, local_hue_degrees, local_saturation: as above.
      local_identity_probability: chance that a region keeps its colours (only the global grade applies).
      max_regions: regions beyond this are merged (smallest into the neighbour it touches most).
      min_region_fraction: regions smaller than this fraction of the image are merged away too.
      feather_fraction: Gaussian sigma of the region edges, as a fraction of the image diagonal.
      superpixel_segments: SLIC segments asked for when a photo has no mask.
    """

    exposure_ev: tuple[float, float] = (-0.6, 0.6)
    temperature: tuple[float, float] = (-0.25, 0.25)
    tint: tuple[float, float] = (-0.12, 0.12)
    channel_mix: tuple[float, float] = (0.0, 0.12)
    contrast: tuple[float, float] = field(default=(0.75, 1.4), metadata=_LOG)
    gamma: tuple[float, float] = field(default=(0.8, 1.25), metadata=_LOG)
    tone_curve: tuple[float, float] = (0.0, 0.06)
    black_lift: tuple[float, float] = (0.0, 0.05)
    white_roll: tuple[float, float] = (0.0, 0.05)
    split_toning: tuple[float, float] = (0.0, 0.05)
    hue_degrees: tuple[float, float] = (-10.0, 10.0)
    saturation: tuple[float, float] = field(default=(0.6, 1.5), metadata=_LOG)
    local_exposure_ev: tuple[float, float] = (-0.4, 0.4)
    local_temperature: tuple[float, float] = (-0.25, 0.25)
    local_tint: tuple[float, float] = (-0.08, 0.08)
    local_hue_degrees: tuple[float, float] = (-15.0, 15.0)
    local_saturation: tuple[float, float] = field(default=(0.65, 1.35), metadata=_LOG)
    local_identity_probability: float = 0.2
    max_regions: int = 6
    min_region_fraction: float = 0.02
    feather_fraction: float = 0.015
    superpixel_segments: int = 6

    def scaled(self, strength: float) -> AugmentationRanges:
        """A copy with every colour range shrunk toward the identity (0 = no change, 1 = unchanged).

        Additive ranges scale linearly, multiplicative ones in log space; region settings are kept.
        """
        changes = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, tuple):
                continue
            if f.metadata.get("kind") == "log":
                changes[f.name] = (value[0] ** strength, value[1] ** strength)
            else:
                changes[f.name] = (value[0] * strength, value[1] * strength)
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class Grade:
    """One sampled colour transform (see the module docstring for the order of operations).

    linear: (3, 3) matrix on linear RGB (white balance x exposure x channel mix).
    curve: (3, N) per-channel tone curve on encoded values, sampled at N evenly spaced inputs.
    chroma: (3, 3) matrix on Oklab (L, a, b): hue rotation and chroma scale.
    """

    linear: np.ndarray
    curve: np.ndarray | None
    chroma: np.ndarray


_LUMA_LINEAR = np.array(REC709_LUMA)
_CURVE_POINTS = 256


def _uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    return float(rng.uniform(bounds[0], bounds[1]))


def _log_uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    return float(math.exp(rng.uniform(math.log(bounds[0]), math.log(bounds[1]))))


def _white_balance(temperature: float, tint: float, exposure_ev: float) -> np.ndarray:
    """Diagonal gains; normalised so grey keeps its luminance before the exposure change."""
    gains = np.exp(np.array([temperature / 2 + tint / 3, -2 * tint / 3, -temperature / 2 + tint / 3]))
    gains /= float(_LUMA_LINEAR @ gains)
    return np.diag(gains * 2.0**exposure_ev)


def _chroma_matrix(hue_degrees: float, saturation: float) -> np.ndarray:
    angle = math.radians(hue_degrees)
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[1, 0, 0], [0, c * saturation, -s * saturation], [0, s * saturation, c * saturation]])


def _tone_curve(rng: np.random.Generator, r: AugmentationRanges) -> np.ndarray:
    """(3, N) monotone per-channel curves: gamma, contrast, a random PCHIP curve, split toning."""
    x = np.linspace(0.0, 1.0, _CURVE_POINTS)
    y = x ** _log_uniform(rng, r.gamma)
    contrast = _log_uniform(rng, r.contrast)
    if contrast >= 1.0:  # blend toward smoothstep (slope 1.5 at mid-grey), endpoints fixed
        y = y + min(1.0, 2.0 * (contrast - 1.0)) * (y * y * (3 - 2 * y) - y)
    else:  # blend toward the inverse smoothstep (slope 2/3 at mid-grey)
        inverse = 0.5 - np.sin(np.arcsin(np.clip(1 - 2 * y, -1, 1)) / 3)
        y = y + min(1.0, 3.0 * (1.0 - contrast)) * (inverse - y)
    amplitude = _uniform(rng, r.tone_curve)
    knots_x = np.array([0.0, 0.25, 0.5, 0.75, 1.0])
    knots_y = knots_x + np.concatenate([[0.0], rng.uniform(-amplitude, amplitude, 3), [0.0]])
    knots_y[0] = _uniform(rng, r.black_lift)
    knots_y[-1] = 1.0 - _uniform(rng, r.white_roll)
    knots_y = np.maximum.accumulate(np.clip(knots_y, knots_y[0], knots_y[-1]))
    y = PchipInterpolator(knots_x, knots_y)(y)
    split = _uniform(rng, r.split_toning)
    shadows = rng.uniform(-split, split, 3)
    highlights = rng.uniform(-split, split, 3)
    shadows -= shadows.mean()  # tints, not brightness changes
    highlights -= highlights.mean()
    weight_shadow = 6.75 * y * (1 - y) ** 2  # peaks (=1) at 1/3, zero at black and white
    weight_highlight = 6.75 * y * y * (1 - y)  # peaks at 2/3
    curves = y[None] + shadows[:, None] * weight_shadow[None] + highlights[:, None] * weight_highlight[None]
    return np.clip(curves, 0.0, 1.0)


def sample_global_grade(rng: np.random.Generator, ranges: AugmentationRanges) -> Grade:
    """Draw the global look: white balance, exposure, channel mix, tone curves, hue and saturation."""
    balance = _white_balance(
        _uniform(rng, ranges.temperature), _uniform(rng, ranges.tint), _uniform(rng, ranges.exposure_ev)
    )
    amount = _uniform(rng, ranges.channel_mix)
    mix = np.eye(3) + rng.uniform(-amount, amount, (3, 3)) * (1 - np.eye(3))
    mix /= mix.sum(axis=1, keepdims=True)
    curve = _tone_curve(rng, ranges)
    chroma = _chroma_matrix(_uniform(rng, ranges.hue_degrees), _log_uniform(rng, ranges.saturation))
    return Grade(linear=mix @ balance, curve=curve, chroma=chroma)


def sample_local_grade(rng: np.random.Generator, ranges: AugmentationRanges) -> Grade:
    """Draw one region's change: exposure, white balance, hue and saturation (or none at all)."""
    values = (
        _uniform(rng, ranges.local_temperature),
        _uniform(rng, ranges.local_tint),
        _uniform(rng, ranges.local_exposure_ev),
        _uniform(rng, ranges.local_hue_degrees),
        _log_uniform(rng, ranges.local_saturation),
    )
    if rng.random() < ranges.local_identity_probability:
        return Grade(linear=np.eye(3), curve=None, chroma=np.eye(3))
    temperature, tint, exposure, hue, saturation = values
    return Grade(
        linear=_white_balance(temperature, tint, exposure), curve=None, chroma=_chroma_matrix(hue, saturation)
    )


def _shoulder(x: torch.Tensor, peak: torch.Tensor, knee: float = 0.8) -> torch.Tensor:
    """Map [0, peak] onto [0, 1]: identity below ``knee``, a smooth roll-off above (no hard clipping).

    ``peak`` (a scalar or (H, W) tensor) is the largest value the preceding matrix can produce from an
    input in [0, 1]. Above the knee, t in [0, 1] maps to p t / (1 + (p - 1) t) with p chosen so the slope
    is continuous at the knee; where the peak is at most 1 this is a plain clamp.
    """
    if float(peak.max()) <= 1.0:
        return x.clamp(0.0, 1.0)
    peak = peak.clamp_min(1.0)
    slope = (peak - knee) / (1.0 - knee)
    t = ((x - knee) / (peak - knee)).clamp(0.0, 1.0)
    rolled = knee + (1.0 - knee) * slope * t / (1.0 + (slope - 1.0) * t)
    return torch.where(x <= knee, x.clamp_min(0.0), rolled)


def _apply_curve(image: torch.Tensor, curve: np.ndarray) -> torch.Tensor:
    lut = torch.as_tensor(curve, dtype=image.dtype)  # (3, N)
    n = lut.shape[1]
    position = image.clamp(0.0, 1.0).reshape(3, -1) * (n - 1)
    index = position.floor().long().clamp(0, n - 2)
    fraction = position - index
    low = torch.gather(lut, 1, index)
    high = torch.gather(lut, 1, index + 1)
    return (low + fraction * (high - low)).reshape(image.shape)


def _per_pixel(matrices: np.ndarray, weights: torch.Tensor) -> torch.Tensor:
    """(3, 3, H, W) matrices blended per pixel from (K, 3, 3) matrices and (K, H, W) weights."""
    return torch.einsum("kij,khw->ijhw", torch.as_tensor(matrices, dtype=weights.dtype), weights)


def _transform(matrix: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """Apply a (3, 3) or per-pixel (3, 3, H, W) matrix to a (3, H, W) image."""
    if matrix.dim() == 2:
        return torch.einsum("ij,jhw->ihw", matrix, image)
    return (matrix * image[None]).sum(1)


def render(
    image: torch.Tensor,
    global_grade: Grade | None = None,
    local_grades: list[Grade] | None = None,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Apply local grades (blended by ``weights`` (K, H, W)) and then a global grade in one pass.

    The local and global matrices are composed per pixel (blending the transforms rather than K rendered
    images), so the cost is that of a single grade whatever the number of regions.
    """
    image = image.float().clamp(0.0, 1.0)
    if local_grades:
        if weights is None or weights.shape[0] != len(local_grades):
            raise ValueError("local grades need one weight map each")
        linear = _per_pixel(np.stack([g.linear for g in local_grades]), weights)
        chroma = _per_pixel(np.stack([g.chroma for g in local_grades]), weights)
        if global_grade is not None:
            linear = torch.einsum("ij,jkhw->ikhw", torch.as_tensor(global_grade.linear).float(), linear)
            chroma = torch.einsum("ij,jkhw->ikhw", torch.as_tensor(global_grade.chroma).float(), chroma)
        peak = linear.clamp_min(0.0).sum(1).amax(0)
    elif global_grade is not None:
        linear = torch.as_tensor(global_grade.linear).float()
        chroma = torch.as_tensor(global_grade.chroma).float()
        peak = linear.clamp_min(0.0).sum(1).amax()
    else:
        return image
    shaped = _shoulder(_transform(linear, srgb_to_linear(image)), peak)
    coloured = oklab_to_linear(_transform(chroma, linear_to_oklab(shaped))).clamp(0.0, 1.0)
    encoded = linear_to_srgb(coloured)
    if global_grade is not None and global_grade.curve is not None:
        encoded = _apply_curve(encoded, global_grade.curve)
    return encoded.clamp(0.0, 1.0)


def apply_grade(image: torch.Tensor, grade: Grade) -> torch.Tensor:
    """Apply one :class:`Grade` to a (3, H, W) image in [0, 1]; the result stays in [0, 1]."""
    return render(image, global_grade=grade)


class ColourAugmenter:
    """Random re-colouring: a different local grade per region (feathered), then one global grade.

    ``augmenter(image, regions, rng)``: image (3, H, W) float in [0, 1]; regions (H, W) integer labels, or
    None for superpixels computed from the image. Deterministic for a given rng state (the local grades
    are drawn before the global one).
    """

    def __init__(self, ranges: AugmentationRanges | None = None) -> None:
        self.ranges = ranges if ranges is not None else AugmentationRanges()

    def __call__(
        self, image: torch.Tensor, regions: np.ndarray | torch.Tensor | None, rng: np.random.Generator
    ) -> torch.Tensor:
        weights = self.weights(image, regions)
        local = [sample_local_grade(rng, self.ranges) for _ in range(weights.shape[0])]
        return render(image, sample_global_grade(rng, self.ranges), local, weights)

    def apply_global(self, image: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        """Only the global look."""
        return render(image, global_grade=sample_global_grade(rng, self.ranges))

    def apply_local(
        self, image: torch.Tensor, regions: np.ndarray | torch.Tensor | None, rng: np.random.Generator
    ) -> torch.Tensor:
        """Only the per-region changes, blended with feathered masks."""
        weights = self.weights(image, regions)
        local = [sample_local_grade(rng, self.ranges) for _ in range(weights.shape[0])]
        return render(image, local_grades=local, weights=weights)

    def weights(self, image: torch.Tensor, regions: np.ndarray | torch.Tensor | None) -> torch.Tensor:
        """(K, H, W) feathered weights of the merged regions (superpixels when ``regions`` is None)."""
        r = self.ranges
        if regions is None:
            regions = superpixel_regions(image, r.superpixel_segments)
        elif isinstance(regions, torch.Tensor):
            regions = regions.cpu().numpy()
        if tuple(regions.shape) != tuple(image.shape[1:]):
            raise ValueError(f"regions {tuple(regions.shape)} do not match the image {tuple(image.shape)}")
        labels = merge_regions(np.asarray(regions), r.max_regions, r.min_region_fraction)
        height, width = labels.shape
        return region_weights(labels, r.feather_fraction * math.hypot(height, width))
