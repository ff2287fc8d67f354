"""3D colour lookup tables: take a transfer's look away as a ``.cube`` file, and apply any ``.cube`` fast.

A LUT is one *global* colour mapping, while the model's transfer is local (each region gets its own styles).
Two ways of turning a transfer into a LUT were measured on the ground-truth benchmark (docs/results.md,
"3D LUT"):

* ``"fit"`` (the default): a regularised least-squares 33^3 LUT fitted to the pairs (source pixel -> output
  pixel) of the whole photo. The fit is trilinear-consistent (each sample is the trilinear blend of its
  8 lattice neighbours, exactly as the LUT will be applied), and a smoothness term on the LUT's offset
  from the global affine fit of the pairs fills the colours the photo lacks smoothly: a missing colour
  follows the global trend plus the correction of the colours around it, so the LUT stays monotone where
  the fitted mapping is. This is the best global approximation of what the model did to *this* photo.
* ``"pooled"``: the pointwise generator evaluated on the lattice colours with its latent maps (and the
  colour hint) averaged over the image: the global part of the look, with no fit.

Applying is trilinear interpolation with ``torch.nn.functional.grid_sample`` (vectorised, multi-threaded,
float32: a 12 MP photo in a fraction of a second). ``.cube`` files are read and written by colour-science
(``pip install 'recolorize[lut]'``), in the Adobe/Resolve layout: ``LUT_3D_SIZE``, domain 0-1, red index
fastest. LUTs work on sRGB-encoded values, the space the model works in: ``imaging.load_image`` gives
a photo's sRGB copy, and ``save_image(..., like=photo)`` carries the change onto the photo's own samples
in its own profile, as for ``transfer``.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from recolorize.errors import UserError, one_line

if TYPE_CHECKING:  # pragma: no cover
    from recolorize.inference.pipeline import PreparedPair, Recolorizer

__all__ = [
    "Lut3D",
    "LutError",
    "LUT_SIZE",
    "LUT_METHODS",
    "FIT_SMOOTHNESS",
    "FIT_ORDER",
    "FIT_PRIOR",
    "FIT_MAX_SAMPLES",
    "MAX_CUBE_BYTES",
    "apply_lut",
    "fit_lut",
    "pooled_generator_lut",
    "transfer_lut",
    "read_cube",
    "write_cube",
]

#: Lattice points per axis of the LUTs we make: 33 is the size editors (Resolve, Premiere) expect.
LUT_SIZE = 33
#: How a transfer becomes a LUT (module docstring); the first is the default.
LUT_METHODS: tuple[str, ...] = ("fit", "pooled")
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
#: Largest ``.cube`` file read: a 129^3 LUT written with 7 decimals is ~70 MB; anything larger is refused
#: before it is parsed (the parser holds every line in memory).
MAX_CUBE_BYTES = 128 << 20
#: Pixels applied per block: bounds the temporary tensors (~100 bytes a pixel) of a 100 MP photo.
_APPLY_BLOCK_PIXELS = 1 << 22


class LutError(UserError, ValueError):
    """A ``.cube`` file that cannot be used (malformed, unsupported, unreadable): one line naming it."""


@dataclass(frozen=True, eq=False)
class Lut3D:
    """A 3D colour LUT, optionally preceded by per-channel 1D curves (a Resolve "shaper").

    table: (N, N, N, 3) float32 output colours indexed ``[r, g, b]`` (red index first).
    domain: (2, 3) input values mapped onto the first and last lattice points (default 0 and 1).
    curves: optional (M, 3) 1D LUT applied to each channel first, over ``curves_domain`` (2, 3).
    """

    table: np.ndarray
    domain: np.ndarray = dataclasses.field(default_factory=lambda: np.array([[0.0] * 3, [1.0] * 3]))
    curves: np.ndarray | None = None
    curves_domain: np.ndarray | None = None
    title: str = "recolorize"

    def __post_init__(self) -> None:
        table = np.asarray(self.table, dtype=np.float32)
        if table.ndim != 4 or table.shape[:3] != (table.shape[0],) * 3 or table.shape[3] != 3:
            raise ValueError(f"a 3D LUT table must be (N, N, N, 3), got {table.shape}")
        if table.shape[0] < 2:
            raise ValueError("a 3D LUT needs at least 2 points per axis")
        object.__setattr__(self, "table", table)
        object.__setattr__(self, "domain", _domain(self.domain, "domain"))
        if self.curves is not None:
            curves = np.asarray(self.curves, dtype=np.float32)
            if curves.ndim != 2 or curves.shape[1] != 3 or curves.shape[0] < 2:
                raise ValueError(f"1D curves must be (M >= 2, 3), got {curves.shape}")
            object.__setattr__(self, "curves", curves)
            domain = self.curves_domain if self.curves_domain is not None else [[0.0] * 3, [1.0] * 3]
            object.__setattr__(self, "curves_domain", _domain(domain, "curves domain"))

    @property
    def size(self) -> int:
        """Lattice points per axis."""
        return int(self.table.shape[0])

    @classmethod
    def identity(cls, size: int = LUT_SIZE) -> Lut3D:
        """The LUT that returns every colour unchanged (strength 0)."""
        return cls(_lattice(size))

    def apply(self, rgb: np.ndarray) -> np.ndarray:
        """``rgb`` (..., 3) float in [0, 1] (or 8-/16-bit samples) through the LUT (trilinear); float32.

        Inputs outside the domain take the nearest edge of the lattice, as editors do.
        """
        return apply_lut(self, rgb)

    def save(self, path: str | os.PathLike[str], overwrite: bool = True) -> Path:
        """Write this LUT as a ``.cube`` file (see :func:`write_cube`); returns the path."""
        return write_cube(self, path, overwrite=overwrite)


def _domain(value: Any, what: str) -> np.ndarray:
    domain = np.asarray(value, dtype=np.float64)
    if domain.shape != (2, 3) or not np.all(np.isfinite(domain)) or np.any(domain[1] <= domain[0]):
        raise ValueError(f"the LUT's {what} must be (2, 3) finite rows with min < max, got {domain.tolist()}")
    return domain


def _lattice(size: int) -> np.ndarray:
    """The identity lattice (size, size, size, 3), indexed [r, g, b]."""
    axis = np.linspace(0.0, 1.0, size, dtype=np.float32)
    r, g, b = np.meshgrid(axis, axis, axis, indexing="ij")
    return np.stack([r, g, b], axis=-1)


# ------------------------------------------------------------------------------------------------ apply


def apply_lut(lut: Lut3D, rgb: np.ndarray) -> np.ndarray:
    """Trilinear interpolation of ``lut`` at every colour of ``rgb`` (..., 3); float32, same shape.

    grid_sample runs on torch's intra-op threads, in blocks of ``_APPLY_BLOCK_PIXELS`` so that a 100 MP
    photo needs no more than a few hundred MB of temporaries.
    """
    import torch
    import torch.nn.functional as F

    array = _unit(rgb)
    if array.shape[-1:] != (3,):
        raise ValueError(f"expected colours (..., 3), got shape {array.shape}")
    pixels = np.ascontiguousarray(array.reshape(-1, 3), dtype=np.float32)
    out = np.empty_like(pixels)
    if lut.curves is not None:
        pixels = _apply_curves(lut.curves, lut.curves_domain, pixels)
    # grid_sample's 5D input is (N, C, D, H, W) and its grid holds (x, y, z) = (W, H, D) coordinates: with
    # the table as (3, r, g, b), x is blue, y green, z red.
    volume = torch.from_numpy(np.ascontiguousarray(lut.table.transpose(3, 0, 1, 2)))[None]
    low = torch.from_numpy(lut.domain[0, ::-1].astype(np.float32).copy())
    scale = torch.from_numpy((2.0 / (lut.domain[1] - lut.domain[0]))[::-1].astype(np.float32).copy())
    for start in range(0, len(pixels), _APPLY_BLOCK_PIXELS):
        block = torch.from_numpy(pixels[start : start + _APPLY_BLOCK_PIXELS])
        grid = (block.flip(-1) - low).mul_(scale).sub_(1.0)
        sampled = F.grid_sample(
            volume, grid.view(1, 1, 1, -1, 3), mode="bilinear", padding_mode="border", align_corners=True
        )
        out[start : start + len(block)] = sampled.view(3, -1).T.numpy()
    return out.reshape(array.shape)


def _unit(rgb: Any) -> np.ndarray:
    """Colours as floats in [0, 1]: 8- and 16-bit samples are scaled, floats are taken as they are."""
    array = np.asarray(rgb)
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0
    if array.dtype == np.uint16:
        return array.astype(np.float32) / 65535.0
    return array


def _apply_curves(curves: np.ndarray, domain: np.ndarray | None, pixels: np.ndarray) -> np.ndarray:
    """Per-channel 1D LUTs (linear interpolation, clamped at the ends)."""
    low, high = domain if domain is not None else np.array([[0.0] * 3, [1.0] * 3])
    out = np.empty_like(pixels)
    for c in range(3):
        xs = np.linspace(low[c], high[c], curves.shape[0])
        out[:, c] = np.interp(pixels[:, c], xs, curves[:, c])
    return out


# -------------------------------------------------------------------------------------------------- fit


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
    x, y = _subsample(_unit(source), _unit(output), max_samples)
    if len(x) == 0:
        raise ValueError("no pixels to fit a LUT to")
    if prior not in ("affine", "identity"):
        raise ValueError(f"prior must be 'affine' or 'identity', got {prior!r}")
    y = np.clip(y, 0.0, 1.0)
    affine = _affine_fit(x, y) if prior == "affine" else np.vstack([np.eye(3), np.zeros((1, 3))])
    base = _lattice(size).reshape(-1, 3) @ affine[:3] + affine[3]
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
        start = Lut3D(coarse.reshape(half, half, half, 3)).apply(_lattice(size)).reshape(-1, 3)
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


# ------------------------------------------------------------------------------------- from a transfer


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
        lattice = torch.from_numpy(_lattice(size).reshape(size, size * size, 3)).permute(2, 0, 1)[None]
        lattice = lattice.to(recolorizer.device)
        out = model.generator(lattice, pooled, conditioning).clamp(0.0, 1.0)
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
    source = prepared.source
    if source.height * source.width > max_samples:
        scale = math.sqrt(max_samples / (source.height * source.width))
        shape = (max(1, round(source.height * scale)), max(1, round(source.width * scale)))
        small = resize_for_network(source.tensor(), shape)[0].permute(1, 2, 0).numpy()
        source = LoadedImage(rgb=np.ascontiguousarray(small))
    rendered = recolorizer.render_array(dataclasses.replace(prepared, source=source), strength)
    return fit_lut(source.rgb, rendered, size=size, max_samples=max_samples)


# ---------------------------------------------------------------------------------------------- .cube


def _colour_io() -> Any:
    """colour-science's LUT I/O, or one line saying how to install it."""
    try:
        from colour.io import luts
    except ImportError:
        raise UserError(
            "reading and writing .cube files needs colour-science: pip install 'recolorize[lut]'"
        ) from None
    return luts


def write_cube(lut: Lut3D, path: str | os.PathLike[str], overwrite: bool = True) -> Path:
    """Write ``lut`` as an Adobe/Resolve ``.cube`` (``LUT_3D_SIZE``, red fastest) atomically.

    A LUT with a non-default domain is written with ``DOMAIN_MIN``/``DOMAIN_MAX``; one with 1D curves in
    Resolve's shaper layout. Refuses (``UserError``) an existing file unless ``overwrite``.
    """
    from recolorize.io_utils import atomic_write

    target = Path(path)
    if target.is_dir():
        raise UserError(f"{target} is a folder; give a file name for the LUT")
    if target.exists() and not overwrite:
        raise UserError(f"{target} already exists; choose another output or pass --overwrite")
    luts = _colour_io()
    cube = luts.LUT3D(lut.table.astype(np.float64), lut.title, lut.domain)
    item: Any = cube
    method = "Iridas Cube"
    if lut.curves is not None:
        shaper = luts.LUT3x1D(lut.curves.astype(np.float64), f"{lut.title} shaper", lut.curves_domain)
        item, method = luts.LUTSequence(shaper, cube), "Resolve Cube"
    try:
        with atomic_write(target, suffix=".cube") as tmp:
            luts.write_LUT(item, tmp, decimals=7, method=method)
    except OSError as exc:
        raise UserError(f"cannot write {target}: {one_line(exc.strerror or exc)}") from None
    return target


def _check_cube_file(path: Path) -> None:
    """Refuse before parsing what cannot be a usable ``.cube``: not a regular file, too large, binary,
    or without a size line."""
    from recolorize.imaging import check_regular_file

    check_regular_file(path, "LUT")
    try:
        size = path.stat().st_size
        if size > MAX_CUBE_BYTES:
            raise LutError(
                f"LUT {path} is {size >> 20} MB; .cube files over {MAX_CUBE_BYTES >> 20} MB are refused"
            )
        with path.open("rb") as handle:
            head = handle.read(1 << 16)
    except OSError as exc:
        raise LutError(f"cannot read LUT {path}: {one_line(exc.strerror or exc)}") from None
    if b"\x00" in head:
        raise LutError(f"LUT {path} is not a .cube file (binary data)")
    with path.open("rb") as handle:
        if not any(line.lstrip().startswith((b"LUT_3D_SIZE", b"LUT_1D_SIZE")) for line in handle):
            raise LutError(f"LUT {path} is not a .cube file (no LUT_3D_SIZE or LUT_1D_SIZE line)")


def read_cube(path: str | os.PathLike[str]) -> Lut3D:
    """Read a ``.cube`` file (Adobe/Iridas or Resolve: 3D, 1D, or a 1D shaper followed by a 3D LUT).

    Every problem (missing, not a LUT, malformed rows, a wrong number of entries, non-finite values, an
    unsupported layout) raises :class:`LutError`, a ``UserError`` with one line naming the file.
    """
    target = Path(path)
    _check_cube_file(target)
    luts = _colour_io()
    try:
        item = luts.read_LUT(str(target), method="Iridas Cube")
    except Exception as exc:  # noqa: BLE001 - the reader's errors on hostile files vary; one line each
        raise LutError(f"LUT {target} is a malformed .cube file ({_reason(exc)})") from None
    try:
        return _from_colour(luts, item, target.stem)
    except (ValueError, TypeError) as exc:
        raise LutError(f"LUT {target} cannot be used: {one_line(exc)}") from None


def _reason(exc: BaseException) -> str:
    """The reader's error in the words of the file: a wrong row count or a row that is not 3 numbers."""
    cause = exc.__cause__ or exc.__context__ or exc
    text = str(cause)
    rows = re.search(r"cannot reshape array of size (\d+) into shape \((\d+), ?\d+, ?\d+, ?3\)", text)
    if rows:
        found, size = int(rows.group(1)), int(rows.group(2))
        return f"{found / 3:g} colour rows where LUT_3D_SIZE {size} needs {size**3}"
    if "inhomogeneous" in text:
        return "a row does not hold 3 numbers"
    return one_line(text or type(cause).__name__)


def _from_colour(luts: Any, item: Any, title: str) -> Lut3D:
    """colour-science's LUT objects -> :class:`Lut3D` (a 1D LUT becomes curves before an identity cube)."""
    parts = list(item) if isinstance(item, luts.LUTSequence) else [item]
    curves = curves_domain = None
    cube = None
    for part in parts:
        if isinstance(part, luts.LUT1D):
            part = part.convert(luts.LUT3x1D)
        if isinstance(part, luts.LUT3x1D) and cube is None and curves is None:
            curves, curves_domain = np.asarray(part.table), np.asarray(part.domain)
        elif isinstance(part, luts.LUT3D) and cube is None:
            cube = part
        else:
            raise ValueError(f"unsupported LUT layout ({' then '.join(type(p).__name__ for p in parts)})")
    values = [v for v in (curves, None if cube is None else cube.table) if v is not None]
    if not all(np.all(np.isfinite(np.asarray(v, dtype=np.float64))) for v in values):
        raise ValueError("it holds non-finite values")
    if cube is None:  # curves alone: an identity cube of size 2 reproduces them exactly
        return Lut3D(_lattice(2), curves=curves, curves_domain=curves_domain, title=title)
    return Lut3D(
        np.asarray(cube.table),
        np.asarray(cube.domain),
        curves=curves,
        curves_domain=curves_domain,
        title=title,
    )
