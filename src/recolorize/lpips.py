"""LPIPS v0.1 (Zhang et al. 2018), the perceptual term of the paper's reconstruction losses.

d(x, x0) = sum_l 1/(H_l W_l) sum_{h,w} || w_l * (y_l(h,w) - y0_l(h,w)) ||^2, where y_l are the channel-unit-
normalised activations of tap l of a frozen ImageNet net (AlexNet relu1..5 or VGG16 relu1_2..relu5_3) and
w_l the published linear heads. Inputs of :class:`LPIPS` are in **[-1, 1]** as in the original package;
:func:`lpips_distance` takes the library's [0, 1] images. Same numbers as PyPI ``lpips==0.1.4`` (tested),
without its torchvision dependency.
"""

from __future__ import annotations

import functools
import logging
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from recolorize.networks.backbones import AlexNetFeatures, EvalOnly, VGG16Features, freeze
from recolorize.pretrained import lpips_heads

__all__ = [
    "LPIPS",
    "LPIPS_SHIFT",
    "LPIPS_SCALE",
    "lpips_scale",
    "unit_normalize",
    "lpips_distance",
    "get_lpips",
]

logger = logging.getLogger(__name__)

LpipsNet = Literal["alex", "vgg"]

#: LPIPS v0.1 scaling layer: (x - shift) / scale maps [-1, 1] images to the nets' ImageNet statistics.
LPIPS_SHIFT = (-0.030, -0.088, -0.188)
LPIPS_SCALE = (0.458, 0.448, 0.450)


def lpips_scale(x: torch.Tensor) -> torch.Tensor:
    """The v0.1 scaling layer on a [-1, 1] image."""
    shift = x.new_tensor(LPIPS_SHIFT).view(1, 3, 1, 1)
    scale = x.new_tensor(LPIPS_SCALE).view(1, 3, 1, 1)
    return (x - shift) / scale


def unit_normalize(feat: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    """y_l = f_l / ||f_l|| over channels (eps added to the norm, as upstream)."""
    return feat / (feat.pow(2).sum(dim=1, keepdim=True).sqrt() + eps)


class LPIPS(EvalOnly):
    """Frozen LPIPS v0.1 distance; ``forward(a, b)`` with a, b in [-1, 1], (B, 3, H, W) -> (B,).

    Gradients flow to the inputs (it is used as a loss); the nets and heads never train.
    """

    def __init__(self, net: LpipsNet = "alex", pretrained: bool = True) -> None:
        super().__init__()
        if net not in ("alex", "vgg"):
            raise ValueError(f"LPIPS net must be 'alex' or 'vgg', got {net!r}")
        self.net_name = net
        self.net: AlexNetFeatures | VGG16Features = (
            AlexNetFeatures(pretrained=pretrained)
            if net == "alex"
            else VGG16Features("relu5_3", pretrained=pretrained)
        )
        heads = lpips_heads(net) if pretrained else None
        channels = (64, 192, 384, 256, 256) if net == "alex" else (64, 128, 256, 512, 512)
        weights = [
            heads[k].clone() if heads else torch.full((1, c, 1, 1), 1.0 / c) for k, c in enumerate(channels)
        ]
        self.heads = nn.ParameterList([nn.Parameter(w) for w in weights])
        freeze(self)

    def per_tap(self, a: torch.Tensor, b: torch.Tensor) -> list[torch.Tensor]:
        """Per-tap distances (B,), summed by :meth:`forward`."""
        if a.shape != b.shape:
            raise ValueError(f"LPIPS inputs differ in shape: {tuple(a.shape)} vs {tuple(b.shape)}")
        # One pass over the concatenated batch: half the Python overhead of two passes.
        feats = self.net.lpips_taps(lpips_scale(torch.cat([a, b], dim=0)))
        n = a.shape[0]
        out = []
        for f, w in zip(feats, self.heads, strict=True):
            diff = (unit_normalize(f[:n]) - unit_normalize(f[n:])).pow(2)
            out.append(F.conv2d(diff, w).mean(dim=(1, 2, 3)))
        return out

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.stack(self.per_tap(a, b), dim=0).sum(dim=0)


@functools.lru_cache(maxsize=4)
def get_lpips(net: LpipsNet = "alex") -> LPIPS:
    """A shared CPU instance per net, so helpers do not rebuild the network on every call."""
    logger.debug("building LPIPS(%s)", net)
    return LPIPS(net)


def lpips_distance(a01: torch.Tensor, b01: torch.Tensor, net: LpipsNet | LPIPS = "alex") -> torch.Tensor:
    """LPIPS between two [0, 1] images (B, 3, H, W) -> (B,); ``net`` is a name or an :class:`LPIPS` module."""
    module = get_lpips(net) if isinstance(net, str) else net
    module = module.to(a01.device)
    return module(a01 * 2.0 - 1.0, b01 * 2.0 - 1.0)
