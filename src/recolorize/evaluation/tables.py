"""The numbers of a report as files: metrics.csv (floats written exactly), means per method, and the
markdown table of summary.md (arrows for the direction, best value per column in bold)."""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from recolorize.evaluation.metrics import METRICS
from recolorize.evaluation.scoring import METRIC_COLUMNS
from recolorize.io_utils import atomic_write

__all__ = ["HEADINGS", "DECIMALS", "write_metrics_csv", "mean_by_method", "markdown_table"]

#: Column headings of summary.md.
HEADINGS: Mapping[str, str] = MappingProxyType(
    {
        "mae": "MAE",
        "psnr": "PSNR",
        "delta_e76": "ΔE76",
        "delta_e2000": "ΔE2000",
        "lpips": "LPIPS",
        "his": "HIS",
        "ssim": "SSIM",
        "seconds": "seconds",
    }
)
#: Decimals shown in summary.md per column.
DECIMALS: Mapping[str, int] = MappingProxyType(
    {
        "mae": 2,
        "psnr": 2,
        "delta_e76": 2,
        "delta_e2000": 2,
        "lpips": 4,
        "his": 4,
        "ssim": 4,
        "seconds": 3,
        "wins": 0,
    }
)


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return repr(value)  # shortest exact round trip: the CSV holds the very numbers computed
    return str(value)


def write_metrics_csv(rows: Sequence[Mapping[str, Any]], path: str | os.PathLike[str]) -> Path:
    """Write rows as CSV (columns: method, pair, the metrics present in canonical order, the rest)."""
    present = {key for row in rows for key in row}
    columns = ["method", "pair", *(m for m in METRIC_COLUMNS if m in present)]
    columns += sorted(present - set(columns) - {"seconds"}) + (["seconds"] if "seconds" in present else [])
    path = Path(path)
    with atomic_write(path) as tmp:
        with tmp.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(columns)
            for row in rows:
                writer.writerow([_format_value(row[c]) if c in row else "" for c in columns])
    return path


def mean_by_method(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> dict[str, dict[str, float]]:
    """{method: {column: mean over its rows}} in first-seen method order; missing values are skipped."""
    values: dict[str, dict[str, list[float]]] = {}
    for row in rows:
        per_method = values.setdefault(str(row["method"]), {c: [] for c in columns})
        for c in columns:
            if c in row and row[c] is not None:
                per_method[c].append(float(row[c]))
    return {
        method: {c: float(np.mean(v)) if v else math.nan for c, v in cols.items()}
        for method, cols in values.items()
    }


def _direction(column: str) -> bool | None:
    """True if higher is better, False if lower is better, None if neither."""
    if column in METRICS:
        return METRICS[column].higher_is_better
    return {"seconds": False, "wins": True}.get(column)


def _fmt(value: float, column: str) -> str:
    if math.isnan(value):
        return "–"
    if math.isinf(value):
        return "∞" if value > 0 else "-∞"
    return f"{value:.{DECIMALS.get(column, 4)}f}"


def markdown_table(
    means: Mapping[str, Mapping[str, float]],
    columns: Sequence[str],
    first: str = "method",
    unranked: Collection[str] = (),
) -> str:
    """A markdown table of ``means`` (rows = methods) with arrows and the best value per column in bold.

    Best is judged on the shown (rounded) values, so ties are all bold; columns without a direction and
    tables of one row get no bold. Rows named in ``unranked`` (oracles: bounds, not methods) are shown but
    neither compete for nor get the bold.
    """
    arrows = {True: " ↑", False: " ↓", None: ""}
    header = f"| {first} | " + " | ".join(HEADINGS.get(c, c) + arrows[_direction(c)] for c in columns) + " |"
    lines = [header, "|" + "---|" * (len(columns) + 1)]
    best: dict[str, str] = {}
    for c in columns:
        higher = _direction(c)
        shown = [
            (means[m][c], _fmt(means[m][c], c))
            for m in means
            if m not in unranked and not math.isnan(means[m][c])
        ]
        if higher is None or len(shown) < 2:
            continue
        value, text = (max if higher else min)(shown, key=lambda pair: pair[0])
        best[c] = text
    for method, row in means.items():
        cells = []
        for c in columns:
            text = _fmt(row[c], c)
            cells.append(f"**{text}**" if best.get(c) == text and method not in unranked else text)
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
