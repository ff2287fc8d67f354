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
#: colour prior lattice itself, exactly, without f's residual.
LUT_METHODS: tuple[str, ...] = ("fit", "pooled", "prior")


def prior_lut(prepared: PreparedPair, strength: float = 1.0, size: int = LUT_SIZE) -> Lut3D:
    """The pair's lattice prior (``recolorize.prior``) at ``strength`` resampled to a ``size``^3 LUT. Exact
    when (size - 1) is a multiple of the prior's (size - 1) (33 over 9: the finer lattice's trilinear pieces
    lie inside the coarse ones, where the coarse map is multilinear)."""
    from recolorize.prior import apply_lattice, lerp_lattice

    return Lut3D(apply_lattice(lerp_lattice(prepared.lattice, strength), lattice(size)))


def pooled_generator_lut(
    recolorizer: Recolorizer, prepared: PreparedPair, strength: float = 1.0, size: int = LUT_SIZE
) -> Lut3D:
    """The pointwise generator evaluated on the lattice colours with its latent maps and colour hint each
    replaced by its mean over the image: the global part of the look, no fit (the ``"pooled"`` method).

    Every cell of a constant map holds the same value, so the guided upsampling's weights do not matter and
    each lattice colour sees the image's mean styles and hint."""
    if strength == 0.0:
        return Lut3D.identity(size)
    predicted = prepared.predicted

    def pooled(grid: np.ndarray) -> np.ndarray:
        return np.broadcast_to(grid.mean(axis=(2, 3), keepdims=True), grid.shape).astype(np.float32)

    constant = dataclasses.replace(
        predicted,
        maps=[pooled(grid) for grid in predicted.maps],
        self_maps=pooled(predicted.self_maps),
        hint=pooled(predicted.hint),
    )
    colours = lattice(size).reshape(size, size * size, 3)
    base = prior_lut(prepared, strength, size).table.reshape(colours.shape)
    out = recolorizer.model.generate(colours, base, prepared.source_low, constant, strength)
    return Lut3D(np.clip(out, 0.0, 1.0).reshape(size, size, size, 3))


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
    from recolorize.imaging import LoadedImage, resize_array

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
        return base
    source = prepared.source
    if source.height * source.width > max_samples:
        scale = math.sqrt(max_samples / (source.height * source.width))
        shape = (max(1, round(source.height * scale)), max(1, round(source.width * scale)))
        source = LoadedImage(pixels=resize_array(source.rgb, shape))
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
