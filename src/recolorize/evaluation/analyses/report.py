"""The files of an analysis: strict JSON numbers, markdown and matplotlib figures (no pyplot)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from recolorize.io_utils import atomic_write

__all__ = ["write_numbers", "new_figure", "save_figure", "json_safe"]


def write_numbers(out: Path, name: str, numbers: Mapping[str, Any], markdown: str) -> tuple[Path, Path]:
    """``out/<name>.json`` (strict JSON) and ``out/<name>.md``, written atomically."""
    json_path, md_path = out / f"{name}.json", out / f"{name}.md"
    with atomic_write(json_path) as tmp:
        tmp.write_text(json.dumps(json_safe(numbers), indent=2, allow_nan=False) + "\n", encoding="utf-8")
    with atomic_write(md_path) as tmp:
        tmp.write_text(markdown, encoding="utf-8")
    return json_path, md_path


def new_figure(rows: int, cols: int, size: tuple[float, float]) -> tuple[Figure, np.ndarray]:
    """A matplotlib Figure on the Agg canvas (no pyplot, no global backend) and its (rows, cols) axes."""
    fig = Figure(figsize=size, layout="constrained")
    return fig, np.asarray(fig.subplots(rows, cols, squeeze=False))


def save_figure(fig: Figure, path: Path) -> Path:
    """Write ``fig`` as a PNG, atomically."""
    with atomic_write(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    return path


def json_safe(value: Any) -> Any:
    """NaN and infinities become null so that the file is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value
