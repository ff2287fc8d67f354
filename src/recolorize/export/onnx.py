"""Write a trained model as the ONNX graphs inference runs (``recolorize.inference.onnx_model``).

The one bridge between the torch side (networks, training) and the torch-free inference: ``torch.onnx.export``
(the TorchScript exporter, opset 17) traces each graph of :mod:`recolorize.export.graphs` at the model's
working resolution, with the batch, the image size and the number of references dynamic. The frozen
EfficientNet-Lite0 layers the model reads go inside the graphs (``features`` and ``predictor``), so inference
needs neither torch nor the package the backbone's weights come from.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import warnings
from pathlib import Path

import torch

from recolorize.export.graphs import FeaturesGraph, GeneratorGraph, PredictorGraph, check_exportable
from recolorize.inference.onnx_model import CONFIG_FILE, EXPORT_FILE, GRAPHS
from recolorize.networks.model import RecolorModel

__all__ = ["OPSET", "export_onnx"]

#: The ONNX opset written: every operator the graphs use has been in ONNX Runtime's CPU provider since 1.12.
OPSET = 17


def _export(module: torch.nn.Module, example: tuple, path: Path, inputs: dict, outputs: dict) -> None:
    """One graph: ``inputs`` / ``outputs`` map each name to its dynamic axes ({axis: name})."""
    with warnings.catch_warnings():
        # the tracer's warnings name Python values it froze; every one was checked (sizes fixed by the
        # config, shape checks) and the parity tests run the graphs at other sizes than the traced one
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            example,
            str(path),
            input_names=list(inputs),
            output_names=list(outputs),
            dynamic_axes={name: axes for name, axes in {**inputs, **outputs}.items() if axes},
            opset_version=OPSET,
            dynamo=False,
        )
    _drop_empty_trailing_inputs(path)


def _drop_empty_trailing_inputs(path: Path) -> None:
    """Remove the empty names the exporter leaves for omitted optional inputs at the end of a node's inputs
    (``F.pad``'s Pad gets ``constant_value = ""``): the same graph in ONNX's terms, but ONNX Runtime takes
    an empty-named input for one it cannot see is constant, and then keeps each Pad instead of fusing it
    into the next Conv's padding, with a layout change on both sides of it. Without them the frozen
    features of two 384-px photos run in ~50 ms instead of ~70 (first run ~65 instead of ~140), the same
    numbers."""
    import onnx  # export-time only (the ``train`` extra)

    graph = onnx.load(str(path))
    changed = False
    for node in graph.graph.node:
        while len(node.input) and not node.input[-1]:
            node.input.pop()
            changed = True
    if changed:
        onnx.save(graph, str(path))


@torch.no_grad()
def export_onnx(model: RecolorModel, out_dir: str | Path) -> list[Path]:
    """Write ``out_dir``/{features,predictor,generator}.onnx, ``model.json`` and ``export.json``; returns the
    paths. The graphs are written to a temporary folder beside ``out_dir`` and moved in at the end, so an
    interrupted export leaves the previous files whole."""
    check_exportable(model)
    model = model.cpu().eval()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    r = model.config.resolution
    latent, (h16, h8, h4) = model.config.latent_dim, (r // 16, r // 8, r // 4)
    maps_axes = {"self_maps": {}, "maps_1": {}, "maps_2": {}, "maps_3": {}, "hint": {}}
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".export-") as scratch:
        folder = Path(scratch)
        _export(
            FeaturesGraph(model),
            (torch.rand(2, 3, 384, 384),),
            folder / "features.onnx",
            {"image": {0: "batch", 2: "height", 3: "width"}},
            {
                "fine": {0: "batch", 2: "height_8", 3: "width_8"},
                "coarse": {0: "batch", 2: "height_16", 3: "width_16"},
            },
        )
        _export(
            PredictorGraph(model),
            (torch.rand(1, 3, r, r), torch.rand(2, 3, r, r)),
            folder / "predictor.onnx",
            {"source": {}, "references": {0: "references"}},
            {"maps_1": {}, "maps_2": {}, "maps_3": {}, "self_maps": {}, "hint": {3: "hint_width"}},
        )
        _export(
            GeneratorGraph(model),
            (
                torch.rand(200, 300, 3),
                torch.rand(200, 300, 3),
                torch.rand(1, 3, r, r),
                torch.rand(1, latent, h16, h16),
                torch.rand(1, latent, h16, h16),
                torch.rand(1, latent, h8, h8),
                torch.rand(1, latent, h4, h4),
                torch.rand(1, 4, h8, h8),
                torch.tensor([0.5]),
                # rows 40-239 of a 320-row image (whole rows of 10 x 32 cells): the general case is traced
                torch.tensor([40, 320]),
            ),
            folder / "generator.onnx",
            {
                "image": {0: "height", 1: "width"},
                "base": {0: "height", 1: "width"},
                "source_low": {},
                **maps_axes,
                "strength": {},
                "band": {},
            },
            {"output": {0: "height", 1: "width"}},
        )
        (folder / CONFIG_FILE).write_text(json.dumps(model.config.to_dict(), indent=2, sort_keys=True) + "\n")
        (folder / EXPORT_FILE).write_text(json.dumps({"resolution": r, "opset": OPSET}, indent=2) + "\n")
        written = []
        for name in [*(f"{graph}.onnx" for graph in GRAPHS), CONFIG_FILE, EXPORT_FILE]:
            shutil.move(str(folder / name), str(out_dir / name))
            written.append(out_dir / name)
    return written
