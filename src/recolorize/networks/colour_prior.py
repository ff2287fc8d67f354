"""Classical colour priors as torch maps: the base the pointwise generator's residual is added to.

Global colour maps (docs/architecture.md, "Design decisions": "with a classical prior the model starts
at classical quality and learns local corrections"), fitted once at the working resolution and applied
exactly at any resolution:

- ``correspondence_map`` (the default model's): a robust least-squares fit of reference colour against
  source colour over the cells that P_W's 1/8 correspondence matches both ways. Where the two photos show
  the same thing, their colour difference *is* the grade; regions the reference does not show, or changed
  locally, are outliers the reweighting discounts. Affine (degree 1) or with the six quadratic RGB terms
  (degree 2, which also follows a tone curve). On 60 held-out benchmark pairs at 128 px, MAE: affine 5.72,
  quadratic 5.35, MKL 8.76 (docs/model-card.md). Photos that share little content fall back toward MKL.
- ``mkl_affine``: Pitie & Kokaram's linear Monge-Kantorovich map sends the source's RGB mean and covariance
  to the reference's with the least colour displacement (no correspondence). The numbers equal
  ``evaluation.baselines.mkl_map``.

A map is stored as coefficients ``(B, 3, K)`` over the colour terms of :func:`colour_terms`, the constant
last: K = 4 is the affine ``out = M @ rgb + t`` as ``[M | t]`` (column-vector convention), K = 10 adds the
quadratic terms as ``[M | Q | t]``. The identity is ``[I | 0]`` for either.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = [
    "identity_affine",
    "mkl_affine",
    "correspondence_map",
    "colour_terms",
    "mutual_matches",
    "apply_colour_affine",
    "apply_lattice_torch",
    "is_lattice",
    "lerp_affine",
]

#: Colour terms (the constant included) of a map of each degree: [r g b 1], [r g b r2 g2 b2 rg rb gb 1].
TERMS = {1: 4, 2: 10}


def colour_terms(rgb: torch.Tensor, degree: int, dim: int = -1) -> torch.Tensor:
    """The terms a colour map of ``degree`` is linear in, along ``dim`` (where ``rgb`` has its 3 channels),
    without the constant: r, g, b (degree 1), then r^2, g^2, b^2, rg, rb, gb (degree 2)."""
    if degree == 1:
        return rgb
    r, g, b = rgb.unbind(dim)
    return torch.stack([r, g, b, r * r, g * g, b * b, r * g, r * b, g * b], dim)


def identity_affine(
    batch: int, device: torch.device | None = None, dtype: torch.dtype = torch.float32, terms: int = 4
) -> torch.Tensor:
    """[I | 0] for every item (``terms`` coefficients per channel): the prior of a self-reconstruction."""
    eye = torch.eye(3, terms, device=device, dtype=dtype)
    return eye.expand(batch, 3, terms).clone()


def _sqrtm_psd(matrix: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    values, vectors = torch.linalg.eigh(matrix)
    root = (values.clamp_min(0.0) + eps).sqrt()
    square_root = (vectors * root[..., None, :]) @ vectors.transpose(-1, -2)
    inverse_root = (vectors / root[..., None, :]) @ vectors.transpose(-1, -2)
    return square_root, inverse_root


@torch.no_grad()
def mkl_affine(source: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """MKL map from ``source`` (B, 3, H, W) to ``reference`` (B, 3, h, w) colours, (B, 3, 4); float64 inside.

    M = S^-1/2 (S^1/2 R S^1/2)^1/2 S^-1/2 (symmetric), t = mu_R - M mu_S; S, R the RGB covariances.
    No gradients: the prior is an input, like the frozen features.
    """
    src = source.flatten(2).double()  # (B, 3, N)
    ref = reference.flatten(2).double()
    src_mean, ref_mean = src.mean(2, keepdim=True), ref.mean(2, keepdim=True)
    src_cov = (src - src_mean) @ (src - src_mean).transpose(1, 2) / src.shape[2]
    ref_cov = (ref - ref_mean) @ (ref - ref_mean).transpose(1, 2) / ref.shape[2]
    eps = float(torch.finfo(torch.float64).eps)
    src_root, src_inv_root = _sqrtm_psd(src_cov, eps)
    middle, _ = _sqrtm_psd(src_root @ ref_cov @ src_root, eps)
    matrix = src_inv_root @ middle @ src_inv_root
    matrix = (matrix + matrix.transpose(1, 2)) / 2.0
    offset = ref_mean - matrix @ src_mean
    return torch.cat([matrix, offset], dim=2).to(source.dtype)


def mutual_matches(attention: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For similarities (B, N_S, N_R): each source cell's best reference cell (B, N_S), and its weight
    (B, N_S): the similarity where the two cells are each other's best match (cycle-consistent), else 0."""
    best = attention.argmax(dim=2)
    back = attention.argmax(dim=1)  # each reference cell's best source cell
    own = torch.arange(attention.shape[1], device=attention.device)
    mutual = torch.gather(back, 1, best) == own[None, :]
    weight = attention.max(dim=2).values.clamp_min(0.0) * mutual.to(attention.dtype)
    return best, weight


@torch.no_grad()
def correspondence_map(
    source: torch.Tensor,
    reference: torch.Tensor,
    attention: torch.Tensor | None = None,
    source_grid: tuple[int, int] = (16, 16),
    reference_grid: tuple[int, int] | None = None,
    degree: int = 1,
    scale: float = 0.1,
    ridge: float = 1e-4,
    quadratic_ridge: float = 1e-3,
    iterations: int = 10,
    fallback: torch.Tensor | None = None,
    shared: tuple[float, float] = (0.1, 0.2),
) -> torch.Tensor:
    """The global colour map (B, 3, TERMS[degree]) that best sends source colours to the reference's along
    matches.

    source (B, 3, H, W), reference (B, 3, h, w) in [0, 1]; both are averaged over cells (``source_grid``,
    ``reference_grid``). attention: similarities (B, N_S, N_R) between those cells (P_W's 1/8 descriptors);
    None means the two images are aligned (cell i matches cell i, as in a stage-1 pair). Cells are paired by
    :func:`mutual_matches`; the map minimises sum_i w_i rho(|map(s_i) - r_i|) with Cauchy's rho (``scale``
    in RGB units) by ``iterations`` of reweighted least squares, with small ridges toward the identity
    (``ridge`` on M, ``quadratic_ridge`` on Q) so that a pair with few matches stays near doing nothing.
    float64 inside; no gradients (an input, like MKL).
    fallback: an affine map (B, 3, 4) the result gives way to when the photos share little content: the
    fitted map is trusted fully above a mean match weight of ``shared[1]`` and not at all below ``shared[0]``
    (not for a greyscale source). Held-out re-framed pairs stay above (10th percentile 0.23), DPST's related
    but different scenes fall between (0.07-0.15), where it lifted the mean HIS from 0.386 to 0.431 (MKL
    0.400) and left the benchmark unchanged.
    """
    src = F.adaptive_avg_pool2d(source.double(), source_grid).flatten(2).transpose(1, 2)  # (B, N_S, 3)
    if attention is None:
        ref = F.adaptive_avg_pool2d(reference.double(), source_grid).flatten(2).transpose(1, 2)
        prior_weight = torch.ones(src.shape[:2], dtype=torch.float64, device=source.device)
    else:
        grid = reference_grid if reference_grid is not None else source_grid
        cells = F.adaptive_avg_pool2d(reference.double(), grid).flatten(2).transpose(1, 2)  # (B, N_R, 3)
        if attention.shape[1:] != (src.shape[1], cells.shape[1]):
            raise ValueError(
                f"attention {tuple(attention.shape)} does not match {src.shape[1]} source and "
                f"{cells.shape[1]} reference cells"
            )
        best, prior_weight = mutual_matches(attention.double())
        ref = torch.gather(cells, 1, best[..., None].expand(-1, -1, 3))
    terms = colour_terms(src, degree)
    design = torch.cat([terms, torch.ones_like(src[..., :1])], dim=2)  # (B, N, K)
    ridges = [ridge] * 3 + [quadratic_ridge] * (terms.shape[2] - 3) + [1e-9]
    regulariser = torch.diag(torch.tensor(ridges, dtype=torch.float64, device=source.device))
    identity = torch.eye(design.shape[2], 3, dtype=torch.float64, device=source.device)
    weight = prior_weight
    for _ in range(iterations + 1):
        total = weight.sum(1).clamp_min(1e-9)[:, None, None]
        weighted = design * weight[..., None]
        lhs = weighted.transpose(1, 2) @ design + regulariser * total
        rhs = weighted.transpose(1, 2) @ ref + regulariser @ identity * total
        solution = torch.linalg.solve(lhs, rhs)  # (B, K, 3)
        residual = (design @ solution - ref).norm(dim=2)
        weight = prior_weight / (1.0 + (residual / scale) ** 2)
    fitted = solution.transpose(1, 2)
    if fallback is not None and attention is not None:
        # photos that share little content: few cells match both ways, and weakly; the map they give says
        # little, so it gives way to ``fallback`` (e.g. MKL) as the mean match weight falls from shared[1] to
        # shared[0] (held-out re-framed pairs: 10th percentile 0.23; DPST's unrelated scenes: 0.07-0.15)
        low, high = shared
        trust = ((prior_weight.mean(1) - low) / (high - low)).clamp(0.0, 1.0)
        # not for a greyscale source: its colour covariance is singular, and MKL's map then turns noise into
        # colour (blotches on DPST pair 8's grey statues)
        spread = (source.amax(dim=1) - source.amin(dim=1)).flatten(1).mean(1)
        trust = torch.where(spread < 0.02, torch.ones_like(trust), trust)[:, None, None]
        padded = torch.zeros_like(fitted)
        padded[:, :, :3] = fallback[:, :, :3].double()
        padded[:, :, -1] = fallback[:, :, 3].double()
        fitted = padded + trust * (fitted - padded)
    return fitted.to(source.dtype).contiguous()


def apply_lattice_torch(lattice: torch.Tensor, colours: torch.Tensor) -> torch.Tensor:
    """A prior lattice (B, 3, S, S, S) ([r, g, b] indices) at colours (B, 3, H, W) by trilinear
    interpolation (inputs clamped to [0, 1]), (B, 3, H, W); the NumPy twin is ``prior.apply_lattice``."""
    grid = colours.clamp(0.0, 1.0).flip(1).permute(0, 2, 3, 1)[:, None] * 2.0 - 1.0  # (B, 1, H, W, [b g r])
    out = F.grid_sample(lattice.to(colours.dtype), grid, mode="bilinear", align_corners=True)
    return out[:, :, 0]


def is_lattice(prior: torch.Tensor) -> bool:
    """Whether a prior tensor is a lattice (B, 3, S, S, S) rather than coefficients (B, 3, K)."""
    return prior.dim() == 5


def apply_colour_affine(affine: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """A colour map (B, 3, K) per pixel of image (B, 3, H, W) -> (B, 3, H, W), not clipped: ``M @ rgb + t``
    for an affine map (K = 4), plus ``Q @ quadratic terms`` for a degree-2 map (K = 10); a lattice
    (B, 3, S, S, S) by trilinear interpolation."""
    if is_lattice(affine):
        return apply_lattice_torch(affine, image)
    coefficients = affine.to(image.dtype)
    out = torch.einsum("bij,bjhw->bihw", coefficients[:, :, :3], image)
    if coefficients.shape[2] == TERMS[2]:
        quadratic = colour_terms(image, 2, dim=1)[:, 3:]
        out = out + torch.einsum("bij,bjhw->bihw", coefficients[:, :, 3:-1], quadratic)
    elif coefficients.shape[2] != TERMS[1]:
        raise ValueError(f"a colour map has 4 or 10 coefficients per channel, got {coefficients.shape[2]}")
    return out + coefficients[:, :, -1, None, None]


def lerp_affine(affine: torch.Tensor, strength: float) -> torch.Tensor:
    """The map ``strength`` of the way from the identity to ``affine`` (0 = identity, 1 = ``affine``); the
    maps are linear in their coefficients, so this is also the blend of their outputs."""
    if is_lattice(affine):
        from recolorize.prior import identity_lattice

        identity = torch.from_numpy(identity_lattice(affine.shape[-1])).permute(3, 0, 1, 2)
        return identity.to(affine.device, affine.dtype)[None].expand_as(affine).lerp(affine, strength)
    identity = identity_affine(affine.shape[0], affine.device, affine.dtype, affine.shape[2])
    return identity.lerp(affine, strength)
