"""The evaluation pairs: a pairs CSV (``source,reference[,target]``, paths relative to the CSV; DPST's
``input`` / ``style_reference`` and a ``pair_id`` / ``name`` column are understood too) read into
:class:`Pair` objects, and a pair's images loaded as float arrays."""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import numpy as np

from recolorize.errors import UserError

__all__ = ["Pair", "read_pairs", "load_rgb", "load_pair"]

_COLUMN_ALIASES: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "source": ("source", "input"),
        "reference": ("reference", "style_reference", "style"),
        "target": ("target", "ground_truth", "gt"),
        "name": ("pair", "pair_id", "name", "id"),
        "note": ("note", "notes"),
    }
)


@dataclass(frozen=True)
class Pair:
    """One evaluation case: source I_S, reference I_R and, when known, the ground-truth target."""

    name: str
    source: Path
    reference: Path
    target: Path | None = None
    note: str = ""


def _column(fieldnames: Sequence[str], role: str) -> str | None:
    lowered = {name.strip().lower(): name for name in fieldnames}
    for alias in _COLUMN_ALIASES[role]:
        if alias in lowered:
            return lowered[alias]
    return None


def read_pairs(csv_path: str | os.PathLike[str], limit: int | None = None) -> list[Pair]:
    """Read a pairs CSV; paths are relative to the CSV's folder. Every listed image must exist.

    limit: keep only the first ``limit`` rows. A missing file, a missing column or an empty CSV is a
    :class:`UserError` naming it.
    """
    path = Path(csv_path)
    if not path.is_file():
        raise UserError(f"pairs CSV {path} does not exist")
    if limit is not None and limit < 1:
        raise UserError(f"--limit must be at least 1, got {limit}")
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        fields = reader.fieldnames or []
        columns = {role: _column(fields, role) for role in _COLUMN_ALIASES}
        for role in ("source", "reference"):
            if columns[role] is None:
                raise UserError(
                    f"pairs CSV {path} has no {role} column (columns: {', '.join(fields) or 'none'}; "
                    f"expected one of {', '.join(_COLUMN_ALIASES[role])})"
                )
        rows = list(reader)
    if limit is not None:
        rows = rows[:limit]
    if not rows:
        raise UserError(f"pairs CSV {path} lists no pairs")

    pairs: list[Pair] = []
    seen: set[str] = set()
    for number, row in enumerate(rows, start=2):  # line 1 is the header

        def image(role: str, row: dict[str, str] = row, number: int = number) -> Path | None:
            column = columns[role]
            value = (row.get(column) or "").strip() if column else ""
            if not value:
                if role == "target":
                    return None
                raise UserError(f"pairs CSV {path}, line {number}: empty {role} cell")
            resolved = Path(value) if Path(value).is_absolute() else path.parent / value
            if not resolved.is_file():
                raise UserError(f"pairs CSV {path}, line {number}: {role} image {resolved} does not exist")
            return resolved

        source, reference, target = image("source"), image("reference"), image("target")
        assert source is not None and reference is not None
        name = (row.get(columns["name"]) or "").strip() if columns["name"] else ""
        name = name or source.stem
        if name in seen:
            name = f"{name}_{number - 1}"
        seen.add(name)
        note = (row.get(columns["note"]) or "").strip() if columns["note"] else ""
        pairs.append(Pair(name, source, reference, target, note))
    return pairs


def load_rgb(path: Path, size: int | None = None) -> np.ndarray:
    """An image as float32 (H, W, 3) in [0, 1] (``imaging.load_image``), shrunk so its long side <= size.

    Shrinking is antialiased bilinear (``imaging.fit_long_side``); images are never enlarged.
    """
    from recolorize.imaging import fit_long_side, load_image

    return fit_long_side(load_image(path).rgb, size)


def load_pair(pair: Pair, size: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(source, reference, target or None), each shrunk to ``size``; the target must match the source."""
    source = load_rgb(pair.source, size)
    reference = load_rgb(pair.reference, size)
    target = None
    if pair.target is not None:
        target = load_rgb(pair.target, size)
        if target.shape != source.shape:
            raise UserError(
                f"pair {pair.name}: target {pair.target} is {target.shape[1]}x{target.shape[0]} but source "
                f"{pair.source} is {source.shape[1]}x{source.shape[0]}; they must be pixel-aligned"
            )
    return source, reference, target
