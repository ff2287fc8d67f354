"""Training and benchmark data: photo folders with masks, colour augmentation, geometric alteration, pairs."""

from recolorize.data.augment import AugmentationRanges, ColourAugmenter, Grade, apply_grade, render
from recolorize.data.folders import Photo, discover_photos, exclude_under, read_regions, superpixel_regions
from recolorize.data.geometry import GeometryRanges, alter_geometry
from recolorize.data.pairs import ColourPairDataset, ImageDataset, PhotoDataset, TriplePairDataset, load_crop

__all__ = [
    "AugmentationRanges",
    "ColourAugmenter",
    "Grade",
    "apply_grade",
    "render",
    "Photo",
    "discover_photos",
    "exclude_under",
    "read_regions",
    "superpixel_regions",
    "GeometryRanges",
    "alter_geometry",
    "ColourPairDataset",
    "ImageDataset",
    "PhotoDataset",
    "TriplePairDataset",
    "load_crop",
]
