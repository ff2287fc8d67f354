"""``recolorize transfer``: the main job, re-colour photos after a reference with the shipped model."""

from __future__ import annotations

import argparse
import csv
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from recolorize.errors import UserError

__all__ = ["register", "run", "plan_jobs", "Job"]

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp", ".bmp"}


@dataclass(frozen=True)
class Job:
    """One re-colouring: source photo, reference photo, output path."""

    source: Path
    reference: Path
    output: Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "transfer",
        help="re-colour a photo (or a folder, or a CSV of pairs) after a reference photo",
        description="Re-colour SOURCE after REFERENCE at full resolution. SOURCE may be a folder (then -o "
        "is a folder); --pairs runs a CSV with columns source,reference[,output].",
    )
    parser.add_argument("source", nargs="?", type=Path, help="source photo or folder of photos")
    parser.add_argument("reference", nargs="?", type=Path, help="reference photo")
    parser.add_argument("-o", "--output", type=Path, required=True, help="output file (or folder)")
    parser.add_argument("--pairs", type=Path, help="CSV of pairs (columns source,reference[,output])")
    parser.add_argument("--strength", type=float, default=1.0, help="0 = the source, 1 = full transfer")
    parser.add_argument("--size", type=int, help="working resolution (multiple of 64; default: the model's)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--weights", type=Path, help="model weights (.safetensors); default: shipped model")
    parser.add_argument("--quality", type=int, default=95, help="JPEG quality of the output (1-100)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs (even the source)")
    parser.add_argument("--max-pixels", type=int, default=None, help="decompression-bomb limit in pixels")
    parser.set_defaults(func=run)


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def plan_jobs(args: argparse.Namespace) -> tuple[list[Job], bool]:
    """Turn the arguments into jobs; the flag says whether this is a batch (continue past bad files)."""
    if args.pairs is not None:
        if args.source is not None or args.reference is not None:
            raise UserError("give either SOURCE REFERENCE or --pairs, not both")
        if not args.pairs.is_file():
            raise UserError(f"pairs file not found: {args.pairs}")
        base = args.pairs.parent
        with args.pairs.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
        if not rows or not {"source", "reference"} <= set(rows[0]):
            raise UserError(f"{args.pairs} needs a header with columns source,reference[,output]")
        jobs = []
        for row in rows:
            source = base / row["source"]
            output = Path(row["output"]) if row.get("output") else Path(source.name)
            jobs.append(Job(source, base / row["reference"], args.output / output))
        return jobs, True
    if args.source is None or args.reference is None:
        raise UserError("give SOURCE and REFERENCE (or --pairs CSV)")
    if args.source.is_dir():
        if args.output.exists() and not args.output.is_dir():
            raise UserError(f"SOURCE is a folder, so the output must be a folder: {args.output}")
        sources = _images_in(args.source)
        if not sources:
            raise UserError(f"no images in folder {args.source}")
        return [Job(s, args.reference, args.output / s.name) for s in sources], True
    if args.output.is_dir():
        return [Job(args.source, args.reference, args.output / args.source.name)], False
    return [Job(args.source, args.reference, args.output)], False


def run(args: argparse.Namespace) -> int:
    from recolorize.inference.image_io import DEFAULT_MAX_PIXELS, load_image, save_image

    if not 0.0 <= args.strength <= 1.0:
        raise UserError(f"--strength must be between 0 and 1, got {args.strength}")
    if not 1 <= args.quality <= 100:
        raise UserError(f"--quality must be between 1 and 100, got {args.quality}")
    if args.size is not None and (args.size < 64 or args.size % 64):
        raise UserError(f"--size must be a multiple of 64, got {args.size}")
    max_pixels = args.max_pixels or int(os.environ.get("RECOLORIZE_MAX_PIXELS", DEFAULT_MAX_PIXELS))
    jobs, batch = plan_jobs(args)
    if not batch:
        job = jobs[0]
        # check every input before the (slow) model load, so a typo fails at once
        source = load_image(job.source, max_pixels=max_pixels)
        reference = load_image(job.reference, max_pixels=max_pixels)
        _check_output(job, source_path=job.source, overwrite=args.overwrite)
        recolorizer = _load(args)
        rgb = recolorizer.render_array(recolorizer.prepare(source, reference), args.strength)
        save_image(job.output, rgb, like=source, quality=args.quality, overwrite=True, source_path=job.source)
        return 0

    recolorizer = _load(args)
    failures = 0
    reference_cache: dict[Path, object] = {}
    for job in tqdm(jobs, desc="re-colouring", unit="photo"):
        if job.output.exists() and not args.overwrite:
            logger.info("skipping %s: %s exists (use --overwrite)", job.source, job.output)
            continue
        try:
            source = load_image(job.source, max_pixels=max_pixels)
            if job.reference not in reference_cache:
                reference_cache = {job.reference: load_image(job.reference, max_pixels=max_pixels)}
            _check_output(job, source_path=job.source, overwrite=args.overwrite)
            prepared = recolorizer.prepare(source, reference_cache[job.reference])
            rgb = recolorizer.render_array(prepared, args.strength)
            save_image(
                job.output, rgb, like=source, quality=args.quality, overwrite=True, source_path=job.source
            )
        except UserError as error:
            failures += 1
            tqdm.write(f"recolorize: error: {error}", file=sys.stderr)
    if failures:
        tqdm.write(f"recolorize: {failures} of {len(jobs)} photos failed", file=sys.stderr)
        return 1
    return 0


def _check_output(job: Job, source_path: Path, overwrite: bool) -> None:
    if job.output.resolve() == source_path.resolve() and not overwrite:
        raise UserError(f"output {job.output} is the source itself; use --overwrite to replace it")
    if job.output.exists() and not overwrite:
        raise UserError(f"output {job.output} exists; use --overwrite to replace it")
    parent = job.output.parent
    existing = next((p for p in (parent, *parent.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise UserError(f"cannot write {job.output}: {existing} is a file, not a folder")
    if existing is not None and not os.access(existing, os.W_OK):
        raise UserError(f"cannot write to folder {existing}")


def _load(args: argparse.Namespace):
    from recolorize.inference.pipeline import Recolorizer

    recolorizer = Recolorizer.from_pretrained(args.weights, device=args.device)
    if args.size is not None:
        recolorizer.resolution = args.size
    return recolorizer
