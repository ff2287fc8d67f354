"""make-bench --kind local: the same source colour changes differently in different places.

The property is checked from the pixels: inside each local pair there are two pixel sets, one in each changed
place, matched colour cube by colour cube in the source (so of one colour), whose source -> target changes
differ by far more than any global map could make them differ.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from recolorize.cli import main
from recolorize.colour import rgb_to_lab
from recolorize.data.augment import ColourAugmenter
from recolorize.data.folders import discover_photos, read_regions
from recolorize.data.regions import region_weights
from recolorize.evaluation.bench import load_photo, make_bench
from recolorize.evaluation.local_bench import LocalRanges, guided_filter, local_pair, snap_to_edges
from recolorize.imaging import photo_size

#: Matched sets closer than this in mean source colour (CIE76) count as "of one colour".
SAME_COLOUR = 4.0
#: Their mean changes must differ by more than this (CIE76); a global map keeps it under ~1 (checked below).
DIFFERENT_CHANGE = 5.0


def matched_change(source: torch.Tensor, target: torch.Tensor, places: torch.Tensor, cube: float = 5.0):
    """(colour gap, change gap, matched pixels) of the two places ``places`` (3, H, W) (rest, first, second).

    The pixels well inside each place (weight > 0.99) are put into source CIELAB cubes of side ``cube``; the
    cubes holding pixels of both places are kept. Per cube, each place's mean source colour and mean change
    (target Lab - source Lab); the gaps are averaged over cubes weighted by the smaller count.
    """
    lab = rgb_to_lab(source.float()).reshape(3, -1).T.double().numpy()
    change = rgb_to_lab(target.float()).reshape(3, -1).T.double().numpy() - lab
    _, bins = np.unique(np.floor(lab / cube).astype(np.int64), axis=0, return_inverse=True)
    bins = bins.ravel()
    count = int(bins.max()) + 1
    inside = [places[p].reshape(-1).numpy() > 0.99 for p in (1, 2)]
    counts = [np.bincount(bins[m], minlength=count) for m in inside]
    shared = (counts[0] > 0) & (counts[1] > 0)
    if not shared.any():
        return float("inf"), 0.0, 0

    def per_cube(values: np.ndarray, m: np.ndarray, c: np.ndarray) -> np.ndarray:
        sums = np.stack([np.bincount(bins[m], values[m, k], minlength=count) for k in range(3)], axis=1)
        return sums[shared] / c[shared][:, None]

    weight = np.minimum(counts[0], counts[1])[shared].astype(np.float64)
    colours = [per_cube(lab, m, c) for m, c in zip(inside, counts, strict=True)]
    changes = [per_cube(change, m, c) for m, c in zip(inside, counts, strict=True)]
    colour_gap = float(np.average(np.linalg.norm(colours[0] - colours[1], axis=1), weights=weight))
    change_gap = float(np.linalg.norm(np.average(changes[0] - changes[1], axis=0, weights=weight)))
    return colour_gap, change_gap, int(weight.sum())


def _synthetic(seed: int, similar: bool) -> tuple[torch.Tensor, np.ndarray]:
    """A 96 x 128 photo-like image with 4 regions; with ``similar`` two far-apart squares share one colour,
    else every region has its own colour (the split fallback's case). Colour noise gives texture."""
    rng = np.random.default_rng(seed)
    height, width = 96, 128
    labels = np.zeros((height, width), dtype=np.int64)
    labels[8:44, 8:48] = 1
    labels[52:90, 76:120] = 2
    labels[:, 64:][labels[:, 64:] == 0] = 3
    colours = {0: (0.25, 0.45, 0.2), 1: (0.7, 0.35, 0.25), 2: (0.7, 0.35, 0.25), 3: (0.3, 0.4, 0.75)}
    if not similar:
        colours[2] = (0.85, 0.8, 0.3)
    image = np.zeros((height, width, 3))
    for label, colour in colours.items():
        image[labels == label] = colour
    image += rng.normal(0.0, 0.03, image.shape)
    image = np.clip(image, 0.0, 1.0).astype(np.float32)
    return torch.from_numpy(image).permute(2, 0, 1).contiguous(), labels


def _global_target(source: torch.Tensor, seed: int) -> torch.Tensor:
    """The same photo under one global grade (every pixel of one colour gets one colour)."""
    return ColourAugmenter().apply_global(source, np.random.default_rng(seed))


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_similar_places_change_differently_on_a_synthetic_image(seed: int) -> None:
    source, labels = _synthetic(seed, similar=True)
    pair = local_pair(source, labels, np.random.default_rng([7, seed]))
    assert pair.info["rule"] == "similar" and sorted(pair.info["regions"]) == [1, 2]
    colour_gap, change_gap, matched = matched_change(source, pair.target, pair.weights)
    assert colour_gap < SAME_COLOUR and matched > 200
    assert change_gap > DIFFERENT_CHANGE, pair.info
    # the same places under a global grade: the matched sets change alike (what makes the test able to fail)
    _, global_gap, _ = matched_change(source, _global_target(source, seed), pair.weights)
    assert global_gap < 1.5
    assert pair.reference.shape == source.shape
    assert not torch.equal(pair.reference, pair.target)  # re-framed


def test_without_similar_regions_one_region_is_split_in_two() -> None:
    source, labels = _synthetic(0, similar=False)
    ranges = LocalRanges()
    pair = local_pair(source, labels, np.random.default_rng(3), ranges)
    assert pair.info["rule"] == "split"
    first, second = pair.weights[1] > 0.9, pair.weights[2] > 0.9
    region = labels == pair.info["regions"][0]
    assert first.sum() > 0 and second.sum() > 0
    assert (torch.from_numpy(region) | ~(first | second)).all()  # both halves inside the split region
    rest = pair.weights[0][torch.from_numpy(~region)]
    assert rest.min() > 0.25 and rest.mean() > 0.97  # the rest stays as it was but for a feathered edge
    assert abs(int(first.sum()) - int(second.sum())) < 0.2 * region.sum()  # about equal halves
    colour_gap, change_gap, _ = matched_change(source, pair.target, pair.weights)
    assert colour_gap < SAME_COLOUR and change_gap > DIFFERENT_CHANGE, pair.info


def test_a_local_pair_depends_only_on_the_generator() -> None:
    source, labels = _synthetic(5, similar=True)
    a = local_pair(source, labels, np.random.default_rng([0, 4]))
    b = local_pair(source, labels, np.random.default_rng([0, 4]))
    c = local_pair(source, labels, np.random.default_rng([1, 4]))
    assert torch.equal(a.target, b.target) and torch.equal(a.reference, b.reference) and a.info == b.info
    assert not torch.equal(a.target, c.target)


@pytest.fixture(scope="module")
def bsds_test(shared_data: Path) -> Path:
    folder = shared_data / "bsds500" / "images" / "test"
    assert len(list(folder.glob("*.jpg"))) >= 6, f"BSDS500 test photos missing from {folder}"
    return folder


def test_real_photos_every_pair_has_two_places_of_one_colour_changed_differently(bsds_test: Path) -> None:
    """make-bench's own path (dataset masks, 160 px) on 6 photos: the property holds in each pair."""
    photos = discover_photos([bsds_test])[:6]
    for row, photo in enumerate(photos):
        rng = np.random.default_rng([0, row])
        source = load_photo(photo.image, 160)
        _, height, width = source.shape
        regions = read_regions(photo, photo_size(photo.image), None, (width, height), 0)
        assert regions is not None
        pair = local_pair(source, regions, rng)
        colour_gap, change_gap, matched = matched_change(source, pair.target, pair.weights)
        assert colour_gap < SAME_COLOUR and matched >= 20, (photo.image.name, pair.info)
        assert change_gap > DIFFERENT_CHANGE, (photo.image.name, pair.info)
        _, global_gap, _ = matched_change(source, _global_target(source, row), pair.weights)
        assert global_gap < change_gap / 3, (photo.image.name, global_gap)


def test_edge_aware_weights_snap_a_mask_drawn_off_the_edge_onto_it() -> None:
    """A mask drawn 2 px past an object's edge: a blur keeps the old colour's rim, the snapped mask not."""
    image = torch.zeros(3, 40, 64)
    image[0, :, :32] = 0.8  # red object on the left, green on the right: the edge lies between columns 31, 32
    image[1, :, 32:] = 0.6
    image += 0.01 * torch.from_numpy(np.random.default_rng(0).normal(size=image.shape)).float()
    mask = torch.zeros(40, 64)
    mask[:, :34] = 1.0  # 2 px too far
    masks = torch.stack([1 - mask, mask])
    snapped = snap_to_edges(image, masks, radius=4, eps=1e-4, passes=2)
    assert torch.equal(snapped[1][:, :32], torch.ones(40, 32)) and not snapped[1][:, 32:].any()
    soft = guided_filter(image, snapped, radius=4, eps=1e-4)[1]
    assert soft[:, 32:].max() < 0.05 and soft[:, :32].min() > 0.95
    once = guided_filter(image, masks, radius=4, eps=1e-4)[1]  # without snapping: a rim both ways
    assert once[:, 32:34].min() > 0.3 and once[:, 34:36].min() > 0.15
    blurred = region_weights(mask.long().numpy(), 1.7)[1]  # the augmentation's plain feather
    assert blurred[:, 32:34].min() > 0.5
    constant = guided_filter(image, torch.ones(1, 40, 64), 4, 1e-4)
    assert (constant - 1).abs().max() < 1e-6  # a constant mask stays so


def _files(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def test_make_bench_local_is_deterministic_and_recorded(bsds_test: Path, tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    for path in sorted(bsds_test.glob("*.jpg"))[:3]:  # a plain folder: the superpixel path
        shutil.copy(path, folder / path.name)
    a = make_bench(folder, tmp_path / "a", n=3, seed=2, size=96, kind="local")
    make_bench(folder, tmp_path / "b", n=3, seed=2, size=96, kind="local")
    make_bench(folder, tmp_path / "c", n=3, seed=3, size=96, kind="local")
    make_bench(folder, tmp_path / "g", n=3, seed=2, size=96)
    assert _files(tmp_path / "a") == _files(tmp_path / "b")  # byte-identical for one seed
    assert _files(tmp_path / "a")["target/0000.png"] != _files(tmp_path / "c")["target/0000.png"]
    assert _files(tmp_path / "a")["source/0000.png"] == _files(tmp_path / "g")["source/0000.png"]
    assert _files(tmp_path / "a")["target/0000.png"] != _files(tmp_path / "g")["target/0000.png"]
    meta = json.loads((a.parent / "bench.json").read_text())
    assert meta["kind"] == "local"
    assert all(row["local"]["rule"] in ("similar", "split") for row in meta["rows"])
    assert all(row["local"]["edge_radius_px"] >= 2 for row in meta["rows"])
    assert "kind" not in json.loads((tmp_path / "g" / "bench.json").read_text())  # global: as it always was
    assert (a.parent / "pairs.csv").read_text().splitlines()[0] == "source,reference,target"


def test_cli_kind_local_and_a_bad_kind(
    bsds_test: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    argv = [
        "make-bench",
        "--images",
        str(bsds_test),
        "--out",
        str(tmp_path / "b"),
        "--n",
        "2",
        "--size",
        "64",
    ]
    assert main([*argv, "--kind", "local"]) == 0
    assert json.loads((tmp_path / "b" / "bench.json").read_text())["kind"] == "local"
    with pytest.raises(SystemExit):
        main([*argv, "--kind", "sideways"])
    assert "invalid choice" in capsys.readouterr().err
