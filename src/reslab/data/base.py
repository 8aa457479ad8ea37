"""Pieces every data set shares: reproducible randomness and progress bars.

Every random choice is a function of (seed, epoch, sample index), so a resumed run, a run with
another batch size, and a run on another number of processes or data-loader workers see exactly
the same augmented samples.
"""

from __future__ import annotations

import abc
import hashlib
import sys
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset
from tqdm import tqdm

from reslab.errors import ReslabError


def progress(iterable: Iterable | None = None, **kwargs: Any) -> tqdm:
    """A tqdm progress bar on stderr, shown only when stderr is a terminal.

    Args:
        iterable: What to iterate over; None for a bar updated by hand.
        **kwargs: Passed to ``tqdm`` (``total``, ``desc``, ``unit``, ...).

    Returns:
        The bar (disabled when stderr is not a terminal).
    """
    return tqdm(iterable, disable=not sys.stderr.isatty(), **kwargs)


def derive_seed(*parts: int) -> int:
    """Mix integers into one 63-bit seed, the same on every machine and Python version.

    Args:
        *parts: For example ``(seed, epoch)`` or ``(seed, epoch, index)``.

    Returns:
        A seed for :meth:`torch.Generator.manual_seed`.
    """
    text = ":".join(str(int(part)) for part in parts).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little") >> 1


class SeededDataset(Dataset, abc.ABC):
    """A map-style data set whose ``transform`` draws its randomness from (seed, epoch, index).

    Sub-classes implement ``__len__`` and :meth:`load`. Torchvision's transforms draw from
    torch's default CPU generator; :meth:`__getitem__` re-seeds it for the one call (restoring
    its state afterwards), so the result does not depend on the order in which samples are
    read, the batch size or the number of workers. Call :meth:`set_epoch` before creating each
    epoch's ``DataLoader`` iterator (workers copy the data set when the iterator starts, so
    leave ``persistent_workers`` off).

    Args:
        transform: Applied to each image (``None``: the image as loaded).
        seed: The run's data seed.
    """

    def __init__(self, *, transform: Callable[[Tensor], Any] | None, seed: int) -> None:
        self.transform = transform
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Draw the next samples' randomness for ``epoch``.

        Args:
            epoch: The epoch, 0-based.
        """
        self.epoch = epoch

    @abc.abstractmethod
    def load(self, index: int) -> tuple[Tensor, int]:
        """Return sample ``index`` as (uint8 image [C, H, W], label), before the transform.

        Args:
            index: The sample's position, ``0 <= index < len(self)``.

        Returns:
            (image, label): uint8 [C, H, W] and the class index.
        """

    def __getitem__(self, index: int) -> tuple[Any, int]:
        image, label = self.load(index)
        if self.transform is None:
            return image, label
        with torch.random.fork_rng(devices=()):
            torch.random.default_generator.manual_seed(derive_seed(self.seed, self.epoch, index))
            return self.transform(image), label


def shard_bounds(start: int, size: int, rank: int, world_size: int) -> tuple[int, int]:
    """Positions ``[lo, hi)`` of rank ``rank``'s contiguous share of ``size`` positions from
    ``start`` (shares differ by at most one, as :func:`torch.tensor_split`).

    Args:
        start: The first position.
        size: Positions to share.
        rank: This process's rank, ``0 <= rank < world_size``.
        world_size: Number of processes.

    Returns:
        ``(lo, hi)``; earlier ranks get the extra positions.
    """
    base, extra = divmod(size, world_size)
    lo = start + rank * base + min(rank, extra)
    return lo, lo + base + (rank < extra)


class EpochPosition:
    """Where a resumable, rank-aware loader stands: the epoch, the next global batch, the seed.

    Shared by :class:`reslab.data.TensorLoader` and :class:`reslab.data.image_loader.ImageLoader`.
    Sub-classes set ``epoch``, ``batch``, ``seed``, ``batch_size``, ``rank`` and ``world_size``
    and define ``__len__`` (global batches per epoch).
    """

    epoch: int
    batch: int
    seed: int
    batch_size: int
    rank: int
    world_size: int

    def __len__(self) -> int:
        raise NotImplementedError

    def set_epoch(self, epoch: int) -> None:
        """Start ``epoch`` from its first batch; if it is the epoch in progress (e.g. restored by
        :meth:`load_state_dict`), iteration continues where it stopped.

        Args:
            epoch: The epoch, 0-based.
        """
        if epoch != self.epoch:
            self.epoch, self.batch = epoch, 0

    def state_dict(self) -> dict[str, int]:
        """The position: ``epoch``, ``batch`` (the next batch to yield) and ``seed``."""
        return {"epoch": self.epoch, "batch": self.batch, "seed": self.seed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Continue from a :meth:`state_dict`: the next batch is the first one not yet seen.

        Args:
            state: From :meth:`state_dict`.

        Raises:
            ReslabError: The state was made with another seed or does not fit this loader.
        """
        if int(state["seed"]) != self.seed:
            raise ReslabError(f"data state has seed {state['seed']}, this loader {self.seed}")
        if not 0 <= int(state["batch"]) <= len(self):
            raise ReslabError(f"data state batch {state['batch']} is outside 0..{len(self)}")
        self.epoch, self.batch = int(state["epoch"]), int(state["batch"])

    def shard(self, batch: int, num_samples: int) -> tuple[int, int]:
        """Positions ``[lo, hi)`` of this rank's part of global batch ``batch`` of an epoch of
        ``num_samples`` positions.

        Args:
            batch: The global batch's index within the epoch.
            num_samples: Positions in the epoch (the last batch may be short).

        Returns:
            ``(lo, hi)``, from :func:`shard_bounds`.
        """
        start = batch * self.batch_size
        size = min(self.batch_size, num_samples - start)
        return shard_bounds(start, size, self.rank, self.world_size)
