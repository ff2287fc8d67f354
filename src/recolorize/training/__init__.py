"""Training: the paper's three stages as data, one loop for all of them, exact resume, DDP.

``recolorize train ...`` (or ``torchrun --nproc_per_node N -m recolorize.training ...``) runs
:func:`train`; ``recolorize export RUN_DIR -o DIR`` writes a run's newest weights as the fp16 model files.

One job per module: ``loop`` (:func:`train`, config resolution), ``runner`` (one stage's step loop),
``stages`` (the stages as data, loss terms, schedules), ``stage_network`` (what DDP wraps), ``batches``
(the data order), ``ema``, ``distributed`` (process group, rank helpers), ``run_folder`` (metrics CSV,
sample grids, config.json, stage weights), ``checkpoint`` (the checksummed resume file), ``resume_state``
(optimiser and RNG states as tensors and JSON) and ``arguments`` (the ``train`` options and torchrun's
``python -m recolorize.training`` entry point).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from recolorize.training.checkpoint import (
        CHECKPOINT_NAME,
        Checkpoint,
        latest_weights,
        load_checkpoint,
        read_checkpoint_info,
        save_checkpoint,
        state_digest,
    )
    from recolorize.training.loop import TrainRequest, apply_overrides, train
    from recolorize.training.run_folder import METRIC_FIELDS
    from recolorize.training.runner import StageSummary
    from recolorize.training.stages import STAGE_ORDER, STAGES, Stage, StageOutputs, get_stage

#: Public name -> the module that defines it. Imported on first use (PEP 562), not with the package:
#: ``recolorize train``'s options live in ``training.arguments``, which ``recolorize --help`` reads without
#: torch, the train extra's (``train`` then says in one line how to install it).
_EXPORTS: dict[str, str] = {
    **dict.fromkeys(
        (
            "CHECKPOINT_NAME",
            "Checkpoint",
            "latest_weights",
            "load_checkpoint",
            "read_checkpoint_info",
            "save_checkpoint",
            "state_digest",
        ),
        "checkpoint",
    ),
    **dict.fromkeys(("TrainRequest", "apply_overrides", "train"), "loop"),
    "METRIC_FIELDS": "run_folder",
    "StageSummary": "runner",
    **dict.fromkeys(("STAGE_ORDER", "STAGES", "Stage", "StageOutputs", "get_stage"), "stages"),
}


def __getattr__(name: str) -> Any:
    """A public name, imported from its module on first use."""
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)


__all__ = [
    "CHECKPOINT_NAME",
    "Checkpoint",
    "latest_weights",
    "load_checkpoint",
    "read_checkpoint_info",
    "save_checkpoint",
    "state_digest",
    "METRIC_FIELDS",
    "StageSummary",
    "TrainRequest",
    "apply_overrides",
    "train",
    "STAGE_ORDER",
    "STAGES",
    "Stage",
    "StageOutputs",
    "get_stage",
]
