"""The run folder and what training writes into it, besides checkpoints (``checkpoint.py``).

``RUN_DIR/`` holds ``config.json`` (the resolved model and training configs of the run), ``metrics.csv``
(one row per ``log_every`` steps, :class:`MetricsLog`), ``samples/{stage}_{step:06d}.png`` (sample grids),
``{stage}.safetensors`` (a finished stage's weights) and, for debugging DDP, ``digest_rank{R}.txt``.
Only rank 0 writes, except the per-rank digests. Every file is written atomically or appended row by row,
so a killed run leaves no half file behind (a half row is dropped on resume).
"""

from __future__ import annotations

import csv
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from recolorize.config_json import save_json
from recolorize.errors import UserError, write_errors
from recolorize.io_utils import atomic_write, remove_temporaries
from recolorize.training.checkpoint import CHECKPOINT_NAME, PREVIOUS_CHECKPOINT_NAME, stage_weights_path
from recolorize.training.stages import LOSS_TERMS, STAGE_ORDER

__all__ = [
    "METRIC_FIELDS",
    "METRICS_NAME",
    "RUN_CONFIG_NAME",
    "MetricsLog",
    "MetricsWindow",
    "check_run_dir",
    "prepare_run_dir",
    "write_run_config",
    "stage_weights_path",
    "sample_grid_path",
    "write_rank_digest",
    "save_sample_grid",
]

logger = logging.getLogger(__name__)

#: Columns of ``RUN_DIR/metrics.csv``; loss terms a stage does not use stay empty.
METRIC_FIELDS: tuple[str, ...] = (
    "step",
    "stage",
    "loss",
    *LOSS_TERMS,
    "loss_identity",
    "grad_norm",
    "lr",
    "images_per_s",
    "mask_bound",
    "mask_ratio",
    "skipped",
)
SAMPLE_ROWS = 4
METRICS_NAME = "metrics.csv"
RUN_CONFIG_NAME = "config.json"


# --- paths ---------------------------------------------------------------------------------------------
def sample_grid_path(run_dir: Path, stage: str, step: int) -> Path:
    """``RUN_DIR/samples/{stage}_{step:06d}.png``: the sample grid after ``step`` finished steps."""
    return run_dir / "samples" / f"{stage}_{step:06d}.png"


def check_run_dir(run_dir: Path) -> None:
    """Refuse a run folder that names a file (or lies under one) before any work, in one line."""
    for path in (run_dir, *run_dir.parents):
        if path.exists():
            if not path.is_dir():
                what = "is a file" if path == run_dir else f"lies under {path}, which is a file"
                raise UserError(f"--run {run_dir} {what}, not a folder; name a new or existing folder")
            return


def prepare_run_dir(run_dir: Path, metrics: MetricsLog, fresh: bool) -> None:
    """Create the folder, drop temporary files of a killed checkpoint writer, and (``fresh``: no
    checkpoint to resume) start the metrics log anew. Rank 0 only."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:  # a file in the way, no permission, a read-only disk
        raise UserError(f"cannot create the run folder {run_dir}: {error.strerror or error}") from error
    for name in (CHECKPOINT_NAME, PREVIOUS_CHECKPOINT_NAME):  # temporary files of a killed writer
        remove_temporaries(run_dir / name)
    if fresh:
        metrics.reset()


def write_run_config(run_dir: Path, record: dict[str, Any]) -> None:
    """``RUN_DIR/config.json``: what this run (or its latest resume) was started with. Rank 0 only."""
    with write_errors(run_dir / RUN_CONFIG_NAME):
        save_json(record, run_dir / RUN_CONFIG_NAME)


def write_rank_digest(run_dir: Path, rank: int, stage: str, step: int, digest: str) -> None:
    """``RUN_DIR/digest_rank{R}.txt``: a hash of this rank's weights, to check that the ranks agree."""
    path = run_dir / f"digest_rank{rank}.txt"
    with write_errors(path), atomic_write(path) as tmp:
        tmp.write_text(f"{stage} {step} {digest}\n")


# --- metrics and samples -------------------------------------------------------------------------------
@dataclass
class MetricsWindow:
    """Running sums of the steps between two metrics rows (their means and throughput make the row)."""

    terms: dict[str, float] = field(default_factory=dict)
    loss: float = 0.0
    grad_norm: float = 0.0
    mask_ratio: float = 0.0
    steps: int = 0
    taken: int = 0
    skipped: int = 0
    images: int = 0
    start: float = field(default_factory=time.perf_counter)

    def add(self, loss: float, terms: dict[str, float], grad_norm: float | None, ratio: float, images: int):
        self.steps += 1
        self.images += images
        self.mask_ratio += ratio
        if grad_norm is None:
            self.skipped += 1
            return
        self.taken += 1
        self.loss += loss
        self.grad_norm += grad_norm
        for name, value in terms.items():
            self.terms[name] = self.terms.get(name, 0.0) + value


class MetricsLog:
    """``RUN_DIR/metrics.csv``: one row per ``log_every`` steps, appended (rank 0 only)."""

    def __init__(self, path: Path, enabled: bool) -> None:
        self.path = path
        self.enabled = enabled

    def read(self) -> list[dict[str, str]]:
        if not self.path.is_file():
            return []
        with self.path.open(newline="") as handle:
            reader = csv.DictReader(handle)
            if tuple(reader.fieldnames or ()) != METRIC_FIELDS:
                return []
            # a row cut short by a kill has missing fields (None): drop it
            return [row for row in reader if None not in row.values() and None not in row]

    def keep_until(self, stage: str, step: int) -> None:
        """Drop rows past (stage, step): rows a killed run logged after its last checkpoint, later stages."""
        if not self.enabled:
            return
        self._set_aside_foreign_file()
        order = STAGE_ORDER.index(stage)
        kept = [
            row
            for row in self.read()
            if row["stage"] in STAGE_ORDER
            and (
                STAGE_ORDER.index(row["stage"]) < order
                or (row["stage"] == stage and int(row["step"]) <= step)
            )
        ]
        with write_errors(self.path), atomic_write(self.path) as tmp, tmp.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=METRIC_FIELDS)
            writer.writeheader()
            writer.writerows(kept)

    def _set_aside_foreign_file(self) -> None:
        """A metrics file with other columns (an older version's) is renamed, never silently dropped."""
        if not self.path.is_file():
            return
        with self.path.open(newline="") as handle:
            header = tuple(next(csv.reader(handle), ()))
        if header != METRIC_FIELDS:
            kept = self.path.with_name(f"{self.path.stem}.columns-{len(header)}-{int(time.time())}.csv")
            os.replace(self.path, kept)
            logger.warning("metrics file %s has other columns; kept it as %s", self.path, kept.name)

    def reset(self) -> None:
        if self.enabled and self.path.exists():
            self.path.unlink()

    def append(self, row: dict[str, Any]) -> None:
        if not self.enabled:
            return
        new = not self.path.is_file()
        with write_errors(self.path), self.path.open("a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=METRIC_FIELDS)
            if new:
                writer.writeheader()
            writer.writerow({k: _format(row.get(k)) for k in METRIC_FIELDS})


def _format(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return format(value, ".9g")  # 9 significant digits: every float32 value exactly
    return str(value)


def save_sample_grid(path: Path, images: dict[str, torch.Tensor], rows: int = SAMPLE_ROWS) -> None:
    """A PNG with one row per batch item and one column per named image (e.g. source | reference | ...)."""
    # NaN (a diverged model) shows as black, without numpy's cast warning and its source line on stderr
    columns = [images[name][:rows].detach().float().nan_to_num(0.0).clamp(0, 1).cpu() for name in images]
    n, _, h, w = columns[0].shape
    gap = 2
    grid = torch.ones(3, n * h + (n - 1) * gap, len(columns) * w + (len(columns) - 1) * gap)
    for c, column in enumerate(columns):
        for r in range(n):
            grid[:, r * (h + gap) : r * (h + gap) + h, c * (w + gap) : c * (w + gap) + w] = column[r]
    array = (grid.permute(1, 2, 0).numpy() * 255.0 + 0.5).astype(np.uint8)
    with write_errors(path), atomic_write(path) as tmp:
        Image.fromarray(array).save(tmp)
