"""The project's LPIPS against the original ``lpips`` package, and the training losses."""

from __future__ import annotations

import importlib
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from recolorize.losses import colour_histogram, histogram_loss, l1_loss, lpips_loss, w0_loss
from recolorize.lpips import LPIPS, lpips_distance
from recolorize.pretrained import alexnet_state, vgg16_state

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
PHOTO_PAIRS = [("dpst/input/in1.png", "dpst/style/tar1.png"), ("dpst/input/in5.png", "dpst/style/tar5.png")]


# --- reference LPIPS


def _tv_vgg16_features() -> nn.Sequential:
    """torchvision's vgg16().features written out by hand (independent of recolorize's layer builder)."""
    layers: list[nn.Module] = []
    cin = 3
    for v in (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"):
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(cin, v, 3, padding=1), nn.ReLU(inplace=True)]
            cin = v
    return nn.Sequential(*layers)


def _tv_alexnet_features() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 64, 11, stride=4, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
        nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
        nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
    )  # fmt: skip


class _TvNet(nn.Module):
    def __init__(self, features: nn.Sequential, state: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.features = features
        self.load_state_dict(state, strict=True)


def _fake_torchvision() -> types.ModuleType:
    """A stand-in ``torchvision`` exposing the three constructors ``lpips.pretrained_networks`` calls."""

    def vgg16(pretrained: bool = True, **_: object) -> _TvNet:
        assert pretrained, "the cross-check needs the ImageNet weights"
        return _TvNet(_tv_vgg16_features(), vgg16_state())

    def alexnet(pretrained: bool = True, **_: object) -> _TvNet:
        assert pretrained, "the cross-check needs the ImageNet weights"
        return _TvNet(_tv_alexnet_features(), alexnet_state())

    def squeezenet1_1(*_: object, **__: object) -> nn.Module:
        raise NotImplementedError("no offline SqueezeNet weights")

    tv = types.ModuleType("torchvision")
    models = types.ModuleType("torchvision.models")
    models.vgg16, models.alexnet, models.squeezenet1_1 = vgg16, alexnet, squeezenet1_1
    tv.models = models
    return tv


@pytest.fixture(scope="module")
def upstream_lpips():
    """The PyPI ``lpips`` package imported against the stand-in torchvision; sys.modules restored after."""
    if importlib.util.find_spec("lpips") is None:
        pytest.skip("PyPI lpips==0.1.4 is not installed (pip install --no-deps lpips==0.1.4)")
    tv = _fake_torchvision()
    saved = {k: sys.modules.get(k) for k in ("torchvision", "torchvision.models")}
    saved_lpips = {k: v for k, v in sys.modules.items() if k == "lpips" or k.startswith("lpips.")}
    sys.modules["torchvision"], sys.modules["torchvision.models"] = tv, tv.models
    for k in saved_lpips:
        del sys.modules[k]
    try:
        yield importlib.import_module("lpips")
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
        for k in [k for k in sys.modules if k == "lpips" or k.startswith("lpips.")]:
            del sys.modules[k]
        sys.modules.update(saved_lpips)


def _load_photo(rel: str, size: tuple[int, int] = (128, 96)) -> torch.Tensor:
    image = Image.open(DATA / rel).convert("RGB").resize(size, Image.BICUBIC)
    return torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)


@pytest.fixture(scope="module")
def photo_pairs() -> tuple[torch.Tensor, torch.Tensor]:
    missing = [p for pair in PHOTO_PAIRS for p in pair if not (DATA / p).is_file()]
    if missing:
        pytest.skip(f"real photos not found under {DATA} ({missing[0]}); the shared data folder is absent")
    a = torch.stack([_load_photo(s) for s, _ in PHOTO_PAIRS])
    b = torch.stack([_load_photo(r) for _, r in PHOTO_PAIRS])
    return a, b


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_lpips_matches_upstream_package_on_photos_and_noise(net, upstream_lpips, photo_pairs):
    ours = LPIPS(net)
    ref = upstream_lpips.LPIPS(net=net, verbose=False)
    a01, b01 = photo_pairs
    noise = torch.rand((2, *a01.shape[1:]), generator=torch.Generator().manual_seed(0))
    a = torch.cat([a01, noise[:1]]) * 2 - 1
    b = torch.cat([b01, noise[1:]]) * 2 - 1
    with torch.no_grad():
        expected = ref(a, b).flatten()
        got = ours(a, b)
    assert got.shape == (3,)
    assert (
        float(expected.min()) > 0.05
    )  # real, distinct images: a zero-vs-zero comparison would prove nothing
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-4)
    # The [0, 1] helper is the same distance.
    with torch.no_grad():
        torch.testing.assert_close(lpips_distance(a01, b01, ours), expected[:2], rtol=0, atol=1e-4)


# --- LPIPS module


@pytest.fixture(scope="module")
def alex() -> LPIPS:
    return LPIPS("alex")


def test_lpips_gradients_reach_inputs_and_module_stays_frozen(alex):
    gen = torch.Generator().manual_seed(1)
    pred = torch.rand(2, 3, 64, 64, generator=gen, requires_grad=True)
    target = torch.rand(2, 3, 64, 64, generator=gen)
    loss = lpips_loss(pred, target, alex)
    assert loss.ndim == 0
    loss.backward()
    assert pred.grad is not None and pred.grad.abs().sum() > 0
    assert all(not p.requires_grad and p.grad is None for p in alex.parameters())
    alex.train()
    assert not any(m.training for m in alex.modules())


def test_lpips_identical_images_is_zero_and_grows_with_noise(alex):
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        d0 = lpips_distance(x, x, alex)
        d1 = lpips_distance(x, (x + 0.05 * torch.randn_like(x)).clamp(0, 1), alex)
        d2 = lpips_distance(x, (x + 0.3 * torch.randn_like(x)).clamp(0, 1), alex)
    assert float(d0) == pytest.approx(0.0, abs=1e-7)
    assert 0 < float(d1) < float(d2)


# --- losses


def test_l1_loss():
    a = torch.zeros(1, 3, 2, 2)
    assert float(l1_loss(a, a + 0.25)) == pytest.approx(0.25)


class _ToyCode(nn.Module):
    """Stands in for E_w(I, I): a colour-statistics code (mean and std per channel, then a linear map)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 8)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.cat([image.mean(dim=(2, 3)), image.std(dim=(2, 3))], dim=1))


def test_w0_loss_zero_for_identical_codes_positive_otherwise():
    torch.manual_seed(0)
    code = _ToyCode()
    reference = torch.rand(2, 3, 16, 16, requires_grad=True)
    same = reference.detach().clone().requires_grad_(True)
    assert w0_loss(code, reference, same).item() == pytest.approx(0.0, abs=1e-7)

    prediction = (reference.detach() * 0.5).requires_grad_(True)
    loss = w0_loss(code, reference, prediction)
    assert loss.item() > 1e-3
    loss.backward()
    assert prediction.grad is not None and prediction.grad.abs().sum() > 0
    assert reference.grad is None  # the reference's code is a target, computed without gradients


def test_colour_histogram_is_normalised_and_peaks_at_the_right_bin():
    image = torch.full((1, 3, 4, 4), (5 + 0.5) / 32)
    image[:, 1] = (20 + 0.5) / 32
    hist = colour_histogram(image, bins=32)
    assert hist.shape == (1, 3, 32)
    torch.testing.assert_close(hist.sum(-1), torch.ones(1, 3))
    assert hist[0].argmax(-1).tolist() == [5, 20, 5]


def test_colour_histogram_approaches_the_hard_histogram_for_small_sigma():
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    soft = colour_histogram(x, bins=8, sigma=0.01)
    hard = (
        np.stack([np.histogram(x[0, c].numpy(), bins=8, range=(0, 1))[0] for c in range(3)]) / x[0, 0].numel()
    )
    np.testing.assert_allclose(soft[0].numpy(), hard, atol=0.02)


def test_histogram_loss_zero_for_identical_and_decreases_under_gradient_steps():
    gen = torch.Generator().manual_seed(4)
    reference = torch.rand(1, 3, 24, 24, generator=gen) * 0.5 + 0.3
    assert float(histogram_loss(reference, reference)) == pytest.approx(0.0, abs=1e-7)

    # A colour cast of 0.15 (about 5 bins): overlapping histograms, as between a prediction and its reference.
    pred = (reference - 0.15 + 0.02 * torch.randn(reference.shape, generator=gen)).clamp(0, 1)
    pred.requires_grad_(True)
    opt = torch.optim.Adam([pred], lr=0.02)
    losses = []
    for _ in range(8):
        opt.zero_grad()
        loss = histogram_loss(pred, reference)
        loss.backward()
        assert pred.grad is not None and torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0
        opt.step()
        losses.append(loss.item())
    assert losses[0] > 0.3
    assert losses[-1] < 0.75 * losses[0]
    # images of different sizes compare too (histograms are normalised)
    assert histogram_loss(reference[..., :12, :], reference).item() < 0.5
