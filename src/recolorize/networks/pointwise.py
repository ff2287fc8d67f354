"""The pointwise generator: G / G' as a per-pixel colour mapping steered by the latent maps
(docs/architecture.md, "Design decisions").

    out(x) = base(x) + f(I(x), base(x), hint(x); styles(x))

f is a stack of StyleGAN2 modulated + demodulated convolutions with kernel 1 (eq. 1 with a 1x1 kernel: a small
MLP on the pixel's own colour) and a modulated output layer without demodulation, zero-initialised so that an
untrained G is the identity on ``base``. Each layer's style m = A(W) is computed at the latent map's own
resolution and carried to the pixel grid by a *guided* upsampling: a joint bilateral upsampling (Kopf et al.
2007) whose weights are a spatial tent times a colour similarity between the pixel and each neighbouring
cell's mean colour, so a style never bleeds from the table into the cup across their edge. A 1d code w is
a constant style (no upsampling). Spatial context comes only from the latent maps: nothing is resynthesised,
so every detail of the photo survives, and f can be evaluated on a full-resolution photo band by band.

Which of the 20 style inputs each layer reads (:func:`style_indices`): layer 1 reads input 1 (filled by W1,
1/16), layer 2 input 10 (W2, 1/8), the rest inputs 13.. (W3, 1/4): coarse context first, fine last, as in the
paper's W1/W2/W3 -> layer assignment.

Per-pixel inputs: the colour as RGB (x2 - 1) and scaled CIE Lab (L/100, a/100, b/100); with a prior, the
prior's colour; with the colour correspondence, the hint (the reference's warped cell colour in scaled Lab
and the match confidence, P_W's 1/8 output), also guided-upsampled. ``base`` is the prior's colour (e.g. the
MKL map of the pair) or the image itself.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from recolorize.colour import rgb_to_lab
from recolorize.config import NUM_STYLES, ModelConfig
from recolorize.networks.colour_prior import apply_colour_affine
from recolorize.networks.generator import layer_latents
from recolorize.networks.layers import ModulatedConv2d

__all__ = [
    "Conditioning",
    "cell_mean",
    "GuidedUpsampler",
    "PointwiseGenerator",
    "HINT_CHANNELS",
    "LOCAL_HINT_CHANNELS",
    "lab_features",
    "local_colour_transfer",
    "style_indices",
]

#: Channels of the colour hint: warped reference colour (scaled Lab, 3) and match confidence (1).
HINT_CHANNELS = 4
#: With ``local_transfer``: those 4, then the warped reference cell's Lab spread (3) and the source cell's own
#: Lab mean (3) and spread (3), from which f's local colour transfer is computed per pixel.
LOCAL_HINT_CHANNELS = 13


def local_colour_transfer(hint: torch.Tensor, guide: torch.Tensor, eps: float = 0.01) -> torch.Tensor:
    """Reinhard's transfer per cell along the correspondence, per pixel, in scaled Lab (B, 3, H, W):

        local(x) = mu_R(x) + sigma_R(x) / sigma_S(x) * (lab(x) - mu_S(x))

    with the cell statistics of a ``LOCAL_HINT_CHANNELS`` hint already carried to the pixels (the ratio
    bounded to [1/4, 4] so flat cells do not explode). An all-zero hint (no reference) gives lab(x) itself.
    """
    mean_r, spread_r = hint[:, 0:3], hint[:, 4:7]
    mean_s, spread_s = hint[:, 7:10], hint[:, 10:13]
    ratio = ((spread_r + eps) / (spread_s + eps)).clamp(0.25, 4.0)
    return mean_r + ratio * (guide - mean_s)


def lab_features(image: torch.Tensor) -> torch.Tensor:
    """Scaled CIE Lab (L/100, a/100, b/100) of an sRGB image in [0, 1]: roughly unit range, perceptual."""
    return rgb_to_lab(image.clamp(0.0, 1.0)) / 100.0


def style_indices(layers: int) -> tuple[int, ...]:
    """0-based style inputs read by the ``layers`` modulated layers: W1, W2, then W3 (module docstring)."""
    if layers < 2:
        raise ValueError("the pointwise generator needs at least 2 modulated layers")
    return (0, 9) + tuple(12 + min(i, NUM_STYLES - 13) for i in range(layers - 2))


@dataclass
class Conditioning:
    """What the pointwise generator reads besides the image and the latents (None = absent).

    prior: (B, 3, 4) affine colour map [M | t] or a lattice (B, 3, S, S, S); base(x) = prior(I(x))
        (identity when None).
    hint: (B, HINT_CHANNELS, h, w) reference colour and confidence on a coarse grid (zeros when None).
    base: the prior already applied to the image (B, 3, H, W), when the caller computed it (the ONNX graph
        of f takes it as an input: the lattice is applied in NumPy); it wins over ``prior``.
    """

    prior: torch.Tensor | None = None
    hint: torch.Tensor | None = None
    base: torch.Tensor | None = None

    def at_strength(self, strength: float) -> Conditioning:
        """The conditioning ``strength`` of the way from a self-reconstruction's (identity, no hint)."""
        from recolorize.networks.colour_prior import lerp_affine

        prior = lerp_affine(self.prior, strength) if self.prior is not None else None
        # the whole hint fades toward the self-reconstruction's all-zero one (no reference), so G's input is
        # continuous in the strength (keeping the colours at full scale made strength 0.01 a visible jump)
        hint = self.hint * strength if self.hint is not None else None
        return Conditioning(prior=prior, hint=hint)


class GuidedUpsampler(nn.Module):
    """Resample coarse maps (B, K, h, w) onto pixels by space and colour (joint bilateral upsampling).

    For a pixel p in cell c(p) and each of the 3x3 cells c around it:
    weight = tent(|u_p - u_c| / radius) * exp(-|g(p) - g(c)|^2 / (2 sigma^2)), normalised over the 9 cells,
    where u are cell coordinates and g the guide (scaled Lab of the pixel; the cell's mean guide). sigma is
    learned (log-parametrised). The pixels may be any rows and columns of the full grid (a band of a
    12-megapixel photo, or every 2nd pixel in training), given by their coordinates.
    """

    def __init__(self, sigma: float = 0.1, radius: float = 1.5) -> None:
        super().__init__()
        self.log_sigma = nn.Parameter(torch.tensor(math.log(sigma)))
        self.radius = radius
        #: Always take the gather path (the ONNX export: the fast path's test is a Python bool that a trace
        #: would freeze at the traced size; the gathers give the same numbers at any size).
        self.gather_only = False

    @staticmethod
    def _axis(
        coords: torch.Tensor, cells: int, full: int, check: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor, bool]:
        """Cell index of each coordinate, its position in cell units, and whether nearest-resampling the
        cell grid to ``len(coords)`` gives the same cells (then the fast path applies; False unchecked)."""
        position = (coords + 0.5) * cells / full - 0.5
        cell = torch.floor(coords * cells / full).clamp(0, cells - 1)
        if not check:
            return cell, position, False
        # the cells F.interpolate(mode="nearest") really picks (its float scale rounds at some boundaries)
        grid = torch.arange(cells, device=coords.device, dtype=coords.dtype).view(1, 1, 1, cells)
        nearest = F.interpolate(grid, size=(1, len(coords)), mode="nearest").flatten()
        return cell, position, bool(torch.equal(cell, nearest))

    def plan(
        self,
        guide_pixels: torch.Tensor,
        guide_cells: torch.Tensor,
        rows: torch.Tensor | None = None,
        cols: torch.Tensor | None = None,
        full_size: tuple[int, int] | None = None,
    ) -> dict:
        """Weights (B, Hs, Ws, 9) and cell indices for these pixels (default: every pixel of the image).

        The 9 weights of a pixel lie last, so the softmax runs along the fastest axis (along a slow one ONNX
        Runtime transposes first)."""
        _, _, height, width = guide_pixels.shape
        h, w = guide_cells.shape[-2:]
        device, dtype = guide_pixels.device, guide_pixels.dtype
        rows = torch.arange(height, device=device, dtype=dtype) if rows is None else rows.to(device, dtype)
        cols = torch.arange(width, device=device, dtype=dtype) if cols is None else cols.to(device, dtype)
        full_h, full_w = (height, width) if full_size is None else full_size
        cy, ys, fast_y = self._axis(rows, h, full_h, check=not self.gather_only)
        cx, xs, fast_x = self._axis(cols, w, full_w, check=not self.gather_only)
        inv = 0.5 / torch.exp(2.0 * self.log_sigma).clamp_min(1e-6)
        logits, offsets = [], []
        for dy in (-1, 0, 1):
            iy = (cy + dy).clamp(0, h - 1).long()
            wy = (1.0 - (ys - (cy + dy)).abs() / self.radius).clamp_min(0.0)
            guide_rows = guide_cells[:, :, iy]
            for dx in (-1, 0, 1):
                ix = (cx + dx).clamp(0, w - 1).long()
                wx = (1.0 - (xs - (cx + dx)).abs() / self.radius).clamp_min(0.0)
                spatial = torch.log((wy[:, None] * wx[None, :]).clamp_min(1e-12))
                distance = (guide_pixels - guide_rows[:, :, :, ix]).pow(2).sum(1, keepdim=True)
                logits.append(spatial - distance * inv)
                offsets.append((dy, dx, iy, ix))
        weights = torch.softmax(torch.stack([logit[:, 0] for logit in logits], dim=-1), dim=-1)
        return {"weights": weights, "offsets": offsets, "fast": fast_y and fast_x, "size": (height, width)}

    @staticmethod
    def apply(plan: dict, maps: torch.Tensor) -> torch.Tensor:
        """Resample ``maps`` (B, K, h, w) with a plan from :meth:`plan`: (B, K, Hs, Ws)."""
        h, w = maps.shape[-2:]
        weights = plan["weights"]
        if plan["fast"]:  # nearest resampling of each shifted grid: no gathers, a cheap backward pass
            padded = F.pad(maps, (1, 1, 1, 1), mode="replicate")
            out = None
            for k, (dy, dx, _, _) in enumerate(plan["offsets"]):
                shifted = padded[:, :, 1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]
                term = F.interpolate(shifted, size=plan["size"], mode="nearest") * weights[:, None, :, :, k]
                out = term if out is None else out + term
            assert out is not None
            return out
        # channels last: each gather then copies a pixel's C channels as one block (a gather of single
        # floats along the last axis was ~70 % of the ONNX graph's time); the same products and sums
        channels_last = maps.permute(0, 2, 3, 1)
        out = None
        for k, (_, _, iy, ix) in enumerate(plan["offsets"]):
            term = channels_last[:, iy][:, :, ix] * weights[:, :, :, k : k + 1]
            out = term if out is None else out + term
        assert out is not None
        return out.permute(0, 3, 1, 2)


def cell_mean(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Mean of ``image`` (B, C, H, W) over each cell of a ``size`` grid (an area average).

    Where the cells tile the image exactly (always, for working resolutions: multiples of 64 over grids of
    1/4 to 1/16) it is a reshape and a mean, which ONNX exports for any size; ``adaptive_avg_pool2d``, the
    same numbers, exports only for the size it was traced at."""
    height, width = image.shape[-2:]
    h, w = size
    if (height, width) == (h, w):
        return image
    if height % h or width % w:
        return F.adaptive_avg_pool2d(image, (h, w))
    batch, channels = image.shape[:2]
    return image.reshape(batch, channels, h, height // h, w, width // w).mean(dim=(3, 5))


class PointwiseGenerator(nn.Module):
    """G(I, w) and G'(I, {W^1..W^20}) as a latent-steered per-pixel colour mapping; images in [0, 1]."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.latent_dim = config.latent_dim
        self.use_prior = config.prior != "none"
        self.use_hint = config.colour_correspondence
        self.local_transfer = config.local_transfer
        self.hint_channels = LOCAL_HINT_CHANNELS if self.local_transfer else HINT_CHANNELS
        width = config.pointwise_width
        in_ch = 6 + (3 if self.use_prior else 0) + (HINT_CHANNELS if self.use_hint else 0)
        in_ch += 3 if self.local_transfer else 0  # appended last: older weights extend with zero columns
        channels = [in_ch] + [width] * config.pointwise_layers
        self.layers = nn.ModuleList(
            ModulatedConv2d(channels[i], channels[i + 1], 1, config.latent_dim)
            for i in range(config.pointwise_layers)
        )
        self.biases = nn.ParameterList(
            nn.Parameter(torch.zeros(width)) for _ in range(config.pointwise_layers)
        )
        self.to_rgb = ModulatedConv2d(width, 3, 1, config.latent_dim, demodulate=False)
        with torch.no_grad():
            self.to_rgb.weight.zero_()  # f = 0 at the start: G is the identity on the base
        self.rgb_bias = nn.Parameter(torch.zeros(3))
        self.indices = style_indices(config.pointwise_layers + 1)
        self.upsampler = GuidedUpsampler()

    # --- inputs ---------------------------------------------------------------------------------------------
    def coarse_styles(self, latents: torch.Tensor | Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Each layer's style m = A(W) at its latent's own resolution ((B, Cin, 1, 1) for a code)."""
        chosen = layer_latents(latents, self.latent_dim)
        convs = [*self.layers, self.to_rgb]
        styles = []
        for conv, index in zip(convs, self.indices, strict=True):
            latent = chosen[index]
            size = (1, 1) if latent.dim() == 2 else tuple(latent.shape[-2:])
            styles.append(conv.affine(latent, size))
        return styles

    # --- forward --------------------------------------------------------------------------------------------
    def forward(
        self,
        image: torch.Tensor,
        latents: torch.Tensor | Sequence[torch.Tensor],
        conditioning: Conditioning | None = None,
        guide_low: torch.Tensor | None = None,
        rows: torch.Tensor | None = None,
        cols: torch.Tensor | None = None,
        full_size: tuple[int, int] | None = None,
    ) -> torch.Tensor:
        """Re-colour ``image`` (B, 3, H, W) in [0, 1]; returns (B, 3, H, W), not clipped.

        guide_low: scaled Lab of the working-resolution image, the cells' guide (default: this image's own).
        rows, cols, full_size: ``image`` holds these rows and columns of a larger image of ``full_size``
        (a band of a full-resolution photo, or a subsampled grid in training); default: the whole image.
        """
        if image.dim() != 4 or image.shape[1] != 3:
            raise ValueError(f"image must be (B, 3, H, W), got {tuple(image.shape)}")
        conditioning = conditioning if conditioning is not None else Conditioning()
        batch = image.shape[0]
        guide = lab_features(image)
        if guide_low is None:
            guide_low = guide
        prior = conditioning.prior
        if conditioning.base is not None:
            base = conditioning.base
        else:
            base = apply_colour_affine(prior, image) if prior is not None else image
        inputs = [image * 2.0 - 1.0, guide]
        if self.use_prior:
            inputs.append(base.clamp(0.0, 1.0) * 2.0 - 1.0)
        plans: dict[tuple[int, int], list] = {}

        def upsample(coarse: torch.Tensor) -> torch.Tensor:
            size = tuple(coarse.shape[-2:])
            if size == (1, 1):
                return coarse
            if size not in plans:
                plans[size] = self.upsampler.plan(guide, cell_mean(guide_low, size), rows, cols, full_size)
            return self.upsampler.apply(plans[size], coarse)

        if self.use_hint:
            hint = conditioning.hint
            if hint is None:
                pixel_hint = image.new_zeros(batch, self.hint_channels, *image.shape[-2:])
            else:
                if hint.shape[1] != self.hint_channels:
                    raise ValueError(f"hint needs {self.hint_channels} channels, got {hint.shape[1]}")
                pixel_hint = upsample(hint.to(image.dtype))
            inputs.append(pixel_hint[:, :HINT_CHANNELS])
            if self.local_transfer:
                inputs.append(local_colour_transfer(pixel_hint, guide))
        x = torch.cat(inputs, dim=1)
        styles = self.coarse_styles(latents)
        for conv, bias, style in zip(self.layers, self.biases, styles[:-1], strict=True):
            x = _modulated_1x1(conv, x, upsample(style)) + bias[None, :, None, None]
            x = F.leaky_relu(x, 0.2) * math.sqrt(2)
        residual = _modulated_1x1(self.to_rgb, x, upsample(styles[-1])) + self.rgb_bias[None, :, None, None]
        return base + residual


def _modulated_1x1(conv: ModulatedConv2d, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
    """``conv.modulate(x, style)`` for a 1x1 kernel written as matrix products (several times faster on the
    CPU than a 1x1 convolution, forward and backward); the same numbers."""
    batch, _, height, width = x.shape
    weight = (conv.weight * conv.scale).flatten(1)  # (O, C)
    out = torch.matmul(weight, (x * style).flatten(2))
    if conv.demodulate:
        energy = torch.matmul(weight.pow(2), style.pow(2).flatten(2))
        out = out * torch.rsqrt(energy + 1e-8)
    return out.view(batch, -1, height, width)
