"""``transfer --jobs N`` on a batch: N - 1 helper processes re-colour photos beside the command's own.

Why processes and not threads sharing the one model: a photo's work alternates short stretches of Python
(the bands of the direct rendering, the strips of the fit, the predictor's modules) with small torch
operations, and threads queue on Python's lock between them. Two threads re-coloured 1-MP photos at 0.19 s
each against 0.31 s for one (1.6x on 2 cores); two processes at 0.17 s (1.8x), and processes keep scaling
with the cores where threads do not. Each helper loads its own model (about 0.4 GB with a 1-MP photo, the
size of the command itself), so memory grows with N.

The helpers are started before the command imports torch, so their start-up (Python, torch, the model:
~1 s of one core each) runs beside the command's own; the command re-colours photos itself while they
work. Every photo still fails alone with the same one line, lines and the progress bar follow the photos'
order, and the files are those of ``--jobs 1``: every process computes a photo with the same
single-threaded pieces. A helper that dies takes its photos with it (each named in one line) and the
command carries on alone. Ctrl-C stops the helpers (they ignore it themselves and are terminated; a
photo being written is left as it was, never half-written).
"""

from __future__ import annotations

import argparse
import gc
import logging
import multiprocessing
import os
import signal
import sys
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from recolorize.commands.transfer_plan import Job, Plan
from recolorize.errors import UserError

__all__ = ["Helpers", "helper_count", "threads_per_process"]

#: A helper's log lines: (logger name, level, message), replayed by the command in the photos' order.
Lines = list[tuple[str, int, str]]


def helper_count(jobs: int, photos: int, cores: int) -> int:
    """Helper processes for ``--jobs jobs``: one fewer than the processes that can be busy at once, which
    are no more than the photos to do and the cores (a process beyond the cores adds only its memory,
    ~0.4 GB)."""
    return max(0, min(jobs, photos, cores) - 1)


def threads_per_process(jobs: int) -> int:
    """Torch threads for each of ``jobs`` processes: the cores shared out, at least one."""
    return max(1, (os.cpu_count() or 1) // jobs)


class Helpers:
    """N - 1 helper processes for ``--jobs N``, started at once (``start``) and stopped by ``close``."""

    def __init__(self, args: argparse.Namespace, max_pixels: int, count: int) -> None:
        self.count = count
        self.alive = True
        self.pool = ProcessPoolExecutor(
            count,
            mp_context=multiprocessing.get_context("spawn"),  # no fork of a process that has threads
            initializer=_start,
            initargs=(args, max_pixels, threads_per_process(count + 1)),
        )
        for _ in range(count):  # each helper starts, and loads its model, now rather than at its first photo
            self.pool.submit(_ready)

    @classmethod
    def start(cls, args: argparse.Namespace, plan: Plan, max_pixels: int) -> Helpers | None:
        """Helpers for this plan: only a batch with ``--jobs`` above 1 and more than one photo to do."""
        todo = sum(1 for job in plan.jobs if args.overwrite or not job.output.exists())
        count = helper_count(getattr(args, "jobs", 1), todo if plan.batch else 1, os.cpu_count() or 1)
        return cls(args, max_pixels, count) if count else None

    def submit(self, job: Job) -> Future | None:
        """Hand ``job`` to a helper; None once the helpers are gone (the command does the rest)."""
        if not self.alive:
            return None
        try:
            return self.pool.submit(_run_job, job)
        except (BrokenProcessPool, RuntimeError):
            self.alive = False
            return None

    def close(self) -> None:
        """Stop the helpers, at once: what they were writing is abandoned before it is renamed."""
        for process in list((getattr(self.pool, "_processes", None) or {}).values()):
            if process.is_alive():
                process.terminate()
        self.pool.shutdown(wait=True, cancel_futures=True)


def replay(lines: Lines) -> None:
    """Log a helper's lines here, as if the command had logged them."""
    for name, level, message in lines:
        record = logging.makeLogRecord(
            {"name": name, "levelno": level, "levelname": logging.getLevelName(level), "msg": message}
        )
        logging.getLogger().callHandlers(record)


# --- in the helper process -----------------------------------------------------------------------------
_RUN: Any = None


def _start(args: argparse.Namespace, max_pixels: int, threads: int) -> None:
    """Load the model once in this helper; Ctrl-C is the command's to handle, SIGTERM (and SIGHUP, a closed
    terminal) ends a photo cleanly (``atomic_write`` removes its temporary file)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    if hasattr(signal, "SIGHUP") and signal.getsignal(signal.SIGHUP) is signal.SIG_DFL:
        signal.signal(signal.SIGHUP, lambda *_: sys.exit(1))
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch is imported (cli says why)
    logging.basicConfig(level=logging.DEBUG if getattr(args, "verbose", False) else logging.INFO)
    import torch

    from recolorize.commands.transfer_run import _References, _Run, load_model

    torch.set_num_threads(threads)
    global _RUN
    _RUN = _Run(args, True, max_pixels, _References(max_pixels, keep=2))
    _RUN.recolorizer = load_model(args)
    gc.freeze()  # what was imported and loaded lives as long as this process (cli.heavy_imports says why)


def _ready() -> None:
    """Nothing: submitted once per helper so that each starts (and loads its model) right away."""


def _run_job(job: Job) -> Lines:
    """Re-colour and write one photo here; its log lines are returned for the command to replay (a failed
    photo's are dropped with it, as in the command)."""
    from recolorize.commands.transfer_run import transfer_one

    lines: Lines = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append((record.name, record.levelno, record.getMessage()))

    package = logging.getLogger("recolorize")
    handler, propagate = Keep(), package.propagate
    package.addHandler(handler)
    package.propagate = False
    try:
        transfer_one(_RUN, job)
    except Exception as error:  # noqa: BLE001 - sent to the command, which names the photo
        raise _portable(error) from None
    finally:
        package.removeHandler(handler)
        package.propagate = propagate
    return lines


def _portable(error: Exception) -> Exception:
    """``error`` in a form that surely crosses to the command: a ``UserError`` (its one line) or a built-in
    exception as it is (their arguments are plain values), anything else as a RuntimeError that names it."""
    if isinstance(error, UserError):
        return UserError(str(error))
    if type(error).__module__ == "builtins":
        return error
    return RuntimeError(f"{type(error).__name__}: {error}")
