"""Carry a re-colouring rendered on a smaller copy up to the photo's own size (NumPy).

The pointwise generator re-colours every pixel it is given; a photo over ``DIRECT_MAX_PIXELS`` is rendered
on a copy of ``CARRY_PIXELS`` instead, and the change carried to full size by a *local affine colour
transform* fitted on the copy (the colour-transform form of guided filtering, He et al., and of bilateral
guided upsampling, Chen et al. 2016): the transform is smooth in space, the detail comes from the source.

Per copy pixel ``k`` and the box window ``w_k`` of radius ``radius`` around it::

    min_{D, c}  sum_{i in w_k} || d_i - D p_i - c ||^2  +  n_k eps ||D||_F^2

with ``p`` the copy and ``d`` the rendering minus the copy; out = p + D p + c. Fitting the *difference* makes
an unchanged rendering give D = 0, c = 0 exactly. The coefficients are box-smoothed (the guided filter's
second pass), bilinearly upsampled to the full size (pixel centres aligned) and applied tile by tile, so
memory stays bounded at any size. The maths is ``docs/architecture.md``'s carry-up, measured there
(``benchmarks/carry_fidelity.py``: radius 1, eps 1e-6 on a 0.066-MP copy).
"""

from __future__ import annotations

import numpy as np

from recolorize.threads import cores, in_threads, return_free_memory

__all__ = ["CARRY_EPS", "CARRY_RADIUS", "apply_affine", "carry_up", "fit_local_affine"]

#: Window radius (copy pixels) and ridge toward the identity ((colour units)^2): measured against the
#: direct rendering of whole 1.2-MP photos (``benchmarks/carry_fidelity.py``): on the 0.066-MP copy, eps
#: 1e-6 is closer (mean dE2000 1.06) than 3e-6 (1.37), which suited the earlier 0.26-MP copy.
CARRY_RADIUS = 1
CARRY_EPS = 1e-6
#: Photo pixels blended at a time in the full-size pass (whole rows): measured fastest at 1 and 12 MP.
APPLY_PIXELS = 96_000
#: Copy rows fitted at a time (plus ``2 radius`` rows above and below): ~40 float64 planes of a strip of
#: a 0.26-MP copy stay ~10 MB.
FIT_STRIP_ROWS = 32


def _box_axis(x: np.ndarray, radius: int, axis: int) -> np.ndarray:
    """Mean over the ``2 radius + 1`` samples around each one along ``axis`` (those inside the image), by a
    running sum with zeros before it and its last value repeated after it: each window's sum is one
    difference of two shifted views, O(1) per sample whatever the radius."""
    x = np.moveaxis(x, axis, 0)
    n = x.shape[0]
    padded = np.empty((n + 2 * radius + 1, *x.shape[1:]), dtype=x.dtype)
    padded[: radius + 1] = 0.0
    np.cumsum(x, axis=0, out=padded[radius + 1 : radius + 1 + n])
    padded[radius + 1 + n :] = padded[radius + n]
    sums = padded[2 * radius + 1 :] - padded[:n]
    index = np.arange(n)
    count = (np.minimum(index + radius + 1, n) - np.maximum(index - radius, 0)).astype(x.dtype)
    sums /= count.reshape(-1, *[1] * (x.ndim - 1))
    return np.moveaxis(sums, 0, axis)


def _box_axis_3(x: np.ndarray, axis: int) -> np.ndarray:
    """``_box_axis`` for radius 1 (the shipped one): each sample plus its two neighbours, by two shifted
    additions (~2.5x faster than the running sum, which walks the moved axis), the same means to 1e-14."""
    count_shape = [1] * x.ndim
    count_shape[axis] = n = x.shape[axis]

    def part(start: int | None, stop: int | None) -> tuple[slice, ...]:
        return tuple(slice(start, stop) if i == axis else slice(None) for i in range(x.ndim))

    sums = x.copy()
    if n > 1:
        sums[part(1, None)] += x[part(None, -1)]
        sums[part(None, -1)] += x[part(1, None)]
    count = np.full(n, 3.0, dtype=x.dtype)
    count[0] = count[-1] = min(2, n)
    sums /= count.reshape(count_shape)
    return sums


def _box(x: np.ndarray, radius: int) -> np.ndarray:
    """Mean over a (2r+1)^2 window of the last two axes, renormalised at the borders (separable)."""
    if radius <= 0:
        return x
    if radius == 1:
        return _box_axis_3(_box_axis_3(x, x.ndim - 1), x.ndim - 2)
    return _box_axis(_box_axis(x, radius, -1), radius, -2)


def fit_local_affine(
    before: np.ndarray, after: np.ndarray, radius: int = CARRY_RADIUS, eps: float = CARRY_EPS
) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel ``after ~ (I + D) before + c`` on the copy: D as (3, 3, h, w) (row = output channel) and c
    as (3, h, w), float32, box-smoothed. before, after: (h, w, 3) in [0, 1].

    In strips of ``FIT_STRIP_ROWS`` rows (each with the ``2 radius`` rows above and below that its values
    depend on), a few at once: the ~40 float64 planes of a strip stay in cache and memory stays ~10 MB
    whatever the copy's size; rows agree with a whole-copy fit to float64 rounding."""
    if before.shape != after.shape or before.ndim != 3 or before.shape[2] != 3:
        raise ValueError(f"before and after must both be (h, w, 3); got {before.shape} and {after.shape}")
    height, width = before.shape[:2]
    dmat = np.empty((3, 3, height, width), dtype=np.float32)
    c = np.empty((3, height, width), dtype=np.float32)
    halo = 2 * radius  # rows a kept row depends on: radius for the means, radius more for the smoothing

    def fit_strip(top: int) -> None:
        bottom = min(height, top + FIT_STRIP_ROWS)
        first, end = max(0, top - halo), min(height, bottom + halo)
        part_d, part_c = _fit_rows(before[first:end], after[first:end], radius, eps)
        dmat[:, :, top:bottom] = part_d[:, :, top - first : bottom - first]
        c[:, top:bottom] = part_c[:, top - first : bottom - first]

    in_threads(fit_strip, range(0, height, FIT_STRIP_ROWS))
    return dmat, c


def _fit_rows(
    before: np.ndarray, after: np.ndarray, radius: int, eps: float
) -> tuple[np.ndarray, np.ndarray]:
    """``fit_local_affine`` on a strip of rows, whose first and last ``2 radius`` rows are right only at the
    copy's own border (the caller keeps the rows in between). Float64: the covariances are differences of
    means; each symmetric 3x3 system is solved by its adjugate."""
    p = np.moveaxis(before.astype(np.float64), -1, 0)
    d = np.moveaxis(after.astype(np.float64), -1, 0) - p
    pairs = [(0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2)]
    products = [p[j] * p[k] for j, k in pairs] + [p[j] * d[i] for j in range(3) for i in range(3)]
    means = _box(np.concatenate([p, d, np.stack(products)]), radius)
    mean_p, mean_d = means[0:3], means[3:6]
    a = [means[6 + n] - mean_p[j] * mean_p[k] for n, (j, k) in enumerate(pairs)]
    for n in (0, 3, 5):  # the diagonal: (Sigma_pp + eps I)
        a[n] = a[n] + eps
    pd = [[means[12 + j * 3 + i] - mean_p[j] * mean_d[i] for i in range(3)] for j in range(3)]
    a00, a01, a02, a11, a12, a22 = a
    adjugate = [
        [a11 * a22 - a12 * a12, a02 * a12 - a01 * a22, a01 * a12 - a02 * a11],
        [a02 * a12 - a01 * a22, a00 * a22 - a02 * a02, a01 * a02 - a00 * a12],
        [a01 * a12 - a02 * a11, a01 * a02 - a00 * a12, a00 * a11 - a01 * a01],
    ]
    inv_det = 1.0 / (a00 * adjugate[0][0] + a01 * adjugate[0][1] + a02 * adjugate[0][2])
    # (Sigma_pp + eps I) D^T = Sigma_pd; D[i, j] = D^T[j, i]
    dmat = np.empty((3, 3, *p.shape[1:]))
    for j in range(3):
        for i in range(3):
            dmat[i, j] = (
                adjugate[j][0] * pd[0][i] + adjugate[j][1] * pd[1][i] + adjugate[j][2] * pd[2][i]
            ) * inv_det
    c = mean_d - np.einsum("ijhw,jhw->ihw", dmat, mean_p)
    smoothed = _box(np.concatenate([dmat.reshape(9, *p.shape[1:]), c]), radius).astype(np.float32)
    return smoothed[:9].reshape(3, 3, *p.shape[1:]), smoothed[9:]


def _interp_index(n_out: int, n_in: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Neighbour indices and weight of pixel-centre-aligned bilinear sampling along one axis."""
    position = np.clip((np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5, 0.0, n_in - 1)
    low = np.floor(position).astype(np.int64)
    high = np.minimum(low + 1, n_in - 1)
    return low, high, (position - low).astype(np.float32)


def apply_affine(source: np.ndarray, dmat: np.ndarray, c: np.ndarray, out: np.ndarray) -> None:
    """``out = src + D(x) src + c(x)`` clipped, with D, c bilinearly upsampled to the source's size (pixel
    centres aligned). source: (H, W, 3) float32 in [0, 1], or uint8 samples (an 8-bit photo's: each block
    of rows is made float as it is used, so the photo never is); out: (H, W, 3) float32 in [0, 1], or uint8
    (``round(x * 255)``, what saving the float result writes). D and c must be finite (``carry_up`` checks).

    Why it is laid out so: the work is ~50 operations a pixel, so it is bound by how NumPy walks memory
    and by how many calls it makes. The photo is split into pieces of rows (a few per thread); a piece
    upsamples the coefficient rows it spans along x once; then, for blocks of ``APPLY_PIXELS``, the photo
    rows that lie between the same two coefficient rows get theirs in two broadcast operations (row
    weight x the rows' difference, plus the upper row), and the channels are planes, so every operation
    runs along whole rows (channels-last, the inner loops were 3 long: twice the time). 12 MP on 2 cores:
    ~0.11 s, against ~0.16 s gathering each row's two coefficient rows and ~0.35 s for tiles of
    interleaved channels. Each piece writes its own rows.
    """
    height, width = source.shape[:2]
    h, w = c.shape[-2:]
    # (12, h, w): D row-major (D[i, j] at 3 i + j), then c
    coeff = np.concatenate([dmat.reshape(9, h, w), c]).astype(np.float32)
    x_low, x_high, x_weight = _interp_index(width, w)
    y_low, y_high, y_weight = _interp_index(height, h)
    quantise = out.dtype == np.uint8
    block = max(1, APPLY_PIXELS // max(1, width))

    def piece(top: int, bottom: int) -> None:
        first, last = int(y_low[top]), int(y_high[bottom - 1])
        rows = coeff[:, first : last + 1]  # (12, n, w): the coefficient rows this piece's rows lie between
        upsampled = rows[:, :, x_high]
        low = rows[:, :, x_low]
        upsampled -= low
        upsampled *= x_weight
        upsampled += low
        along = np.ascontiguousarray(upsampled.transpose(1, 0, 2))  # (n, 12, W)
        step = np.zeros_like(along)  # row r + 1 minus row r (0 after the last: y_high = y_low there)
        np.subtract(along[1:], along[:-1], out=step[:-1])
        coefficients = np.empty((block, 12, width), dtype=np.float32)
        for start in range(top, bottom, block):
            end = min(bottom, start + block)
            lows = y_low[start:end] - first
            cuts = [0, *(np.flatnonzero(np.diff(lows)) + 1).tolist(), end - start]
            for a, b in zip(cuts[:-1], cuts[1:], strict=True):  # rows between the same coefficient rows
                row = int(lows[a])
                part = coefficients[a:b]  # row y_low + wy (row y_high - row y_low)
                np.multiply(y_weight[start + a : start + b, None, None], step[row], out=part)
                part += along[row]
            used = coefficients[: end - start].transpose(1, 0, 2)
            _affine_rows(source[start:end], used, out[start:end], quantise)

    blocks = -(-height // block)
    pieces = max(1, min(blocks, 4 * cores()))
    edges = [min(height, round(k * blocks / pieces) * block) for k in range(pieces + 1)]
    in_threads(
        lambda span: piece(*span), [(a, b) for a, b in zip(edges[:-1], edges[1:], strict=True) if b > a]
    )


def _affine_rows(source: np.ndarray, coefficients: np.ndarray, out: np.ndarray, quantise: bool) -> None:
    """Rows of ``apply_affine``: source (rows, W, 3), coefficients (12, rows, W) -> out (rows, W, 3).

    8-bit samples are divided by 255 as ``LoadedImage.rgb`` divides them, and the 8-bit result is
    ``round(clip(x) * 255)`` as ``to_uint8`` computes it, so the uint8 and float outputs of an 8-bit or a
    float source are the same numbers. Finite inputs give finite results, so no NaN is looked for here
    (``np.nan_to_num`` on every pixel took a quarter of the pass)."""
    if source.dtype == np.uint8:
        planes = [np.divide(source[:, :, j], np.float32(255.0), dtype=np.float32) for j in range(3)]
    else:
        planes = [np.ascontiguousarray(source[:, :, j], dtype=np.float32) for j in range(3)]
    result = np.empty_like(planes[0])
    product = np.empty_like(result)
    for i in range(3):
        np.add(planes[i], coefficients[9 + i], out=result)
        for j in range(3):
            result += np.multiply(coefficients[3 * i + j], planes[j], out=product)
        np.clip(result, 0.0, 1.0, out=result)
        if quantise:
            result *= np.float32(255.0)
            np.rint(result, out=result)
        out[:, :, i] = result


def carry_up(
    source: np.ndarray, copy: np.ndarray, rendered: np.ndarray, out: np.ndarray, trim: bool = False
) -> None:
    """Write into ``out`` (the source's size, float32 or uint8) the change ``copy -> rendered`` fitted on the
    copy and applied to ``source`` (module docstring). ``trim``: hand the fit's freed strips back to the
    system before the full-size pass (a large photo: ``pipeline.TRIM_PIXELS``)."""
    dmat, c = fit_local_affine(copy, rendered, CARRY_RADIUS, CARRY_EPS)
    if not (np.isfinite(dmat).all() and np.isfinite(c).all()):  # on the copy's grid, not every pixel
        raise ValueError("the carry-up's local colour transform is not finite (non-finite copy or rendering)")
    if trim:
        return_free_memory()
    apply_affine(source, dmat, c, out)
