"""Small data sets held as one uint8 tensor: the paper's fixed hold-out split and pixel mean."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from reslab.data.base import SeededDataset
from reslab.errors import ReslabError

# The seed of the fixed train/val split (Sec. 4.2: "45k/5k train/val split"): arXiv 1512.03385
# appeared on 2015-12-10. torch.randperm with a seeded CPU generator gives the same permutation
# on every machine; tests pin its first indices.
SPLIT_SEED = 20151210
VAL_SIZE = 5000


@dataclass(frozen=True)
class ArrayData:
    """One split of a small data set.

    Attributes:
        images: uint8 [N, C, H, W], on the CPU.
        labels: int64 [N].
        classes: Class names by label.
        name: The data set's name.
        split: The split's name.
    """

    images: Tensor
    labels: Tensor
    classes: list[str]
    name: str
    split: str

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, indices: Tensor, split: str) -> ArrayData:
        """The samples at ``indices`` (int64 [M]), as split ``split``.

        Args:
            indices: Sample positions, int64 [M].
            split: The new split's name.

        Returns:
            A new :class:`ArrayData` with the same classes and name.
        """
        return ArrayData(self.images[indices], self.labels[indices], self.classes, self.name, split)


def holdout_indices(num_train: int, num_val: int = VAL_SIZE) -> tuple[Tensor, Tensor]:
    """The paper's fixed train/val split of a training set (Sec. 4.2).

    Args:
        num_train: Size of the full training split.
        num_val: Size of the validation part.

    Returns:
        ``(train_indices, val_indices)``, each sorted int64, disjoint, together ``0..N-1``.
    """
    generator = torch.Generator().manual_seed(SPLIT_SEED)
    order = torch.randperm(num_train, generator=generator)
    return order[num_val:].sort().values, order[:num_val].sort().values


def select_holdout(train: ArrayData, split: str, *, official_size: int) -> ArrayData:
    """Cut ``train45k``/``train55k`` or ``val5k`` out of the full training split.

    Args:
        train: The full official training split.
        split: ``"val5k"`` or the larger part's name.
        official_size: Images in the official training split.

    Returns:
        The part named ``split``.

    Raises:
        ReslabError: ``train`` is not the complete official training split.
    """
    if len(train) != official_size:
        raise ReslabError(
            f"{train.name} split {split!r} is cut from the full {official_size}-image training "
            f"set, but the files hold {len(train)} images"
        )
    train_idx, val_idx = holdout_indices(official_size)
    return train.subset(val_idx if split == "val5k" else train_idx, split)


def per_pixel_mean(images: Tensor, *, chunk: int = 4096) -> Tensor:
    """The per-pixel mean image (Sec. 4.2: "the per-pixel mean subtracted").

    Args:
        images: uint8 [N, C, H, W].
        chunk: Images summed at a time (bounds the memory used).

    Returns:
        float32 [C, H, W] in [0, 1] (pixel values divided by 255).
    """
    if images.dtype != torch.uint8 or images.dim() != 4 or len(images) == 0:
        raise ReslabError(
            f"per_pixel_mean needs a non-empty uint8 [N, C, H, W] tensor, "
            f"got {images.dtype} {list(images.shape)}"
        )
    total = torch.zeros(images.shape[1:], dtype=torch.float64, device=images.device)
    for start in range(0, len(images), chunk):
        total += images[start : start + chunk].sum(0, dtype=torch.float64)
    return (total / (255.0 * len(images))).float()


class ArrayDataset(SeededDataset):
    """A map-style data set over :class:`ArrayData` (for ``DataLoader`` pipelines).

    Args:
        data: The split.
        transform: Applied to each uint8 [C, H, W] image, with randomness from
            (seed, epoch, index) (see :class:`reslab.data.base.SeededDataset`).
        seed: The run's data seed.
    """

    def __init__(
        self, data: ArrayData, *, transform: Callable[[Tensor], Any] | None = None, seed: int = 0
    ) -> None:
        super().__init__(transform=transform, seed=seed)
        self.data = data
        self.classes = data.classes

    def __len__(self) -> int:
        return len(self.data)

    def load(self, index: int) -> tuple[Tensor, int]:
        return self.data.images[index], int(self.data.labels[index])
