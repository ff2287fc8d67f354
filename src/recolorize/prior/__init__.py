"""The colour prior: the reference's grade read where both photos show the same thing, as a 3D lattice.

    I_S, I_R -> 384 x 384 copies -> frozen EfficientNet-Lite0 descriptors (the caller's network)
             -> mutual matches of their 48 x 48 cells (matching.py)
             -> robust cubic + cross-validated 9^3 lattice over the matched cell colours (colour_map.py)
             -> the lattice, applied to any pixel by trilinear interpolation (lattice.py)

NumPy only, no gradients: an input to the learned part, as MKL was, computed the same way by inference
(from the photos) and by the training cache (from the triples' 384-px crops), so training sees what
inference does. The networks' features come in as arrays (``networks/prior_features.py`` runs them).
"""

from __future__ import annotations

import numpy as np

from recolorize.prior.colour_map import LAMBDAS, LutFit, apply_cubic, fit_cubic, fit_lattice
from recolorize.prior.lattice import apply_lattice, identity_lattice, lerp_lattice, trilinear_weights
from recolorize.prior.matching import PRIOR_SIZE, Matches, descriptors, match_cells, network_input

__all__ = [
    "PRIOR_SIZE",
    "LATTICE_SIZE",
    "LAMBDAS",
    "LutFit",
    "Matches",
    "apply_cubic",
    "apply_lattice",
    "descriptors",
    "fit_cubic",
    "fit_lattice",
    "fit_prior",
    "identity_lattice",
    "lerp_lattice",
    "match_cells",
    "network_input",
    "trilinear_weights",
]

#: Lattice points per axis of the prior (9^3: as close to ground truth as 13^3 on make-bench, 4x cheaper).
LATTICE_SIZE = 9


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
    return fit_lattice(matches.source, matches.reference, matches.weight, size=size), matches
