"""Find photos in folders and pair each with its region mask, whatever dataset layout it comes from.

Known layouts (paths relative to the dataset root; the root itself may be anywhere):

- BSDS500: ``images/{split}/{id}.jpg`` with ``segmentation_png/{split}/{id}_{k}.png`` (uint16 label maps,
  one per annotator k; we pick one per sample, deterministically or at random).
- COCO128: ``images/{id}.jpg`` with ``masks_instance/{id}.png`` (uint16, 0 = background), falling back to
  ``masks_semantic/{id}.png``.
- MSRC-v2: ``images/{stem}.jpg`` with ``masks_segments/{stem}.png`` (region ids), falling back to
  ``masks_semantic/{stem}.png``.
- DPST: ``input/in{i}.png`` and ``style/tar{i}.png`` with ``segmentation/{in,tar}{i}.png``: colour-coded
  masks with anti-aliased edges, snapped to the 9 palette colours.

Any other folder is a plain photo folder: regions come from a few SLIC superpixels computed on the fly at
the working resolution. Mask folders are never themselves treated as photos.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image

from recolorize.errors import UserError
from recolorize.image_formats import PHOTO_SUFFIXES
from recolorize.imaging import photo_size
from recolorize.io_utils import is_hidden

__all__ = [
    "IMAGE_EXTENSIONS",
    "MASK_FOLDER_NAMES",
    "DPST_PALETTE",
    "MaskFormat",
    "Annotator",
    "Photo",
    "discover_photos",
    "exclude_under",
    "find_masks",
    "read_regions",
    "snap_to_palette",
    "relabel",
    "superpixel_regions",
]

logger = logging.getLogger(__name__)

#: File name endings treated as photos (case-insensitive). Other files (JSON, CSV, README) are ignored.
IMAGE_EXTENSIONS: tuple[str, ...] = PHOTO_SUFFIXES  # kept for callers of the old name

#: Folder names that hold masks in the known layouts: their files are masks, never photos.
MASK_FOLDER_NAMES: frozenset[str] = frozenset(
    {"segmentation_png", "masks_instance", "masks_semantic", "masks_segments", "segmentation"}
)

#: The DPST mask palette (Luan et al.): black, white, red, green, blue, yellow, grey 128, cyan, magenta.
DPST_PALETTE: np.ndarray = np.array(
    [
        [0, 0, 0],
        [255, 255, 255],
        [255, 0, 0],
        [0, 255, 0],
        [0, 0, 255],
        [255, 255, 0],
        [128, 128, 128],
        [0, 255, 255],
        [255, 0, 255],
    ],
    dtype=np.float32,
)

#: "labels": integer region ids (any dtype); "palette": DPST colour codes.
MaskFormat = Literal["labels", "palette"]
#: Which of several candidate masks (BSDS500 annotators) to read: an index, "first", or "random".
Annotator = int | Literal["first", "random"]

_BSDS_MAP = re.compile(r"^(?P<stem>.+)_(?P<k>\d+)$")


@dataclass(frozen=True)
class Photo:
    """One photo and the mask files that describe its regions (empty: regions come from superpixels).

    ``masks`` holds one path per candidate (BSDS500 has one per annotator, sorted by annotator number).
    """

    image: Path
    masks: tuple[Path, ...] = ()
    mask_format: MaskFormat = "labels"

    @property
    def has_mask(self) -> bool:
        return bool(self.masks)


def _annotator_number(path: Path) -> int:
    match = _BSDS_MAP.match(path.stem)
    return int(match.group("k")) if match else 0


def _map_stem(path: Path) -> str | None:
    match = _BSDS_MAP.match(path.stem)
    return match.group("stem") if match else None


def find_masks(image: Path) -> tuple[tuple[Path, ...], MaskFormat]:
    """Look up the mask(s) of ``image`` in the known layouts; ``((), "labels")`` when it has none."""
    parent, stem = image.parent, image.stem
    # BSDS500: images/{split}/{id}.jpg -> segmentation_png/{split}/{id}_{k}.png
    bsds_dir = parent.parent.parent / "segmentation_png" / parent.name
    if parent.parent.name == "images" and bsds_dir.is_dir():
        maps = [m for m in bsds_dir.glob(f"{glob_escape(stem)}_*.png") if _map_stem(m) == stem]
        maps.sort(key=_annotator_number)
        if maps:
            return tuple(maps), "labels"
    # COCO128 / MSRC-v2: {root}/images/{id}.jpg (or any depth below root) -> {root}/masks_*/{id}.png
    for root in (parent, parent.parent):
        for folder in ("masks_instance", "masks_segments", "masks_semantic"):
            candidate = root / folder / f"{stem}.png"
            if candidate.is_file():
                return (candidate,), "labels"
    # DPST: {root}/input/in{i}.png, {root}/style/tar{i}.png -> {root}/segmentation/{stem}.png
    candidate = parent.parent / "segmentation" / f"{stem}.png"
    if candidate.is_file() and candidate != image:
        return (candidate,), "palette"
    return (), "labels"


def glob_escape(text: str) -> str:
    """Escape glob wildcards in a file stem so that odd names still match literally."""
    return re.sub(r"([\[\]\*\?])", r"[\1]", text)


def _readable(path: Path, verify: bool) -> str | None:
    """Return None when ``path`` is a photo the decoder (``imaging.load_image``) takes, else the reason.

    ``verify`` decodes JPEGs at 1/8 scale (catches truncated files for ~1 ms each) and checks the chunk
    CRCs of other formats; without it only the header is read (format, size limits).
    """
    try:
        photo_size(path, verify=verify)
    except UserError as error:
        return str(error)
    return None


def _folder_key(path: str | os.PathLike[str]) -> tuple[int, int] | None:
    """The real folder behind ``path`` (links followed) as (device, inode); None when it cannot be read."""
    try:
        status = os.stat(path)
    except (OSError, ValueError):
        return None
    return status.st_dev, status.st_ino


def _walk_images(folder: Path) -> Iterable[Path]:
    """Photo files under ``folder``; hidden files and folders (``is_hidden``: dot-files, and the temporary
    files a killed writer may leave) are skipped.

    Links to folders are followed, but each real folder (device, inode) is entered once: a link back up
    the tree (``x -> .``, ``up -> ..``), or two links to one folder, would otherwise be walked without end.
    """
    entered = {_folder_key(folder)}
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        kept = []
        for name in sorted(d for d in dirnames if d not in MASK_FOLDER_NAMES and not is_hidden(d)):
            key = _folder_key(os.path.join(dirpath, name))
            if key is not None and key not in entered:
                entered.add(key)
                kept.append(name)
        dirnames[:] = kept
        for name in sorted(filenames):
            if not is_hidden(name) and name.lower().endswith(PHOTO_SUFFIXES):
                yield Path(dirpath) / name


def discover_photos(
    folders: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    exclude: Sequence[str | os.PathLike[str]] = (),
    verify: bool = True,
) -> list[Photo]:
    """All photos under ``folders`` (recursive, sorted, de-duplicated), each with its masks if any.

    Files that end like an image but cannot be read are skipped with one warning naming them; a missing
    folder, or folders with no photos at all, raise :class:`UserError`. ``exclude``: folders whose photos
    are held out (e.g. ``bsds500/images/test`` kept for the benchmark).
    """
    if isinstance(folders, (str, os.PathLike)):
        folders = [folders]
    if not folders:
        raise UserError("no data folder given")
    seen: set[Path] = set()
    photos: list[Photo] = []
    for folder in map(Path, folders):
        if not folder.is_dir():
            raise UserError(f"data folder {folder} does not exist or is not a folder")
        for path in _walk_images(folder):
            key = path.resolve()
            if key in seen:
                continue
            seen.add(key)
            reason = _readable(path, verify)
            if reason is not None:
                logger.warning("skipping unreadable image: %s", reason)  # the reason names the file
                continue
            masks, mask_format = find_masks(path)
            photos.append(Photo(path, masks, mask_format))
    photos = exclude_under(photos, exclude)
    if not photos:
        names = ", ".join(str(f) for f in folders)
        raise UserError(f"no readable photos ({', '.join(PHOTO_SUFFIXES)}) found in {names}")
    photos.sort(key=lambda p: str(p.image))
    return photos


def exclude_under(photos: Sequence[Photo], folders: Sequence[str | os.PathLike[str]]) -> list[Photo]:
    """Drop photos that live under any of ``folders`` (held-out data never reaches training)."""
    roots = [Path(f).resolve() for f in folders]
    kept = []
    for photo in photos:
        path = photo.image.resolve()
        if not any(path.is_relative_to(root) for root in roots):
            kept.append(photo)
    return kept


def snap_to_palette(rgb: np.ndarray, palette: np.ndarray = DPST_PALETTE) -> np.ndarray:
    """Index (H, W) of the nearest palette colour for each pixel of an (H, W, 3) uint8 colour mask.

    DPST masks are anti-aliased, so edge pixels hold blends; the nearest colour is the intended label.
    """
    flat = rgb.reshape(-1, 3).astype(np.float32)
    distances = ((flat[:, None, :] - palette[None, :, :]) ** 2).sum(-1)
    return distances.argmin(1).reshape(rgb.shape[:2]).astype(np.int64)


def relabel(labels: np.ndarray) -> np.ndarray:
    """Map arbitrary label values to 0..K-1 in order of first value (np.unique order), as int64."""
    _, inverse = np.unique(labels, return_inverse=True)
    return inverse.reshape(labels.shape).astype(np.int64)


def _pick(masks: Sequence[Path], annotator: Annotator, rng: np.random.Generator | None) -> Path:
    if annotator == "random":
        if rng is None:
            raise ValueError("annotator='random' needs an rng")
        return masks[int(rng.integers(len(masks)))]
    if annotator == "first":
        return masks[0]
    return masks[int(annotator) % len(masks)]


def read_regions(
    photo: Photo,
    image_size: tuple[int, int],
    box: tuple[float, float, float, float] | None = None,
    out_size: tuple[int, int] | None = None,
    annotator: Annotator = "first",
    rng: np.random.Generator | None = None,
) -> np.ndarray | None:
    """Region labels (H, W) int64 in 0..K-1 for ``photo``, or None when it has no (readable) mask.

    image_size: the photo's full (width, height); a mask of another size (DPST pair 7 is one row short) is
    first resized to it. box: crop (left, top, right, bottom) in full-image pixels; out_size: (width,
    height) of the result. Resizing is nearest-neighbour so labels never blend.
    """
    if not photo.masks:
        return None
    path = _pick(photo.masks, annotator, rng)
    try:
        with Image.open(path) as im:
            if photo.mask_format == "palette":
                mask = im.convert("RGB")
            else:
                mask = Image.fromarray(np.asarray(im).astype(np.int32))
            mask.load()
    except Exception as error:
        _warn_once(path, f"skipping unreadable mask {path} ({type(error).__name__}: {error})")
        return None
    if mask.size != tuple(image_size):
        logger.debug("mask %s is %s, image is %s: resizing the mask", path, mask.size, image_size)
        mask = mask.resize(tuple(image_size), Image.Resampling.NEAREST)
    if box is not None:
        mask = mask.crop(tuple(int(round(v)) for v in box))
    if out_size is not None and mask.size != tuple(out_size):
        mask = mask.resize(tuple(out_size), Image.Resampling.NEAREST)
    array = np.asarray(mask)
    # palette masks are snapped after the nearest-neighbour resize: same labels, far fewer pixels
    return relabel(snap_to_palette(array) if photo.mask_format == "palette" else array)


_WARNED: set[str] = set()


def _warn_once(path: Path, message: str) -> None:
    if str(path) not in _WARNED:
        _WARNED.add(str(path))
        logger.warning(message)


def superpixel_regions(image: torch.Tensor, n_segments: int = 6, work_side: int = 96) -> np.ndarray:
    """A few SLIC superpixels (H, W) int64 for a photo without a mask, as stand-ins for its regions.

    Computed on a copy whose long side is ``work_side`` (SLIC at 96 px takes ~8 ms, at 256 px ~60 ms) and
    upsampled nearest-neighbour; the feathering in the local augmentation hides the blocky edges.
    """
    _, height, width = image.shape
    scale = min(1.0, work_side / max(height, width))
    small_h, small_w = max(1, round(height * scale)), max(1, round(width * scale))
    small = torch.nn.functional.interpolate(
        image[None], size=(small_h, small_w), mode="bilinear", antialias=True, align_corners=False
    )[0]
    array = small.clamp(0, 1).permute(1, 2, 0).numpy().astype(np.float64)
    from skimage.segmentation import slic

    labels = slic(array, n_segments=n_segments, compactness=10.0, start_label=0, channel_axis=-1)
    rows = np.minimum((np.arange(height) * small_h) // height, small_h - 1)
    cols = np.minimum((np.arange(width) * small_w) // width, small_w - 1)
    return relabel(labels[rows[:, None], cols[None, :]])
