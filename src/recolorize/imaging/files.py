"""Opening image files safely: only regular files, only ``READ_FORMATS``, C decoders' chatter logged.

A FIFO would block the open forever and a device (``/dev/zero``) never ends, so they are refused before
opening; any failure of Pillow's openers, whatever its type, becomes a ``UserError`` naming the file.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from PIL import Image, UnidentifiedImageError

from recolorize.errors import UserError, one_line
from recolorize.imaging.limits import READ_FORMATS, _bomb_message

__all__ = ["check_regular_file"]

logger = logging.getLogger(__name__)


def _open(fp: str | Path | IO[bytes], name: str, limit: int) -> Image.Image:
    """Open (read the header of) an image in one of ``READ_FORMATS``; any failure is a ``UserError``."""
    try:
        return Image.open(fp, formats=READ_FORMATS)
    except UnidentifiedImageError:
        raise UserError(f"{name} is not an image file in a format this program reads") from None
    except Image.DecompressionBombError as exc:
        raise UserError(_bomb_message(name, exc, limit)) from None
    except MemoryError:
        raise UserError(f"{name} cannot be opened: not enough memory") from None
    except Exception as exc:  # noqa: BLE001 - a hostile header can make a plugin raise anything
        logger.debug("opening %s failed", name, exc_info=True)
        raise UserError(f"{name} cannot be opened as an image ({one_line(exc)})") from None


def check_regular_file(path: Path, what: str = "") -> None:
    """Refuse, before opening it, anything at ``path`` that is not a readable regular file.

    A FIFO would block the open forever and a device (``/dev/zero``) never ends; folders, sockets and
    missing paths get their own message. ``what`` (e.g. "pairs file") starts the message.
    """
    label = f"{what} {path}".strip()
    try:
        info = path.stat()
    except FileNotFoundError:
        raise UserError(f"{label} does not exist") from None
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the name
        raise UserError(
            f"{label} cannot be read ({one_line(getattr(exc, 'strerror', None) or exc)})"
        ) from None
    if stat.S_ISDIR(info.st_mode):
        raise UserError(f"{label} is a directory, not a file")
    if not stat.S_ISREG(info.st_mode):
        kind = "a FIFO" if stat.S_ISFIFO(info.st_mode) else "a device or socket"
        raise UserError(f"{label} is {kind}, not a regular file; refusing to read it")
    if not os.access(path, os.R_OK):
        raise UserError(f"{label} is not readable (permission denied)")


@contextlib.contextmanager
def _c_stderr_to_debug_log(name: str) -> Iterator[None]:
    """Send what C decoders print on file descriptor 2 to the debug log.

    libtiff reports a corrupt strip ("ZIPDecode: Decoding error ...") straight to stderr, which would
    put a second line before our one-line error. Only in the main thread (the command line): in a
    server thread, redirecting the process's stderr would also swallow other threads' messages.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no usable fd 2 (a daemon): nothing to protect
        yield
        return
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            for line in sink.read(20_000).decode("utf-8", "replace").splitlines():
                logger.debug("%s: %s", name, line)
