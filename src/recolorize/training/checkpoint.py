"""Checkpoints: one safetensors file that holds everything needed to continue a run exactly.

Layout of ``RUN_DIR/checkpoint.safetensors`` (written atomically, by rank 0 only):

- tensors ``model.{key}``: every trainable-network weight and buffer (``RecolorModel.trainable_state_dict``);
- tensors ``optimizer.{param_index}.{name}``: Adam's per-parameter state (``step``, ``exp_avg``, ...);
- tensors ``ema.{key}``: the exponential moving average of the stage's networks (only with ``ema_decay``);
- metadata ``config``: the ModelConfig JSON (same key as ``RecolorModel.save``); metadata ``training``: JSON
  with the stage, the step (number of finished optimiser steps), the resolved TrainConfig, the non-tensor
  optimiser state (param groups, scalar entries), the RNG states of every rank (torch CPU, CUDA, numpy,
  Python ``random``, the masking generator) and the data position (epoch, position in the epoch).

No pickles: every tensor is a safetensors tensor and everything else is JSON.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from recolorize.config import ModelConfig, TrainConfig
from recolorize.errors import UserError
from recolorize.io_utils import atomic_write

__all__ = [
    "CHECKPOINT_NAME",
    "CHECKPOINT_FORMAT",
    "Checkpoint",
    "save_checkpoint",
    "load_checkpoint",
    "read_checkpoint_info",
    "flatten_optimizer_state",
    "unflatten_optimizer_state",
    "capture_rng",
    "restore_rng",
    "state_digest",
    "latest_weights",
]

logger = logging.getLogger(__name__)

CHECKPOINT_NAME = "checkpoint.safetensors"
CHECKPOINT_FORMAT = "recolorize-checkpoint-1"


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


# --- optimiser state ------------------------------------------------------------------------------------
def flatten_optimizer_state(state_dict: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimiser ``state_dict`` into tensors ``optimizer.{index}.{name}`` and a JSON-able rest."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, entries in state_dict["state"].items():
        for name, value in entries.items():
            if torch.is_tensor(value):
                tensors[f"optimizer.{index}.{name}"] = value.detach().cpu().contiguous().clone()
            else:
                scalars.setdefault(str(index), {})[name] = value
    return tensors, {"param_groups": state_dict["param_groups"], "scalars": scalars}


def unflatten_optimizer_state(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`flatten_optimizer_state` (tensors keyed ``optimizer.{index}.{name}``)."""
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        _, index, name = key.split(".", 2)
        state.setdefault(int(index), {})[name] = value
    for index, entries in meta.get("scalars", {}).items():
        state.setdefault(int(index), {}).update(entries)
    groups = [dict(group) for group in meta["param_groups"]]
    for group in groups:
        if "betas" in group:
            group["betas"] = tuple(group["betas"])
    return {"state": state, "param_groups": groups}


# --- RNG state ------------------------------------------------------------------------------------------
def _bytes_to_text(tensor: torch.Tensor) -> str:
    return base64.b64encode(tensor.cpu().numpy().tobytes()).decode("ascii")


def _text_to_bytes(text: str) -> torch.Tensor:
    return torch.frombuffer(bytearray(base64.b64decode(text)), dtype=torch.uint8).clone()


def capture_rng(mask_generator: torch.Generator | None = None) -> dict[str, Any]:
    """The RNG states of this process as JSON-able data: torch CPU, its CUDA device (if in use), numpy,
    Python ``random`` and the masking generator."""
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    py_version, py_state, py_gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": _bytes_to_text(torch.get_rng_state()),
        "numpy": [np_name, np.asarray(np_keys).tolist(), int(np_pos), int(np_has_gauss), float(np_gauss)],
        "python": [py_version, list(py_state), py_gauss],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():  # this process's device only
        state["cuda"] = _bytes_to_text(torch.cuda.get_rng_state())
    if mask_generator is not None:
        state["mask"] = _bytes_to_text(mask_generator.get_state())
    return state


def restore_rng(state: dict[str, Any], mask_generator: torch.Generator | None = None) -> None:
    """Put back what :func:`capture_rng` captured (CUDA states only where CUDA is in use)."""
    torch.set_rng_state(_text_to_bytes(state["torch"]))
    name, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))
    version, py_state, py_gauss = state["python"]
    random.setstate((version, tuple(py_state), py_gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(_text_to_bytes(state["cuda"]))
    if mask_generator is not None and "mask" in state:
        mask_generator.set_state(_text_to_bytes(state["mask"]))


# --- files ----------------------------------------------------------------------------------------------
def save_checkpoint(path: str | Path, checkpoint: Checkpoint) -> None:
    """Write ``checkpoint`` to ``path`` atomically (a killed writer never leaves a half file)."""
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
        "config": json.dumps(checkpoint.model_config.to_dict(), sort_keys=True),
        "training": json.dumps(training),
    }
    with atomic_write(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)


def _read_metadata(path: Path) -> dict[str, str]:
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
    except Exception as error:  # safetensors raises several types for a damaged file
        raise UserError(f"cannot read checkpoint {path}: {error}") from error
    if metadata.get("format") != CHECKPOINT_FORMAT:
        raise UserError(f"{path} is not a recolorize checkpoint (format {metadata.get('format')!r})")
    return metadata


def read_checkpoint_info(path: str | Path) -> dict[str, Any]:
    """Stage, step and data position of a checkpoint, from its header only (cheap, no tensors read)."""
    training = json.loads(_read_metadata(Path(path))["training"])
    return {"stage": training["stage"], "step": training["step"], "data": training["data"]}


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint` (tensors on the CPU)."""
    path = Path(path)
    metadata = _read_metadata(path)
    training = json.loads(metadata["training"])
    tensors = load_file(str(path))
    model_state = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    ema_state = {k[len("ema.") :]: v for k, v in tensors.items() if k.startswith("ema.")}
    optimizer_state = None
    if training["optimizer"] is not None:
        optimizer_tensors = {k: v for k, v in tensors.items() if k.startswith("optimizer.")}
        optimizer_state = unflatten_optimizer_state(optimizer_tensors, training["optimizer"])
    return Checkpoint(
        stage=training["stage"],
        step=int(training["step"]),
        model_config=ModelConfig.from_dict(json.loads(metadata["config"])),
        train_config=TrainConfig.from_dict(training["train_config"]),
        model_state=model_state,
        optimizer_state=optimizer_state,
        ema_state=ema_state if training.get("has_ema") else None,
        rng=training["rng"],
        data=training["data"],
    )


def state_digest(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 of a state dict (sorted keys, shapes, dtypes, raw bytes): equal digests = identical weights."""
    digest = hashlib.sha256()
    for key in sorted(state):
        tensor = state[key].detach().cpu().contiguous()
        digest.update(f"{key}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def latest_weights(run_dir: str | Path) -> tuple[ModelConfig, dict[str, torch.Tensor], str]:
    """The newest weights of a run: the checkpoint (its EMA where it has one), else the last finished stage.

    Returns (model config, trainable state dict, a description of where they came from).
    """
    from recolorize.training.stages import STAGE_ORDER

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"run folder {run_dir} does not exist")
    checkpoint_path = run_dir / CHECKPOINT_NAME
    if checkpoint_path.is_file():
        checkpoint = load_checkpoint(checkpoint_path)
        state = dict(checkpoint.model_state)
        if checkpoint.ema_state:
            state.update(checkpoint.ema_state)
        source = f"{checkpoint_path} (stage {checkpoint.stage}, step {checkpoint.step})"
        return checkpoint.model_config, state, source
    for stage in reversed(STAGE_ORDER):
        weights = run_dir / f"{stage}.safetensors"
        if weights.is_file():
            with safe_open(str(weights), framework="pt") as handle:
                metadata = handle.metadata() or {}
            if "config" not in metadata:
                raise UserError(f"{weights} has no model config in its metadata")
            return (
                ModelConfig.from_dict(json.loads(metadata["config"])),
                load_file(str(weights)),
                str(weights),
            )
    raise UserError(f"{run_dir} holds no {CHECKPOINT_NAME} and no finished stage weights")
