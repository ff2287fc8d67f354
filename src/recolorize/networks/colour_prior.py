"""Classical colour priors as torch maps: the base the pointwise generator's residual is added to.

Pitie & Kokaram's linear Monge-Kantorovich map (MKL) sends the source's RGB mean and covariance to the
reference's with the least colour displacement. It is a global 3x4 affine map, so it is fitted once at the
working resolution and applied exactly at any resolution (design.md: "with a classical prior the model starts
at classical quality and learns local corrections"). The numbers equal ``evaluation.baselines.mkl_map``.

An affine map is stored as ``(B, 3, 4)``: ``out = M @ rgb + t`` with ``[M | t]`` (column-vector convention).
"""

from __future__ import annotations

import torch

__all__ = ["identity_affine", "mkl_affine", "apply_colour_affine", "lerp_affine"]


def identity_affine(batch: int, device: torch.device | None = None, dtype: torch.dtype = torch.float32):
    """[I | 0] for every item: the prior of a self-reconstruction (MKL of an image onto itself)."""
    eye = torch.eye(3, 4, device=device, dtype=dtype)
    return eye.expand(batch, 3, 4).clone()


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


def apply_colour_affine(affine: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """``M @ rgb + t`` per pixel: affine (B, 3, 4), image (B, 3, H, W) -> (B, 3, H, W), not clipped."""
    out = torch.einsum("bij,bjhw->bihw", affine[:, :, :3].to(image.dtype), image)
    return out + affine[:, :, 3, None, None].to(image.dtype)


def lerp_affine(affine: torch.Tensor, strength: float) -> torch.Tensor:
    """The map ``strength`` of the way from the identity to ``affine`` (0 = identity, 1 = ``affine``)."""
    return identity_affine(affine.shape[0], affine.device, affine.dtype).lerp(affine, strength)
