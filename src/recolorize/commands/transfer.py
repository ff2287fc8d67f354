"""``recolorize transfer``: the main job, re-colour photos after a reference with the shipped model.

Everything that can be checked cheaply is checked before anything slow runs: the options, every path
(regular files only: a FIFO would block the open forever), the output's suffix and folder, each pairs-CSV
row (an output must stay inside ``-o``) and the weight file's header; then the photos are decoded, and
only then is the model loaded. An error is one line on stderr with exit code 2; in a batch (a folder or
``--pairs``) a bad pair, whatever went wrong with it, is named in one line and skipped, and the command
exits 1 at the end.

A batch runs one photo at a time (``--jobs 1``, the default) or, with ``--jobs N``, N at once in worker
threads that share the one model and torch's threads, so that one photo's decoding and encoding overlap
the others' re-colouring: the same files, more photos per second.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import logging
import os
import sys
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recolorize.errors import UserError, one_line
from recolorize.image_formats import DEFAULT_MAX_PIXELS, PHOTO_SUFFIXES, WRITE_SUFFIXES

__all__ = ["register", "run", "plan_jobs", "Job", "Plan", "MIN_SIZE", "MAX_SIZE"]

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset(PHOTO_SUFFIXES)  # inputs picked up from a folder
#: Bounds of ``--size``. The attention between source and reference positions grows with the fourth
#: power of the size: measured peak memory with the shipped model is 0.8 GB at 512 and 4.9 GB at 1024
#: (2048 would need ~70 GB), so 1024 is the most a workstation can run.
MIN_SIZE, MAX_SIZE = 64, 1024
#: Most threads ``--jobs`` may ask for: decoding and encoding overlap one re-colouring, more buy nothing.
MAX_JOBS = 16


@dataclass(frozen=True)
class Job:
    """One re-colouring: source photo, its reference photo(s), output path.

    reference: one path, or a tuple of several (each region of the source then takes its colour from its
    best match in any of them: ``Recolorizer.prepare`` with a list).
    """

    source: Path
    reference: Path | tuple[Path, ...]
    output: Path


def reference_paths(reference: Path | tuple[Path, ...]) -> tuple[Path, ...]:
    """The reference path(s) of a job as a tuple."""
    return reference if isinstance(reference, tuple) else (reference,)


def load_references(reference: Path | tuple[Path, ...], max_pixels: int) -> Any:
    """Decode a job's reference(s): one LoadedImage, or a list of them for several."""
    from recolorize.imaging import load_image

    if isinstance(reference, tuple):
        return [load_image(path, max_pixels=max_pixels) for path in reference]
    return load_image(reference, max_pixels=max_pixels)


def describe_reference(reference: Path | tuple[Path, ...]) -> str:
    """Paths joined with " + " for messages."""
    return " + ".join(str(path) for path in reference_paths(reference))


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
        description="Re-colour SOURCE after REFERENCE at full resolution. Several references may be "
        "given: each region then takes its colour from its best match in any of them. SOURCE may be a "
        "folder (then -o is a folder); --pairs runs a CSV with columns source,reference[,output] (paths "
        "relative to the CSV, several references separated by ';'; outputs relative to -o and kept inside "
        "it).",
    )
    parser.add_argument("source", nargs="?", type=Path, help="source photo or folder of photos")
    parser.add_argument(
        "reference",
        nargs="*",
        type=Path,
        help="reference photo; give several to let each region take its colour from its best match",
    )
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        required=True,
        help=f"output file (its suffix picks the format: {' '.join(WRITE_SUFFIXES)}) or folder",
    )
    parser.add_argument("--pairs", type=Path, help="CSV of pairs (columns source,reference[,output])")
    parser.add_argument(
        "--lut",
        type=Path,
        help="also write the transfer's colour mapping as a 3D LUT (.cube, 33^3) to this file (one photo)",
    )
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
        "--jobs",
        type=int,
        default=1,
        metavar="N",
        help="batch only: re-colour N photos at once in threads sharing the model and torch's threads, "
        f"so decoding and writing overlap the work (1-{MAX_JOBS}; default 1; each job holds one photo "
        "in memory)",
    )
    parser.add_argument(
        "--max-pixels",
        default=None,
        metavar="N",
        help="decompression-bomb limit: a whole number of pixels >= 1, e.g. 40000000 or 4e7 (default: "
        f"$RECOLORIZE_MAX_PIXELS, else {DEFAULT_MAX_PIXELS}); 0 is refused here and in the variable alike",
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
    from recolorize.imaging import check_regular_file

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
    from recolorize.imaging import check_regular_file, output_format

    base = args.pairs.parent
    plan = Plan([], True)
    for line, cells in _read_pairs(args.pairs):
        where = f"{args.pairs} line {line}"
        source_cell, reference_cell = cells[0], cells[1]
        output_cell = cells[2] if len(cells) > 2 else ""
        try:
            if not source_cell or not reference_cell:
                raise UserError(f"{where}: no {'source' if not source_cell else 'reference'}; row skipped")
            names = [cell.strip() for cell in reference_cell.split(";") if cell.strip()]
            if not names:
                raise UserError(f"{where}: no reference; row skipped")
            paths = tuple(base / name for name in names)
            source, reference = base / source_cell, (paths if len(paths) > 1 else paths[0])
            output = _inside(args.output, output_cell or source.name)
            if output is None:
                raise UserError(
                    f"{where}: output {output_cell or source.name!r} is not inside {args.output}; row skipped"
                )
            check_regular_file(source)
            for path in reference_paths(reference):
                check_regular_file(path)
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
    from recolorize.imaging import check_regular_file, output_format

    if isinstance(args.reference, list):  # argparse: SOURCE REFERENCE [REFERENCE ...]
        args.reference = (
            None
            if not args.reference
            else args.reference[0]
            if len(args.reference) == 1
            else tuple(args.reference)
        )
    if args.pairs is not None:
        if args.source is not None or args.reference is not None:
            raise UserError("give either SOURCE REFERENCE or --pairs, not both")
        _check_output_folder(args.output)
        return _plan_pairs(args)
    if args.source is None or args.reference is None:
        raise UserError("give SOURCE and REFERENCE (or --pairs CSV)")
    for path in reference_paths(args.reference):
        check_regular_file(path)
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
    from recolorize.imaging import resolve_max_pixels

    if not 0.0 <= args.strength <= 1.0:
        raise UserError(f"--strength must be between 0 and 1, got {args.strength}")
    if not 1 <= args.quality <= 100:
        raise UserError(f"--quality must be between 1 and 100, got {args.quality}")
    if args.size is not None and not (MIN_SIZE <= args.size <= MAX_SIZE and args.size % 64 == 0):
        raise UserError(f"--size must be a multiple of 64 from {MIN_SIZE} to {MAX_SIZE}, got {args.size}")
    jobs = getattr(args, "jobs", 1)
    if not 1 <= jobs <= MAX_JOBS:
        raise UserError(f"--jobs must be between 1 and {MAX_JOBS}, got {jobs}")
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
    from recolorize.imaging import load_image, save_image

    max_pixels = _check_options(args)
    plan = plan_jobs(args)
    if getattr(args, "lut", None) is not None:
        from recolorize.commands.lut import check_lut_output

        if plan.batch:
            raise UserError("--lut writes the look of one transfer: give one SOURCE and REFERENCE")
        check_lut_output(args.lut, args.overwrite)

    from recolorize.inference.pipeline import check_device, default_weights_path  # imports torch
    from recolorize.networks.model import check_weights

    check_device(args.device)
    weights = args.weights if args.weights is not None else default_weights_path()
    check_weights(weights / "model.safetensors" if weights.is_dir() else weights)
    if not plan.batch:
        job = plan.jobs[0]
        with _held_logs():
            source = load_image(job.source, max_pixels=max_pixels)
            reference = load_references(job.reference, max_pixels)
        recolorizer = _load(args)
        with _out_of_memory_is_an_error(args):
            prepared = recolorizer.prepare(source, reference)
            del reference  # only its network copy is used from here: free its pixels for the full-size step
            wants_float = getattr(args, "lut", None) is not None  # the LUT is fitted to the float result
            rgb = recolorizer.render_array(
                prepared, args.strength, dtype=_render_dtype(job, source, wants_float)
            )
            del prepared
        source = _for_saving(source, rgb)
        save_image(job.output, rgb, like=source, quality=args.quality, overwrite=True, source_path=job.source)
        if getattr(args, "lut", None) is not None:
            from recolorize.inference.lut import Lut3D, fit_lut, write_cube

            lut = fit_lut(source.rgb, rgb) if args.strength > 0 else Lut3D.identity()
            write_cube(lut, args.lut, overwrite=True)
            logger.info("wrote %s (%d^3 LUT)", args.lut, lut.size)
        return 0
    return _run_batch(args, plan, max_pixels)


def _render_dtype(job: Job, source, wants_float: bool = False) -> type:
    """uint8 when the output stores 8-bit sRGB samples (``takes_8bit_srgb``): the full-resolution step then
    writes them tile by tile, the same samples without a full-size float copy; else float32."""
    import numpy as np

    from recolorize.imaging import output_format, takes_8bit_srgb

    if not wants_float and takes_8bit_srgb(source, output_format(job.output)):
        return np.uint8
    return np.float32


def _for_saving(source: Any, rgb: Any) -> Any:
    """What the saver needs of ``source`` for ``rgb``: its metadata alone when ``rgb`` holds 8-bit samples
    (the float pixels can go before the encoder copies the samples), else the whole image."""
    return source.metadata_only() if getattr(rgb, "dtype", None) == "uint8" else source


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
    from tqdm import tqdm

    from recolorize.imaging import load_image, save_image

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
            shared[args.reference] = load_references(args.reference, max_pixels)
    recolorizer = _load(args) if todo else None
    if getattr(args, "jobs", 1) > 1 and todo:
        failures += _run_overlapped(args, todo, shared, recolorizer, max_pixels)
        todo = []
    for job in tqdm(todo, desc="re-colouring", unit="photo", disable=not todo):
        try:
            with _held_logs():
                source = load_image(job.source, max_pixels=max_pixels)
                if job.reference not in shared:
                    shared = {job.reference: load_references(job.reference, max_pixels)}
                _check_output(job, source_path=job.source, overwrite=args.overwrite)
                prepared = recolorizer.prepare(source, shared[job.reference])
                rgb = recolorizer.render_array(prepared, args.strength, dtype=_render_dtype(job, source))
                del prepared
                source = _for_saving(source, rgb)
                save_image(
                    job.output, rgb, like=source, quality=args.quality, overwrite=True, source_path=job.source
                )
        except Exception as error:  # noqa: BLE001 - one bad pair must never stop the batch
            failures += 1
            tqdm.write(_failure_line(job, error), file=sys.stderr)
    if failures:
        tqdm.write(f"recolorize: {failures} of {total} photos failed", file=sys.stderr)
        return 1
    return 0


def _failure_line(job: Job, error: BaseException) -> str:
    """The one line that names a failed pair (a ``UserError`` says itself what went wrong)."""
    if isinstance(error, UserError):
        return f"recolorize: error: {one_line(error, 500)}"
    logger.debug("pair %s / %s failed", job.source, describe_reference(job.reference), exc_info=error)
    return (
        f"recolorize: error: {job.source} with {describe_reference(job.reference)} failed "
        f"({type(error).__name__}: {one_line(error)}); skipped"
    )


class _ThreadLogs(logging.Handler):
    """Per-job log records in a multi-threaded batch: each thread's records go to the list it names.

    Installed on the package logger for the batch (``_held_logs`` cannot be: it swaps one handler for
    everyone). A job's records (decode, re-colouring, write, from whichever threads ran them) are logged
    in order once the job has succeeded and dropped if it failed, as ``_held_logs`` does for one photo.
    Records of a thread that names no list pass straight through.
    """

    def __init__(self) -> None:
        super().__init__()
        self.local = threading.local()
        self.package = logging.getLogger("recolorize")
        self.propagate = self.package.propagate

    def emit(self, record: logging.LogRecord) -> None:
        target = getattr(self.local, "records", None)
        if target is None:
            logging.getLogger().callHandlers(record)
        else:
            target.append(record)

    def __enter__(self) -> _ThreadLogs:
        self.package.addHandler(self)
        self.package.propagate = False
        return self

    def __exit__(self, *exc: object) -> None:
        self.package.removeHandler(self)
        self.package.propagate = self.propagate

    def run(self, records: list[logging.LogRecord], function: Any, *args: Any, **kwargs: Any) -> Any:
        """``function(*args, **kwargs)`` with this thread's records going to ``records``."""
        previous = getattr(self.local, "records", None)
        self.local.records = records
        try:
            return function(*args, **kwargs)
        finally:
            self.local.records = previous

    @staticmethod
    def replay(records: list[logging.LogRecord]) -> None:
        for record in records:
            logging.getLogger().callHandlers(record)


def _run_overlapped(
    args: argparse.Namespace, todo: list[Job], shared: dict, recolorizer: Any, max_pixels: int
) -> int:
    """The batch with ``--jobs N``: N photos at once, each decoded, re-coloured and written by its own worker
    thread with the one model, torch's threads shared out among them.

    Why whole photos and not only decoding and encoding in the background: for the shipped model those
    are ~5 % of a 1-MP photo's time, and most of its operations are too small to keep two threads busy,
    so on two cores two photos at a time with one thread each doubled the photos per second where
    overlapping only the input and output gained nothing (docs/results.md). Each photo still fails alone,
    with the same one line, and lines come in the photos' order; returns the number of failures.
    Known limit: a C decoder's own stderr lines (libtiff) are not captured off the main thread.
    """
    from concurrent.futures import Future, ThreadPoolExecutor

    import torch
    from tqdm import tqdm

    jobs = min(args.jobs, len(todo))
    threads = max(1, torch.get_num_threads() // jobs)
    references = _References(shared, max_pixels, keep=jobs + 1)
    records: list[list[logging.LogRecord]] = [[] for _ in todo]
    pending: deque[tuple[int, Future]] = deque()
    failures = 0

    def work(k: int) -> None:
        torch.set_num_threads(threads)  # per thread: OpenMP keeps the count of each calling thread
        logs.run(records[k], _transfer_one, recolorizer, todo[k], references, args, max_pixels)

    with _ThreadLogs() as logs, ThreadPoolExecutor(jobs, thread_name_prefix="recolorize-job") as pool:
        progress = tqdm(total=len(todo), desc="re-colouring", unit="photo")

        def report(limit: int) -> None:
            """Report finished photos in order, waiting while more than ``limit`` are in flight."""
            nonlocal failures
            while pending and (len(pending) > limit or pending[0][1].done()):
                k, future = pending.popleft()
                error = future.exception()
                if error is None:
                    logs.replay(records[k])
                else:
                    failures += 1
                    progress.write(_failure_line(todo[k], error), file=sys.stderr)
                records[k] = []
                progress.update()

        try:
            for k in range(len(todo)):
                pending.append((k, pool.submit(work, k)))
                report(limit=jobs)  # one photo queued behind the N running, so no worker waits for work
            report(limit=0)
        finally:
            progress.close()
    torch.set_num_threads(torch.get_num_threads())  # MKL's count is process-wide: the caller's again
    return failures


class _References:
    """Decoded references shared by the workers: each path decoded once, by the first worker that needs
    it (the others wait for it), the ``keep`` most recently used kept."""

    def __init__(self, preloaded: dict, max_pixels: int, keep: int) -> None:
        from concurrent.futures import Future

        self.lock = threading.Lock()
        self.max_pixels, self.keep = max_pixels, keep
        self.futures: dict[Path | tuple[Path, ...], Future] = {}
        for path, image in preloaded.items():
            done: Future = Future()
            done.set_result(image)
            self.futures[path] = done

    def get(self, path: Path | tuple[Path, ...]) -> Any:
        from concurrent.futures import Future

        with self.lock:
            future = self.futures.pop(path, None)
            owner = future is None
            if owner:
                future = Future()
            self.futures[path] = future  # most recently used last
            while len(self.futures) > self.keep:
                del self.futures[next(iter(self.futures))]
        if owner:
            try:
                future.set_result(load_references(path, self.max_pixels))
            except BaseException as error:
                future.set_exception(error)
        return future.result()


def _transfer_one(
    recolorizer: Any, job: Job, references: _References, args: argparse.Namespace, max_pixels: int
) -> None:
    """One photo of a ``--jobs`` batch, in a worker thread: decode, re-colour, write."""
    from recolorize.imaging import load_image, save_image

    source = load_image(job.source, max_pixels=max_pixels)
    reference = references.get(job.reference)
    rgb = _recolour(recolorizer, job, source, reference, args)
    del reference
    source = _for_saving(source, rgb)
    save_image(job.output, rgb, like=source, quality=args.quality, overwrite=True, source_path=job.source)


def _recolour(recolorizer: Any, job: Job, source: Any, reference: Any, args: argparse.Namespace) -> Any:
    """Check the output is still free, then re-colour ``source`` after ``reference``."""
    _check_output(job, source_path=job.source, overwrite=args.overwrite)
    prepared = recolorizer.prepare(source, reference)
    return recolorizer.render_array(prepared, args.strength, dtype=_render_dtype(job, source))


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
