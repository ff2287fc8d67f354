"""Weight files as untrusted input: checked whole before any weight is read.

A weight file is never unpickled (safetensors only); its header is parsed and checked against the file size
here before safetensors reads it, the config is read strictly (``config_json``), and every tensor name,
shape and kind is compared with the model the config describes before any weight is read. Every way a
weight file can be bad is one ``WeightsError`` (a ``ValueError``) in one sentence.
"""

from __future__ import annotations

import functools
import json
import math
import stat
import struct
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from torch import nn

from recolorize.config import ModelConfig
from recolorize.config_json import CONFIG_METADATA_KEY, model_config_from_text
from recolorize.errors import WeightsError, one_line

__all__ = ["check_file", "check_finite", "config_path_for", "read_safetensors_header"]


def config_path_for(weights_path: str | Path) -> Path:
    """The config JSON that sits beside a weight file: ``model.safetensors`` -> ``model.json``."""
    return Path(weights_path).with_suffix(".json")


#: safetensors' own cap on the JSON header; a real one is tens of KB.
_MAX_HEADER_BYTES = 100_000_000
#: A config JSON beside the weights is a few hundred bytes.
_MAX_CONFIG_BYTES = 1_000_000
_DTYPE_BYTES = {
    "F64": 8,
    "F32": 4,
    "F16": 2,
    "BF16": 2,
    "I64": 8,
    "I32": 4,
    "I16": 2,
    "I8": 1,
    "U8": 1,
    "BOOL": 1,
}
_FLOAT_DTYPES = {"F64", "F32", "F16", "BF16"}


def _regular_file(path: Path, what: str) -> int:
    """Size of ``path``; ``WeightsError`` when it is missing or not a regular file (a FIFO would hang)."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise WeightsError(f"{what} not found: {path}") from None
    except (OSError, ValueError) as exc:
        raise WeightsError(
            f"cannot read {what} {path}: {one_line(getattr(exc, 'strerror', None) or exc)}"
        ) from None
    if not stat.S_ISREG(info.st_mode):
        raise WeightsError(f"{what} {path} is not a regular file")
    return info.st_size


_PICKLE_MESSAGE = (
    "{path} is a pickle / torch.save file, not safetensors; pickles can run code, so only .safetensors "
    "weights are loaded"
)


def _looks_pickled(head: bytes) -> bool:
    """A pickle (protocol 2-5 opcode) or a ``torch.save`` zip; only asked once the file is not safetensors
    (a safetensors file starts with its header length, whose first byte can be anything)."""
    return (head[:1] == b"\x80" and 2 <= head[1] <= 5) or head.startswith(b"PK\x03\x04")


def read_safetensors_header(
    path: str | Path,
) -> tuple[dict[str, tuple[str, tuple[int, ...]]], dict[str, str]]:
    """The tensors ({name: (dtype, shape)}) and metadata of a safetensors file, checked against its size.

    Reads only the header, never the data, and never unpickles: a pickle or ``torch.save`` file renamed
    ``.safetensors``, a truncated file or a header that claims more bytes than the file has is a
    ``WeightsError`` before safetensors' own reader sees it.
    """
    path = Path(path)
    size = _regular_file(path, "model weights")
    try:
        with path.open("rb") as handle:
            head = handle.read(8)
            if len(head) < 8:
                raise WeightsError(f"{path} is {size} bytes, too short to be a safetensors file")
            (length,) = struct.unpack("<Q", head)
            if length > min(_MAX_HEADER_BYTES, size - 8) and _looks_pickled(head):
                raise WeightsError(_PICKLE_MESSAGE.format(path=path))
            if length > min(_MAX_HEADER_BYTES, size - 8):
                raise WeightsError(
                    f"{path} is not a complete safetensors file (its header claims {length:,} bytes, "
                    f"the file has {size:,}): truncated, or another kind of file"
                )
            raw = handle.read(length)
    except OSError as exc:
        raise WeightsError(f"cannot read model weights {path}: {one_line(exc.strerror or exc)}") from None
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        if _looks_pickled(head):
            raise WeightsError(_PICKLE_MESSAGE.format(path=path)) from None
        raise WeightsError(f"{path} is not a safetensors file (its header is not JSON)") from None
    if not isinstance(header, dict):
        raise WeightsError(f"{path} is not a safetensors file (its header is not a JSON object)")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise WeightsError(f"{path} has malformed safetensors metadata")
    available = size - 8 - length
    tensors: dict[str, tuple[str, tuple[int, ...]]] = {}
    for name, entry in header.items():
        shown = repr(name[:60])
        try:
            dtype, shape, (start, end) = entry["dtype"], entry["shape"], entry["data_offsets"]
            ints = [*shape, start, end]
            if dtype not in _DTYPE_BYTES or not all(type(v) is int and v >= 0 for v in ints):
                raise TypeError
        except (TypeError, KeyError, ValueError):
            raise WeightsError(f"{path} has a malformed safetensors entry for tensor {shown}") from None
        if end > available:
            raise WeightsError(f"{path} is truncated: tensor {shown} ends past the end of the file")
        if end - start != math.prod(shape) * _DTYPE_BYTES[dtype]:
            raise WeightsError(
                f"{path}: tensor {shown} has {end - start} bytes for shape {tuple(shape)} {dtype}"
            )
        tensors[name] = (dtype, tuple(shape))
    return tensors, metadata


def _read_config(path: Path, metadata: dict[str, str]) -> ModelConfig:
    """The config JSON beside ``path``, else the one in the file's metadata, read strictly."""
    config_file = config_path_for(path)
    if config_file.exists() or config_file.is_symlink():
        where = str(config_file)
        if _regular_file(config_file, "model config") > _MAX_CONFIG_BYTES:
            raise WeightsError(f"model config {config_file} is too large to be a config")
        try:
            text = config_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise WeightsError(f"cannot read model config {config_file}: {one_line(exc)}") from None
    elif CONFIG_METADATA_KEY in metadata:
        where, text = f"the metadata of {path}", metadata[CONFIG_METADATA_KEY]
    else:
        raise WeightsError(f"{path} has no config (no {config_file.name} beside it, none inside)")
    try:
        return model_config_from_text(text, where)
    except ValueError as exc:  # one line that names where the config came from
        raise WeightsError(str(exc)) from None


def check_file(path: str | Path, skeleton: Callable[[ModelConfig], nn.Module]) -> ModelConfig:
    """Check a weight file without loading it: header, config, and every tensor's name, shape and kind.

    skeleton: builds the model a config describes (``networks.model``'s, passed in so that this module,
    which the model module loads weights through, never imports it).

    Cheap (no weight is read), so the CLI calls it before decoding any photo; ``WeightsError`` says what
    does not fit. The skeleton is built on the ``meta`` device, which allocates nothing whatever the config
    asks for, except for a config equal to one of ours (the shipped one): those are small by construction
    and build on the CPU, while torch's meta path imports sympy (~0.3 s of every CLI run); either is built
    once per config and process (``_expected_tensors``).
    """
    path = Path(path)
    tensors, metadata = read_safetensors_header(path)
    config = _read_config(path, metadata)
    try:
        expected = _expected_tensors(config, skeleton)
    except Exception as exc:  # noqa: BLE001 - a config that passed the checks but builds no model
        raise WeightsError(
            f"{path}: config {config.name!r} does not build a model ({one_line(exc)})"
        ) from None
    missing = [k for k in expected if k not in tensors]
    unexpected = [k for k in tensors if k not in expected]
    if missing or unexpected:
        parts = [f"{len(missing)} missing tensor(s) ({', '.join(missing[:3])})"] if missing else []
        parts += (
            [f"{len(unexpected)} unexpected ({', '.join(u[:60] for u in unexpected[:3])})"]
            if unexpected
            else []
        )
        raise WeightsError(f"{path} does not fit config {config.name!r}: {'; '.join(parts)}")
    for name, want in expected.items():
        dtype, shape = tensors[name]
        want_shape, want_dtype = want
        if shape != want_shape:
            raise WeightsError(
                f"{path} does not fit config {config.name!r}: {name} has shape {shape}, the model needs "
                f"{want_shape}"
            )
        if (dtype in _FLOAT_DTYPES) != want_dtype.is_floating_point:
            raise WeightsError(f"{path}: tensor {name} is {dtype}, the model needs {want_dtype}")
    return config


def check_finite(path: str | Path, tensors: Mapping[str, torch.Tensor]) -> None:
    """``WeightsError`` when a floating-point tensor of ``tensors`` (read from ``path``) holds NaN or
    infinity: such weights render a black or white photo, or NaN, so they are refused where they are read
    (``RecolorModel.load``, ``recolorize export``). One sum per tensor, then one test (~1 ms for the
    shipped model; NaN or inf anywhere makes the total non-finite, and only then, or when a huge sum
    overflowed, is each tensor checked); the header check (``check_weights``) reads no weight."""
    floats = {name: tensor for name, tensor in tensors.items() if tensor.is_floating_point()}
    if not floats or bool(torch.isfinite(torch.stack([t.sum().float() for t in floats.values()]).sum())):
        return
    broken = [name for name, tensor in floats.items() if not bool(torch.isfinite(tensor).all())]
    if broken:
        shown = ", ".join(name[:60] for name in broken[:3]) + (" ..." if len(broken) > 3 else "")
        raise WeightsError(
            f"{path} holds NaN or infinite weights in {len(broken)} tensor(s) ({shown}): the file is broken, "
            "e.g. saved by a diverged training run"
        )


@functools.lru_cache(maxsize=8)
def _expected_tensors(
    config: ModelConfig, skeleton: Callable[[ModelConfig], nn.Module]
) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """Tensor name -> (shape, dtype) of the model ``config`` builds, from a skeleton built once per config
    and process (callers must not change the dict).

    Why kept: ``transfer`` checks the weight file before decoding any photo and ``RecolorModel.load`` checks
    it again before reading it; building the skeleton twice was ~0.05-0.09 s of every CLI run. The file
    itself (header, names, shapes) is read and compared every time.
    """
    from recolorize.config import CONFIGS

    known = CONFIGS.get(config.name) == config
    # fork_rng: checking a file must not move the global random stream (training seeds after it)
    with torch.random.fork_rng(devices=[]), torch.device("cpu" if known else "meta"):
        built = skeleton(config)
    return {
        name: (tuple(tensor.shape), tensor.dtype) for name, tensor in built.trainable_state_dict().items()
    }
