"""Errors meant for a person, not a traceback."""

from __future__ import annotations

import sys
from collections.abc import Callable

__all__ = ["UserError", "WeightsError", "one_line", "exit_code"]


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


def exit_code(command: Callable[[], int | None]) -> int:
    """Run an entry point's ``command``: its exit code; a ``UserError`` is one line on stderr and exit
    code 2, Ctrl-C exit code 130.

    Every entry point uses it (``recolorize``'s ``cli.main``, ``python -m recolorize.training``), so that
    none copies the handling.
    """
    try:
        return int(command() or 0)
    except UserError as error:
        print(f"recolorize: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("recolorize: interrupted", file=sys.stderr)
        return 130
