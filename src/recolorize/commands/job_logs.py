"""Holding a job's log lines until it is known to have succeeded: an error line stands alone.

Shared by ``transfer`` (one photo, a batch, the decoding that runs while torch is imported), ``lut`` and
``lut-apply``.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from typing import Any

__all__ = ["held_logs", "ThreadLogs"]


@contextlib.contextmanager
def held_logs() -> Iterator[None]:
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


class ThreadLogs(logging.Handler):
    """Per-job log records in a multi-threaded batch: each thread's records go to the list it names.

    Installed on the package logger for the batch (``held_logs`` cannot be: it swaps one handler for
    everyone). A job's records (decode, re-colouring, write, from whichever threads ran them) are logged
    in order once the job has succeeded and dropped if it failed, as ``held_logs`` does for one photo.
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

    def __enter__(self) -> ThreadLogs:
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
