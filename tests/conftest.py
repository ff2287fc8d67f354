"""Shared fixtures: tiny models on the CPU, real photos from ../shared/data when present."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest
import torch

SHARED_DATA = Path(
    os.environ.get("RECOLORIZE_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
)

# One thread: two OpenMP threads on a 2-core machine shared with anything else can run 100x slower.
torch.set_num_threads(1)

# The suite's own cache folder (converted weights, optimised graphs), for its processes and the commands
# they start: the many small models the tests export would otherwise churn the user's cache.
_CACHE = tempfile.mkdtemp(prefix="recolorize-test-cache-")
os.environ["RECOLORIZE_CACHE_DIR"] = _CACHE
atexit.register(shutil.rmtree, _CACHE, True)


@pytest.fixture(autouse=True)
def _blas_threads_as_they_were():
    """A photo command run in-process sets ``OPENBLAS_NUM_THREADS`` for its process (``cli.one_blas_thread``);
    the next test's subprocesses get the suite's own setting back."""
    before = os.environ.get("OPENBLAS_NUM_THREADS")
    yield
    if before is None:
        os.environ.pop("OPENBLAS_NUM_THREADS", None)
    else:
        os.environ["OPENBLAS_NUM_THREADS"] = before


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The read-only datasets every developer machine and CI has; tests that need them skip elsewhere."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real photo datasets not found at {SHARED_DATA} (set RECOLORIZE_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_model():
    """A seeded tiny RecolorModel with the real EfficientNet-Lite0 backbone, shared across tests."""
    from recolorize.config import get_config
    from recolorize.networks.model import RecolorModel

    torch.manual_seed(0)
    return RecolorModel(get_config("tiny")).eval()


@pytest.fixture(scope="session")
def photos(shared_data: Path) -> dict[str, Path]:
    """DPST pair 1 (source in1.png, reference tar1.png): the web app tests' upload pair."""
    paths = {
        "source": shared_data / "dpst" / "input" / "in1.png",
        "reference": shared_data / "dpst" / "style" / "tar1.png",
    }
    for path in paths.values():
        if not path.is_file():
            pytest.skip(f"DPST photo not found: {path}")
    return paths


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny pointwise model with the lattice prior (64 px), saved and exported: ``model.safetensors``
    with the ONNX graphs beside it, as ``recolorize export`` writes a model; a transfer takes ~50 ms."""
    from recolorize.config import get_config
    from recolorize.export.onnx import export_onnx
    from recolorize.networks.model import RecolorModel

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "model.safetensors"
    model = RecolorModel(get_config("tiny-lut"))
    with torch.no_grad():  # f is zero at initialisation (the identity on the prior): give it a visible part
        model.generator.to_rgb.weight.normal_(0.0, 0.5)
    model.save(path)
    export_onnx(RecolorModel.load(path), path.parent)
    return path


@pytest.fixture(scope="session")
def warm_cube(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small valid ``.cube`` (9^3, reds lifted 10 %) for the LUT commands' tests."""
    import numpy as np

    from recolorize.inference.lut import Lut3D, write_cube

    path = tmp_path_factory.mktemp("lut") / "warm.cube"
    lut = Lut3D.identity(9)
    lut.table[..., 0] = np.clip(lut.table[..., 0] * 1.1, 0, 1)
    write_cube(lut, path)
    return path
