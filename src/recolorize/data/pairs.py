"""Training datasets for the three stages, built on the fly from photo folders (nothing big is cached).

Every item is a square random crop of side ``resolution`` of the photo as inference sees it
(``recolorize.imaging``: EXIF orientation applied, ICC profile converted to sRGB; JPEGs decoded at
reduced size), bicubic-resized (``imaging.resize_image``), mirrored half the time, with region labels
cut from the photo's mask (or superpixels). Each item depends only on (seed, epoch, index), so a run
can be resumed or spread over DataLoader workers and give the same data; call ``set_epoch`` at the start
of each epoch to draw new crops and colours.

- :class:`ColourPairDataset` (stage 1): ``input`` and ``output``, the same crop in two colourings.
- :class:`ImageDataset` (stage 2): ``image``, mildly re-coloured so that E_W sees varied colours.
- :class:`TriplePairDataset` (stage 3): ``source`` (colours A), ``target`` (source geometry, colours B),
  ``reference`` (colours B, geometrically altered: content-related but not aligned).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from recolorize.data.augment import AugmentationRanges, ColourAugmenter
from recolorize.data.folders import (
    Annotator,
    Photo,
    discover_photos,
    read_regions,
    superpixel_regions,
)
from recolorize.data.geometry import GeometryRanges, alter_geometry
from recolorize.errors import UserError
from recolorize.imaging import load_image, photo_size, resize_image, to_uint8

__all__ = [
    "load_crop",
    "PhotoDataset",
    "ColourPairDataset",
    "ImageDataset",
    "TriplePairDataset",
]

logger = logging.getLogger(__name__)
_WARNED: set[str] = set()
_MAX_RETRIES = 10


def load_crop(
    photo: Photo,
    resolution: int,
    rng: np.random.Generator,
    crop_scale: tuple[float, float] = (0.6, 1.0),
    flip_probability: float = 0.5,
    annotator: Annotator = "random",
    superpixel_segments: int = 6,
) -> tuple[torch.Tensor, np.ndarray]:
    """A random square crop (3, R, R) float32 in [0, 1] of ``photo`` and its (R, R) region labels.

    The photo is decoded as inference decodes it (``imaging.load_image``: upright, sRGB), so training
    and inference see the same colours. The crop side is a ``crop_scale`` fraction of the photo's short
    side, at a random position, resized with 8-bit bicubic (``imaging.resize_image``). JPEGs are decoded
    at the smallest DCT scale that still gives at least R pixels across the crop.
    """
    width, height = photo_size(photo.image)
    side = rng.uniform(*crop_scale) * min(width, height)
    left = rng.uniform(0.0, width - side)
    top = rng.uniform(0.0, height - side)
    flip = bool(rng.random() < flip_probability)
    reduce_to = None
    if side > resolution:
        factor = resolution / side
        reduce_to = (math.ceil(width * factor), math.ceil(height * factor))
    decoded = load_image(photo.image, reduce_to=reduce_to)
    sx, sy = decoded.width / width, decoded.height / height
    box = (left * sx, top * sy, (left + side) * sx, (top + side) * sy)
    samples = decoded.srgb8 if decoded.srgb8 is not None else to_uint8(decoded.rgb)  # the same 8 bits
    crop = resize_image(samples, (resolution, resolution), "bicubic", box=box)
    array = crop.astype(np.float32) / 255.0
    image = torch.from_numpy(array).permute(2, 0, 1).contiguous()
    box_full = (left, top, left + side, top + side)
    regions = read_regions(photo, (width, height), box_full, (resolution, resolution), annotator, rng)
    if regions is None:
        regions = superpixel_regions(image, superpixel_segments)
    if flip:
        image = image.flip(-1)
        regions = regions[:, ::-1].copy()
    return image, regions


class PhotoDataset(Dataset):
    """Shared base: photo list, per-item generator from (seed, epoch, index), crop loading with retries."""

    def __init__(
        self,
        photos: Sequence[Photo],
        resolution: int,
        seed: int = 0,
        ranges: AugmentationRanges | None = None,
        crop_scale: tuple[float, float] = (0.6, 1.0),
        annotator: Annotator = "random",
    ) -> None:
        if not photos:
            raise ValueError("a dataset needs at least one photo")
        self.photos = list(photos)
        self.resolution = int(resolution)
        self.seed = int(seed)
        self.ranges = ranges if ranges is not None else AugmentationRanges()
        self.crop_scale = crop_scale
        self.annotator = annotator
        self.epoch = 0

    @classmethod
    def from_folders(
        cls,
        folders: Sequence[str | os.PathLike[str]],
        resolution: int,
        exclude: Sequence[str | os.PathLike[str]] = (),
        **kwargs,
    ):
        """Discover photos (and masks) under ``folders``, leaving out anything under ``exclude``."""
        return cls(discover_photos(folders, exclude=exclude), resolution, **kwargs)

    def __len__(self) -> int:
        return len(self.photos)

    def set_epoch(self, epoch: int) -> None:
        """Select the crops and colours of this epoch (items stay deterministic per (seed, epoch, index))."""
        self.epoch = int(epoch)

    def rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch, int(index)])

    def crop(self, index: int, rng: np.random.Generator) -> tuple[torch.Tensor, np.ndarray]:
        """Load the crop of ``index``; an unreadable photo is skipped (one warning) for the next one."""
        for attempt in range(_MAX_RETRIES):
            photo = self.photos[(index + attempt) % len(self.photos)]
            try:
                return load_crop(
                    photo,
                    self.resolution,
                    rng,
                    self.crop_scale,
                    annotator=self.annotator,
                    superpixel_segments=self.ranges.superpixel_segments,
                )
            except (UserError, OSError) as error:  # a bad or truncated file (the decoder's UserError)
                if str(photo.image) not in _WARNED:
                    _WARNED.add(str(photo.image))
                    logger.warning("skipping unreadable image %s (%s)", photo.image, error)
        raise OSError(f"{_MAX_RETRIES} photos in a row from index {index} could not be read")


class ColourPairDataset(PhotoDataset):
    """Stage 1 pairs (I_in, I_out): the same crop in two random colourings.

    ``original_input_probability``: chance that I_in is the photo itself rather than a re-colouring.
    """

    def __init__(self, *args, original_input_probability: float = 0.3, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.original_input_probability = original_input_probability
        self.augmenter = ColourAugmenter(self.ranges)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = self.rng(index)
        image, regions = self.crop(index, rng)
        keep = rng.random() < self.original_input_probability
        image_in = image if keep else self.augmenter(image, regions, rng)
        image_out = self.augmenter(image, regions, rng)
        return {"input": image_in.contiguous(), "output": image_out.contiguous()}


class ImageDataset(PhotoDataset):
    """Stage 2 single images, mildly re-coloured (``strength`` scales every colour range toward identity).

    ``original_probability``: chance that the photo is returned with its own colours.
    """

    def __init__(self, *args, strength: float = 0.5, original_probability: float = 0.25, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.original_probability = original_probability
        self.augmenter = ColourAugmenter(self.ranges.scaled(strength))

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = self.rng(index)
        image, regions = self.crop(index, rng)
        if rng.random() >= self.original_probability:
            image = self.augmenter(image, regions, rng)
        return {"image": image.contiguous()}


class TriplePairDataset(PhotoDataset):
    """Stage 3 triples: source (colours A), target (same geometry, colours B), reference (B, re-framed).

    ``original_source_probability``: chance that the source keeps the photo's own colours.
    ``geometry``: ranges of the reference's crop, rotation, mirror and shift.
    """

    def __init__(
        self,
        *args,
        original_source_probability: float = 0.3,
        geometry: GeometryRanges | None = None,
        **kwargs,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.original_source_probability = original_source_probability
        self.geometry = geometry if geometry is not None else GeometryRanges()
        self.augmenter = ColourAugmenter(self.ranges)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = self.rng(index)
        image, regions = self.crop(index, rng)
        keep = rng.random() < self.original_source_probability
        source = image if keep else self.augmenter(image, regions, rng)
        target = self.augmenter(image, regions, rng)
        reference = alter_geometry(target, rng, self.geometry)
        return {
            "source": source.contiguous(),
            "reference": reference.contiguous(),
            "target": target.contiguous(),
        }
