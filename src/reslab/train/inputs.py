"""The data a training run reads: its loaders and the preprocessing saved with the model."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from reslab.data import TensorLoader, dataset_info, load_arrays, per_pixel_mean
from reslab.errors import ReslabError
from reslab.train.config import TrainConfig

EVAL_BATCH = 500


@dataclass
class Inputs:
    """Loaders and data facts for one run.

    Attributes:
        train: The training loader (shuffled, augmented; resumable).
        evals: Evaluation loaders by role, ``"val"`` and/or ``"test"``.
        classes: Class names.
        in_channels: Image channels.
        input_size: Image (H, W).
        preprocess: The normalisation, saved in checkpoints so that inference repeats it.
        bn_batches: Training batches for precise BN, from a loader of their own so that the
            training loader's position (and an exact resume) is untouched.
    """

    train: Any
    evals: dict[str, Any]
    classes: list[str]
    in_channels: int
    input_size: tuple[int, int]
    preprocess: dict[str, Any] = field(default_factory=dict)
    bn_batches: Any = None


def build_inputs(
    config: TrainConfig, device: torch.device, *, rank: int = 0, world_size: int = 1
) -> Inputs:
    """Load the splits named by ``config`` and build their loaders.

    Small data sets (CIFAR, Fashion-MNIST, MNIST) use the on-device fast path
    (:class:`reslab.data.TensorLoader`); the per-pixel mean of the training split (Sec. 4.2) is
    computed once here and reused for every split and saved with the model.

    Args:
        config: The run's configuration.
        device: Where batches are produced.
        rank: This process's rank (distributed training).
        world_size: Number of processes.

    Returns:
        The :class:`Inputs`.
    """
    info = dataset_info(config.data)
    if not info.small:
        raise ReslabError(
            f"training on {config.data!r} (an image-folder data set) is not supported by "
            "`reslab train` yet; use cifar10, cifar100, fashion-mnist or mnist"
        )
    train = load_arrays(config.data, config.data_dir, config.train_split)
    mean = per_pixel_mean(train.images)  # (C, H, W) in [0, 1]
    common = dict(device=device, mean=mean, rank=rank, world_size=world_size,
                  channels_last=config.channels_last)

    def train_loader(seed: int) -> TensorLoader:
        return TensorLoader(
            train.images, train.labels, batch_size=config.batch_size, train=True, seed=seed,
            pad=config.pad if config.augment else 0, flip=config.flip and config.augment, **common,
        )

    evals = {}
    for role, split in (("val", config.val_split), ("test", config.test_split)):
        if split:
            arrays = load_arrays(config.data, config.data_dir, split)
            evals[role] = TensorLoader(arrays.images, arrays.labels, batch_size=EVAL_BATCH,
                                       train=False, seed=config.seed, **common)
    return Inputs(
        train=train_loader(config.seed),
        evals=evals,
        classes=list(train.classes),
        in_channels=train.images.shape[1],
        input_size=tuple(train.images.shape[2:]),
        bn_batches=endless(train_loader(config.seed + 1)) if config.precise_bn else None,
        preprocess={"kind": "per-pixel-mean", "scale": 1 / 255, "shape": list(mean.shape),
                    "mean": [round(v, 6) for v in mean.flatten().tolist()]},
    )


def endless(loader: Any) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """A resumable loader's batches, epoch after epoch, from its current position (the loader
    moves itself to the next epoch when one ends)."""
    while True:
        yield from loader
