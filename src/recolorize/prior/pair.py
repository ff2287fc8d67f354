"""One pair's prior: match the cells, fit the cubic and the cross-validated lattice, and between photos that
share little content give way to MKL's map (``fit_prior``, the one entry inference and the cache call)."""

from __future__ import annotations

import dataclasses

import numpy as np

from recolorize.prior.colour_map import LAMBDAS, LutFit, fit_lattice, mkl_map
from recolorize.prior.lattice import identity_lattice
from recolorize.prior.matching import Matches, match_cells

__all__ = ["LATTICE_SIZE", "SHARED_SCENE", "NOTHING_SHARED", "GREY_SPREAD", "fit_prior"]

#: Lattice points per axis of the prior (9^3: as close to ground truth as 13^3 on make-bench, 4x cheaper).
LATTICE_SIZE = 9
#: Mean match weight (``Matches.shared``) from which the photos count as one scene, and below which they
#: share nothing: in between the prior keeps to the smoothest candidate (about the cubic) and gives way to
#: the MKL map of the two photos' colours in proportion. Why: between different scenes, matches between
#: different things are consistent enough to fool cross-validation, and a map read off them can be steep
#: where the source has a smooth gradient (a sky): JPEG noise became blocks on DPST pair 2, even with the
#: cubic. MKL's affine map has one moderate gain everywhere. Measured at 384 px: re-framed pairs (make-bench,
#: both kinds) 0.16-0.51, DPST's related scenes 0.03-0.14 (median 0.08).
SHARED_SCENE = 0.15
NOTHING_SHARED = 0.05
#: A source whose mean channel spread is below this is greyscale: MKL's map of its singular covariance turns
#: noise into colour, so a greyscale source always keeps the correspondence's map (DPST pair 8).
GREY_SPREAD = 0.02


def fit_prior(
    source: np.ndarray,
    reference: np.ndarray,
    source_descriptors: np.ndarray,
    reference_descriptors: np.ndarray,
    size: int = LATTICE_SIZE,
) -> tuple[LutFit, Matches]:
    """The prior lattice of a pair from its ``PRIOR_SIZE`` copies (H, W, 3) in [0, 1] and their descriptors
    (``descriptors``); also returns the matches (``Matches.shared`` says how much content they share)."""
    matches = match_cells(source, reference, source_descriptors, reference_descriptors)
    shared = matches.shared >= SHARED_SCENE
    lambdas = LAMBDAS if shared else LAMBDAS[-1:]
    fit = fit_lattice(matches.source, matches.reference, matches.weight, size=size, lambdas=lambdas)
    trust = float(np.clip((matches.shared - NOTHING_SHARED) / (SHARED_SCENE - NOTHING_SHARED), 0.0, 1.0))
    spread = float((source.max(axis=2) - source.min(axis=2)).mean())
    if trust < 1.0 and spread >= GREY_SPREAD:
        matrix, offset = mkl_map(source.reshape(-1, 3), reference.reshape(-1, 3))
        points = identity_lattice(size).reshape(-1, 3).astype(np.float64)
        fallback = (points @ matrix + offset).reshape(fit.lattice.shape)
        blended = fallback + trust * (fit.lattice - fallback)
        fit = dataclasses.replace(fit, lattice=blended.astype(np.float32), trust=trust)
    return fit, matches
