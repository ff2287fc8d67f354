"""Oracles: the best *global* colour maps, fitted to the ground-truth target itself.

A global map sends every pixel of one colour to one colour, wherever it is. Fitted to the target by least
squares, it is a bound no global method can beat on that pair; a method below it on a benchmark whose
changes are local (``make-bench --kind local``) is spatially adaptive. These read the target, so they are
no methods a user could run: ``recolorize eval`` marks them ``(oracle)`` and leaves them out of the bold.

Every oracle is ``oracle(source, reference, target) -> output``: NumPy float images (H, W, 3) in [0, 1]
(the reference is not used); output (H, W, 3) float32, clipped to [0, 1]. Fits are float64, on at most
:data:`FIT_PIXELS` pixels drawn with a fixed seed, so an output is a pure function of the images.

- ``oracle-cubic``: a 20-term cubic polynomial in R, G, B per output channel (:data:`CUBIC_TERMS`).
- ``oracle-lut``: a 17^3 trilinear 3D LUT, least squares to the target with a light penalty on the second
  differences (along R, G and B) of its departure from the cubic, which also fills the cells no pixel
  reaches. More flexible than the cubic: the tighter bound.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType

import numpy as np

__all__ = [
    "CUBIC_TERMS",
    "FIT_PIXELS",
    "LUT_SIZE",
    "LUT_SMOOTHING",
    "ORACLES",
    "ORACLE_DESCRIPTIONS",
    "OracleFn",
    "cubic_features",
    "fit_cubic",
    "apply_cubic",
    "fit_lut",
    "apply_lut",
    "oracle_cubic",
    "oracle_lut",
]

OracleFn = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]

#: The cubic's terms, in the column order of :func:`cubic_features`.
CUBIC_TERMS: tuple[str, ...] = (
    "1", "r", "g", "b", "r2", "g2", "b2", "rg", "rb", "gb",
    "r3", "g3", "b3", "r2g", "r2b", "g2r", "g2b", "b2r", "b2g", "rgb",
)  # fmt: skip
#: At most this many pixels (drawn without replacement, seed :data:`FIT_SEED`) enter a fit.
FIT_PIXELS = 200_000
FIT_SEED = 0
#: Lattice points per axis of ``oracle-lut``.
LUT_SIZE = 17
#: Weight of the LUT's second differences (of its departure from the cubic) against the mean squared error.
LUT_SMOOTHING = 1e-5
#: Pixels per band when a map is applied (bounds the memory of the (N, 20) features at any photo size).
_BAND = 1 << 20


def _pixels(image: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"{name} must have shape (H, W, 3), got {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return np.clip(array.reshape(-1, 3).astype(np.float64), 0.0, 1.0)


def _fit_sample(source: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(source, target) pixel rows (N, 3) float64, at most :data:`FIT_PIXELS` of them (fixed seed)."""
    if np.shape(source) != np.shape(target):
        raise ValueError(f"target {np.shape(target)} must have the source's shape {np.shape(source)}")
    x, y = _pixels(source, "source"), _pixels(target, "target")
    if len(x) > FIT_PIXELS:
        keep = np.sort(np.random.default_rng(FIT_SEED).choice(len(x), FIT_PIXELS, replace=False))
        x, y = x[keep], y[keep]
    return x, y


def cubic_features(rgb: np.ndarray) -> np.ndarray:
    """(N, 20) float64 cubic monomials of (N, 3) colours, in the order of :data:`CUBIC_TERMS`."""
    r, g, b = (np.asarray(rgb, dtype=np.float64)[:, c] for c in range(3))
    one = np.ones_like(r)
    return np.stack(
        [one, r, g, b, r * r, g * g, b * b, r * g, r * b, g * b,
         r**3, g**3, b**3, r * r * g, r * r * b, g * g * r, g * g * b, b * b * r, b * b * g, r * g * b],
        axis=1,
    )  # fmt: skip


def fit_cubic(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """(20, 3) least-squares coefficients of the cubic map from ``source``'s pixels to ``target``'s."""
    x, y = _fit_sample(source, target)
    coefficients, *_ = np.linalg.lstsq(cubic_features(x), y, rcond=None)
    return coefficients


def _banded(image: np.ndarray, fn: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    pixels = _pixels(image, "source")
    out = np.empty((len(pixels), 3), dtype=np.float32)
    for start in range(0, len(pixels), _BAND):
        band = pixels[start : start + _BAND]
        out[start : start + _BAND] = np.clip(fn(band), 0.0, 1.0)
    return out.reshape(np.shape(image))


def apply_cubic(image: np.ndarray, coefficients: np.ndarray) -> np.ndarray:
    """The cubic map on an (H, W, 3) image; float32, clipped to [0, 1]."""
    return _banded(image, lambda band: cubic_features(band) @ coefficients)


def _corners(rgb: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Trilinear corners of (N, 3) colours on a size^3 lattice: flat indices (N, 8) and weights (N, 8)."""
    position = rgb * (size - 1)
    low = np.clip(np.floor(position), 0, size - 2).astype(np.int64)
    fraction = position - low
    indices, weights = [], []
    for dr in (0, 1):
        for dg in (0, 1):
            for db in (0, 1):
                index = ((low[:, 0] + dr) * size + (low[:, 1] + dg)) * size + (low[:, 2] + db)
                weight = (
                    (fraction[:, 0] if dr else 1 - fraction[:, 0])
                    * (fraction[:, 1] if dg else 1 - fraction[:, 1])
                    * (fraction[:, 2] if db else 1 - fraction[:, 2])
                )
                indices.append(index)
                weights.append(weight)
    return np.stack(indices, axis=1), np.stack(weights, axis=1)


def _second_differences(size: int):  # -> scipy.sparse matrix
    """Sparse operator of the second differences along each of the three axes of a size^3 lattice."""
    from scipy import sparse

    eye = sparse.identity(size, format="csr")
    d1 = sparse.diags([1.0, -2.0, 1.0], [0, 1, 2], shape=(size - 2, size), format="csr")
    blocks = [
        sparse.kron(sparse.kron(d1, eye), eye),
        sparse.kron(sparse.kron(eye, d1), eye),
        sparse.kron(sparse.kron(eye, eye), d1),
    ]
    return sparse.vstack(blocks, format="csr")


def fit_lut(
    source: np.ndarray, target: np.ndarray, size: int = LUT_SIZE, smoothing: float = LUT_SMOOTHING
) -> np.ndarray:
    """(size, size, size, 3) lattice (indexed [r, g, b]) of the least-squares trilinear LUT to ``target``.

    Minimises mean_i |LUT(s_i) - t_i|^2 + smoothing * |D (LUT - cubic)|^2 over the lattice, D the second
    differences along R, G and B, cubic the :func:`fit_cubic` map sampled on the lattice.
    """
    from scipy import sparse
    from scipy.sparse.linalg import spsolve

    x, y = _fit_sample(source, target)
    nodes = size**3
    indices, weights = _corners(x, size)
    rows = np.repeat(np.arange(len(x)), 8)
    design = sparse.csr_matrix((weights.ravel(), (rows, indices.ravel())), shape=(len(x), nodes))
    grid = np.linspace(0.0, 1.0, size)
    lattice = np.stack(np.meshgrid(grid, grid, grid, indexing="ij"), axis=-1).reshape(-1, 3)
    prior = cubic_features(lattice) @ fit_cubic(source, target)
    d = _second_differences(size)
    penalty = smoothing * (d.T @ d)
    system = (design.T @ design) / len(x) + penalty + 1e-12 * sparse.identity(nodes)
    rhs = (design.T @ y) / len(x) + penalty @ prior
    solution = spsolve(system.tocsc(), rhs)
    return np.asarray(solution, dtype=np.float64).reshape(size, size, size, 3)


def apply_lut(image: np.ndarray, lattice: np.ndarray) -> np.ndarray:
    """A (size, size, size, 3) lattice on an (H, W, 3) image, trilinear; float32, clipped to [0, 1]."""
    size = lattice.shape[0]
    flat = lattice.reshape(-1, 3)

    def run(band: np.ndarray) -> np.ndarray:
        indices, weights = _corners(band, size)
        return np.einsum("nk,nkc->nc", weights, flat[indices])

    return _banded(image, run)


def oracle_cubic(source: np.ndarray, reference: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The best cubic colour map from source to target (least squares), applied to the source."""
    return apply_cubic(source, fit_cubic(source, target))


def oracle_lut(source: np.ndarray, reference: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The best (lightly smoothed) 17^3 trilinear LUT from source to target, applied to the source."""
    return apply_lut(source, fit_lut(source, target))


#: Oracle name -> function, as ``recolorize eval --methods`` names them.
ORACLES: Mapping[str, OracleFn] = MappingProxyType({"oracle-cubic": oracle_cubic, "oracle-lut": oracle_lut})
#: Oracle name -> what it is, for summary.md.
ORACLE_DESCRIPTIONS: Mapping[str, str] = MappingProxyType(
    {
        "oracle-cubic": "the best global map (a 20-term cubic) fitted to the target",
        "oracle-lut": f"the best global map (a {LUT_SIZE}^3 trilinear LUT) fitted to the target",
    }
)
