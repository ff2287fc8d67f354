"""P_W, the W-predictor (paper section 3.4): latent maps W = {W1, W2, W3} for G'(I_S, W).

Data flow (Figure 3, right):
1. E_C^S(I_S) -> colour features C_S^1, C_S^2, C_S^3 at 1/4, 1/8, 1/16 (section 3.4.1).
2. Frozen semantic features F_S, F_R at 1/16 -> cosine cross-attention A_C (eq. 4).
3. Training only: random semantic masking of reference positions (columns of A_C), ratio given per step.
4. Hard attention A_h = one-hot argmax (eq. 5) -> warped reference map W0_R~ = A_h W0_R (section 3.4.3).
5. ASPP-1 on [W0_R~, C_S^3, M] with w -> W1 (1/16); ASPP-2 adds C_S^2 -> W2 (1/8);
   ASPP-3 adds C_S^1 -> W3 (1/4).

Decisions where the paper is ambiguous (listed here; docs/architecture.md, "Design decisions", has the rest):
- ASPP-1 takes the 1/16 source features (3.4.3 says C_S^1 but only the 1/16 map has the right size).
- The mask M fed to ASPP-1 is source-aligned: 1 where a source position's best match was masked away.
  At test time masking is off and M is zero.
- Masked positions are excluded with -inf rather than multiplied by 0 (eq. A_C * M), so that a masked
  column can never win the argmax even where every similarity is negative.
- With ``residual_maps`` the heads predict dW added to the source's own W0_S (our change; see config).

Colour correspondence (``ModelConfig.colour_correspondence``, our addition for the pointwise generator): the
reference's cell colours (scaled-Lab mean and spread) are warped with the same hard attention at 1/16 and,
through a second, soft correspondence at 1/8 (EfficientNet-Lite0 1/8 features with the upsampled 1/16 ones,
softmax with a learned temperature), at 1/8; each warp comes with its match confidence (the best cosine
similarity) and the source's own cell colours. ASPP-1 reads the 1/16 set, ASPP-2 the 1/8 set, and the 1/8
warped colour and confidence go to the generator per pixel as the colour hint. Masking hides the same
reference positions from both correspondences.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from recolorize.config import ModelConfig
from recolorize.networks.aspp import ASPP, PlainConvBlock
from recolorize.networks.pointwise import cell_mean, lab_features
from recolorize.networks.resnet import ResNet18, normalise_image

__all__ = [
    "WPredictor",
    "PredictorInputs",
    "cosine_attention",
    "fine_attention",
    "fine_descriptor",
    "fine_descriptors",
    "random_column_mask",
    "warp_by_attention",
]


@dataclass
class PredictorInputs:
    """What the frozen networks give P_W for one batch of pairs.

    semantic_source, semantic_reference: F_S, F_R (B, D, h, w) at 1/16.
    reference_maps: W0_R = E_W(I_R) (B, C, h, w), or None for the "shared E_C" ablation.
    reference_tiles: how many references lie side by side in I_R and its features (1: one reference).
    code: w = E_w(I_S, I_R) (B, C), or None for the "w/o w" ablation.
    source_maps: W0_S = E_W(I_S) (B, C, h, w), the base of residual prediction (None when off).
    fine_source, fine_reference: 1/8 semantic features for the colour correspondence (None when off).
    """

    semantic_source: torch.Tensor
    semantic_reference: torch.Tensor
    reference_maps: torch.Tensor | None
    code: torch.Tensor | None
    source_maps: torch.Tensor | None
    fine_source: torch.Tensor | None = None
    fine_reference: torch.Tensor | None = None
    reference_tiles: int = 1
    fine_similarity: torch.Tensor | None = field(default=None, repr=False)  # cache of fine_attention


def per_reference(
    function: Callable[[torch.Tensor], torch.Tensor], reference: torch.Tensor, tiles: int
) -> torch.Tensor:
    """``function`` applied to each of ``tiles`` references laid side by side in ``reference`` (B, C, H,
    tiles * W), the results side by side again: several references are one set of positions for the
    attention (eq. 4 runs over their union), but no convolution sees across the seam between two photos."""
    if tiles == 1:
        return function(reference)
    return torch.cat([function(part) for part in reference.chunk(tiles, dim=-1)], dim=-1)


#: Channels of one set of colour-correspondence inputs: warped Lab mean + spread (6), confidence (1), the
#: source cell's own Lab mean + spread (6).
COLOUR_INPUTS = 13


def cell_colour_stats(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Scaled-Lab mean and standard deviation of each cell of a ``size`` grid: (B, 6, *size)."""
    lab = lab_features(image)
    mean = cell_mean(lab, size)
    second = cell_mean(lab * lab, size)
    return torch.cat([mean, (second - mean * mean).clamp_min(0.0).add(1e-6).sqrt()], dim=1)


#: Quantile levels of the colour-statistics code.
_QUANTILES = (0.05, 0.15, 0.25, 0.375, 0.5, 0.625, 0.75, 0.85, 0.95)
#: Length of one image's colour statistics: Lab mean + spread (6), Lab and RGB quantiles (2 x 3 x 9).
COLOUR_STATISTICS = 6 + 2 * 3 * len(_QUANTILES)


def sorted_quantiles(values: torch.Tensor, levels: tuple[float, ...]) -> torch.Tensor:
    """``torch.quantile(values, levels, dim=2)`` (linear interpolation) of (B, C, N) values, as (B, Q, C):
    a sort and two gathers, the same numbers, in a form ONNX exports (``aten::quantile`` has no export)."""
    ordered = values.sort(dim=2).values
    count = values.shape[2]
    position = torch.tensor(levels, dtype=values.dtype, device=values.device) * (count - 1)
    low = position.floor()
    high = (low + 1).clamp(max=count - 1)
    below = ordered.index_select(2, low.long())
    above = ordered.index_select(2, high.long())
    return torch.lerp(below, above, position - low).transpose(1, 2)


def colour_statistics(image: torch.Tensor) -> torch.Tensor:
    """(B, COLOUR_STATISTICS): scaled-Lab mean and spread, then Lab and RGB quantiles, per channel."""
    lab = lab_features(image).flatten(2)
    rgb = image.clamp(0.0, 1.0).flatten(2)
    quantiles = [sorted_quantiles(x, _QUANTILES).flatten(1) for x in (lab, rgb)]
    return torch.cat([lab.mean(2), lab.std(2), *quantiles], dim=1)


def cosine_attention(source_features: torch.Tensor, reference_features: torch.Tensor) -> torch.Tensor:
    """A_C(i, j) = <F_S(i), F_R(j)> (eq. 4): (B, N_S, N_R) cosine similarities of flattened positions."""
    fs = F.normalize(source_features.flatten(2), dim=1)
    fr = F.normalize(reference_features.flatten(2), dim=1)
    return torch.bmm(fs.transpose(1, 2), fr)


def random_column_mask(
    batch: int, positions: int, ratio: float, generator: torch.Generator | None, device: torch.device
) -> torch.Tensor:
    """Keep-mask (B, N_R) of reference positions: each dropped with probability ``ratio``, one always kept."""
    keep = torch.rand(batch, positions, generator=generator, device=device) >= ratio
    keep[keep.sum(dim=1) == 0, 0] = True
    return keep


def warp_by_attention(
    attention: torch.Tensor,
    reference_maps: torch.Tensor,
    size: tuple[int, int],
    hard: bool,
    temperature: float,
) -> torch.Tensor:
    """W0_R~ = A W0_R: the reference map resampled onto the source grid (B, C, *size).

    hard: A_h = one-hot argmax of each row (eq. 5), implemented as a gather; otherwise softmax(A / T).
    """
    flat = reference_maps.flatten(2)  # (B, C, N_R)
    if hard:
        index = attention.argmax(dim=2)  # (B, N_S)
        warped = torch.gather(flat, 2, index[:, None, :].expand(-1, flat.shape[1], -1))
    else:
        weights = torch.softmax(attention / temperature, dim=2)
        warped = torch.bmm(flat, weights.transpose(1, 2))
    return warped.view(reference_maps.shape[0], reference_maps.shape[1], *size)


def fine_descriptor(fine: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
    """One image's 1/8 correspondence descriptor (B, 40 + 112, h8, w8): its unit 1/8 features beside its
    unit 1/16 features upsampled to the 1/8 grid."""
    up = F.interpolate(coarse, size=fine.shape[-2:], mode="bilinear", align_corners=False)
    return torch.cat([F.normalize(fine, dim=1), F.normalize(up, dim=1)], dim=1)


def fine_descriptors(inputs: PredictorInputs) -> tuple[torch.Tensor, torch.Tensor]:
    """Descriptors of the 1/8 correspondence, source and reference (B, D, h8, w8): the 1/8 features and
    the upsampled 1/16 ones, each unit-normalised (the 1/8 detail places, the 1/16 context disambiguates).
    Several references side by side are upsampled each alone, so a repeated reference matches as one does."""
    if inputs.fine_source is None or inputs.fine_reference is None:
        raise ValueError("the colour correspondence needs the 1/8 semantic features")

    descriptor = fine_descriptor
    tiles = inputs.reference_tiles  # several references: each upsampled alone, never across a seam
    fine_parts = inputs.fine_reference.chunk(tiles, dim=-1)
    pairs = zip(fine_parts, inputs.semantic_reference.chunk(tiles, dim=-1), strict=True)
    return (
        descriptor(inputs.fine_source, inputs.semantic_source),
        torch.cat([descriptor(fine, coarse) for fine, coarse in pairs], dim=-1),
    )


def fine_attention(inputs: PredictorInputs) -> torch.Tensor:
    """Cosine similarities (B, N_S8, N_R8) of the 1/8 descriptors, unmasked; computed once per inputs, as
    P_W's colour hint and the model's correspondence prior both read them."""
    if inputs.fine_similarity is None:
        inputs.fine_similarity = cosine_attention(*fine_descriptors(inputs))
    return inputs.fine_similarity


class WPredictor(nn.Module):
    """P_W(I_S, I_R) -> [W1, W2, W3] (or one map for the W1-only / W3-only ablations)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        ablations = config.ablations
        c, width = config.latent_dim, config.predictor_width
        self.source_encoder = ResNet18(3, config.encoder_width, num_stages=3)  # E_C^S
        ch1, ch2, ch3 = self.source_encoder.channels
        if not ablations.separate_reference_encoder:
            self.reference_projection = nn.Conv2d(ch3, c, 1)  # "shared E_C": E_C^S(I_R) stands in for W0_R
        block = ASPP if ablations.aspp else PlainConvBlock
        w_dim = c
        extra = COLOUR_INPUTS if config.colour_correspondence else 0
        if config.colour_correspondence:
            # temperature of the 1/8 soft correspondence, learned (log-parametrised), starting at 0.05
            self.log_temperature = nn.Parameter(torch.tensor(math.log(0.05)))
        if config.colour_statistics:
            # zero-initialised: training starts from w alone
            self.colour_code = nn.Sequential(
                nn.Linear(2 * COLOUR_STATISTICS, c), nn.ReLU(inplace=True), nn.Linear(c, c)
            )
            nn.init.zeros_(self.colour_code[2].weight)
            nn.init.zeros_(self.colour_code[2].bias)
        self.block1 = block(c + ch3 + 1 + extra, width, w_dim, ablations.use_w)
        if ablations.latent_levels != "w1_only":
            self.block2 = block(width + ch2 + extra, width, w_dim, ablations.use_w)
            self.block3 = block(width + ch1, width, w_dim, ablations.use_w)
        levels = {"all": ("W1", "W2", "W3"), "w1_only": ("W1",), "w3_only": ("W3",)}[ablations.latent_levels]
        self.heads = nn.ModuleDict({level: nn.Conv2d(width, c, 1) for level in levels})
        if config.residual_maps:
            for head in self.heads.values():  # start at dW ~ 0 (W ~ W0_S) but keep gradients flowing
                with torch.no_grad():
                    head.weight.mul_(0.1)
                    head.bias.zero_()

    def forward(
        self,
        source: torch.Tensor,
        reference: torch.Tensor,
        inputs: PredictorInputs,
        mask_ratio: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> list[torch.Tensor]:
        """Predict the latent maps; ``mask_ratio`` acts only in training mode (section 3.4.2)."""
        return self.forward_with_hint(source, reference, inputs, mask_ratio, generator)[0]

    def _fine_correspondence(
        self,
        source: torch.Tensor,
        reference: torch.Tensor,
        inputs: PredictorInputs,
        keep: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Soft 1/8 correspondence: (ASPP-2 colour inputs (B, 13, h8, w8), generator hint (B, 4, h8, w8))."""
        attention = fine_attention(inputs)  # (B, N_S8, N_R8)
        size = tuple(inputs.fine_source.shape[-2:])
        reference_size = tuple(inputs.fine_reference.shape[-2:])
        logits = attention / self.log_temperature.exp().clamp_min(1e-3)
        if keep is not None:  # the 1/16 keep-mask of the reference, carried to the 1/8 grid
            coarse = keep.view(keep.shape[0], 1, *inputs.semantic_reference.shape[-2:]).float()
            fine_keep = F.interpolate(coarse, size=reference_size, mode="nearest").flatten(1) > 0.5
            # masked after the division: -inf / T would give the temperature a NaN gradient
            attention = attention.masked_fill(~fine_keep[:, None, :], float("-inf"))
            logits = logits.masked_fill(~fine_keep[:, None, :], float("-inf"))
        confidence = attention.max(dim=2).values.view(-1, 1, *size)
        reference_stats = cell_colour_stats(reference, reference_size)
        warped = warp_by_attention(logits, reference_stats, size, hard=False, temperature=1.0)
        own = cell_colour_stats(source, size)
        hint = [warped[:, :3], confidence]
        if self.config.local_transfer:  # the layout of pointwise.LOCAL_HINT_CHANNELS
            hint += [warped[:, 3:], own]
        return torch.cat([warped, confidence, own], dim=1), torch.cat(hint, dim=1)

    def forward_with_hint(
        self,
        source: torch.Tensor,
        reference: torch.Tensor,
        inputs: PredictorInputs,
        mask_ratio: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> tuple[list[torch.Tensor], torch.Tensor | None]:
        """The latent maps and, with the colour correspondence, the generator's colour hint (else None)."""
        ablations = self.config.ablations
        c_s1, c_s2, c_s3 = self.source_encoder(normalise_image(source))
        if ablations.separate_reference_encoder:
            if inputs.reference_maps is None:
                raise ValueError("P_W needs W0_R = E_W(I_R)")
            reference_maps = inputs.reference_maps
        else:
            reference_maps = per_reference(
                lambda image: self.reference_projection(self.source_encoder(normalise_image(image))[2]),
                reference,
                inputs.reference_tiles,
            )
        size = c_s3.shape[-2:]
        semantic_source = inputs.semantic_source
        if semantic_source.shape[-2:] != size:
            semantic_source = F.interpolate(semantic_source, size=size, mode="bilinear", align_corners=False)
        semantic_reference = inputs.semantic_reference
        if semantic_reference.shape[-2:] != reference_maps.shape[-2:]:
            semantic_reference = F.interpolate(
                semantic_reference, size=reference_maps.shape[-2:], mode="bilinear", align_corners=False
            )
        attention = cosine_attention(semantic_source, semantic_reference)  # A_C, eq. 4
        masked_away = torch.zeros(source.shape[0], 1, *size, device=source.device, dtype=source.dtype)
        keep = None
        if self.training and ablations.masking and mask_ratio > 0:
            keep = random_column_mask(
                attention.shape[0], attention.shape[2], mask_ratio, generator, source.device
            )
            best = attention.argmax(dim=2)
            masked_away = (~torch.gather(keep, 1, best)).to(source.dtype).view(-1, 1, *size)
            attention = attention.masked_fill(~keep[:, None, :], float("-inf"))
        warped = warp_by_attention(
            attention, reference_maps, tuple(size), ablations.hard_attention, self.config.softmax_temperature
        )
        coarse_colour: list[torch.Tensor] = []
        fine_colour: list[torch.Tensor] = []
        hint = None
        if self.config.colour_correspondence:
            reference_stats = cell_colour_stats(reference, tuple(semantic_reference.shape[-2:]))
            warped_stats = warp_by_attention(attention, reference_stats, tuple(size), True, 1.0)
            confidence = attention.max(dim=2).values.view(-1, 1, *size)
            coarse_colour = [warped_stats, confidence, cell_colour_stats(source, tuple(size))]
            fine, hint = self._fine_correspondence(source, reference, inputs, keep)
            fine_colour = [F.interpolate(fine, size=c_s2.shape[-2:], mode="bilinear", align_corners=False)]
        code = inputs.code if ablations.use_w else None
        if code is not None and self.config.colour_statistics:
            pair = torch.cat([colour_statistics(source), colour_statistics(reference)], dim=1)
            code = code + self.colour_code(pair)
        features = {"W1": self.block1(torch.cat([warped, c_s3, masked_away, *coarse_colour], dim=1), code)}
        if ablations.latent_levels != "w1_only":
            up = F.interpolate(features["W1"], size=c_s2.shape[-2:], mode="bilinear", align_corners=False)
            features["W2"] = self.block2(torch.cat([up, c_s2, *fine_colour], dim=1), code)
            up = F.interpolate(features["W2"], size=c_s1.shape[-2:], mode="bilinear", align_corners=False)
            features["W3"] = self.block3(torch.cat([up, c_s1], dim=1), code)
        maps = [head(features[level]) for level, head in self.heads.items()]
        if self.config.residual_maps:
            if inputs.source_maps is None:
                raise ValueError("residual prediction needs W0_S = E_W(I_S)")
            maps = [
                m + F.interpolate(inputs.source_maps, size=m.shape[-2:], mode="bilinear", align_corners=False)
                for m in maps
            ]
        return maps, hint
