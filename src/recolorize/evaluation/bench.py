"""Ground-truth benchmark from held-out photos: pairs whose right answer is known.

DPST has no released ground truth (paper section 4), so we build our own: for each photo, the target is
the photo re-coloured by a random local + global grade (data/augment.py), the reference is that target
geometrically altered (data/geometry.py: same colours, different framing), and the source is the
original photo. A method that transfers the reference's colours onto the source should reproduce the
target. Layout written to ``out_dir``::

    source/0000.png  reference/0000.png  target/0000.png  ...
    pairs.csv        columns source,reference,target (paths relative to the CSV)
    bench.json       provenance: seed, size, which photo (and mask) each row came from

Everything is a pure function of the inputs and the seed: two runs write byte-identical files.

Two kinds (``kind``):

- ``global`` (the default): the target as above. Its local grades are mild, so the best global colour map
  fitted to the target (the ``oracle-cubic`` method) comes close: mostly a test of global transfer.
- ``local``: the same source colour changes differently in different places (two regions of similar colour,
  one changed or both changed in opposite directions; a mild global grade on top half the time): a test no
  global map can pass (:mod:`recolorize.evaluation.local_bench`). bench.json records ``"kind": "local"``
  and what each row drew; a global bench's bench.json has no ``kind`` (its files are as they always were).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from recolorize.data.augment import AugmentationRanges, ColourAugmenter
from recolorize.data.folders import (
    MaskFormat,
    Photo,
    discover_photos,
    glob_escape,
    read_regions,
    superpixel_regions,
)
from recolorize.data.geometry import GeometryRanges, alter_geometry
from recolorize.errors import UserError
from recolorize.evaluation.grids import save_png
from recolorize.evaluation.local_bench import LocalRanges, local_pair
from recolorize.imaging import load_image, photo_size, resize_image, to_uint8
from recolorize.io_utils import atomic_write

__all__ = ["make_bench", "load_photo", "recolour_pair", "BENCH_COLUMNS", "BENCH_KINDS", "BenchKind"]

logger = logging.getLogger(__name__)

#: Columns of pairs.csv, in order.
BENCH_COLUMNS: tuple[str, ...] = ("source", "reference", "target")
#: The kinds of benchmark make-bench builds (the module docstring says what each is).
BenchKind = Literal["global", "local"]
BENCH_KINDS: tuple[BenchKind, ...] = ("global", "local")


def load_photo(path: Path, size: int | None = None) -> torch.Tensor:
    """A photo as (3, H, W) float32 in [0, 1], shrunk (never enlarged) to a long side of at most ``size``.

    Decoded by ``imaging.load_image`` (upright, sRGB, as training and inference see it) and quantised to
    8 bits; shrinking is 8-bit Lanczos (``imaging.resize_image``), the filter this builder has always used,
    so the files of an untagged or sRGB photo are unchanged.
    """
    width, height = photo_size(path)
    if size is not None and max(width, height) > size:
        scale = size / max(width, height)
        new_size = (max(1, round(width * scale)), max(1, round(height * scale)))
        pixels = resize_image(to_uint8(load_image(path, reduce_to=new_size).rgb), new_size, "lanczos")
    else:
        pixels = to_uint8(load_image(path).rgb)
    return torch.from_numpy(pixels.astype(np.float32) / 255.0).permute(2, 0, 1).contiguous()


def recolour_pair(
    source: torch.Tensor,
    regions: np.ndarray | None,
    rng: np.random.Generator,
    augmenter: ColourAugmenter,
    geometry: GeometryRanges | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(target, reference): ``source`` re-coloured (local + global), and that result re-framed."""
    target = augmenter(source, regions, rng)
    reference = alter_geometry(target, rng, geometry)
    return target, reference


def _masks_from_folder(photo: Photo, masks_dir: Path) -> Photo:
    """Pair a photo with ``{stem}.png`` or ``{stem}_{k}.png`` from an explicit mask folder."""
    stem = photo.image.stem
    found = sorted(masks_dir.glob(f"{glob_escape(stem)}.png"))
    if not found:
        found = sorted(masks_dir.glob(f"{glob_escape(stem)}_*.png"), key=lambda p: (len(p.stem), p.stem))
        found = [p for p in found if p.stem[len(stem) + 1 :].isdigit()]
    if not found:
        logger.warning("no mask for %s in %s: using superpixels", photo.image.name, masks_dir)
        return Photo(photo.image)
    with Image.open(found[0]) as im:
        mask_format: MaskFormat = "palette" if im.mode in ("RGB", "RGBA") else "labels"
    return Photo(photo.image, tuple(found), mask_format)


def _find_photos(images_root: Path, masks_dir: str | os.PathLike[str] | None) -> list[Photo]:
    """The photos under ``images_root``, with the masks of ``masks_dir`` when one is given."""
    photos = discover_photos([images_root])
    if masks_dir is not None:
        masks_root = Path(masks_dir)
        if not masks_root.is_dir():
            raise UserError(f"mask folder {masks_root} does not exist or is not a folder")
        photos = [_masks_from_folder(p, masks_root) for p in photos]
    return photos


def _relative(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path.name


def make_bench(
    images_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    n: int,
    seed: int,
    masks_dir: str | os.PathLike[str] | None = None,
    size: int | None = None,
    ranges: AugmentationRanges | None = None,
    geometry: GeometryRanges | None = None,
    kind: BenchKind = "global",
    local: LocalRanges | None = None,
) -> Path:
    """Build ``n`` ground-truth triples from the photos in ``images_dir``; returns the path of pairs.csv.

    masks_dir: folder of region masks named like the photos (``{stem}.png`` or ``{stem}_{k}.png``); by
    default masks are found by the known dataset layouts, else superpixels are used. size: shrink photos
    so their long side is at most this many pixels (default: full resolution). kind: ``global`` (the
    augmentation's grade; ``ranges``) or ``local`` (:func:`~recolorize.evaluation.local_bench.local_pair`
    with ``local``'s settings); both re-frame the reference by ``geometry``.
    """
    if kind not in BENCH_KINDS:
        raise UserError(f"unknown bench kind {kind!r}; choose from {', '.join(BENCH_KINDS)}")
    if n < 1:
        raise UserError(f"--n must be at least 1, got {n}")
    if size is not None and size < 16:
        raise UserError(f"--size must be at least 16 pixels, got {size}")
    images_root = Path(images_dir)
    photos = _find_photos(images_root, masks_dir)
    if n > len(photos):
        logger.warning(
            "asked for %d pairs but %s has %d photos: using all of them", n, images_root, len(photos)
        )
        n = len(photos)
    chosen = sorted(np.random.default_rng(seed).permutation(len(photos))[:n].tolist())
    out = Path(out_dir)
    for column in BENCH_COLUMNS:
        (out / column).mkdir(parents=True, exist_ok=True)
    augmenter = ColourAugmenter(ranges)
    rows: list[dict[str, str]] = []
    provenance: list[dict[str, object]] = []
    for row, photo_index in enumerate(tqdm(chosen, desc=f"make-bench {kind}", unit="pair")):
        photo = photos[photo_index]
        rng = np.random.default_rng([seed, row])
        source = load_photo(photo.image, size)
        _, height, width = source.shape
        full_size = photo_size(photo.image)
        annotator = int(rng.integers(len(photo.masks))) if photo.masks else 0
        regions = read_regions(photo, full_size, None, (width, height), annotator)
        mask_name = photo.masks[annotator].name if regions is not None else None
        if kind == "local":
            target, reference, drawn = _local_row(source, regions, rng, local or LocalRanges(), geometry)
        else:
            if regions is None:
                regions = superpixel_regions(source, augmenter.ranges.superpixel_segments)
            target, reference = recolour_pair(source, regions, rng, augmenter, geometry)
            drawn = {}
        name = f"{row:04d}.png"
        for column, image in zip(BENCH_COLUMNS, (source, reference, target), strict=True):
            save_png(to_uint8(image.permute(1, 2, 0).numpy()), out / column / name)
        rows.append({column: f"{column}/{name}" for column in BENCH_COLUMNS})
        provenance.append(
            {
                "row": row,
                "photo": _relative(photo.image, images_root),
                "mask": mask_name,
                "size": [width, height],
                **drawn,
            }
        )
    meta: dict[str, object] = {
        "seed": seed,
        "n": n,
        "size": size,
        "masks_dir": masks_dir is not None,
        "rows": provenance,
    }
    if kind != "global":  # a global bench's bench.json stays byte-identical to the one it always was
        meta["kind"] = kind
    csv_path = _write_index(out, rows, meta)
    logger.info("wrote %d pairs to %s", n, csv_path)
    return csv_path


def _local_row(
    source: torch.Tensor,
    regions: np.ndarray | None,
    rng: np.random.Generator,
    local: LocalRanges,
    geometry: GeometryRanges | None,
) -> tuple[torch.Tensor, torch.Tensor, dict[str, object]]:
    """A local pair's (target, reference, bench.json's extra fields); superpixels for a photo with no mask."""
    superpixels = regions is None
    if regions is None:
        regions = superpixel_regions(source, local.superpixel_segments)
    pair = local_pair(source, regions, rng, local, geometry, superpixels=superpixels)
    return pair.target, pair.reference, {"local": pair.info}


def _write_index(out: Path, rows: list[dict[str, str]], meta: dict[str, object]) -> Path:
    """pairs.csv and bench.json; returns the path of pairs.csv."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(BENCH_COLUMNS), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    csv_path = out / "pairs.csv"
    with atomic_write(csv_path) as tmp:
        tmp.write_text(buffer.getvalue())
    with atomic_write(out / "bench.json") as tmp:
        tmp.write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
    return csv_path
