"""One training loop for every stage (paper sections 3.2.2, 3.3, 3.4.4): resumable, deterministic, DDP.

:func:`train` resolves the configs (named config, ``--init`` weights or the run's checkpoint, then CLI
overrides), finds the photos, and runs the requested stages in order with :func:`run_stage`. Each stage:

- freezes every network except ``Stage.trainable`` (eval mode, no gradients) and wraps the trainable ones in
  :class:`StageNetwork`, whose forward is the stage's losses, so that DistributedDataParallel sees exactly
  the parameters that learn;
- draws batches whose content depends only on (seed, step): epoch = step // steps_per_epoch, the order
  from a seeded ``DistributedSampler``, each item from (seed, epoch, index); so resuming at step k gives the
  batches an uninterrupted run would have seen;
- takes Adam steps with gradient-norm clipping, skipping (and logging) any step whose loss or gradient is
  not finite; keeps an EMA of the weights when ``ema_decay`` > 0;
- writes ``metrics.csv`` rows, sample grids and checkpoints (rank 0 only), and at its end the checkpoint and
  ``{stage}.safetensors``.

Under ``torchrun`` (RANK / WORLD_SIZE set) the process group is initialised here (NCCL on CUDA, gloo on the
CPU); ``StageConfig.batch`` is the global batch, split evenly over the ranks.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import logging
import math
import os
import random
import statistics
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from PIL import Image
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from tqdm import tqdm

from recolorize.config import (
    CONFIGS,
    TRAIN_CONFIGS,
    ModelConfig,
    StageConfig,
    TrainConfig,
    save_json,
)
from recolorize.data.cache import TrainingCache, is_cache
from recolorize.data.folders import Photo, discover_photos
from recolorize.errors import UserError
from recolorize.io_utils import atomic_write
from recolorize.lpips import LPIPS, get_lpips
from recolorize.networks.model import RecolorModel
from recolorize.training.checkpoint import (
    CHECKPOINT_NAME,
    PREVIOUS_CHECKPOINT_NAME,
    Checkpoint,
    capture_rng,
    has_checkpoint,
    load_run_checkpoint,
    restore_rng,
    save_checkpoint,
    state_digest,
)
from recolorize.training.stages import (
    LOSS_TERMS,
    STAGE_ORDER,
    Stage,
    StageOutputs,
    get_stage,
    loss_weights,
    mask_bound,
)

__all__ = [
    "METRIC_FIELDS",
    "TrainRequest",
    "StageSummary",
    "Distributed",
    "StageNetwork",
    "MetricsLog",
    "setup_distributed",
    "apply_overrides",
    "default_train_config",
    "iterate_batches",
    "save_sample_grid",
    "run_stage",
    "train",
]

logger = logging.getLogger(__name__)

#: Columns of ``RUN_DIR/metrics.csv``; loss terms a stage does not use stay empty.
METRIC_FIELDS: tuple[str, ...] = (
    "step",
    "stage",
    "loss",
    *LOSS_TERMS,
    "loss_identity",
    "grad_norm",
    "lr",
    "images_per_s",
    "mask_bound",
    "mask_ratio",
    "skipped",
)
SAMPLE_ROWS = 4


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


@dataclass
class StageSummary:
    """What a finished stage reports: steps taken in this call, throughput, first and last logged loss."""

    stage: str
    steps: int
    images_per_s: float
    first_loss: float
    last_loss: float
    weights: Path | None


# --- distribution --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Distributed:
    """This process's place in a (possibly one-process) run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def all_reduce_mean(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.world_size > 1:
            dist.all_reduce(tensor)
            tensor /= self.world_size
        return tensor

    def gather(self, obj: Any) -> list[Any]:
        if self.world_size == 1:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def broadcast_buffers(self, module: nn.Module) -> None:
        """Give every rank rank 0's buffers (BatchNorm statistics drift apart in the last forward)."""
        if self.world_size > 1:
            for buffer in module.buffers():
                dist.broadcast(buffer, 0)

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()


def setup_distributed(device: str | None) -> Distributed:
    """Read torchrun's environment and initialise the process group (NCCL on CUDA, gloo on the CPU)."""
    use_cuda = device == "cuda" or (device is None and torch.cuda.is_available())
    if use_cuda and not torch.cuda.is_available():
        raise UserError("--device cuda was asked for, but no CUDA device is available")
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Distributed(device=torch.device("cuda") if use_cuda else torch.device("cpu"))
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    if use_cuda:
        torch.cuda.set_device(local_rank)
        torch_device = torch.device("cuda", local_rank)
    else:
        torch_device = torch.device("cpu")
    owns = not dist.is_initialized()
    if owns:
        dist.init_process_group("nccl" if use_cuda else "gloo")
    logger.debug("rank %d of %d on %s", rank, world_size, torch_device)
    return Distributed(rank, world_size, local_rank, torch_device, owns)


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


def _coerce(current: Any, value: Any, key: str) -> Any:
    if isinstance(current, bool):
        if not isinstance(value, bool):
            raise UserError(f"--set {key} needs true or false, got {value!r}")
        return value
    if isinstance(current, (int, float)) and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise UserError(f"--set {key} needs a number, got {value!r}")
    if isinstance(current, int):
        if float(value) != int(value):
            raise UserError(f"--set {key} needs a whole number, got {value!r}")
        return int(value)
    if isinstance(current, float):
        return float(value)
    if isinstance(current, tuple):
        if not isinstance(value, (list, tuple)) or len(value) != len(current):
            raise UserError(f"--set {key} needs a list of {len(current)} values, got {value!r}")
        return tuple(float(v) for v in value)
    if isinstance(current, str):
        return str(value)
    raise UserError(f"--set {key}: cannot set a value of type {type(current).__name__}")


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
    return config


# --- the stage's module ---------------------------------------------------------------------------------
class StageNetwork(nn.Module):
    """The trainable networks of one stage as one module (what DDP wraps); ``forward`` runs the stage.

    The frozen networks and LPIPS are reached through the model but are not children of this module, so
    DDP neither syncs nor broadcasts them. Returns the stage outputs and the unweighted loss terms.
    """

    def __init__(
        self,
        model: RecolorModel,
        stage: Stage,
        weights: dict[str, float],
        lpips: LPIPS | None,
        trainable: Sequence[str] | None = None,
    ):
        super().__init__()
        names = stage.trainable if trainable is None else trainable
        self.trainable = nn.ModuleDict({name: getattr(model, name) for name in names})
        self.pixel_stride = 1
        self._context = (model, stage, tuple(weights), lpips)  # a tuple: not registered as children

    def forward(
        self, batch: dict[str, torch.Tensor], mask_ratio: float, mask_generator: torch.Generator | None
    ) -> tuple[StageOutputs, dict[str, torch.Tensor]]:
        model, stage, names, lpips = self._context
        outputs = stage.forward(model, batch, mask_ratio, mask_generator, self.pixel_stride)
        terms = {name: LOSS_TERMS[name](outputs, model, lpips).float() for name in names}
        return outputs, terms

    @torch.no_grad()
    def identity_loss(self, outputs: StageOutputs, weights: dict[str, float]) -> torch.Tensor | None:
        """The weighted loss of doing nothing (the prediction replaced by ``outputs.unchanged``)."""
        if outputs.unchanged is None:
            return None
        model, _, names, lpips = self._context
        unchanged = dataclasses.replace(outputs, prediction=outputs.unchanged)
        return sum(weights[n] * LOSS_TERMS[n](unchanged, model, lpips).float() for n in names)


#: RecolorModel attributes that a stage may train.
_NETWORKS = ("generator", "w_encoder", "map_encoder", "predictor")


def learning_rate(step: int, config: StageConfig) -> float:
    """Adam's rate at ``step`` (0-based): linear warm-up over ``warmup_steps``, then constant or cosine."""
    rate = config.lr
    if config.warmup_steps > 0:
        rate *= min(1.0, (step + 1) / config.warmup_steps)
    if config.cosine and config.steps > config.warmup_steps:
        progress = max(0.0, (step - config.warmup_steps) / (config.steps - config.warmup_steps))
        rate *= 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return rate


def _freeze_all_but(model: RecolorModel, trainable: Sequence[str]) -> list[nn.Parameter]:
    """Frozen networks: eval mode, no gradients; trainable ones: train mode. Returns the trainable params."""
    model.eval()
    model.requires_grad_(False)
    params: list[nn.Parameter] = []
    for name in trainable:
        module = getattr(model, name)
        module.train()
        module.requires_grad_(True)
        params.extend(module.parameters())
    return params


class _EMA:
    """Exponential moving average of the stage's networks (floating tensors; other buffers are copied)."""

    def __init__(self, model: RecolorModel, trainable: Sequence[str], decay: float) -> None:
        self.decay = decay
        self.live = {
            f"{name}.{key}": value
            for name in trainable
            for key, value in getattr(model, name).state_dict(keep_vars=False).items()
        }
        self.shadow = {key: value.detach().clone() for key, value in self.live.items()}

    @torch.no_grad()
    def update(self) -> None:
        for key, live in self.live.items():
            if live.is_floating_point():
                self.shadow[key].lerp_(live, 1.0 - self.decay)
            else:
                self.shadow[key].copy_(live)

    @torch.no_grad()
    def load(self, state: dict[str, torch.Tensor]) -> None:
        for key, value in state.items():
            self.shadow[key].copy_(value)

    @torch.no_grad()
    def copy_to_model(self) -> None:
        for key, live in self.live.items():
            live.copy_(self.shadow[key])


# --- data ----------------------------------------------------------------------------------------------
def iterate_batches(
    dataset: Dataset,
    sampler: DistributedSampler,
    batch: int,
    start_step: int,
    workers: int,
    seed: int,
    pin_memory: bool = False,
) -> Iterator[dict[str, torch.Tensor]]:
    """Endless batches from step ``start_step``: the batch of step s depends only on (seed, s).

    epoch = s // steps_per_epoch picks the sampler's permutation and the dataset's crops and colours; the
    first ``s % steps_per_epoch`` batches of that epoch are skipped without being loaded.
    """
    steps_per_epoch = len(sampler) // batch
    step = start_step
    while True:
        epoch, position = divmod(step, steps_per_epoch)
        dataset.set_epoch(epoch)  # type: ignore[attr-defined]
        sampler.set_epoch(epoch)
        order = list(sampler)
        chunks = [order[i * batch : (i + 1) * batch] for i in range(position, steps_per_epoch)]
        loader = DataLoader(
            dataset,
            batch_sampler=chunks,
            num_workers=workers,
            pin_memory=pin_memory,
            generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch),
        )
        for item in loader:
            yield item
            step += 1


# --- outputs -------------------------------------------------------------------------------------------
class MetricsLog:
    """``RUN_DIR/metrics.csv``: one row per ``log_every`` steps, appended (rank 0 only)."""

    def __init__(self, path: Path, enabled: bool) -> None:
        self.path = path
        self.enabled = enabled

    def read(self) -> list[dict[str, str]]:
        if not self.path.is_file():
            return []
        with self.path.open(newline="") as handle:
            reader = csv.DictReader(handle)
            if tuple(reader.fieldnames or ()) != METRIC_FIELDS:
                return []
            # a row cut short by a kill has missing fields (None): drop it
            return [row for row in reader if None not in row.values() and None not in row]

    def keep_until(self, stage: str, step: int) -> None:
        """Drop rows past (stage, step): rows a killed run logged after its last checkpoint, later stages."""
        if not self.enabled:
            return
        self._set_aside_foreign_file()
        order = STAGE_ORDER.index(stage)
        kept = [
            row
            for row in self.read()
            if row["stage"] in STAGE_ORDER
            and (
                STAGE_ORDER.index(row["stage"]) < order
                or (row["stage"] == stage and int(row["step"]) <= step)
            )
        ]
        with atomic_write(self.path) as tmp, tmp.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=METRIC_FIELDS)
            writer.writeheader()
            writer.writerows(kept)

    def _set_aside_foreign_file(self) -> None:
        """A metrics file with other columns (an older version's) is renamed, never silently dropped."""
        if not self.path.is_file():
            return
        with self.path.open(newline="") as handle:
            header = tuple(next(csv.reader(handle), ()))
        if header != METRIC_FIELDS:
            kept = self.path.with_name(f"{self.path.stem}.columns-{len(header)}-{int(time.time())}.csv")
            os.replace(self.path, kept)
            logger.warning("metrics file %s has other columns; kept it as %s", self.path, kept.name)

    def reset(self) -> None:
        if self.enabled and self.path.exists():
            self.path.unlink()

    def append(self, row: dict[str, Any]) -> None:
        if not self.enabled:
            return
        new = not self.path.is_file()
        with self.path.open("a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=METRIC_FIELDS)
            if new:
                writer.writeheader()
            writer.writerow({k: _format(row.get(k)) for k in METRIC_FIELDS})


def _format(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return format(value, ".9g")  # 9 significant digits: every float32 value exactly
    return str(value)


def save_sample_grid(path: Path, images: dict[str, torch.Tensor], rows: int = SAMPLE_ROWS) -> None:
    """A PNG with one row per batch item and one column per named image (e.g. source | reference | ...)."""
    columns = [images[name][:rows].detach().float().clamp(0, 1).cpu() for name in images]
    n, _, h, w = columns[0].shape
    gap = 2
    grid = torch.ones(3, n * h + (n - 1) * gap, len(columns) * w + (len(columns) - 1) * gap)
    for c, column in enumerate(columns):
        for r in range(n):
            grid[:, r * (h + gap) : r * (h + gap) + h, c * (w + gap) : c * (w + gap) + w] = column[r]
    array = (grid.permute(1, 2, 0).numpy() * 255.0 + 0.5).astype(np.uint8)
    with atomic_write(path) as tmp:
        Image.fromarray(array).save(tmp)


def _seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def _mask_seed(seed: int, rank: int, stage: str) -> int:
    return int(np.random.SeedSequence([seed, rank, STAGE_ORDER.index(stage)]).generate_state(1)[0])


@dataclass
class _Window:
    """Running sums between two metrics rows."""

    terms: dict[str, float] = field(default_factory=dict)
    loss: float = 0.0
    grad_norm: float = 0.0
    mask_ratio: float = 0.0
    steps: int = 0
    taken: int = 0
    skipped: int = 0
    images: int = 0
    start: float = field(default_factory=time.perf_counter)

    def add(self, loss: float, terms: dict[str, float], grad_norm: float | None, ratio: float, images: int):
        self.steps += 1
        self.images += images
        self.mask_ratio += ratio
        if grad_norm is None:
            self.skipped += 1
            return
        self.taken += 1
        self.loss += loss
        self.grad_norm += grad_norm
        for name, value in terms.items():
            self.terms[name] = self.terms.get(name, 0.0) + value


# --- one stage -----------------------------------------------------------------------------------------
@dataclass
class _Run:
    """Everything a stage needs besides its own settings."""

    run_dir: Path
    model: RecolorModel
    model_config: ModelConfig
    train_config: TrainConfig
    photos: list[Photo]
    cache: TrainingCache | None
    dist: Distributed
    workers: int
    rank_digests: bool
    metrics: MetricsLog


class _StageRunner:
    """The state of one stage while it trains: networks, optimiser, EMA, data, masking generator."""

    def __init__(self, run: _Run, stage: Stage, start_step: int, resume: Checkpoint | None) -> None:
        self.run, self.stage, self.start_step = run, stage, start_step
        self.config = config = run.train_config.stage(stage.name)
        dist_, world = run.dist, run.dist.world_size
        self.device = device = dist_.device
        if config.batch % world:
            raise UserError(f"stage {stage.name}: batch {config.batch} does not split over {world} processes")
        self.batch = config.batch // world
        if run.cache is not None:
            if stage.cached_dataset is None:
                raise UserError(f"stage {stage.name} cannot train from a cache")
            dataset = stage.cached_dataset(run.cache, run.train_config.seed)
        else:
            dataset = stage.dataset(run.photos, run.model_config.resolution, run.train_config.seed)
        if len(dataset) // world < self.batch:
            raise UserError(
                f"stage {stage.name} needs at least {config.batch} photos for a batch of {config.batch}, "
                f"found {len(dataset)}"
            )
        unknown = [name for name in config.also_train if name not in _NETWORKS]
        if unknown:
            raise UserError(f"stage {stage.name}: also_train names unknown networks {unknown}")
        self.trainable = tuple(dict.fromkeys(stage.trainable + tuple(config.also_train)))
        try:
            self.weights = loss_weights(stage, config)
        except ValueError as error:
            raise UserError(str(error)) from error
        self.cuda = device.type == "cuda"
        self.params = _freeze_all_but(run.model, self.trainable)
        lpips = get_lpips(config.lpips_net).to(device) if "lpips" in self.weights else None  # type: ignore[arg-type]
        self.stage_network = StageNetwork(run.model, stage, self.weights, lpips, self.trainable)
        self.stage_network.pixel_stride = config.pixel_stride
        self.network: nn.Module = self.stage_network
        if world > 1:  # DDP sees exactly the trainable networks
            self.network = DistributedDataParallel(
                self.stage_network, device_ids=[device.index] if self.cuda else None
            )
        self.optimizer = torch.optim.Adam(self.params, lr=config.lr, betas=config.betas)
        decay = run.train_config.ema_decay
        self.ema = _EMA(run.model, self.trainable, decay) if decay > 0 else None
        self.mask_generator = torch.Generator(device=device)
        self.mask_generator.manual_seed(_mask_seed(run.train_config.seed, dist_.rank, stage.name))
        if resume is not None:
            self._restore(resume)
        sampler = DistributedSampler(
            dataset,
            num_replicas=world,
            rank=dist_.rank,
            shuffle=True,
            seed=run.train_config.seed,
            drop_last=True,
        )
        self.steps_per_epoch = len(sampler) // self.batch
        self.batches = iterate_batches(
            dataset, sampler, self.batch, start_step, run.workers, run.train_config.seed, pin_memory=self.cuda
        )
        self.autocast = (
            torch.autocast("cuda", dtype=torch.bfloat16) if self.cuda else contextlib.nullcontext()
        )
        self.memory_format = torch.channels_last if self.cuda else torch.contiguous_format
        self.rates: list[float] = []
        self.first_loss = self.last_loss = math.nan

    def _restore(self, resume: Checkpoint) -> None:
        world = self.run.dist.world_size
        if resume.optimizer_state is not None:
            self.optimizer.load_state_dict(resume.optimizer_state)
        if self.ema is not None and resume.ema_state:
            self.ema.load(resume.ema_state)
        if len(resume.rng) == world:
            restore_rng(resume.rng[self.run.dist.rank], self.mask_generator)
        else:
            logger.warning(
                "checkpoint was written by %d processes, this run has %d: random states start afresh",
                len(resume.rng),
                world,
            )
        if resume.data.get("batch") not in (None, self.config.batch):
            logger.warning("batch changed since the checkpoint: the data order differs from the original run")

    # --- one optimiser step -----------------------------------------------------------------------------
    def step(self, step: int) -> tuple[StageOutputs, float, dict[str, float], float | None, float]:
        """Take step ``step`` (0-based): returns outputs, loss, logged terms, gradient norm (None: skipped),
        masking ratio. Loss values are averaged over the ranks."""
        config, device, names = self.config, self.device, list(self.weights)
        batch = {
            k: v.to(device, non_blocking=True).contiguous(memory_format=self.memory_format)
            for k, v in next(self.batches).items()
        }
        ratio = 0.0
        if self.stage.masking:  # a in [0, bound], drawn every step from the checkpointed generator
            draw = torch.rand((), generator=self.mask_generator, device=device)
            ratio = mask_bound(step, config.steps, config) * float(draw)
        with self.autocast:
            outputs, terms = self.network(batch, ratio, self.mask_generator)
        loss = sum((self.weights[n] * terms[n] for n in names), torch.zeros((), device=device))
        logged = [loss.detach()] + [terms[n].detach() for n in names]
        with self.autocast:
            identity = self.stage_network.identity_loss(outputs, self.weights)
        if identity is not None:
            logged.append(identity)
        values = self.run.dist.all_reduce_mean(torch.stack(logged)).tolist()
        step_terms = dict(zip(names, values[1 : 1 + len(names)], strict=True))
        if identity is not None:
            step_terms["loss_identity"] = values[-1]
        if not all(math.isfinite(v) for v in values):  # the same on every rank: values are all-reduced
            logger.warning(
                "stage %s step %d: loss %s is not finite, step skipped", self.stage.name, step + 1, values
            )
            return outputs, values[0], step_terms, None, ratio
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate(step, config)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        max_norm = config.grad_clip if config.grad_clip > 0 else math.inf
        norm = float(torch.nn.utils.clip_grad_norm_(self.params, max_norm))
        grad_norm: float | None = None
        if math.isfinite(norm):  # identical on every rank: gradients are all-reduced
            self.optimizer.step()
            if self.ema is not None:
                self.ema.update()
            grad_norm = norm
        else:
            logger.warning(
                "stage %s step %d: gradient norm %s, step skipped", self.stage.name, step + 1, norm
            )
        self.optimizer.zero_grad(set_to_none=True)
        return outputs, values[0], step_terms, grad_norm, ratio

    # --- outputs -----------------------------------------------------------------------------------------
    def log_row(self, window: _Window, done: int) -> dict[str, Any]:
        elapsed = time.perf_counter() - window.start
        rate = window.images / elapsed if elapsed > 0 else math.nan
        self.rates.append(rate)
        taken = max(window.taken, 1)
        row: dict[str, Any] = {
            "step": done,
            "stage": self.stage.name,
            "loss": window.loss / taken if window.taken else math.nan,
            "grad_norm": window.grad_norm / taken if window.taken else math.nan,
            "lr": self.optimizer.param_groups[0]["lr"],
            "images_per_s": rate,
            "mask_bound": mask_bound(done - 1, self.config.steps, self.config) if self.stage.masking else 0.0,
            "mask_ratio": window.mask_ratio / window.steps,
            "skipped": window.skipped,
            **{n: v / taken for n, v in window.terms.items()},
        }
        if math.isnan(self.first_loss):
            self.first_loss = row["loss"]
        self.last_loss = row["loss"]
        self.run.metrics.append(row)
        return row

    def write_checkpoint(self, step: int) -> None:
        """Every rank hands over its RNG states; rank 0 writes the file."""
        run = self.run
        rng = run.dist.gather(capture_rng(self.mask_generator))
        if not run.dist.is_main:
            return
        save_checkpoint(
            run.run_dir / CHECKPOINT_NAME,
            Checkpoint(
                stage=self.stage.name,
                step=step,
                model_config=run.model_config,
                train_config=run.train_config,
                model_state=run.model.trainable_state_dict(),
                optimizer_state=self.optimizer.state_dict(),
                ema_state=dict(self.ema.shadow) if self.ema is not None else None,
                rng=rng,
                data={
                    "epoch": step // self.steps_per_epoch,
                    "position": step % self.steps_per_epoch,
                    "world_size": run.dist.world_size,
                    "batch": self.config.batch,
                },
            ),
        )

    # --- the loop ----------------------------------------------------------------------------------------
    def train(self) -> StageSummary:
        run, stage, total = self.run, self.stage, self.config.steps
        settings = run.train_config
        is_main = run.dist.is_main
        run.metrics.keep_until(stage.name, self.start_step)
        logger.info(
            "stage %s: steps %d..%d, batch %d (%d per process x %d), %d photos, losses %s",
            stage.name,
            self.start_step,
            total,
            self.config.batch,
            self.batch,
            run.dist.world_size,
            len(run.photos) if run.cache is None else len(run.cache),
            ", ".join(f"{w:g} {n}" for n, w in self.weights.items()),
        )
        bar = tqdm(
            total=total,
            initial=self.start_step,
            desc=stage.name,
            unit="step",
            disable=None if is_main else True,
        )
        window = _Window()
        try:
            for step in range(self.start_step, total):
                outputs, loss, terms, grad_norm, ratio = self.step(step)
                done = step + 1
                window.add(loss, terms, grad_norm, ratio, self.config.batch)
                if done % settings.log_every == 0 or done == total:
                    row = self.log_row(window, done)
                    bar.set_postfix(
                        loss=f"{row['loss']:.4f}", img_s=f"{row['images_per_s']:.1f}", refresh=False
                    )
                    window = _Window()
                paused = time.perf_counter()  # writing files is not training time
                if is_main and (done % settings.sample_every == 0 or done == total):
                    save_sample_grid(run.run_dir / "samples" / f"{stage.name}_{done:06d}.png", outputs.images)
                if done % settings.checkpoint_every == 0 and done < total:
                    self.write_checkpoint(done)
                    logger.info(
                        "%s step %d/%d: loss %.4f, %.1f images/s; checkpoint written",
                        stage.name,
                        done,
                        total,
                        self.last_loss,
                        self.rates[-1] if self.rates else math.nan,
                    )
                window.start += time.perf_counter() - paused
                bar.update(1)
        finally:
            bar.close()
        return self.finish()

    def finish(self) -> StageSummary:
        """Same buffers everywhere, EMA into the model, last checkpoint, ``{stage}.safetensors``."""
        run, stage, total = self.run, self.stage, self.config.steps
        self.batches.close()  # lets the data loader's workers go
        if self.ema is not None:
            self.ema.copy_to_model()
        run.dist.broadcast_buffers(self.stage_network)  # BatchNorm statistics differ per rank
        self.write_checkpoint(total)
        weights_path = run.run_dir / f"{stage.name}.safetensors"
        if run.dist.is_main:
            run.model.save(weights_path)
        if run.rank_digests:
            digest = state_digest(run.model.trainable_state_dict())
            with atomic_write(run.run_dir / f"digest_rank{run.dist.rank}.txt") as tmp:
                tmp.write_text(f"{stage.name} {total} {digest}\n")
        run.dist.barrier()
        # the first window includes start-up (first batch, kernel selection): leave it out
        steady = self.rates[1:] if len(self.rates) > 1 else self.rates
        images_per_s = statistics.median(steady) if steady else math.nan
        logger.info(
            "stage %s finished at step %d: loss %.4f -> %.4f, %.1f images/s; weights %s",
            stage.name,
            total,
            self.first_loss,
            self.last_loss,
            images_per_s,
            weights_path,
        )
        return StageSummary(
            stage.name, total - self.start_step, images_per_s, self.first_loss, self.last_loss, weights_path
        )


def run_stage(run: _Run, stage: Stage, start_step: int, resume: Checkpoint | None) -> StageSummary:
    """Train ``stage`` from ``start_step`` to its last step (``resume``: optimiser, EMA, RNG states)."""
    return _StageRunner(run, stage, start_step, resume).train()


# --- the whole run --------------------------------------------------------------------------------------
def _resolve_model_config(request: TrainRequest, checkpoint: Checkpoint | None, init: ModelConfig | None):
    given = CONFIGS.get(request.config) if request.config else None
    if request.config and given is None:
        raise UserError(f"unknown config {request.config!r}; choose one of {', '.join(CONFIGS)}")
    found, where = (checkpoint.model_config, "the checkpoint") if checkpoint else (init, "--init")
    if found is not None:
        if given is not None and given.name != found.name:
            raise UserError(f"--config {given.name} does not match {where}, which holds config {found.name}")
        return found
    if given is None:
        raise UserError("--config is needed (or --resume / --init to take the config from existing weights)")
    return given


def _start_point(request: TrainRequest, checkpoint: Checkpoint | None, train_config: TrainConfig):
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
    if not path.is_file():
        raise UserError(f"--init weights {path} do not exist")
    try:
        return RecolorModel.load(path)
    except (ValueError, OSError) as error:
        raise UserError(f"cannot load --init weights {path}: {error}") from error


def train(request: TrainRequest) -> list[StageSummary]:
    """Run the requested stages (module docstring); returns one summary per stage trained here."""
    for name in request.stages:
        get_stage(name)
    distributed = setup_distributed(request.device)
    deterministic = torch.are_deterministic_algorithms_enabled()
    try:
        return _train(request, distributed)
    finally:
        torch.use_deterministic_algorithms(deterministic)
        if distributed.owns_group:
            dist.destroy_process_group()


def _check_run_dir(run_dir: Path) -> None:
    """Refuse a run folder that names a file (or lies under one) before any work, in one line."""
    for path in (run_dir, *run_dir.parents):
        if path.exists():
            if not path.is_dir():
                what = "is a file" if path == run_dir else f"lies under {path}, which is a file"
                raise UserError(f"--run {run_dir} {what}, not a folder; name a new or existing folder")
            return


def _train(request: TrainRequest, distributed: Distributed) -> list[StageSummary]:
    run_dir = request.run_dir
    _check_run_dir(run_dir)
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
    caches = [folder for folder in request.data if is_cache(folder)]
    cache = None
    photos: list[Photo] = []
    if caches:
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
    else:
        photos = discover_photos(request.data, exclude=request.exclude)
    base = checkpoint.train_config if checkpoint else default_train_config(model_config)
    train_config = apply_overrides(base, request.overrides)
    start_index, start_step = _start_point(request, checkpoint, train_config)

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
        missing = [k for k in missing if not k.startswith("semantic.")]
        if missing or unexpected:
            raise UserError(f"checkpoint {checkpoint_path} does not fit config {model_config.name}")
    model.to(device)
    if device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    _seed_everything(train_config.seed + distributed.rank)
    if request.workers is not None and request.workers < 0:
        raise UserError(f"--workers must be 0 or more (got {request.workers})")
    workers = request.workers
    if workers is None:
        workers = 0 if device.type == "cpu" else min(8, (os.cpu_count() or 1) // distributed.world_size)

    metrics = MetricsLog(run_dir / "metrics.csv", distributed.is_main)
    if distributed.is_main:
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:  # a file in the way, no permission, a read-only disk
            raise UserError(f"cannot create the run folder {run_dir}: {error.strerror or error}") from error
        for name in (CHECKPOINT_NAME, PREVIOUS_CHECKPOINT_NAME):  # temporary files of a killed writer
            for stale in run_dir.glob(f".{name}.*"):
                stale.unlink(missing_ok=True)
        if checkpoint is None:
            metrics.reset()
        save_json(
            {
                "model": model_config.to_dict(),
                "train": train_config.to_dict(),
                "stages": list(request.stages),
                "data": [str(p) for p in request.data],
                "exclude": [str(p) for p in request.exclude],
                "photos": len(photos),
                "world_size": distributed.world_size,
                "device": str(device),
            },
            run_dir / "config.json",
        )
    distributed.barrier()
    logger.info(
        "training %s (config %s) on %s x%d, %d photos -> %s",
        ", ".join(request.stages[start_index:]) or "nothing (all stages finished)",
        model_config.name,
        device,
        distributed.world_size,
        len(photos),
        run_dir,
    )
    run = _Run(
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
