"""This process's place in a training run: torchrun's environment, the process group, rank helpers.

Under ``torchrun`` (RANK / WORLD_SIZE set) :func:`distributed_run` initialises the process group (NCCL on
CUDA, gloo on the CPU) and destroys it afterwards; a plain process is a world of one, and every helper
below is then a no-op, so the training code has a single path for one and many processes.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from recolorize.errors import UserError

__all__ = ["Distributed", "setup_distributed", "teardown_distributed", "distributed_run"]

logger = logging.getLogger(__name__)


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
        """Rank 0 writes the run's files and speaks for all ranks."""
        return self.rank == 0

    def all_reduce_mean(self, tensor: torch.Tensor) -> torch.Tensor:
        """The mean over the ranks, in place: logged losses (and skip decisions) agree on every rank."""
        if self.world_size > 1:
            dist.all_reduce(tensor)
            tensor /= self.world_size
        return tensor

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj`` in rank order (each rank's RNG states go into rank 0's checkpoint)."""
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
        """Wait for every rank (e.g. until rank 0 has written the run folder)."""
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


def teardown_distributed(distributed: Distributed) -> None:
    """Destroy the process group if :func:`setup_distributed` created it (not one a caller set up)."""
    if distributed.owns_group:
        dist.destroy_process_group()


@contextlib.contextmanager
def distributed_run(device: str | None) -> Iterator[Distributed]:
    """:func:`setup_distributed` for the length of a ``with`` block, then :func:`teardown_distributed`."""
    distributed = setup_distributed(device)
    try:
        yield distributed
    finally:
        teardown_distributed(distributed)
