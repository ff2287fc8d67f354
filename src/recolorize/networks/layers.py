"""StyleGAN2 building blocks with spatially-adaptive styles (paper eq. 1).

Equalised learning rate (weights stored at unit variance and scaled at run time, as in StyleGAN2) so that
Adam treats every layer alike. The modulated convolution modulates the *input activations* instead of the
weights: for a constant style this is exactly StyleGAN2's weight modulation, and for a spatial style map it
is eq. 1, x'_ij = m_ij * x_ij. Demodulation then uses, per output pixel,
d_o(p) = 1 / sqrt(sum_i m_i(p)^2 * sum_k w_oik^2 + eps), exact for constant styles and the standard
approximation (SalS-GAN, StyleMapGAN) for spatial ones. One code path serves the 1d code and the 2d maps,
so a code and the same code broadcast as constant maps give the same image.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["EqualLinear", "EqualConv2d", "StyleAffine", "ModulatedConv2d", "StyledConv", "ToRGB"]

Latent = torch.Tensor  # (B, C) code or (B, C, h, w) map


class EqualLinear(nn.Module):
    """Linear layer with equalised learning rate; ``bias_init`` 1 is used for style affines."""

    def __init__(self, in_dim: int, out_dim: int, bias_init: float = 0.0) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim))
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init)))
        self.scale = 1.0 / math.sqrt(in_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.scale, self.bias)


class EqualConv2d(nn.Module):
    """Convolution with equalised learning rate (used by the generator's image encoder)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int = 1) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(out_ch))
        self.scale = 1.0 / math.sqrt(in_ch * kernel * kernel)
        self.stride = stride
        self.padding = kernel // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.scale, self.bias, stride=self.stride, padding=self.padding)


class StyleAffine(nn.Module):
    """The affine A that turns a latent (code or map) into a per-channel style m for one layer.

    Applied at the latent's own resolution and then resized to the feature size: the affine is pointwise
    and linear, so this equals resizing first (docs/architecture.md, "Design decisions") and costs far less.
    """

    def __init__(self, latent_dim: int, channels: int) -> None:
        super().__init__()
        self.linear = EqualLinear(latent_dim, channels, bias_init=1.0)

    def forward(self, latent: Latent, size: tuple[int, int]) -> torch.Tensor:
        """Return the style as (B, channels, 1, 1) for a code or (B, channels, H, W) for a map."""
        if latent.dim() == 2:
            return self.linear(latent)[:, :, None, None]
        if latent.dim() != 4:
            raise ValueError(f"latent must be (B, C) or (B, C, h, w), got {tuple(latent.shape)}")
        weight = (self.linear.weight * self.linear.scale)[:, :, None, None]
        style = F.conv2d(latent, weight, self.linear.bias)
        if style.shape[-2:] != size:
            style = F.interpolate(style, size=size, mode="bilinear", align_corners=False)
        return style


class ModulatedConv2d(nn.Module):
    """Modulated (and optionally demodulated) convolution with a code or a spatial latent map (eq. 1)."""

    def __init__(
        self, in_ch: int, out_ch: int, kernel: int, latent_dim: int, demodulate: bool = True
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, kernel, kernel))
        self.scale = 1.0 / math.sqrt(in_ch * kernel * kernel)
        self.affine = StyleAffine(latent_dim, in_ch)
        self.demodulate = demodulate
        self.padding = kernel // 2

    def forward(self, x: torch.Tensor, latent: Latent) -> torch.Tensor:
        return self.modulate(x, self.affine(latent, x.shape[-2:]))

    def modulate(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        """The convolution with a ready style m (B, Cin, 1|H, 1|W): for callers that resample styles
        themselves (the pointwise generator upsamples them guided by the image)."""
        weight = self.weight * self.scale
        out = F.conv2d(x * style, weight, padding=self.padding)  # eq. 1, then the shared convolution
        if self.demodulate:
            # sum_k w_oik^2, applied to m_i(p)^2 as a 1x1 convolution: d_o(p) for every output pixel.
            weight_energy = weight.pow(2).sum(dim=(2, 3))[:, :, None, None]
            demod = torch.rsqrt(F.conv2d(style.pow(2), weight_energy) + 1e-8)
            out = out * demod
        return out


class StyledConv(nn.Module):
    """Modulated conv + bias + leaky ReLU, optionally preceded by a 2x bilinear upsampling.

    SpaceEdit's noise inputs are left out: re-colouring must be deterministic.
    """

    def __init__(self, in_ch: int, out_ch: int, latent_dim: int, upsample: bool = False) -> None:
        super().__init__()
        self.upsample = upsample
        self.conv = ModulatedConv2d(in_ch, out_ch, 3, latent_dim)
        self.bias = nn.Parameter(torch.zeros(out_ch))

    def forward(self, x: torch.Tensor, latent: Latent) -> torch.Tensor:
        if self.upsample:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        out = self.conv(x, latent) + self.bias[None, :, None, None]
        return F.leaky_relu(out, 0.2) * math.sqrt(2)


class ToRGB(nn.Module):
    """1x1 modulated conv to RGB without demodulation, as in StyleGAN2's skip generator.

    ``gain`` scales the initial weights down so that the generator starts near the identity mapping
    (its output is the input plus these residuals).
    """

    def __init__(self, in_ch: int, latent_dim: int, gain: float = 0.01) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(in_ch, 3, 1, latent_dim, demodulate=False)
        with torch.no_grad():
            self.conv.weight.mul_(gain)
        self.bias = nn.Parameter(torch.zeros(3))

    def forward(self, x: torch.Tensor, latent: Latent) -> torch.Tensor:
        return self.conv(x, latent) + self.bias[None, :, None, None]
