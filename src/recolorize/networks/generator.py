"""The conditional generator G / G' (SpaceEdit's conditional StyleGAN2, paper section 3.2).

SpaceEdit's exact layer list was never published; this follows StyleGAN2 at 256x256 (docs/architecture.md,
"Design decisions"):
an image encoder brings the input I_in down to 1/64 of its size, keeping a skip feature at every level; the
decoder climbs back with 20 style inputs:

    level 1/64: conv (style 1), toRGB (style 2)
    each of 1/32, 1/16, 1/8, 1/4, 1/2, 1/1: upsampling conv, conv, toRGB (3 styles per level)

Encoder skips are added after each upsampling conv. The output is I_in plus the sum of the upsampled
toRGB residuals (StyleGAN2's skip architecture), so the untrained generator starts near the identity and
short training already gives sane colours. Decoding from 1/64 of the size (not a fixed 4x4) keeps 20
styles at every config size, so the W1/W2/W3 -> layer assignment of section 3.4.3 never changes.

The same weights serve G (a 1d code w, (B, C)) and G' (a list of 20 maps (B, C, h_k, w_k) of any size).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from recolorize.config import NUM_STYLES, ModelConfig
from recolorize.networks.layers import EqualConv2d, StyledConv, ToRGB

__all__ = ["Generator", "LatentInput", "STYLE_RESOLUTION_DIVISORS", "layer_latents"]

LatentInput = torch.Tensor | Sequence[torch.Tensor]

#: Divisor of the image size at which each of the 20 style inputs acts (1-based layer k -> index k-1).
STYLE_RESOLUTION_DIVISORS: tuple[int, ...] = (64, 64) + tuple(
    d for d in (32, 16, 8, 4, 2, 1) for _ in range(3)
)


def layer_latents(latents: LatentInput, latent_dim: int) -> list[torch.Tensor]:
    """The 20 per-layer latents of G / G': a 1d code (B, C) repeated, or 20 maps (B, C, h, w) checked.

    Shared by both generators, so a code and its constant maps mean the same everywhere.
    """
    if isinstance(latents, torch.Tensor):
        if latents.dim() != 2 or latents.shape[1] != latent_dim:
            raise ValueError(f"a 1d code must be (B, {latent_dim}), got {tuple(latents.shape)}")
        return [latents] * NUM_STYLES
    latents = list(latents)
    if len(latents) != NUM_STYLES:
        raise ValueError(f"G' takes {NUM_STYLES} latent maps, got {len(latents)}")
    for k, latent in enumerate(latents):
        if latent.dim() != 4 or latent.shape[1] != latent_dim:
            raise ValueError(f"latent map {k + 1} must be (B, {latent_dim}, h, w), got {tuple(latent.shape)}")
    return latents


class EncoderBlock(nn.Module):
    """Stride-2 conv then conv, both with leaky ReLU: one level of the generator's image encoder."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.down = EqualConv2d(in_ch, out_ch, 3, stride=2)
        self.conv = EqualConv2d(out_ch, out_ch, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.leaky_relu(self.down(x), 0.2) * math.sqrt(2)
        return F.leaky_relu(self.conv(x), 0.2) * math.sqrt(2)


class Generator(nn.Module):
    """G(I_in, w) and G'(I_in, {W^1..W^20}); images in [0, 1], sides divisible by 64."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        channels = config.generator_channels  # index 0 = 1/64 ... index 6 = 1/1
        latent_dim = config.latent_dim
        self.latent_dim = latent_dim
        self.from_rgb = EqualConv2d(3, channels[6], 3)
        # encoder level i takes level i (finer) down to level i-1 (coarser)
        self.encoder = nn.ModuleList(EncoderBlock(channels[i], channels[i - 1]) for i in range(6, 0, -1))
        self.conv_first = StyledConv(channels[0], channels[0], latent_dim)
        self.to_rgb_first = ToRGB(channels[0], latent_dim)
        self.up_convs = nn.ModuleList(
            StyledConv(channels[i - 1], channels[i], latent_dim, upsample=True) for i in range(1, 7)
        )
        self.convs = nn.ModuleList(StyledConv(channels[i], channels[i], latent_dim) for i in range(1, 7))
        self.to_rgbs = nn.ModuleList(ToRGB(channels[i], latent_dim) for i in range(1, 7))

    def encode(self, image: torch.Tensor) -> list[torch.Tensor]:
        """Skip features from fine to coarse: [1/1, 1/2, ..., 1/64]."""
        x = F.leaky_relu(self.from_rgb(image * 2.0 - 1.0), 0.2) * math.sqrt(2)
        skips = [x]
        for block in self.encoder:
            x = block(x)
            skips.append(x)
        return skips

    def forward(self, image: torch.Tensor, latents: LatentInput) -> torch.Tensor:
        """Re-colour ``image`` (B, 3, H, W) in [0, 1] with a code (B, C) or 20 maps; returns (B, 3, H, W)."""
        if image.dim() != 4 or image.shape[1] != 3 or image.shape[-1] % 64 or image.shape[-2] % 64:
            raise ValueError(
                f"image must be (B, 3, H, W) with H, W divisible by 64, got {tuple(image.shape)}"
            )
        styles = layer_latents(latents, self.latent_dim)
        skips = self.encode(image)[::-1]  # coarse to fine: [1/64, ..., 1/1]
        x = self.conv_first(skips[0], styles[0])
        rgb = self.to_rgb_first(x, styles[1])
        for level in range(6):
            k = 2 + 3 * level
            x = (self.up_convs[level](x, styles[k]) + skips[level + 1]) * (0.5**0.5)  # keep unit variance
            x = self.convs[level](x, styles[k + 1])
            rgb = F.interpolate(rgb, scale_factor=2, mode="bilinear", align_corners=False)
            rgb = rgb + self.to_rgbs[level](x, styles[k + 2])
        return image + rgb
