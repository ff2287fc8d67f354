"""The shipped model as ONNX Runtime sessions: a folder of ``model.json`` (the config) and three graphs.

``recolorize export`` writes them from a trained model (``recolorize.export``; torch only there):

    features.onnx   image (N, 3, H, W) in [0, 1]
                    -> fine (N, 40, H/8, W/8), coarse (N, 112, H/16, W/16)
    predictor.onnx  source (1, 3, r, r), references (k, 3, r, r)
                    -> maps_1, maps_2, maps_3 (W1..W3), self_maps (W0_S), hint
    generator.onnx  image, base (H, W, 3); source_low (1, 3, r, r); self_maps, maps_1..3, hint; strength (1,);
                    band (2,) int64: (top, full height) of these rows -> output (H, W, 3), not clipped

No torch here: the sessions run on the CPU, or on CUDA with ``device="cuda"`` where ``onnxruntime-gpu``
provides it. Loading treats the folder as untrusted: a missing or unreadable graph, or a config that does
not parse, is one ``WeightsError`` line naming the file (ONNX files hold no code to run).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import platform
from concurrent.futures import Future
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from recolorize.config import ModelConfig, resolution_problem
from recolorize.config_json import model_config_from_text
from recolorize.errors import UserError, WeightsError, one_line
from recolorize.io_utils import TEMP_PREFIX, cache_dir
from recolorize.threads import cores, in_background

__all__ = [
    "GRAPHS",
    "band_edges",
    "OnnxModel",
    "PredictedMaps",
    "check_device",
    "default_weights_path",
    "model_folder",
    "is_model_folder",
    "onnx_providers",
    "read_config",
    "read_resolution",
]

logger = logging.getLogger(__name__)

#: The graphs that run on one thread whatever ``threads`` says. Why P_W's: ONNX Runtime's convolutions on its
#: 8 x 8 maps sum in another order on two threads or more (its maps moved by ~1e-5, and 250 pixels in a
#: million of 20 1-MP photos by up to 5 levels), so the same photo came out differently with ``--jobs 2``
#: (each helper one thread) than with ``--jobs 1``, or on a machine with more cores. The frozen features and
#: the generator give the same bits at 1 to 8 threads (a test holds 1 to 3). On one thread P_W takes ~32 ms a
#: pair instead of ~24, which ``Recolorizer.prepare`` hides: it runs P_W beside the prior's fit.
ONE_THREAD_GRAPHS = frozenset({"predictor"})
#: Pixels per call of the generator graph: a band of about this many (see ``OnnxModel.generate``).
BAND_PIXELS = 1 << 15
#: The graphs of an exported model, by file stem.
GRAPHS: tuple[str, ...] = ("features", "predictor", "generator")
#: Every file of an exported model besides the graphs: the config.
CONFIG_FILE = "model.json"
#: Optimised graphs the cache keeps (``_session``): the three of four models.
OPTIMISED_KEPT = 12
#: Where the exporter records the working resolution the predictor graph was traced at.
EXPORT_FILE = "export.json"


def is_model_folder(path: Path) -> bool:
    """Whether ``path`` is a folder holding an exported model (its config and graphs)."""
    return path.is_dir() and all((path / f"{name}.onnx").is_file() for name in GRAPHS)


def default_weights_path() -> Path:
    """The model shipped inside the package: the folder ``recolorize/weights`` (graphs and config)."""
    return Path(str(resources.files("recolorize") / "weights"))


def model_folder(path: str | Path | None) -> Path:
    """The exported model folder named by ``path``: the folder itself, or the folder of a file in it (a
    ``model.safetensors`` or ``model.json`` beside the graphs); None = the shipped model. ``WeightsError``
    (one line) when there are no graphs there."""
    folder = default_weights_path() if path is None else Path(path)
    if not folder.is_dir():
        if not folder.exists():
            raise WeightsError(f"cannot load model weights {folder}: no such file or folder")
        folder = folder.parent
    if not is_model_folder(folder):
        raise WeightsError(
            f"cannot load model weights {path}: no ONNX graphs (features, predictor, generator .onnx) in "
            f"{folder}; write them with: recolorize export WEIGHTS -o FOLDER"
        )
    return folder


def check_device(device: str) -> str:
    """``device`` if ONNX Runtime can run on it here ("cpu", "cuda", "cuda:N"); else ``UserError``."""
    onnx_providers(str(device))
    return str(device)


def onnx_providers(device: str) -> list[str]:
    """ONNX Runtime's execution providers for ``device`` ("cpu", "cuda" or "cuda:N"); ``UserError`` when
    that device cannot run here (an unknown name, or CUDA without onnxruntime-gpu)."""
    name = str(device).split(":")[0]
    if name == "cpu":  # always there: no ONNX Runtime import here (a command checks its model before the
        return ["CPUExecutionProvider"]  # photos decode, and ONNX Runtime is imported while they do)
    import onnxruntime

    if name != "cuda":
        raise UserError(f"unknown device {device!r}; use cpu or cuda")
    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        raise UserError(
            "--device cuda needs ONNX Runtime's CUDA provider (none is here): pip install onnxruntime-gpu"
        )
    return ["CUDAExecutionProvider", "CPUExecutionProvider"]


@dataclass
class PredictedMaps:
    """P_W's outputs for one pair at the working resolution (numpy, batch 1)."""

    maps: list[np.ndarray]  # W1 (1/16), W2 (1/8), W3 (1/4): (1, C, h, w) each
    self_maps: np.ndarray  # W0_S = E_W(I_S), (1, C, r/16, r/16)
    hint: np.ndarray  # the colour hint (1, 4, r/8, r/8)


class OnnxModel:
    """The three sessions and the config of an exported model folder.

    The sessions load in a thread, in the order a transfer needs them (features, predictor, generator), and
    each method waits only for its own graph. Why: the three take ~0.05-0.09 s (from the cache of optimised
    graphs); the frozen features' graph alone ~0.01-0.025 s, so a transfer starts on it while the other two
    load beside its first steps (the prior's fit runs on one core). ``wait`` waits for all three and raises
    the first graph's error, as loading them here used to; ``Recolorizer.from_pretrained`` calls it unless
    told not to."""

    def __init__(self, folder: str | Path, device: str = "cpu", threads: int | None = None) -> None:
        self.folder = Path(folder)
        self.config = read_config(self.folder)
        self.resolution = read_resolution(self.folder, self.config)
        providers = onnx_providers(device)
        self.device = str(device)
        threads = threads if threads is not None else cores()
        paths = {name: self.folder / f"{name}.onnx" for name in GRAPHS}
        for path in paths.values():
            if not path.is_file():
                raise WeightsError(f"cannot load the model: {path} is missing (export it: recolorize export)")
        self._loading: dict[str, Future[Any]] = {name: Future() for name in GRAPHS}

        def load() -> None:
            try:
                for name, path in paths.items():
                    try:
                        session = _session(path, 1 if name in ONE_THREAD_GRAPHS else threads, providers)
                        if name == "predictor":
                            self._check_predictor(session)
                    except WeightsError as error:
                        self._loading[name].set_exception(error)
                    except Exception as error:  # noqa: BLE001 - a damaged graph is one line, no traceback
                        message = f"cannot load the model graph {path}: {one_line(error)}"
                        self._loading[name].set_exception(WeightsError(message))
                    else:
                        self._loading[name].set_result(session)
            finally:  # whatever stopped the loop, no step waits for ever
                for name, future in self._loading.items():
                    if not future.done():
                        future.set_exception(WeightsError(f"the model graph {paths[name]} was not loaded"))

        in_background(load)  # each graph's outcome is in its own future

    def _check_predictor(self, session: Any) -> None:
        """P_W's graph takes this model's working resolution (a graph exported at another is refused)."""
        source_shape = session.get_inputs()[0].shape  # (1, 3, r, r), fixed when traced
        if list(source_shape[2:]) != [self.resolution] * 2:
            raise WeightsError(
                f"{self.folder / 'predictor.onnx'} takes {source_shape} images, not the working resolution "
                f"{self.resolution} of {self.folder / EXPORT_FILE} (export the model again)"
            )

    def session(self, name: str) -> Any:
        """The ONNX Runtime session of graph ``name`` (waits for it to load; its load error is raised)."""
        return self._loading[name].result()

    def wait(self) -> OnnxModel:
        """Wait for every graph; the first one's load error, in ``GRAPHS`` order, is raised."""
        self.sessions  # noqa: B018 - waits for all three
        return self

    @property
    def sessions(self) -> dict[str, Any]:
        """All three sessions by graph name (waits for them)."""
        return {name: self.session(name) for name in GRAPHS}

    def features(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """phi(I) of (N, 3, H, W) float32 images: (1/8, 1/16) features."""
        fine, coarse = self.session("features").run(None, {"image": np.ascontiguousarray(images, np.float32)})
        return fine, coarse

    def predict(self, source_low: np.ndarray, references_low: np.ndarray) -> PredictedMaps:
        """P_W(I_S, I_R) and W0_S: source (1, 3, r, r), references (k, 3, r, r)."""
        outputs = self.session("predictor").run(
            None,
            {
                "source": np.ascontiguousarray(source_low, np.float32),
                "references": np.ascontiguousarray(references_low, np.float32),
            },
        )
        return PredictedMaps(maps=list(outputs[:3]), self_maps=outputs[3], hint=outputs[4])

    def generate(
        self,
        image: np.ndarray,
        base: np.ndarray,
        source_low: np.ndarray,
        predicted: PredictedMaps,
        strength: float,
    ) -> np.ndarray:
        """G'(I, W_alpha) on every pixel of ``image`` (H, W, 3): (H, W, 3) float32, not clipped.

        In bands of about ``BAND_PIXELS`` (whole rows of the finest latent grid's cells: the same numbers as
        one call), so the graph's temporaries, ~1.2 kB a pixel, stay ~40 MB at any size; 32k pixels a band
        measured fastest on a 0.26-MP copy (0.28 s, against 0.30 s for 64k, 0.46 s for 4k, 0.68 s whole)."""
        image = np.ascontiguousarray(image, np.float32)
        base = np.ascontiguousarray(base, np.float32)
        height, width = image.shape[:2]
        cells = predicted.maps[2].shape[2]  # the finest grid's rows (W3, 1/4 of the working resolution)
        band_cells = max(1, min(cells, cells * BAND_PIXELS // max(1, height * width)))
        edges = band_edges(height, cells, band_cells)
        out = np.empty((height, width, 3), dtype=np.float32)
        feed = {
            "source_low": np.ascontiguousarray(source_low, np.float32),
            "self_maps": predicted.self_maps,
            "maps_1": predicted.maps[0],
            "maps_2": predicted.maps[1],
            "maps_3": predicted.maps[2],
            "hint": predicted.hint,
            "strength": np.array([strength], dtype=np.float32),
        }
        generator = self.session("generator")
        for top, bottom in zip(edges[:-1], edges[1:], strict=True):
            feed.update(image=image[top:bottom], base=base[top:bottom], band=np.array([top, height]))
            out[top:bottom] = generator.run(None, feed)[0]
        return out


def _options(threads: int, optimise: bool = True) -> Any:
    """ONNX Runtime's session options: ``threads`` for a graph's sums, no optimisation for a graph that
    was optimised already (``_session``)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # idle threads sleep rather than spin: between the graphs the process runs NumPy (the prior, the
    # carry-up, a LUT) on the same cores, and spinning ONNX Runtime threads took them from it (5 BSDS
    # photos: 2.0 s a photo spinning, 0.4 s sleeping, on 2 cores)
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3  # warnings about unused initialisers are not the user's business
    # no arena: each run gives its temporaries back (a 12-MP transfer peaked ~200 MB higher with it),
    # measured at the same speed
    options.enable_cpu_mem_arena = False
    if not optimise:
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
    return options


def _session(path: Path, threads: int, providers: list[str]) -> Any:
    """An ONNX Runtime session of the graph at ``path``, through the cache of optimised graphs.

    Why: ONNX Runtime optimises a graph each time a session is made (fusions, the CPU's own layouts):
    ~0.17 s for the three graphs of the shipped model, on every command. It can save the optimised graph;
    loading that one unoptimised takes ~0.05 s and computes the same numbers. The saved graph may hold
    kernels for this CPU only, so the cache key names the graph file (path, size, time), the ONNX Runtime
    version and the CPU's flags; a cached graph that does not load is made again, and a cache folder that
    cannot be written only means no cache. The CUDA provider is not cached."""
    import onnxruntime

    cached = _optimised_path(path, onnxruntime.__version__) if providers == ["CPUExecutionProvider"] else None
    if cached is not None and cached.is_file():
        try:
            session = onnxruntime.InferenceSession(str(cached), _options(threads, False), providers=providers)
        except Exception:  # noqa: BLE001 - a damaged cache file is made again below
            logger.debug("the optimised graph %s does not load; optimising %s again", cached, path)
        else:
            with contextlib.suppress(OSError):
                os.utime(cached)  # recently used: kept when the cache is trimmed
            return session
    options = _options(threads)
    temporary = None
    if cached is not None:
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            temporary = cached.with_name(f"{TEMP_PREFIX}{cached.name}.{os.getpid()}.tmp")
            options.optimized_model_filepath = str(temporary)
        except OSError as error:
            logger.debug("no cache of optimised graphs in %s (%s)", cached.parent, error)
            temporary = None
    try:
        session = onnxruntime.InferenceSession(str(path), options, providers=providers)
    except Exception:
        if temporary is None:
            raise
        # the graph itself may be fine and only the cache file unwritable: try once more without it
        temporary.unlink(missing_ok=True)
        return onnxruntime.InferenceSession(str(path), _options(threads), providers=providers)
    if temporary is not None and cached is not None:
        try:
            os.replace(temporary, cached)  # whole or not at all, as another process may read it now
            _trim_cache(cached)
        except OSError as error:
            logger.debug("cannot keep the optimised graph %s (%s)", cached, error)
            temporary.unlink(missing_ok=True)
    return session


def _trim_cache(kept: Path) -> None:
    """After ``kept`` was written: the same install's graph from before it changed goes, and the cache
    keeps only the ``OPTIMISED_KEPT`` most recently used graphs (models exported to many folders, a test
    suite's, would otherwise pile up ~13 MB each)."""
    folder = kept.parent
    for stale in folder.glob(f"{kept.name.rsplit('-', 1)[0]}-*.onnx"):
        if stale != kept:
            stale.unlink(missing_ok=True)
    graphs = sorted(folder.glob("*.onnx"), key=lambda p: p.stat().st_mtime_ns, reverse=True)
    for old in graphs[OPTIMISED_KEPT:]:
        if old != kept:
            old.unlink(missing_ok=True)


def _optimised_path(path: Path, version: str) -> Path:
    """Where the optimised copy of the graph at ``path`` is cached: ``<stem>-<install>-<key>.onnx`` in the
    user cache folder's ``onnx/``, the install (the graph's folder) and the key (its size and time, ONNX
    Runtime's version, the CPU's flags) hashed."""
    resolved = path.resolve()
    info = resolved.stat()
    install = hashlib.sha256(os.fsencode(resolved.parent)).hexdigest()[:10]
    stamp = f"{info.st_size}|{info.st_mtime_ns}|{version}|{_cpu_flags()}"
    key = hashlib.sha256(stamp.encode("utf-8", "surrogateescape")).hexdigest()[:16]
    return cache_dir() / "onnx" / f"{resolved.stem}-{install}-{key}.onnx"


@functools.lru_cache(maxsize=1)
def _cpu_flags() -> str:
    """What the CPU can do (Linux: /proc/cpuinfo's first flags line), so a cache shared by machines keeps
    one optimised graph per kind of CPU. Read once a process (each graph's key asks for it)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            for line in info:
                if line.startswith(("flags", "Features")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return f"{platform.machine()} {platform.processor()}"


def read_config(folder: Path) -> ModelConfig:
    """The config of the exported model in ``folder`` (its ``model.json``), read strictly: one
    ``WeightsError`` line naming the file when it is unreadable or bad."""
    path = folder / CONFIG_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise WeightsError(f"cannot read the model config {path}: {one_line(error)}") from None
    try:
        return model_config_from_text(text, str(path))
    except ValueError as error:  # one line naming the file already
        raise WeightsError(one_line(error, 500)) from None


def read_resolution(folder: Path, config: ModelConfig) -> int:
    """The working resolution the predictor graph in ``folder`` runs at (the config's, unless export.json
    says), in the one range of working resolutions; else one ``WeightsError`` line."""
    path = folder / EXPORT_FILE
    if not path.is_file():
        return config.resolution
    try:
        value = json.loads(path.read_text(encoding="utf-8"))["resolution"]
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as error:
        raise WeightsError(f"cannot read {path}: {one_line(error)}") from None
    if not isinstance(value, int) or isinstance(value, bool):
        raise WeightsError(f"bad {path}: resolution must be an integer, got {one_line(repr(value), 40)}")
    problem = resolution_problem(value)
    if problem is not None:
        raise WeightsError(f"bad {path}: resolution {problem}")
    return value


def band_edges(height: int, cells: int, band_cells: int) -> list[int]:
    """Where the generator's bands of a ``height``-row image start (and the last one ends): every
    ``band_cells``-th start of a row of the finest latent grid's ``cells`` rows, ``ceil(k H / cells)`` (a
    band must hold whole cell rows: ``networks.blocked.render_blocked``)."""
    starts = {(k * height + cells - 1) // cells for k in range(0, cells, band_cells)}
    return sorted(starts | {height})
