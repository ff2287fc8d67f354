"""The two latent encoders: E_w (paper section 3.2.2) and E_W (section 3.3)."""

from __future__ import annotations

import torch
from torch import nn

from recolorize.config import ModelConfig
from recolorize.networks.resnet import ResNet18, normalise_image

__all__ = ["WEncoder", "MapEncoder"]


class WEncoder(nn.Module):
    """E_w(I_in, I_out) -> w: the 1d code of the colour change from I_in to I_out.

    ResNet-18 on the 6-channel concatenation, global average pooling, linear to C. The self-reconstruction
    code is w0 = E_w(I, I) (section 3.3), which also characterises the image's global style (eq. 2).
    The paper's "w-Encoder" (lower-case w); trained with G in the training stage "generator", not in the
    stage named "wencoder" (that one trains :class:`MapEncoder`).
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.trunk = ResNet18(in_channels=6, width=config.encoder_width, num_stages=4)
        self.head = nn.Linear(self.trunk.channels[-1], config.latent_dim)

    def forward(self, image_in: torch.Tensor, image_out: torch.Tensor) -> torch.Tensor:
        pair = torch.cat([normalise_image(image_in), normalise_image(image_out)], dim=1)
        features = self.trunk(pair)[-1]
        return self.head(features.mean(dim=(2, 3)))


class MapEncoder(nn.Module):
    """E_W(I) -> W0 at 1/16: the self-reconstruction latent map, I ~ G'(I, W0) (section 3.3).

    ResNet-18 up to layer3 (1/16) and a 1x1 projection to C channels. The paper's "W-Encoder" (capital W):
    the training stage "wencoder" trains this network (``RecolorModel.map_encoder``), not :class:`WEncoder`.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.trunk = ResNet18(in_channels=3, width=config.encoder_width, num_stages=3)
        self.head = nn.Conv2d(self.trunk.channels[-1], config.latent_dim, 1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(normalise_image(image))[-1])
