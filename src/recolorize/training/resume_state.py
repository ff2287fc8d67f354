"""The parts of a run's state that are not weights, as safetensors tensors and JSON: the optimiser's
``state_dict`` (:func:`flatten_optimizer_state`) and every RNG a step draws from (:func:`capture_rng`).
Checkpoints (:mod:`recolorize.training.checkpoint`) store both; resuming puts them back."""

from __future__ import annotations

import base64
import random
from typing import Any

import numpy as np
import torch

__all__ = ["flatten_optimizer_state", "unflatten_optimizer_state", "capture_rng", "restore_rng"]


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
