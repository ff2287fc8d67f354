"""``.cube`` files in the Adobe/Resolve layout: ``LUT_3D_SIZE``, domain 0-1, red index fastest; a 1D shaper
before the cube in Resolve's layout. Read and written by code of our own, with no extra to install: the
format is a few keyword lines and rows of three numbers, and the library that wrote it before
(colour-science) cost ~100 MB installed and over a second of import (1.1 s warm on this project's machine)
for what our writer does in a few dozen lines. ``tests/test_lut.py`` holds our reader and writer equal to
colour-science's (each reads what the other writes; the Adobe layout byte for byte) and to pillow-lut's and
ffmpeg's readers. The reader streams the rows into a float32 table sized from the header, so a hostile file
costs no more memory than the largest lattice allowed. Every unusable file is one :class:`LutError` line
naming it."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import numpy as np

from recolorize.errors import UserError, one_line
from recolorize.inference.lut.table import Lut3D, lattice

__all__ = [
    "LutError",
    "MAX_CUBE_BYTES",
    "MAX_CUBE_1D_SIZE",
    "MAX_CUBE_3D_SIZE",
    "cube_text",
    "read_cube",
    "write_cube",
]

#: Largest ``.cube`` file read: a 65^3 LUT with a 65,536-entry shaper, written with 7 decimals, is ~10 MB;
#: anything larger is refused before it is parsed (a bound on time: memory is bounded by the sizes below).
MAX_CUBE_BYTES = 128 << 20
#: Largest 3D lattice read: 65 points per axis, the most DaVinci Resolve writes (editors use 17, 33 and 65;
#: ``lut --lut-size`` stops there too). Its table is 65^3 x 3 float32 = 3.3 MB.
MAX_CUBE_3D_SIZE = 65
#: Longest 1D table (a 1D LUT, or Resolve's shaper before a cube) read: 65,536 entries, the Adobe Cube
#: specification's maximum (one entry per 16-bit code value; 0.8 MB as float32).
MAX_CUBE_1D_SIZE = 65536
#: Longest line read (bytes): a row is three numbers; a TITLE or comment has no use for more.
_MAX_LINE = 4096
#: Rows parsed into the float32 table at once.
_ROWS_AT_ONCE = 8192


class LutError(UserError, ValueError):
    """A ``.cube`` file that cannot be used (malformed, unsupported, unreadable): one line naming it."""


#: Decimals written per value: float32 holds ~7 significant digits, and 7 decimals is what Resolve and
#: colour-science write (a 1e-7 step is far below one 16-bit level, 1.5e-5).
_DECIMALS = 7
_DEFAULT_DOMAIN = np.array([[0.0] * 3, [1.0] * 3])


def write_cube(lut: Lut3D, path: str | os.PathLike[str], overwrite: bool = True) -> Path:
    """Write ``lut`` as an Adobe/Resolve ``.cube`` (``LUT_3D_SIZE``, red fastest) atomically.

    A LUT with a non-default domain is written with ``DOMAIN_MIN``/``DOMAIN_MAX``; one with 1D curves in
    Resolve's shaper layout (see :func:`cube_text`). Refuses (``UserError``) an existing file unless
    ``overwrite``, also one that appears while the LUT is written (the file is then created without
    replacing anything).
    """
    from recolorize.io_utils import atomic_write

    target = Path(path)
    if target.is_dir():
        raise UserError(f"{target} is a folder; give a file name for the LUT")
    if target.exists() and not overwrite:
        raise UserError(f"{target} already exists; choose another output or pass --overwrite")
    try:
        with atomic_write(target, suffix=".cube", replace=overwrite) as tmp:
            text = cube_text(lut)  # (looked up at call time: a test slips a rival writer in here)
            with open(tmp, "w", encoding="utf-8", newline="\n") as handle:
                handle.write(text)
    except FileExistsError:  # written meanwhile by someone else (another run to the same output)
        raise UserError(f"{target} already exists; choose another output or pass --overwrite") from None
    except OSError as exc:
        raise UserError(f"cannot write {target}: {one_line(exc.strerror or exc)}") from None
    return target


def cube_text(lut: Lut3D) -> str:
    """``lut`` as the text of a ``.cube`` file, the layout every editor reads.

    Without curves, the Adobe (Iridas) layout: ``TITLE``, ``LUT_3D_SIZE``, ``DOMAIN_MIN``/``DOMAIN_MAX``
    when the domain is not 0-1, then the rows, red index fastest. With curves, Resolve's: ``LUT_1D_SIZE``
    and ``LUT_3D_SIZE``, each with ``LUT_xD_INPUT_RANGE`` when not 0-1, the shaper's rows, a blank line,
    the cube's rows. Resolve's ranges are one pair for all three channels, so a LUT with curves whose
    domains differ per channel cannot be written (``ValueError``); neither can values that are not
    finite, which no reader (ours included) would take back. This is what colour-science wrote before
    (``Iridas Cube`` / ``Resolve Cube``, 7 decimals), value for value.
    """
    table = np.asarray(lut.table, dtype=np.float64)
    curves = None if lut.curves is None else np.asarray(lut.curves, dtype=np.float64)
    for name, values in (("table", table), ("curves", curves)):
        if values is not None and not np.all(np.isfinite(values)):
            raise ValueError(f"the LUT's {name} holds values that are not finite; a .cube cannot hold them")
    lines = [f'TITLE "{_title(lut.title)}"']
    if curves is None:
        lines.append(f"LUT_3D_SIZE {lut.size}")
        if not np.array_equal(lut.domain, _DEFAULT_DOMAIN):
            lines.append(f"DOMAIN_MIN {_row(lut.domain[0])}")
            lines.append(f"DOMAIN_MAX {_row(lut.domain[1])}")
    else:
        assert lut.curves_domain is not None  # (Lut3D sets it with the curves)
        for keyword, domain in (("LUT_1D", lut.curves_domain), ("LUT_3D", lut.domain)):
            low, high = _uniform_range(domain, keyword)
            lines.append(f"{keyword}_SIZE {len(curves) if keyword == 'LUT_1D' else lut.size}")
            if (low, high) != (0.0, 1.0):
                lines.append(f"{keyword}_INPUT_RANGE {_row([low, high])}")
    head = "\n".join(lines) + "\n"
    # rows run red fastest, blue slowest: the [r, g, b] table transposed to [b, g, r] in C order
    cube = _rows(table.transpose(2, 1, 0, 3).reshape(-1, 3))
    return head + cube if curves is None else head + _rows(curves) + "\n" + cube


def _title(title: str) -> str:
    """A title that keeps its line and its quotes: control characters and quotes become spaces, at most
    200 characters (a file's stem can hold a newline or a quote, which would end the TITLE line early)."""
    clean = "".join(c if c.isprintable() and c != '"' else " " for c in str(title))
    return " ".join(clean.split())[:200]


def _uniform_range(domain: np.ndarray, keyword: str) -> tuple[float, float]:
    """A (2, 3) domain as Resolve's one (min, max) pair for all channels; ``ValueError`` if they differ."""
    low, high = np.asarray(domain, dtype=np.float64)
    if np.ptp(low) != 0 or np.ptp(high) != 0:
        raise ValueError(
            f"{keyword}_INPUT_RANGE is one range for all channels; this LUT's differ ({domain.tolist()})"
        )
    return float(low[0]), float(high[0])


def _row(values: Any) -> str:
    return " ".join(f"{float(v):.{_DECIMALS}f}" for v in values)


def _rows(values: np.ndarray) -> str:
    """Rows of three numbers, one per line: one ``%`` over the whole table, ~3x faster than a format per
    value (a 65^3 cube in 0.17 s, colour-science took 1.1 s)."""
    flat = np.ascontiguousarray(values, dtype=np.float64).reshape(-1)
    row = f"%.{_DECIMALS}f %.{_DECIMALS}f %.{_DECIMALS}f\n"
    return (row * (len(flat) // 3)) % tuple(flat.tolist())


def _check_cube_file(path: Path) -> None:
    """Refuse before parsing what cannot be a usable ``.cube``: not a regular file, too large, binary,
    or without a size line."""
    from recolorize.imaging import check_regular_file

    check_regular_file(path, "LUT")
    try:
        size = path.stat().st_size
        if size > MAX_CUBE_BYTES:
            raise LutError(
                f"LUT {path} is {size >> 20} MB; .cube files over {MAX_CUBE_BYTES >> 20} MB are refused"
            )
        with path.open("rb") as handle:
            head = handle.read(1 << 16)
    except OSError as exc:
        raise LutError(f"cannot read LUT {path}: {one_line(exc.strerror or exc)}") from None
    if b"\x00" in head:
        raise LutError(f"LUT {path} is not a .cube file (binary data)")
    with path.open("rb") as handle:  # up to the first size line, in pieces of at most a line's length
        lines = iter(lambda: handle.readline(_MAX_LINE + 1), b"")
        sizes = (b"LUT_3D_SIZE", b"LUT_1D_SIZE")
        if not any(line.lstrip().lstrip(b"\xef\xbb\xbf").startswith(sizes) for line in lines):
            raise LutError(f"LUT {path} is not a .cube file (no LUT_3D_SIZE or LUT_1D_SIZE line)")


def read_cube(path: str | os.PathLike[str]) -> Lut3D:
    """Read a ``.cube`` file (Adobe/Iridas or Resolve: 3D, 1D, or a 1D shaper followed by a 3D LUT).

    The sizes (``LUT_3D_SIZE`` at most :data:`MAX_CUBE_3D_SIZE`, ``LUT_1D_SIZE`` at most
    :data:`MAX_CUBE_1D_SIZE`) are checked before any row is read, and the rows go into a float32 table of
    exactly the size the header promises, so memory stays bounded whatever the file holds. Every problem
    (missing, not a LUT, too large, malformed rows, a wrong number of rows, values that are not finite in
    float32, an unsupported layout) raises :class:`LutError`, a ``UserError`` with one line naming the
    file.
    """
    target = Path(path)
    _check_cube_file(target)
    try:
        parsed = _parse_cube(target)
    except OSError as exc:
        raise LutError(f"cannot read LUT {target}: {one_line(exc.strerror or exc)}") from None
    except _Refused as exc:
        raise LutError(f"LUT {target} {exc}") from None
    except ValueError as exc:
        raise LutError(f"LUT {target} is a malformed .cube file ({one_line(exc)})") from None
    try:
        return _lut_from_parts(parsed, target.stem)
    except (ValueError, TypeError) as exc:
        raise LutError(f"LUT {target} cannot be used: {one_line(exc)}") from None


class _Refused(ValueError):
    """A well-formed ``.cube`` that is refused (a lattice larger than editors use)."""


@dataclasses.dataclass
class _CubeParts:
    """What a ``.cube`` file holds: its 1D and 3D tables (float32 rows, as in the file) and domains."""

    size_1d: int | None = None
    size_3d: int | None = None
    domain: np.ndarray | None = None  # DOMAIN_MIN / DOMAIN_MAX (Adobe), (2, 3)
    range_1d: np.ndarray | None = None  # LUT_1D_INPUT_RANGE (Resolve), (2, 3)
    range_3d: np.ndarray | None = None  # LUT_3D_INPUT_RANGE (Resolve), (2, 3)
    rows: np.ndarray | None = None  # (size_1d + size_3d^3, 3) float32


def _size(tokens: list[str], most: int) -> int:
    """The value of a ``LUT_xD_SIZE`` line: a whole number from 2 to ``most``."""
    if len(tokens) != 2 or not tokens[1].isdigit() or len(tokens[1]) > 9:
        raise ValueError(f"{tokens[0]} needs one whole number, got {' '.join(tokens[1:])[:40]!r}")
    size = int(tokens[1])
    if size < 2:
        raise ValueError(f"{tokens[0]} {size} is too small: a table needs at least 2 entries")
    if size > most:
        what = "the largest lattice editors write" if "3D" in tokens[0] else "the Adobe Cube maximum"
        raise _Refused(f"has {tokens[0]} {size}; .cube tables larger than {most} ({what}) are refused")
    return size


def _numbers(tokens: list[str], count: int, what: str) -> np.ndarray:
    """``count`` finite numbers of a header line, each within float32's range (the LUT is applied in
    float32)."""
    if len(tokens) != count:
        raise ValueError(f"{what} needs {count} numbers, got {len(tokens)}")
    try:
        values = np.array([float(t) for t in tokens])
    except ValueError:
        raise ValueError(f"{what} holds {' '.join(tokens)[:40]!r}, not numbers") from None
    if not np.all(np.abs(values) <= np.finfo(np.float32).max):
        raise ValueError(f"{what} holds {' '.join(tokens)[:40]!r}, not all finite in float32")
    return values


def _parse_cube(path: Path) -> _CubeParts:
    """The header, then the rows streamed into a float32 table sized from it; a ``ValueError`` (or
    ``_Refused``) names the first problem and its line."""
    parts = _CubeParts()
    seen: set[str] = set()
    domain: dict[str, np.ndarray] = {}  # DOMAIN_MIN, DOMAIN_MAX
    pending: list[float] = []
    filled = 0

    def flush() -> None:
        nonlocal filled
        assert parts.rows is not None
        count = len(pending) // 3
        with np.errstate(over="ignore"):  # beyond float32 is infinite, refused with the other non-finite
            parts.rows[filled : filled + count] = np.asarray(pending, dtype=np.float32).reshape(count, 3)
        filled += count
        pending.clear()

    with path.open("rb") as handle:
        number = 0
        while raw := handle.readline(_MAX_LINE + 1):
            number += 1
            if len(raw) > _MAX_LINE:
                raise ValueError(f"line {number} is longer than {_MAX_LINE} bytes")
            line = raw.decode("utf-8", "replace").strip().lstrip("\ufeff")  # a byte order mark
            if not line or line.startswith("#"):
                continue
            tokens = line.split()
            keyword = tokens[0]
            if keyword[:1].isalpha() and not _is_number(keyword):  # a row may start with "nan" or "inf"
                if parts.rows is not None:
                    raise ValueError(f"line {number}: {keyword[:40]} comes after the table's rows")
                if keyword in seen and keyword != "TITLE":
                    raise ValueError(f"line {number}: {keyword[:40]} is given twice")
                seen.add(keyword)
                _header_line(parts, tokens, number, domain)
                continue
            if parts.rows is None:  # the first row: the header is complete, the table's size known
                if parts.size_1d is None and parts.size_3d is None:
                    raise ValueError("no LUT_3D_SIZE or LUT_1D_SIZE line before the rows")
                parts.rows = np.empty((_rows_needed(parts), 3), dtype=np.float32)
            if len(tokens) != 3:
                raise ValueError(f"line {number}: a row does not hold 3 numbers")
            if filled + len(pending) // 3 >= len(parts.rows):
                raise ValueError(f"more than {len(parts.rows)} colour rows, {_needs(parts)}")
            try:
                pending.extend(float(t) for t in tokens)
            except ValueError:
                raise ValueError(f"line {number}: {line[:40]!r} is not 3 numbers") from None
            if len(pending) >= 3 * _ROWS_AT_ONCE:
                flush()
    if parts.size_1d is None and parts.size_3d is None:
        raise ValueError("no LUT_3D_SIZE or LUT_1D_SIZE line")
    if parts.rows is None:
        parts.rows = np.empty((_rows_needed(parts), 3), dtype=np.float32)
    if pending:
        flush()
    if filled != len(parts.rows):
        raise ValueError(f"{filled} colour rows where {_needs(parts)}")
    if len(domain) == 1:
        raise ValueError("DOMAIN_MIN and DOMAIN_MAX go together")
    if domain:
        if parts.size_1d is not None and parts.size_3d is not None:
            raise ValueError(
                "DOMAIN_MIN/MAX with both a 1D and a 3D table; use LUT_1D_INPUT_RANGE and LUT_3D_INPUT_RANGE"
            )
        parts.domain = np.stack([domain["DOMAIN_MIN"], domain["DOMAIN_MAX"]])
    return parts


def _header_line(parts: _CubeParts, tokens: list[str], number: int, domain: dict[str, np.ndarray]) -> None:
    """One keyword line of the header (``tokens[0]`` is the keyword) into ``parts`` or ``domain``."""
    keyword = tokens[0]
    if keyword == "TITLE":
        return
    if keyword == "LUT_3D_SIZE":
        parts.size_3d = _size(tokens, MAX_CUBE_3D_SIZE)
    elif keyword == "LUT_1D_SIZE":
        parts.size_1d = _size(tokens, MAX_CUBE_1D_SIZE)
    elif keyword in ("DOMAIN_MIN", "DOMAIN_MAX"):
        domain[keyword] = _numbers(tokens[1:], 3, keyword)
    elif keyword in ("LUT_1D_INPUT_RANGE", "LUT_3D_INPUT_RANGE"):
        low, high = _numbers(tokens[1:], 2, keyword)
        value = np.array([[low] * 3, [high] * 3])
        setattr(parts, "range_1d" if "1D" in keyword else "range_3d", value)
    else:
        raise ValueError(f"line {number}: unknown keyword {keyword[:40]!r}")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _rows_needed(parts: _CubeParts) -> int:
    return (parts.size_1d or 0) + (parts.size_3d or 0) ** 3


def _needs(parts: _CubeParts) -> str:
    """What the sizes ask for, in the file's words."""
    sizes = [f"LUT_{d}D_SIZE {s}" for d, s in (("1", parts.size_1d), ("3", parts.size_3d)) if s is not None]
    verb = "needs" if len(sizes) == 1 else "need"
    return f"{' and '.join(sizes)} {verb} {_rows_needed(parts)}"


def _lut_from_parts(parts: _CubeParts, title: str) -> Lut3D:
    """The parsed tables as a :class:`Lut3D` (a 1D LUT alone becomes curves before an identity cube)."""
    assert parts.rows is not None
    if not np.all(np.isfinite(parts.rows)):
        raise ValueError("it holds values that are not finite in float32 (NaN, infinity, beyond 3.4e38)")
    size_1d = parts.size_1d or 0
    curves = curves_domain = None
    if size_1d:
        curves = parts.rows[:size_1d]
        curves_domain = parts.range_1d if parts.range_1d is not None else parts.domain
    if parts.size_3d is None:  # curves alone: an identity cube of size 2 reproduces them exactly
        return Lut3D(lattice(2), curves=curves, curves_domain=curves_domain, title=title)
    n = parts.size_3d
    # rows run red fastest, blue slowest: [b, g, r] in C order, then indexed [r, g, b]
    table = np.ascontiguousarray(parts.rows[size_1d:].reshape(n, n, n, 3).transpose(2, 1, 0, 3))
    domain = parts.range_3d if parts.range_3d is not None else parts.domain
    return Lut3D(
        table,
        domain if domain is not None else np.array([[0.0] * 3, [1.0] * 3]),
        curves=curves,
        curves_domain=curves_domain,
        title=title,
    )
