"""The global colour map read off the matched cells: a robust cubic, then a 3D lattice that departs from it
as far as cross-validation says the matches support.

Why two steps. A cubic in RGB (20 terms) follows a grade's tone curves and cross-talk from few matches and
is hard to fool; a 13^3 lattice can also follow what a polynomial cannot (one hue moved, its neighbours not)
but, fitted freely to noisy matches between different photos, it makes posterised blotches. So the lattice
is the least-squares fit to the matches plus lambda times the squared second differences of (lattice -
cubic), and lambda is chosen per pair by K-fold cross-validation of the robust (Cauchy) loss on held-out
matches: pairs whose matches agree pick a small lambda (a flexible map), unrelated scenes a large one (the
cubic).

Everything here is float64 NumPy on at most a few thousand matches: milliseconds, no torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from recolorize.prior.lattice import identity_lattice, trilinear_weights

__all__ = [
    "CUBIC_TERMS",
    "LAMBDAS",
    "LutFit",
    "cubic_terms",
    "fit_cubic",
    "apply_cubic",
    "fit_lattice",
    "mkl_map",
]

#: Monomials of the cubic colour map, the constant first: 1, r, g, b, squares, products, cubes.
CUBIC_TERMS = 20
#: The smoothness weights cross-validation picks from (relative to the weighted mean squared error of the
#: matches; second differences taken per unit of colour, so the same lambda means the same curvature on any
#: lattice size). The largest is, in practice, the cubic itself.
LAMBDAS = (1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 1e-2, 1e-1)
#: Cauchy scale (RGB units in [0, 1]) of the robust loss: a match 0.1 off counts about half.
CAUCHY_SCALE = 0.1


def cubic_terms(rgb: np.ndarray) -> np.ndarray:
    """The 20 monomials (N, 20) of colours (N, 3): 1, r, g, b, r2, g2, b2, rg, rb, gb, r3, g3, b3, r2g,
    r2b, g2r, g2b, b2r, b2g, rgb."""
    rgb = np.asarray(rgb, dtype=np.float64)
    r, g, b = rgb[:, 0], rgb[:, 1], rgb[:, 2]
    ones = np.ones_like(r)
    return np.stack(
        [ones, r, g, b, r * r, g * g, b * b, r * g, r * b, g * b]
        + [r**3, g**3, b**3, r * r * g, r * r * b, g * g * r, g * g * b, b * b * r, b * b * g, r * g * b],
        axis=1,
    )


def _identity_coefficients() -> np.ndarray:
    coefficients = np.zeros((CUBIC_TERMS, 3))
    coefficients[1:4] = np.eye(3)
    return coefficients


def apply_cubic(coefficients: np.ndarray, rgb: np.ndarray) -> np.ndarray:
    """The cubic map (20, 3) at colours (N, 3)."""
    return cubic_terms(rgb) @ coefficients


def cauchy_weights(residual: np.ndarray, scale: float = CAUCHY_SCALE) -> np.ndarray:
    """IRLS weights of Cauchy's loss rho(r) = log(1 + (r / scale)^2) for residual norms (N,)."""
    return 1.0 / (1.0 + (residual / scale) ** 2)


def fit_cubic(
    source: np.ndarray,
    target: np.ndarray,
    weight: np.ndarray,
    iterations: int = 10,
    ridge: float = 1e-4,
    scale: float = CAUCHY_SCALE,
) -> tuple[np.ndarray, np.ndarray]:
    """Robust cubic map from source (N, 3) to target (N, 3) colours: ``iterations`` rounds of Cauchy-
    reweighted least squares, with a ``ridge`` toward the identity so that few matches mean doing little.

    Returns the coefficients (20, 3) and the final robust weights (N,) (match weight x Cauchy weight).
    """
    design = cubic_terms(source)
    identity = _identity_coefficients()
    regulariser = np.full(CUBIC_TERMS, ridge)
    regulariser[0] = 1e-9
    robust = np.asarray(weight, dtype=np.float64)
    coefficients = identity
    for _ in range(iterations + 1):
        total = max(robust.sum(), 1e-9)
        weighted = design * robust[:, None]
        lhs = weighted.T @ design / total + np.diag(regulariser)
        rhs = weighted.T @ target / total + regulariser[:, None] * identity
        coefficients = np.linalg.solve(lhs, rhs)
        residual = np.linalg.norm(design @ coefficients - target, axis=1)
        robust = weight * cauchy_weights(residual, scale)
    return coefficients, robust


def _sqrtm_psd(matrix: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """Square root and inverse square root of a symmetric PSD 3x3 matrix (eigenvalues floored at 0, + eps)."""
    values, vectors = np.linalg.eigh(matrix)
    root = np.sqrt(np.maximum(values, 0.0) + eps)
    return (vectors * root) @ vectors.T, (vectors / root) @ vectors.T


def mkl_map(source_pixels: np.ndarray, reference_pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pitie & Kokaram (2007) linear Monge-Kantorovich map between two colour distributions.

    The affine map ``x -> x @ matrix + offset`` sends the source mean to the reference mean and the source
    covariance S to the reference covariance R, ``matrix = S^-1/2 (S^1/2 R S^1/2)^1/2 S^-1/2`` (symmetric),
    the one of all such maps that moves colours least (minimal mean squared displacement).
    source_pixels: (N, 3), reference_pixels: (M, 3), float in any range. Returns ``matrix`` (3, 3) and
    ``offset`` (3,), float64. A singular source covariance (a grey source) is regularised with machine
    epsilon as in the authors' code.
    """
    src = np.asarray(source_pixels, dtype=np.float64).reshape(-1, 3)
    ref = np.asarray(reference_pixels, dtype=np.float64).reshape(-1, 3)
    src_mean, ref_mean = src.mean(axis=0), ref.mean(axis=0)
    src_cov = np.cov(src, rowvar=False, bias=True)
    ref_cov = np.cov(ref, rowvar=False, bias=True)
    eps = float(np.finfo(np.float64).eps)
    src_root, src_inv_root = _sqrtm_psd(src_cov, eps)
    middle, _ = _sqrtm_psd(src_root @ ref_cov @ src_root, eps)
    matrix = src_inv_root @ middle @ src_inv_root
    matrix = (matrix + matrix.T) / 2.0  # symmetric by construction; remove round-off asymmetry
    return matrix, ref_mean - src_mean @ matrix


@lru_cache(maxsize=4)
def _roughness(size: int) -> np.ndarray:
    """R = sum over r, g, b of D^T D, D the second differences along that axis per unit colour
    ((f[i-1] - 2 f[i] + f[i+1]) / h^2), divided by the number of differences: lambda x^T R x is lambda
    times the mean squared curvature. Dense (S^3, S^3); one per lattice size."""
    h = 1.0 / (size - 1)
    second = np.zeros((size - 2, size))
    for i in range(size - 2):
        second[i, i : i + 3] = (1.0, -2.0, 1.0)
    second /= h * h
    one_axis = second.T @ second
    eye = np.eye(size)
    roughness = (
        np.kron(np.kron(one_axis, eye), eye)
        + np.kron(np.kron(eye, one_axis), eye)
        + np.kron(np.kron(eye, eye), one_axis)
    )
    roughness /= 3 * (size - 2) * size * size
    roughness.setflags(write=False)
    return roughness


def _normal_matrix(indices: np.ndarray, weights: np.ndarray, robust: np.ndarray, points: int) -> np.ndarray:
    """A^T diag(robust) A for the trilinear matrix A (rows: indices (N, 8), weights (N, 8)), dense."""
    pair = (indices[:, :, None] * points + indices[:, None, :]).ravel()
    value = (weights[:, :, None] * weights[:, None, :] * robust[:, None, None]).ravel()
    return np.bincount(pair, value, minlength=points * points).reshape(points, points)


def _normal_rhs(
    indices: np.ndarray, weights: np.ndarray, robust: np.ndarray, target: np.ndarray, points: int
):
    """A^T diag(robust) target, (points, 3)."""
    flat = indices.ravel()
    contribution = (weights * robust[:, None]).ravel()
    return np.stack(
        [np.bincount(flat, contribution * np.repeat(target[:, c], 8), minlength=points) for c in range(3)], 1
    )


def _solve(normal: np.ndarray, rhs: np.ndarray, total: float, smoothness: float, size: int) -> np.ndarray:
    lhs = normal / total + smoothness * _roughness(size)
    lhs[np.diag_indices_from(lhs)] += 1e-9
    # symmetric positive definite; NumPy's LU solve (no scipy in the base install: 143 MB for this one call)
    return np.linalg.solve(lhs, rhs / total)


@dataclass(frozen=True)
class LutFit:
    """A fitted prior: the lattice (S, S, S, 3) float32, the cubic it departs from (20, 3), the lambda
    chosen, each candidate's cross-validated loss (None when nothing was cross-validated), and how far the
    lattice is trusted over the MKL fallback (1: fully; ``prior.fit_prior`` sets it)."""

    lattice: np.ndarray
    cubic: np.ndarray
    smoothness: float
    cv_loss: tuple[float, ...] | None = None
    trust: float = 1.0


def fit_lattice(
    source: np.ndarray,
    target: np.ndarray,
    weight: np.ndarray,
    size: int = 9,
    lambdas: tuple[float, ...] = LAMBDAS,
    folds: int = 3,
    cv_size: int = 7,
    seed: int = 0,
) -> LutFit:
    """The prior's lattice from matched colours: source (N, 3) -> target (N, 3) with match weights (N,).

    1. the robust cubic (:func:`fit_cubic`); 2. lambda by ``folds``-fold cross-validation of the Cauchy loss
    on held-out matches, each candidate fitted on a ``cv_size``^3 lattice (a few ms a solve; curvature is
    measured per unit colour, so lambda carries over); 3. the ``size``^3 lattice with that lambda, weighted
    by match weight x the cubic's Cauchy weights, smooth toward the cubic.
    """
    source = np.asarray(source, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    weight = np.asarray(weight, dtype=np.float64)
    # the lattice's weights: match weight x the cubic's Cauchy weights, so a wrong match the cubic rejected
    # does not pull the lattice either (a looser scale, 0.2 or 0.4, let local changes in but cost 0.3-0.5 MAE
    # on make-bench pairs)
    cubic, robust = fit_cubic(source, target, weight)
    used = robust > 1e-6
    if used.sum() < 8 * folds or len(lambdas) == 1:
        chosen = lambdas[-1] if len(lambdas) else 1.0
        losses = None
    else:
        losses = _cross_validate(
            source[used], target[used], weight[used], robust[used], cubic, lambdas, folds, cv_size, seed
        )
        chosen = lambdas[int(np.argmin(losses))]
    lattice = _fit_on_lattice(source[used], target[used], robust[used], cubic, chosen, size)
    return LutFit(
        lattice=lattice.astype(np.float32),
        cubic=cubic,
        smoothness=chosen,
        cv_loss=None if losses is None else tuple(float(x) for x in losses),
    )


def _cubic_lattice(cubic: np.ndarray, size: int) -> np.ndarray:
    points = identity_lattice(size).reshape(-1, 3).astype(np.float64)
    return apply_cubic(cubic, points)


def _fit_on_lattice(source, target, robust, cubic, smoothness, size) -> np.ndarray:
    points = size**3
    base = _cubic_lattice(cubic, size)
    indices, weights = trilinear_weights(source, size)
    residual = target - (base[indices] * weights[..., None]).sum(1)  # what the lattice adds to the cubic
    normal = _normal_matrix(indices, weights, robust, points)
    rhs = _normal_rhs(indices, weights, robust, residual, points)
    correction = _solve(normal, rhs, max(robust.sum(), 1e-9), smoothness, size)
    return (base + correction).reshape(size, size, size, 3)


def _cross_validate(source, target, match_weight, robust, cubic, lambdas, folds, size, seed) -> np.ndarray:
    """Held-out Cauchy loss (weighted by match weight) of each lambda, summed over the folds."""
    points = size**3
    base = _cubic_lattice(cubic, size)
    indices, weights = trilinear_weights(source, size)
    residual = target - (base[indices] * weights[..., None]).sum(1)
    fold_of = np.random.default_rng(seed).permutation(len(source)) % folds
    normals = [
        _normal_matrix(indices[fold_of == f], weights[fold_of == f], robust[fold_of == f], points)
        for f in range(folds)
    ]
    rhss = [
        _normal_rhs(
            indices[fold_of == f], weights[fold_of == f], robust[fold_of == f], residual[fold_of == f], points
        )
        for f in range(folds)
    ]
    normal_all, rhs_all = sum(normals), sum(rhss)
    losses = np.zeros(len(lambdas))
    for f in range(folds):
        held = fold_of == f
        normal = normal_all - normals[f]
        rhs = rhs_all - rhss[f]
        total = max(robust[~held].sum(), 1e-9)
        for k, smoothness in enumerate(lambdas):
            correction = _solve(normal, rhs, total, smoothness, size)
            predicted = (correction[indices[held]] * weights[held][..., None]).sum(1)
            error = np.linalg.norm(predicted - residual[held], axis=1)
            losses[k] += (match_weight[held] * np.log1p((error / CAUCHY_SCALE) ** 2)).sum()
    return losses
