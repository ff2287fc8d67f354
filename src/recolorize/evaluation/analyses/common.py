"""What every analysis shares: its options, the paper's numbers, the photos chosen and their centre squares,
per-image MAE, batching and the settings recorded beside the numbers."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from recolorize.data.folders import Photo, discover_photos
from recolorize.errors import UserError
from recolorize.networks.model import RecolorModel

__all__ = [
    "AnalysisOptions",
    "PAPER",
    "select_photos",
    "load_square",
    "load_images",
    "to_numpy",
    "mae255",
    "batches",
    "model_device",
    "settings_record",
]

logger = logging.getLogger(__name__)

#: Numbers the paper reports, written beside ours.
PAPER = MappingProxyType(
    {
        "table3": {"G_theta (SpaceEdit)": 11.2, "G_theta' (1d, finetuned)": 8.68, "G'_theta' (2d)": 5.06},
        "w0": {"own": 1.89, "others": 2.85},
    }
)


@dataclass(frozen=True)
class AnalysisOptions:
    """Settings shared by the analyses (each uses the ones it needs).

    n: number of images (pairs for table3); None = the analysis's default. seed: image choice, colour
    augmentation and optimisation. batch: images per forward pass. steps_code / steps_maps / lr: Adam steps
    and learning rate of the online optimisation (table3). k / queries: neighbours shown and query images
    (fig4). point: fig5's query (row, col) as fractions of the image, None = the most colourful cell.
    show: images drawn in fig5. others: other images' codes tried per image (w0).
    """

    n: int | None = None
    seed: int = 0
    batch: int = 8
    steps_code: int = 200
    steps_maps: int = 200
    lr: float = 0.01
    k: int = 5
    queries: int = 3
    point: tuple[float, float] | None = None
    show: int = 4
    others: int = 4


def select_photos(images_dir: str | os.PathLike[str], n: int, seed: int) -> list[Photo]:
    """``n`` photos (all when fewer) chosen at random with ``seed`` from ``images_dir``, in path order."""
    if n < 1:
        raise UserError(f"--n must be at least 1, got {n}")
    photos = discover_photos([images_dir])
    if n >= len(photos):
        if n > len(photos):
            logger.warning("asked for %d images, %s has %d: using all", n, images_dir, len(photos))
        return photos
    chosen = np.random.default_rng(seed).choice(len(photos), size=n, replace=False)
    return [photos[i] for i in sorted(int(i) for i in chosen)]


def load_square(path: Path, resolution: int) -> torch.Tensor:
    """The centre square of a photo, resized to (3, R, R) float32 in [0, 1] (antialiased)."""
    from recolorize.imaging import load_image, resize_for_network

    rgb = load_image(path).rgb
    height, width = rgb.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = np.ascontiguousarray(rgb[top : top + side, left : left + side])
    tensor = torch.from_numpy(square).permute(2, 0, 1)[None]
    return resize_for_network(tensor, resolution)[0].contiguous()


def load_images(photos: Sequence[Photo], resolution: int) -> torch.Tensor:
    """(N, 3, R, R) centre squares of ``photos``."""
    return torch.stack([load_square(p.image, resolution) for p in tqdm(photos, desc="load", unit="img")])


def to_numpy(image: torch.Tensor) -> np.ndarray:
    """(3, H, W) tensor -> (H, W, 3) float32 in [0, 1]."""
    return image.detach().clamp(0, 1).permute(1, 2, 0).cpu().numpy().astype(np.float32)


def mae255(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image MAE on the 0-255 scale of (B, 3, H, W) images (output clipped to [0, 1]), shape (B,)."""
    return (output.clamp(0, 1) - target).abs().flatten(1).mean(1) * 255.0


def batches(n: int, batch: int) -> list[slice]:
    """Slices of ``range(n)``, ``batch`` at a time."""
    return [slice(i, min(i + batch, n)) for i in range(0, n, max(1, batch))]


def model_device(model: RecolorModel) -> torch.device:
    """The device the model's weights are on."""
    return next(model.parameters()).device


def settings_record(
    options: AnalysisOptions, n: int, model: RecolorModel, images_dir: Path
) -> dict[str, Any]:
    """The ``settings`` entry of every ``<name>.json``."""
    return {
        "images": str(images_dir),
        "n": n,
        "resolution": model.config.resolution,
        "config": model.config.name,
        **{k: v for k, v in asdict(options).items() if k != "n"},
    }
