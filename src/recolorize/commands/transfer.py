"""``recolorize transfer``: the main job, re-colour photos after a reference with the shipped model.

Everything that can be checked cheaply is checked before anything slow runs: the options, every path
(regular files only: a FIFO would block the open forever), the output's suffix and folder, each pairs-CSV
row (an output must stay inside ``-o``) and the weight file's header; then the photos are decoded, and
only then is the model loaded. An error is one line on stderr with exit code 2; in a batch (a folder or
``--pairs``) a bad pair, whatever went wrong with it, is named in one line and skipped, and the command
exits 1 at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import logging
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from recolorize.errors import UserError, one_line

__all__ = ["register", "run", "plan_jobs", "Job", "Plan", "MIN_SIZE", "MAX_SIZE"]

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp", ".bmp"}
#: Bounds of ``--size``. The attention between source and reference positions grows with the fourth
#: power of the size: measured peak memory with the shipped model is 0.8 GB at 512 and 4.9 GB at 1024
#: (2048 would need ~70 GB), so 1024 is the most a workstation can run.
MIN_SIZE, MAX_SIZE = 64, 1024


@dataclass(frozen=True)
class Job:
    """One re-colouring: source photo, reference photo, output path."""

    source: Path
    reference: Path
    output: Path


@dataclass
class Plan:
    """The jobs to run, whether this is a batch, and the batch entries refused before any work."""

    jobs: list[Job]
    batch: bool
    rejected: list[str] = field(default_factory=list)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``transfer`` subcommand."""
    parser = subparsers.add_parser(
        "transfer",
        help="re-colour a photo (or a folder, or a CSV of pairs) after a reference photo",
        description="Re-colour SOURCE after REFERENCE at full resolution. SOURCE may be a folder (then -o "
        "is a folder); --pairs runs a CSV with columns source,reference[,output] (paths relative to the "
        "CSV; outputs relative to -o and kept inside it).",
    )
    parser.add_argument("source", nargs="?", type=Path, help="source photo or folder of photos")
    parser.add_argument("reference", nargs="?", type=Path, help="reference photo")
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        required=True,
        help="output file (its suffix picks the format: .jpg .jpeg .png .tif .tiff .webp .bmp) or folder",
    )
    parser.add_argument("--pairs", type=Path, help="CSV of pairs (columns source,reference[,output])")
    parser.add_argument("--strength", type=float, default=1.0, help="0 = the source, 1 = full transfer")
    parser.add_argument(
        "--size",
        type=int,
        help=f"working resolution, a multiple of 64 from {MIN_SIZE} to {MAX_SIZE} (default: the model's; "
        "memory grows with its 4th power: 512 takes ~0.8 GB, 1024 ~5 GB)",
    )
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--weights", type=Path, help="model weights (.safetensors); default: shipped model")
    parser.add_argument("--quality", type=int, default=95, help="JPEG quality of the output (1-100)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs (even the source)")
    parser.add_argument(
        "--max-pixels",
        default=None,
        metavar="N",
        help="decompression-bomb limit: a whole number of pixels >= 1, e.g. 40000000 or 4e7 (default: "
        "$RECOLORIZE_MAX_PIXELS, else 100000000); 0 is refused here and in the variable alike",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=argparse.SUPPRESS,
        help="also log what is loaded and from where (normal output is the result line only)",
    )
    parser.set_defaults(func=run)


def _images_in(folder: Path) -> list[Path]:
    """Photos by suffix; a FIFO or device named like a photo is kept, so that it is named and skipped."""
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.is_dir())


def _inside(root: Path, relative: str) -> Path | None:
    """``root / relative`` when it stays inside ``root`` (after ``..`` and symlinks), else None."""
    rel = Path(relative)
    if not relative.strip() or rel.is_absolute() or rel.drive or rel.root:
        return None
    target = root / rel
    try:
        resolved, base = target.resolve(), root.resolve()
    except (OSError, ValueError, RuntimeError):  # NUL byte, symlink loop
        return None
    if resolved == base or not resolved.is_relative_to(base):
        return None
    return target


def _read_pairs(path: Path) -> list[tuple[int, list[str]]]:
    """The rows (line number, cells) of a pairs CSV after its header, read as UTF-8 (a BOM is fine)."""
    from recolorize.inference.image_io import check_regular_file

    check_regular_file(path, "pairs file")
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            reader = csv.reader(handle)
            header = [cell.strip().lower() for cell in next(reader, [])]
            rows = [(reader.line_num, row) for row in reader if any(cell.strip() for cell in row)]
    except UnicodeDecodeError:
        raise UserError(f"pairs file {path} is not UTF-8 text; save it as CSV UTF-8") from None
    except csv.Error as exc:
        raise UserError(f"pairs file {path} is not a readable CSV ({one_line(exc)})") from None
    except OSError as exc:
        raise UserError(f"cannot read pairs file {path}: {one_line(exc.strerror or exc)}") from None
    if not {"source", "reference"} <= set(header):
        raise UserError(f"{path} needs a header with columns source,reference[,output]")
    columns = {name: header.index(name) for name in ("source", "reference", "output") if name in header}
    return [(line, [row[i].strip() if i < len(row) else "" for i in columns.values()]) for line, row in rows]


def _plan_pairs(args: argparse.Namespace) -> Plan:
    from recolorize.inference.image_io import check_regular_file, output_format

    base = args.pairs.parent
    plan = Plan([], True)
    for line, cells in _read_pairs(args.pairs):
        where = f"{args.pairs} line {line}"
        source_cell, reference_cell = cells[0], cells[1]
        output_cell = cells[2] if len(cells) > 2 else ""
        try:
            if not source_cell or not reference_cell:
                raise UserError(f"{where}: no {'source' if not source_cell else 'reference'}; row skipped")
            source, reference = base / source_cell, base / reference_cell
            output = _inside(args.output, output_cell or source.name)
            if output is None:
                raise UserError(
                    f"{where}: output {output_cell or source.name!r} is not inside {args.output}; row skipped"
                )
            check_regular_file(source)
            check_regular_file(reference)
            output_format(output)
        except UserError as error:
            message = str(error)
            plan.rejected.append(message if message.startswith(where) else f"{where}: {message}; row skipped")
            continue
        plan.jobs.append(Job(source, reference, output))
    if not plan.jobs and not plan.rejected:
        raise UserError(f"{args.pairs} has no pairs after its header")
    return plan


def plan_jobs(args: argparse.Namespace) -> Plan:
    """Turn the arguments into jobs, checking every path; a batch continues past its bad entries."""
    from recolorize.inference.image_io import check_regular_file, output_format

    if args.pairs is not None:
        if args.source is not None or args.reference is not None:
            raise UserError("give either SOURCE REFERENCE or --pairs, not both")
        _check_output_folder(args.output)
        return _plan_pairs(args)
    if args.source is None or args.reference is None:
        raise UserError("give SOURCE and REFERENCE (or --pairs CSV)")
    check_regular_file(args.reference)
    if args.source.is_dir():
        _check_output_folder(args.output)
        sources = _images_in(args.source)
        if not sources:
            raise UserError(f"no images in folder {args.source}")
        return Plan([Job(s, args.reference, args.output / s.name) for s in sources], True)
    check_regular_file(args.source)
    output = args.output / args.source.name if args.output.is_dir() else args.output
    output_format(output)
    job = Job(args.source, args.reference, output)
    _check_output(job, source_path=job.source, overwrite=args.overwrite)
    return Plan([job], False)


def _check_options(args: argparse.Namespace) -> int:
    """Check every option (cheap, nothing loaded); returns the pixel limit."""
    from recolorize.inference.image_io import resolve_max_pixels

    if not 0.0 <= args.strength <= 1.0:
        raise UserError(f"--strength must be between 0 and 1, got {args.strength}")
    if not 1 <= args.quality <= 100:
        raise UserError(f"--quality must be between 1 and 100, got {args.quality}")
    if args.size is not None and not (MIN_SIZE <= args.size <= MAX_SIZE and args.size % 64 == 0):
        raise UserError(f"--size must be a multiple of 64 from {MIN_SIZE} to {MAX_SIZE}, got {args.size}")
    return resolve_max_pixels(args.max_pixels)


@contextlib.contextmanager
def _held_logs() -> Iterator[None]:
    """Hold this package's log records while a step runs: on an error they are dropped (the error line
    stands alone), otherwise they are logged after it."""
    package = logging.getLogger("recolorize")
    held: list[logging.LogRecord] = []

    class Hold(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            held.append(record)

    handler, propagate = Hold(), package.propagate
    package.addHandler(handler)
    package.propagate = False
    try:
        yield
    finally:
        package.removeHandler(handler)
        package.propagate = propagate
    for record in held:
        logging.getLogger(record.name).handle(record)


def run(args: argparse.Namespace) -> int:
    """Check everything, decode the photos, load the model, re-colour, write atomically."""
    from recolorize.inference.image_io import load_image, save_image

    max_pixels = _check_options(args)
    plan = plan_jobs(args)

    from recolorize.inference.pipeline import check_device, default_weights_path  # imports torch
    from recolorize.networks.model import check_weights

    check_device(args.device)
    weights = args.weights if args.weights is not None else default_weights_path()
    check_weights(weights / "model.safetensors" if weights.is_dir() else weights)
    if not plan.batch:
        job = plan.jobs[0]
        with _held_logs():
            source = load_image(job.source, max_pixels=max_pixels)
            reference = load_image(job.reference, max_pixels=max_pixels)
        recolorizer = _load(args)
        with _out_of_memory_is_an_error(args):
            rgb = recolorizer.render_array(recolorizer.prepare(source, reference), args.strength)
        save_image(job.output, rgb, like=source, quality=args.quality, overwrite=True, source_path=job.source)
        return 0
    return _run_batch(args, plan, max_pixels)


@contextlib.contextmanager
def _out_of_memory_is_an_error(args: argparse.Namespace) -> Iterator[None]:
    """An allocation that fails (torch raises RuntimeError) is the user's size choice: one line."""
    try:
        yield
    except (MemoryError, RuntimeError) as error:
        if not isinstance(error, MemoryError) and "allocate" not in str(error):
            raise
        size = f" at --size {args.size}" if args.size is not None else ""
        raise UserError(f"not enough memory to re-colour this pair{size}; try a smaller --size") from None


def _run_batch(args: argparse.Namespace, plan: Plan, max_pixels: int) -> int:
    from recolorize.inference.image_io import load_image, save_image

    for message in plan.rejected:
        print(f"recolorize: error: {message}", file=sys.stderr)
    failures = len(plan.rejected)
    total = len(plan.jobs) + failures
    todo = []
    for job in plan.jobs:
        if job.output.exists() and not args.overwrite:
            logger.info("skipping %s: %s exists (use --overwrite)", job.source, job.output)
        else:
            todo.append(job)
    shared = {}
    if args.pairs is None and todo:  # a folder: one reference for all, so a bad one stops here
        with _held_logs():
            shared[args.reference] = load_image(args.reference, max_pixels=max_pixels)
    recolorizer = _load(args) if todo else None
    for job in tqdm(todo, desc="re-colouring", unit="photo", disable=not todo):
        try:
            with _held_logs():
                source = load_image(job.source, max_pixels=max_pixels)
                if job.reference not in shared:
                    shared = {job.reference: load_image(job.reference, max_pixels=max_pixels)}
                _check_output(job, source_path=job.source, overwrite=args.overwrite)
                prepared = recolorizer.prepare(source, shared[job.reference])
                rgb = recolorizer.render_array(prepared, args.strength)
                save_image(
                    job.output, rgb, like=source, quality=args.quality, overwrite=True, source_path=job.source
                )
        except UserError as error:
            failures += 1
            tqdm.write(f"recolorize: error: {one_line(error, 500)}", file=sys.stderr)
        except Exception as error:  # noqa: BLE001 - one bad pair must never stop the batch
            failures += 1
            logger.debug("pair %s / %s failed", job.source, job.reference, exc_info=True)
            tqdm.write(
                f"recolorize: error: {job.source} with {job.reference} failed "
                f"({type(error).__name__}: {one_line(error)}); skipped",
                file=sys.stderr,
            )
    if failures:
        tqdm.write(f"recolorize: {failures} of {total} photos failed", file=sys.stderr)
        return 1
    return 0


def _check_output_folder(folder: Path) -> None:
    """A batch writes into ``folder``: it must be a folder (or not exist yet, under a writable one)."""
    if folder.exists() and not folder.is_dir():
        raise UserError(f"the output of a batch must be a folder, and {folder} is a file")
    existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise UserError(f"cannot create folder {folder}: {existing} is a file")
    if existing is not None and not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"cannot write to folder {existing}")


def _check_output(job: Job, source_path: Path, overwrite: bool) -> None:
    if job.output.resolve() == source_path.resolve() and not overwrite:
        raise UserError(f"output {job.output} is the source itself; use --overwrite to replace it")
    if job.output.exists() and not overwrite:
        raise UserError(f"output {job.output} exists; use --overwrite to replace it")
    if job.output.is_dir():
        raise UserError(f"output {job.output} is a folder; give a file name")
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
