"""What issue 11's start-up and exit paths must not change: the first photos decode while torch is imported
(`commands/transfer_first.py`) with the same errors and log lines, and the console script's quick exit
keeps exit codes and output (`cli.entry`)."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from recolorize.cli import build_parser
from recolorize.commands.transfer_first import FirstDecode
from recolorize.commands.transfer_plan import plan_jobs
from recolorize.errors import UserError
from recolorize.imaging import load_image
from recolorize.inference.parallel import one_thread

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def plan_for(*arguments: str):
    args = build_parser(only="transfer").parse_args(["transfer", *arguments])
    return args, plan_jobs(args)


def first_decode(source: Path, reference: Path, output: Path) -> FirstDecode:
    args, plan = plan_for(str(source), str(reference), "-o", str(output))
    return FirstDecode(args, plan, max_pixels=10**8)


def test_a_jpeg_pair_decodes_in_the_background_to_the_same_pixels(tmp_path) -> None:
    first = first_decode(EXAMPLES / "source.jpg", EXAMPLES / "reference.jpg", tmp_path / "out.jpg")
    try:
        assert first.thread is not None
        sources, reference = first.result()
    finally:
        first.close()
    assert list(sources) == [EXAMPLES / "source.jpg"]
    assert np.array_equal(sources[EXAMPLES / "source.jpg"].rgb, load_image(EXAMPLES / "source.jpg").rgb)
    assert np.array_equal(reference.rgb, load_image(EXAMPLES / "reference.jpg").rgb)


def test_a_tiff_is_decoded_on_the_main_thread_where_libtiff_messages_are_caught(tmp_path) -> None:
    tiff = tmp_path / "source.tif"
    Image.open(EXAMPLES / "source.jpg").save(tiff)
    first = first_decode(tiff, EXAMPLES / "reference.jpg", tmp_path / "out.jpg")
    try:
        assert first.thread is None  # decoded by result(), on the calling thread
        sources, _ = first.result()
    finally:
        first.close()
    assert sources[tiff].rgb.shape == (400, 600, 3)


def test_a_batch_decodes_only_the_shared_reference_early(tmp_path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    for n in range(2):
        Image.open(EXAMPLES / "source.jpg").save(folder / f"p{n}.jpg")
    args, plan = plan_for(str(folder), str(EXAMPLES / "reference.jpg"), "-o", str(tmp_path / "out"))
    first = FirstDecode(args, plan, max_pixels=10**8)
    try:
        sources, reference = first.result()
    finally:
        first.close()
    assert sources == {} and reference.rgb.shape == (352, 504, 3)


def test_background_log_lines_wait_for_success_and_go_with_a_failure(tmp_path, caplog) -> None:
    noisy = tmp_path / "noisy.jpg"  # an unreadable ICC profile: one warning while decoding
    Image.open(EXAMPLES / "source.jpg").save(noisy, icc_profile=b"not a profile" * 20)
    with caplog.at_level(logging.WARNING, logger="recolorize"):
        first = first_decode(noisy, EXAMPLES / "reference.jpg", tmp_path / "out.jpg")
        try:
            assert first.thread is not None
            first.thread.join()
            assert "ICC profile is unreadable" not in caplog.text  # held while the command could still fail
            first.result()
        finally:
            first.close()
        assert caplog.text.count("ICC profile is unreadable") == 1

    caplog.clear()
    broken = tmp_path / "broken.jpg"  # the same warning, then a truncated file: only the error remains
    broken.write_bytes(noisy.read_bytes()[: noisy.stat().st_size // 3])
    with caplog.at_level(logging.WARNING, logger="recolorize"):
        first = first_decode(broken, EXAMPLES / "reference.jpg", tmp_path / "out.jpg")
        try:
            with pytest.raises(UserError, match="broken.jpg"):
                first.result()
        finally:
            first.close()
    assert "ICC profile is unreadable" not in caplog.text


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
