"""The lattice prior inside the model (config ``pointwise-lut``): the generator's base is the prior exactly,
on every path (G at the working size, the full-resolution direct renderer), strength 0 returns the source,
``lut --method prior`` exports the prior itself, and the training cache stores the prior inference fits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from recolorize.config import get_config
from recolorize.imaging import load_image
from recolorize.inference.lut import apply_lut
from recolorize.inference.lut.from_transfer import prior_lut, transfer_lut
from recolorize.inference.pipeline import Recolorizer
from recolorize.networks.model import RecolorModel
from recolorize.prior import apply_lattice, apply_local_field

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture(scope="module")
def prior_only(tmp_path_factory: pytest.TempPathFactory) -> Recolorizer:
    """A tiny pointwise model over the lattice prior with f's output layer zero (as initialised), exported
    and run as users run it: its output is the prior."""
    from recolorize.export.onnx import export_onnx

    torch.manual_seed(0)
    model = RecolorModel(get_config("tiny-lut")).eval()
    assert not model.generator.to_rgb.weight.any()
    folder = tmp_path_factory.mktemp("prior-only")
    export_onnx(model, folder)
    return Recolorizer.from_pretrained(folder)


@pytest.fixture(scope="module")
def prepared(prior_only: Recolorizer):
    return prior_only.prepare(load_image(EXAMPLES / "source.jpg"), EXAMPLES / "reference.jpg")


def _lattice(prepared) -> np.ndarray:
    return prepared.lattice


def _prior(prepared, image: np.ndarray) -> np.ndarray:
    """The prior at every pixel: its lattice plus its local field (the README pair is one scene: it has
    one)."""
    assert prepared.local is not None
    lattice = apply_lattice(prepared.lattice, image)
    return np.clip(lattice + apply_local_field(prepared.local, image), 0.0, 1.0)


def test_the_rendered_photo_is_the_prior_applied_to_it(prior_only: Recolorizer, prepared) -> None:
    rendered = prior_only.render_array(prepared)
    expected = _prior(prepared, prepared.source.rgb)
    assert np.abs(rendered - expected).max() < 1e-4
    assert np.abs(rendered - prepared.source.rgb).mean() * 255 > 5.0  # the prior does re-colour the cup


def test_strength_zero_is_the_source_and_half_is_half_the_prior(prior_only: Recolorizer, prepared) -> None:
    source = prepared.source.rgb
    np.testing.assert_array_equal(prior_only.render_array(prepared, 0.0), source)
    half = prior_only.render_array(prepared, 0.5)
    full = _prior(prepared, source)
    inside = (full > 0.01) & (full < 0.99)  # where nothing was clipped the blend is exactly linear
    assert np.abs(half - (source + full) / 2)[inside].max() < 1e-3


def test_lut_method_prior_is_the_prior_exactly(prior_only: Recolorizer, prepared) -> None:
    lut = transfer_lut(prior_only, prepared, method="prior")
    assert lut.size == 33
    colours = np.random.default_rng(0).random((5000, 3)).astype(np.float32)
    np.testing.assert_allclose(apply_lut(lut, colours), apply_lattice(_lattice(prepared), colours), atol=2e-6)
    # f adds nothing here, the local field does: "fit" is the lattice plus the field's change fitted as
    # a LUT (one colour, one change: the field's average over that colour), nearer the rendering
    fitted = transfer_lut(prior_only, prepared, method="fit")
    source = prepared.source.rgb
    rendered = prior_only.render_array(prepared)
    error_fit = np.abs(np.clip(apply_lut(fitted, source), 0, 1) - rendered).mean()
    error_lattice = np.abs(np.clip(apply_lut(lut, source), 0, 1) - rendered).mean()
    assert error_fit < 0.8 * error_lattice, (error_fit, error_lattice)
    assert prior_lut(prepared, 0.0).table.tolist() == transfer_lut(prior_only, prepared, 0.0).table.tolist()


def test_the_training_cache_stores_the_prior_fitted_on_its_384_px_crops(shared_data: Path, tmp_path) -> None:
    from recolorize.data.cache import CachedTriples, CacheSettings, TrainingCache, build_cache
    from recolorize.data.folders import discover_photos

    photos = discover_photos([shared_data / "coco128"])[:3]
    settings = CacheSettings(items=3, shard_size=3, prior_size=384)
    build_cache(photos, tmp_path / "cache", settings, progress=False)
    cache = TrainingCache(tmp_path / "cache")
    assert cache.tensors["prior"].shape == (3, 9, 9, 9, 3)
    assert cache.tensors["source"].shape == (3, 3, 128, 128)
    item = CachedTriples(cache)[0]
    assert item["prior"].shape == (3, 9, 9, 9)
    # the stored prior maps the source toward the target, as inference's would (on the most changed triple)
    changes = [(cache.image("source", i) - cache.image("target", i)).abs().mean().item() for i in range(3)]
    index = int(np.argmax(changes))
    source = cache.image("source", index).permute(1, 2, 0).numpy()
    target = cache.image("target", index).permute(1, 2, 0).numpy()
    mapped = np.clip(apply_lattice(cache.tensors["prior"][index].numpy(), source), 0.0, 1.0)
    assert np.abs(mapped - target).mean() < 0.7 * np.abs(source - target).mean()
    # and the local field inference reads off the same matches, which stage 3 adds to f's base
    assert cache.tensors["local_offsets"].shape == cache.tensors["local_colours"].shape == (3, 48, 48, 3)
    assert item["local_offsets"].shape == (48, 48, 3)
    assert torch.isfinite(cache.tensors["local_offsets"]).all()


def test_stage_3_puts_the_local_field_into_the_base_f_works_on() -> None:
    """With a cached local field, f's base is the lattice's colour plus the field sliced at each pixel
    (``prior.apply_local_field``), as inference gives it; the subsampled grid training evaluates sees the
    same base as the full image, sampled."""
    from recolorize.config import get_config
    from recolorize.networks.colour_prior import apply_colour_affine
    from recolorize.networks.model import RecolorModel
    from recolorize.networks.pointwise import Conditioning
    from recolorize.networks.prior_features import local_offsets
    from recolorize.prior import LocalField, apply_local_field, identity_lattice

    torch.manual_seed(0)
    tiny_model = RecolorModel(get_config("tiny-lut")).eval()
    generator = torch.Generator().manual_seed(0)
    image = torch.rand(2, 3, 64, 64, generator=generator)
    lattice = torch.from_numpy(np.stack([identity_lattice(9) * 0.9, identity_lattice(9)])).permute(
        0, 4, 1, 2, 3
    )
    offsets = torch.rand(2, 8, 8, 3, generator=generator) * 0.2 - 0.1
    colours = torch.rand(2, 8, 8, 3, generator=generator)
    sliced = local_offsets(image, offsets, colours)
    conditioning = tiny_model.with_local_field(Conditioning(prior=lattice), image, sliced)
    expected = apply_local_field(
        LocalField(offsets[1].numpy(), colours[1].numpy()), image[1].permute(1, 2, 0).numpy()
    )
    base = conditioning.base[1].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(base, image[1].permute(1, 2, 0).numpy() + expected, atol=1e-5)
    assert not torch.allclose(conditioning.base, apply_colour_affine(lattice, image))
    with torch.no_grad():
        tiny_model.generator.to_rgb.weight.normal_(0.0, 0.5)  # f is zero at initialisation: give it a part
        maps = tiny_model.expand(tiny_model.self_maps(image))
        full = tiny_model.generate(image, maps, conditioning)
        sampled = tiny_model.generate(image, maps, conditioning, stride=2, phase=(1, 0))
    torch.testing.assert_close(sampled, full[:, :, 1::2, 0::2], atol=1e-5, rtol=1e-4)
