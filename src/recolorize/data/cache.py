"""A training cache: stage-3 triples at the working resolution plus their frozen semantic features, on disk.

Why: on a 2-core CPU the colour augmentation (~10 ms a crop) and the frozen EfficientNet-Lite0 pass (~12 ms an
image) cost more than a training step of the pointwise model. Computed once, they make every stage read
tensors from memory (docs/architecture.md, "Design decisions": "training is fast when the frozen
semantic features are computed once per crop"). One cache serves all three stages: stage 1 trains on
(source, target) colour pairs of the same geometry, stage 2 on single images, stage 3 on the whole triple
with the cached features.

Layout: ``DIR/cache.json`` (what was built, with which settings) and ``DIR/shard_NNNNN.safetensors`` with
``source``, ``target``, ``reference`` (uint8, (N, 3, R, R)) and ``semantic_source``, ``semantic_reference``
(1/16) and ``fine_source``, ``fine_reference`` (1/8) as float16. Shards are written atomically and a
finished shard is never rebuilt, so a killed build resumes where it stopped. Item ``i`` depends only on
(seed, i): the same command builds the same cache.

Kinds of triple (each from one random crop of one photo):
- "grade" (``grade_fraction``): source = the photo or a random grade of it, target = another grade
  (``augment.ColourAugmenter``: global look + feathered per-region changes);
- "edit": target = 1-3 regions re-coloured strongly (``region_edits``), on top of a global grade half the
  time; source and target swap roles half the time, so both directions are learned;
- a share ``grey_fraction`` of sources becomes greyscale (colourisation, paper Fig. 6).
The reference is the target re-framed (crop, scale, flip, rotation, shift: ``geometry.alter_geometry``).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch.utils.data import Dataset

from recolorize.data.augment import AugmentationRanges, ColourAugmenter
from recolorize.data.folders import Photo
from recolorize.data.geometry import GeometryRanges, alter_geometry
from recolorize.data.pairs import PhotoDataset
from recolorize.data.region_edits import edit_regions, to_greyscale
from recolorize.imaging.convert import resize_for_network
from recolorize.io_utils import atomic_write

__all__ = [
    "CacheSettings",
    "build_cache",
    "is_cache",
    "TrainingCache",
    "CachedColourPairs",
    "CachedImages",
    "CachedTriples",
]

logger = logging.getLogger(__name__)
CACHE_FILE = "cache.json"
#: 2: a prior cache also stores the local field (local_offsets, local_colours).
CACHE_VERSION = 2
IMAGE_KEYS = ("source", "target", "reference")
FEATURE_KEYS = ("semantic_source", "semantic_reference", "fine_source", "fine_reference")


@dataclass(frozen=True)
class CacheSettings:
    """What a cache holds: ``items`` triples at ``resolution`` from seed ``seed``, ``shard_size`` per file."""

    resolution: int = 128
    items: int = 12288
    seed: int = 0
    shard_size: int = 512
    grade_fraction: float = 0.5
    grey_fraction: float = 0.04
    original_source_probability: float = 0.3
    backbone: str = "efficientnet_lite0"
    #: 0: no prior stored. Else each triple is cropped at this size, the colour prior's lattice is fitted
    #: there (``recolorize.prior``, as inference fits it from the photos) and stored as ``prior``
    #: (N, S, S, S, 3) float32, and the images are stored shrunk to ``resolution``.
    prior_size: int = 0


def is_cache(folder: str | Path) -> bool:
    """Whether ``folder`` holds a training cache (a ``cache.json``)."""
    return (Path(folder) / CACHE_FILE).is_file()


class _TripleMaker(PhotoDataset):
    """Makes item ``i`` of a cache from its own random generator (crop, colours, geometry)."""

    def __init__(self, photos: Sequence[Photo], settings: CacheSettings) -> None:
        super().__init__(photos, settings.prior_size or settings.resolution, seed=settings.seed)
        self.settings = settings
        self.augmenter = ColourAugmenter(AugmentationRanges())
        self.geometry = GeometryRanges()

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.settings.seed, int(index), 7])
        image, regions = self.crop(index % len(self.photos), rng)
        settings = self.settings
        if rng.random() < settings.grade_fraction:
            keep = rng.random() < settings.original_source_probability
            source = image if keep else self.augmenter(image, regions, rng)
            target = self.augmenter(image, regions, rng)
        else:
            base = image if rng.random() < 0.5 else self.augmenter.apply_global(image, rng)
            edited = edit_regions(base, regions, rng)
            source, target = (base, edited) if rng.random() < 0.5 else (edited, base)
        if rng.random() < settings.grey_fraction:
            source = to_greyscale(source)
        reference = alter_geometry(target, rng, self.geometry)
        return {"source": source, "target": target, "reference": reference}


def _to_uint8(images: torch.Tensor) -> torch.Tensor:
    return (images.clamp(0.0, 1.0) * 255.0).round().to(torch.uint8)


def build_cache(
    photos: Sequence[Photo],
    out: str | Path,
    settings: CacheSettings,
    batch: int = 64,
    progress: bool = True,
    reverse: bool = False,
) -> Path:
    """Build (or finish) the cache in ``out``; returns ``out``. A different existing cache is refused.

    reverse: build the missing shards last first, so that a second process (one thread each) shares the
    work of a first one: each skips a shard the other finished (items depend only on (seed, index)).
    """
    from tqdm import tqdm

    from recolorize.networks.backbones import build_semantic_backbone

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    meta_path = out / CACHE_FILE
    meta = {"version": CACHE_VERSION, "settings": asdict(settings), "photos": len(photos)}
    if meta_path.is_file():
        existing = json.loads(meta_path.read_text())
        if existing.get("settings") != meta["settings"] or existing.get("version") != CACHE_VERSION:
            raise ValueError(f"{out} holds a cache built with other settings; use another folder")
    else:
        with atomic_write(meta_path) as tmp:
            tmp.write_text(json.dumps(meta, indent=2) + "\n")
    maker = _TripleMaker(photos, settings)
    backbone = build_semantic_backbone(settings.backbone)
    keys = IMAGE_KEYS + FEATURE_KEYS + (PRIOR_KEYS if settings.prior_size else ())
    shards = math.ceil(settings.items / settings.shard_size)
    todo = [k for k in range(shards) if not (out / f"shard_{k:05d}.safetensors").is_file()]
    bar = tqdm(total=settings.items, desc="cache", unit="triple", disable=not progress)
    bar.update(settings.items - sum(_shard_len(settings, k) for k in todo))
    for shard in reversed(todo) if reverse else todo:
        if (out / f"shard_{shard:05d}.safetensors").is_file():
            continue  # a second process finished it meanwhile
        start = shard * settings.shard_size
        stop = min(settings.items, start + settings.shard_size)
        tensors: dict[str, list[torch.Tensor]] = {key: [] for key in keys}
        for first in range(start, stop, batch):
            items = [maker[i] for i in range(first, min(stop, first + batch))]
            if settings.prior_size:
                for key, value in _priors(backbone, items).items():
                    tensors[key].append(value)
                items = [
                    {k: resize_for_network(v[None], settings.resolution)[0] for k, v in item.items()}
                    for item in items
                ]
            for key in IMAGE_KEYS:
                stacked = torch.stack([item[key] for item in items])
                tensors[key].append(_to_uint8(stacked))
            with torch.no_grad():
                for role in ("source", "reference"):
                    images = tensors[role][-1].float() / 255.0  # features of exactly what training reads
                    fine, coarse = backbone.pyramid(images)
                    tensors[f"semantic_{role}"].append(coarse.half())
                    tensors[f"fine_{role}"].append(fine.half())
            bar.update(len(items))
        with atomic_write(out / f"shard_{shard:05d}.safetensors") as tmp:
            save_file({key: torch.cat(parts).contiguous() for key, parts in tensors.items()}, str(tmp))
    bar.close()
    return out


#: What a cache built with ``prior_size`` stores per triple beside the images (``_priors``).
PRIOR_KEYS = ("prior", "local_offsets", "local_colours")


def _priors(backbone: torch.nn.Module, items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The prior of each triple (source -> reference), from its crops as they are, as inference reads it
    (``prior.pair_prior``): the lattice (N, S, S, S, 3) and the local field's offsets and cell colours
    (N, 48, 48, 3) each (zero offsets where the crops share too little content)."""
    from recolorize.networks.prior_features import prior_descriptors
    from recolorize.prior import pair_prior
    from recolorize.prior.matching import CELL

    copies = [
        item[role].permute(1, 2, 0).contiguous().numpy() for item in items for role in ("source", "reference")
    ]
    described = prior_descriptors(backbone, copies)
    lattices, offsets, colours = [], [], []
    for k in range(len(items)):
        prior = pair_prior(copies[2 * k], [copies[2 * k + 1]], described[2 * k], [described[2 * k + 1]])
        lattices.append(prior.lattice)
        if prior.local is None:
            cells = (copies[2 * k].shape[0] // CELL, copies[2 * k].shape[1] // CELL, 3)
            offsets.append(np.zeros(cells, np.float32))
            colours.append(np.zeros(cells, np.float32))
        else:
            offsets.append(prior.local.offsets)
            colours.append(prior.local.colours)
    return {
        "prior": torch.from_numpy(np.stack(lattices)),
        "local_offsets": torch.from_numpy(np.stack(offsets)),
        "local_colours": torch.from_numpy(np.stack(colours)),
    }


def _shard_len(settings: CacheSettings, shard: int) -> int:
    return min(settings.items, (shard + 1) * settings.shard_size) - shard * settings.shard_size


class TrainingCache:
    """All shards of a cache in memory (uint8 images, float16 features)."""

    def __init__(self, folder: str | Path) -> None:
        folder = Path(folder)
        if not is_cache(folder):
            raise ValueError(f"{folder} is not a training cache (no {CACHE_FILE})")
        meta = json.loads((folder / CACHE_FILE).read_text())
        self.settings = CacheSettings(**meta["settings"])
        files = sorted(folder.glob("shard_*.safetensors"))
        if not files:
            raise ValueError(f"{folder} holds no finished shard yet")
        parts = [load_file(str(f)) for f in files]
        self.tensors = {key: torch.cat([p[key] for p in parts]) for key in parts[0]}
        self.folder = folder

    def __len__(self) -> int:
        return int(self.tensors["source"].shape[0])

    def image(self, key: str, index: int) -> torch.Tensor:
        return self.tensors[key][index].float() / 255.0


class _CachedDataset(Dataset):
    """Base: items come from the cache; ``set_epoch`` picks the per-epoch random choices."""

    def __init__(self, cache: TrainingCache, seed: int = 0) -> None:
        self.cache, self.seed, self.epoch = cache, int(seed), 0

    def __len__(self) -> int:
        return len(self.cache)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch, int(index), 3])


class CachedColourPairs(_CachedDataset):
    """Stage 1: (I_in, I_out) = (source, target) of a triple, or (target, source); a share
    ``identity_fraction`` are identity pairs (I_out = I_in), so that w0 = E_w(I, I) reconstructs I."""

    def __init__(self, cache: TrainingCache, seed: int = 0, identity_fraction: float = 0.0) -> None:
        super().__init__(cache, seed)
        self.identity_fraction = identity_fraction

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = self.rng(index)
        a, b = self.cache.image("source", index), self.cache.image("target", index)
        if rng.random() < 0.5:
            a, b = b, a
        if rng.random() < self.identity_fraction:
            b = a
        return {"input": a, "output": b}


class CachedImages(_CachedDataset):
    """Stage 2: single images (a triple's source or target)."""

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        key = "source" if self.rng(index).random() < 0.5 else "target"
        return {"image": self.cache.image(key, index)}


class CachedTriples(_CachedDataset):
    """Stage 3: (source, reference, target) and the frozen features of source and reference."""

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        item = {key: self.cache.image(key, index) for key in IMAGE_KEYS}
        item.update(
            {key: self.cache.tensors[key][index] for key in FEATURE_KEYS if key in self.cache.tensors}
        )
        if "prior" in self.cache.tensors:  # (S, S, S, 3) -> the generator's (3, S, S, S)
            item["prior"] = self.cache.tensors["prior"][index].permute(3, 0, 1, 2)
        for key in PRIOR_KEYS[1:]:  # the prior's local field (cache version 2)
            if key in self.cache.tensors:
                item[key] = self.cache.tensors[key][index]
        return item
