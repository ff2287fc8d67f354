"""Full-resolution transfer: carry a low-resolution re-colouring onto the original photo.

The generator works at 256x256; a photo is often 12 megapixels. Upsampling the generator's output would blur
every detail, so instead (docs/architecture.md, "Design decisions", data flow at inference) we fit, at the
working resolution, a *local affine colour transform* that maps the generator's self-reconstruction of the
source (``before_low``) to its re-coloured result (``after_low``), and apply that transform to the original
full-resolution source. This is the colour-transform form of guided filtering (He et al., "Guided Image
Filtering", the multi-channel case) and of bilateral guided upsampling (Chen et al. 2016): the transform is
smooth in space, the detail comes from the source itself.

Per low-resolution pixel ``k`` we solve, over the box window ``w_k`` of radius ``radius``::

    min_{D, c}  sum_{i in w_k} || d_i - D p_i - c ||^2  +  n_k * eps * ||D||_F^2

with ``p = before_low``, ``d = after_low - before_low``. The per-pixel transform is then
``out = p + D p + c = (I + D) p + c``: an affine map ``A = I + D``, ``b = c``, i.e. the ridge term
pulls ``A`` toward the identity, ``A = (Sigma_pp + eps I)^-1 (Sigma_pq + eps I)`` (transposed into the
row convention). Because the fit is on the *difference*, ``before == after`` gives ``D = 0`` and
``c = 0`` bit-exactly, so a strength of 0 returns the source unchanged. Flat windows (variance below
``eps``) fall back to a colour shift, which is what a flat patch can support.

The coefficients are box-smoothed (every pixel is covered by many windows; averaging them is the
guided filter's second pass), bilinearly upsampled to the full size (pixel-centre aligned, the same
convention as ``imaging.resize_for_network``) and applied in row tiles, so memory stays bounded for any
size.
"""

from __future__ import annotations

import logging
import math

import torch
import torch.nn.functional as F

from recolorize.torch_inference.parallel import for_each

__all__ = [
    "DEFAULT_EPS",
    "DEFAULT_RADIUS",
    "DEFAULT_TILE_PIXELS",
    "apply_affine",
    "fit_local_affine",
    "full_resolution_transfer",
]

logger = logging.getLogger(__name__)

#: Window radius in working-resolution pixels: 3 gives 7x7 windows (49 samples per fit), a transform
#: that can change every ~1/40 of a 256-px image. Measured on DPST photos (1000x750, fitted at 256)
#: with known global and half-image colour changes plus Gaussian noise (sigma 0.01) on the
#: low-resolution result: radius 1 / 2 / 4 gave MAE 0.86 / 0.53 / 0.33 (0-255 scale) away from the
#: seam; larger radii average generator noise better but blur local changes; 3 is the compromise.
DEFAULT_RADIUS = 3
#: Ridge weight toward the identity, in (colour units)^2: 3e-5 is a standard deviation of ~0.0055
#: (1.4 grey levels). Windows with weaker texture than that are fitted mostly as a colour shift.
#: At radius 3 on DPST in1 (same protocol): eps 2e-5 / 3e-5 / 1e-4 gave MAE 0.11 / 0.13 / 0.19 and
#: mean-gradient error +0.7 / +0.9 / +1.5 % without noise, MAE 0.71 / 0.67 / 0.63 with sigma 0.02 noise.
DEFAULT_EPS = 3e-5
#: Full-resolution pixels per application tile (rows = this // width): the 12-channel coefficient tile
#: is then ~3 MB, small enough to stay in cache between the multiply-adds, and the tiles that run at once
#: (``parallel.for_each``) add little memory.
DEFAULT_TILE_PIXELS = 1 << 16
#: Rows of the working resolution fitted at a time (plus 2 radius rows above and below): the ~21 float64
#: channels of a strip then stay in cache (3x faster at 0.5 MP, and ~50 MB less memory than the whole
#: image at once). Rows agree with a whole-image fit to float64 rounding (the float32 results to an ulp).
#: 16 rows: at 0.26 MP and radius 1, one thread, 0.056 s against 0.069 s for 8 (fewer strips to
#: dispatch) and 0.121 s for 64 (out of cache).
FIT_STRIP_ROWS = 16


def _box_axis(x: torch.Tensor, radius: int, dim: int) -> torch.Tensor:
    """Mean over the ``2 radius + 1`` samples around each one along ``dim`` (those inside the image).

    A running sum with zeros before it and its last value repeated after it, so each window's sum is one
    difference of two shifted views: O(1) per sample whatever the radius (float64 keeps it exact enough).
    """
    dim = dim % x.dim()
    n = x.shape[dim]
    total = torch.cumsum(x, dim)

    def repeat(value: torch.Tensor, count: int) -> torch.Tensor:
        return value.expand(*[count if d == dim else size for d, size in enumerate(value.shape)])

    last = total.narrow(dim, n - 1, 1)
    # padded[j] = total[min(j - radius - 1, n - 1)], and 0 for j <= radius (the empty sum)
    padded = torch.cat([repeat(torch.zeros_like(last), radius + 1), total, repeat(last, radius)], dim)
    sums = padded.narrow(dim, 2 * radius + 1, n) - padded.narrow(dim, 0, n)
    index = torch.arange(n, device=x.device)
    count = ((index + radius + 1).clamp(max=n) - (index - radius).clamp(min=0)).to(x.dtype)
    return sums.div_(count.view([n if d == dim else 1 for d in range(x.dim())]))


def _box(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Mean over a (2r+1)^2 window, renormalised at the borders (only valid pixels are averaged).

    Separable running sums: the valid count of a window is the product of the valid counts along each
    axis, so a 1-D mean along x then along y equals the 2-D mean, at O(1) per pixel whatever the radius
    (``avg_pool2d`` in float64 was ~0.5 s of a 12-MP transfer's fit at 0.5 MP).
    """
    if radius <= 0:
        return x
    return _box_axis(_box_axis(x, radius, -1), radius, -2)


def _solve_symmetric3(a: list[torch.Tensor], rhs: list[list[torch.Tensor]]) -> list[list[torch.Tensor]]:
    """Solve ``A X = B`` per pixel for a symmetric 3x3 ``A`` by its adjugate (Cramer's rule).

    a: the 6 unique entries (a00, a01, a02, a11, a12, a22), each (B, h, w); rhs[j][i]: B's entry (j, i).
    Returns X[j][i]. Why not ``torch.linalg.solve``: the batched LAPACK call on 0.5 M tiny systems cost
    more than the closed form; ``A`` is symmetric positive definite (covariance + eps I), so no pivoting
    is needed, and float64 keeps the ~1e3 condition number harmless.
    """
    a00, a01, a02, a11, a12, a22 = a
    c00 = a11 * a22 - a12 * a12
    c01 = a02 * a12 - a01 * a22
    c02 = a01 * a12 - a02 * a11
    c11 = a00 * a22 - a02 * a02
    c12 = a01 * a02 - a00 * a12
    c22 = a00 * a11 - a01 * a01
    inv_det = 1.0 / (a00 * c00 + a01 * c01 + a02 * c02)
    adjugate = [[c00, c01, c02], [c01, c11, c12], [c02, c12, c22]]
    return [
        [
            (adjugate[j][0] * rhs[0][i] + adjugate[j][1] * rhs[1][i] + adjugate[j][2] * rhs[2][i]) * inv_det
            for i in range(3)
        ]
        for j in range(3)
    ]


def fit_local_affine(
    before_low: torch.Tensor,
    after_low: torch.Tensor,
    radius: int = DEFAULT_RADIUS,
    eps: float = DEFAULT_EPS,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fit per-pixel ``after ~ (I + D) before + c`` at the working resolution.

    Returns ``D`` as ``(B, 3, 3, h, w)`` (row = output channel) and ``c`` as ``(B, 3, h, w)``, both
    float32 and already box-smoothed. The solve runs in float64: the covariances are differences of
    means (cancellation) and the cost at 256x256 is negligible.
    """
    if before_low.shape != after_low.shape or before_low.dim() != 4 or before_low.shape[1] != 3:
        raise ValueError(
            f"before_low and after_low must both be (B, 3, h, w); got {tuple(before_low.shape)} "
            f"and {tuple(after_low.shape)}"
        )
    if radius < 0 or not eps > 0:
        raise ValueError(f"radius must be >= 0 and eps > 0, got radius={radius}, eps={eps}")
    b, _, h, w = before_low.shape
    halo = 2 * radius  # rows a kept row's value depends on: r for the means, r more for the smoothing
    strip = max(1, FIT_STRIP_ROWS)
    if h <= strip + 2 * halo:
        return _fit_rows(before_low, after_low, radius, eps)
    dmat = torch.empty(b, 3, 3, h, w, dtype=torch.float32, device=before_low.device)
    c = torch.empty(b, 3, h, w, dtype=torch.float32, device=before_low.device)

    def fit_strip(top: int) -> None:
        bottom = min(h, top + strip)
        first, end = max(0, top - halo), min(h, bottom + halo)
        part_d, part_c = _fit_rows(before_low[:, :, first:end], after_low[:, :, first:end], radius, eps)
        dmat[..., top:bottom, :] = part_d[..., top - first : bottom - first, :]
        c[..., top:bottom, :] = part_c[..., top - first : bottom - first, :]

    for_each(fit_strip, range(0, h, strip), before_low.device)  # strips write disjoint rows
    return dmat, c


def _fit_rows(
    before_low: torch.Tensor, after_low: torch.Tensor, radius: int, eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """``fit_local_affine`` on a strip of rows, whose first and last ``2 radius`` rows are only valid at
    the image's own border (the caller keeps the rows in between)."""
    p = before_low.to(torch.float64)
    d = after_low.to(torch.float64) - p
    b, _, h, w = p.shape

    # Every window mean in one box filter: p (3), d (3), p_j p_k (6 unique), p_j d_i (9, index j*3 + i).
    pairs = [(0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2)]
    products = [p[:, j] * p[:, k] for j, k in pairs] + [p[:, j] * d[:, i] for j in range(3) for i in range(3)]
    means = _box(torch.cat([p, d, torch.stack(products, dim=1)], dim=1), radius)
    mean_p, mean_d = means[:, 0:3], means[:, 3:6]
    sigma = [means[:, 6 + n] - mean_p[:, j] * mean_p[:, k] for n, (j, k) in enumerate(pairs)]
    for n in (0, 3, 5):  # the diagonal: (Sigma_pp + eps I)
        sigma[n] = sigma[n] + eps
    pd = [[means[:, 12 + j * 3 + i] - mean_p[:, j] * mean_d[:, i] for i in range(3)] for j in range(3)]
    # Normal equations: (Sigma_pp + eps I) D^T = Sigma_pd; D^T is indexed [j, i], D[i, j] = D^T[j, i].
    dt = _solve_symmetric3(sigma, pd)
    dmat = torch.stack([torch.stack([dt[j][i] for j in range(3)], dim=1) for i in range(3)], dim=1)
    c = mean_d - torch.einsum("bijhw,bjhw->bihw", dmat, mean_p)

    smoothed = _box(torch.cat([dmat.reshape(b, 9, h, w), c], dim=1), radius)
    return smoothed[:, :9].reshape(b, 3, 3, h, w).to(torch.float32), smoothed[:, 9:].to(torch.float32)


def _interp_index(n_out: int, n_in: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Neighbour indices and weight of pixel-centre-aligned bilinear sampling along one axis."""
    scale = n_in / n_out
    pos = (torch.arange(n_out, dtype=torch.float64) + 0.5) * scale - 0.5
    pos = pos.clamp_(0.0, n_in - 1)
    lo = pos.floor().long()
    hi = (lo + 1).clamp_(max=n_in - 1)
    return lo, hi, (pos - lo).to(torch.float32)


def apply_affine(
    source_full: torch.Tensor,
    dmat: torch.Tensor,
    c: torch.Tensor,
    tile_rows: int | None = None,
    clamp: bool = True,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Apply ``out = src + D(x) src + c(x)`` with ``D, c`` bilinearly upsampled to the source's size.

    One pass over the photo, a tile of rows at a time (a few tiles at once, ``parallel.for_each``): the 12
    coefficient maps are interpolated for the tile only (along y at the working width, then along x by one
    ``F.interpolate``), applied with in-place multiply-adds into a float tile, and written to ``out``.
    No full-size float copy is made:
    ``source_full`` may be a view of the decoded photo (e.g. ``(H, W, 3)`` permuted) and ``out`` may be a
    ``uint8`` view of the file's sample buffer, in which case each tile is clamped and quantised as
    ``round(clamp(x, 0, 1) * 255)`` (what saving the float result does, bit for bit) before it is
    written. Without ``out`` a float32 tensor is returned, clamped to [0, 1] unless ``clamp`` is False.
    Every pixel's value is independent of the tiling.
    """
    if source_full.dim() != 4 or source_full.shape[1] != 3:
        raise ValueError(f"source_full must be (B, 3, H, W), got {tuple(source_full.shape)}")
    bsz, _, height, width = source_full.shape
    if dmat.shape[0] != bsz or c.shape[0] != bsz:
        raise ValueError(f"coefficients have batch {dmat.shape[0]}, source has {bsz}")
    if out is None:
        out = torch.empty(bsz, 3, height, width, dtype=torch.float32, device=source_full.device)
    elif tuple(out.shape) != tuple(source_full.shape) or out.dtype not in (torch.float32, torch.uint8):
        raise ValueError(f"out must be float32 or uint8 of shape {tuple(source_full.shape)}")
    quantise = out.dtype == torch.uint8
    if quantise and not clamp:
        raise ValueError("uint8 output is always clamped")
    h, w = c.shape[-2:]
    device = source_full.device
    # the 12 maps stay two tensors (no full copy of them): each tile gathers its rows of both
    maps = (dmat.reshape(bsz, 9, h, w).to(device, torch.float32), c.to(device, torch.float32))
    y_lo, y_hi, y_w = (t.to(device) for t in _interp_index(height, h))
    rows = max(1, int(tile_rows) if tile_rows else DEFAULT_TILE_PIXELS // max(1, width))

    def rows_of(index: torch.Tensor, n: int) -> torch.Tensor:
        return torch.cat([part[n].index_select(1, index) for part in maps], dim=0)  # (12, rows, w)

    def apply_tile(where: tuple[int, int]) -> None:
        n, y0 = where
        y1 = min(height, y0 + rows)
        ky = torch.lerp(rows_of(y_lo[y0:y1], n), rows_of(y_hi[y0:y1], n), y_w[y0:y1, None])
        k = F.interpolate(ky.reshape(1, 12 * (y1 - y0), w), size=width, mode="linear", align_corners=False)
        k = k.reshape(12, y1 - y0, width)
        s = source_full[n, :, y0:y1]
        if s.dtype != torch.float32 or not s.is_contiguous():
            s = s.to(torch.float32, memory_format=torch.contiguous_format)
        o = torch.empty(3, y1 - y0, width, dtype=torch.float32, device=device)  # the working tile
        for i in range(3):
            oi = o[i]
            torch.add(k[9 + i], s[i], out=oi)
            oi.addcmul_(k[3 * i], s[0]).addcmul_(k[3 * i + 1], s[1]).addcmul_(k[3 * i + 2], s[2])
        if clamp:
            o.clamp_(0.0, 1.0)
        if quantise:
            o.nan_to_num_(0.0).mul_(255.0).round_()
        out[n, :, y0:y1].copy_(o)

    # tiles write disjoint rows of ``out``: a few threads at once (parallel.for_each says why)
    for_each(apply_tile, [(n, y0) for n in range(bsz) for y0 in range(0, height, rows)], device)
    return out


def full_resolution_transfer(
    source_full: torch.Tensor,
    before_low: torch.Tensor,
    after_low: torch.Tensor,
    radius: int = DEFAULT_RADIUS,
    eps: float = DEFAULT_EPS,
    tile_rows: int | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Re-colour ``source_full`` (B, 3, H, W) the way ``before_low`` -> ``after_low`` was re-coloured.

    ``before_low`` is the generator's self-reconstruction of the source at the working resolution and
    ``after_low`` its re-coloured output there (both (B, 3, h, w) in [0, 1]). Fitting against the
    reconstruction rather than the resized source cancels the generator's own reconstruction error,
    so only the colour change is transferred. ``radius`` is in working-resolution pixels; ``eps`` is
    the ridge weight toward the identity (see the module docstring). Returns float32 in [0, 1], or
    ``out`` filled (float32 or uint8, see ``apply_affine``).
    """
    if before_low.shape[0] != source_full.shape[0]:
        raise ValueError(
            f"batch sizes differ: source {source_full.shape[0]}, low-resolution {before_low.shape[0]}"
        )
    dmat, c = fit_local_affine(before_low, after_low, radius=radius, eps=eps)
    out = apply_affine(source_full, dmat, c, tile_rows=tile_rows, out=out)
    if not logger.isEnabledFor(logging.DEBUG):
        return out
    logger.debug(
        "full-resolution transfer %s -> %s, radius %d, eps %g, max |D| %.3g",
        tuple(before_low.shape[-2:]),
        tuple(source_full.shape[-2:]),
        radius,
        eps,
        float(dmat.abs().max()) if dmat.numel() else math.nan,
    )
    return out
