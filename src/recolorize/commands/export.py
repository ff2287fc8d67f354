"""``recolorize export RUN_DIR|WEIGHTS -o DIR``: a model as inference runs it, in DIR: the ONNX graphs
(features, predictor, generator ``.onnx``; ``recolorize.export.onnx``), ``model.json``, and the torch weights
``model.safetensors`` (fp16) that training and evaluation read.

From a run folder the newest weights are the checkpoint's (its EMA where the run keeps one), else the last
finished stage's ``{stage}.safetensors``; a ``.safetensors`` file is exported as it is. The graphs are traced
from the fp16 weights as saved, so a folder's graphs and its safetensors are the same model. The result
loads with ``Recolorizer.from_pretrained(DIR)`` (no torch) and ``RecolorModel.load(DIR/model.safetensors)``.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from recolorize.errors import UserError, require_training, shown, write_errors

__all__ = ["register", "run", "export_run"]

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``export`` subcommand."""
    parser = subparsers.add_parser(
        "export",
        help="write a run's newest weights (or a weight file) as the ONNX graphs inference runs",
        description=__doc__,
    )
    parser.add_argument(
        "run_dir",
        type=Path,
        metavar="RUN_DIR|WEIGHTS",
        help="folder of a `recolorize train` run, or a model.safetensors",
    )
    parser.add_argument("-o", "--out", required=True, type=Path, metavar="DIR", help="output folder")
    parser.set_defaults(func=run)


def export_run(run_dir: Path, out_dir: Path) -> Path:
    """Write ``out_dir/model.safetensors`` (fp16) and ``model.json`` from ``run_dir``; returns the path.

    The output folder is checked before the run is read (a file in the way, a read-only or unwritable
    folder); a write that fails all the same (a full disk) is one line too."""
    from recolorize.export.graphs import check_exportable
    from recolorize.export.onnx import export_onnx
    from recolorize.networks.model import RecolorModel, is_backbone_key
    from recolorize.networks.weights_file import check_finite
    from recolorize.training.checkpoint import latest_weights

    check_output_folder(out_dir)
    if run_dir.is_file():
        model = RecolorModel.load(run_dir)  # checked whole first; one WeightsError line otherwise
        source = run_dir
    else:
        config, state, source = latest_weights(run_dir)
        check_finite(source, state)  # a diverged run's NaN weights are not exported
        model = RecolorModel(config)
        missing, unexpected = model.load_state_dict(state, strict=False)
        missing = [k for k in missing if not is_backbone_key(k)]
        if missing or unexpected:
            raise UserError(
                f"{source} does not fit config {config.name}: missing {missing[:3]}, extra {unexpected[:3]}"
            )
    try:
        check_exportable(model)
        exportable = True
    except ValueError as error:  # an older design: its weights still serve eval and training's warm start
        logger.warning("%s; writing its weights only (eval reads them in torch)", error)
        exportable = False
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"output {out_dir} exists and is not a folder")
    path = out_dir / "model.safetensors"
    with write_errors(out_dir, "into the folder "):
        out_dir.mkdir(parents=True, exist_ok=True)
    if path.resolve() != Path(source).resolve():
        model.save(path, half=True)
    if exportable:
        with write_errors(out_dir, "ONNX graphs into "):
            export_onnx(RecolorModel.load(path), out_dir)  # traced from the weights as saved (fp16)
    logger.info("exported %s -> %s (fp16 safetensors and ONNX graphs)", source, out_dir)
    return path


def check_output_folder(out_dir: Path) -> None:
    """``out_dir`` is a folder, or can be made in the nearest folder that exists, and a file can be created
    there: a hidden probe file is made and removed at once (``os.access`` says yes to root on a read-only
    filesystem). Nothing is created on the way: a missing folder is made only when the weights are
    written."""
    import tempfile

    existing = next((p for p in (out_dir, *out_dir.parents) if p.exists()), Path("."))
    if not existing.is_dir():
        where = "is a file" if existing == out_dir else f"lies under {shown(existing)}, which is a file"
        raise UserError(f"output {shown(out_dir)} {where}, not a folder")
    with (
        write_errors(existing, "into the folder "),
        tempfile.TemporaryFile(dir=existing, prefix=".recolorize-"),
    ):
        pass


def run(args: argparse.Namespace) -> int:
    require_training("export")
    export_run(args.run_dir, args.out)
    return 0
