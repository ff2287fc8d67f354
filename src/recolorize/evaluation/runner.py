"""The evaluation runner behind ``recolorize eval``: every method on every pair, metrics, summary, grids.

A pairs CSV has columns ``source,reference[,target]`` (paths relative to the CSV; DPST's ``input`` /
``style_reference`` and a ``pair_id`` / ``name`` column are understood too). With a ground-truth target
each output I_P is scored against it with the paper's metrics (section 4.2.2: MAE on the 0-255 scale,
LPIPS, PSNR, Delta E, plus CIEDE2000 and SSIM) and against the reference with HIS; without a target only
HIS (I_P vs I_R) is computed. Methods come from :data:`recolorize.evaluation.methods.METHOD_FACTORIES`:
the classical baselines of :mod:`recolorize.evaluation.baselines` and ``ours`` (the trained model through
:class:`recolorize.inference.pipeline.Recolorizer`); ``ours=PATH`` adds more weights (e.g. the ablations
of Table 2), named by their file stem.

Output folder::

    metrics.csv   one row per (pair, method): method, pair, <metrics>, seconds (floats written exactly)
    summary.md    mean per method, best in bold, arrows for the direction, number of pairs, the command
    grids/*.png   source | reference | each method | target, for the selected pairs

One job per module: ``pairs`` (the pairs CSV, loading a pair), ``methods`` (baselines and ``ours``),
``scoring`` (every method on every pair, scored), ``tables`` (metrics.csv, means, the markdown table) and
this one: the loop every report shares (:func:`run_report`, :func:`write_summary`) and ``recolorize eval``
(:func:`run_eval`: comparison grids and summary.md).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from recolorize.errors import UserError
from recolorize.evaluation.grids import comparison_grid, save_png
from recolorize.evaluation.methods import Method
from recolorize.evaluation.metrics import METRICS
from recolorize.evaluation.pairs import Pair, read_pairs
from recolorize.evaluation.scoring import METRIC_COLUMNS, PairResult, evaluate_pairs
from recolorize.evaluation.tables import HEADINGS, markdown_table, mean_by_method, write_metrics_csv
from recolorize.io_utils import atomic_write

__all__ = [
    "comparison_tiles",
    "ReportRun",
    "check_size",
    "run_report",
    "write_summary",
    "EvalReport",
    "run_eval",
]

logger = logging.getLogger(__name__)


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "pair"


def _tile_label(method: str, row: Mapping[str, Any]) -> str:
    if "mae" in row:
        return f"{method}  MAE {row['mae']:.1f}"
    if "his" in row:
        return f"{method}  HIS {row['his']:.3f}"
    return method


def comparison_tiles(result: PairResult) -> list[tuple[str, np.ndarray]]:
    """source | reference | each method (labelled with its MAE, else HIS) | target."""
    tiles = [("source", result.source), ("reference", result.reference)]
    for row in result.rows:
        tiles.append((_tile_label(row["method"], row), result.outputs[row["method"]]))
    if result.target is not None:
        tiles.append(("target", result.target))
    return tiles


# ------------------------------------------------------------------------------------------- reports


@dataclass
class ReportRun:
    """What :func:`run_report` wrote: the output folder, its metrics.csv and every row in it."""

    out_dir: Path
    metrics_csv: Path
    rows: list[dict[str, Any]]


def check_size(size: int | None) -> None:
    """Every report's ``--size``: None (full size) or a long side of at least 32 px."""
    if size is not None and size < 32:
        raise UserError(f"--size must be at least 32 pixels, got {size}")


def run_report(
    pairs: Sequence[Pair],
    methods: Sequence[Method],
    out_dir: str | os.PathLike[str],
    size: int | None = None,
    metrics: Sequence[str] | None = None,
    columns: Callable[[PairResult], Mapping[str, Any]] | None = None,
    after_pair: Callable[[PairResult], None] | None = None,
) -> ReportRun:
    """The loop every report shares (``eval``, ``dpst-report``): run and score ``methods`` on each pair
    and rewrite ``out_dir/metrics.csv`` after every pair, so an interrupted run keeps what it computed.

    columns(result): extra columns for the pair's rows (e.g. DPST's ``apart``), added before they are
    written. after_pair(result): the report's own work once the pair's rows are written (its pictures).
    The report then writes its summary with :func:`write_summary`.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    run = ReportRun(out, out / "metrics.csv", [])
    for result in evaluate_pairs(pairs, methods, size, metrics):
        extra = columns(result) if columns is not None else {}
        for row in result.rows:
            row.update(extra)
        run.rows.extend(result.rows)
        write_metrics_csv(run.rows, run.metrics_csv)
        if after_pair is not None:
            after_pair(result)
    return run


def write_summary(
    run: ReportRun, lines: Sequence[str], methods: Sequence[Method], command: str | None = None
) -> Path:
    """``summary.md``: the report's own ``lines``, then the methods and the command that made it."""
    lines = [*lines, "Methods: " + "; ".join(f"{m.name} ({m.description})" for m in methods) + ".", ""]
    if command:
        lines += ["Command:", "", f"    {command}", ""]
    path = run.out_dir / "summary.md"
    with atomic_write(path) as tmp:
        tmp.write_text("\n".join(lines), encoding="utf-8")
    return path


@dataclass
class EvalReport:
    """What ``run_eval`` wrote and the means it found."""

    out_dir: Path
    metrics_csv: Path
    summary_md: Path
    grids: list[Path]
    means: dict[str, dict[str, float]]
    n_pairs: int


def run_eval(
    pairs_csv: str | os.PathLike[str],
    methods: Sequence[Method],
    out_dir: str | os.PathLike[str],
    size: int | None = None,
    limit: int | None = None,
    grid_every: int = 1,
    max_grids: int = 16,
    grid_height: int = 256,
    metrics: Sequence[str] | None = None,
    command: str | None = None,
) -> EvalReport:
    """Evaluate ``methods`` on the pairs of ``pairs_csv`` and write metrics.csv, summary.md and grids.

    grid_every: draw a comparison grid for pairs 0, K, 2K, ... (0: none), at most ``max_grids`` of them.
    metrics.csv is rewritten after every pair, so an interrupted run keeps what it computed.
    """
    check_size(size)
    if grid_every < 0 or max_grids < 0:
        raise UserError("--grid-every and --max-grids must be >= 0")
    csv_path = Path(pairs_csv)
    pairs = read_pairs(csv_path, limit)
    out = Path(out_dir)
    grids: list[Path] = []

    def draw(result: PairResult) -> None:
        if grid_every and result.index % grid_every == 0 and len(grids) < max_grids:
            grid = comparison_grid(comparison_tiles(result), grid_height)
            grids.append(
                save_png(grid, out / "grids" / f"{result.index:04d}_{_safe_name(result.pair.name)}.png")
            )

    run = run_report(pairs, methods, out, size, metrics, after_pair=draw)
    present = {key for row in run.rows for key in row}
    columns = [m for m in METRIC_COLUMNS if m in present] + ["seconds"]
    means = mean_by_method(run.rows, columns)
    labels = {m.name: m.label for m in methods}  # "oracle-cubic (oracle)": it read the target
    shown = {labels.get(name, name): row for name, row in means.items()}
    oracles = [m.label for m in methods if m.oracle]
    with_target = sum(p.target is not None for p in pairs)
    lines = [
        f"# Evaluation of {len(methods)} methods on {len(pairs)} pairs",
        "",
        f"Pairs: `{csv_path}` ({len(pairs)} pairs, {with_target} with a ground-truth target). "
        + (f"Images shrunk so the long side is at most {size} px." if size else "Images at full size."),
        "",
        "Means over pairs; best value per column in **bold**; ↑ higher is better, ↓ lower is better.",
        "",
        markdown_table(shown, columns, unranked=oracles),
        *(
            [
                "Rows marked (oracle) read the ground-truth target (the best global colour map fitted to "
                "it): a bound no global method can beat, not a method; they get no bold.",
                "",
            ]
            if oracles
            else []
        ),
        "Metrics: " + "; ".join(f"{HEADINGS[m]}: {METRICS[m].unit}" for m in columns if m in METRICS) + ". "
        "Target metrics compare the output I_P with the ground truth; HIS compares I_P with the reference "
        "I_R. seconds: wall time of the method alone (no loading, no metrics).",
        "",
    ]
    summary_md = write_summary(run, lines, methods, command)
    logger.info("wrote %s, %s and %d grids", run.metrics_csv, summary_md, len(grids))
    return EvalReport(run.out_dir, run.metrics_csv, summary_md, grids, means, len(pairs))
