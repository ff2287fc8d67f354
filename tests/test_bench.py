"""make-bench (ground-truth triples) and the augment-grid / make-bench commands."""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from recolorize.cli import main
from recolorize.evaluation.bench import BENCH_COLUMNS, make_bench


@pytest.fixture(scope="module")
def three_photos(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three BSDS500 test photos in a plain folder (no masks: exercises the superpixel path)."""
    folder = tmp_path_factory.mktemp("held_out")
    for path in sorted((shared_data / "bsds500" / "images" / "test").glob("*.jpg"))[:3]:
        shutil.copy(path, folder / path.name)
    return folder


def _read_rows(csv_path: Path) -> list[dict[str, str]]:
    with csv_path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        assert tuple(reader.fieldnames) == BENCH_COLUMNS
        return list(reader)


def _files(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def test_make_bench_writes_resolvable_deterministic_triples(three_photos: Path, tmp_path: Path):
    csv_path = make_bench(three_photos, tmp_path / "a", n=3, seed=5, size=96)
    rows = _read_rows(csv_path)
    assert len(rows) == 3
    for row in rows:
        images = {
            k: np.asarray(Image.open(csv_path.parent / v).convert("RGB"), dtype=np.float32)
            for k, v in row.items()
        }
        assert max(images["source"].shape[:2]) == 96  # long side shrunk to --size
        assert images["source"].shape == images["target"].shape == images["reference"].shape
        assert np.abs(images["target"] - images["source"]).mean() > 3.0  # re-coloured
        assert np.abs(images["reference"] - images["target"]).mean() > 3.0  # re-framed
    make_bench(three_photos, tmp_path / "b", n=3, seed=5, size=96)
    assert _files(tmp_path / "a") == _files(tmp_path / "b")  # byte-identical
    make_bench(three_photos, tmp_path / "c", n=3, seed=6, size=96)
    assert _files(tmp_path / "a")["target/0000.png"] != _files(tmp_path / "c")["target/0000.png"]


def test_make_bench_uses_dataset_masks(shared_data: Path, tmp_path: Path):
    images = shared_data / "bsds500" / "images" / "test"
    csv_path = make_bench(images, tmp_path / "bench", n=2, seed=0, size=64)
    assert len(_read_rows(csv_path)) == 2
    meta = json.loads((tmp_path / "bench" / "bench.json").read_text())
    for row in meta["rows"]:  # the BSDS500 annotator maps were found and the one used is recorded
        stem = Path(row["photo"]).stem
        assert re.fullmatch(rf"{stem}_\d+\.png", row["mask"]), row


def test_cli_make_bench_and_augment_grid(three_photos: Path, tmp_path: Path):
    assert (
        main(
            [
                "make-bench",
                "--images",
                str(three_photos),
                "--out",
                str(tmp_path / "bench"),
                "--n",
                "2",
                "--seed",
                "1",
                "--size",
                "64",
            ]
        )
        == 0
    )
    assert len(_read_rows(tmp_path / "bench" / "pairs.csv")) == 2
    grid = tmp_path / "grid.png"
    assert (
        main(
            [
                "augment-grid",
                "--data",
                str(three_photos),
                "--out",
                str(grid),
                "--n",
                "2",
                "--seed",
                "0",
                "--size",
                "48",
            ]
        )
        == 0
    )
    with Image.open(grid) as im:
        columns = 6  # original, global, local, global + local, region edit, reference
        assert im.width == columns * 48 + (columns - 1) * 4 and im.height > 2 * 48


def test_cli_reports_an_empty_folder_as_a_user_error(tmp_path: Path, capsys: pytest.CaptureFixture):
    (tmp_path / "empty").mkdir()
    assert (
        main(["make-bench", "--images", str(tmp_path / "empty"), "--out", str(tmp_path / "b"), "--n", "1"])
        == 2
    )
    assert "no readable photos" in capsys.readouterr().err
