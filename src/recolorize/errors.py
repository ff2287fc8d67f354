"""Errors meant for a person, not a traceback."""

from __future__ import annotations

import contextlib
import math
import signal
import sys
import threading
from collections.abc import Callable, Iterator

__all__ = [
    "UserError",
    "WeightsError",
    "Terminated",
    "one_line",
    "exit_code",
    "refuse_non_finite_options",
    "stop_signals_as_interrupts",
]


class UserError(Exception):
    """Bad input from the user (missing file, corrupt image, bad option).

    The CLI turns it into one line on stderr and exit code 2; the message must say what is wrong and
    with which path or value, in one sentence.
    """


class WeightsError(UserError, ValueError):
    """A weights file (or its config JSON) that cannot be used: not safetensors, truncated, wrong model.

    A ``ValueError`` too, so API callers that catch the usual "bad value" exception also catch this one;
    a ``UserError`` so the CLI and the web app report it in one line (exit code 2).
    """


def one_line(text: object, limit: int = 300) -> str:
    """``text`` squeezed to one line of at most ``limit`` characters (messages quote foreign errors)."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def refuse_non_finite_options(options: object) -> None:
    """Refuse (``UserError``) any float option of a parsed command line (an ``argparse.Namespace``) that is
    not a finite number: argparse's ``float`` takes ``nan``, ``inf`` and ``1e400`` (infinite), which pass
    a ``<= 0`` or ``> 0`` check and fail later with a traceback or a silent nonsense result. Every entry
    point calls it once, after parsing, so that no command's option needs its own check."""
    for name, value in sorted(vars(options).items()):
        values = value if isinstance(value, list | tuple) else (value,)
        for item in values:
            if isinstance(item, float) and not math.isfinite(item):
                raise UserError(f"--{name.replace('_', '-')} must be a finite number, got {item}")


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP arrived. A ``KeyboardInterrupt``, so that it unwinds exactly as Ctrl-C does: every
    ``finally`` runs, ``atomic_write`` deletes its temporary file, helper processes are stopped."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum
        self.name = signal.Signals(signum).name


#: The signals that stop a command as Ctrl-C (SIGINT) does: ``kill``'s default, and a closed terminal.
STOP_SIGNALS: tuple[str, ...] = ("SIGTERM", "SIGHUP")


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated(signum)


@contextlib.contextmanager
def stop_signals_as_interrupts() -> Iterator[None]:
    """While the block runs, SIGTERM and SIGHUP raise :class:`Terminated` (as SIGINT raises
    KeyboardInterrupt) instead of killing the process where it stands, which would leave a partial
    temporary file behind. Only signals left at their default are taken (one ignored, as under ``nohup``,
    stays ignored; a handler of the caller's stays), only in the main thread; the previous handlers are
    restored after."""
    taken: dict[int, object] = {}
    if threading.current_thread() is threading.main_thread():
        for name in STOP_SIGNALS:
            signum = getattr(signal, name, None)
            if signum is not None and signal.getsignal(signum) is signal.SIG_DFL:
                taken[signum] = signal.signal(signum, _raise_terminated)
    try:
        yield
    finally:
        for signum, previous in taken.items():
            signal.signal(signum, previous)  # type: ignore[arg-type]


def exit_code(command: Callable[[], int | None]) -> int:
    """Run an entry point's ``command``: its exit code; a ``UserError`` is one line on stderr and exit
    code 2, Ctrl-C exit code 130, SIGTERM / SIGHUP 128 + the signal's number (each unwinds as Ctrl-C does:
    :func:`stop_signals_as_interrupts`).

    Every entry point uses it (``recolorize``'s ``cli.main``, ``python -m recolorize.training``), so that
    none copies the handling.
    """
    try:
        with stop_signals_as_interrupts():
            return int(command() or 0)
    except UserError as error:
        print(f"recolorize: error: {error}", file=sys.stderr)
        return 2
    except Terminated as stop:
        _say(f"recolorize: stopped by {stop.name}")
        return 128 + stop.signum
    except KeyboardInterrupt:
        _say("recolorize: interrupted")
        return 130


def _say(line: str) -> None:
    """``line`` on stderr, if it is still there (SIGHUP: the terminal may be gone)."""
    with contextlib.suppress(OSError, ValueError):
        print(line, file=sys.stderr)
