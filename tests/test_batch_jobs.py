"""``recolorize transfer --jobs N``: decoding and writing overlap the re-colouring, the files stay the same.

Small photos generated from the repository's examples, the shipped model, one thread for torch.
"""

from __future__ import annotations

import csv
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


def test_the_command_lets_idle_openmp_threads_sleep() -> None:
    """OMP_WAIT_POLICY=PASSIVE before torch loads (spinning threads starve each other on shared cores),
    unless the user set it."""
    code = (
        "import os, sys; from recolorize.cli import _passive_openmp_threads; _passive_openmp_threads(); "
        "print(os.environ.get('OMP_WAIT_POLICY'), 'torch' in sys.modules)"
    )
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.split() == ["PASSIVE", "False"]
    env["OMP_WAIT_POLICY"] = "ACTIVE"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.split() == ["ACTIVE", "False"]


@pytest.mark.parametrize(("command", "expected"), [("transfer", "PASSIVE"), ("train", "None")])
def test_only_photo_commands_let_threads_sleep(command: str, expected: str) -> None:
    """Training keeps spinning threads: passive ones made a stage-3 step 31 % slower (19.5 vs 28.4 img/s)."""
    code = (
        "import os\nfrom recolorize.cli import main\ntry:\n"
        f"    main([{command!r}, '--help'])\nexcept SystemExit:\n    pass\n"
        "print('POLICY', os.environ.get('OMP_WAIT_POLICY'))"
    )
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.split()[-2:] == ["POLICY", expected]
