"""Training, start to end: :func:`train` resolves what to train, then runs the stages one after another.

:func:`train` resolves the configs (named config, ``--init`` weights or the run's checkpoint, then
``--set`` overrides, :func:`apply_overrides`), finds the photos or the training cache, builds or restores
the model, prepares the run folder and runs the requested stages in order with
:func:`~recolorize.training.runner.run_stage`. What one stage does is in ``runner.py``; which networks
learn on what data under which losses is data in ``stages.py``; DDP set-up in ``distributed.py``; the run
folder's files in ``run_folder.py``; checkpoints in ``checkpoint.py``.

Under ``torchrun`` (RANK / WORLD_SIZE set) the process group is initialised here (NCCL on CUDA, gloo on the
CPU); ``StageConfig.batch`` is the global batch, split evenly over the ranks.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import random
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from recolorize.config import CONFIGS, TRAIN_CONFIGS, ModelConfig, StageConfig, TrainConfig
from recolorize.data.cache import TrainingCache, is_cache
from recolorize.data.folders import Photo, discover_photos
from recolorize.errors import UserError
from recolorize.lpips import LpipsNet
from recolorize.networks.model import RecolorModel, is_backbone_key
from recolorize.training.checkpoint import (
    CHECKPOINT_NAME,
    Checkpoint,
    has_checkpoint,
    load_run_checkpoint,
)
from recolorize.training.distributed import Distributed, distributed_run
from recolorize.training.run_folder import (
    METRICS_NAME,
    MetricsLog,
    check_run_dir,
    prepare_run_dir,
    write_run_config,
)
from recolorize.training.runner import RunContext, StageSummary, run_stage
from recolorize.training.stages import STAGE_ORDER, get_stage

__all__ = ["MAX_SEED", "TrainRequest", "apply_overrides", "default_train_config", "train"]

logger = logging.getLogger(__name__)

#: Largest ``seed``: numpy's generators (``np.random.seed``, ``default_rng``) take 0 to 2^32 - 1.
MAX_SEED = 2**32 - 1


# --- the request ---------------------------------------------------------------------------------------
@dataclass
class TrainRequest:
    """What to train, as given on the command line (configs are resolved against the run folder later).

    config: a name in CONFIGS (None: from the checkpoint with ``resume``, or from ``init``'s config).
    stages: stage names in STAGE_ORDER order. overrides: dotted TrainConfig keys -> values
    (``"seed"``, ``"log_every"``, ``"predictor.lr"``...). device: "cpu", "cuda" or None (CUDA if present).
    workers: DataLoader workers (None: 0 on the CPU, up to 8 per GPU). rank_digests: debug, every rank
    writes ``RUN_DIR/digest_rank{R}.txt`` with a hash of its weights after each stage.
    """

    run_dir: Path
    data: tuple[Path, ...]
    stages: tuple[str, ...] = STAGE_ORDER
    config: str | None = None
    exclude: tuple[Path, ...] = ()
    overrides: dict[str, Any] = field(default_factory=dict)
    resume: bool = False
    init: Path | None = None
    device: str | None = None
    workers: int | None = None
    rank_digests: bool = False


# --- configs -------------------------------------------------------------------------------------------
def default_train_config(model_config: ModelConfig) -> TrainConfig:
    """TRAIN_CONFIGS[name]; a config without its own entry (an ablation such as "paper_no_mask") takes the
    entry whose name is its longest prefix, else "paper"."""
    if model_config.name in TRAIN_CONFIGS:
        return TRAIN_CONFIGS[model_config.name]
    prefixes = [name for name in TRAIN_CONFIGS if model_config.name.startswith(name)]
    chosen = max(prefixes, key=len) if prefixes else "paper"
    logger.info("config %s has no training settings of its own: using %s's", model_config.name, chosen)
    return TRAIN_CONFIGS[chosen]


def _finite(value: int | float, key: str) -> float:
    """``value`` as a finite float; NaN and infinity (JSON's ``NaN``, ``Infinity``, ``1e400``), and an
    integer too large for a float, are refused: a hyper-parameter must be a finite number."""
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise UserError(f"--set {key} needs a finite number, got {value!r}")
    return number


def _coerce(current: Any, value: Any, key: str) -> Any:
    if isinstance(current, bool):
        if not isinstance(value, bool):
            raise UserError(f"--set {key} needs true or false, got {value!r}")
        return value
    if isinstance(current, (int, float)) and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise UserError(f"--set {key} needs a number, got {value!r}")
    if isinstance(current, int):
        if isinstance(value, float) and not _finite(value, key).is_integer():
            raise UserError(f"--set {key} needs a whole number, got {value!r}")
        return int(value)
    if isinstance(current, float):
        return _finite(value, key)
    if isinstance(current, tuple):
        if not isinstance(value, (list, tuple)) or len(value) != len(current):
            raise UserError(f"--set {key} needs a list of {len(current)} values, got {value!r}")
        if any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in value):
            raise UserError(f"--set {key} needs a list of {len(current)} numbers, got {value!r}")
        return tuple(_finite(v, key) for v in value)
    if isinstance(current, str):
        return str(value)
    raise UserError(f"--set {key}: cannot set a value of type {type(current).__name__}")


def _floats(config: TrainConfig) -> list[tuple[str, float]]:
    """Every float setting of ``config`` as (dotted key, value), tuples of floats (``betas``) included."""
    found: list[tuple[str, float]] = []
    for prefix, settings in [("", config), *((f"{name}.", config.stage(name)) for name in STAGE_ORDER)]:
        for key in type(settings).__dataclass_fields__:
            value = getattr(settings, key)
            values = value if isinstance(value, tuple) else (value,)
            found += [(f"{prefix}{key}", v) for v in values if isinstance(v, float)]
    return found


def apply_overrides(config: TrainConfig, overrides: dict[str, Any]) -> TrainConfig:
    """TrainConfig with dotted keys replaced: ``seed``, ``log_every``, ``generator.lr``, ``predictor.w0``."""
    top: dict[str, Any] = {}
    stages: dict[str, dict[str, Any]] = {}
    for key, value in overrides.items():
        parts = key.split(".")
        if len(parts) == 1 and parts[0] in TrainConfig.__dataclass_fields__ and parts[0] not in STAGE_ORDER:
            top[parts[0]] = _coerce(getattr(config, parts[0]), value, key)
        elif len(parts) == 2 and parts[0] in STAGE_ORDER and parts[1] in StageConfig.__dataclass_fields__:
            current = getattr(config.stage(parts[0]), parts[1])
            stages.setdefault(parts[0], {})[parts[1]] = _coerce(current, value, key)
        else:
            known = [k for k in TrainConfig.__dataclass_fields__ if k not in STAGE_ORDER]
            fields = ", ".join(StageConfig.__dataclass_fields__)
            raise UserError(
                f"unknown training setting {key!r}; use one of {', '.join(known)} or STAGE.FIELD with a "
                f"stage in {', '.join(STAGE_ORDER)} and a field in {fields}"
            )
    for name, changes in stages.items():
        top[name] = dataclasses.replace(config.stage(name), **changes)
    config = dataclasses.replace(config, **top)
    for where, number in _floats(config):  # whatever the source: --set, the config, a checkpoint's
        if not math.isfinite(number):
            raise UserError(f"training setting {where} must be a finite number, got {number}")
    for name in STAGE_ORDER:
        stage = config.stage(name)
        if stage.steps < 1 or stage.batch < 1:
            raise UserError(
                f"stage {name} needs steps >= 1 and batch >= 1 (got {stage.steps}, {stage.batch})"
            )
        if not stage.lr > 0:
            raise UserError(f"stage {name} needs a positive learning rate (got {stage.lr})")
    for name in ("checkpoint_every", "sample_every", "log_every"):
        if getattr(config, name) < 1:
            raise UserError(f"{name} must be at least 1 (got {getattr(config, name)})")
    if not 0.0 <= config.ema_decay < 1.0:
        raise UserError(f"ema_decay must lie in [0, 1) (got {config.ema_decay})")
    if not 0 <= config.seed <= MAX_SEED:  # numpy's generators take 0 to 2^32 - 1 only
        raise UserError(f"seed must be a whole number from 0 to {MAX_SEED} (got {config.seed})")
    nets = typing.get_args(LpipsNet)
    for name in STAGE_ORDER:  # what Adam and LPIPS would refuse with a traceback once the stage starts
        stage = config.stage(name)
        if not all(0.0 <= beta < 1.0 for beta in stage.betas):
            raise UserError(f"{name}.betas must each lie in [0, 1) (got {list(stage.betas)})")
        if stage.lpips_net not in nets:
            raise UserError(f"{name}.lpips_net must be one of {', '.join(nets)} (got {stage.lpips_net!r})")
    return config


# --- the whole run --------------------------------------------------------------------------------------
def train(request: TrainRequest) -> list[StageSummary]:
    """Run the requested stages (module docstring); returns one summary per stage trained here."""
    for name in request.stages:
        get_stage(name)
    with distributed_run(request.device) as distributed:
        deterministic = torch.are_deterministic_algorithms_enabled()
        try:
            return _train(request, distributed)
        finally:
            torch.use_deterministic_algorithms(deterministic)


def _train(request: TrainRequest, distributed: Distributed) -> list[StageSummary]:
    run_dir = request.run_dir
    check_run_dir(run_dir)
    checkpoint_path = run_dir / CHECKPOINT_NAME
    if request.resume and not has_checkpoint(run_dir):
        raise UserError(f"--resume: no {CHECKPOINT_NAME} in {run_dir}")
    if not request.resume and has_checkpoint(run_dir):
        raise UserError(
            f"{run_dir} already holds a checkpoint: pass --resume to continue it, or use a new --run"
        )
    if not distributed.is_main:  # one copy of every message: rank 0 speaks for all
        logging.getLogger("recolorize").setLevel(logging.ERROR)
    checkpoint = None
    if request.resume:  # the latest checkpoint that verifies; a damaged one falls back to the previous
        checkpoint, checkpoint_path = load_run_checkpoint(run_dir)
    init_model = _load_init(request.init) if request.init is not None and checkpoint is None else None
    model_config = _resolve_model_config(request, checkpoint, init_model.config if init_model else None)
    if init_model is not None and init_model.config != model_config:
        logger.info(
            "--init weights of config %s warm-start config %s", init_model.config.name, model_config.name
        )
        try:
            init_model = init_model.with_config(model_config)
        except ValueError as error:
            raise UserError(f"--init {request.init}: {error}") from error
    base = checkpoint.train_config if checkpoint else default_train_config(model_config)
    train_config = apply_overrides(base, request.overrides)  # settings first: refused before the data scan
    photos, cache = _find_data(request, model_config)
    start_index, start_step = _start_point(request, checkpoint, train_config)

    model = _build_model(model_config, train_config, init_model, checkpoint, checkpoint_path, distributed)
    workers = _workers(request, distributed)
    metrics = MetricsLog(run_dir / METRICS_NAME, distributed.is_main)
    if distributed.is_main:
        prepare_run_dir(run_dir, metrics, fresh=checkpoint is None)
        write_run_config(
            run_dir,
            {
                "model": model_config.to_dict(),
                "train": train_config.to_dict(),
                "stages": list(request.stages),
                "data": [str(p) for p in request.data],
                "exclude": [str(p) for p in request.exclude],
                "photos": len(photos),
                "world_size": distributed.world_size,
                "device": str(distributed.device),
            },
        )
    distributed.barrier()
    logger.info(
        "training %s (config %s) on %s x%d, %d photos -> %s",
        ", ".join(request.stages[start_index:]) or "nothing (all stages finished)",
        model_config.name,
        distributed.device,
        distributed.world_size,
        len(photos),
        run_dir,
    )
    run = RunContext(
        run_dir,
        model,
        model_config,
        train_config,
        photos,
        cache,
        distributed,
        workers,
        request.rank_digests,
        metrics,
    )
    summaries = []
    for index in range(start_index, len(request.stages)):
        stage = get_stage(request.stages[index])
        resuming = checkpoint if (index == start_index and start_step > 0) else None
        summaries.append(run_stage(run, stage, start_step if resuming else 0, resuming))
    return summaries


def _resolve_model_config(
    request: TrainRequest, checkpoint: Checkpoint | None, init: ModelConfig | None
) -> ModelConfig:
    """``--config``, else the checkpoint's or ``--init``'s config; a checkpoint of another config is refused,
    ``--init`` weights of another config are a warm start (their tensors must fit ``--config``)."""
    given = CONFIGS.get(request.config) if request.config else None
    if request.config and given is None:
        raise UserError(f"unknown config {request.config!r}; choose one of {', '.join(CONFIGS)}")
    found, where = (checkpoint.model_config, "the checkpoint") if checkpoint else (init, "--init")
    if checkpoint is None and init is not None and given is not None and given != init:
        return given  # a warm start: --init's weights under --config (_train converts them)
    if found is not None:
        if given is not None and given.name != found.name:
            raise UserError(f"--config {given.name} does not match {where}, which holds config {found.name}")
        return found
    if given is None:
        raise UserError("--config is needed (or --resume / --init to take the config from existing weights)")
    return given


def _start_point(
    request: TrainRequest, checkpoint: Checkpoint | None, train_config: TrainConfig
) -> tuple[int, int]:
    """(index into request.stages, step) at which to start, from the checkpoint's stage and step."""
    if checkpoint is None:
        return 0, 0
    order = STAGE_ORDER.index(checkpoint.stage)
    if checkpoint.stage in request.stages:
        index = request.stages.index(checkpoint.stage)
        if checkpoint.step < train_config.stage(checkpoint.stage).steps:
            return index, checkpoint.step
        return index + 1, 0
    if order < STAGE_ORDER.index(request.stages[0]):
        return 0, 0
    raise UserError(
        f"the checkpoint is at stage {checkpoint.stage}, past the stage(s) asked for "
        f"({', '.join(request.stages)}); start a new --run (with --init) to train an earlier stage again"
    )


def _load_init(path: Path) -> RecolorModel:
    """``--init`` weights, with a missing or bad file as one line."""
    if not path.is_file():
        raise UserError(f"--init weights {path} do not exist")
    import warnings

    try:
        # broken weights (NaN, inf, overflowing values) are refused in one line: no library warning with
        # its source line may reach stderr on the way, so numpy's and torch's go to the debug log
        with np.errstate(all="ignore"), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model = RecolorModel.load(path)
    except (ValueError, OSError) as error:
        raise UserError(f"cannot load --init weights {path}: {error}") from error
    for warning in caught:
        logger.debug("loading %s: %s: %s", path, warning.category.__name__, warning.message)
    return model


def _find_data(request: TrainRequest, model_config: ModelConfig) -> tuple[list[Photo], TrainingCache | None]:
    """The photos of ``--data`` (minus ``--exclude``), or the one training cache it names."""
    caches = [folder for folder in request.data if is_cache(folder)]
    if not caches:
        return discover_photos(request.data, exclude=request.exclude), None
    if len(request.data) != 1:
        raise UserError("train from one training cache or from photo folders, not both")
    try:
        cache = TrainingCache(caches[0])
    except ValueError as error:
        raise UserError(str(error)) from error
    if cache.settings.resolution != model_config.resolution:
        raise UserError(
            f"the cache {caches[0]} holds {cache.settings.resolution} px crops, config "
            f"{model_config.name} works at {model_config.resolution} px"
        )
    return [], cache


def _build_model(
    model_config: ModelConfig,
    train_config: TrainConfig,
    init_model: RecolorModel | None,
    checkpoint: Checkpoint | None,
    checkpoint_path: Path,
    distributed: Distributed,
) -> RecolorModel:
    """The model on this rank's device: deterministic CPU kernels (fast ones on CUDA), the same initial
    weights on every rank, restored from the checkpoint; then each rank's own random streams."""
    device = distributed.device
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)
    else:
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    _seed_everything(train_config.seed)  # the same initial weights on every rank
    model = init_model if init_model is not None else RecolorModel(model_config)
    if checkpoint is not None:
        missing, unexpected = model.load_state_dict(checkpoint.model_state, strict=False)
        missing = [k for k in missing if not is_backbone_key(k)]
        if missing or unexpected:
            raise UserError(f"checkpoint {checkpoint_path} does not fit config {model_config.name}")
    model.to(device)
    if device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    _seed_everything(train_config.seed + distributed.rank)
    return model


def _workers(request: TrainRequest, distributed: Distributed) -> int:
    """DataLoader workers: ``--workers``, else 0 on the CPU and up to 8 per GPU."""
    if request.workers is not None and request.workers < 0:
        raise UserError(f"--workers must be 0 or more (got {request.workers})")
    if request.workers is not None:
        return request.workers
    if distributed.device.type == "cpu":
        return 0
    return min(8, (os.cpu_count() or 1) // distributed.world_size)


def _seed_everything(seed: int) -> None:
    """Seed torch, numpy and Python's ``random`` (the checkpoint restores all three on resume)."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)
