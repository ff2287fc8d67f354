"""The colour prior: the reference's grade read where both photos show the same thing, as a 3D lattice.

    I_S, I_R -> 384 x 384 copies -> frozen EfficientNet-Lite0 descriptors (the caller's network)
             -> mutual matches of their 48 x 48 cells (matching.py)
             -> robust cubic + cross-validated 9^3 lattice over the matched cell colours (colour_map.py)
             -> the lattice, applied to any pixel by trilinear interpolation (lattice.py)
             -> the matches' residuals from the lattice, spread over the source's cells by a joint
                bilateral average: the local field (local.py), sliced to pixels by colour
    fit_prior (pair.py) runs the matching and the fit for one pair and gives way to MKL between different
    scenes; pair_prior adds several references and the local field (between views of one scene only).

NumPy only, no gradients: an input to the learned part, as MKL was, computed the same way by inference
(from the photos) and by the training cache (from the triples' 384-px crops), so training sees what
inference does. The networks' features come in as arrays (``networks/prior_features.py`` runs them).
"""

from __future__ import annotations

from recolorize.prior.colour_map import LAMBDAS, LutFit, apply_cubic, fit_cubic, fit_lattice, mkl_map
from recolorize.prior.lattice import apply_lattice, identity_lattice, lerp_lattice, trilinear_weights
from recolorize.prior.local import LocalField, LocalSettings, apply_local_field, local_field
from recolorize.prior.matching import PRIOR_SIZE, Matches, descriptors, match_cells, network_input
from recolorize.prior.pair import LATTICE_SIZE, NOTHING_SHARED, SHARED_SCENE, PairPrior, fit_prior, pair_prior

__all__ = [
    "PRIOR_SIZE",
    "LATTICE_SIZE",
    "SHARED_SCENE",
    "NOTHING_SHARED",
    "LAMBDAS",
    "LutFit",
    "LocalField",
    "LocalSettings",
    "Matches",
    "PairPrior",
    "apply_cubic",
    "apply_lattice",
    "apply_local_field",
    "descriptors",
    "fit_cubic",
    "fit_lattice",
    "fit_prior",
    "identity_lattice",
    "lerp_lattice",
    "local_field",
    "match_cells",
    "mkl_map",
    "network_input",
    "pair_prior",
    "trilinear_weights",
]
