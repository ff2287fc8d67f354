"""Frozen ImageNet backbones: semantic features for the correspondence A_C and the LPIPS taps.

The paper computes A_C (eq. 4) on VGG16 relu5_1 features at 1/16 of the image; EfficientNet-Lite0's 1/16
features (112 channels) are a ~9x cheaper CPU alternative. VGG16 and AlexNet keep torchvision's
``features`` layout so the offline weights (``recolorize.pretrained``) load by their torchvision keys, and so
the LPIPS taps (relu1_2 ... relu5_3, AlexNet relu1 ... relu5) sit at the published indices.

All inputs are float images in [0, 1], shape (B, 3, H, W); each network applies its own ImageNet
preprocessing. The ``*_taps`` methods take already-preprocessed tensors (LPIPS has its own scaling layer).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from recolorize.pretrained import alexnet_state, efficientnet_lite0_state, vgg16_state

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "imagenet_normalize",
    "freeze",
    "EvalOnly",
    "VGG16_TAPS",
    "ALEXNET_TAPS",
    "VGG16Features",
    "AlexNetFeatures",
    "EfficientNetLite0",
    "SemanticBackbone",
    "SEMANTIC_BACKBONES",
    "build_semantic_backbone",
]

logger = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: torchvision ``vgg16().features`` index of the ReLU after each named convolution.
VGG16_TAPS: dict[str, int] = {
    "relu1_2": 3,
    "relu2_2": 8,
    "relu3_3": 15,
    "relu4_3": 22,
    "relu5_1": 25,
    "relu5_3": 29,
}
#: torchvision ``alexnet().features`` index of the ReLU after each convolution.
ALEXNET_TAPS: dict[str, int] = {"relu1": 1, "relu2": 4, "relu3": 7, "relu4": 9, "relu5": 11}

# torchvision vgg16 "D" configuration; "M" = 2x2 max pool.
_VGG16_CFG: tuple[int | str, ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512,
)  # fmt: skip


# --- helpers


def imagenet_normalize(image01: torch.Tensor) -> torch.Tensor:
    """(x - mean) / std with torchvision's ImageNet statistics; x in [0, 1]."""
    mean = image01.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = image01.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (image01 - mean) / std


def freeze(module: nn.Module) -> nn.Module:
    """Turn off gradients for every parameter and switch to eval mode; returns the module."""
    for p in module.parameters():
        p.requires_grad_(False)
    return module.eval()


class EvalOnly(nn.Module):
    """Mixin for frozen networks: ``train()`` never leaves eval mode (BatchNorm stats, dropout stay fixed).

    Why: a parent model's ``.train()`` recurses into its children, and a frozen ImageNet net must not
    start updating running statistics or dropping activations because of it.
    """

    def train(self, mode: bool = True) -> EvalOnly:  # the requested mode is deliberately ignored
        return super().train(False)


def _check_image(image01: torch.Tensor) -> None:
    if image01.ndim != 4 or image01.shape[1] != 3:
        raise ValueError(f"expected images of shape (B, 3, H, W), got {tuple(image01.shape)}")


def run_taps(layers: nn.Sequential, x: torch.Tensor, indices: Sequence[int]) -> list[torch.Tensor]:
    """Run ``layers`` in order and return the outputs at ``indices`` (stops after the last one needed)."""
    wanted = sorted(set(indices))
    found: dict[int, torch.Tensor] = {}
    last = wanted[-1]
    for i, layer in enumerate(layers):
        x = layer(x)
        if i in wanted:
            found[i] = x
        if i == last:
            break
    return [found[i] for i in indices]


def _load_prefix(module: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load the subset of a state dict that the (possibly truncated) module has; strict on what it has."""
    own = module.state_dict()
    subset = {k: v for k, v in state.items() if k in own}
    missing = [k for k in own if k not in subset]
    if missing:
        raise RuntimeError(f"pretrained state lacks {missing[:4]}")
    module.load_state_dict(subset, strict=True)


# --- VGG16


def vgg16_layers(last_index: int = VGG16_TAPS["relu5_3"]) -> nn.Sequential:
    """torchvision's ``vgg16().features[: last_index + 1]`` (same indices, so the same state keys)."""
    layers: list[nn.Module] = []
    in_ch = 3
    for v in _VGG16_CFG:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(in_ch, int(v), kernel_size=3, padding=1), nn.ReLU(inplace=False)]
            in_ch = int(v)
    return nn.Sequential(*layers[: last_index + 1])


class VGG16Features(EvalOnly):
    """Frozen ImageNet VGG16 convolutions up to ``last`` (relu5_3 for LPIPS, relu5_1 for the paper's A_C)."""

    def __init__(self, last: str = "relu5_3", pretrained: bool = True) -> None:
        super().__init__()
        if last not in VGG16_TAPS:
            raise ValueError(f"unknown VGG16 tap {last!r}; choose one of {', '.join(VGG16_TAPS)}")
        self.features = vgg16_layers(VGG16_TAPS[last])
        if pretrained:
            _load_prefix(self, vgg16_state())
        freeze(self)

    def taps(self, x: torch.Tensor, names: Iterable[str]) -> list[torch.Tensor]:
        """Named ReLU outputs for an already-preprocessed input (no ImageNet normalisation here)."""
        names = list(names)
        unknown = [n for n in names if n not in VGG16_TAPS or VGG16_TAPS[n] >= len(self.features)]
        if unknown:
            raise ValueError(f"VGG16 taps {unknown} are not available in this network")
        return run_taps(self.features, x, [VGG16_TAPS[n] for n in names])

    def lpips_taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 of an already-scaled input (LPIPS)."""
        return self.taps(x, ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3"))

    def forward(
        self, image01: torch.Tensor, names: Iterable[str] = ("relu2_2", "relu5_1")
    ) -> list[torch.Tensor]:
        """Named taps of a [0, 1] image; default relu2_2 (1/2) and relu5_1 (1/16), the paper's features."""
        _check_image(image01)
        return self.taps(imagenet_normalize(image01), names)


# --- AlexNet


def alexnet_layers() -> nn.Sequential:
    """torchvision's ``alexnet().features[:12]`` (up to relu5, same indices and state keys)."""
    return nn.Sequential(
        nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2),
        nn.ReLU(inplace=False),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(64, 192, kernel_size=5, padding=2),
        nn.ReLU(inplace=False),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(192, 384, kernel_size=3, padding=1),
        nn.ReLU(inplace=False),
        nn.Conv2d(384, 256, kernel_size=3, padding=1),
        nn.ReLU(inplace=False),
        nn.Conv2d(256, 256, kernel_size=3, padding=1),
        nn.ReLU(inplace=False),
    )


class AlexNetFeatures(EvalOnly):
    """Frozen ImageNet AlexNet convolutions with the five LPIPS taps relu1 ... relu5."""

    def __init__(self, pretrained: bool = True) -> None:
        super().__init__()
        self.features = alexnet_layers()
        if pretrained:
            _load_prefix(self, alexnet_state())
        freeze(self)

    def lpips_taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """relu1 ... relu5 of an already-scaled input (LPIPS)."""
        return run_taps(self.features, x, list(ALEXNET_TAPS.values()))

    def forward(self, image01: torch.Tensor) -> list[torch.Tensor]:
        """relu1 ... relu5 of a [0, 1] image after ImageNet normalisation."""
        _check_image(image01)
        return self.lpips_taps(imagenet_normalize(image01))


# --- EfficientNet-Lite0

#: (repeats, kernel, stride, expand ratio, out channels) per stage, EfficientNet-Lite0.
EFFICIENTNET_LITE0_STAGES: tuple[tuple[int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
)
_BN_EPS = 1e-3


def same_padding(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TensorFlow "SAME" padding (before, after) on one axis: output ceil(size / stride), extra pad after."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


class Conv2dSame(nn.Conv2d):
    """``nn.Conv2d`` with TensorFlow "SAME" padding computed from the input size (asymmetric at stride 2)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        if torch.jit.is_tracing():
            # an ONNX export: the padding of any side divisible by the stride (every side the backbone takes
            # is: SemanticBackbone checks multiples of 16), as constants; traced from the sizes it came out
            # wrong at other sizes than the traced one
            height, width = self.stride[0] * 16, self.stride[1] * 16
        ph = same_padding(height, self.kernel_size[0], self.stride[0], self.dilation[0])
        pw = same_padding(width, self.kernel_size[1], self.stride[1], self.dilation[1])
        padding: tuple[int, int] = (ph[0], pw[0])
        if ph[0] != ph[1] or pw[0] != pw[1]:  # asymmetric: pad explicitly (costs a copy)
            x = F.pad(x, (pw[0], pw[1], ph[0], ph[1]))
            padding = (0, 0)
        return F.conv2d(x, self.weight, self.bias, self.stride, padding, self.dilation, self.groups)


class MBConvBlock(nn.Module):
    """Inverted residual (expand 1x1, depthwise kxk, project 1x1), ReLU6, no squeeze-excitation (Lite)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        mid = in_ch * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = Conv2dSame(in_ch, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, eps=_BN_EPS)
        self._depthwise_conv = Conv2dSame(mid, mid, kernel, stride=stride, groups=mid, bias=False)
        self._bn1 = nn.BatchNorm2d(mid, eps=_BN_EPS)
        self._project_conv = Conv2dSame(mid, out_ch, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(out_ch, eps=_BN_EPS)
        self.residual = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu6(self._bn0(self._expand_conv(x))) if self.has_expand else x
        h = F.relu6(self._bn1(self._depthwise_conv(h)))
        h = self._bn2(self._project_conv(h))
        return h + x if self.residual else h


def efficientnet_lite0_blocks() -> nn.ModuleList:
    """The 16 MBConv blocks of EfficientNet-Lite0 (stem gives 32 channels)."""
    blocks = []
    in_ch = 32
    for repeats, kernel, stride, expand, out_ch in EFFICIENTNET_LITE0_STAGES:
        for r in range(repeats):
            blocks.append(MBConvBlock(in_ch, out_ch, kernel, stride if r == 0 else 1, expand))
            in_ch = out_ch
    return nn.ModuleList(blocks)


def efficientnet_preprocess(image01: torch.Tensor) -> torch.Tensor:
    """The Lite models' preprocessing: RGB in [0, 255] mapped by (x - 127) / 128."""
    return (image01 * 255.0 - 127.0) / 128.0


class EfficientNetLite0(EvalOnly):
    """Frozen ImageNet EfficientNet-Lite0, EfficientNet-PyTorch naming (its state loads with strict=True)."""

    #: index of the last block at 1/16 of the input (112 channels).
    BLOCK_1_16 = 10
    #: index of the last block at 1/8 of the input (40 channels).
    BLOCK_1_8 = 4

    def __init__(self, pretrained: bool = True) -> None:
        super().__init__()
        self._conv_stem = Conv2dSame(3, 32, 3, stride=2, bias=False)
        self._bn0 = nn.BatchNorm2d(32, eps=_BN_EPS)
        self._blocks = efficientnet_lite0_blocks()
        self._conv_head = Conv2dSame(320, 1280, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(1280, eps=_BN_EPS)
        self._fc = nn.Linear(1280, 1000)
        if pretrained:
            self.load_state_dict(efficientnet_lite0_state(), strict=True)
        freeze(self)

    def _run_blocks(self, x: torch.Tensor, last: int) -> torch.Tensor:
        x = F.relu6(self._bn0(self._conv_stem(efficientnet_preprocess(x))))
        for block in self._blocks[: last + 1]:
            x = block(x)
        return x

    def features_1_16(self, image01: torch.Tensor) -> torch.Tensor:
        """Output of ``_blocks[10]``: (B, 112, ceil(H/16), ceil(W/16)) for a [0, 1] image."""
        _check_image(image01)
        return self._run_blocks(image01, self.BLOCK_1_16)

    def features_1_8_and_1_16(self, image01: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Outputs of ``_blocks[4]`` (B, 40, H/8, W/8) and ``_blocks[10]`` (B, 112, H/16, W/16), one pass."""
        _check_image(image01)
        x = self._run_blocks(image01, self.BLOCK_1_8)
        fine = x
        for block in self._blocks[self.BLOCK_1_8 + 1 : self.BLOCK_1_16 + 1]:
            x = block(x)
        return fine, x

    def forward(self, image01: torch.Tensor) -> torch.Tensor:
        """ImageNet logits (B, 1000) of a [0, 1] image (trained at 224 x 224)."""
        _check_image(image01)
        x = self._run_blocks(image01, len(self._blocks) - 1)
        x = F.relu6(self._bn1(self._conv_head(x)))
        return self._fc(x.mean(dim=(2, 3)))


# --- semantic


SEMANTIC_BACKBONES: dict[str, int] = {"vgg16": 512, "efficientnet_lite0": 112}


class SemanticBackbone(EvalOnly):
    """Frozen 1/16-resolution features phi(I) for the correspondence A_C (paper section 3.4.1).

    "vgg16": relu5_1 (512 ch, the paper); "efficientnet_lite0": ``_blocks[10]`` (112 ch). Input sides must be
    divisible by 16 so the output is exactly (B, out_channels, H/16, W/16).
    """

    def __init__(self, name: Literal["vgg16", "efficientnet_lite0"], pretrained: bool = True) -> None:
        super().__init__()
        if name not in SEMANTIC_BACKBONES:
            raise ValueError(
                f"unknown semantic backbone {name!r}; choose one of {', '.join(SEMANTIC_BACKBONES)}"
            )
        self.name = name
        self.out_channels = SEMANTIC_BACKBONES[name]
        self.net: nn.Module = (
            VGG16Features(last="relu5_1", pretrained=pretrained)
            if name == "vgg16"
            else EfficientNetLite0(pretrained=pretrained)
        )
        freeze(self)

    def forward(self, image01: torch.Tensor) -> torch.Tensor:
        _check_image(image01)
        h, w = image01.shape[-2:]
        if h % 16 or w % 16:
            raise ValueError(f"semantic backbone needs sides divisible by 16, got {h}x{w}")
        if self.name == "vgg16":
            return self.net(image01, ("relu5_1",))[0]
        return self.net.features_1_16(image01)

    def pyramid(self, image01: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(1/8, 1/16) features for the colour correspondence (EfficientNet-Lite0 only): (B, 40, H/8, W/8),
        (B, 112, H/16, W/16)."""
        _check_image(image01)
        if self.name != "efficientnet_lite0":
            raise ValueError("1/8 features are available for efficientnet_lite0 only")
        h, w = image01.shape[-2:]
        if h % 16 or w % 16:
            raise ValueError(f"semantic backbone needs sides divisible by 16, got {h}x{w}")
        return self.net.features_1_8_and_1_16(image01)


def build_semantic_backbone(name: str, pretrained: bool = True) -> SemanticBackbone:
    """The frozen backbone named by ``ModelConfig.semantic_backbone``."""
    logger.debug("building semantic backbone %s", name)
    return SemanticBackbone(name, pretrained=pretrained)  # type: ignore[arg-type]
