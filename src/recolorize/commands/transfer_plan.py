"""What ``recolorize transfer`` will re-colour: the jobs of one pair, a folder or a pairs CSV.

Every path is checked here, before anything slow runs: regular files only (a FIFO would block the open
forever), a suffix we can write, outputs kept inside ``-o``. One pair is a plan of one job (``batch`` False):
any error stops the command. In a batch (a folder or ``--pairs``) a bad CSV row is refused here, named in
``Plan.rejected``, and the others run.
"""

from __future__ import annotations

import argparse
import csv
from dataclasses import dataclass, field
from pathlib import Path

from recolorize.commands.transfer_output import check_output, check_output_folder
from recolorize.errors import UserError, one_line
from recolorize.image_formats import PHOTO_SUFFIXES
from recolorize.io_utils import is_hidden

__all__ = ["Job", "Plan", "plan_jobs", "images_in", "reference_paths", "describe_reference"]

IMAGE_SUFFIXES = frozenset(PHOTO_SUFFIXES)  # inputs picked up from a folder


@dataclass(frozen=True)
class Job:
    """One re-colouring: source photo, its reference photo(s), output path.

    reference: one path, or a tuple of several (each region of the source then takes its colour from its
    best match in any of them: ``Recolorizer.prepare`` with a list).
    """

    source: Path
    reference: Path | tuple[Path, ...]
    output: Path


@dataclass
class Plan:
    """The jobs to run, whether this is a batch, and the batch entries refused before any work."""

    jobs: list[Job]
    batch: bool
    rejected: list[str] = field(default_factory=list)


def reference_paths(reference: Path | tuple[Path, ...]) -> tuple[Path, ...]:
    """The reference path(s) of a job as a tuple."""
    return reference if isinstance(reference, tuple) else (reference,)


def describe_reference(reference: Path | tuple[Path, ...]) -> str:
    """Paths joined with " + " for messages."""
    return " + ".join(str(path) for path in reference_paths(reference))


def images_in(folder: Path) -> list[Path]:
    """Photos by suffix; a FIFO or device named like a photo is kept, so that it is named and skipped.
    Hidden files are not photos: a dot-file, or a temporary file a killed writer left (``is_hidden``)."""
    return sorted(
        p
        for p in folder.iterdir()
        if p.suffix.lower() in IMAGE_SUFFIXES and not is_hidden(p.name) and not p.is_dir()
    )


def plan_jobs(args: argparse.Namespace) -> Plan:
    """Turn the arguments into jobs, checking every path; a batch continues past its bad entries."""
    from recolorize.imaging import check_regular_file, output_format

    if isinstance(args.reference, list):  # argparse: SOURCE REFERENCE [REFERENCE ...]
        args.reference = (
            None
            if not args.reference
            else args.reference[0]
            if len(args.reference) == 1
            else tuple(args.reference)
        )
    if args.pairs is not None:
        if args.source is not None or args.reference is not None:
            raise UserError("give either SOURCE REFERENCE or --pairs, not both")
        check_output_folder(args.output)
        return _plan_pairs(args)
    if args.source is None or args.reference is None:
        raise UserError("give SOURCE and REFERENCE (or --pairs CSV)")
    for path in reference_paths(args.reference):
        check_regular_file(path)
    if args.source.is_dir():
        check_output_folder(args.output)
        sources = images_in(args.source)
        if not sources:
            raise UserError(f"no images in folder {args.source}")
        return Plan([Job(s, args.reference, args.output / s.name) for s in sources], True)
    check_regular_file(args.source)
    output = args.output / args.source.name if args.output.is_dir() else args.output
    output_format(output)
    job = Job(args.source, args.reference, output)
    check_output(job, source_path=job.source, overwrite=args.overwrite, batch=False)
    return Plan([job], False)


def _inside(root: Path, relative: str) -> Path | None:
    """``root / relative`` when it stays inside ``root`` (after ``..`` and symlinks), else None."""
    rel = Path(relative)
    if not relative.strip() or rel.is_absolute() or rel.drive or rel.root:
        return None
    target = root / rel
    try:
        resolved, base = target.resolve(), root.resolve()
    except (OSError, ValueError, RuntimeError):  # NUL byte, symlink loop
        return None
    if resolved == base or not resolved.is_relative_to(base):
        return None
    return target


def _read_pairs(path: Path) -> list[tuple[int, list[str]]]:
    """The rows (line number, cells) of a pairs CSV after its header, read as UTF-8 (a BOM is fine)."""
    from recolorize.imaging import check_regular_file

    check_regular_file(path, "pairs file")
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            reader = csv.reader(handle)
            header = [cell.strip().lower() for cell in next(reader, [])]
            rows = [(reader.line_num, row) for row in reader if any(cell.strip() for cell in row)]
    except UnicodeDecodeError:
        raise UserError(f"pairs file {path} is not UTF-8 text; save it as CSV UTF-8") from None
    except csv.Error as exc:
        raise UserError(f"pairs file {path} is not a readable CSV ({one_line(exc)})") from None
    except OSError as exc:
        raise UserError(f"cannot read pairs file {path}: {one_line(exc.strerror or exc)}") from None
    if not {"source", "reference"} <= set(header):
        raise UserError(f"{path} needs a header with columns source,reference[,output]")
    columns = {name: header.index(name) for name in ("source", "reference", "output") if name in header}
    return [(line, [row[i].strip() if i < len(row) else "" for i in columns.values()]) for line, row in rows]


def _pair_job(cells: list[str], base: Path, output_root: Path, where: str) -> Job:
    """The job of one CSV row (source, reference[, output] cells), every path checked."""
    from recolorize.imaging import check_regular_file, output_format

    source_cell, reference_cell = cells[0], cells[1]
    output_cell = cells[2] if len(cells) > 2 else ""
    if not source_cell or not reference_cell:
        raise UserError(f"{where}: no {'source' if not source_cell else 'reference'}; row skipped")
    names = [cell.strip() for cell in reference_cell.split(";") if cell.strip()]
    if not names:
        raise UserError(f"{where}: no reference; row skipped")
    paths = tuple(base / name for name in names)
    source, reference = base / source_cell, (paths if len(paths) > 1 else paths[0])
    output = _inside(output_root, output_cell or source.name)
    if output is None:
        raise UserError(
            f"{where}: output {output_cell or source.name!r} is not inside {output_root}; row skipped"
        )
    check_regular_file(source)
    for path in reference_paths(reference):
        check_regular_file(path)
    output_format(output)
    return Job(source, reference, output)


def _plan_pairs(args: argparse.Namespace) -> Plan:
    """The jobs of a pairs CSV: a bad row is named (with its line) in ``rejected``, the others planned."""
    plan = Plan([], True)
    for line, cells in _read_pairs(args.pairs):
        where = f"{args.pairs} line {line}"
        try:
            plan.jobs.append(_pair_job(cells, args.pairs.parent, args.output, where))
        except UserError as error:
            message = str(error)
            plan.rejected.append(message if message.startswith(where) else f"{where}: {message}; row skipped")
    if not plan.jobs and not plan.rejected:
        raise UserError(f"{args.pairs} has no pairs after its header")
    return plan
