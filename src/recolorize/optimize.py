"""Online latent optimisation (SpaceEdit's inversion, used for the paper's Table 3).

Find the latent that makes the generator turn I_in into I_out: w* = argmin_w L1(G(I_in, w), I_out) for the
1d generator G, or the 20 maps {W^k} for the spatial generator G'. Adam on the latent only; the generator
stays fixed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from recolorize.config import NUM_STYLES
from recolorize.networks.generator import Generator

__all__ = ["OptimisationResult", "optimise_code", "optimise_maps"]


@dataclass
class OptimisationResult:
    """The optimised latent(s), the final output and the L1 error (0-1 scale) at every step."""

    latents: torch.Tensor | list[torch.Tensor]
    output: torch.Tensor
    history: list[float]


def _run(
    generator: Generator,
    image_in: torch.Tensor,
    image_out: torch.Tensor,
    params: list[torch.Tensor],
    latents_fn,
    steps: int,
    lr: float,
) -> OptimisationResult:
    if isinstance(
        generator, torch.nn.Module
    ):  # a callable (e.g. G with a fixed prior) is frozen by its owner
        generator.requires_grad_(False)
    optimiser = torch.optim.Adam(params, lr=lr)
    history: list[float] = []
    for _ in range(steps):
        optimiser.zero_grad(set_to_none=True)
        loss = (generator(image_in, latents_fn()) - image_out).abs().mean()
        loss.backward()
        optimiser.step()
        history.append(float(loss.detach()))
    with torch.no_grad():
        output = generator(image_in, latents_fn())
    return OptimisationResult(
        [p.detach() for p in params] if len(params) > 1 else params[0].detach(), output, history
    )


def optimise_code(
    generator: Generator,
    image_in: torch.Tensor,
    image_out: torch.Tensor,
    init: torch.Tensor,
    steps: int = 200,
    lr: float = 0.01,
) -> OptimisationResult:
    """Optimise a 1d code w (B, C) starting from ``init`` (e.g. E_w(I_in, I_out) or w0)."""
    code = init.detach().clone().requires_grad_(True)
    return _run(generator, image_in, image_out, [code], lambda: code, steps, lr)


def optimise_maps(
    generator: Generator,
    image_in: torch.Tensor,
    image_out: torch.Tensor,
    init: torch.Tensor,
    steps: int = 200,
    lr: float = 0.01,
    map_size: tuple[int, int] | None = None,
) -> OptimisationResult:
    """Optimise 20 independent latent maps of G', each initialised from ``init``.

    init: a code (B, C) (broadcast to constant maps, so step 0 equals the 1d result) or a map (B, C, h, w).
    map_size: spatial size of every map (default 1/16 of the image, the size of W0).
    """
    if map_size is None:
        map_size = (image_in.shape[-2] // 16, image_in.shape[-1] // 16)
    if init.dim() == 2:
        init = init[:, :, None, None].expand(-1, -1, *map_size)
    elif init.shape[-2:] != map_size:
        init = torch.nn.functional.interpolate(init, size=map_size, mode="bilinear", align_corners=False)
    maps = [init.detach().clone().contiguous().requires_grad_(True) for _ in range(NUM_STYLES)]
    return _run(generator, image_in, image_out, maps, lambda: maps, steps, lr)
