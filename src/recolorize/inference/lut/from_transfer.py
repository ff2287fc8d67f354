"""A transfer's look as a LUT: ``"fit"`` (:func:`recolorize.inference.lut.fit.fit_lut` on the rendered
photo, the default) or ``"pooled"`` (the pointwise generator on the lattice colours with its latent maps
averaged over the image)."""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING

import numpy as np

from recolorize.errors import UserError
from recolorize.inference.lut.fit import FIT_MAX_SAMPLES, fit_lut
from recolorize.inference.lut.table import LUT_SIZE, Lut3D, lattice

if TYPE_CHECKING:  # pragma: no cover
    from recolorize.inference.pipeline import PreparedPair, Recolorizer

__all__ = ["LUT_METHODS", "lut_from_rendering", "pooled_generator_lut", "prior_lut", "transfer_lut"]

#: How a transfer becomes a LUT (the package docstring); the first is the default. "prior": the model's
#: colour prior lattice itself (models with the lattice prior), exactly, without f's residual.
LUT_METHODS: tuple[str, ...] = ("fit", "pooled", "prior")


def prior_lut(prepared: PreparedPair, strength: float = 1.0, size: int = LUT_SIZE) -> Lut3D | None:
    """The pair's lattice prior (``recolorize.prior``) at ``strength`` resampled to a ``size``^3 LUT, or None
    for a model without one. Exact when (size - 1) is a multiple of the prior's (size - 1) (33 over 9: the
    finer lattice's trilinear pieces lie inside the coarse ones, where the coarse map is multilinear)."""
    from recolorize.networks.colour_prior import is_lattice
    from recolorize.prior import apply_lattice, lerp_lattice

    prior = prepared.conditioning.prior if prepared.conditioning is not None else None
    if prior is None or not is_lattice(prior):
        return None
    coarse = prior[0].permute(1, 2, 3, 0).cpu().numpy()
    coarse = lerp_lattice(coarse, strength)
    return Lut3D(apply_lattice(coarse, lattice(size)))


def pooled_generator_lut(
    recolorizer: Recolorizer, prepared: PreparedPair, strength: float = 1.0, size: int = LUT_SIZE
) -> Lut3D:
    """The pointwise generator evaluated on the lattice colours with its latent maps and colour hint
    averaged over the image: the global part of the look, no fit (the ``"pooled"`` method)."""
    import torch
    import torch.nn.functional as F

    from recolorize.networks.pointwise import Conditioning

    model = recolorizer.model
    if model.config.generator != "pointwise":
        raise UserError(
            "the pooled LUT needs a model with the pointwise generator "
            f"(this one's is {model.config.generator})"
        )
    if strength == 0.0:
        return Lut3D.identity(size)
    with torch.no_grad():
        maps = [recolorizer._interpolate(prepared.self_maps, m, strength) for m in prepared.predicted_maps]
        pooled = [F.adaptive_avg_pool2d(m, 1) for m in maps]
        conditioning = prepared.conditioning.at_strength(strength) if prepared.conditioning else None
        if conditioning is not None and conditioning.hint is not None:
            # a 2x2 grid of the mean hint: every guided-upsampling weight then sees the same cell
            hint = F.adaptive_avg_pool2d(conditioning.hint, 1).expand(-1, -1, 2, 2)
            conditioning = Conditioning(prior=conditioning.prior, hint=hint)
        colours = torch.from_numpy(lattice(size).reshape(size, size * size, 3)).permute(2, 0, 1)[None]
        colours = colours.to(recolorizer.device)
        out = model.generator(colours, pooled, conditioning).clamp(0.0, 1.0)
    return Lut3D(out[0].permute(1, 2, 0).cpu().numpy().reshape(size, size, size, 3))


def transfer_lut(
    recolorizer: Recolorizer,
    prepared: PreparedPair,
    strength: float = 1.0,
    size: int = LUT_SIZE,
    method: str = "fit",
    max_samples: int = FIT_MAX_SAMPLES,
) -> Lut3D:
    """The look of a prepared pair's transfer at ``strength`` as a LUT (0 gives the identity LUT).

    ``"fit"`` renders the source at no more than ``max_samples`` pixels and fits :func:`fit_lut` to it;
    ``"pooled"`` is :func:`pooled_generator_lut`.
    """
    from recolorize.imaging import LoadedImage, resize_for_network

    if method not in LUT_METHODS:
        raise ValueError(f"method must be one of {', '.join(LUT_METHODS)}, got {method!r}")
    if not 0.0 <= strength <= 1.0:
        raise UserError(f"strength must be between 0 and 1, got {strength}")
    if strength == 0.0:
        return Lut3D.identity(size)
    if method == "pooled":
        return pooled_generator_lut(recolorizer, prepared, strength, size)
    base = prior_lut(prepared, strength, size)
    if method == "prior":
        if base is None:
            raise UserError(
                "--method prior needs a model with the lattice colour prior (config pointwise-lut)"
            )
        return base
    source = prepared.source
    if source.height * source.width > max_samples:
        scale = math.sqrt(max_samples / (source.height * source.width))
        shape = (max(1, round(source.height * scale)), max(1, round(source.width * scale)))
        small = resize_for_network(source.tensor(), shape)[0].permute(1, 2, 0).numpy()
        source = LoadedImage(rgb=np.ascontiguousarray(small))
    rendered = recolorizer.render_array(dataclasses.replace(prepared, source=source), strength)
    return lut_from_rendering(source.rgb, rendered, base, size, max_samples)


def lut_from_rendering(
    source: np.ndarray,
    rendered: np.ndarray,
    base: Lut3D | None,
    size: int = LUT_SIZE,
    max_samples: int = FIT_MAX_SAMPLES,
) -> Lut3D:
    """The look of one rendering as a LUT: ``base`` (the model's prior LUT) exactly plus the change the
    model made on top of it fitted as a LUT, so colours the photo lacks keep the prior's look; without a
    base, the least-squares LUT of the whole transfer (:func:`fit_lut`)."""
    if base is None:
        return fit_lut(source, rendered, size=size, max_samples=max_samples)
    from recolorize.prior import apply_lattice

    if base.size != size:
        base = Lut3D(apply_lattice(base.table, lattice(size)))
    residual = rendered - np.clip(apply_lattice(base.table, source), 0.0, 1.0)  # rendered is clipped
    fitted = fit_lut(source, np.clip(source + residual, -1.0, 2.0), size=size, max_samples=max_samples)
    return Lut3D(base.table + (fitted.table - lattice(size)))
