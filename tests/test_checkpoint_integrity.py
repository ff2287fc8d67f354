"""Checkpoints that went bad on disk, and run folders that are files (issue 12, items 14 and 15).

A bit flip in the tensor data keeps the file's size and still parses, so only a checksum notices it;
the previous checkpoint kept beside the latest lets the run go on from there. Every training run here
is the tiny config on 4 MSRC-v2 photos for a few steps (a few seconds each, one thread).
"""

from __future__ import annotations

import csv
import json
import logging
import struct
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from recolorize.cli import main
from recolorize.config import TRAIN_CONFIGS, get_config
from recolorize.errors import UserError
from recolorize.training import Checkpoint, load_checkpoint, read_checkpoint_info, save_checkpoint
from recolorize.training.checkpoint import (
    CHECKPOINT_NAME,
    PREVIOUS_CHECKPOINT_NAME,
    latest_weights,
    load_run_checkpoint,
)


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def example_photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 training photos made from the committed example pair (each and its mirror), so these tests never
    depend on ../shared: resuming and checksums do not care what the photos show."""
    from PIL import Image, ImageOps

    examples = Path(__file__).resolve().parents[1] / "examples"
    root = tmp_path_factory.mktemp("photos4")
    for name in ("source", "reference"):
        with Image.open(examples / f"{name}.jpg") as photo:
            photo.save(root / f"{name}.jpg", quality=95)
            ImageOps.mirror(photo).save(root / f"{name}_mirrored.jpg", quality=95)
    return root


def flip_a_tensor_bit(path: Path) -> None:
    """Flip one bit in the middle of the tensor data: same size, still a valid safetensors file."""
    data = bytearray(path.read_bytes())
    header = struct.unpack("<Q", data[:8])[0]
    start = 8 + header
    data[start + (len(data) - start) // 2] ^= 0x10
    path.write_bytes(bytes(data))


def strip_checksum(path: Path) -> None:
    """Rewrite a checkpoint as the code before checksums wrote it (same tensors, no ``sha256``)."""
    with safe_open(str(path), framework="pt") as handle:
        metadata = dict(handle.metadata())
    del metadata["sha256"]
    save_file(load_file(str(path)), str(path), metadata=metadata)


def small_checkpoint(step: int, value: float) -> Checkpoint:
    net = torch.nn.Linear(3, 2)
    torch.nn.init.constant_(net.weight, value)
    return Checkpoint(
        stage="predictor",
        step=step,
        model_config=get_config("tiny"),
        train_config=TRAIN_CONFIGS["tiny"],
        model_state=dict(net.state_dict()),
        data={"epoch": 0, "position": step, "world_size": 1, "batch": 2},
    )


# --- the file layer ---------------------------------------------------------------------------------------
def test_a_bit_flip_is_caught_and_the_previous_checkpoint_is_used(tmp_path: Path, caplog) -> None:
    latest, previous = tmp_path / CHECKPOINT_NAME, tmp_path / PREVIOUS_CHECKPOINT_NAME
    save_checkpoint(latest, small_checkpoint(1, 1.0))
    assert not previous.exists()
    save_checkpoint(latest, small_checkpoint(2, 2.0))
    assert read_checkpoint_info(previous)["step"] == 1 and read_checkpoint_info(latest)["step"] == 2
    size = latest.stat().st_size
    flip_a_tensor_bit(latest)
    assert latest.stat().st_size == size
    with pytest.raises(UserError, match="damaged"):
        load_checkpoint(latest)
    with caplog.at_level(logging.WARNING):
        checkpoint, path = load_run_checkpoint(tmp_path)
    assert path == previous and checkpoint.step == 1
    assert torch.equal(checkpoint.model_state["weight"], torch.full((2, 3), 1.0))
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "\n" not in warnings[0]
    assert "damaged" in warnings[0] and "falling back to the previous" in warnings[0], warnings
    # the export command's reader falls back the same way
    assert latest_weights(tmp_path)[2].startswith(str(previous))

    # the next write does not rotate the damaged file into the good previous one
    save_checkpoint(latest, small_checkpoint(3, 3.0))
    assert read_checkpoint_info(previous)["step"] == 1 and load_checkpoint(latest).step == 3


def test_a_flipped_bit_in_the_metadata_is_caught_too(tmp_path: Path) -> None:
    path = tmp_path / CHECKPOINT_NAME
    save_checkpoint(path, small_checkpoint(12, 1.0))
    data = path.read_bytes()
    assert data.count(b'\\"step\\": 12') == 1  # JSON inside the header's JSON
    path.write_bytes(data.replace(b'\\"step\\": 12', b'\\"step\\": 13'))  # still valid, same size
    with pytest.raises(UserError, match="damaged"):
        load_checkpoint(path)


def test_when_neither_checkpoint_is_usable_one_clear_error(tmp_path: Path) -> None:
    latest, previous = tmp_path / CHECKPOINT_NAME, tmp_path / PREVIOUS_CHECKPOINT_NAME
    save_checkpoint(latest, small_checkpoint(1, 1.0))
    save_checkpoint(latest, small_checkpoint(2, 2.0))
    flip_a_tensor_bit(latest)
    previous.write_bytes(previous.read_bytes()[:100])  # truncated
    with pytest.raises(UserError) as error:
        load_run_checkpoint(tmp_path)
    message = str(error.value)
    assert "no usable checkpoint" in message and str(latest) in message and str(previous) in message
    assert "\n" not in message


def test_a_deleted_latest_checkpoint_falls_back_too(tmp_path: Path, caplog) -> None:
    latest = tmp_path / CHECKPOINT_NAME
    save_checkpoint(latest, small_checkpoint(1, 1.0))
    save_checkpoint(latest, small_checkpoint(2, 2.0))
    latest.unlink()
    with caplog.at_level(logging.WARNING):
        checkpoint, path = load_run_checkpoint(tmp_path)
    assert path.name == PREVIOUS_CHECKPOINT_NAME and checkpoint.step == 1
    assert "is missing" in caplog.text
    (tmp_path / PREVIOUS_CHECKPOINT_NAME).unlink()
    with pytest.raises(UserError, match="no checkpoint.safetensors"):
        load_run_checkpoint(tmp_path)


def test_a_checkpoint_without_checksum_still_loads_with_one_warning(tmp_path: Path, caplog) -> None:
    path = tmp_path / CHECKPOINT_NAME
    save_checkpoint(path, small_checkpoint(4, 0.5))
    strip_checksum(path)
    with caplog.at_level(logging.WARNING):
        first, second = load_checkpoint(path), load_checkpoint(path)
    assert first.step == second.step == 4
    assert torch.equal(first.model_state["weight"], torch.full((2, 3), 0.5))
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "no checksum" in warnings[0], warnings


# --- through the CLI --------------------------------------------------------------------------------------
def _train(photos: Path, run: Path, *extra: str) -> list[str]:
    settings = ["log_every=1", "sample_every=1000", "checkpoint_every=2"]
    options = ["--stage", "wencoder", "--batch", "2", *[a for s in settings for a in ("--set", s)]]
    return ["train", "--config", "tiny", "--data", str(photos), "--run", str(run), *options, *extra]


def _steps(run: Path) -> list[int]:
    with (run / "metrics.csv").open(newline="") as handle:
        return [int(row["step"]) for row in csv.DictReader(handle)]


def test_resume_from_a_bit_flipped_checkpoint_falls_back_to_the_previous(
    example_photos: Path, tmp_path: Path, capsys, caplog
) -> None:
    run = tmp_path / "run"
    assert main(_train(example_photos, run, "--steps", "4")) == 0  # checkpoints at steps 2 and 4
    assert read_checkpoint_info(run / PREVIOUS_CHECKPOINT_NAME)["step"] == 2
    flip_a_tensor_bit(run / CHECKPOINT_NAME)
    with caplog.at_level(logging.WARNING):
        assert main(_train(example_photos, run, "--steps", "6", "--resume")) == 0
    fallback = [r.getMessage() for r in caplog.records if "falling back to the previous" in r.getMessage()]
    assert len(fallback) == 1 and "damaged" in fallback[0], caplog.text
    assert _steps(run) == [1, 2, 3, 4, 5, 6]  # steps 3 and 4 were trained again, from step 2's state
    resumed = load_checkpoint(run / CHECKPOINT_NAME)
    assert resumed.step == 6
    assert all(torch.isfinite(t).all() for t in resumed.model_state.values() if t.is_floating_point())

    # both damaged: one line, exit 2, nothing trained
    flip_a_tensor_bit(run / CHECKPOINT_NAME)
    flip_a_tensor_bit(run / PREVIOUS_CHECKPOINT_NAME)
    capsys.readouterr()
    assert main(_train(example_photos, run, "--steps", "8", "--resume")) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "no usable checkpoint" in lines[0], lines


def test_resume_from_a_checkpoint_written_before_checksums(
    example_photos: Path, tmp_path: Path, caplog
) -> None:
    run = tmp_path / "run"
    assert main(_train(example_photos, run, "--steps", "2")) == 0
    strip_checksum(run / CHECKPOINT_NAME)
    with caplog.at_level(logging.WARNING):
        assert main(_train(example_photos, run, "--steps", "3", "--resume")) == 0
    assert sum("no checksum" in r.getMessage() for r in caplog.records) == 1, caplog.text
    assert _steps(run) == [1, 2, 3]
    with safe_open(str(run / CHECKPOINT_NAME), framework="pt") as handle:  # rewritten with a checksum
        assert "sha256" in handle.metadata()
    config = json.loads((run / "config.json").read_text())
    assert config["train"]["wencoder"]["steps"] == 3


@pytest.mark.parametrize("where", ["run", "run/inside"])
def test_run_pointing_at_a_file_is_one_error_line(
    example_photos: Path, tmp_path: Path, capsys, where: str
) -> None:
    (tmp_path / "run").write_text("not a folder")
    assert main(_train(example_photos, tmp_path / where, "--steps", "1")) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("recolorize: error:"), lines
    assert "not a folder" in lines[0] and str(tmp_path / where) in lines[0]
    assert (tmp_path / "run").read_text() == "not a folder"
