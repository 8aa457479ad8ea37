"""Batches of image-folder data sets (ImageNet, ``folder``) through a ``DataLoader``, with the
interface of :class:`reslab.data.TensorLoader`: resumable position, (seed, epoch, index)
randomness, and global batches split into contiguous rank shards for DDP.

Decoding and the per-sample pipeline (Sec. 3.4: scale augmentation, 224 crop, flip, lighting)
run in ``workers`` processes; the order of the epoch and each rank's share are decided here,
so a resume, another batch split or another number of workers sees the same samples.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

import torch
from torch import Tensor
from torch.utils.data import DataLoader

from reslab.data.base import EpochPosition, SeededDataset, derive_seed
from reslab.errors import ReslabError

log = logging.getLogger(__name__)


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity, where the system reports one): the
    most worker processes torch's ``DataLoader`` accepts without a warning."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def capped_workers(workers: int) -> int:
    """``workers`` DataLoader processes, at most :func:`usable_cores` (more only compete for
    the same cores); a ``reslab: warning`` says when fewer are used than asked for.

    Args:
        workers: The worker processes asked for (0: load in the main process).

    Returns:
        The number to use.
    """
    cores = usable_cores()
    if workers <= cores:
        return workers
    log.warning("%d DataLoader workers asked for, but this process may use %d CPU cores: "
                "using %d", workers, cores, cores)
    return cores


class ImageLoader(EpochPosition):
    """A resumable, rank-aware loader over a :class:`reslab.data.base.SeededDataset`.

    Args:
        dataset: The data set (its transform makes the training views).
        batch_size: Global batch size; must divide by ``world_size``.
        device: Where batches are delivered.
        train: Shuffle each epoch and drop the last partial batch; else in order, keep it.
        seed: The run's data seed (the epoch order comes from (seed, epoch)).
        rank: This process's rank.
        world_size: Number of processes.
        workers: ``DataLoader`` worker processes.
        channels_last: Deliver batches in channels-last memory format.
    """

    def __init__(
        self,
        dataset: SeededDataset,
        *,
        batch_size: int,
        device: torch.device | str,
        train: bool,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        workers: int = 4,
        channels_last: bool = False,
    ) -> None:
        if batch_size % world_size:
            raise ReslabError(f"batch size {batch_size} does not divide by world size {world_size}")
        if train and len(dataset) < batch_size:
            raise ReslabError(
                f"{len(dataset)} training images, fewer than one batch of {batch_size}")
        self.dataset = dataset
        self.batch_size = batch_size
        self.device = torch.device(device)
        self.train = train
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.workers = workers
        self.channels_last = channels_last
        self.epoch = 0
        self.batch = 0

    def __len__(self) -> int:
        n = len(self.dataset)
        return n // self.batch_size if self.train else -(-n // self.batch_size)

    def _order(self) -> Tensor:
        n = len(self.dataset)
        if not self.train:
            return torch.arange(n)
        return torch.randperm(n, generator=torch.Generator().manual_seed(
            derive_seed(self.seed, self.epoch)))

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        """Yield this rank's ``(x float [b, C, H, W], y int64 [b])`` on ``device`` for the rest
        of the epoch, then move to the next epoch."""
        order = self._order()
        first = self.batch
        shards = []
        for batch in range(first, len(self)):
            lo, hi = self.shard(batch, len(order))
            shards.append(order[lo:hi].tolist())
        self.dataset.set_epoch(self.epoch)
        loader = DataLoader(
            self.dataset, batch_sampler=[s for s in shards if s], num_workers=self.workers,
            pin_memory=self.device.type == "cuda",
        )
        batches = iter(loader)
        for offset, shard in enumerate(shards):
            x, y = next(batches) if shard else (None, None)
            self.batch = first + offset + 1
            if x is None:  # an empty share of the last evaluation batch
                continue
            x = x.to(self.device, non_blocking=True)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, y.to(self.device, non_blocking=True)
        self.epoch, self.batch = self.epoch + 1, 0
