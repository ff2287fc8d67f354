"""Copy the training photos (with their masks) into a small folder that can travel to a GPU machine.

    .venv/bin/python scripts/make_train_subset.py [--shared ../shared/data] [--out work_data/train]
        [--short-side 320] [--quality 85] [--annotators 2]

Takes the suggested training split of ../shared/data (BSDS500 train + val, COCO128, MSRC-v2; BSDS500
test stays out for the benchmark), keeps each dataset's folder layout so that the masks are found,
shrinks every photo so its short side is at most ``--short-side`` (training crops are 0.6-1.0 of the
short side, resized to 256) and re-encodes it as JPEG. Masks are copied unchanged (the data loader
resizes a mask to its photo); BSDS500 keeps its first ``--annotators`` maps per image. ``work_data/`` is
git-ignored: name it in the device call's carry.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from PIL import Image

from recolorize.imaging import load_image, resize_image, to_uint8

REPO = Path(__file__).resolve().parents[1]

#: (dataset, photo folder, mask folder, mask file pattern from a photo stem) of the training split.
SOURCES: tuple[tuple[str, str, str, str], ...] = (
    ("bsds500", "images/train", "segmentation_png/train", "{stem}_{k}.png"),
    ("bsds500", "images/val", "segmentation_png/val", "{stem}_{k}.png"),
    ("coco128", "images", "masks_instance", "{stem}.png"),
    ("msrc_v2", "images", "masks_segments", "{stem}.png"),
)


def shrink(source: Path, target: Path, short_side: int, quality: int) -> None:
    """Decode as training does (``imaging.load_image``: upright, sRGB), shrink (8-bit Lanczos), write sRGB."""
    pixels = to_uint8(load_image(source).rgb)
    height, width = pixels.shape[:2]
    scale = short_side / min(width, height)
    if scale < 1:
        pixels = resize_image(pixels, (round(width * scale), round(height * scale)), "lanczos")
    target.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels, "RGB").save(target.with_suffix(".jpg"), quality=quality)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=REPO / "work_data" / "train")
    parser.add_argument("--short-side", type=int, default=320)
    parser.add_argument("--quality", type=int, default=85)
    parser.add_argument("--annotators", type=int, default=2)
    args = parser.parse_args()
    count = 0
    for dataset, photos, masks, pattern in SOURCES:
        for photo in sorted((args.shared / dataset / photos).glob("*.jpg")):
            shrink(photo, args.out / dataset / photos / photo.name, args.short_side, args.quality)
            for k in range(args.annotators if "{k}" in pattern else 1):
                mask = args.shared / dataset / masks / pattern.format(stem=photo.stem, k=k)
                if mask.is_file():
                    (args.out / dataset / masks).mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(mask, args.out / dataset / masks / mask.name)
            count += 1
    size = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file()) / 2**20
    print(f"{count} photos with masks -> {args.out} ({size:.1f} MiB)")


if __name__ == "__main__":
    main()
