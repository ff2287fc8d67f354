"""The ``"fit"`` LUT: the regularised least-squares 33^3 LUT that best maps a photo's source pixels onto
the transfer's output pixels, trilinear-consistent and smooth toward the pairs' global affine map
(:func:`fit_lut`; the package docstring says why)."""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import numpy as np

from recolorize.inference.lut.table import LUT_SIZE, Lut3D, as_unit, lattice

__all__ = ["FIT_SMOOTHNESS", "FIT_ORDER", "FIT_PRIOR", "FIT_MAX_SAMPLES", "fit_lut"]

#: The fit's regularisation: the weight of the smoothness term (relative to the mean squared error of the
#: data), the order of the differences it penalises (1 or 2, see ``_smoothness``) and the prior the LUT
#: departs from ("affine": the global affine fit; "identity"). Chosen by the sweep in docs/results.md
#: ("3D LUT") on 8 pairs kept out of its table: the best fill of colours the photo lacks (held-out half
#: of the photo: ΔE2000 2.78 to the model's output) among the settings that stay within 0.1 ΔE2000 of the
#: least smoothed fit on the photo itself and hold a smooth global look (p99 ΔE2000 0.53); 0.09% of its
#: lattice steps decrease, against 1.1-2.8% with second differences, which also solve 10x slower.
FIT_SMOOTHNESS = 1.0
FIT_ORDER = 1
FIT_PRIOR = "affine"
#: Pixel pairs the fit uses at most (a regular subsample of larger photos): ~0.26 MP, ~0.5 s of fitting.
FIT_MAX_SAMPLES = 1 << 18
#: A weak pull toward the prior, so that a lattice the data and the smoothness leave undetermined (a
#: photo of a single colour) is still solvable; far too weak to move any point the data reach.
_PRIOR_PULL = 1e-6
#: Conjugate gradients stop at this residual, relative to the right-hand side (far below 1/255 of a level).
_CG_TOLERANCE = 1e-6
_CG_MAX_ITER = 10_000
#: Nested iteration starts on a lattice this coarse (9^3 points: a few milliseconds).
_COARSEST = 9


def _trilinear_weights(colours: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Lattice indices (M, 8) and weights (M, 8) of each colour's trilinear blend (flat [r, g, b] index)."""
    position = np.clip(colours, 0.0, 1.0) * (size - 1)
    base = np.minimum(position.astype(np.int64), size - 2)
    frac = position - base
    indices, weights = [], []
    for dr in (0, 1):
        for dg in (0, 1):
            for db in (0, 1):
                corner = base + np.array([dr, dg, db])
                indices.append((corner[:, 0] * size + corner[:, 1]) * size + corner[:, 2])
                w = np.where(dr, frac[:, 0], 1.0 - frac[:, 0])
                w = w * np.where(dg, frac[:, 1], 1.0 - frac[:, 1])
                weights.append(w * np.where(db, frac[:, 2], 1.0 - frac[:, 2]))
    return np.stack(indices, axis=1), np.stack(weights, axis=1)


@lru_cache(maxsize=4)
def _smoothness(size: int, order: int) -> Any:
    """D^T D for D the ``order``-th differences of the lattice along r, g and b, as a CSR matrix.

    Applied to the offset from the identity: first differences pull it toward a constant (a colour the
    photo lacks gets the offset of its neighbours), second differences toward a multilinear map (the
    nearby mapping is continued, slopes included).
    """
    import scipy.sparse as sp

    if order not in (1, 2):
        raise ValueError(f"smoothness order must be 1 or 2, got {order}")
    if size <= order:  # too few points to take differences: nothing to smooth
        return sp.csr_matrix((size**3, size**3))
    stencil = ([-1.0, 1.0], [0, 1]) if order == 1 else ([1.0, -2.0, 1.0], [0, 1, 2])
    difference = sp.diags(stencil[0], stencil[1], shape=(size - order, size))
    eye = sp.identity(size, format="csr")
    blocks = [
        sp.kron(sp.kron(difference, eye), eye),
        sp.kron(sp.kron(eye, difference), eye),
        sp.kron(sp.kron(eye, eye), difference),
    ]
    stacked = sp.vstack(blocks).tocsr()
    return (stacked.T @ stacked).tocsr()


def _subsample(source: np.ndarray, output: np.ndarray, max_samples: int) -> tuple[np.ndarray, np.ndarray]:
    """At most ``max_samples`` (source, output) pixel pairs on a regular grid of the photo."""
    if source.shape != output.shape or source.shape[-1] != 3:
        raise ValueError(f"source {source.shape} and output {output.shape} must be the same (H, W, 3)")
    if source.ndim == 3:
        height, width = source.shape[:2]
        stride = max(1, math.ceil(math.sqrt(height * width / max_samples)))
        source, output = source[::stride, ::stride], output[::stride, ::stride]
    return source.reshape(-1, 3).astype(np.float64), output.reshape(-1, 3).astype(np.float64)


def fit_lut(
    source: np.ndarray,
    output: np.ndarray,
    size: int = LUT_SIZE,
    smoothness: float = FIT_SMOOTHNESS,
    max_samples: int = FIT_MAX_SAMPLES,
    order: int = FIT_ORDER,
    prior: str = FIT_PRIOR,
) -> Lut3D:
    """The regularised least-squares LUT that best maps ``source`` onto ``output`` (both (H, W, 3) or
    (M, 3), float in [0, 1], or 8- or 16-bit samples).

    Minimises  mean_i |T(x_i) - y_i|^2  +  smoothness * c_N * |D (T - P)|^2  (+ a negligible pull toward
    P), where T(x) is the trilinear blend of the lattice, so the data term scores the LUT exactly as it
    will be applied; P is the prior, the least-squares global affine map of the pairs (``prior="affine"``)
    or the identity; and D takes ``order``-th differences along each axis. c_N scales the
    differences to the lattice spacing, so a weight means the same smoothness at every ``size`` (and is
    1 / 33^3 at the default size). Solved for the offset T - I by conjugate gradients, started from the
    same fit on a lattice half as fine (nested iteration: the smooth part converges there, cheaply).
    Output values are clipped to [0, 1].
    """
    if size < 2:
        raise ValueError(f"size must be at least 2, got {size}")
    if smoothness < 0:
        raise ValueError(f"smoothness must be >= 0, got {smoothness}")
    x, y = _subsample(as_unit(source), as_unit(output), max_samples)
    if len(x) == 0:
        raise ValueError("no pixels to fit a LUT to")
    if prior not in ("affine", "identity"):
        raise ValueError(f"prior must be 'affine' or 'identity', got {prior!r}")
    y = np.clip(y, 0.0, 1.0)
    affine = _affine_fit(x, y) if prior == "affine" else np.vstack([np.eye(3), np.zeros((1, 3))])
    base = lattice(size).reshape(-1, 3) @ affine[:3] + affine[3]
    offset = _fit_offset(x, y - (x @ affine[:3] + affine[3]), size, smoothness, order)
    return Lut3D(np.clip(base + offset, 0.0, 1.0).reshape(size, size, size, 3))


def _affine_fit(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The least-squares global affine colour map y ~ x @ A[:3] + A[3] (4, 3): the LUT's prior, which a
    trilinear lattice holds exactly, so colours far from the photo's follow the global trend."""
    design = np.hstack([x, np.ones((len(x), 1))])
    ridge = 1e-6 * np.eye(4)  # a photo of one colour has no slope to fit: keep the identity's
    target = y - x  # fit the change, so the ridge pulls toward the identity
    change = np.linalg.solve(design.T @ design / len(x) + ridge, design.T @ target / len(x))
    return change + np.vstack([np.eye(3), np.zeros((1, 3))])


def _fit_offset(x: np.ndarray, shift: np.ndarray, size: int, smoothness: float, order: int) -> np.ndarray:
    """The lattice offsets (size^3, 3) whose trilinear blend best gives ``shift`` at the colours ``x``.

    An affine prior's lattice reproduces its map exactly (trilinear interpolation is exact on affine
    maps), so fitting the offset from it is the same fit, and an undetermined point stays on the prior.
    """
    import scipy.sparse as sp

    nodes = size**3
    indices, weights = _trilinear_weights(x, size)
    rows = np.repeat(np.arange(len(x)), 8)
    design = sp.csr_matrix((weights.ravel(), (rows, indices.ravel())), shape=(len(x), nodes))
    # both terms times N^3 (one sample per lattice point); h^(3 - 2 order) turns |D u|^2 into the integral
    # of the squared derivative over the unit cube, and the constant makes it 1 at the default size
    spacing = 1.0 / (size - 1)
    reference = (1.0 / (LUT_SIZE - 1)) ** (3 - 2 * order) * (size / LUT_SIZE) ** 3
    weight = smoothness * spacing ** (3 - 2 * order) * (size**3 / LUT_SIZE**3) / reference
    normal = (design.T @ design) * (nodes / len(x)) + _smoothness(size, order) * weight
    normal = (normal + sp.identity(nodes, format="csr") * _PRIOR_PULL).tocsr()
    rhs = np.asarray(design.T @ shift) * (nodes / len(x))
    start = None
    if size > _COARSEST and (size - 1) % 2 == 0:
        coarse = _fit_offset(x, shift, (size + 1) // 2, smoothness, order)
        half = (size + 1) // 2
        start = Lut3D(coarse.reshape(half, half, half, 3)).apply(lattice(size)).reshape(-1, 3)
    return _solve(normal, rhs, start)


def _solve(matrix: Any, rhs: np.ndarray, start: np.ndarray | None = None) -> np.ndarray:
    """Conjugate gradients with a Jacobi preconditioner, one channel at a time: the system is symmetric
    positive definite, and a direct factorisation of the 3D lattice fills in (20 s against < 1 s)."""
    import scipy.sparse as sp
    from scipy.sparse.linalg import cg

    preconditioner = sp.diags(1.0 / matrix.diagonal())
    columns = []
    for channel in range(rhs.shape[1]):
        solution, info = cg(
            matrix,
            rhs[:, channel],
            x0=None if start is None else start[:, channel].astype(np.float64),
            M=preconditioner,
            rtol=_CG_TOLERANCE,
            maxiter=_CG_MAX_ITER,
        )
        if info < 0:
            raise RuntimeError(f"the LUT fit did not converge (conjugate gradients: {info})")
        columns.append(solution)
    return np.stack(columns, axis=1)
