"""Checkpoints: one safetensors file that holds everything needed to continue a run exactly.

Layout of ``RUN_DIR/checkpoint.safetensors`` (written atomically, by rank 0 only):

- tensors ``model.{key}``: every trainable-network weight and buffer (``RecolorModel.trainable_state_dict``);
- tensors ``optimizer.{param_index}.{name}``: Adam's per-parameter state (``step``, ``exp_avg``, ...);
- tensors ``ema.{key}``: the exponential moving average of the stage's networks (only with ``ema_decay``);
- metadata ``config``: the ModelConfig JSON (same key as ``RecolorModel.save``); metadata ``training``: JSON
  with the stage, the step (number of finished optimiser steps), the resolved TrainConfig, the non-tensor
  optimiser state (param groups, scalar entries), the RNG states of every rank (torch CPU, CUDA, numpy,
  Python ``random``, the masking generator) and the data position (epoch, position in the epoch);
- metadata ``sha256``: SHA-256 of all the tensors above (:func:`state_digest`: names, shapes, dtypes, bytes)
  and of the other metadata entries, checked when the file is loaded.

Atomic writes protect against a killed writer, not against bytes that change later (a bad disk, a
copy gone wrong): a bit flip in the tensor data still parses, and a run resumed from it trains on
garbage. Hence the checksum, and ``RUN_DIR/checkpoint.prev.safetensors``: before a new checkpoint
replaces the latest one, the latest (if it verifies) becomes the previous one, so a damaged latest
checkpoint falls back to the previous with a warning (:func:`load_run_checkpoint`). Checkpoints
written before checksums existed still load, with a warning that they are unverified.

No pickles: every tensor is a safetensors tensor and everything else is JSON. The optimiser's state and
the RNG states become tensors and JSON in :mod:`recolorize.training.resume_state`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from recolorize.config import STAGE_NAMES, ModelConfig, TrainConfig
from recolorize.config_json import CONFIG_METADATA_KEY, model_config_from_metadata
from recolorize.errors import UserError, write_errors
from recolorize.io_utils import atomic_write
from recolorize.training.resume_state import flatten_optimizer_state, unflatten_optimizer_state

__all__ = [
    "CHECKPOINT_NAME",
    "PREVIOUS_CHECKPOINT_NAME",
    "CHECKPOINT_FORMAT",
    "Checkpoint",
    "save_checkpoint",
    "load_checkpoint",
    "load_run_checkpoint",
    "has_checkpoint",
    "read_checkpoint_info",
    "state_digest",
    "latest_weights",
    "stage_weights_path",
]

logger = logging.getLogger(__name__)

CHECKPOINT_NAME = "checkpoint.safetensors"
#: The checkpoint before the latest one, kept so that a damaged latest checkpoint is not the end of a run.
PREVIOUS_CHECKPOINT_NAME = "checkpoint.prev.safetensors"
CHECKPOINT_FORMAT = "recolorize-checkpoint-1"
_CHECKSUM_KEY = "sha256"
_warned_unverified: set[str] = set()  # paths already reported as having no checksum (warn once each)


@dataclass
class Checkpoint:
    """Everything a run needs to continue: weights, optimiser, EMA, RNG states, data position, configs.

    step: optimiser steps finished in ``stage`` (the next step to take has this 0-based index).
    optimizer_state: ``torch.optim.Optimizer.state_dict()`` form (None before a stage has an optimiser).
    rng: one :func:`capture_rng` dict per rank (index = rank).
    data: ``epoch``, ``position`` (batches of the epoch already used), ``world_size``, ``batch``.
    """

    stage: str
    step: int
    model_config: ModelConfig
    train_config: TrainConfig
    model_state: dict[str, torch.Tensor]
    optimizer_state: dict[str, Any] | None = None
    ema_state: dict[str, torch.Tensor] | None = None
    rng: list[dict[str, Any]] = field(default_factory=list)
    data: dict[str, int] = field(default_factory=dict)


# --- files ----------------------------------------------------------------------------------------------
def save_checkpoint(path: str | Path, checkpoint: Checkpoint, keep_previous: bool = True) -> None:
    """Write ``checkpoint`` to ``path`` atomically (a killed writer never leaves a half file), with a
    checksum of its tensors; ``keep_previous``: the file it replaces becomes ``PREVIOUS_CHECKPOINT_NAME``."""
    tensors = {f"model.{k}": v.detach().cpu().contiguous().clone() for k, v in checkpoint.model_state.items()}
    optimizer_meta = None
    if checkpoint.optimizer_state is not None:
        optimizer_tensors, optimizer_meta = flatten_optimizer_state(checkpoint.optimizer_state)
        tensors.update(optimizer_tensors)
    if checkpoint.ema_state is not None:
        tensors.update(
            {f"ema.{k}": v.detach().cpu().contiguous().clone() for k, v in checkpoint.ema_state.items()}
        )
    training = {
        "stage": checkpoint.stage,
        "step": int(checkpoint.step),
        "train_config": checkpoint.train_config.to_dict(),
        "optimizer": optimizer_meta,
        "has_ema": checkpoint.ema_state is not None,
        "rng": checkpoint.rng,
        "data": checkpoint.data,
    }
    metadata = {
        "format": CHECKPOINT_FORMAT,
        CONFIG_METADATA_KEY: json.dumps(checkpoint.model_config.to_dict(), sort_keys=True),
        "training": json.dumps(training),
    }
    metadata[_CHECKSUM_KEY] = _checksum(state_digest(tensors), metadata)
    path = Path(path)
    with write_errors(path, "checkpoint "), atomic_write(path) as tmp:  # a full disk: one line, exit 2
        save_file(tensors, str(tmp), metadata=metadata)
        if keep_previous:
            _keep_previous(path)  # only now: a writer killed before this point leaves both files as they were


def _keep_previous(path: Path) -> None:
    """Make the current ``path`` (if it verifies) the previous checkpoint beside it, atomically.

    A hard link costs nothing (the new checkpoint replaces the name, not the bytes); where links are
    not supported the file is copied. A damaged latest checkpoint is not kept: the previous one stays.
    """
    if not path.is_file():
        return
    try:
        _verified_tensors(path, _read_metadata(path), keep=False)
    except UserError as error:  # (a resume from the previous one has already warned about it)
        logger.info("%s; it does not replace the previous checkpoint", _one_line(error))
        return
    with atomic_write(path.with_name(f"{path.stem}.prev{path.suffix}")) as tmp:  # PREVIOUS_CHECKPOINT_NAME
        tmp.unlink()
        try:
            os.link(path, tmp)
        except OSError:
            shutil.copyfile(path, tmp)


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())


def _read_metadata(path: Path) -> dict[str, str]:
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
    except Exception as error:  # safetensors raises several types for a damaged file
        raise UserError(f"cannot read checkpoint {path}: {_one_line(error)}") from error
    if metadata.get("format") != CHECKPOINT_FORMAT:
        raise UserError(f"{path} is not a recolorize checkpoint (format {metadata.get('format')!r})")
    return metadata


def _checksum(tensor_digest: str, metadata: dict[str, str]) -> str:
    """The stored checksum: the tensors' digest and every other metadata entry (stage, step, RNG, ...)."""
    digest = hashlib.sha256(tensor_digest.encode())
    for key in sorted(metadata):
        if key != _CHECKSUM_KEY:
            digest.update(f"\0{key}\0{metadata[key]}".encode())
    return digest.hexdigest()


def _file_tensors(path: Path) -> Iterator[tuple[str, torch.Tensor]]:
    """A file's tensors in key order, read one at a time (memory-mapped)."""
    with safe_open(str(path), framework="pt") as handle:
        for key in sorted(handle.keys()):
            yield key, handle.get_tensor(key)


def _verified_tensors(path: Path, metadata: dict[str, str], keep: bool = True) -> dict[str, torch.Tensor]:
    """The file's tensors, checked against its checksum (``keep=False``: check only, one tensor at a time).

    Raises UserError when the file cannot be read or its tensors do not match the checksum written with
    them; a file without a checksum (written before checksums existed) passes unchecked.
    """
    expected = metadata.get(_CHECKSUM_KEY)
    try:
        if keep:
            tensors = load_file(str(path))
            actual = _checksum(state_digest(tensors), metadata) if expected is not None else None
        else:
            tensors = {}
            actual = _checksum(_digest(_file_tensors(path)), metadata) if expected is not None else None
    except Exception as error:  # a truncated or garbled file: safetensors raises several types
        raise UserError(f"cannot read checkpoint {path}: {_one_line(error)}") from error
    if expected is not None and actual != expected:
        raise UserError(
            f"checkpoint {path} is damaged: its contents do not match the checksum written with them"
        )
    return tensors


def read_checkpoint_info(path: str | Path) -> dict[str, Any]:
    """Stage, step and data position of a checkpoint, from its header only (cheap, no tensors read)."""
    training = json.loads(_read_metadata(Path(path))["training"])
    return {"stage": training["stage"], "step": training["step"], "data": training["data"]}


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read and verify a checkpoint written by :func:`save_checkpoint` (tensors on the CPU).

    A damaged file (unreadable, or tensors that do not match its checksum) raises UserError; a file
    without a checksum loads with a one-time warning that it is unverified.
    """
    path = Path(path)
    metadata = _read_metadata(path)
    tensors = _verified_tensors(path, metadata)
    if _CHECKSUM_KEY not in metadata and str(path.resolve()) not in _warned_unverified:
        _warned_unverified.add(str(path.resolve()))
        logger.warning("%s has no checksum (written by an older version): loaded without verification", path)
    try:
        training = json.loads(metadata["training"])
        model_state = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
        ema_state = {k[len("ema.") :]: v for k, v in tensors.items() if k.startswith("ema.")}
        optimizer_state = None
        if training["optimizer"] is not None:
            optimizer_tensors = {k: v for k, v in tensors.items() if k.startswith("optimizer.")}
            optimizer_state = unflatten_optimizer_state(optimizer_tensors, training["optimizer"])
        return Checkpoint(
            stage=training["stage"],
            step=int(training["step"]),
            model_config=model_config_from_metadata(metadata, path),
            train_config=TrainConfig.from_dict(training["train_config"]),
            model_state=model_state,
            optimizer_state=optimizer_state,
            ema_state=ema_state if training.get("has_ema") else None,
            rng=training["rng"],
            data=training["data"],
        )
    except UserError:
        raise
    except (KeyError, ValueError, TypeError, AttributeError) as error:  # metadata edited or damaged
        raise UserError(f"checkpoint {path} has damaged metadata: {_one_line(error)}") from error


def has_checkpoint(run_dir: str | Path) -> bool:
    """Whether the run folder holds a checkpoint to resume from (the latest or the previous one)."""
    run_dir = Path(run_dir)
    return any((run_dir / name).is_file() for name in (CHECKPOINT_NAME, PREVIOUS_CHECKPOINT_NAME))


def load_run_checkpoint(run_dir: str | Path) -> tuple[Checkpoint, Path]:
    """The run's latest checkpoint that verifies, and its path.

    A damaged latest checkpoint falls back to the previous one with a one-line warning; when neither
    can be used, one UserError names both problems.
    """
    run_dir = Path(run_dir)
    latest, previous = run_dir / CHECKPOINT_NAME, run_dir / PREVIOUS_CHECKPOINT_NAME
    if not latest.is_file() and not previous.is_file():
        raise UserError(f"no {CHECKPOINT_NAME} in {run_dir}")
    problems: list[str] = []
    for path in (latest, previous):
        if not path.is_file():  # (a writer never leaves the latest name empty: deleted by hand)
            problems.append(f"{path} is missing")
            continue
        try:
            checkpoint = load_checkpoint(path)
        except UserError as error:
            problems.append(_one_line(error))
            continue
        if problems:
            logger.warning(
                "%s; falling back to the previous checkpoint %s (stage %s, step %d)",
                problems[0],
                path,
                checkpoint.stage,
                checkpoint.step,
            )
        return checkpoint, path
    raise UserError(f"no usable checkpoint in {run_dir}: {'; '.join(problems)}")


def state_digest(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 of a state dict (sorted keys, shapes, dtypes, raw bytes): equal digests = identical weights."""
    return _digest((key, state[key]) for key in sorted(state))


def _digest(items: Iterable[tuple[str, torch.Tensor]]) -> str:
    """:func:`state_digest` over (key, tensor) pairs given in key order, one tensor at a time."""
    digest = hashlib.sha256()
    for key, tensor in items:
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{key}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def stage_weights_path(run_dir: Path, stage: str) -> Path:
    """``RUN_DIR/{stage}.safetensors``: a finished stage's weights (``RecolorModel.save``, config beside);
    named here, beside the checkpoint's names, as ``run_folder`` and ``latest_weights`` both read it."""
    return Path(run_dir) / f"{stage}.safetensors"


def latest_weights(run_dir: str | Path) -> tuple[ModelConfig, dict[str, torch.Tensor], str]:
    """The newest weights of a run: the checkpoint (its EMA where it has one), else the last finished stage.

    Returns (model config, trainable state dict, a description of where they came from).
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"run folder {run_dir} does not exist")
    if has_checkpoint(run_dir):
        checkpoint, checkpoint_path = load_run_checkpoint(run_dir)
        state = dict(checkpoint.model_state)
        if checkpoint.ema_state:
            state.update(checkpoint.ema_state)
        source = f"{checkpoint_path} (stage {checkpoint.stage}, step {checkpoint.step})"
        return checkpoint.model_config, state, source
    for stage in reversed(STAGE_NAMES):
        weights = stage_weights_path(run_dir, stage)
        if weights.is_file():
            with safe_open(str(weights), framework="pt") as handle:
                metadata = handle.metadata() or {}
            try:
                config = model_config_from_metadata(metadata, weights)
            except ValueError as error:
                raise UserError(str(error)) from error
            return config, load_file(str(weights)), str(weights)
    raise UserError(f"{run_dir} holds no {CHECKPOINT_NAME} and no finished stage weights")
