"""The console script's start and exit: exit codes, the result line and log lines as ``main`` gives them
(`cli.entry`), and the predictor's one-thread section giving the caller its thread count back.

(Issue 22 removed what issue 11 added here to hide torch's import and teardown, and their tests: the first
photos decoded in a thread while torch imported, the collector frozen around the heavy imports, and the
quick exit through ``os._exit``, with its step aside under a profiler.)"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from recolorize.torch_inference.parallel import one_thread

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run_module(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "recolorize", *args], capture_output=True, text=True, timeout=300
    )


def test_the_program_keeps_exit_codes_output_and_log_lines(tmp_path) -> None:
    out = tmp_path / "out.jpg"
    done = run_module(
        "--verbose", "transfer", str(EXAMPLES / "source.jpg"), str(EXAMPLES / "reference.jpg"), "-o", str(out)
    )
    assert done.returncode == 0, done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines[-1].startswith(f"wrote {out} (JPEG")  # the result line, flushed before the process ended
    assert any(line.startswith("loaded ") for line in lines)  # and the --verbose lines before it
    assert Image.open(out).size == (600, 400)

    failed = run_module(
        "transfer",
        str(tmp_path / "missing.jpg"),
        str(EXAMPLES / "reference.jpg"),
        "-o",
        str(tmp_path / "never.jpg"),
    )
    assert failed.returncode == 2
    assert len(failed.stderr.strip().splitlines()) == 1 and "missing.jpg" in failed.stderr
    assert not (tmp_path / "never.jpg").exists()


def test_one_thread_gives_the_callers_thread_count_back() -> None:
    before = torch.get_num_threads()
    with one_thread():
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError), one_thread():
        raise RuntimeError("an error inside")
    assert torch.get_num_threads() == before


@pytest.mark.parametrize("command, one_thread", [("transfer", True), ("lut-apply", True), ("train", False)])
def test_photo_commands_keep_blas_to_one_thread(command: str, one_thread: bool) -> None:
    """A photo command's NumPy runs its products on one thread (OpenBLAS's idle threads spun on the cores
    ONNX Runtime needed next), unless the user chose a count; training keeps its threads."""
    import os

    if (os.cpu_count() or 1) < 2:
        pytest.skip("one core: OpenBLAS starts no extra threads either way")
    if not Path("/proc/self/task").is_dir():
        pytest.skip("threads are counted in /proc/self/task (Linux)")
    probe = (
        "import os, sys; from recolorize.cli import one_blas_thread; one_blas_thread(sys.argv[1]); "
        "import numpy; print(len(os.listdir('/proc/self/task')))"
    )
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in ("OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS", "OMP_NUM_THREADS")
    }

    def threads(extra: dict[str, str]) -> int:
        done = subprocess.run(
            [sys.executable, "-c", probe, command], env={**clean, **extra}, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        return int(done.stdout)

    assert (threads({}) == 1) is one_thread
    assert threads({"OPENBLAS_NUM_THREADS": "2"}) > 1  # the user's choice stands
