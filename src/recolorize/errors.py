"""Errors meant for a person, not a traceback."""

from __future__ import annotations

__all__ = ["UserError"]


class UserError(Exception):
    """Bad input from the user (missing file, corrupt image, bad option).

    The CLI turns it into one line on stderr and exit code 2; the message must say what is wrong and
    with which path or value, in one sentence.
    """
