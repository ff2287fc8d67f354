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
from recolorize.prior import PRIOR_SIZE, descriptors, fit_prior, network_input

__all__ = ["prior_copy", "prior_descriptors", "pair_prior", "lattice_tensor"]


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


def pair_prior(
    semantic: torch.nn.Module,
    source: np.ndarray | torch.Tensor,
    references: Sequence[np.ndarray | torch.Tensor],
    reference_descriptors: Sequence[np.ndarray] | None = None,
) -> np.ndarray:
    """The prior lattice (S, S, S, 3) of a source and one or more references (photos at any size).

    Several references are matched as one canvas, side by side, so each source cell takes its colour from
    its best match in any of them. ``reference_descriptors``: computed before for these references (a folder
    re-coloured after one reference).
    """
    source_copy = prior_copy(source)
    reference_copies = [prior_copy(r) for r in references]
    if reference_descriptors is None:
        described = prior_descriptors(semantic, [source_copy, *reference_copies])
        source_desc, reference_desc = described[0], described[1:]
    else:
        source_desc, reference_desc = (
            prior_descriptors(semantic, [source_copy])[0],
            list(reference_descriptors),
        )
    canvas = np.concatenate(reference_copies, axis=1)
    # the canvas's cells row by row: each reference's rows of cells sit side by side
    rows = PRIOR_SIZE // 8
    joined = np.concatenate([d.reshape(rows, -1, d.shape[-1]) for d in reference_desc], axis=1)
    fit, _ = fit_prior(source_copy, canvas, source_desc, joined.reshape(-1, joined.shape[-1]))
    return fit.lattice


def lattice_tensor(
    lattice: np.ndarray | Sequence[np.ndarray], device: torch.device | str = "cpu"
) -> torch.Tensor:
    """Lattices (S, S, S, 3) as the generator's prior tensor (B, 3, S, S, S) ([b, c, r, g, b] order)."""
    stacked = np.stack([lattice] if isinstance(lattice, np.ndarray) else list(lattice))
    return torch.from_numpy(stacked).permute(0, 4, 1, 2, 3).contiguous().to(device)
