"""The pointwise generator and what feeds it: MKL prior, guided upsampling, subgrid and band evaluation,
the colour correspondence, the masking NaN regression, region edits, the training cache, the learning-rate
schedule and the CLI recipe (build a cache, train, export, transfer).

Real photos: the two example JPEGs that ship with the repository. Everything runs on the CPU in one thread.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from recolorize.colour import lab_to_rgb
from recolorize.config import NUM_STYLES, StageConfig, get_config
from recolorize.networks.colour_prior import apply_colour_affine, mkl_affine
from recolorize.networks.model import RecolorModel
from recolorize.networks.pointwise import (
    HINT_CHANNELS,
    LOCAL_HINT_CHANNELS,
    Conditioning,
    GuidedUpsampler,
    PointwiseGenerator,
    lab_features,
    local_colour_transfer,
)
from recolorize.networks.predictor import cell_colour_stats

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
SOURCE_JPG = EXAMPLES / "source.jpg"
REFERENCE_JPG = EXAMPLES / "reference.jpg"


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def load_photo(path: Path, size: tuple[int, int] | None = None) -> torch.Tensor:
    """(1, 3, H, W) float32 in [0, 1]; ``size`` = (width, height) resizes (bicubic)."""
    with Image.open(path) as im:  # examples/ is committed: a missing photo is a failure, not a skip
        im = im.convert("RGB")
        if size is not None:
            im = im.resize(size, Image.Resampling.BICUBIC)
        array = np.asarray(im, dtype=np.float32) / 255.0
    return torch.from_numpy(array.copy()).permute(2, 0, 1)[None].contiguous()


@pytest.fixture(scope="module")
def backbone():
    """The frozen EfficientNet-Lite0 (loads offline), shared by every model of this file."""
    from recolorize.networks.backbones import build_semantic_backbone

    return build_semantic_backbone("efficientnet_lite0")


def make_model(name: str, backbone, seed: int = 0, random_rgb: bool = False) -> RecolorModel:
    """A fresh RecolorModel; ``random_rgb`` gives the zero-initialised output layer random weights, so the
    residual f is not identically 0 and the tests see the styles and the hint."""
    torch.manual_seed(seed)
    model = RecolorModel(get_config(name), semantic=backbone).eval()
    if random_rgb:
        with torch.no_grad():
            model.generator.to_rgb.weight.normal_()
    return model


def random_levels(config, size: int, seed: int) -> list[torch.Tensor]:
    """W1, W2, W3 at 1/16, 1/8, 1/4 of ``size``, expanded to the generator's 20 inputs."""
    generator = torch.Generator().manual_seed(seed)
    shapes = [(1, config.latent_dim, size // f, size // f) for f in (16, 8, 4)]
    levels = [torch.randn(*shape, generator=generator) for shape in shapes]
    return [levels[0]] * 9 + [levels[1]] * 3 + [levels[2]] * 8


def random_hint(size: int, seed: int) -> torch.Tensor:
    """A colour hint at 1/8: a scaled-Lab colour and a confidence in [0, 1]."""
    generator = torch.Generator().manual_seed(seed)
    colour = (
        torch.rand(1, 3, size // 8, size // 8, generator=generator)
        * torch.tensor([1.0, 0.6, 0.6])[None, :, None, None]
        - torch.tensor([0.0, 0.3, 0.3])[None, :, None, None]
    )
    confidence = torch.rand(1, 1, size // 8, size // 8, generator=generator)
    return torch.cat([colour, confidence], dim=1)


# --- 1. the MKL prior equals the numpy baseline ------------------------------------------------------------
def test_mkl_affine_equals_the_numpy_baseline() -> None:
    from recolorize.evaluation import baselines

    source, reference = load_photo(SOURCE_JPG), load_photo(REFERENCE_JPG)
    src_np = source[0].permute(1, 2, 0).numpy()
    ref_np = reference[0].permute(1, 2, 0).numpy()
    matrix, offset = baselines.mkl_map(src_np.reshape(-1, 3), ref_np.reshape(-1, 3))
    affine = mkl_affine(source, reference)
    assert affine.shape == (1, 3, 4)
    # numpy: x @ matrix + offset (row vectors); torch: M @ x + t (column vectors), so M = matrix.T
    np.testing.assert_allclose(affine[0, :, :3].numpy(), matrix.T, atol=1e-5)
    np.testing.assert_allclose(affine[0, :, 3].numpy(), offset, atol=1e-5)
    assert np.abs(matrix - np.eye(3)).max() > 0.05  # a real colour change, not a near-identity pair

    mapped = apply_colour_affine(affine, source)[0].permute(1, 2, 0).numpy()
    expected = baselines.mkl(src_np, ref_np)
    inside = (mapped >= 0.0) & (mapped <= 1.0)
    assert inside.mean() > 0.5
    np.testing.assert_allclose(mapped[inside], expected[inside], atol=1e-5)
    np.testing.assert_allclose(np.clip(mapped, 0, 1), expected, atol=1e-5)  # and clipped, everywhere
    # the transferred colours have the reference's mean
    np.testing.assert_allclose(mapped.reshape(-1, 3).mean(0), ref_np.reshape(-1, 3).mean(0), atol=1e-4)


# --- 2. an untrained generator is the identity on its base -------------------------------------------------
@pytest.mark.parametrize("name", ["tiny-pointwise", "pointwise"])
def test_fresh_generator_is_exactly_the_identity_on_its_base(name: str) -> None:
    config = get_config(name)
    torch.manual_seed(0)
    generator = PointwiseGenerator(config).eval()
    size = 64
    image = load_photo(SOURCE_JPG, (size, size))
    reference = load_photo(REFERENCE_JPG, (size, size))
    code = torch.randn(1, config.latent_dim)
    maps = random_levels(config, size, seed=1)
    with torch.no_grad():
        assert torch.equal(generator(image, code), image)
        assert torch.equal(generator(image, maps, Conditioning()), image)
        prior = mkl_affine(image, reference)
        conditioning = Conditioning(prior=prior, hint=random_hint(size, seed=2))
        base = apply_colour_affine(prior, image)
        assert (base < 0).any() or (base > 1).any()  # the base is not clipped: out-of-range values kept
        for latents in (code, maps):
            torch.testing.assert_close(generator(image, latents, conditioning), base, atol=1e-6, rtol=0)


# --- 3. a 1d code is a constant 2d map ----------------------------------------------------------------------
def test_code_equals_twenty_constant_maps() -> None:
    config = get_config("tiny-pointwise")
    torch.manual_seed(0)
    generator = PointwiseGenerator(config).eval()
    with torch.no_grad():
        generator.to_rgb.weight.normal_()
    image = load_photo(SOURCE_JPG, (64, 64))
    prior = mkl_affine(image, load_photo(REFERENCE_JPG, (64, 64)))
    conditioning = Conditioning(prior=prior, hint=random_hint(64, seed=3))
    code = torch.randn(1, config.latent_dim)
    sizes = [(4, 4)] * 9 + [(8, 8)] * 3 + [(16, 16)] * 8
    sizes[1], sizes[12] = (3, 5), (7, 2)  # grids that do not divide the image
    maps = [code[:, :, None, None].expand(-1, -1, *s).clone() for s in sizes]
    assert len(maps) == NUM_STYLES
    with torch.no_grad():
        from_code = generator(image, code, conditioning)
        from_maps = generator(image, maps, conditioning)
        assert (from_code - apply_colour_affine(prior, image)).abs().max() > 1e-3  # f is not 0
        torch.testing.assert_close(from_maps, from_code, atol=1e-5, rtol=0)
        maps[12] = maps[12] + torch.randn_like(maps[12])  # a non-constant map does change the image
        assert (generator(image, maps, conditioning) - from_code).abs().max() > 1e-4


# --- 4. subgrid and band evaluation equal the full evaluation -----------------------------------------------
@pytest.mark.parametrize(("name", "size"), [("tiny-pointwise", 64), ("pointwise", 128)])
def test_subgrid_and_band_evaluation_equal_the_full_one(name: str, size: int, backbone) -> None:
    model = make_model(name, backbone, random_rgb=True)
    image = load_photo(SOURCE_JPG, (size, size))
    reference = load_photo(REFERENCE_JPG, (size, size))
    maps = random_levels(model.config, size, seed=4)
    conditioning = model.pair_conditioning(image, reference, random_hint(size, seed=5))
    assert conditioning is not None and conditioning.prior is not None
    with torch.no_grad():
        full = model.generate(image, maps, conditioning)
        assert (full - apply_colour_affine(conditioning.prior, image)).abs().max() > 1e-3  # f is not 0
        for phase in ((1, 0), (0, 1), (1, 1)):
            sub = model.generate(image, maps, conditioning, stride=2, phase=phase)
            expected = full[:, :, phase[0] :: 2, phase[1] :: 2]
            torch.testing.assert_close(sub, expected, atol=1e-5, rtol=0)
        # a band of rows 10..29: its cells are not a nearest resampling of the grid (the gather path)
        rows = torch.arange(10, 30)
        guide_low = lab_features(image)
        plan = model.generator.upsampler.plan(
            lab_features(image[:, :, 10:30]), guide_low, rows=rows, full_size=(size, size)
        )
        assert plan["fast"] is False
        band = model.generator(
            image[:, :, 10:30], maps, conditioning, guide_low=guide_low, rows=rows, full_size=(size, size)
        )
        torch.testing.assert_close(band, full[:, :, 10:30], atol=1e-5, rtol=0)


# --- 5. guided upsampling keeps an edge that falls inside a cell --------------------------------------------
def test_guided_upsampler_keeps_an_edge_inside_a_cell() -> None:
    height, width, cell, edge = 16, 64, 8, 37
    image = torch.zeros(1, 3, height, width)
    image[:, 0, :, :edge] = 1.0  # red left of x = 37
    image[:, 2, :, edge:] = 1.0  # blue from x = 37: the edge cuts cell 4 (x = 32..39) 5:3
    grid = (height // cell, width // cell)
    coarse = F.adaptive_avg_pool2d(image[:, :1], grid)  # 1 on red cells, 0 on blue, 5/8 on the mixed one
    assert coarse[0, 0, 0].tolist() == [1, 1, 1, 1, 0.625, 0, 0, 0]
    guide = lab_features(image)
    upsampler = GuidedUpsampler()
    with torch.no_grad():
        plan = upsampler.plan(guide, F.adaptive_avg_pool2d(guide, grid))
        guided = upsampler.apply(plan, coarse)[0, 0]
    bilinear = F.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False)[0, 0]
    red, blue = slice(edge - 3, edge), slice(edge, edge + 3)
    assert guided[:, red].min() >= 0.9 and guided[:, blue].max() <= 0.1
    # plain bilinear upsampling blends the two sides across the edge
    assert bilinear[:, red].max() < 0.9 and bilinear[:, blue].min() > 0.1
    assert bilinear[:, red].min() < 0.75 and bilinear[:, blue].max() > 0.25
    # far from the edge both agree
    torch.testing.assert_close(guided[:, :16], bilinear[:, :16])


def test_fast_path_serves_the_training_grids() -> None:
    """Every 2nd pixel of a 128 px crop on the 1/16, 1/8 and 1/4 grids takes the fast (nearest) path."""
    guide = lab_features(torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0)))
    for cells in (8, 16, 32):
        plan = GuidedUpsampler().plan(
            guide,
            torch.zeros(1, 3, cells, cells),
            torch.arange(1, 128, 2),
            torch.arange(0, 128, 2),
            (128, 128),
        )
        assert plan["fast"] is True, cells


@pytest.mark.parametrize(("width", "cells"), [(3024, 8), (82, 8), (94, 16), (640, 16)])
def test_fast_path_equals_gather_path_for_any_width(width: int, cells: int) -> None:
    image = torch.rand(1, 3, 2, width, generator=torch.Generator().manual_seed(0))
    guide = lab_features(image)
    upsampler = GuidedUpsampler()
    coarse = torch.randn(1, 1, 1, cells, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        plan = upsampler.plan(guide, F.adaptive_avg_pool2d(guide, (1, cells)))
        fast = upsampler.apply(plan, coarse)  # the fast path where it picks the same cells, else the gather
        gathered = upsampler.apply({**plan, "fast": False}, coarse)
    differing = ((fast - gathered).abs().amax(dim=(0, 1, 2)) > 1e-5).nonzero().flatten().tolist()
    assert differing == []


# --- 6. the colour correspondence moves colours to the matching place ---------------------------------------
def test_colour_hint_follows_the_content_of_a_mirrored_reference(backbone) -> None:
    model = make_model("pointwise", backbone)
    source = load_photo(SOURCE_JPG, (128, 128))
    reference = source.flip(-1)
    with torch.no_grad():
        _, conditioning = model.predict(source, reference)
    assert conditioning is not None and conditioning.hint is not None
    assert conditioning.hint.shape == (1, HINT_CHANNELS, 16, 16)
    warped = conditioning.hint[:, :3]
    own = cell_colour_stats(source, (16, 16))[:, :3]
    unwarped = cell_colour_stats(reference, (16, 16))[:, :3]
    warped_error = (warped - own).abs().mean().item()
    unwarped_error = (unwarped - own).abs().mean().item()
    print(f"cell Lab error: warped {warped_error:.4f}, unwarped {unwarped_error:.4f}")
    assert warped_error < 0.5 * unwarped_error


# --- 6b. the local colour transfer along the correspondence -------------------------------------------------
def test_local_transfer_reproduces_a_per_cell_grade_from_an_aligned_reference() -> None:
    """Each 16x16 cell of a photo graded by its own gain and offset in Lab: the local transfer computed from
    the graded photo's cell statistics recovers it (what a perfect match gives), far better than MKL."""
    source = load_photo(SOURCE_JPG, (64, 64))
    generator = torch.Generator().manual_seed(0)
    gain = 0.6 + 0.8 * torch.rand(1, 3, 4, 4, generator=generator)
    offset = 0.2 * torch.rand(1, 3, 4, 4, generator=generator) - 0.1
    lab = lab_features(source)
    graded_lab = lab * F.interpolate(gain, size=(64, 64), mode="nearest") + F.interpolate(
        offset, size=(64, 64), mode="nearest"
    )
    graded_lab[:, 0].clamp_(0.02, 0.98)
    target = lab_to_rgb(graded_lab * 100.0).clamp(0, 1)
    target_lab = lab_features(target)
    own, theirs = cell_colour_stats(source, (4, 4)), cell_colour_stats(target, (4, 4))
    hint = torch.cat([theirs[:, :3], torch.ones(1, 1, 4, 4), theirs[:, 3:], own], dim=1)
    pixel_hint = F.interpolate(hint, size=(64, 64), mode="nearest")
    local = local_colour_transfer(pixel_hint, lab)
    mkl = lab_features(apply_colour_affine(mkl_affine(source, target), source).clamp(0, 1))
    local_error = (local - target_lab).abs().mean().item()
    mkl_error = (mkl - target_lab).abs().mean().item()
    print(f"scaled-Lab error: local {local_error:.4f}, MKL {mkl_error:.4f}")
    assert local_error < 0.3 * mkl_error


def test_local_transfer_of_no_hint_is_the_pixel_itself() -> None:
    lab = lab_features(load_photo(SOURCE_JPG, (32, 32)))
    out = local_colour_transfer(torch.zeros(1, LOCAL_HINT_CHANNELS, 32, 32), lab)
    assert torch.allclose(out, lab, atol=1e-6)


def test_local_transfer_model_hint_layout_and_strength(backbone) -> None:
    """With ``local_transfer`` P_W hands G 13 hint channels; strength fades the whole hint toward none."""
    config = get_config("tiny-pointwise").replace(local_transfer=True)
    torch.manual_seed(0)
    model = RecolorModel(config, semantic=backbone).eval()
    source = load_photo(SOURCE_JPG, (64, 64))
    reference = load_photo(REFERENCE_JPG, (64, 64))
    with torch.no_grad():
        maps, conditioning = model.predict(source, reference)
        assert conditioning is not None and conditioning.hint is not None
        assert conditioning.hint.shape == (1, LOCAL_HINT_CHANNELS, 8, 8)
        assert torch.allclose(conditioning.hint[:, 7:], cell_colour_stats(source, (8, 8)), atol=1e-5)
        half = conditioning.at_strength(0.5).hint
        assert torch.allclose(half, conditioning.hint * 0.5)  # fades toward no hint: continuous in strength
        assert conditioning.at_strength(0.0).hint.abs().max() == 0
        with torch.no_grad():
            model.generator.to_rgb.weight.normal_()
            model.generator.layers[0].weight[:, -3:].zero_()
        before = model.generate(source, maps, conditioning)
        model.generator.layers[0].weight[:, -3:].normal_()
        after = model.generate(source, maps, conditioning)
    assert not torch.allclose(before, after)  # f reads the local transfer columns


def test_with_local_transfer_keeps_the_self_reconstruction(backbone) -> None:
    """Growing a trained model for the local transfer leaves G(I, W0) unchanged (strength 0, E_W stay valid)
    and makes f read the match's colour with a reference."""
    model = make_model("tiny-pointwise", backbone, random_rgb=True)
    grown = model.with_local_transfer()
    assert grown.config.local_transfer and not model.config.local_transfer
    source = load_photo(SOURCE_JPG, (64, 64))
    reference = load_photo(REFERENCE_JPG, (64, 64))
    with torch.no_grad():
        assert torch.allclose(grown.reconstruct(source), model.reconstruct(source), atol=1e-6)
        old = model.generate(source, *model.predict(source, reference))
        new = grown.generate(source, *grown.predict(source, reference))
    assert (old - new).abs().mean() > 1e-4
    with pytest.raises(ValueError):
        grown.with_local_transfer()


# --- 7. masking: every gradient stays finite (the temperature NaN) ------------------------------------------
def test_masked_training_step_has_finite_gradients(backbone) -> None:
    model = make_model("tiny-pointwise", backbone, random_rgb=True).train()
    source = load_photo(SOURCE_JPG, (64, 64))
    reference = load_photo(REFERENCE_JPG, (64, 64))
    source, reference = torch.cat([source, reference]), torch.cat([reference, source.flip(-1)])
    target = reference.flip(-1)
    maps, conditioning = model.predict(source, reference, 0.9, torch.Generator().manual_seed(0))
    out = model.generate(source, maps, conditioning, stride=2, phase=(1, 1))
    loss = (out - target[:, :, 1::2, 1::2]).abs().mean()
    loss.backward()
    named = [*model.predictor.named_parameters(), *model.generator.named_parameters()]
    missing = [n for n, p in named if p.grad is None]
    assert missing == []
    not_finite = [n for n, p in named if not torch.isfinite(p.grad).all()]
    assert not_finite == []
    assert model.predictor.log_temperature.grad.abs() > 0  # the gradient did go through the temperature


# --- 8. region edits ----------------------------------------------------------------------------------------
def _oklab(image: torch.Tensor) -> torch.Tensor:
    from recolorize.colour import linear_to_oklab, srgb_to_linear

    return linear_to_oklab(srgb_to_linear(image))


def test_edit_regions_changes_a_region_strongly() -> None:
    from recolorize.data.folders import Photo
    from recolorize.data.pairs import load_crop
    from recolorize.data.region_edits import edit_regions, to_greyscale

    rng = np.random.default_rng(0)
    image, regions = load_crop(Photo(SOURCE_JPG), 64, rng, crop_scale=(1.0, 1.0), flip_probability=0.0)
    labels = np.unique(regions)
    assert len(labels) >= 2
    lab = _oklab(image)
    strong = 0
    seeds = range(6)
    for seed in seeds:
        out = edit_regions(image, regions, np.random.default_rng(seed))
        assert out.shape == image.shape and out.dtype == torch.float32
        assert out.min() >= 0.0 and out.max() <= 1.0
        edited = _oklab(out)
        changes = []
        for label in labels:
            mask = torch.from_numpy(regions == label)
            chroma_in = torch.hypot(lab[1], lab[2])[mask]
            chroma_out = torch.hypot(edited[1], edited[2])[mask]
            turn = torch.atan2(edited[2], edited[1])[mask] - torch.atan2(lab[2], lab[1])[mask]
            weight = torch.minimum(chroma_in, chroma_out)  # hue matters where both are colourful
            rotation = torch.atan2((weight * turn.sin()).sum(), (weight * turn.cos()).sum()).abs()
            changes.append((math.degrees(rotation), (chroma_out.mean() - chroma_in.mean()).abs().item()))
        strong += any(rotation > 45.0 or chroma > 0.03 for rotation, chroma in changes)
    assert strong >= 4, f"only {strong} of {len(seeds)} edits changed a region's hue or chroma a lot"

    grey = to_greyscale(image)
    assert grey.shape == image.shape
    assert torch.equal(grey[0], grey[1]) and torch.equal(grey[1], grey[2])
    pure_green = torch.zeros(3, 2, 2)
    pure_green[1] = 1.0
    torch.testing.assert_close(to_greyscale(pure_green), torch.full((3, 2, 2), 0.7152))


# --- 9. the training cache ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def example_photos(tmp_path_factory: pytest.TempPathFactory):
    from recolorize.data.folders import discover_photos

    folder = tmp_path_factory.mktemp("photos")
    for path in (SOURCE_JPG, REFERENCE_JPG):
        (folder / path.name).symlink_to(path)
    return discover_photos(folder)


TINY_CACHE = {"resolution": 64, "items": 6, "shard_size": 4}


@pytest.fixture(scope="module")
def cache64(example_photos, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from recolorize.data.cache import CacheSettings, build_cache

    out = tmp_path_factory.mktemp("cache64")
    build_cache(example_photos, out, CacheSettings(**TINY_CACHE), progress=False)
    return out


def test_cache_is_complete_deterministic_and_resumable(example_photos, cache64: Path, backbone) -> None:
    from recolorize.data.cache import FEATURE_KEYS, IMAGE_KEYS, CacheSettings, TrainingCache, build_cache

    shards = sorted(p.name for p in cache64.glob("shard_*.safetensors"))
    assert shards == ["shard_00000.safetensors", "shard_00001.safetensors"]
    cache = TrainingCache(cache64)
    assert len(cache) == 6
    assert set(cache.tensors) == set(IMAGE_KEYS + FEATURE_KEYS)
    for key in IMAGE_KEYS:
        assert cache.tensors[key].shape == (6, 3, 64, 64) and cache.tensors[key].dtype == torch.uint8
    for role in ("source", "reference"):
        assert cache.tensors[f"semantic_{role}"].shape == (6, 112, 4, 4)
        assert cache.tensors[f"fine_{role}"].shape == (6, 40, 8, 8)
        assert cache.tensors[f"semantic_{role}"].dtype == torch.float16
    # the features are those of exactly the stored (uint8) images
    with torch.no_grad():
        fine, coarse = backbone.pyramid(cache.tensors["reference"][:2].float() / 255.0)
    torch.testing.assert_close(cache.tensors["semantic_reference"][:2].float(), coarse, atol=0.02, rtol=0.01)
    torch.testing.assert_close(cache.tensors["fine_reference"][:2].float(), fine, atol=0.02, rtol=0.01)
    # the triples differ from each other and within each (not 6 copies of one crop)
    sources, targets = cache.tensors["source"].float(), cache.tensors["target"].float()
    assert (sources[0] - sources[1]).abs().mean() > 1 and (sources - targets).abs().mean() > 1

    # resume: a deleted shard is rebuilt byte for byte, the other one is not touched
    kept = cache64 / "shard_00000.safetensors"
    kept_mtime = kept.stat().st_mtime_ns
    (cache64 / "shard_00001.safetensors").unlink()
    build_cache(example_photos, cache64, CacheSettings(**TINY_CACHE), progress=False)
    assert kept.stat().st_mtime_ns == kept_mtime
    rebuilt = TrainingCache(cache64)
    for key, tensor in cache.tensors.items():
        assert torch.equal(rebuilt.tensors[key], tensor), key

    with pytest.raises(ValueError, match="other settings"):
        build_cache(example_photos, cache64, CacheSettings(**{**TINY_CACHE, "seed": 1}), progress=False)


# --- 10. learning-rate schedule -----------------------------------------------------------------------------
def test_learning_rate_warms_up_then_decays_to_zero() -> None:
    from recolorize.training.stages import learning_rate

    config = StageConfig(steps=100, batch=1, lr=2.0, warmup_steps=10, cosine=True)
    rates = [learning_rate(step, config) for step in range(config.steps)]
    warmup = rates[:10]
    assert warmup[0] == pytest.approx(0.2)
    assert np.allclose(np.diff(warmup), 0.2)  # linear rise to the full rate
    assert rates[10] == pytest.approx(2.0)
    assert all(a >= b for a, b in zip(rates[10:], rates[11:], strict=False))  # cosine decay
    assert rates[55] == pytest.approx(1.0, abs=0.05)  # half-way through the decay: half the rate
    assert rates[-1] < 1e-3 * config.lr and rates[-1] >= 0.0

    constant = StageConfig(steps=50, batch=1, lr=0.3)
    assert [learning_rate(step, constant) for step in range(50)] == [0.3] * 50
    warmup_only = StageConfig(steps=50, batch=1, lr=0.3, warmup_steps=5)
    assert [learning_rate(step, warmup_only) for step in range(5, 50)] == [0.3] * 45
    cosine_only = StageConfig(steps=50, batch=1, lr=0.3, cosine=True)
    assert learning_rate(0, cosine_only) == pytest.approx(0.3) and learning_rate(49, cosine_only) < 1e-3


# --- 11. the CLI: train from a cache, export, transfer ------------------------------------------------------
def test_train_from_cache_export_and_transfer(cache64: Path, tmp_path: Path, capsys) -> None:
    from recolorize import Recolorizer
    from recolorize.cli import main

    run, out = tmp_path / "run", tmp_path / "export"
    settings = ["--set", "log_every=2", "--set", "checkpoint_every=2"]
    args = ["train", "--config", "tiny-lut", "--data", str(cache64), "--run", str(run), "--steps", "4"]
    assert main([*args, *settings]) == 0
    with (run / "metrics.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    for stage in ("generator", "wencoder", "predictor"):
        assert [int(r["step"]) for r in rows if r["stage"] == stage] == [2, 4]
        assert (run / f"{stage}.safetensors").is_file()
    assert main(["export", str(run), "-o", str(out)]) == 0
    assert {p.name for p in out.iterdir()} >= {"model.safetensors", "model.json", "predictor.onnx"}
    recolorizer = Recolorizer.from_pretrained(out)  # the exported graphs, on ONNX Runtime
    assert recolorizer.config.name == "tiny-lut"
    result = recolorizer.transfer(SOURCE_JPG, REFERENCE_JPG)
    with Image.open(SOURCE_JPG) as source:
        assert result.size == source.size

    capsys.readouterr()
    bad = ["train", "--config", "pointwise", "--data", str(cache64), "--run", str(tmp_path / "bad")]
    assert main([*bad, "--steps", "1"]) == 2
    error = capsys.readouterr().err
    assert "64 px" in error and "128 px" in error, error
    assert not (tmp_path / "bad" / "checkpoint.safetensors").exists()


def test_colour_statistics_match_numpy_on_a_real_photo() -> None:
    """P_W's colour-statistics code: Lab mean, spread and Lab + RGB quantiles, as skimage and numpy give."""
    from skimage.color import rgb2lab

    from recolorize.networks.predictor import _QUANTILES, colour_statistics

    with Image.open(EXAMPLES / "source.jpg") as im:
        image = np.asarray(im.convert("RGB"), dtype=np.float32)[::4, ::4] / 255.0
    stats = colour_statistics(torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float())[0]
    lab = rgb2lab(image).reshape(-1, 3) / 100.0
    rgb = image.reshape(-1, 3)
    q = len(_QUANTILES)
    np.testing.assert_allclose(stats[:3].numpy(), lab.mean(0), atol=2e-3)
    np.testing.assert_allclose(stats[3:6].numpy(), lab.std(0, ddof=1), atol=2e-3)
    np.testing.assert_allclose(
        stats[6 : 6 + 3 * q].numpy(), np.quantile(lab, _QUANTILES, axis=0).ravel(), atol=2e-3
    )
    np.testing.assert_allclose(
        stats[6 + 3 * q :].numpy(), np.quantile(rgb, _QUANTILES, axis=0).ravel(), atol=1e-4
    )
