"""``.cube`` files, read and written by colour-science (``pip install 'recolorize[lut]'``) in the
Adobe/Resolve layout: ``LUT_3D_SIZE``, domain 0-1, red index fastest; a 1D shaper before the cube in
Resolve's layout. Every unusable file is one :class:`LutError` line naming it."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from recolorize.errors import UserError, one_line
from recolorize.inference.lut.table import Lut3D, lattice

__all__ = ["LutError", "MAX_CUBE_BYTES", "colour_io", "read_cube", "write_cube"]

#: Largest ``.cube`` file read: a 129^3 LUT written with 7 decimals is ~70 MB; anything larger is refused
#: before it is parsed (the parser holds every line in memory).
MAX_CUBE_BYTES = 128 << 20


class LutError(UserError, ValueError):
    """A ``.cube`` file that cannot be used (malformed, unsupported, unreadable): one line naming it."""


def colour_io() -> Any:
    """colour-science's LUT I/O, or one line saying how to install it."""
    try:
        from colour.io import luts
    except ImportError:
        raise UserError(
            "reading and writing .cube files needs colour-science: pip install 'recolorize[lut]'"
        ) from None
    return luts


def write_cube(lut: Lut3D, path: str | os.PathLike[str], overwrite: bool = True) -> Path:
    """Write ``lut`` as an Adobe/Resolve ``.cube`` (``LUT_3D_SIZE``, red fastest) atomically.

    A LUT with a non-default domain is written with ``DOMAIN_MIN``/``DOMAIN_MAX``; one with 1D curves in
    Resolve's shaper layout. Refuses (``UserError``) an existing file unless ``overwrite``, also one that
    appears while the LUT is written (the file is then created without replacing anything).
    """
    from recolorize.io_utils import atomic_write

    target = Path(path)
    if target.is_dir():
        raise UserError(f"{target} is a folder; give a file name for the LUT")
    if target.exists() and not overwrite:
        raise UserError(f"{target} already exists; choose another output or pass --overwrite")
    luts = colour_io()
    cube = luts.LUT3D(lut.table.astype(np.float64), lut.title, lut.domain)
    item: Any = cube
    method = "Iridas Cube"
    if lut.curves is not None:
        shaper = luts.LUT3x1D(lut.curves.astype(np.float64), f"{lut.title} shaper", lut.curves_domain)
        item, method = luts.LUTSequence(shaper, cube), "Resolve Cube"
    try:
        with atomic_write(target, suffix=".cube", replace=overwrite) as tmp:
            luts.write_LUT(item, tmp, decimals=7, method=method)
    except FileExistsError:  # written meanwhile by someone else (another run to the same output)
        raise UserError(f"{target} already exists; choose another output or pass --overwrite") from None
    except OSError as exc:
        raise UserError(f"cannot write {target}: {one_line(exc.strerror or exc)}") from None
    return target


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
    with path.open("rb") as handle:
        if not any(line.lstrip().startswith((b"LUT_3D_SIZE", b"LUT_1D_SIZE")) for line in handle):
            raise LutError(f"LUT {path} is not a .cube file (no LUT_3D_SIZE or LUT_1D_SIZE line)")


def read_cube(path: str | os.PathLike[str]) -> Lut3D:
    """Read a ``.cube`` file (Adobe/Iridas or Resolve: 3D, 1D, or a 1D shaper followed by a 3D LUT).

    Every problem (missing, not a LUT, malformed rows, a wrong number of entries, non-finite values, an
    unsupported layout) raises :class:`LutError`, a ``UserError`` with one line naming the file.
    """
    target = Path(path)
    _check_cube_file(target)
    luts = colour_io()
    try:
        item = luts.read_LUT(str(target), method="Iridas Cube")
    except Exception as exc:  # noqa: BLE001 - the reader's errors on hostile files vary; one line each
        raise LutError(f"LUT {target} is a malformed .cube file ({_reason(exc)})") from None
    try:
        return _from_colour(luts, item, target.stem)
    except (ValueError, TypeError) as exc:
        raise LutError(f"LUT {target} cannot be used: {one_line(exc)}") from None


def _reason(exc: BaseException) -> str:
    """The reader's error in the words of the file: a wrong row count or a row that is not 3 numbers."""
    cause = exc.__cause__ or exc.__context__ or exc
    text = str(cause)
    rows = re.search(r"cannot reshape array of size (\d+) into shape \((\d+), ?\d+, ?\d+, ?3\)", text)
    if rows:
        found, size = int(rows.group(1)), int(rows.group(2))
        return f"{found / 3:g} colour rows where LUT_3D_SIZE {size} needs {size**3}"
    if "inhomogeneous" in text:
        return "a row does not hold 3 numbers"
    return one_line(text or type(cause).__name__)


def _from_colour(luts: Any, item: Any, title: str) -> Lut3D:
    """colour-science's LUT objects -> :class:`Lut3D` (a 1D LUT becomes curves before an identity cube)."""
    parts = list(item) if isinstance(item, luts.LUTSequence) else [item]
    curves = curves_domain = None
    cube = None
    for part in parts:
        if isinstance(part, luts.LUT1D):
            part = part.convert(luts.LUT3x1D)
        if isinstance(part, luts.LUT3x1D) and cube is None and curves is None:
            curves, curves_domain = np.asarray(part.table), np.asarray(part.domain)
        elif isinstance(part, luts.LUT3D) and cube is None:
            cube = part
        else:
            raise ValueError(f"unsupported LUT layout ({' then '.join(type(p).__name__ for p in parts)})")
    values = [v for v in (curves, None if cube is None else cube.table) if v is not None]
    if not all(np.all(np.isfinite(np.asarray(v, dtype=np.float64))) for v in values):
        raise ValueError("it holds non-finite values")
    if cube is None:  # curves alone: an identity cube of size 2 reproduces them exactly
        return Lut3D(lattice(2), curves=curves, curves_domain=curves_domain, title=title)
    return Lut3D(
        np.asarray(cube.table),
        np.asarray(cube.domain),
        curves=curves,
        curves_domain=curves_domain,
        title=title,
    )
