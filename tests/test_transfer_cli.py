"""`recolorize transfer` end to end on real DPST photos with a tiny model (issue: the main job)."""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from recolorize.cli import main
from recolorize.inference.pipeline import Recolorizer

# ``tiny_weights`` (conftest): the tiny exported model folder, whose f is given a visible part so that its
# re-colouring departs from the source (an untrained f is the identity on the prior).


@pytest.fixture(scope="module")
def dpst_pair(shared_data: Path, tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("dpst")
    source = shutil.copy(shared_data / "dpst" / "input" / "in3.png", folder / "source.png")
    reference = shutil.copy(shared_data / "dpst" / "style" / "tar3.png", folder / "reference.png")
    return Path(source), Path(reference)


def pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.float64)


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the real command in a subprocess, as a user would (stdout/stderr captured)."""
    return subprocess.run(
        [sys.executable, "-m", "recolorize", *args], capture_output=True, text=True, timeout=300
    )


def test_output_has_the_source_size_and_strength_zero_is_the_source(
    tiny_weights, dpst_pair, tmp_path
) -> None:
    source, reference = dpst_pair
    out = tmp_path / "out.png"
    assert (
        main(["transfer", str(source), str(reference), "-o", str(out), "--weights", str(tiny_weights)]) == 0
    )
    assert Image.open(out).size == Image.open(source).size
    zero = tmp_path / "zero.png"
    args = ["transfer", str(source), str(reference), "-o", str(zero), "--weights", str(tiny_weights)]
    assert main([*args, "--strength", "0"]) == 0
    assert np.abs(pixels(zero) - pixels(source)).mean() < 1.0
    # the full transfer does change the photo, and differs from strength 0
    assert np.abs(pixels(out) - pixels(zero)).mean() > 0.05


def test_greyscale_source_gives_a_colour_output(tiny_weights, dpst_pair, tmp_path) -> None:
    source, reference = dpst_pair
    grey = tmp_path / "grey.png"
    Image.open(source).convert("L").save(grey)
    out = tmp_path / "out.png"
    assert main(["transfer", str(grey), str(reference), "-o", str(out), "--weights", str(tiny_weights)]) == 0
    result = pixels(out)
    assert result.shape[:2] == np.asarray(Image.open(grey)).shape
    assert (
        np.abs(result[..., 0] - result[..., 1]).mean() + np.abs(result[..., 1] - result[..., 2]).mean() > 0.5
    )


def test_api_accepts_paths_pil_images_and_arrays(tiny_weights, dpst_pair) -> None:
    source, reference = dpst_pair
    recolorizer = Recolorizer.from_pretrained(tiny_weights)
    from_paths = recolorizer.transfer(source, reference)
    from_pil = recolorizer.transfer(Image.open(source), Image.open(reference))
    from_arrays = recolorizer.transfer(np.asarray(Image.open(source)), np.asarray(Image.open(reference)))
    assert isinstance(from_paths, Image.Image) and from_paths.size == Image.open(source).size
    assert np.array_equal(np.asarray(from_paths), np.asarray(from_pil))
    assert np.array_equal(np.asarray(from_paths), np.asarray(from_arrays))


BAD_INPUTS = {
    "missing source": lambda d: (d / "nope.png", d / "reference.png", d / "out.png", []),
    "not an image": lambda d: (d / "notes.png", d / "reference.png", d / "out.png", []),
    "truncated": lambda d: (d / "truncated.png", d / "reference.png", d / "out.png", []),
    "too small": lambda d: (d / "small.png", d / "reference.png", d / "out.png", []),
    "output is the source": lambda d: (d / "source.png", d / "reference.png", d / "source.png", []),
    "unwritable output": lambda d: (d / "source.png", d / "reference.png", d / "notes.png" / "out.png", []),
    "strength out of range": lambda d: (
        d / "source.png",
        d / "reference.png",
        d / "out.png",
        ["--strength", "2"],
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_exits_2_with_one_line_and_no_output(case, tiny_weights, dpst_pair, tmp_path) -> None:
    source, reference = dpst_pair
    shutil.copy(source, tmp_path / "source.png")
    shutil.copy(reference, tmp_path / "reference.png")
    (tmp_path / "notes.png").write_text("this is not an image\n")
    data = (tmp_path / "source.png").read_bytes()
    (tmp_path / "truncated.png").write_bytes(data[: len(data) // 2])
    Image.new("RGB", (20, 40), (10, 20, 30)).save(tmp_path / "small.png")
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()}
    src, ref, out, extra = BAD_INPUTS[case](tmp_path)
    result = run_cli("transfer", str(src), str(ref), "-o", str(out), "--weights", str(tiny_weights), *extra)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("recolorize: error:"), result.stderr
    after = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()}
    assert after == before  # nothing written, nothing overwritten, no temporary file left


def test_batch_continues_past_a_bad_file_and_skips_existing(tiny_weights, dpst_pair, tmp_path) -> None:
    source, reference = dpst_pair
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(source, photos / "a.png")
    shutil.copy(source, photos / "c.png")
    (photos / "b.png").write_text("not an image")
    out = tmp_path / "out"
    args = ["transfer", str(photos), str(reference), "-o", str(out), "--weights", str(tiny_weights)]
    result = run_cli(*args)
    assert result.returncode == 1
    assert "b.png" in result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "c.png"]
    stamp = (out / "a.png").stat().st_mtime_ns
    assert (
        main(["transfer", str(photos), str(reference), "-o", str(out), "--weights", str(tiny_weights)]) == 1
    )
    assert (out / "a.png").stat().st_mtime_ns == stamp  # existing outputs are skipped without --overwrite


def test_pairs_csv(tiny_weights, dpst_pair, tmp_path) -> None:
    source, reference = dpst_pair
    pairs = tmp_path / "pairs.csv"
    with pairs.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["source", "reference", "output"])
        writer.writerow([str(source), str(reference), "first.png"])
        writer.writerow([str(source), str(reference), "second.jpg"])
    out = tmp_path / "out"
    assert main(["transfer", "--pairs", str(pairs), "-o", str(out), "--weights", str(tiny_weights)]) == 0
    assert (
        Image.open(out / "first.png").size == Image.open(out / "second.jpg").size == Image.open(source).size
    )


def test_a_damaged_graph_is_one_line_for_a_pair_a_folder_and_the_api(
    tiny_weights, dpst_pair, tmp_path
) -> None:
    """The graphs load in a thread, the first needed first (``OnnxModel``); a damaged one is still one line
    naming it (exit 2, nothing written) for one pair and for a folder, and a ``WeightsError`` from the API:
    at load, or, with ``wait=False``, from the first step that runs it."""
    from recolorize.errors import WeightsError
    from recolorize.inference.pipeline import Recolorizer

    broken = tmp_path / "broken"
    shutil.copytree(tiny_weights if tiny_weights.is_dir() else tiny_weights.parent, broken)
    (broken / "predictor.onnx").write_bytes(b"not a graph")
    source, reference = dpst_pair
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(source, photos / "a.png")
    for src, out in ((source, tmp_path / "out.jpg"), (photos, tmp_path / "outs")):
        result = run_cli("transfer", str(src), str(reference), "-o", str(out), "--weights", str(broken))
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert result.returncode == 2 and len(lines) == 1, result.stderr
        assert (
            lines[0].startswith("recolorize: error: cannot load the model graph")
            and "predictor.onnx" in lines[0]
        )
        assert not out.exists() or not any(out.iterdir())
    with pytest.raises(WeightsError, match="predictor.onnx"):
        Recolorizer.from_pretrained(broken)
    lazy = Recolorizer.from_pretrained(broken, wait=False)
    assert lazy.model.features(np.zeros((1, 3, 64, 64), np.float32))[0].shape[0] == 1  # its graph is fine
    with pytest.raises(WeightsError, match="predictor.onnx"):
        lazy.prepare(source, reference)
