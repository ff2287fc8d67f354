"""ResNet-18 trunk used by E_w, E_W and E_C^S (paper sections 3.2.2, 3.3, 3.4.1).

No ImageNet ResNet-18 weights can be installed here (offline-weights.md), so every trunk trains from
scratch; ``width`` scales all channels (64 is the standard ResNet-18) and ``in_channels`` lets E_w read the
6-channel pair. BatchNorm as in the original; frozen trunks run in eval mode with their running statistics.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["ResNet18", "normalise_image"]


def normalise_image(image: torch.Tensor) -> torch.Tensor:
    """Map an image in [0, 1] to [-1, 1], the range every trunk was trained on."""
    return image * 2.0 - 1.0


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (projection when the shape changes)."""

    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class ResNet18(nn.Module):
    """ResNet-18 returning the features of each stage it has.

    in_channels: 3 for an image, 6 for E_w's (I_in, I_out) pair.
    width: channels of layer1; layer2..4 have 2x, 4x, 8x.
    num_stages: 3 stops after layer3 (1/16, as E_W and E_C^S need), 4 keeps layer4 (1/32).
    forward returns [layer1 (1/4), layer2 (1/8), layer3 (1/16)(, layer4 (1/32))].
    """

    def __init__(self, in_channels: int = 3, width: int = 64, num_stages: int = 4) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, width, 7, 2, 3, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2, 1),
        )
        self.channels = [width * 2**i for i in range(num_stages)]
        stages = []
        in_ch = width
        for i, out_ch in enumerate(self.channels):
            stride = 1 if i == 0 else 2
            stages.append(nn.Sequential(BasicBlock(in_ch, out_ch, stride), BasicBlock(out_ch, out_ch, 1)))
            in_ch = out_ch
        self.stages = nn.ModuleList(stages)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = []
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features
