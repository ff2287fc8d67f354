"""Small file helpers shared by every command that writes: nothing is ever half-written.

A file is written under a hidden temporary name beside its target (``.NAME.XXXXXXXX.SUFFIX``), then renamed
onto it; any exception, Ctrl-C, SIGTERM or SIGHUP included (``errors.exit_code`` turns those into
exceptions), deletes the temporary file. Hidden files, ours among them, are never taken for photos by a
folder scan (:func:`is_hidden`).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

__all__ = ["TEMP_PREFIX", "atomic_write", "is_hidden"]

#: Every temporary file of :func:`atomic_write` starts with it: a hidden file.
TEMP_PREFIX = "."
_TEMP_TRIES = 100


def is_hidden(name: str) -> bool:
    """A dot-file: a hidden file, or a temporary file of :func:`atomic_write` (which a writer killed by
    SIGKILL or a power cut may leave). Folder scans skip them."""
    return name.startswith(TEMP_PREFIX)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_write(
    path: str | os.PathLike[str], suffix: str | None = None, replace: bool = True
) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``, on error delete it.

    The temporary file lives in the same folder so that the rename is atomic; ``suffix`` defaults to the
    target's suffix so that format-sniffing writers (PIL) pick the right format. Its name is chosen before
    the file is created, so an exception at any point (KeyboardInterrupt from a signal included) deletes it.

    ``replace=False``: the file is given its name only if nothing has it yet (a hard link, then the
    temporary name removed; where the filesystem has no hard links, the name is claimed with an exclusive
    create, then replaced). When something has the name, the temporary file is deleted and
    ``FileExistsError`` raised: of two writers racing for one name, one wins and the other is told.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    ending = suffix if suffix is not None else target.suffix
    tmp: Path | None = None
    try:
        for _ in range(_TEMP_TRIES):
            tmp = target.with_name(f"{TEMP_PREFIX}{target.name}.{os.urandom(4).hex()}{ending}")
            try:
                os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
                break
            except FileExistsError:
                tmp = None  # someone else's: not ours to delete
        if tmp is None:
            raise FileExistsError(f"no free temporary name beside {target}")
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # the usual permissions, whatever the writer did
        if replace:
            os.replace(tmp, target)
        else:
            _name_without_replacing(tmp, target)
    except BaseException:
        if tmp is not None:
            with contextlib.suppress(OSError):
                tmp.unlink()
        raise


def _name_without_replacing(tmp: Path, target: Path) -> None:
    """Give ``tmp`` the name ``target`` atomically, or raise ``FileExistsError`` when ``target`` exists."""
    try:
        os.link(tmp, target)
    except FileExistsError:
        raise
    except OSError:  # no hard links here (FAT, some network and FUSE mounts): claim the name, then rename
        os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        try:
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                target.unlink()  # the empty file that claimed the name
            raise
        return
    with contextlib.suppress(OSError):
        tmp.unlink()
