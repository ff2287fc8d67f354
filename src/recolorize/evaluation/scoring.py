"""Every method on every pair, each output scored: with a ground-truth target by the paper's metrics
(section 4.2.2: MAE on the 0-255 scale, LPIPS, PSNR, Delta E, plus CIEDE2000 and SSIM) and against the
reference by HIS; without a target only HIS (I_P vs I_R)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tqdm import tqdm

from recolorize.errors import UserError
from recolorize.evaluation.methods import Method
from recolorize.evaluation.metrics import METRICS, compute_metrics
from recolorize.evaluation.pairs import Pair, load_pair

__all__ = ["METRIC_COLUMNS", "PairResult", "metric_columns", "evaluate_pairs"]

logger = logging.getLogger(__name__)

#: Metric columns of metrics.csv, in order (those that cannot be computed are left out).
METRIC_COLUMNS: tuple[str, ...] = ("mae", "psnr", "delta_e76", "delta_e2000", "lpips", "his", "ssim")


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
    An oracle method (``Method.oracle``) reads the target: every pair must have one (:class:`UserError`).
    """
    oracles = [m.name for m in methods if m.oracle]
    missing = [p.name for p in pairs if p.target is None]
    if oracles and missing:
        raise UserError(
            f"method {oracles[0]} is an oracle (it reads the ground-truth target) but pair {missing[0]} "
            "has no target"
        )
    for index, pair in enumerate(tqdm(pairs, desc="pairs", unit="pair", disable=not progress)):
        source, reference, target = load_pair(pair, size)
        result = PairResult(index, pair, source, reference, target)
        names = metric_columns(target is not None, metrics)
        for method in methods:
            start = time.perf_counter()
            output = _check_output(method(source, reference, target), source.shape, method.name)
            seconds = time.perf_counter() - start
            values = compute_metrics(output, target=target, reference=reference, names=names)
            result.outputs[method.name] = output
            result.rows.append({"method": method.name, "pair": pair.name, **values, "seconds": seconds})
            logger.debug("%s on %s: %s", method.name, pair.name, values)
        yield result
