"""Behaviour of the paper's networks (sections 3.2-3.4) on tiny configs."""

from __future__ import annotations

import pytest
import torch

from recolorize.config import NUM_STYLES, get_config
from recolorize.networks.generator import Generator
from recolorize.networks.model import RecolorModel
from recolorize.networks.predictor import cosine_attention, random_column_mask, warp_by_attention


def images(batch: int, size: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return (
        torch.rand(batch, 3, size, size, generator=generator),
        torch.rand(batch, 3, size, size, generator=generator),
    )


@pytest.mark.parametrize("name", ["tiny", "base", "paper"])
def test_output_shapes_for_every_config(name: str) -> None:
    config = get_config(name)
    torch.manual_seed(0)
    model = RecolorModel(config).eval()
    size = config.resolution
    source, reference = images(1, size)
    with torch.no_grad():
        w0 = model.self_code(source)
        W0 = model.self_maps(source)
        maps = model.predict_maps(source, reference)
        out = model.generator(source, maps)
    assert w0.shape == (1, config.latent_dim)
    assert W0.shape == (1, config.latent_dim, size // 16, size // 16)
    assert len(maps) == NUM_STYLES
    assert (
        maps[0].shape[-1] == size // 16 and maps[9].shape[-1] == size // 8 and maps[12].shape[-1] == size // 4
    )
    assert out.shape == source.shape and torch.isfinite(out).all()


def test_gradient_reaches_every_trainable_parameter(tiny_model: RecolorModel) -> None:
    model = RecolorModel(tiny_model.config).train()
    source, target = images(2, 64, seed=1)
    # stage 1: G and E_w;  stage 2: E_W through G';  stage 3: P_W through G'
    loss = (model.generator(source, model.pair_code(source, target)) - target).abs().mean()
    loss = loss + (model.reconstruct(source) - source).abs().mean()
    loss = (
        loss
        + (model.generator(source, model.predict_maps(source, target, mask_ratio=0.5)) - target).abs().mean()
    )
    loss.backward()
    no_grad = [
        name
        for name, p in model.named_parameters()
        if p.requires_grad and (p.grad is None or p.grad.abs().sum() == 0)
    ]
    assert no_grad == []
    assert all(not p.requires_grad for p in model.semantic.parameters())


def test_code_equals_constant_maps() -> None:
    torch.manual_seed(0)
    generator = Generator(get_config("tiny")).eval()
    source, _ = images(2, 64)
    code = torch.randn(2, 32)
    with torch.no_grad():
        from_code = generator(source, code)
        maps = [code[:, :, None, None].expand(-1, -1, 1 + k % 5, 2 + k % 3) for k in range(NUM_STYLES)]
        from_maps = generator(source, maps)
    assert torch.allclose(from_code, from_maps, atol=1e-5)
    # and a non-constant map does change the image (the 2d space is richer than the 1d one)
    maps[5] = maps[5] + torch.randn_like(maps[5])
    with torch.no_grad():
        assert (generator(source, maps) - from_code).abs().max() > 1e-5


def test_generator_starts_near_identity() -> None:
    torch.manual_seed(0)
    generator = Generator(get_config("base"))
    source, _ = images(1, 256)
    with torch.no_grad():
        out = generator(source, torch.randn(1, 256))
    assert (out - source).abs().mean() * 255 < 10


def test_masking_only_in_training_mode(tiny_model: RecolorModel) -> None:
    source, reference = images(2, 64, seed=2)
    predictor = tiny_model.predictor
    inputs = tiny_model.predictor_inputs(source, reference)
    with torch.no_grad():
        predictor.eval()
        clean = predictor(source, reference, inputs)
        masked_eval = predictor(
            source, reference, inputs, mask_ratio=0.9, generator=torch.Generator().manual_seed(0)
        )
        predictor.train()
        masked_train = predictor(
            source, reference, inputs, mask_ratio=0.9, generator=torch.Generator().manual_seed(0)
        )
        predictor.eval()
    assert all(torch.equal(a, b) for a, b in zip(clean, masked_eval, strict=True))
    # BatchNorm also differs between modes, so compare the training-mode pass with and without masking
    predictor.train()
    with torch.no_grad():
        unmasked_train = predictor(source, reference, inputs, mask_ratio=0.0)
    predictor.eval()
    assert any((a - b).abs().max() > 1e-6 for a, b in zip(masked_train, unmasked_train, strict=True))


def test_random_column_mask_ratio_and_never_empty() -> None:
    keep = random_column_mask(4, 1000, 0.7, torch.Generator().manual_seed(0), torch.device("cpu"))
    assert abs(keep.float().mean().item() - 0.3) < 0.05
    keep = random_column_mask(3, 5, 1.0, torch.Generator().manual_seed(0), torch.device("cpu"))
    assert (keep.sum(dim=1) >= 1).all()


def test_hard_attention_picks_exactly_one_reference_position() -> None:
    generator = torch.Generator().manual_seed(0)
    source_features = torch.rand(2, 16, 4, 4, generator=generator)
    # the reference is a permutation of the source positions: each source cell must find its own copy
    perm = torch.randperm(16, generator=generator)
    reference_features = source_features.flatten(2)[:, :, perm].view(2, 16, 4, 4)
    attention = cosine_attention(source_features, reference_features)
    assert attention.shape == (2, 16, 16)
    reference_maps = torch.randn(2, 8, 4, 4, generator=generator)
    warped = warp_by_attention(attention, reference_maps, (4, 4), hard=True, temperature=0.01)
    one_hot = torch.zeros_like(attention).scatter_(2, attention.argmax(2, keepdim=True), 1.0)
    assert torch.equal(one_hot.sum(dim=2), torch.ones(2, 16))
    expected = torch.bmm(reference_maps.flatten(2), one_hot.transpose(1, 2)).view(2, 8, 4, 4)
    assert torch.allclose(warped, expected)
    inverse = torch.argsort(perm)
    assert torch.allclose(warped.flatten(2), reference_maps.flatten(2)[:, :, inverse])
    soft = warp_by_attention(attention, reference_maps, (4, 4), hard=False, temperature=1.0)
    assert not torch.allclose(soft, warped, atol=1e-3)


ABLATIONS = [
    {"masking": False},
    {"latent_levels": "w1_only"},
    {"latent_levels": "w3_only"},
    {"aspp": False},
    {"separate_reference_encoder": False},
    {"use_w": False},
    {"hard_attention": False},
]


@pytest.mark.parametrize(
    "switch", ABLATIONS, ids=lambda s: next(iter(s.items()))[0] + "=" + str(next(iter(s.values())))
)
def test_each_ablation_switch_changes_the_computation(switch: dict, tiny_model: RecolorModel) -> None:
    config = tiny_model.config.replace(ablations=switch)
    torch.manual_seed(0)
    full = RecolorModel(tiny_model.config, semantic=tiny_model.semantic)
    torch.manual_seed(0)
    ablated = RecolorModel(config, semantic=tiny_model.semantic)
    shared = ablated.state_dict()
    shared.update({k: v for k, v in full.state_dict().items() if k in shared and shared[k].shape == v.shape})
    ablated.load_state_dict(shared)  # same weights wherever the two share them
    source, reference = images(2, 64, seed=3)
    mask_ratio = 0.8
    full.train()
    ablated.train()
    with torch.no_grad():
        a = full.predict_maps(source, reference, mask_ratio, torch.Generator().manual_seed(1))
        b = ablated.predict_maps(source, reference, mask_ratio, torch.Generator().manual_seed(1))
    assert len(a) == len(b) == NUM_STYLES
    differs = any(x.shape != y.shape or (x - y).abs().max() > 1e-6 for x, y in zip(a, b, strict=True))
    assert differs


def test_latent_optimisation_lowers_reconstruction_error(tiny_model: RecolorModel) -> None:
    from recolorize.optimize import optimise_code, optimise_maps

    source, _ = images(1, 64, seed=4)
    target = (source * torch.tensor([1.2, 0.9, 0.7])[None, :, None, None]).clamp(0, 1)
    generator = tiny_model.generator
    with torch.no_grad():
        w0 = tiny_model.self_code(source)
    result_1d = optimise_code(generator, source, target, w0, steps=200, lr=0.05)
    assert result_1d.history[-1] < 0.8 * result_1d.history[0]
    result_2d = optimise_maps(generator, source, target, result_1d.latents, steps=100, lr=0.05)
    assert result_2d.history[-1] <= result_1d.history[-1] + 1e-4
    assert all(p.requires_grad for p in generator.parameters()) is False


def test_save_and_load_round_trip(tmp_path, tiny_model: RecolorModel) -> None:
    path = tmp_path / "model.safetensors"
    tiny_model.save(path)
    assert (tmp_path / "model.json").exists()
    loaded = RecolorModel.load(path)
    source, reference = images(1, 64, seed=5)
    with torch.no_grad():
        assert torch.allclose(
            loaded.recolour(source, reference), tiny_model.recolour(source, reference), atol=1e-6
        )
    tiny_model.save(tmp_path / "half.safetensors", half=True)
    assert (tmp_path / "half.safetensors").stat().st_size < path.stat().st_size * 0.6


def test_check_weights_leaves_the_random_stream_alone() -> None:
    """Checking the shipped file builds its (known, small) config on the CPU; that must not move torch's
    global random stream, which training seeds and then relies on."""
    from recolorize.inference.pipeline import default_weights_path
    from recolorize.networks.model import check_weights

    torch.manual_seed(0)
    expected = torch.rand(4)
    torch.manual_seed(0)
    check_weights(default_weights_path() / "model.safetensors")
    assert torch.equal(torch.rand(4), expected)
