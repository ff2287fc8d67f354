"""The data order of a stage: the batch of step s depends only on (seed, s), so a resumed run sees the same.

epoch = s // steps_per_epoch picks the sampler's permutation and the dataset's crops and colours, so
resuming at step k (from the checkpoint's step alone) gives the batches an uninterrupted run would have
seen, on any number of processes that splits the same global batch.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

__all__ = ["iterate_batches"]


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
