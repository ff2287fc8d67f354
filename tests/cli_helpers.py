"""Helpers the command-line tests share: small generated photos, the CLI run in-process, and the one-line
error promise (issue 23: bad input gets one clear line on stderr and exit code 2)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from recolorize.cli import main

REPO = Path(__file__).resolve().parents[1]


def picture(h: int = 48, w: int = 64, seed: int = 0) -> np.ndarray:
    """A small smooth colour image with some texture (uint8 RGB)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    base = np.stack([x, y, 0.5 + 0.4 * np.sin(6 * x * y)], -1) * 200 + 20
    return np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)


def encode(array: np.ndarray, fmt: str = "PNG", **params: object) -> bytes:
    """``array`` written as a ``fmt`` file in memory (Pillow's save options in ``params``)."""
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format=fmt, **params)
    return buf.getvalue()


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    """The CLI entry point in-process: (exit code, non-empty stderr lines)."""
    capsys.readouterr()
    code = main(args)
    err = capsys.readouterr().err
    return code, [line for line in err.replace("\r", "\n").splitlines() if line.strip()]


def assert_one_error_line(code: int, lines: list[str]) -> None:
    """Exit code 2 and exactly one ``recolorize: error:`` line on stderr, no traceback."""
    assert code == 2, lines
    assert len(lines) == 1 and lines[0].startswith("recolorize: error:"), lines
    assert "Traceback" not in lines[0]


def subprocess_env() -> dict[str, str]:
    """The environment of a real ``python -m recolorize`` run of this checkout (one thread)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    return env


def run_python(code: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``python -c code`` in a fresh interpreter of this checkout (``subprocess_env``): what a module imports
    when it is the first thing a process loads."""
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, env=subprocess_env()
    )
