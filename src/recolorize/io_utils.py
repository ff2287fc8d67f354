"""Small file helpers shared by every command that writes: nothing is ever half-written.

A file is written under a hidden temporary name beside its target (``.NAME.XXXXXXXX.SUFFIX``), then renamed
onto it; any exception, Ctrl-C, SIGTERM or SIGHUP included (``errors.exit_code`` turns those into
exceptions), deletes the temporary file. Hidden files, ours among them, are never taken for photos by a
folder scan (:func:`is_hidden`).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from collections.abc import Iterator
from pathlib import Path

__all__ = [
    "CACHE_DIR_ENV",
    "cache_dir",
    "TEMP_PREFIX",
    "atomic_write",
    "is_hidden",
    "name_problem",
    "output_file_problem",
    "remove_temporaries",
]

#: Every temporary file of :func:`atomic_write` starts with it: a hidden file.
TEMP_PREFIX = "."
_TEMP_TRIES = 100
#: The longest file name (bytes) when the filesystem does not say (Linux, macOS, Windows: 255).
NAME_MAX = 255


def is_hidden(name: str) -> bool:
    """A dot-file: a hidden file, or a temporary file of :func:`atomic_write` (which a writer killed by
    SIGKILL or a power cut may leave). Folder scans skip them."""
    return name.startswith(TEMP_PREFIX)


def _nearest_existing(folder: Path) -> Path:
    """``folder`` or its nearest ancestor that exists; ``..`` is taken after symlinks (``realpath``), so
    ``nosuch/../out`` means ``./out``, and no ``nosuch`` is ever made."""
    existing = Path(os.path.realpath(folder))
    while existing != existing.parent:
        try:
            if existing.exists():
                break
        except OSError:  # a part too long for the filesystem: not there either
            pass
        existing = existing.parent
    return existing


def _name_max(folder: Path) -> int:
    """The longest file name (bytes) the filesystem of ``folder`` (or its nearest existing ancestor) takes."""
    try:
        return int(os.pathconf(_nearest_existing(folder), "PC_NAME_MAX"))
    except (OSError, ValueError, AttributeError):  # no pathconf (Windows), or the name is unknown
        return NAME_MAX


def name_problem(path: str | os.PathLike[str]) -> str | None:
    """None when every part of ``path`` is a name the filesystem can hold, else a sentence saying which
    is not. Checked first, before anything asks the filesystem about ``path`` (which would raise)."""
    target = Path(path)
    name_max = _name_max(target.parent)
    for part in target.parts:
        if len(os.fsencode(part)) > name_max:
            shown = part if len(part) <= 40 else f"{part[:20]}...{part[-12:]}"
            return f"the name {shown!r} is longer than the {name_max} bytes a file name may have"
    return None


def output_file_problem(path: str | os.PathLike[str], create_folder: bool = False) -> str | None:
    """The one rule for where an output file may go, checked before any work; None when it may, else
    a sentence saying why not.

    Its name fits the filesystem (the temporary name of :func:`atomic_write` is shortened to fit, the
    final name cannot be). Its folder must exist and be writable, as with ``cp``: a mistyped ``-o
    /typo/dir/x.jpg`` is refused, not created. ``create_folder`` (a batch writing into its ``-o`` folder):
    the folder may be made, under the nearest folder that exists, which must be writable.
    """
    target = Path(path)
    folder = target.parent
    if (problem := name_problem(target)) is not None:
        return problem
    if not create_folder:
        if not folder.exists():
            return f"cannot write {target}: the folder {folder} does not exist"
        if not folder.is_dir():
            return f"cannot write {target}: {folder} is a file, not a folder"
        if not os.access(folder, os.W_OK | os.X_OK):
            return f"cannot write to folder {folder}"
        return None
    existing = _nearest_existing(folder)
    if not existing.is_dir():
        return f"cannot write {target}: {existing} is a file, not a folder"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"cannot write to folder {existing}"
    return None


def _temp_name(target: Path, ending: str) -> str:
    """A free-looking hidden name beside ``target`` that fits the filesystem's name limit: the target's
    name, shortened (its start plus a hash of the whole) when name + random part + suffix would not fit."""
    return f"{_temp_head(target, ending)}.{os.urandom(_RANDOM_BYTES).hex()}{ending}"


#: Random bytes in a temporary name (hex: twice as many characters).
_RANDOM_BYTES = 4


def _temp_head(target: Path, ending: str) -> str:
    """The part of ``_temp_name`` before its random part: the prefix and the (maybe shortened) name."""
    random_part = f".{'0' * 2 * _RANDOM_BYTES}{ending}"
    name = target.name
    room = _name_max(target.parent) - len(os.fsencode(TEMP_PREFIX + random_part))
    if len(os.fsencode(name)) > room:
        digest = hashlib.sha256(os.fsencode(name)).hexdigest()[:8]
        head = os.fsencode(name)[: max(room - len(digest) - 1, 0)].decode("utf-8", "ignore")
        name = f"{head}~{digest}"
    return f"{TEMP_PREFIX}{name}"


def remove_temporaries(path: str | os.PathLike[str], suffix: str | None = None) -> list[Path]:
    """Delete the temporary files ``atomic_write(path, suffix)`` left beside ``path`` because its writer was
    killed before it could (SIGKILL, the out-of-memory killer); returns them. Only for a target no live
    writer is writing: a parent whose helper process died, a run resumed after a crash."""
    target = Path(path)
    ending = suffix if suffix is not None else target.suffix
    pattern = re.compile(
        re.escape(_temp_head(target, ending)) + rf"\.[0-9a-f]{{{2 * _RANDOM_BYTES}}}" + re.escape(ending)
    )
    removed = []
    with contextlib.suppress(OSError):  # no folder: nothing was left
        for entry in target.parent.iterdir():
            if pattern.fullmatch(entry.name):
                with contextlib.suppress(OSError):
                    entry.unlink()
                    removed.append(entry)
    return removed


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
    if not target.parent.is_dir():  # a batch's output folder; ``..`` after symlinks, so no stray folder
        folder = Path(os.path.realpath(target.parent))
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / target.name  # ``nosuch/../out/x`` is ``out/x``: no ``nosuch`` to pass through
    ending = suffix if suffix is not None else target.suffix
    tmp: Path | None = None
    try:
        for _ in range(_TEMP_TRIES):
            tmp = target.with_name(_temp_name(target, ending))
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


#: Environment variable naming the user cache folder (converted weights, optimised graphs).
CACHE_DIR_ENV = "RECOLORIZE_CACHE_DIR"


def cache_dir() -> Path:
    """The user cache folder: ``$RECOLORIZE_CACHE_DIR``, else the XDG user cache folder's ``recolorize``.
    Only what can be made again is kept there (deleting it is always safe)."""
    configured = os.environ.get(CACHE_DIR_ENV, "").strip()
    if configured:
        return Path(configured).expanduser()
    base = os.environ.get("XDG_CACHE_HOME", "").strip()
    return (Path(base).expanduser() if base else Path.home() / ".cache") / "recolorize"
