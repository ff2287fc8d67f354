"""Photo discovery and masks for every dataset layout, colour augmentation, geometry, training datasets."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage.color import rgb2lab

from recolorize.data import (
    AugmentationRanges,
    ColourAugmenter,
    ColourPairDataset,
    GeometryRanges,
    ImageDataset,
    Photo,
    TriplePairDataset,
    alter_geometry,
    discover_photos,
    exclude_under,
    read_regions,
)
from recolorize.data.augment import merge_regions, region_weights
from recolorize.data.folders import snap_to_palette
from recolorize.data.geometry import apply_geometry, sample_geometry
from recolorize.data.pairs import load_crop
from recolorize.errors import UserError


def _image(photo: Photo) -> torch.Tensor:
    with Image.open(photo.image) as im:
        array = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def _small(photo: Photo, size: int = 96, seed: int = 0) -> tuple[torch.Tensor, np.ndarray]:
    return load_crop(photo, size, np.random.default_rng(seed), crop_scale=(1.0, 1.0), flip_probability=0.0)


def _lab(image: torch.Tensor) -> np.ndarray:
    return rgb2lab(image.permute(1, 2, 0).numpy().astype(np.float64))


def _delta_e(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(np.sqrt(((_lab(a) - _lab(b)) ** 2).sum(-1)).mean())


def _gradient_correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    def grads(x: torch.Tensor) -> torch.Tensor:
        g = x.mean(0)
        return torch.cat([(g[:, 1:] - g[:, :-1]).flatten(), (g[1:] - g[:-1]).flatten()])

    return float(torch.corrcoef(torch.stack([grads(a), grads(b)]))[0, 1])


@pytest.fixture(scope="module")
def bsds_val(shared_data: Path) -> list[Photo]:
    return discover_photos(shared_data / "bsds500" / "images" / "val", verify=False)


# --- discovery and masks ---------------------------------------------------------------------------


def test_bsds500_layout_pairs_each_photo_with_every_annotator(shared_data: Path, bsds_val: list[Photo]):
    assert len(bsds_val) == 100
    assert [p.image for p in bsds_val] == sorted(p.image for p in bsds_val)
    counts = json.loads(
        (shared_data / "bsds500" / "segmentation_png" / "num_segments_per_annotator.json").read_text()
    )
    photo = bsds_val[0]
    expected = counts[f"val/{photo.image.stem}"]
    assert len(photo.masks) == len(expected) >= 4
    assert [m.name for m in photo.masks] == [f"{photo.image.stem}_{k}.png" for k in range(len(expected))]
    with Image.open(photo.image) as im:
        size = im.size
    for k in (0, len(expected) - 1):
        labels = read_regions(photo, size, annotator=k)
        assert labels.shape == (size[1], size[0]) and labels.dtype == np.int64
        assert labels.max() + 1 == expected[k]  # relabelled to 0..N-1
    picks = {
        read_regions(photo, size, annotator="random", rng=np.random.default_rng(s)).max() for s in range(12)
    }
    assert len(picks) > 1  # random annotator really varies


def test_coco128_and_msrc_layouts(shared_data: Path):
    coco = discover_photos(shared_data / "coco128", verify=False)
    assert len(coco) == 128 and all(p.masks[0].parent.name == "masks_instance" for p in coco)
    msrc = discover_photos(shared_data / "msrc_v2", verify=False)
    assert len(msrc) == 591 and all(p.masks[0].parent.name == "masks_segments" for p in msrc)
    for photo in (coco[0], msrc[0]):
        with Image.open(photo.image) as im:
            width, height = im.size
        labels = read_regions(photo, (width, height), box=(10, 20, 90, 100), out_size=(32, 32))
        assert labels.shape == (32, 32)
        assert set(np.unique(labels)) == set(range(labels.max() + 1))
        full = read_regions(photo, (width, height))
        assert full.shape == (height, width) and full.max() >= 1


def test_dpst_layout_snaps_colour_masks(shared_data: Path):
    photos = discover_photos(shared_data / "dpst", verify=False)
    assert len(photos) == 120  # 60 inputs + 60 style images; segmentation/ is never a photo
    assert not any("segmentation" in p.image.parts for p in photos)
    by_name = {p.image.name: p for p in photos}
    assert all(p.mask_format == "palette" and p.masks for p in photos)
    for name in ("in1.png", "in7.png", "in8.png"):  # in7: mask one row short; in8: greyscale mask
        photo = by_name[name]
        with Image.open(photo.image) as im:
            size = im.size
        labels = read_regions(photo, size)
        assert labels.shape == (size[1], size[0])
        assert 2 <= labels.max() + 1 <= 9
    anti_aliased = np.array([[[0, 250, 1], [240, 10, 12], [130, 126, 129], [6, 3, 2]]], dtype=np.uint8)
    assert snap_to_palette(anti_aliased).tolist() == [[3, 2, 6, 0]]


def test_plain_folder_gets_superpixels(shared_data: Path, tmp_path: Path):
    source = sorted((shared_data / "bsds500" / "images" / "val").glob("*.jpg"))[0]
    shutil.copy(source, tmp_path / "photo.jpg")
    (photo,) = discover_photos(tmp_path)
    assert not photo.has_mask
    image, regions = load_crop(photo, 64, np.random.default_rng(0))
    assert image.shape == (3, 64, 64) and regions.shape == (64, 64)
    assert regions.max() >= 1  # several superpixels, not one blob


def test_held_out_folders_are_excluded(shared_data: Path):
    images = shared_data / "bsds500" / "images"
    photos = discover_photos(images, exclude=[images / "test"], verify=False)
    assert len(photos) == 300
    assert not any("test" in p.image.parts for p in photos)
    assert len(exclude_under(photos, [images / "val"])) == 200


def test_unreadable_files_are_skipped_with_one_warning_each(
    shared_data: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    source = sorted((shared_data / "bsds500" / "images" / "val").glob("*.jpg"))[0]
    shutil.copy(source, tmp_path / "good.jpg")
    (tmp_path / "x.jpg").write_text("this is not a photo\n")
    (tmp_path / "truncated.jpg").write_bytes(source.read_bytes()[:6000])
    (tmp_path / "notes.json").write_text("{}")
    with caplog.at_level(logging.WARNING, logger="recolorize.data.folders"):
        photos = discover_photos(tmp_path)
    assert [p.image.name for p in photos] == ["good.jpg"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert sum("x.jpg" in w for w in warnings) == 1
    assert sum("truncated.jpg" in w for w in warnings) == 1


def test_empty_or_missing_folder_is_a_user_error(tmp_path: Path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no photos here")
    with pytest.raises(UserError, match="no readable photos"):
        discover_photos(tmp_path / "empty")
    with pytest.raises(UserError, match="does not exist"):
        discover_photos(tmp_path / "missing")


# --- colour augmentation ---------------------------------------------------------------------------


def test_augmentation_is_deterministic_for_a_seed(bsds_val: list[Photo]):
    image, regions = _small(bsds_val[0])
    augmenter = ColourAugmenter()
    a = augmenter(image, regions, np.random.default_rng(7))
    b = augmenter(image, regions, np.random.default_rng(7))
    c = augmenter(image, regions, np.random.default_rng(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert a.dtype == torch.float32 and a.shape == image.shape
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0


def test_augmentation_recolours_but_keeps_structure(bsds_val: list[Photo]):
    augmenter = ColourAugmenter()
    deltas, correlations = [], []
    for seed, photo in enumerate(bsds_val[:8]):
        image, regions = _small(photo, seed=seed)
        out = augmenter(image, regions, np.random.default_rng(seed))
        deltas.append(_delta_e(image, out))
        correlations.append(_gradient_correlation(image, out))
    assert np.mean(deltas) > 6.0, deltas  # a real re-colouring (measured ~13 Delta E76 on average)
    assert min(correlations) > 0.85, correlations  # edges stay where they were
    identity = ColourAugmenter(AugmentationRanges().scaled(0.0))
    image, regions = _small(bsds_val[0])
    assert torch.allclose(identity(image, regions, np.random.default_rng(0)), image, atol=2e-3)


def test_local_augmentation_changes_regions_differently(bsds_val: list[Photo]):
    image, _ = _small(bsds_val[1], size=96)
    regions = np.zeros((96, 96), dtype=np.int64)
    regions[:, 48:] = 1
    augmenter = ColourAugmenter(AugmentationRanges(local_identity_probability=0.0))
    differences = []
    for seed in range(4):
        out = augmenter.apply_local(image, regions, np.random.default_rng(seed))
        shift = _lab(out) - _lab(image)
        left, right = shift[:, :30].reshape(-1, 3).mean(0), shift[:, 66:].reshape(-1, 3).mean(0)
        differences.append(float(np.linalg.norm(left - right)))
    assert min(differences) > 1.0 and np.mean(differences) > 3.0, differences
    # feathered: the change across the seam is gradual, not a step
    out = augmenter.apply_local(image, regions, np.random.default_rng(0))
    change = (out - image).mean(0).mean(0)  # per column
    assert float((change[1:] - change[:-1]).abs().max()) < 0.5 * float(
        (change[:30].mean() - change[66:].mean()).abs()
    )


def test_region_merging_caps_the_count_and_weights_sum_to_one():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.repeat(rng.integers(0, 40, (8, 8)), 8, 0), 8, 1)
    merged = merge_regions(labels, max_regions=5, min_fraction=0.05)
    assert merged.max() + 1 <= 5
    assert np.all(np.bincount(merged.ravel()) >= 0.05 * merged.size)
    # merging only joins whole regions: every original region lands in exactly one merged region
    for value in np.unique(labels):
        assert len(np.unique(merged[labels == value])) == 1
    weights = region_weights(merged, sigma=3.0)
    assert weights.shape == (merged.max() + 1, 64, 64)
    assert torch.allclose(weights.sum(0), torch.ones(64, 64), atol=1e-5)


# --- geometry --------------------------------------------------------------------------------------


def test_geometry_keeps_size_is_deterministic_and_not_aligned(bsds_val: list[Photo]):
    image = _image(bsds_val[2])
    for seed in range(5):
        a = alter_geometry(image, np.random.default_rng(seed))
        assert a.shape == image.shape
        assert torch.equal(a, alter_geometry(image, np.random.default_rng(seed)))
        assert float((a - image).abs().mean()) > 0.03  # not the same framing
    out = alter_geometry(image, np.random.default_rng(0), out_size=(64, 80))
    assert out.shape == (3, 64, 80)


def test_geometry_crop_border_never_samples_outside_the_photo():
    ranges = GeometryRanges(border="crop")
    for seed in range(30):
        params = sample_geometry(np.random.default_rng(seed), (120, 200), (64, 64), ranges)
        grid = params.grid(64, 64, 200 / 120)
        assert float(grid.abs().max()) <= 1.0 + 1e-4
        area = (2 * params.half_size[0]) * (2 * params.half_size[1]) / 4
        assert 0.2 < area <= 1.0 + 1e-6
    flat = torch.ones(3, 50, 70)
    assert torch.allclose(apply_geometry(flat, params, (50, 70)), flat)


# --- datasets --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cls", "keys"),
    [
        (ColourPairDataset, ("input", "output")),
        (ImageDataset, ("image",)),
        (TriplePairDataset, ("source", "reference", "target")),
    ],
)
def test_datasets_shapes_ranges_and_determinism(bsds_val: list[Photo], cls, keys):
    dataset = cls(bsds_val[:4], resolution=64, seed=3)
    assert len(dataset) == 4
    item = dataset[1]
    assert tuple(item) == keys
    for value in item.values():
        assert value.shape == (3, 64, 64) and value.dtype == torch.float32
        assert float(value.min()) >= 0.0 and float(value.max()) <= 1.0
    again = cls(bsds_val[:4], resolution=64, seed=3)[1]
    assert all(torch.equal(item[k], again[k]) for k in keys)
    other_index = dataset[2]
    assert not torch.equal(item[keys[0]], other_index[keys[0]])
    dataset.set_epoch(1)
    assert not torch.equal(item[keys[-1]], dataset[1][keys[-1]])
    assert not torch.equal(item[keys[-1]], cls(bsds_val[:4], resolution=64, seed=4)[1][keys[-1]])


def test_pair_and_triple_contents(bsds_val: list[Photo]):
    pair = ColourPairDataset(bsds_val[:3], resolution=64, seed=0, original_input_probability=0.0)[0]
    assert _delta_e(pair["input"], pair["output"]) > 2.0
    assert _gradient_correlation(pair["input"], pair["output"]) > 0.8  # same crop
    triple = TriplePairDataset(bsds_val[:3], resolution=64, seed=0)[0]
    assert _delta_e(triple["source"], triple["target"]) > 2.0  # different colours
    assert _gradient_correlation(triple["source"], triple["target"]) > 0.8  # same geometry
    assert float((triple["reference"] - triple["target"]).abs().mean()) > 0.02  # not aligned
