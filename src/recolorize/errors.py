"""Errors meant for a person, not a traceback."""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import re
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from typing import NoReturn

__all__ = [
    "UserError",
    "WeightsError",
    "OneLineParser",
    "escape_controls",
    "shown",
    "write_errors",
    "Terminated",
    "one_line",
    "exit_code",
    "refuse_non_finite_options",
    "installed",
    "require",
    "require_training",
    "TRAINING_MODULES",
    "stop_signals_as_interrupts",
]


class UserError(Exception):
    """Bad input from the user (missing file, corrupt image, bad option).

    The CLI turns it into one line on stderr and exit code 2; the message must say what is wrong and
    with which path or value, in one sentence. Its text is one line whatever the names in it hold: a
    control character (a newline in a file name) is shown escaped (:func:`escape_controls`).
    """

    def __str__(self) -> str:
        return escape_controls(super().__str__())


class WeightsError(UserError, ValueError):
    """A weights file (or its config JSON) that cannot be used: not safetensors, truncated, wrong model.

    A ``ValueError`` too, so API callers that catch the usual "bad value" exception also catch this one;
    a ``UserError`` so the CLI and the web app report it in one line (exit code 2).
    """


_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def escape_controls(text: object) -> str:
    """``text`` with every control or format character (newline, carriage return, escape, bidi marks, line
    separators) written as its escape (``\\n``, ``\\x1b``, ``\\u202e``), so that it stays on one line and
    shows what is there."""
    text = str(text)
    if text.isprintable():
        return text
    out = []
    for char in text:
        if char.isprintable() or char == " ":
            out.append(char)
        elif char in _ESCAPES:
            out.append(_ESCAPES[char])
        else:
            code = ord(char)
            out.append(
                f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"
            )
    return "".join(out)


def shown(path: object) -> str:
    """A path (or any name a person gave) as an error message shows it: control characters escaped
    (:func:`escape_controls`), so a file name with a newline cannot split the message or forge a line."""
    return escape_controls(path)


class OneLineParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose option errors are one line, ``recolorize <cmd>: <message> (see recolorize
    <cmd> --help)``, and exit code 2 (argparse prints its usage block first: 2-7 lines). Subparsers take
    the class of their parent, so the root parser's class covers every command."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {one_line(escape_controls(message), 500)} (see {self.prog} --help)\n")


@contextlib.contextmanager
def write_errors(target: object, what: str = "") -> Iterator[None]:
    """Turn a failed write of ``target`` in the block (a full disk, a read-only filesystem, no permission)
    into a ``UserError``: one line, ``cannot write <what> <target>: <reason>`` (exit code 2), instead of an
    ``OSError`` or safetensors' ``SafetensorError`` traceback (its Rust text is reduced to the reason)."""
    try:
        yield
    except OSError as exc:
        raise UserError(f"cannot write {what}{shown(target)}: {one_line(exc.strerror or exc)}") from None
    except Exception as exc:
        if type(exc).__name__ != "SafetensorError":
            raise
        code = re.search(r"os error (\d+)", str(exc))  # "I/O error: ... (os error 28) at path ..."
        reason = os.strerror(int(code.group(1))) if code else "the file could not be written"
        raise UserError(f"cannot write {what}{shown(target)}: {one_line(reason)}") from None


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


def installed(module: str) -> bool:
    """Whether ``module`` can be imported, found without importing it (torch takes ~0.8 s to import)."""
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a missing parent package; a module blocked as None in sys.modules
        return False


def require(module: str, extra: str, what: str, package: str | None = None) -> None:
    """Refuse (``UserError``) to start ``what`` without the optional ``module``, in one line with the exact
    pip command: ``eval --methods hm-mkl-hm needs color-matcher: pip install 'recolorize[compare]'``.

    Why up front: called first in a command's ``run``, before any file is read or a progress bar shown, so
    that a missing extra costs one line, not a wait followed by a traceback. ``package`` is the name pip
    knows when it differs from the import name (``color-matcher`` for ``color_matcher``).
    """
    if not installed(module):
        raise UserError(f"{what} needs {package or module}: pip install 'recolorize[{extra}]'")


#: What the research commands (train, build-cache, export, eval, dpst-report, analyse, augment-grid,
#: make-bench) import beyond the light base install, all in the ``train`` extra: import name -> pip name.
TRAINING_MODULES: dict[str, str] = {"torch": "torch", "skimage": "scikit-image"}


def require_training(what: str) -> None:
    """:func:`require` every module of :data:`TRAINING_MODULES` (the ``train`` extra) for ``what``."""
    for module, package in TRAINING_MODULES.items():
        require(module, "train", what, package)


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
