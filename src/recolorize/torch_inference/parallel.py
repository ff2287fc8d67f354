"""Run the independent pieces of a full-resolution step (bands, strips, tiles) in a few threads.

Why threads over pieces rather than torch's own threads inside each operation: the pieces' operations are
small (a band of ~16k pixels), and an OpenMP team pays a hand-over at every operation's barrier. With idle
threads sleeping (``OMP_WAIT_POLICY=PASSIVE``, which a shared machine needs, see ``cli``), two OpenMP
threads rendered the 0.5-MP direct pass of a 12-MP photo in 0.53 s against 0.29 s on one (idle 2-core
machine); spinning threads instead make it 4x slower as soon as another job runs. Here each thread runs
its pieces single-threaded, torch releases the GIL inside operations, and N threads keep N cores busy
with no barrier per operation (the direct pass then took 0.22 s, the full 12-MP step 0.6 s instead of
1.05 s). Pieces are independent, so the thread count changes only float rounding (~1e-7), as any torch
thread count does.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import torch

from recolorize.threads import return_free_memory

__all__ = ["for_each", "one_thread", "return_free_memory"]

Item = TypeVar("Item")


def for_each(
    function: Callable[[Item], None], items: Sequence[Item], device: torch.device | None = None
) -> None:
    """Call ``function`` on every item, in as many threads as torch may use here (each running torch on
    one thread); inline when that is one, when there is one item, or off the CPU.

    ``function`` must only write to its own piece of any shared output. The first exception is raised.
    """
    previous = torch.get_num_threads()
    threads = min(previous, len(items))
    if threads <= 1 or (device is not None and device.type != "cpu"):
        for item in items:
            function(item)
        return
    grad = torch.is_grad_enabled()  # thread-local: without this a worker would record autograd graphs

    def run(item: Item) -> None:
        with torch.set_grad_enabled(grad):
            function(item)

    try:
        with ThreadPoolExecutor(
            threads, thread_name_prefix="recolorize-piece", initializer=_one_thread
        ) as pool:
            for future in [pool.submit(run, item) for item in items]:
                future.result()
    finally:
        torch.set_num_threads(previous)  # it also set MKL's process-wide count: give the caller its own back


def _one_thread() -> None:
    torch.set_num_threads(1)


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run the enclosed torch operations on this thread alone, then give the caller its count back.

    Why: the predictor's operations at 128 px are too small to share: each one pays the OpenMP team's
    hand-over, and P_W with E_W took 0.075 s on two threads against 0.043 s on one (2-core machine,
    ``OMP_WAIT_POLICY=PASSIVE`` as the CLI sets it).
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
