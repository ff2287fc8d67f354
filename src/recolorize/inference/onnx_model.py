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

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recolorize.config import ModelConfig, resolution_problem
from recolorize.config_json import model_config_from_text
from recolorize.errors import UserError, WeightsError, one_line
from recolorize.threads import cores

__all__ = [
    "GRAPHS",
    "band_edges",
    "OnnxModel",
    "PredictedMaps",
    "is_model_folder",
    "onnx_providers",
    "read_config",
    "read_resolution",
]

#: Pixels per call of the generator graph: a band of about this many (see ``OnnxModel.generate``).
BAND_PIXELS = 1 << 15
#: The graphs of an exported model, by file stem.
GRAPHS: tuple[str, ...] = ("features", "predictor", "generator")
#: Every file of an exported model besides the graphs: the config.
CONFIG_FILE = "model.json"
#: Where the exporter records the working resolution the predictor graph was traced at.
EXPORT_FILE = "export.json"


def is_model_folder(path: Path) -> bool:
    """Whether ``path`` is a folder holding an exported model (its config and graphs)."""
    return path.is_dir() and all((path / f"{name}.onnx").is_file() for name in GRAPHS)


def onnx_providers(device: str) -> list[str]:
    """ONNX Runtime's execution providers for ``device`` ("cpu", "cuda" or "cuda:N"); ``UserError`` when
    that device cannot run here (an unknown name, or CUDA without onnxruntime-gpu)."""
    import onnxruntime

    name = str(device).split(":")[0]
    if name == "cpu":
        return ["CPUExecutionProvider"]
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
    """The three sessions and the config of an exported model folder."""

    def __init__(self, folder: str | Path, device: str = "cpu", threads: int | None = None) -> None:
        import onnxruntime

        self.folder = Path(folder)
        self.config = read_config(self.folder)
        self.resolution = read_resolution(self.folder, self.config)
        providers = onnx_providers(device)
        self.device = str(device)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads if threads is not None else cores()
        options.inter_op_num_threads = 1
        # idle threads sleep rather than spin: between the graphs the process runs NumPy (the prior, the
        # carry-up, a LUT) on the same cores, and spinning ONNX Runtime threads took them from it (5 BSDS
        # photos: 2.0 s a photo spinning, 0.4 s sleeping, on 2 cores)
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3  # warnings about unused initialisers are not the user's business
        # no arena: each run gives its temporaries back (a 12-MP transfer peaked ~200 MB higher with it),
        # measured at the same speed
        options.enable_cpu_mem_arena = False
        self.sessions = {}
        for name in GRAPHS:
            path = self.folder / f"{name}.onnx"
            if not path.is_file():
                raise WeightsError(f"cannot load the model: {path} is missing (export it: recolorize export)")
            try:
                self.sessions[name] = onnxruntime.InferenceSession(str(path), options, providers=providers)
            except Exception as error:  # noqa: BLE001 - a damaged graph is one line, never a traceback
                raise WeightsError(f"cannot load the model graph {path}: {one_line(error)}") from None
        source_shape = self.sessions["predictor"].get_inputs()[0].shape  # (1, 3, r, r), fixed when traced
        if list(source_shape[2:]) != [self.resolution] * 2:
            raise WeightsError(
                f"{self.folder / 'predictor.onnx'} takes {source_shape} images, not the working resolution "
                f"{self.resolution} of {self.folder / EXPORT_FILE} (export the model again)"
            )

    def features(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """phi(I) of (N, 3, H, W) float32 images: (1/8, 1/16) features."""
        fine, coarse = self.sessions["features"].run(
            None, {"image": np.ascontiguousarray(images, np.float32)}
        )
        return fine, coarse

    def predict(self, source_low: np.ndarray, references_low: np.ndarray) -> PredictedMaps:
        """P_W(I_S, I_R) and W0_S: source (1, 3, r, r), references (k, 3, r, r)."""
        outputs = self.sessions["predictor"].run(
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
        for top, bottom in zip(edges[:-1], edges[1:], strict=True):
            feed.update(image=image[top:bottom], base=base[top:bottom], band=np.array([top, height]))
            out[top:bottom] = self.sessions["generator"].run(None, feed)[0]
        return out


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
