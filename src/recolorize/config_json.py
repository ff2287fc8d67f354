"""Model configs read from files: strictly, because a weight file or ``model.json`` may be hand-edited or
hostile (every key known, every value of its field's type and within bounds, one-line ``ValueError``s), and
the JSON writer of run folders.
"""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from recolorize.config import ModelConfig
from recolorize.errors import one_line

__all__ = [
    "CONFIG_METADATA_KEY",
    "model_config_from_json",
    "model_config_from_metadata",
    "model_config_from_text",
    "save_json",
]

#: Bounds of integer fields in a config read from a file: a model that big would not fit in memory, and
#: building it must stay cheap enough to check it against the weight file before anything is allocated.
#: None: the config checks the field itself (``resolution``: ``ModelConfig``'s check of the working
#: resolution's one range, that of ``--size``).
_INT_BOUNDS: dict[str, tuple[int, int] | None] = {"resolution": None, "pointwise_layers": (1, 32)}
_DEFAULT_INT_BOUNDS = (1, 4096)


def model_config_from_json(data: object) -> ModelConfig:
    """A ``ModelConfig`` from untrusted JSON (a ``model.json`` or a weight file's metadata), strictly.

    Unlike ``from_dict`` (for our own files), every key must be a known field, every value of the
    field's type and within bounds, so a hand-edited or hostile file is one clear ``ValueError`` and
    never a ``TypeError`` deep inside a network constructor or a huge allocation.
    """
    config = _dataclass_from_json(ModelConfig, data, "config")
    assert isinstance(config, ModelConfig)
    return config


#: Key of the ModelConfig JSON in the safetensors metadata of every weight file and checkpoint we write.
CONFIG_METADATA_KEY = "config"


def model_config_from_text(text: str, where: str) -> ModelConfig:
    """A ``ModelConfig`` from JSON text (a ``model.json``, or a weight file's or checkpoint's metadata).

    Read strictly (:func:`model_config_from_json`); anything wrong (not JSON, nested too deeply, a bad
    key or value) is one ``ValueError`` of one line that names ``where`` the text came from.
    """
    try:
        return model_config_from_json(json.loads(text, object_pairs_hook=_object_without_repeats))
    except RecursionError:
        raise ValueError(f"model config in {where} is nested too deeply") from None
    except ValueError as exc:  # json.JSONDecodeError is a ValueError too
        raise ValueError(f"bad model config in {where}: {one_line(exc)}") from None


def _object_without_repeats(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object as a dict, refusing a key given twice (``json.loads`` alone keeps the last one, so a
    reader of the file and this reader could disagree about the model it describes)."""
    data: dict[str, Any] = {}
    for key, value in pairs:
        if key in data:
            raise ValueError(f"the key {key[:40]!r} is given twice")
        data[key] = value
    return data


def model_config_from_metadata(metadata: Mapping[str, str], path: str | Path) -> ModelConfig:
    """The ``ModelConfig`` that a safetensors file at ``path`` keeps in its metadata (weights written by
    ``RecolorModel.save``, checkpoints, stage weights); a ``ValueError`` when it has none or a bad one."""
    if CONFIG_METADATA_KEY not in metadata:
        raise ValueError(f"{path} has no model config in its metadata")
    return model_config_from_text(metadata[CONFIG_METADATA_KEY], f"the metadata of {path}")


def _dataclass_from_json(cls: type, data: object, where: str) -> object:
    if not isinstance(data, dict):
        raise ValueError(f"{where} must be a JSON object, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(str(k) for k in data if k not in fields)
    if unknown:
        raise ValueError(f"{where} has unknown key(s) {', '.join(repr(k[:40]) for k in unknown[:5])}")
    missing = [
        name
        for name, f in fields.items()
        if name not in data and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ValueError(f"{where} lacks the key(s) {', '.join(map(repr, missing))}")
    hints = typing.get_type_hints(cls)
    values = {name: _json_value(hints[name], value, f"{where}.{name}") for name, value in data.items()}
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where}: {exc}") from None


def _json_value(kind: Any, value: object, where: str) -> object:
    """``value`` checked against the field type ``kind`` (and converted: lists to tuples)."""
    shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
    if typing.get_origin(kind) is Literal:
        allowed = typing.get_args(kind)
        if not any(type(value) is type(a) and value == a for a in allowed):
            raise ValueError(f"{where} must be one of {', '.join(map(repr, allowed))}, got {shown}")
        return value
    if kind is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{where} must be true or false, got {shown}")
        return value
    if kind is int:
        bounds = _INT_BOUNDS.get(where.rsplit(".", 1)[-1], _DEFAULT_INT_BOUNDS)
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"{where} must be an integer, got {shown}")
        if bounds is not None and not bounds[0] <= value <= bounds[1]:
            raise ValueError(f"{where} must be between {bounds[0]} and {bounds[1]}, got {value}")
        return value
    if kind is float:
        if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
            raise ValueError(f"{where} must be a number, got {shown}")
        if value <= 0:
            raise ValueError(f"{where} must be positive, got {value}")
        return float(value)
    if kind is str:
        if not isinstance(value, str) or not 0 < len(value) <= 100:
            raise ValueError(f"{where} must be a name (1-100 characters), got {shown}")
        return value
    if typing.get_origin(kind) is tuple:
        if not isinstance(value, list | tuple) or len(value) > 16:
            raise ValueError(f"{where} must be a list of integers, got {shown}")
        item = typing.get_args(kind)[0]
        return tuple(_json_value(item, v, f"{where}[{i}]") for i, v in enumerate(value))
    if dataclasses.is_dataclass(kind):
        return _dataclass_from_json(kind, value, where)
    raise ValueError(f"{where}: cannot read a value of type {kind}")  # pragma: no cover - a new field type


def save_json(data: dict[str, Any], path: str | Path) -> None:
    """Write a config dict as indented JSON (atomically)."""
    from recolorize.io_utils import atomic_write

    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
