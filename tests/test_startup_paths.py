"""What issue 11's exit path must not change: the console script's quick exit keeps exit codes and output
(`cli.entry`). (The first photos decoded in a thread while torch imported went with issue 22, and their
tests with them.)"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from recolorize.inference.parallel import one_thread

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run_module(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "recolorize", *args], capture_output=True, text=True, timeout=300
    )


def test_the_quick_exit_keeps_exit_codes_output_and_log_lines(tmp_path) -> None:
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


def test_the_program_freezes_what_it_imported_and_callers_of_main_keep_their_collector() -> None:
    """``process.heavy_imports``: in the program, the collector is paused while torch imports and the
    imported objects are frozen out of its reach after (then it runs again); elsewhere nothing changes."""
    code = (
        "import gc, sys\n"
        "from recolorize import process\n"
        "process.PROGRAM = sys.argv[1] == 'program'\n"
        "with process.heavy_imports():\n"
        "    paused = not gc.isenabled()\n"
        "    import torch\n"
        "print(paused, gc.get_freeze_count() > 10000, gc.isenabled())\n"
    )
    for mode, expected in (("program", "True True True"), ("library", "False False True")):
        done = subprocess.run([sys.executable, "-c", code, mode], capture_output=True, text=True, check=True)
        assert done.stdout.strip() == expected, (mode, done.stdout, done.stderr)


def test_a_profiled_run_still_writes_its_profile(tmp_path) -> None:
    """Under ``python -m cProfile`` the quick exit steps aside, or the profile would never be written."""
    profile = tmp_path / "run.prof"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "cProfile",
            "-o",
            str(profile),
            "-m",
            "recolorize",
            "transfer",
            str(EXAMPLES / "source.jpg"),
            str(EXAMPLES / "reference.jpg"),
            "-o",
            str(tmp_path / "out.jpg"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert profile.stat().st_size > 10_000 and (tmp_path / "out.jpg").exists()
