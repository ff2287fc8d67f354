"""Large local re-colourings: what a photographer's grade never does but a reference often asks for.

The ordinary augmentation (``augment.py``) moves colours by a grade: hues shift a little, saturation scales.
A reference of "the same kind of scene" often has a *different object colour*: a blue cup where the source
has a red one, green grass where it has brown. Without training triples that show such changes the model
never learns them (the README demo's red cup stayed red). Here 1-3 regions of a photo are edited in Oklab:

- hue rotation by 60-180 degrees (either way), chroma scaled 0.7-1.5;
- recolouring: a new hue at a new chroma (grey to vivid), keeping the region's lightness texture;
- desaturation toward grey;
- half the time also a lightness shift of up to +-0.12;

either on a whole region (dataset masks, merged) or colour-selectively (the pixels near one hue, within a
region half the time), feathered by 0.7-2.7 px so edges look like a real object's. A share of sources is
made greyscale (the paper's Figure 6 colourisation case).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from recolorize.colour import REC709_LUMA, linear_to_oklab, linear_to_srgb, oklab_to_linear, srgb_to_linear
from recolorize.data.regions import merge_regions, region_weights

__all__ = ["edit_regions", "to_greyscale"]


def to_greyscale(image: torch.Tensor) -> torch.Tensor:
    """Rec. 709 luma of an sRGB image (3, H, W), repeated over the three channels."""
    red, green, blue = REC709_LUMA
    luma = red * image[0] + green * image[1] + blue * image[2]
    return luma.expand(3, -1, -1).clone()


def _edit(lab: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """One random edit of an Oklab image (3, H, W) (the whole image; the caller blends it in by a mask)."""
    lightness, a, b = lab[0], lab[1], lab[2]
    chroma = torch.sqrt(a * a + b * b)
    hue = torch.atan2(b, a)
    kind = rng.choice(["rotate", "recolour", "desaturate"], p=[0.5, 0.35, 0.15])
    if kind == "rotate":
        angle = math.radians(rng.uniform(60.0, 180.0)) * (1 if rng.random() < 0.5 else -1)
        hue = hue + angle
        chroma = chroma * rng.uniform(0.7, 1.5)
    elif kind == "recolour":
        hue = torch.full_like(hue, rng.uniform(-math.pi, math.pi))
        target = rng.uniform(0.04, 0.2)
        # keep a little of the region's chroma texture around the new level
        chroma = target * (0.8 + 0.4 * chroma / chroma.mean().clamp_min(1e-4)).clamp(0.5, 1.5)
    else:
        chroma = chroma * rng.uniform(0.0, 0.3)
    if rng.random() < 0.5:
        lightness = lightness + rng.uniform(-0.12, 0.12)
    return torch.stack([lightness, chroma * torch.cos(hue), chroma * torch.sin(hue)])


def _hue_selective_mask(lab: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """(H, W) mask in {0, 1}: pixels within 25-45 degrees of hue of a randomly chosen colourful pixel."""
    a, b = lab[1], lab[2]
    chroma = torch.sqrt(a * a + b * b)
    colourful = torch.nonzero(chroma.flatten() > 0.03).flatten()
    if colourful.numel() == 0:
        return torch.zeros_like(chroma)
    pick = int(colourful[rng.integers(colourful.numel())])
    centre = torch.atan2(b.flatten()[pick], a.flatten()[pick])
    difference = torch.remainder(torch.atan2(b, a) - centre + math.pi, 2 * math.pi) - math.pi
    width = math.radians(rng.uniform(25.0, 45.0))
    return ((difference.abs() < width) & (chroma > 0.02)).float()


def edit_regions(image: torch.Tensor, regions: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
    """Edit 1-3 regions of ``image`` (3, H, W) sRGB in [0, 1]; ``regions``: (H, W) labels."""
    labels = merge_regions(np.asarray(regions), 6)
    height, width = labels.shape
    lab = linear_to_oklab(srgb_to_linear(image.float().clamp(0.0, 1.0)))
    present = np.unique(labels)
    count = int(min(len(present), rng.integers(1, 4)))
    chosen = rng.choice(present, size=count, replace=False)
    out = lab.clone()
    for label in chosen:
        mask = torch.from_numpy((labels == label).astype(np.float32))
        if rng.random() < 0.3:  # colour-selective: pixels near one hue, within the region half the time
            selective = _hue_selective_mask(lab, rng)
            mask = selective * mask if rng.random() < 0.5 else selective
        sigma = rng.uniform(0.7, 2.7)
        feathered = region_weights(mask.numpy().astype(np.int64), sigma)[-1] if mask.any() else mask
        edited = _edit(lab, rng)
        out = out + feathered[None] * (edited - out)
    return linear_to_srgb(oklab_to_linear(out).clamp(0.0, 1.0)).clamp(0.0, 1.0)
