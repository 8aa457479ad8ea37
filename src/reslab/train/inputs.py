"""The data a training run reads: its loaders and the preprocessing saved with the model."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from reslab.data import (
    TensorLoader,
    dataset_info,
    get_dataset,
    load_arrays,
    per_pixel_mean,
    pipeline,
)
from reslab.data.image_loader import ImageLoader, capped_workers
from reslab.data.transforms import with_erasing
from reslab.models import model_info
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
        bn_loader: Training batches for precise BN, from a loader of their own so that the
            training loader's position is untouched (its own position is checkpointed too).
    """

    train: Any
    evals: dict[str, Any]
    classes: list[str]
    in_channels: int
    input_size: tuple[int, int]
    preprocess: dict[str, Any] = field(default_factory=dict)
    bn_loader: Any = None


def build_inputs(
    config: TrainConfig, device: torch.device, *, rank: int = 0, world_size: int = 1
) -> Inputs:
    """Load the splits named by ``config`` and build their loaders.

    Small data sets (CIFAR, Fashion-MNIST, MNIST) use the on-device fast path
    (:class:`reslab.data.TensorLoader`); the per-pixel mean of the training split (Sec. 4.2) is
    computed once here and reused for every split and saved with the model. Image-folder data
    sets (ImageNet, ``folder``) decode JPEGs in ``config.workers`` processes with the Sec. 3.4
    pipeline (:class:`reslab.data.ImageLoader`) and are evaluated on the center crop (224, or
    the input size of a net that runs at one size only, such as AlexNet's 227).

    Args:
        config: The run's configuration.
        device: Where batches are produced.
        rank: This process's rank (distributed training).
        world_size: Number of processes.

    Returns:
        The :class:`Inputs`.
    """
    info = dataset_info(config.data)
    build = _small_inputs if info.small else _image_inputs
    return build(config, device, rank=rank, world_size=world_size)


def _small_inputs(config: TrainConfig, device: torch.device, *, rank: int,
                  world_size: int) -> Inputs:
    train = load_arrays(config.data, config.data_dir, config.train_split)
    mean = per_pixel_mean(train.images)  # (C, H, W) in [0, 1]
    common = dict(device=device, mean=mean, rank=rank, world_size=world_size,
                  channels_last=config.channels_last)

    def train_loader(seed: int) -> TensorLoader:
        return TensorLoader(
            train.images, train.labels, batch_size=config.batch_size, train=True, seed=seed,
            pad=config.pad if config.augment else 0, flip=config.flip and config.augment,
            erase=config.erase if config.augment else 0.0, **common,
        )

    evals = {}
    for role, split in _eval_splits(config):
        arrays = load_arrays(config.data, config.data_dir, split)
        evals[role] = TensorLoader(arrays.images, arrays.labels, batch_size=EVAL_BATCH,
                                   train=False, seed=config.seed, **common)
    return Inputs(
        train=train_loader(config.seed),
        evals=evals,
        classes=list(train.classes),
        in_channels=train.images.shape[1],
        input_size=tuple(train.images.shape[2:]),
        bn_loader=train_loader(config.seed + 1) if config.precise_bn else None,
        preprocess=_preprocess_meta(mean),
    )


def _image_inputs(config: TrainConfig, device: torch.device, *, rank: int,
                  world_size: int) -> Inputs:
    info = dataset_info(config.data)
    net = model_info(config.model)  # a net that runs at one size only gets crops of it
    crop = max(net.input_size) if net.fixed_input_size and info.pipeline == "imagenet" else None
    preset = pipeline(info.pipeline, flip=config.flip, crop=crop)  # AlexNet: 227
    train_transform = (with_erasing(preset.train, config.erase) if config.augment
                       else preset.eval("center"))
    common = dict(device=device, rank=rank, world_size=world_size,
                  workers=capped_workers(config.workers),
                  channels_last=config.channels_last)

    def train_loader(seed: int) -> ImageLoader:
        dataset = get_dataset(config.data, config.data_dir, config.train_split,
                              transform=train_transform, seed=seed)
        return ImageLoader(dataset, batch_size=config.batch_size, train=True, seed=seed, **common)

    train = train_loader(config.seed)
    evals = {}
    for role, split in _eval_splits(config):
        dataset = get_dataset(config.data, config.data_dir, split,
                              transform=preset.eval("center"), seed=config.seed)
        evals[role] = ImageLoader(dataset, batch_size=config.batch_size, train=False,
                                  seed=config.seed, **common)
    return Inputs(
        train=train,
        evals=evals,
        classes=list(train.dataset.classes),
        in_channels=info.channels,
        input_size=tuple(preset.size),
        bn_loader=train_loader(config.seed + 1) if config.precise_bn else None,
        preprocess=_preprocess_meta(preset.mean),
    )


def _eval_splits(config: TrainConfig) -> list[tuple[str, str]]:
    return [(role, split) for role, split in (("val", config.val_split),
                                              ("test", config.test_split)) if split]


def _preprocess_meta(mean: torch.Tensor) -> dict[str, Any]:
    """What inference must repeat: pixels scaled to [0, 1], then ``mean`` (per-pixel [C, H, W]
    or per-channel [C]) subtracted."""
    return {"kind": "per-pixel-mean", "scale": 1 / 255, "shape": list(mean.shape),
            "mean": [round(v, 6) for v in mean.flatten().tolist()]}


def endless(loader: Any) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """A resumable loader's batches, epoch after epoch, from its current position (the loader
    moves itself to the next epoch when one ends).

    Args:
        loader: A resumable loader (``TensorLoader`` or ``ImageLoader``).
    """
    while True:
        yield from loader
