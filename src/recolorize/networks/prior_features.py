"""The frozen network's part of the colour prior (``recolorize.prior``): each photo's ``PRIOR_SIZE`` copy and
its cell descriptors, and the fitted prior lattice as the tensor the pointwise generator reads.

The prior's maths is NumPy (``recolorize.prior``); only the EfficientNet-Lite0 pass runs here, on the copies
normalised per channel (``prior.network_input``), so the same function serves inference (from the photos)
and the training cache (from each triple's 384-px crops).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from recolorize.imaging.convert import resize_for_network
from recolorize.prior import (
    PRIOR_SIZE,
    LocalField,
    PairPrior,
    apply_local_field,
    descriptors,
    network_input,
    pair_prior,
)

__all__ = ["prior_copy", "prior_descriptors", "photos_prior", "lattice_tensor", "local_offsets"]


def prior_copy(rgb: np.ndarray | torch.Tensor, width: int = PRIOR_SIZE) -> np.ndarray:
    """The photo (H, W, 3) float in [0, 1] (or a (3, H, W) tensor) resized to ``PRIOR_SIZE`` x ``width``
    (antialiased), as float32 (PRIOR_SIZE, width, 3)."""
    tensor = torch.as_tensor(rgb)
    if tensor.shape[-1] == 3 and tensor.dim() == 3:
        tensor = tensor.permute(2, 0, 1)
    small = resize_for_network(tensor[None].float(), (PRIOR_SIZE, width))
    return small[0].permute(1, 2, 0).contiguous().numpy()


@torch.no_grad()
def prior_descriptors(semantic: torch.nn.Module, copies: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Cell descriptors (N, 152) of each copy (``prior_copy``), one network pass for copies of one size."""
    if not copies:
        return []
    inputs = torch.from_numpy(np.stack([network_input(c) for c in copies])).permute(0, 3, 1, 2)
    device = next(semantic.parameters()).device
    fine, coarse = semantic.pyramid(inputs.to(device).contiguous())
    fine, coarse = fine.float().cpu().numpy(), coarse.float().cpu().numpy()
    return [descriptors(fine[i], coarse[i]) for i in range(len(copies))]


def photos_prior(
    semantic: torch.nn.Module,
    source: np.ndarray | torch.Tensor,
    references: Sequence[np.ndarray | torch.Tensor],
    reference_descriptors: Sequence[np.ndarray] | None = None,
) -> PairPrior:
    """The prior (``recolorize.prior.pair_prior``: lattice and local field) of a source and one or more
    references (photos at any size), their descriptors from ``semantic`` in torch.
    ``reference_descriptors``: computed before for these references (a folder re-coloured after one
    reference)."""
    source_copy = prior_copy(source)
    reference_copies = [prior_copy(r) for r in references]
    if reference_descriptors is None:
        described = prior_descriptors(semantic, [source_copy, *reference_copies])
        source_desc, reference_desc = described[0], described[1:]
    else:
        source_desc = prior_descriptors(semantic, [source_copy])[0]
        reference_desc = list(reference_descriptors)
    return pair_prior(source_copy, reference_copies, source_desc, reference_desc)


def lattice_tensor(
    lattice: np.ndarray | Sequence[np.ndarray], device: torch.device | str = "cpu"
) -> torch.Tensor:
    """Lattices (S, S, S, 3) as the generator's prior tensor (B, 3, S, S, S) ([b, c, r, g, b] order)."""
    stacked = np.stack([lattice] if isinstance(lattice, np.ndarray) else list(lattice))
    return torch.from_numpy(stacked).permute(0, 4, 1, 2, 3).contiguous().to(device)


def local_offsets(image: torch.Tensor, offsets: torch.Tensor, colours: torch.Tensor) -> torch.Tensor:
    """The prior's local field sliced at every pixel of ``image`` (B, 3, H, W) (``prior.apply_local_field``,
    in NumPy, no gradient: an input like the lattice), from a batch of fields' ``offsets`` and ``colours``
    (B, h, w, 3), as (B, 3, H, W) on the image's device."""
    pixels = image.detach().float().permute(0, 2, 3, 1).cpu().numpy()
    fields = [
        apply_local_field(LocalField(o.float().cpu().numpy(), c.float().cpu().numpy()), p)
        for o, c, p in zip(offsets, colours, pixels, strict=True)
    ]
    return torch.from_numpy(np.stack(fields)).permute(0, 3, 1, 2).to(image.device, image.dtype)
