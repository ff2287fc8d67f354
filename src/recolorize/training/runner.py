"""One stage's step loop (paper sections 3.2.2, 3.3, 3.4.4): the same loop for every stage in ``stages.py``.

:func:`run_stage` trains one stage from a start step to its last step. The stage:

- freezes every network except ``Stage.trainable`` (eval mode, no gradients) and wraps the trainable ones in
  :class:`~recolorize.training.stage_network.StageNetwork`, whose forward is the stage's losses, so that
  DistributedDataParallel sees exactly the parameters that learn;
- draws batches whose content depends only on (seed, step)
  (:func:`~recolorize.training.batches.iterate_batches`);
- takes Adam steps with gradient-norm clipping, skipping (and logging) any step whose loss or gradient is
  not finite; keeps an EMA of the weights when ``ema_decay`` > 0;
- stops (``UserError``, one line) after :data:`MAX_NONFINITE_STEPS` skipped steps in a row, or at its end
  with weights that are not finite: a diverged run keeps its last finite checkpoint and writes no NaN
  weights (no checkpoint is written after a skipped step, nor of weights that hold NaN or infinity);
- writes ``metrics.csv`` rows, sample grids and checkpoints (rank 0 only), and at its end the checkpoint and
  ``{stage}.safetensors``.

``StageConfig.batch`` is the global batch, split evenly over the ranks.
"""

from __future__ import annotations

import contextlib
import logging
import math
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DistributedSampler
from tqdm import tqdm

from recolorize.config import ModelConfig, TrainConfig
from recolorize.data.cache import TrainingCache
from recolorize.data.folders import Photo
from recolorize.errors import UserError
from recolorize.lpips import get_lpips
from recolorize.networks.model import RecolorModel
from recolorize.training.batches import iterate_batches
from recolorize.training.checkpoint import (
    CHECKPOINT_NAME,
    Checkpoint,
    save_checkpoint,
    state_digest,
)
from recolorize.training.distributed import Distributed
from recolorize.training.ema import EMA
from recolorize.training.resume_state import capture_rng, restore_rng
from recolorize.training.run_folder import (
    MetricsLog,
    MetricsWindow,
    sample_grid_path,
    save_sample_grid,
    stage_weights_path,
    write_rank_digest,
)
from recolorize.training.stage_network import TRAINABLE_NETWORKS, StageNetwork, freeze_all_but
from recolorize.training.stages import (
    STAGE_ORDER,
    Stage,
    StageOutputs,
    learning_rate,
    loss_weights,
    mask_bound,
)

__all__ = ["MAX_NONFINITE_STEPS", "StageSummary", "RunContext", "StageRunner", "run_stage"]

logger = logging.getLogger(__name__)

#: Steps in a row whose loss or gradient is not finite after which a stage stops: one such step is skipped
#: (a bad batch), this many mean the weights or the settings have diverged.
MAX_NONFINITE_STEPS = 20


@dataclass
class StageSummary:
    """What a finished stage reports: steps taken in this call, throughput, first and last logged loss."""

    stage: str
    steps: int
    images_per_s: float
    first_loss: float
    last_loss: float
    weights: Path | None


def _mask_seed(seed: int, rank: int, stage: str) -> int:
    return int(np.random.SeedSequence([seed, rank, STAGE_ORDER.index(stage)]).generate_state(1)[0])


@dataclass
class RunContext:
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


class StageRunner:
    """The state of one stage while it trains: networks, optimiser, EMA, data, masking generator."""

    def __init__(self, run: RunContext, stage: Stage, start_step: int, resume: Checkpoint | None) -> None:
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
        unknown = [name for name in config.also_train if name not in TRAINABLE_NETWORKS]
        if unknown:
            raise UserError(f"stage {stage.name}: also_train names unknown networks {unknown}")
        self.trainable = tuple(dict.fromkeys(stage.trainable + tuple(config.also_train)))
        try:
            self.weights = loss_weights(stage, config)
        except ValueError as error:
            raise UserError(str(error)) from error
        self.cuda = device.type == "cuda"
        self.params = freeze_all_but(run.model, self.trainable)
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
        self.ema = EMA(run.model, self.trainable, decay) if decay > 0 else None
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
        self.last_checkpoint = start_step if resume is not None else None  # the step it holds

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
    def log_row(self, window: MetricsWindow, done: int) -> dict[str, Any]:
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

    def weights_finite(self) -> bool:
        """Whether every trainable weight (and its EMA) is finite; the same on every rank."""
        tensors = [*self.params, *(self.ema.shadow.values() if self.ema is not None else ())]
        return all(bool(torch.isfinite(t).all()) for t in tensors if t.is_floating_point())

    def diverged(self, what: str) -> UserError:
        """The one line a stage stops with when its loss or weights are no longer finite."""
        name, path = self.stage.name, self.run.run_dir / CHECKPOINT_NAME
        if self.last_checkpoint is not None:
            kept = f"the last checkpoint ({path}, step {self.last_checkpoint} of this stage) is kept"
        elif path.is_file():
            kept = f"the last checkpoint ({path}, from before this stage) is kept"
        else:
            kept = "no checkpoint had been written"
        return UserError(
            f"stage {name}: {what}; training stopped and {kept}: lower the learning rate "
            f"(--set {name}.lr=...) or check the settings and data"
        )

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
        window = MetricsWindow()
        skipped_in_a_row = 0
        try:
            for step in range(self.start_step, total):
                outputs, loss, terms, grad_norm, ratio = self.step(step)
                done = step + 1
                skipped_in_a_row = skipped_in_a_row + 1 if grad_norm is None else 0
                if skipped_in_a_row >= MAX_NONFINITE_STEPS:
                    self.batches.close()
                    raise self.diverged(
                        f"the loss or its gradient was not finite for {skipped_in_a_row} steps in a row "
                        f"(steps {done - skipped_in_a_row + 1}-{done})"
                    )
                window.add(loss, terms, grad_norm, ratio, self.config.batch)
                if done % settings.log_every == 0 or done == total:
                    row = self.log_row(window, done)
                    bar.set_postfix(
                        loss=f"{row['loss']:.4f}", img_s=f"{row['images_per_s']:.1f}", refresh=False
                    )
                    window = MetricsWindow()
                paused = time.perf_counter()  # writing files is not training time
                if is_main and (done % settings.sample_every == 0 or done == total):
                    save_sample_grid(sample_grid_path(run.run_dir, stage.name, done), outputs.images)
                due = done % settings.checkpoint_every == 0 and done < total
                if due and (skipped_in_a_row or not self.weights_finite()):  # keep the last finite one
                    logger.warning(
                        "stage %s step %d: loss or weights not finite, checkpoint not written",
                        stage.name,
                        done,
                    )
                elif due:
                    self.write_checkpoint(done)
                    self.last_checkpoint = done
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
        if not self.weights_finite():
            raise self.diverged(f"the weights are not finite at step {total}")
        self.write_checkpoint(total)
        weights_path = stage_weights_path(run.run_dir, stage.name)
        if run.dist.is_main:
            run.model.save(weights_path)
        if run.rank_digests:
            digest = state_digest(run.model.trainable_state_dict())
            write_rank_digest(run.run_dir, run.dist.rank, stage.name, total, digest)
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


def run_stage(run: RunContext, stage: Stage, start_step: int, resume: Checkpoint | None) -> StageSummary:
    """Train ``stage`` from ``start_step`` to its last step (``resume``: optimiser, EMA, RNG states)."""
    return StageRunner(run, stage, start_step, resume).train()
