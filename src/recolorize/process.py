"""Process-wide settings of the ``recolorize`` program: OpenMP's idle threads. It says why, with what it
measured; ``cli`` applies it.

(The settings that only hid torch's import and teardown, pausing and freezing the garbage collector
around the heavy imports and one malloc arena for the full-resolution step's threads, went with issue 22,
which takes torch off the inference path.)
"""

from __future__ import annotations

import os
import sys

__all__ = ["PASSIVE_COMMANDS", "passive_openmp_threads"]

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
