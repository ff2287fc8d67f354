"""Running a ``recolorize transfer`` plan: one path for one pair, a folder and a pairs CSV.

A single pair is a batch of one: the same decoding, checks, re-colouring and writing, the same one line for
an error. What differs is what an error means. In a batch each job fails alone (named in one line, the
others run, exit 1 at the end with a count); for one pair its error is the command's: a ``UserError``
becomes the CLI's one line with exit code 2, anything else one line naming the pair and exit code 1 (the
traceback with ``--verbose``).

Before the model loads, what a bad file should stop at once is decoded: the reference shared by every job
(one pair or a folder: a bad one stops the command with exit code 2) and a single pair's source.

A batch runs one photo at a time (``--jobs 1``, the default) or, with ``--jobs N``, N at once in worker
threads that share the one model and torch's threads, so that one photo's decoding and encoding overlap
the others' re-colouring: the same files, more photos per second.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recolorize.commands.job_logs import ThreadLogs, held_logs
from recolorize.commands.transfer_first import FirstDecode
from recolorize.commands.transfer_output import check_output, for_saving, render_dtype, write_outputs
from recolorize.commands.transfer_plan import Job, Plan, describe_reference
from recolorize.errors import UserError, one_line

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
        from concurrent.futures import Future

        done: Future = Future()
        done.set_result(decoded)
        self.futures[reference] = done

    def get(self, reference: Path | tuple[Path, ...]) -> Any:
        from concurrent.futures import Future

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


#: Seconds a worker thread may run Python before it must offer the GIL to another (Python's default is
#: 0.005). The jobs' threads alternate short stretches of Python with torch operations that release the
#: GIL; a thread back from one waited for the other's stretch to end. Two 1-MP photos at once, shipped
#: model, 2 cores: 0.192 s per photo at 0.005, 0.186 at 0.001 (and no better below).
SWITCH_INTERVAL = 0.001


def run_jobs(args: argparse.Namespace, plan: Plan, max_pixels: int, first: FirstDecode) -> int:
    """Run ``plan`` (options, paths and weights already checked; ``first`` decoding the first photos since
    before torch was imported): the command's exit code."""
    for message in plan.rejected:
        print(f"recolorize: error: {message}", file=sys.stderr)
    todo = []
    for job in plan.jobs:
        if job.output.exists() and not args.overwrite:
            logger.info("skipping %s: %s exists (use --overwrite)", job.source, job.output)
        else:
            todo.append(job)
    jobs = getattr(args, "jobs", 1) if plan.batch else 1
    workers = min(jobs, len(todo))
    keep = (workers + 1 if jobs > 1 else 1) if plan.batch else 0
    run = _Run(args, plan.batch, max_pixels, _References(max_pixels, keep))
    if todo:
        # what a bad file should stop at once (an error here stops the command), decoded before the model
        # loads: the shared reference and a single pair's source
        early, reference = first.result()
        if reference is not None:
            run.references.preload(todo[0].reference, reference)
        run.recolorizer = load_model(args)
        if jobs > 1:
            _run_overlapped(run, todo, workers)
        else:
            _run_in_turn(run, todo, early)
    return _exit_code(run, plan)


def transfer_one(run: _Run, job: Job, source: Any = None) -> None:
    """One job: decode the source (unless given), get the reference, check the output is still free,
    re-colour, write."""
    from recolorize.imaging import load_image

    args = run.args
    if source is None:
        source = load_image(job.source, max_pixels=run.max_pixels)
    reference = run.references.get(job.reference)
    check_output(job, source_path=job.source, overwrite=args.overwrite)
    wants_float = getattr(args, "lut", None) is not None  # the LUT is fitted to the float result
    with out_of_memory_is_an_error(args, job if run.batch else None):
        prepared = run.recolorizer.prepare(source, reference)
        del reference  # only its network copy is used from here: free its pixels for the full-size step
        dtype = render_dtype(job, source, wants_float)
        rgb = run.recolorizer.render_array(prepared, args.strength, dtype=dtype)
        del prepared
    source = for_saving(source, rgb)
    write_outputs(job, source, rgb, args)


def _run_in_turn(run: _Run, todo: list[Job], early: dict[Path, Any]) -> None:
    """The jobs one after the other on this thread (where a C decoder's stderr lines are captured)."""
    from tqdm import tqdm

    for job in tqdm(todo, desc="re-colouring", unit="photo", disable=not run.batch):
        try:
            with held_logs():
                transfer_one(run, job, early.pop(job.source, None))
        except Exception as error:  # noqa: BLE001 - one bad pair must never stop the batch
            run.failed(job, error, tqdm.write)


def _run_overlapped(run: _Run, todo: list[Job], workers: int) -> None:
    """The batch with ``--jobs N``: N photos at once, each decoded, re-coloured and written by its own worker
    thread with the one model, torch's threads shared out among them.

    Why whole photos and not only decoding and encoding in the background: for the shipped model those
    are ~5 % of a 1-MP photo's time, and most of its operations are too small to keep two threads busy,
    so on two cores two photos at a time with one thread each doubled the photos per second where
    overlapping only the input and output gained nothing (docs/results.md). Each photo still fails alone,
    with the same one line, and lines come in the photos' order.
    Known limit: a C decoder's own stderr lines (libtiff) are not captured off the main thread.
    """
    from concurrent.futures import Future, ThreadPoolExecutor

    import torch
    from tqdm import tqdm

    threads = max(1, torch.get_num_threads() // workers)
    records: list[list[logging.LogRecord]] = [[] for _ in todo]
    pending: deque[tuple[int, Future]] = deque()

    def work(k: int) -> None:
        torch.set_num_threads(threads)  # per thread: OpenMP keeps the count of each calling thread
        logs.run(records[k], transfer_one, run, todo[k])

    switch = sys.getswitchinterval()
    sys.setswitchinterval(min(switch, SWITCH_INTERVAL))
    with ThreadLogs() as logs, ThreadPoolExecutor(workers, thread_name_prefix="recolorize-job") as pool:
        progress = tqdm(total=len(todo), desc="re-colouring", unit="photo")

        def report(limit: int) -> None:
            """Report finished photos in order, waiting while more than ``limit`` are in flight."""
            while pending and (len(pending) > limit or pending[0][1].done()):
                k, future = pending.popleft()
                error = future.exception()
                if error is None:
                    logs.replay(records[k])
                else:
                    run.failed(todo[k], error, progress.write)
                records[k] = []
                progress.update()

        try:
            for k in range(len(todo)):
                pending.append((k, pool.submit(work, k)))
                report(limit=workers)  # one photo queued behind the N running, so no worker waits for work
            report(limit=0)
        finally:
            progress.close()
            sys.setswitchinterval(switch)
    torch.set_num_threads(torch.get_num_threads())  # MKL's count is process-wide: the caller's again


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
        f"recolorize: error: {job.source} with {describe_reference(job.reference)} failed "
        f"({type(error).__name__}: {one_line(error)}){'; skipped' if skipped else ''}"
    )
