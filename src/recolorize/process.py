"""Process-wide settings of the ``recolorize`` program: OpenMP's idle threads, malloc's arenas, Python's
garbage collector around the heavy imports. Each says why, with what it measured; ``cli`` applies them.
"""

from __future__ import annotations

import contextlib
import gc
import os
import sys
from collections.abc import Iterator

__all__ = ["PASSIVE_COMMANDS", "PROGRAM", "heavy_imports", "one_malloc_arena", "passive_openmp_threads"]

#: Whether this process is the ``recolorize`` program (``cli.entry``) rather than a caller of ``cli.main``.
PROGRAM = False


#: Commands whose OpenMP threads should sleep when idle: short, photo-by-photo work that shares the cores.
#: Not training, caching or evaluation: there spinning threads are faster (a stage-3 training step ran at
#: 19.5 images/s passive against 28.4 spinning on this 2-core machine).
PASSIVE_COMMANDS = frozenset({"transfer", "lut", "lut-apply", "app"})


def passive_openmp_threads() -> None:
    """Let idle OpenMP threads sleep instead of spinning, unless the user chose (``OMP_WAIT_POLICY``).

    Why: torch's OpenMP threads spin at every barrier by default. When the cores are shared (a training
    job, a browser), a spinning thread burns the time slice another one needs, and a 12-MP transfer with
    two threads took 9.5-12.6 s on this 2-core machine under load against 5.0 s passive (as fast as one
    thread there). It must be set before torch is imported: OpenMP reads it once, at start-up.
    """
    if "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def one_malloc_arena() -> None:
    """Have glibc's malloc serve every thread from one arena (as ``MALLOC_ARENA_MAX=1`` would).

    Why: the full-resolution step runs its bands and tiles in a few threads (``inference.parallel``), and
    glibc gives each thread its own arena, whose freed memory the others cannot reuse: a 12-MP transfer
    peaked at ~665 MB instead of ~625 MB, for no measurable speed. Skipped where the C library is not glibc.
    """
    if os.environ.get("MALLOC_ARENA_MAX"):
        return
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").mallopt(-8, 1)  # M_ARENA_MAX
    except (OSError, AttributeError):
        pass


@contextlib.contextmanager
def heavy_imports() -> Iterator[None]:
    """Around a command's import of torch and the model code: in the ``recolorize`` program, Python's
    cyclic garbage collector is paused during the import, and what it imported is then frozen out of the
    collector's reach (``gc.freeze``).

    Why: a full collection walks every object alive, and with torch imported each took 0.03-0.06 s; a 12-MP
    transfer ran three (0.10 s; two inside torch's import, one as the model was built). Frozen objects are
    no longer walked; they are modules, functions and classes that live as long as the process anyway. A
    caller of ``main`` (tests: many runs in one process) keeps its collector as it was.
    """
    if not PROGRAM:
        yield
        return
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()
