"""``recolorize transfer --jobs N``: N worker ("helper") processes share a batch; the files, the error lines
and their order stay those of ``--jobs 1``; a helper's death or Ctrl-C loses nothing else.

Small photos generated from the repository's examples, the shipped model, one thread for torch.
"""

from __future__ import annotations

import csv
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from recolorize.cli import main

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def write_photo(path: Path, size: tuple[int, int], seed: int) -> None:
    """An example photo resized, with a colour cast, so every photo of the batch differs."""
    rng = np.random.default_rng(seed)
    with Image.open(EXAMPLES / "source.jpg") as im:
        pixels = np.asarray(im.convert("RGB").resize(size), dtype=np.float32) * rng.uniform(0.8, 1.2, 3)
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path, quality=90)


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    code = main(args)
    err = capsys.readouterr().err
    return code, [line for line in err.replace("\r", "\n").splitlines() if line.startswith("recolorize:")]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    photos = tmp_path / "photos"
    photos.mkdir()
    for n, size in enumerate([(96, 64), (120, 90), (64, 100), (150, 100), (80, 80)]):
        write_photo(photos / f"p{n}.jpg", size, n)
    Image.open(photos / "p1.jpg").save(photos / "p5.png")  # another format, written as PNG
    (photos / "broken.jpg").write_bytes(b"\xff\xd8 not really a JPEG")
    return photos


@pytest.mark.parametrize("jobs", ["2", "3"])
def test_jobs_write_the_same_files_and_name_the_same_failures(
    folder: Path, tmp_path: Path, jobs: str, capsys
) -> None:
    reference = EXAMPLES / "reference.jpg"
    one = tmp_path / "one"
    code_one, lines_one = run(["transfer", str(folder), str(reference), "-o", str(one)], capsys)
    many = tmp_path / "many"
    code_many, lines_many = run(
        ["transfer", str(folder), str(reference), "-o", str(many), "--jobs", jobs], capsys
    )
    assert code_one == code_many == 1
    assert lines_one == lines_many and len(lines_many) == 2, lines_many  # broken.jpg, then the count
    assert "broken.jpg" in lines_many[0] and "1 of 7 photos failed" in lines_many[1]
    names = sorted(p.name for p in one.iterdir())
    assert names == sorted(p.name for p in many.iterdir()) == [f"p{n}.jpg" for n in range(5)] + ["p5.png"]
    # each worker runs the networks on its share of the cores, and the model gives the same bits on any
    # number of threads (``onnx_model.ONE_THREAD_GRAPHS``): the same files, byte for byte
    for name in names:
        assert (one / name).read_bytes() == (many / name).read_bytes(), name


def test_jobs_with_pairs_and_several_references(folder: Path, tmp_path: Path, capsys) -> None:
    other = tmp_path / "other_reference.jpg"
    write_photo(other, (100, 80), 99)
    pairs = tmp_path / "pairs.csv"
    with pairs.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["source", "reference", "output"])
        for n in range(5):
            reference = EXAMPLES / "reference.jpg" if n % 2 else other
            writer.writerow([str(folder / f"p{n}.jpg"), str(reference), f"out{n}.png"])
        writer.writerow([str(folder / "p0.jpg"), str(folder / "broken.jpg"), "bad.png"])
    results = {}
    for jobs in ("1", "2"):
        out = tmp_path / f"out{jobs}"
        code, lines = run(["transfer", "--pairs", str(pairs), "-o", str(out), "--jobs", jobs], capsys)
        assert code == 1 and len(lines) == 2 and "broken.jpg" in lines[0], lines
        results[jobs] = {p.name: p.read_bytes() for p in out.iterdir()}
    assert results["1"] == results["2"] and len(results["1"]) == 5


def test_jobs_out_of_range_is_one_line(folder: Path, tmp_path: Path, capsys) -> None:
    for jobs in ("0", "17"):
        code, lines = run(
            [
                "transfer",
                str(folder),
                str(EXAMPLES / "reference.jpg"),
                "-o",
                str(tmp_path / "x"),
                "--jobs",
                jobs,
            ],
            capsys,
        )
        assert code == 2 and len(lines) == 1 and "--jobs" in lines[0]
    assert not (tmp_path / "x").exists()


def test_onnx_runtime_threads_sleep_when_idle() -> None:
    """The sessions' idle threads sleep instead of spinning: between the graphs the process runs NumPy (the
    prior, the carry-up) on the same cores, and spinning threads took them (5 photos: 2.0 s a photo
    spinning, 0.4 s sleeping, on 2 cores; the old OMP_WAIT_POLICY setting was torch's and went with it)."""
    from recolorize.inference.onnx_model import OnnxModel
    from recolorize.inference.pipeline import default_weights_path

    model = OnnxModel(default_weights_path())
    for session in model.sessions.values():
        options = session.get_session_options()
        assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
        assert not options.enable_cpu_mem_arena


def test_helper_log_lines_come_in_the_photos_order(folder: Path, tmp_path: Path, caplog) -> None:
    """``--jobs 2``: photos done by the two helper processes interleave, their lines do not."""
    (folder / "broken.jpg").unlink()
    with caplog.at_level(logging.INFO):
        code = main(
            [
                "transfer",
                str(folder),
                str(EXAMPLES / "reference.jpg"),
                "-o",
                str(tmp_path / "out"),
                "--jobs",
                "2",
            ]
        )
    wrote = [r.getMessage().split()[1] for r in caplog.records if r.getMessage().startswith("wrote ")]
    assert code == 0
    expected = [str(tmp_path / "out" / name) for name in [f"p{n}.jpg" for n in range(5)] + ["p5.png"]]
    assert wrote == expected


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def _command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ")
    except OSError:
        return ""


def _running(pid: int) -> bool:
    """Whether ``pid`` is still a live process (not gone, not a zombie)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _batch_process(tmp_path: Path, count: int) -> tuple[subprocess.Popen, Path, list[str]]:
    photos = tmp_path / "many"
    photos.mkdir()
    names = []
    for n in range(count):
        write_photo(photos / f"q{n:02d}.jpg", (900, 600), 50 + n)
        names.append(f"q{n:02d}.jpg")
    out = tmp_path / "out"
    command = [sys.executable, "-m", "recolorize", "transfer", str(photos), str(EXAMPLES / "reference.jpg")]
    process = subprocess.Popen(
        [*command, "-o", str(out), "--jobs", "2"],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        preexec_fn=_ctrl_c_as_at_a_terminal,
    )
    return process, out, names


def _ctrl_c_as_at_a_terminal() -> None:
    """SIGINT back to its default in the child: a test run started in the background (``cmd &``, nohup)
    passes SIGINT on ignored, and Python then never turns it into KeyboardInterrupt."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the helper process through /proc (Linux)")
def test_a_helper_that_dies_loses_only_its_photos(tmp_path: Path) -> None:
    """The helper killed mid-batch (as the out-of-memory killer would): the command finishes the batch
    alone; every photo is written or named in one line; no traceback, no temporary file left."""
    import signal
    import time

    process, out, names = _batch_process(tmp_path, 12)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (out.is_dir() and any(out.iterdir())):
        time.sleep(0.05)
    helpers = [
        pid for pid in _children(process.pid) if "spawn_main" in Path(f"/proc/{pid}/cmdline").read_text()
    ]
    assert helpers, "no helper process found"
    for pid in helpers:
        os.kill(pid, signal.SIGKILL)
    _, stderr = process.communicate(timeout=300)
    lines = [line for line in stderr.replace("\r", "\n").splitlines() if line.startswith("recolorize:")]
    failed = [name for name in names if any(name in line for line in lines)]
    written = sorted(p.name for p in out.iterdir())
    assert sorted(written + failed) == names, (written, lines)
    assert all("helper process" in line for line in lines[:-1] if "failed" in line or "stopped" in line)
    assert process.returncode == (1 if failed else 0)
    assert "Traceback" not in stderr


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the helper process through /proc (Linux)")
def test_ctrl_c_stops_the_helpers_too(tmp_path: Path) -> None:
    import signal
    import time

    process, out, _ = _batch_process(tmp_path, 12)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (out.is_dir() and any(out.iterdir())):
        time.sleep(0.05)
    helpers = _children(process.pid)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130 and "recolorize: interrupted" in stderr and "Traceback" not in stderr
    deadline = time.monotonic() + 10  # (multiprocessing's resource tracker leaves when it sees the end)
    while time.monotonic() < deadline and [pid for pid in helpers if _running(pid)]:
        time.sleep(0.1)
    assert not [(pid, _command(pid)) for pid in helpers if _running(pid)]  # no helper left running
    assert not [p.name for p in out.iterdir() if not p.name.endswith(".jpg")]  # no temporary file


def test_workers_are_no_more_than_the_photos_and_the_cores_allow() -> None:
    from recolorize.inference.jobs import worker_count

    assert worker_count(jobs=2, photos=20, cores=2) == 2
    assert worker_count(jobs=16, photos=20, cores=2) == 2  # 16 processes would only add ~6 GB
    assert worker_count(jobs=8, photos=3, cores=16) == 3
    assert worker_count(jobs=4, photos=1, cores=4) == 1 and worker_count(jobs=1, photos=9, cores=4) == 1


def test_a_helpers_error_reaches_the_command_as_a_plain_exception() -> None:
    """What crosses from a helper: a UserError's one line, a built-in exception as it is, anything else as
    a RuntimeError that names it (no object of an arbitrary class is rebuilt in the command)."""
    from recolorize.errors import UserError, WeightsError
    from recolorize.inference.jobs import _portable

    user = _portable(WeightsError("model.safetensors is truncated"))
    assert type(user) is UserError and str(user) == "model.safetensors is truncated"
    builtin = ValueError("bad value")
    assert _portable(builtin) is builtin

    class Odd(Exception):
        def __init__(self, a: int, b: int) -> None:
            super().__init__(f"{a} and {b}")

    odd = _portable(Odd(1, 2))
    assert type(odd) is RuntimeError and str(odd) == "Odd: 1 and 2"
