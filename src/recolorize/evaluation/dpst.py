"""The DPST report behind ``recolorize dpst-report``: every method on the 60 DPST pairs, no ground truth.

The Deep Photo Style Transfer benchmark (Luan et al. 2017; the paper's test set, section 4) has no released
ground truth (the paper's Lightroom annotations were never published), so each output I_P is scored only
with HIS against the reference I_R, and shown in contact sheets (source | reference | each method).

Pair 23 is degenerate: its reference is a copy of its source, so any method scores a perfect-looking
result by doing nothing. Such pairs (reference pixel-identical to the source, or noted as identical in
``pairs.csv``) are reported on their own rows and left out of the means.

Output folder: ``metrics.csv`` (method, pair, his, seconds, apart), ``summary.md``,
``sheets/dpst_<first>-<last>.png``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from recolorize.errors import UserError
from recolorize.evaluation.grids import contact_sheet, save_png, tile_to_pil
from recolorize.evaluation.methods import Method
from recolorize.evaluation.pairs import Pair, read_pairs
from recolorize.evaluation.runner import check_size, run_report, write_summary
from recolorize.evaluation.scoring import PairResult
from recolorize.evaluation.tables import markdown_table, mean_by_method

__all__ = ["DPST_CSV", "read_dpst_pairs", "is_degenerate", "DpstReport", "run_dpst_report"]

logger = logging.getLogger(__name__)

#: The list of pairs inside a DPST folder (columns pair_id, input, style_reference, ..., notes).
DPST_CSV = "pairs.csv"


def read_dpst_pairs(
    dpst_dir: str | os.PathLike[str], ids: Sequence[str] | None = None, limit: int | None = None
) -> list[Pair]:
    """The DPST pairs of ``dpst_dir/pairs.csv``, optionally only the pair ids in ``ids`` (in CSV order).

    limit: keep the first ``limit`` pairs after filtering. Unknown ids are a :class:`UserError`.
    """
    folder = Path(dpst_dir)
    if not folder.is_dir():
        raise UserError(f"DPST folder {folder} does not exist or is not a folder")
    if not (folder / DPST_CSV).is_file():
        raise UserError(f"{folder} has no {DPST_CSV}: is it the DPST folder (input/, style/, pairs.csv)?")
    pairs = read_pairs(folder / DPST_CSV)
    if ids:
        wanted = [str(i).strip() for i in ids]
        known = {p.name for p in pairs}
        missing = [i for i in wanted if i not in known]
        if missing:
            raise UserError(f"DPST has no pair {missing[0]!r} (pairs are {pairs[0].name}..{pairs[-1].name})")
        pairs = [p for p in pairs if p.name in set(wanted)]
    if limit is not None:
        if limit < 1:
            raise UserError(f"--limit must be at least 1, got {limit}")
        pairs = pairs[:limit]
    return pairs


def is_degenerate(result: PairResult) -> bool:
    """True when the reference is the source (same pixels, or the CSV note says so): nothing to transfer."""
    if "identical" in result.pair.note.lower():
        return True
    return result.source.shape == result.reference.shape and np.array_equal(result.source, result.reference)


@dataclass
class DpstReport:
    """What ``run_dpst_report`` wrote: paths, the means over regular pairs and the pairs reported apart."""

    out_dir: Path
    metrics_csv: Path
    summary_md: Path
    sheets: list[Path]
    means: dict[str, dict[str, float]]
    apart: list[str]
    n_pairs: int


def _thumb(image: np.ndarray, height: int) -> Image.Image:
    pil = tile_to_pil(image)
    pil.thumbnail((2 * height, height), Image.Resampling.LANCZOS)
    return pil


class _ContactSheets:
    """Contact sheets of ``per_sheet`` pairs each: source | reference | each method with its HIS."""

    def __init__(self, folder: Path, per_sheet: int, tile_height: int) -> None:
        self.folder, self.per_sheet, self.tile_height = folder, per_sheet, tile_height
        self.rows: list[list[tuple[str, Image.Image]]] = []
        self.titles: list[str] = []
        self.names: list[str] = []
        self.paths: list[Path] = []

    def add(self, result: PairResult, remark: str = "") -> None:
        """One row for the pair (its title gets ``remark``); a full sheet is written at once."""
        tiles = [
            ("source", _thumb(result.source, self.tile_height)),
            ("reference", _thumb(result.reference, self.tile_height)),
        ]
        tiles += [
            (
                f"{row['method']}  HIS {row['his']:.3f}",
                _thumb(result.outputs[row["method"]], self.tile_height),
            )
            for row in result.rows
        ]
        self.rows.append(tiles)
        self.titles.append(f"#{result.pair.name}{remark}")
        self.names.append(result.pair.name)
        if len(self.rows) == self.per_sheet:
            self.flush()

    def flush(self) -> None:
        """Write the sheet of the pairs added since the last one (nothing when there are none)."""
        if self.rows:
            path = self.folder / f"dpst_{self.names[0]}-{self.names[-1]}.png"
            self.paths.append(save_png(contact_sheet(self.rows, self.titles, self.tile_height), path))
            self.rows.clear()
            self.titles.clear()
            self.names.clear()


def _wins(rows: Sequence[dict[str, Any]], pairs: Sequence[str]) -> dict[str, int]:
    """Per method, on how many of ``pairs`` it has the highest HIS (ties count for each)."""
    wins: dict[str, int] = {}
    for pair in pairs:
        scored = [r for r in rows if r["pair"] == pair]
        best = max(r["his"] for r in scored)
        for r in scored:
            wins[r["method"]] = wins.get(r["method"], 0) + int(r["his"] == best)
    return wins


def run_dpst_report(
    dpst_dir: str | os.PathLike[str],
    methods: Sequence[Method],
    out_dir: str | os.PathLike[str],
    size: int | None = 512,
    ids: Sequence[str] | None = None,
    limit: int | None = None,
    per_sheet: int = 12,
    tile_height: int = 128,
    command: str | None = None,
) -> DpstReport:
    """Run ``methods`` on the DPST pairs; write metrics.csv, summary.md and contact sheets of the outputs.

    size: shrink images so the long side is at most ``size`` px (None: full size). per_sheet: pairs per
    contact sheet. tile_height: cell height of the sheets in pixels.
    """
    if per_sheet < 1 or tile_height < 16:
        raise UserError("--per-sheet must be >= 1 and --tile-height >= 16")
    check_size(size)
    pairs = read_dpst_pairs(dpst_dir, ids, limit)
    out = Path(out_dir)
    apart: list[str] = []
    sheets = _ContactSheets(out / "sheets", per_sheet, tile_height)

    def set_apart(result: PairResult) -> dict[str, Any]:
        degenerate = is_degenerate(result)
        if degenerate:
            apart.append(result.pair.name)
            logger.info("pair %s: reference identical to source, reported apart", result.pair.name)
        return {"apart": int(degenerate)}

    def draw(result: PairResult) -> None:
        sheets.add(result, " (ref = src)" if result.pair.name in apart else "")

    run = run_report(pairs, methods, out, size, ["his"], columns=set_apart, after_pair=draw)
    sheets.flush()
    rows = run.rows
    regular = [p.name for p in pairs if p.name not in apart]
    means = mean_by_method([r for r in rows if not r["apart"]], ["his", "seconds"]) if regular else {}
    lines = [
        f"# DPST report: {len(methods)} methods on {len(pairs)} pairs",
        "",
        "DPST has no released ground truth, so outputs are scored with HIS (joint RGB histogram intersection "
        "of the output I_P and the reference I_R, in [0, 1], higher = closer colour distribution) and shown "
        "in the contact sheets (`sheets/`). "
        + (f"Images shrunk so the long side is at most {size} px." if size else "Images at full size."),
        "",
    ]
    if regular:
        wins = _wins([r for r in rows if not r["apart"]], regular)
        for method in means:
            means[method]["wins"] = float(wins.get(method, 0))
        lines += [
            f"## Means over {len(regular)} pairs"
            + (f" (pair{'s' if len(apart) > 1 else ''} {', '.join(apart)} excluded)" if apart else ""),
            "",
            "Best in **bold**. wins: pairs on which the method has the highest HIS.",
            "",
            markdown_table(means, ["his", "seconds", "wins"]),
        ]
    for name in apart:
        per_method = {
            r["method"]: {"his": float(r["his"]), "seconds": float(r["seconds"])}
            for r in rows
            if r["pair"] == name
        }
        lines += [
            f"## Pair {name}, reported apart (reference identical to source)",
            "",
            "Excluded from the means: the identity already matches the reference, so HIS says nothing here.",
            "",
            markdown_table(per_method, ["his", "seconds"]),
        ]
    summary_md = write_summary(run, lines, methods, command)
    logger.info("wrote %s, %s and %d contact sheets", run.metrics_csv, summary_md, len(sheets.paths))
    return DpstReport(out, run.metrics_csv, summary_md, sheets.paths, means, apart, len(pairs))
