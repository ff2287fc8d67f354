"""The evaluation runner behind ``recolorize eval``: every method on every pair, metrics, summary, grids.

A pairs CSV has columns ``source,reference[,target]`` (paths relative to the CSV; DPST's ``input`` /
``style_reference`` and a ``pair_id`` / ``name`` column are understood too). With a ground-truth target
each output I_P is scored against it with the paper's metrics (section 4.2.2: MAE on the 0-255 scale,
LPIPS, PSNR, Delta E, plus CIEDE2000 and SSIM) and against the reference with HIS; without a target only
HIS (I_P vs I_R) is computed. Methods come from :data:`METHOD_FACTORIES`: the classical baselines of
:mod:`recolorize.evaluation.baselines` and ``ours`` (the trained model through
:class:`recolorize.inference.pipeline.Recolorizer`); ``ours=PATH`` adds more weights (e.g. the ablations
of Table 2), named by their file stem.

Output folder::

    metrics.csv   one row per (pair, method): method, pair, <metrics>, seconds (floats written exactly)
    summary.md    mean per method, best in bold, arrows for the direction, number of pairs, the command
    grids/*.png   source | reference | each method | target, for the selected pairs
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import math
import os
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
from tqdm import tqdm

from recolorize.errors import UserError
from recolorize.evaluation.baselines import BASELINES
from recolorize.evaluation.grids import comparison_grid, save_png
from recolorize.evaluation.metrics import METRICS, compute_metrics
from recolorize.io_utils import atomic_write

__all__ = [
    "METRIC_COLUMNS",
    "Pair",
    "Method",
    "MethodOptions",
    "METHOD_FACTORIES",
    "known_methods",
    "parse_methods",
    "read_pairs",
    "load_rgb",
    "load_pair",
    "PairResult",
    "evaluate_pairs",
    "metric_columns",
    "write_metrics_csv",
    "mean_by_method",
    "markdown_table",
    "ReportRun",
    "check_size",
    "run_report",
    "write_summary",
    "EvalReport",
    "run_eval",
]

logger = logging.getLogger(__name__)

#: Metric columns of metrics.csv, in order (those that cannot be computed are left out).
METRIC_COLUMNS: tuple[str, ...] = ("mae", "psnr", "delta_e76", "delta_e2000", "lpips", "his", "ssim")
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

_COLUMN_ALIASES: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "source": ("source", "input"),
        "reference": ("reference", "style_reference", "style"),
        "target": ("target", "ground_truth", "gt"),
        "name": ("pair", "pair_id", "name", "id"),
        "note": ("note", "notes"),
    }
)


# --------------------------------------------------------------------------------------------- pairs


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


# ------------------------------------------------------------------------------------------- methods

MethodFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Method:
    """A named colour-transfer method: ``fn(source, reference) -> output``, (H, W, 3) float in [0, 1]."""

    name: str
    fn: MethodFn
    description: str = ""


@dataclass(frozen=True)
class MethodOptions:
    """What model-based methods need: weights (None = the shipped model), device, strength alpha and the
    full-resolution path ("affine" or "direct"; None = the model's default)."""

    weights: Path | None = None
    device: str = "cpu"
    strength: float = 1.0
    full_resolution: str | None = None


def _baseline(name: str, options: MethodOptions) -> Method:
    return Method(name, BASELINES[name], f"classical baseline {name}")


def _ours(name: str, options: MethodOptions) -> Method:
    """The trained model: I_P = Recolorizer(weights).transfer(I_S, I_R) at the source's resolution."""
    from recolorize.inference.pipeline import Recolorizer  # lazy: loading torch networks is slow

    try:
        recolorizer = Recolorizer.from_pretrained(
            options.weights, device=options.device, full_resolution=options.full_resolution
        )
    except ValueError as error:
        raise UserError(str(error)) from error
    strength = options.strength

    def run(source: np.ndarray, reference: np.ndarray) -> np.ndarray:
        prepared = recolorizer.prepare(source, reference)
        return np.asarray(recolorizer.render_array(prepared, strength), dtype=np.float32)

    warm = np.random.default_rng(0).random((64, 64, 3), dtype=np.float32)
    run(warm, warm)  # the first call pays one-off set-up costs; keep them out of the timed pairs
    where = options.weights if options.weights is not None else "the shipped weights"
    return Method(name, run, f"{recolorizer.model.config.name} model from {where}")


#: Method name -> factory(name, options). "ours=PATH" entries use the "ours" factory with other weights.
METHOD_FACTORIES: Mapping[str, Callable[[str, MethodOptions], Method]] = MappingProxyType(
    {"ours": _ours, **{name: _baseline for name in BASELINES}}
)


def known_methods() -> list[str]:
    """Every method name ``--methods`` accepts (plus ``ours=PATH``)."""
    return list(METHOD_FACTORIES)


def parse_methods(spec: str | Sequence[str], options: MethodOptions | None = None) -> list[Method]:
    """Build the methods named in ``spec`` ("ours,reinhard,ours=ablation/w1_only.safetensors").

    ``ours`` uses ``options.weights``; ``ours=PATH`` uses PATH and is named by its file stem. Unknown
    names, duplicate names and missing weight files are :class:`UserError`.
    """
    options = options if options is not None else MethodOptions()
    items = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec)]
    items = [s for s in items if s]
    if not items:
        raise UserError(f"no method given; choose from {', '.join(known_methods())} (or ours=PATH)")
    plan: list[tuple[str, str, MethodOptions]] = []  # (factory key, name, options): check all, then build
    for item in items:
        key, _, value = item.partition("=")
        key = key.strip()
        if key not in METHOD_FACTORIES or (value and key != "ours"):
            raise UserError(
                f"unknown method {item!r}; choose from {', '.join(known_methods())} (or ours=PATH)"
            )
        if value:
            weights = Path(value.strip())
            if not weights.is_file():
                raise UserError(f"method {item!r}: weights file {weights} does not exist")
            plan.append((key, weights.stem, dataclasses.replace(options, weights=weights)))
        else:
            plan.append((key, key, options))
    names = [name for _, name, _ in plan]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise UserError(f"method {duplicates[0]!r} is listed twice in --methods")
    return [METHOD_FACTORIES[key](name, method_options) for key, name, method_options in plan]


# ---------------------------------------------------------------------------------------- evaluation


@dataclass
class PairResult:
    """Everything one pair produced: the (possibly shrunk) inputs, each method's output and its rows."""

    index: int
    pair: Pair
    source: np.ndarray
    reference: np.ndarray
    target: np.ndarray | None
    outputs: dict[str, np.ndarray] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)


def metric_columns(has_target: bool, metrics: Sequence[str] | None = None) -> list[str]:
    """Metric names computed for a pair: all (or ``metrics``) with a target, only HIS-like ones without."""
    wanted = list(METRIC_COLUMNS) if metrics is None else list(metrics)
    unknown = [m for m in wanted if m not in METRICS]
    if unknown:
        raise UserError(f"unknown metric {unknown[0]!r}; choose from {', '.join(METRICS)}")
    return [m for m in wanted if has_target or not METRICS[m].needs_target]


def _check_output(output: np.ndarray, shape: tuple[int, ...], method: str) -> np.ndarray:
    array = np.asarray(output, dtype=np.float32)
    if array.shape != shape:
        raise RuntimeError(f"method {method} returned shape {array.shape} for a source of shape {shape}")
    if not np.isfinite(array).all():
        raise RuntimeError(f"method {method} returned NaN or infinite values")
    return np.clip(array, 0.0, 1.0)


def evaluate_pairs(
    pairs: Sequence[Pair],
    methods: Sequence[Method],
    size: int | None = None,
    metrics: Sequence[str] | None = None,
    progress: bool = True,
) -> Iterator[PairResult]:
    """Run every method on every pair and score it; yields one :class:`PairResult` per pair, in order.

    size: shrink source, reference and target so their long side is at most ``size`` px (None: as is).
    metrics: metric names (default :data:`METRIC_COLUMNS`); target metrics are skipped without a target.
    Rows hold ``method``, ``pair``, one value per metric and ``seconds`` (the method's wall time).
    """
    for index, pair in enumerate(tqdm(pairs, desc="pairs", unit="pair", disable=not progress)):
        source, reference, target = load_pair(pair, size)
        result = PairResult(index, pair, source, reference, target)
        names = metric_columns(target is not None, metrics)
        for method in methods:
            start = time.perf_counter()
            output = _check_output(method.fn(source, reference), source.shape, method.name)
            seconds = time.perf_counter() - start
            values = compute_metrics(output, target=target, reference=reference, names=names)
            result.outputs[method.name] = output
            result.rows.append({"method": method.name, "pair": pair.name, **values, "seconds": seconds})
            logger.debug("%s on %s: %s", method.name, pair.name, values)
        yield result


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
    means: Mapping[str, Mapping[str, float]], columns: Sequence[str], first: str = "method"
) -> str:
    """A markdown table of ``means`` (rows = methods) with arrows and the best value per column in bold.

    Best is judged on the shown (rounded) values, so ties are all bold; columns without a direction and
    tables of one row get no bold.
    """
    arrows = {True: " ↑", False: " ↓", None: ""}
    header = f"| {first} | " + " | ".join(HEADINGS.get(c, c) + arrows[_direction(c)] for c in columns) + " |"
    lines = [header, "|" + "---|" * (len(columns) + 1)]
    best: dict[str, str] = {}
    for c in columns:
        higher = _direction(c)
        shown = [(means[m][c], _fmt(means[m][c], c)) for m in means if not math.isnan(means[m][c])]
        if higher is None or len(shown) < 2:
            continue
        value, text = (max if higher else min)(shown, key=lambda pair: pair[0])
        best[c] = text
    for method, row in means.items():
        cells = []
        for c in columns:
            text = _fmt(row[c], c)
            cells.append(f"**{text}**" if best.get(c) == text else text)
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


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
    with_target = sum(p.target is not None for p in pairs)
    lines = [
        f"# Evaluation of {len(methods)} methods on {len(pairs)} pairs",
        "",
        f"Pairs: `{csv_path}` ({len(pairs)} pairs, {with_target} with a ground-truth target). "
        + (f"Images shrunk so the long side is at most {size} px." if size else "Images at full size."),
        "",
        "Means over pairs; best value per column in **bold**; ↑ higher is better, ↓ lower is better.",
        "",
        markdown_table(means, columns),
        "Metrics: " + "; ".join(f"{HEADINGS[m]}: {METRICS[m].unit}" for m in columns if m in METRICS) + ". "
        "Target metrics compare the output I_P with the ground truth; HIS compares I_P with the reference "
        "I_R. seconds: wall time of the method alone (no loading, no metrics).",
        "",
    ]
    summary_md = write_summary(run, lines, methods, command)
    logger.info("wrote %s, %s and %d grids", run.metrics_csv, summary_md, len(grids))
    return EvalReport(run.out_dir, run.metrics_csv, summary_md, grids, means, len(pairs))
