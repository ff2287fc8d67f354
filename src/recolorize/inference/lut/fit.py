"""The ``"fit"`` LUT: the regularised least-squares 33^3 LUT that best maps a photo's source pixels onto
the transfer's output pixels, trilinear-consistent and smooth toward the pairs' global affine map
(:func:`fit_lut`; the package docstring says why)."""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from recolorize.inference.lut.table import LUT_SIZE, Lut3D, as_unit, lattice
from recolorize.prior.lattice import trilinear_weights

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


def _corner_offsets(size: int) -> np.ndarray:
    """The flat index of a cell's 8 corners from its first, in ``prior.lattice.trilinear_weights``' order
    (corner (dr, dg, db) is column 4 dr + 2 dg + db)."""
    return np.array([(dr * size + dg) * size + db for dr in (0, 1) for dg in (0, 1) for db in (0, 1)])


#: The ``order``-th difference along an axis, as weights on consecutive lattice points.
_STENCILS = {1: (-1.0, 1.0), 2: (1.0, -2.0, 1.0)}


def _check_order(order: int) -> None:
    if order not in _STENCILS:
        raise ValueError(f"smoothness order must be 1 or 2, got {order}")


def _smoothness(u: np.ndarray, order: int) -> np.ndarray:
    """D^T D u for D the ``order``-th differences of the lattice along r, g and b; ``u`` is (C, S, S, S).

    Applied to the offset from the identity: first differences pull it toward a constant (a colour the
    photo lacks gets the offset of its neighbours), second differences toward a multilinear map (the
    nearby mapping is continued, slopes included).
    """
    _check_order(order)
    size = u.shape[-1]
    if size <= order:  # too few points to take differences: nothing to smooth
        return np.zeros_like(u)
    if order == 1:  # the same, cheaper: the diagonal, less each point's neighbours along the axes
        out = u * _smoothness_diagonal(size, order)
        for axis in (-3, -2, -1):
            lower: list[slice] = [slice(None)] * u.ndim
            upper: list[slice] = [slice(None)] * u.ndim
            lower[axis], upper[axis] = slice(0, size - 1), slice(1, size)
            out[tuple(lower)] -= u[tuple(upper)]
            out[tuple(upper)] -= u[tuple(lower)]
        return out
    out = np.zeros_like(u)
    for axis in (-3, -2, -1):
        differences = np.diff(u, n=order, axis=axis)  # D u along this axis
        for start, coefficient in enumerate(_STENCILS[order]):  # D^T: each difference back onto its points
            window: list[slice] = [slice(None)] * u.ndim
            window[axis] = slice(start, start + size - order)
            if coefficient == 1.0:
                out[tuple(window)] += differences
            elif coefficient == -1.0:
                out[tuple(window)] -= differences
            else:
                out[tuple(window)] += coefficient * differences
    return out


@lru_cache(maxsize=4)
def _smoothness_diagonal(size: int, order: int) -> np.ndarray:
    """The diagonal of D^T D (``_smoothness``) on the (size, size, size) lattice, read-only."""
    _check_order(order)
    along = np.zeros(size)
    if size > order:
        for start, coefficient in enumerate(_STENCILS[order]):
            along[start : start + size - order] += coefficient * coefficient
    diagonal = along[:, None, None] + along[None, :, None] + along[None, None, :]
    diagonal.setflags(write=False)
    return diagonal


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
    nodes = size**3
    indices, weights = trilinear_weights(x, size)  # x is float64: so are the weights
    # both terms times N^3 (one sample per lattice point); h^(3 - 2 order) turns |D u|^2 into the integral
    # of the squared derivative over the unit cube, and the constant makes it 1 at the default size
    spacing = 1.0 / (size - 1)
    reference = (1.0 / (LUT_SIZE - 1)) ** (3 - 2 * order) * (size / LUT_SIZE) ** 3
    weight = smoothness * spacing ** (3 - 2 * order) * (size**3 / LUT_SIZE**3) / reference
    normal = _NormalOperator(indices, weights, nodes / len(x), size, order, weight)
    flat = indices.ravel()
    rhs = np.stack([np.bincount(flat, (weights * shift[:, c, None]).ravel(), nodes) for c in range(3)])
    rhs *= nodes / len(x)  # A^T shift, (3, nodes)
    start = None
    if size > _COARSEST and (size - 1) % 2 == 0:
        coarse = _fit_offset(x, shift, (size + 1) // 2, smoothness, order)
        half = (size + 1) // 2
        start = Lut3D(coarse.reshape(half, half, half, 3)).apply(lattice(size)).reshape(-1, 3).T
    return _solve(normal, rhs, start).T


class _NormalOperator:
    """The normal matrix  scale * A^T A  +  weight * D^T D  +  _PRIOR_PULL * I  of the fit, matrix-free.

    A is the trilinear blend of the lattice at the samples: A^T A couples only the 8 corners of a cell, so
    it is held as one 8 x 8 matrix per cell that holds samples (a photo reaches a few thousand of the 32^3
    cells). D^T D, the smoothness, is applied by differences along the axes of the (size, size, size)
    lattice (``_smoothness`` says which).
    """

    def __init__(
        self, indices: np.ndarray, weights: np.ndarray, scale: float, size: int, order: int, weight: float
    ) -> None:
        _check_order(order)
        self.size, self.order, self.weight = size, order, weight
        self.nodes = size**3
        # the cells holding samples, by the flat index of their first corner, numbered 0..K-1
        first = indices[:, 0]
        held = np.zeros(self.nodes, dtype=bool)
        held[first] = True
        cells = np.flatnonzero(held)
        number = np.zeros(self.nodes, dtype=np.int64)
        number[cells] = np.arange(len(cells))
        cell_of = number[first]
        self.corners = cells[:, None] + _corner_offsets(size)  # (K, 8)
        self.flat_corners = self.corners.ravel()
        local = np.empty((len(cells), 8, 8))
        for a in range(8):
            for b in range(a, 8):
                local[:, a, b] = np.bincount(cell_of, weights[:, a] * weights[:, b], minlength=len(cells))
                local[:, b, a] = local[:, a, b]
        local *= scale
        self.local = local
        diagonal = np.bincount(self.flat_corners, np.diagonal(local, axis1=1, axis2=2).ravel(), self.nodes)
        self.diagonal = diagonal + _smoothness_diagonal(size, order).ravel() * weight + _PRIOR_PULL

    def __call__(self, u: np.ndarray) -> np.ndarray:
        """The operator on ``u`` (C, nodes), one row a channel."""
        blended = np.matmul(self.local, u.T[self.corners])  # (K, 8, C): each cell's share of A^T A u
        flat = self.flat_corners
        out = np.stack([np.bincount(flat, blended[..., c].ravel(), self.nodes) for c in range(len(u))])
        if self.size > self.order and self.weight != 0.0:
            shape = (len(u), self.size, self.size, self.size)
            smooth = _smoothness(u.reshape(shape), self.order).reshape(out.shape)
            smooth *= self.weight
            out += smooth
        out += u * _PRIOR_PULL
        return out


def _solve(operator: _NormalOperator, rhs: np.ndarray, start: np.ndarray | None = None) -> np.ndarray:
    """Conjugate gradients with a Jacobi preconditioner: the system is symmetric positive definite, and a
    direct factorisation of the 3D lattice fills in (20 s against < 1 s). ``rhs`` and ``start`` are
    (C, nodes), one row a channel.

    The channels run side by side, each with its own step sizes and its own stop, so each follows the
    iterations of a solve of its own (those of ``scipy.sparse.linalg.cg``: stop once the residual is below
    ``_CG_TOLERANCE`` times the right-hand side, at most ``_CG_MAX_ITER`` steps; a zero right-hand side
    gives zero).
    """
    solution = np.zeros_like(rhs) if start is None else np.array(start, dtype=np.float64)
    inverse = 1.0 / operator.diagonal
    norms = np.sqrt(np.einsum("ij,ij->i", rhs, rhs))
    solution[norms == 0] = 0.0
    channels = np.flatnonzero(norms != 0)
    x = solution[channels]
    residual = rhs[channels] - operator(x) if x.any() else rhs[channels]
    tolerance = _CG_TOLERANCE * norms[channels]
    direction, rho_previous = np.empty_like(x), np.ones(len(channels))
    for iteration in range(_CG_MAX_ITER):
        done = np.sqrt(np.einsum("ij,ij->i", residual, residual)) < tolerance
        if done.any():  # a channel that has converged leaves the loop with its iterate
            solution[channels[done]] = x[done]
            keep = ~done
            channels, tolerance, rho_previous = channels[keep], tolerance[keep], rho_previous[keep]
            x, residual, direction = x[keep], residual[keep], direction[keep]
        if not len(channels):
            break
        preconditioned = residual * inverse
        rho = np.einsum("ij,ij->i", residual, preconditioned)
        if iteration > 0:
            direction *= (rho / rho_previous)[:, None]
            direction += preconditioned
        else:
            direction = preconditioned
        product = operator(direction)
        alpha = (rho / np.einsum("ij,ij->i", direction, product))[:, None]
        x += alpha * direction
        residual -= alpha * product
        rho_previous = rho
    else:  # out of steps: the last iterate, as scipy's cg returns it
        solution[channels] = x
    if not np.isfinite(solution).all():
        raise RuntimeError("the LUT fit did not converge (conjugate gradients gave non-finite values)")
    return solution
