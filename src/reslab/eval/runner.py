"""Evaluate a checkpoint on a data set with the paper's test protocols.

- Small data sets (CIFAR-10/100, Fashion-MNIST, MNIST): the single view of the original image
  (Sec. 4.2: "we only evaluate the single view of the original 32x32 image"), on the on-device
  fast path (:class:`reslab.data.TensorLoader`). ``10crop`` and ``multiscale`` are refused:
  they are ImageNet protocols, and a 32x32 image has no crops worth taking.
- Image folders (ImageNet, ``folder``), Sec. 3.4: ``center`` resizes the shorter side to 256/224
  of the input size (256 for 224) and takes the centre crop (a net trained on whole small
  images, whose checkpoint holds a per-pixel mean: the shorter side to the input size, the
  view :func:`reslab.load` predicts on); ``10crop`` averages the softmax of
  the 4 corner and centre crops and their flips of that image; ``multiscale`` averages the
  fully-convolutional scores of the whole image with its shorter side at 224, 256, 384, 480 and
  640 (scaled likewise for other input sizes). Whole-image views subtract the per-channel mean
  (the channel averages of a per-pixel mean).

The images are normalised by the checkpoint's own preprocessing
(:class:`reslab.eval.predictor.Preprocessing`), as :func:`reslab.load` does for prediction.
The forward passes run on a copy with BN folded into the convolutions
(:func:`reslab.models.fuse.fold_batchnorm`): the same errors, faster.
"""

from __future__ import annotations

import copy
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader
from torchvision.transforms import v2
from tqdm import tqdm

from reslab.data import TensorLoader, dataset_info, get_dataset, load_arrays, pipeline
from reslab.data.image_loader import capped_workers, usable_cores
from reslab.data.registry import DATA_DIR_ENV, DatasetInfo, data_root
from reslab.data.transforms import CROP, MULTISCALE_SIZES, PROTOCOLS
from reslab.errors import ReslabError, choices_hint
from reslab.eval.metrics import EvalResult
from reslab.eval.metrics import evaluate as evaluate_batches
from reslab.eval.predictor import TEST_RESIZE_RATIO, Predictor, load
from reslab.eval.protocols import predict_multiscale, predict_ten_crop
from reslab.models import model_info
from reslab.models.fuse import fold_batchnorm
from reslab.train.checkpoint import checkpoint_file
from reslab.train.config import read_toml
from reslab.train.inputs import endless
from reslab.train.precise_bn import update_bn_stats

EVAL_BATCH = 500
DEFAULT_WORKERS = 4  # image folders: at most the usable cores
BN_BATCH = 128  # precise-BN batches: the paper's training batch size (Sec. 4.2)

Batch = tuple[Tensor | list[Tensor], Tensor]  # (images, labels)


@dataclass
class Evaluation:
    """An evaluation and what it was run on.

    Attributes:
        result: The measured errors and confusion matrix.
        classes: Class names by label (the data set's).
        predictor: The evaluated model (with re-estimated BN statistics after ``precise_bn``).
        data: The data set's name.
        split: The split.
        protocol: The test protocol.
    """

    result: EvalResult
    classes: list[str]
    predictor: Predictor
    data: str
    split: str
    protocol: str

    def to_dict(self) -> dict:
        """JSON-ready numbers with their context."""
        return {
            "checkpoint": self.predictor.source, "model": self.predictor.model_name,
            "data": self.data, "split": self.split, "protocol": self.protocol,
            **self.result.to_dict(self.classes),
        }  # fmt: skip


def evaluate(checkpoint: str | os.PathLike | Predictor, **options: Any) -> EvalResult:
    """Evaluate a checkpoint on a data set: ``reslab.evaluate("runs/x", data="cifar10")``.

    Args:
        checkpoint: A run folder, a weights file or a :class:`Predictor`.
        **options: The keyword options of :func:`run_evaluation` (``data`` defaults to the
            data set the checkpoint was trained on).

    Returns:
        Top-1/top-5 error, loss and the confusion matrix (``EvalResult.to_dict`` for JSON).
    """
    return run_evaluation(checkpoint, **options).result


def _unrecorded_data(source: object) -> ReslabError:
    return ReslabError(f"{source} does not record the data set it was trained on: name one "
                       "with --data")


def check_data_and_protocol(info: DatasetInfo, *, protocol: str, precise_bn: int) -> None:
    """Refuse a test protocol or precise BN that the data set does not support.

    Args:
        info: The data set.
        protocol: ``center``, ``10crop`` or ``multiscale``.
        precise_bn: Batches for re-estimating BN (0: none).

    Raises:
        ReslabError: A multi-view protocol on a small data set (tested on the single view of
            the original image, Sec. 4.2), or precise BN on an image folder.
    """
    if info.small and protocol != "center":
        raise ReslabError(
            f"protocol {protocol!r} is for image-folder data (imagenet, folder); {info.name} is "
            "tested on the single view of the original image (Sec. 4.2): use --protocol center"
        )
    if precise_bn and not info.small:
        raise ReslabError("--precise-bn is supported on the small data sets (cifar10, "
                          "cifar100, fashion-mnist, mnist), not on image folders")


def run_evaluation(
    checkpoint: str | os.PathLike | Predictor,
    *,
    data: str | None = None,
    data_dir: str | os.PathLike | None = None,
    split: str | None = None,
    protocol: str = "center",
    precise_bn: int = 0,
    batch_size: int = EVAL_BATCH,
    device: str = "auto",
    model: str | None = None,
    workers: int | None = 0,
    progress: bool | None = None,
) -> Evaluation:
    """Evaluate a checkpoint on a data set (see the module docs for the protocols).

    Args:
        checkpoint: A run folder, a weights file (as :func:`reslab.load` reads) or a
            :class:`Predictor` (its model is not modified: precise BN works on a copy).
        data: The data set's name (``reslab.data.DATASETS``); None for the one the checkpoint
            was trained on (recorded in reslab checkpoints).
        data_dir: The data dir; None for ``$RESLAB_DATA_DIR``, else the run's own data dir
            (the checkpoint is in a run folder trained with ``data_dir`` on this data set, and
            that folder exists), else ``./data``.
        split: The split; default ``test``, or ``val`` for data sets (and ``folder`` trees)
            without a test split.
        protocol: ``center``, ``10crop`` or ``multiscale``.
        precise_bn: First re-estimate the BN statistics on this many augmented batches of the
            ``train`` split (small data sets; :mod:`reslab.train.precise_bn`).
        batch_size: Images per evaluation batch.
        device: Where to run, for a path (a :class:`Predictor` keeps its device).
        model: Architecture for a foreign state dict (see :func:`reslab.load`).
        workers: DataLoader workers for image-folder data sets, at most the usable CPU cores
            (more are capped, with a warning); None: :data:`DEFAULT_WORKERS` or the usable
            cores, whichever is fewer.
        progress: Show a progress bar (default: when stderr is a terminal).

    Returns:
        The :class:`Evaluation`.

    Raises:
        ReslabError: Bad checkpoint, data set, split, protocol, option value, or a data set
            whose classes or image size the checkpoint does not fit.
    """
    if protocol not in PROTOCOLS:
        raise ReslabError(f"unknown protocol {protocol!r}; {choices_hint(PROTOCOLS)}")
    if workers is None:
        workers = min(DEFAULT_WORKERS, usable_cores())
    for name, value, least in (("batch size", batch_size, 1), ("--precise-bn", precise_bn, 0),
                               ("workers", workers, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ReslabError(f"{name} must be an integer of at least {least}, got {value!r}")
    if data is not None:
        check_data_and_protocol(dataset_info(data), protocol=protocol, precise_bn=precise_bn)
    file = None
    if isinstance(checkpoint, Predictor):
        predictor = checkpoint
    else:
        file = checkpoint_file(checkpoint)
        if data is None and file.suffix != ".safetensors":  # no metadata to read it from
            raise _unrecorded_data(file)
        predictor = load(file, device=device, model=model)
    if data is None:
        data = predictor.meta.get("data")
        if data is None:
            raise _unrecorded_data(predictor.source or "the checkpoint")
        check_data_and_protocol(dataset_info(data), protocol=protocol, precise_bn=precise_bn)
    if data_dir is None and not os.environ.get(DATA_DIR_ENV) and file is not None:
        data_dir = run_data_dir(file.parent, data)
    if protocol == "multiscale" and model_info(predictor.model_name).fixed_input_size:
        raise ReslabError(f"{predictor.model_name} runs at {predictor.input_size[0]}x"
                          f"{predictor.input_size[1]} only (its fc layers take a feature map of "
                          "one size), so it has no fully-convolutional multi-scale test: use "
                          "--protocol center or 10crop")
    info = dataset_info(data)
    split = split or default_split(info, data_dir)
    if info.small:
        classes, loader, prepare = small_split(predictor, info, data_dir, split,
                                               batch_size=batch_size)
    else:
        classes, loader, prepare = folder_split(predictor, info, data_dir, split,
                                                protocol=protocol, batch_size=batch_size,
                                                workers=workers)
    if precise_bn:
        predictor = copy.copy(predictor)
        predictor.model = copy.deepcopy(predictor.model)
        update_bn_stats(predictor.model, training_batches(predictor, info, data_dir), precise_bn)
    show = sys.stderr.isatty() if progress is None else progress
    bar = tqdm(loader, desc=f"eval {data} {split} ({protocol})", disable=not show)
    result = evaluate_batches(
        fold_batchnorm(predictor.model), (prepare(images, labels) for images, labels in bar),
        num_classes=len(classes), device=predictor.device,
        predict=protocol_function(protocol, predictor.input_size),
    )  # fmt: skip
    return Evaluation(result, classes, predictor, data, split, protocol)


def run_data_dir(folder: Path, data: str) -> str | None:
    """The data dir a run folder was trained with, to evaluate it on the same files.

    Args:
        folder: The checkpoint's folder.
        data: The data set to evaluate on.

    Returns:
        The run's ``data_dir`` when ``folder`` is a run folder trained on ``data`` with one
        that is still a folder here; else None.
    """
    try:
        config = read_toml(folder / "config.toml")
    except (OSError, ReslabError):
        return None
    named = config.get("data_dir")
    if config.get("data") != data or not isinstance(named, str) or not Path(named).is_dir():
        return None
    return named


def default_split(info: DatasetInfo, data_dir: str | os.PathLike | None) -> str:
    """The split evaluated when none is named: ``test``, else ``val``; for a ``folder`` tree,
    the first of them it has (a ``train``/``val`` tree is tested on ``val``).

    Args:
        info: The data set.
        data_dir: Folder holding it (for ``folder``: the tree; None: reslab's default search).

    Returns:
        The split's name.
    """
    if info.name == "folder":
        root = data_root(data_dir)
        return next((split for split in ("test", "val") if (root / split).is_dir()), "test")
    return "test" if "test" in info.splits else "val"


def check_classes(predictor: Predictor, classes: list[str], *, data: str) -> None:
    """Fail when the checkpoint's classes are not the data set's.

    Args:
        predictor: The loaded checkpoint.
        classes: The data set's class names.
        data: The data set's name, for the message.

    Raises:
        ReslabError: Another class count, or (for checkpoints with class names) other names.
    """
    if len(classes) != len(predictor.classes):
        raise ReslabError(
            f"{predictor.source} has {len(predictor.classes)} classes but {data} has "
            f"{len(classes)}"
        )
    if "classes" in predictor.meta and list(predictor.meta["classes"]) != list(classes):
        raise ReslabError(
            f"{predictor.source} was trained on the classes {predictor.classes[:5]}..., "
            f"{data} has {classes[:5]}..."
        )


def small_split(
    predictor: Predictor, info: DatasetInfo, data_dir: str | os.PathLike | None, split: str,
    *, batch_size: int,
) -> tuple[list[str], Iterable[Batch], Callable[..., Batch]]:  # fmt: skip
    """A small data set's split on the device ([0, 1] batches) and the normalisation step.

    Args:
        predictor: The loaded checkpoint (its input shape, classes, device and preprocessing).
        info: The data set.
        data_dir: Folder holding it (None: reslab's default search).
        split: The split to read.
        batch_size: Images per batch.

    Returns:
        ``(classes, loader, prepare)``: ``prepare(images, labels)`` gives the model's batch.

    Raises:
        ReslabError: The checkpoint takes images of another shape, or has other classes.
    """
    arrays = load_arrays(info.name, data_dir, split)
    shape = (predictor.in_channels, *predictor.input_size)
    if tuple(arrays.images.shape[1:]) != shape:
        raise ReslabError(
            f"{predictor.source} takes {'x'.join(map(str, shape))} images, {info.name} has "
            f"{'x'.join(map(str, arrays.images.shape[1:]))}"
        )
    check_classes(predictor, arrays.classes, data=info.name)
    loader = TensorLoader(arrays.images, arrays.labels, batch_size=batch_size,
                          device=predictor.device, train=False)
    return arrays.classes, loader, lambda images, labels: (
        predictor.preprocessing(images), labels)


def training_batches(
    predictor: Predictor, info: DatasetInfo, data_dir: str | os.PathLike | None
) -> Iterator[Batch]:
    """Endless augmented, normalised batches of the ``train`` split (the data set's pad and
    flip, Sec. 4.2), for precise BN.

    Args:
        predictor: The loaded checkpoint (its device and preprocessing).
        info: A small data set (its ``train`` split is read).
        data_dir: Folder holding it (None: reslab's default search).

    Returns:
        An endless iterator of ``(images, labels)`` on the predictor's device, at most
        :data:`BN_BATCH` images each.
    """
    arrays = load_arrays(info.name, data_dir, "train")
    preset = pipeline(info.pipeline)
    loader = TensorLoader(
        arrays.images, arrays.labels, batch_size=min(BN_BATCH, len(arrays)),
        device=predictor.device, train=True, pad=preset.pad, flip=preset.flip,
    )  # fmt: skip
    return ((predictor.preprocessing(images), labels) for images, labels in endless(loader))


def folder_split(
    predictor: Predictor, info: DatasetInfo, data_dir: str | os.PathLike | None, split: str,
    *, protocol: str, batch_size: int, workers: int,
) -> tuple[list[str], Iterable[Batch], Callable[..., Batch]]:  # fmt: skip
    """An image-folder split through a DataLoader, in the protocol's views (module docs).

    Args:
        predictor: The loaded checkpoint (its input size, device and preprocessing).
        info: The data set.
        data_dir: Folder holding it (None: reslab's default search).
        split: The split to read.
        protocol: ``center``, ``10crop`` or ``multiscale`` (:data:`reslab.data.PROTOCOLS`).
        batch_size: Images per batch.
        workers: DataLoader worker processes (at most the usable cores: capped with a warning).

    Returns:
        ``(classes, loader, prepare)``: ``prepare(images, labels)`` moves a batch to the
        device; uncropped views of different sizes stay lists of [C, H, W] tensors.

    Raises:
        ReslabError: The checkpoint has other classes (checked before any worker starts).
    """
    # center: the predictor's own view (a CIFAR-style net, per-pixel mean, sees the whole image
    # at its input size); 10-crop: 256 for 224 crops
    resize = (predictor.preprocessing.resize if protocol == "center"
              else round(max(predictor.input_size) * TEST_RESIZE_RATIO))
    view = predictor.preprocessing.with_view(
        resize=None if protocol == "multiscale" else resize, crop=protocol == "center")
    dataset = get_dataset(info.name, data_dir, split,
                          transform=v2.Compose([v2.ToDtype(torch.float32, scale=True), view]))
    check_classes(predictor, list(dataset.classes), data=info.name)
    device, workers = predictor.device, capped_workers(workers)
    if protocol == "center":
        loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers)
        return list(dataset.classes), loader, lambda images, labels: (
            images.to(device), labels.to(device))
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers,
                        collate_fn=collate_list)
    return list(dataset.classes), loader, lambda images, labels: (
        [image.to(device) for image in images], labels.to(device))


def collate_list(samples: list[tuple[Tensor, int]]) -> tuple[list[Tensor], Tensor]:
    """Batch views of different sizes as a list, with their labels as a tensor.

    Args:
        samples: ``(image [C, H, W], label)`` pairs; images may differ in size.

    Returns:
        ``(images, labels)``: the images as a list, the labels int64 [B].
    """
    return [image for image, _ in samples], torch.tensor([label for _, label in samples])


def protocol_function(protocol: str, input_size: tuple[int, int]) -> Callable[..., Tensor] | None:
    """The protocol's ``predict(model, images)`` for :func:`reslab.eval.metrics.evaluate`
    (None for ``center``: the logits of the single view). Crops and scales follow the input
    size (224: crops of 224, scales 224 to 640).

    Args:
        protocol: ``center``, ``10crop`` or ``multiscale``; any other value is treated as
            ``center``.
        input_size: The model's input (height, width); the larger side sets the crop size.

    Returns:
        The predict function, or None.
    """
    size = max(input_size)
    if protocol == "10crop":
        return partial(predict_ten_crop, crop=size)
    if protocol == "multiscale":
        scales = [round(side * size / CROP) for side in MULTISCALE_SIZES]
        return partial(predict_multiscale, scales=scales)
    return None
