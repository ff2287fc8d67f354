"""Running a ``recolorize transfer`` plan: one path for one pair, a folder and a pairs CSV.

A single pair is a batch of one: the same decoding, checks, re-colouring and writing, the same one line for
an error. What differs is what an error means. In a batch each job fails alone (named in one line, the
others run, exit 1 at the end with a count); for one pair its error is the command's: a ``UserError``
becomes the CLI's one line with exit code 2, anything else one line naming the pair and exit code 1 (the
traceback with ``--verbose``).

Before the model loads, what a bad file should stop at once is decoded: the reference shared by every job
(one pair or a folder: a bad one stops the command with exit code 2) and a single pair's source.

A batch runs one photo at a time (``--jobs 1``, the default) or, with ``--jobs N``, N at once: this process
and N - 1 helper processes (``transfer_helpers``): the same files, more photos per second.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from recolorize.commands.job_logs import ThreadLogs, held_logs
from recolorize.commands.transfer_first import FirstDecode
from recolorize.commands.transfer_output import check_output, for_saving, render_dtype, write_outputs
from recolorize.commands.transfer_plan import Job, Plan, describe_reference
from recolorize.errors import UserError, one_line, shown

if TYPE_CHECKING:  # imported by --jobs only (multiprocessing)
    from recolorize.commands.transfer_helpers import Helpers

__all__ = [
    "run_jobs",
    "transfer_one",
    "load_model",
    "load_references",
    "out_of_memory_is_an_error",
]

logger = logging.getLogger(__name__)


def load_model(args: argparse.Namespace) -> Any:
    """The ``Recolorizer`` of ``--weights`` (default: the shipped model) on ``--device``, at ``--size``."""
    from recolorize.inference.pipeline import Recolorizer

    recolorizer = Recolorizer.from_pretrained(args.weights, device=args.device)
    if args.size is not None:
        recolorizer.resolution = args.size
    return recolorizer


def load_references(reference: Path | tuple[Path, ...], max_pixels: int) -> Any:
    """Decode a job's reference(s): one LoadedImage, or a list of them for several."""
    from recolorize.imaging import load_image

    if isinstance(reference, tuple):
        return [load_image(path, max_pixels=max_pixels) for path in reference]
    return load_image(reference, max_pixels=max_pixels)


@contextlib.contextmanager
def out_of_memory_is_an_error(args: argparse.Namespace, job: Job | None = None) -> Iterator[None]:
    """An allocation that fails (torch raises RuntimeError) is the user's size choice: one line (naming
    the pair when ``job`` is given, as a batch needs)."""
    try:
        yield
    except (MemoryError, RuntimeError) as error:
        if not isinstance(error, MemoryError) and "allocate" not in str(error):
            raise
        what = "this pair" if job is None else f"{job.source} with {describe_reference(job.reference)}"
        size = f" at --size {args.size}" if args.size is not None else ""
        raise UserError(f"not enough memory to re-colour {what}{size}; try a smaller --size") from None


class _References:
    """Decoded references shared by the jobs: each decoded once, by the first job (thread) that needs it
    (the others wait for it), the ``keep`` most recently used kept (0: none, for one pair, so that its
    pixels go once the model has its copy)."""

    def __init__(self, max_pixels: int, keep: int) -> None:
        self.lock = threading.Lock()
        self.max_pixels, self.keep = max_pixels, keep
        self.futures: dict[Path | tuple[Path, ...], Any] = {}

    def preload(self, reference: Path | tuple[Path, ...], decoded: Any) -> None:
        """Keep ``reference`` already decoded (``decoded``, as ``load_references`` returns it)."""
        done: Future = Future()
        done.set_result(decoded)
        self.futures[reference] = done

    def get(self, reference: Path | tuple[Path, ...]) -> Any:
        with self.lock:
            future = self.futures.pop(reference, None)
            owner = future is None
            if owner:
                future = Future()
            self.futures[reference] = future  # most recently used last
            while len(self.futures) > self.keep:
                del self.futures[next(iter(self.futures))]
        if owner:
            try:
                future.set_result(load_references(reference, self.max_pixels))
            except BaseException as error:
                future.set_exception(error)
        return future.result()


@dataclass
class _Run:
    """What every job of a plan shares, and the jobs that failed."""

    args: argparse.Namespace
    batch: bool
    max_pixels: int
    references: _References
    recolorizer: Any = None
    failures: list[tuple[Job, BaseException]] = field(default_factory=list)

    def failed(self, job: Job, error: BaseException, write: Callable[..., Any]) -> None:
        """Count a failed job; in a batch, name it at once in one line (``write``: tqdm's)."""
        self.failures.append((job, error))
        if self.batch:
            write(failure_line(job, error), file=sys.stderr)


def run_jobs(
    args: argparse.Namespace,
    plan: Plan,
    max_pixels: int,
    first: FirstDecode,
    helpers: Helpers | None = None,
) -> int:
    """Run ``plan`` (options, paths and weights already checked; ``first`` decoding the first photos and
    ``helpers`` starting since before torch was imported): the command's exit code."""
    for message in plan.rejected:
        print(f"recolorize: error: {message}", file=sys.stderr)
    todo = []
    for job in plan.jobs:
        if job.output.exists() and not args.overwrite:
            logger.info("skipping %s: %s exists (use --overwrite)", job.source, job.output)
        else:
            todo.append(job)
    keep = 2 if plan.batch else 0
    run = _Run(args, plan.batch, max_pixels, _References(max_pixels, keep))
    if todo:
        # what a bad file should stop at once (an error here stops the command), decoded before the model
        # loads: the shared reference and a single pair's source
        early, reference = first.result()
        if reference is not None:
            run.references.preload(todo[0].reference, reference)
        run.recolorizer = load_model(args)
        if helpers is not None:
            _run_with_helpers(run, todo, helpers)
        else:
            _run_in_turn(run, todo, early)
    return _exit_code(run, plan)


def transfer_one(run: _Run, job: Job, source: Any = None) -> None:
    """One job: decode the source (unless given), get the reference, check the output is still free,
    re-colour, write."""
    from recolorize.imaging import check_output_fits, load_image

    args = run.args
    if source is None:
        check_output_fits(job.output, job.source, run.max_pixels)  # the format's limits, from the header
        source = load_image(job.source, max_pixels=run.max_pixels)
    reference = run.references.get(job.reference)
    check_output(job, source_path=job.source, overwrite=args.overwrite)
    wants_float = getattr(args, "lut", None) is not None  # the LUT is fitted to the float result
    with out_of_memory_is_an_error(args, job if run.batch else None):
        prepared = run.recolorizer.prepare(source, reference)
        del reference  # only its network copy is used from here: free its pixels for the full-size step
        dtype = render_dtype(job, source, wants_float)
        rgb = run.recolorizer.render_array(prepared, args.strength, dtype=dtype)
        base = None
        if wants_float:  # the model's own colour prior as a LUT: --lut writes it plus the fitted change
            from recolorize.inference.lut.from_transfer import prior_lut

            base = prior_lut(prepared, args.strength)
        del prepared
    source = for_saving(source, rgb)
    write_outputs(job, source, rgb, args, base)


def _run_in_turn(run: _Run, todo: list[Job], early: dict[Path, Any]) -> None:
    """The jobs one after the other on this thread (where a C decoder's stderr lines are captured)."""
    from tqdm import tqdm

    for job in tqdm(todo, desc="re-colouring", unit="photo", disable=not run.batch):
        try:
            with held_logs():
                transfer_one(run, job, early.pop(job.source, None))
        except Exception as error:  # noqa: BLE001 - one bad pair must never stop the batch
            run.failed(job, error, tqdm.write)


def _run_with_helpers(run: _Run, todo: list[Job], helpers: Helpers) -> None:
    """The batch with ``--jobs N``: the photos shared between this process and N - 1 helper processes
    (``transfer_helpers`` says why processes), reported in the photos' order.

    Each helper is kept with one photo running and one queued; this process takes the next photo itself
    whenever the helpers have enough. A photo's log lines wait for it to succeed (and go if it fails).
    """
    import torch
    from tqdm import tqdm

    from recolorize.commands.transfer_helpers import replay, threads_per_process

    previous = torch.get_num_threads()
    torch.set_num_threads(threads_per_process(helpers.count + 1))
    pending: deque[tuple[int, Future, bool]] = deque()  # (photo, outcome, done here)
    progress = tqdm(total=len(todo), desc="re-colouring", unit="photo")

    def report(wait: bool) -> None:
        """Report finished photos in order (all of them, waiting, with ``wait``)."""
        while pending and (wait or pending[0][1].done()):
            k, future, _ = pending.popleft()
            error = future.exception()
            if error is None:
                replay(future.result())
            else:
                run.failed(todo[k], _helper_error(error), progress.write)
            progress.update()

    try:
        for k, job in enumerate(todo):
            helping = sum(1 for _, future, here in pending if not here and not future.done())
            future = helpers.submit(job) if helping < 2 * helpers.count else None
            pending.append((k, future, False) if future is not None else (k, _here(run, job), True))
            report(wait=False)
        report(wait=True)
    finally:
        progress.close()
        torch.set_num_threads(previous)


def _here(run: _Run, job: Job) -> Future:
    """``transfer_one`` in this process, as a finished future holding its log lines (or its error)."""
    future: Future = Future()
    records: list[logging.LogRecord] = []
    with ThreadLogs() as logs:
        try:
            logs.run(records, transfer_one, run, job)
        except Exception as error:  # noqa: BLE001 - one bad pair must never stop the batch
            future.set_exception(error)
            return future
    future.set_result([(record.name, record.levelno, record.getMessage()) for record in records])
    return future


def _helper_error(error: BaseException) -> BaseException:
    """A helper's death as a photo's error that says so (its other errors are the photo's own)."""
    from concurrent.futures.process import BrokenProcessPool

    if isinstance(error, BrokenProcessPool):
        return RuntimeError("the helper process re-colouring it stopped (out of memory?)")
    return error


def _exit_code(run: _Run, plan: Plan) -> int:
    """0 when every job succeeded. One pair: its ``UserError`` is raised for the CLI (one line, exit 2), any
    other error is one line and exit 1. A batch: the count of failures in one line, exit 1."""
    from tqdm import tqdm

    if not plan.batch and run.failures:
        job, error = run.failures[0]
        if isinstance(error, UserError):
            raise error
        print(failure_line(job, error, skipped=False), file=sys.stderr)
        return 1
    failures = len(plan.rejected) + len(run.failures)
    if failures:
        tqdm.write(
            f"recolorize: {failures} of {len(plan.jobs) + len(plan.rejected)} photos failed", file=sys.stderr
        )
        return 1
    return 0


def failure_line(job: Job, error: BaseException, skipped: bool = True) -> str:
    """The one line that names a failed pair (a ``UserError`` says itself what went wrong)."""
    if isinstance(error, UserError):
        return f"recolorize: error: {one_line(error, 500)}"
    logger.debug("pair %s / %s failed", job.source, describe_reference(job.reference), exc_info=error)
    return (
        f"recolorize: error: {shown(job.source)} with {shown(describe_reference(job.reference))} failed "
        f"({type(error).__name__}: {one_line(error)}){'; skipped' if skipped else ''}"
    )
