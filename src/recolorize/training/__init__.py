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
