"""The process's cores and memory, as the full-size steps use them: how many cores this process may use,
independent pieces of a step in that many threads (NumPy and Pillow let go of Python's lock in their
loops), and freed memory handed back to the system between a large photo's steps."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

__all__ = ["THREAD_VARIABLES", "cores", "in_background", "in_threads", "limit_cores", "return_free_memory"]

Item = TypeVar("Item")
Result = TypeVar("Result")


def cores() -> int:
    """The cores this process may use: its CPU affinity (which a container or ``taskset`` narrows), or
    fewer where ``limit_cores`` said so (a ``--jobs`` helper's share)."""
    try:
        available = max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        available = max(1, os.cpu_count() or 1)
    return min(available, _limit) if _limit is not None else available


def limit_cores(count: int) -> None:
    """From now on this process's own pieces (``in_threads``) use at most ``count`` cores."""
    global _limit
    _limit = max(1, int(count))


#: Variables that set the BLAS and OpenMP libraries' thread counts in a process that starts with them.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def in_threads(work: Callable[[Item], None], items: Iterable[Item], threads: int | None = None) -> None:
    """``work(item)`` for every item, over ``threads`` threads (default: ``cores()``), inline when that is
    one or there is one item. Each piece must write only its own part of a shared output, so the result does
    not depend on the thread count; the first error is raised."""
    items = list(items)
    count = min(cores() if threads is None else threads, len(items))
    if count <= 1:
        for item in items:
            work(item)
        return
    with ThreadPoolExecutor(count, thread_name_prefix="recolorize-piece") as pool:
        for future in [pool.submit(work, item) for item in items]:
            future.result()


def in_background(work: Callable[[], Result]) -> Future[Result]:
    """``work()`` started in a thread; its ``Future`` gives the result, or raises its error, when asked.
    Why: loading the model's graphs (~0.05 s from the cache of optimised graphs, ~0.2 s without, mostly
    in ONNX Runtime's C++, which lets go of Python's lock) can run while the photos decode. Not a daemon: a
    process that exits early (a photo that does not decode) waits for it, since ONNX Runtime aborts the
    process when its session is torn down mid-load."""
    future: Future[Result] = Future()

    def run() -> None:
        try:
            future.set_result(work())
        except BaseException as error:  # noqa: BLE001 - handed to whoever asks for the result
            future.set_exception(error)

    threading.Thread(target=run, name="recolorize-background").start()
    return future


def return_free_memory() -> None:
    """Hand the memory freed so far back to the system (glibc's ``malloc_trim``; nothing elsewhere).

    Why: the freed temporaries of one step (the copy's resize, the networks' activations, the generator's
    bands, the fit's strips) stay in malloc's heap, in pieces the next step's buffers do not fit, so a large
    photo's peak grew step by step: a 12-MP transfer held 378 MB after ``prepare`` and 268 MB after a trim
    (~1 ms a call). Only for large photos: on small ones the pages only fault back in for the next.
    """
    global _trim
    if _trim is None:
        try:
            import ctypes

            _trim = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _trim = False
    if _trim:
        _trim(0)


_trim: Callable[[int], int] | bool | None = None
_limit: int | None = None
