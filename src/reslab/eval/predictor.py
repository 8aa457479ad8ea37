"""Inference: a checkpoint as a ready-to-use classifier with its class names and preprocessing.

    predictor = reslab.load("runs/resnet20-fashion-mnist")   # best.safetensors, else last
    predictor.topk(["shoe.png", "shirt.jpg"], k=3)           # [[("Sneaker", 0.97), ...], ...]
    probabilities = predictor(uint8_images)                  # (N, num_classes)

What :func:`load` reads:

- a run folder: its ``best.safetensors`` (lowest validation error), else ``last.safetensors``;
- one of our ``.safetensors`` files: the architecture, class names, input size and preprocessing
  come from its ``reslab`` metadata (:meth:`reslab.train.engine.Trainer.checkpoint_meta`);
- a torchvision-style ``.pth``/``.pt`` state dict (read with ``weights_only=True``): it carries no
  metadata, so ``model=`` names the architecture. ImageNet bottleneck nets are then built as
  torchvision builds them (``variant="v1.5"``: the stride on the 3x3 conv), so
  ``load("resnet50-0676ba61.pth", model="resnet50")`` gives torchvision's ResNet-50; pass
  ``options={"variant": "v1"}`` for a state dict of the paper's v1 layout. The class count and
  input channels are read off the weights; a 1000-way head gets torchvision's ImageNet class
  names, any other head the names ``"0"``, ``"1"``, ... and a warning (the ImageNet
  preprocessing below is then a guess).

Preprocessing (:class:`Preprocessing`): images are scaled to [0, 1], converted to the model's
channels (RGB to grey with the ITU-R 601 weights, grey to RGB by repetition), resized so that
the shorter side is the input size and centre-cropped to the input size (nothing happens to an
image that already has it, e.g. a 28x28 Fashion-MNIST image), and the training set's per-pixel
mean saved in the checkpoint is subtracted (Sec. 4.2: "the per-pixel mean subtracted").
Checkpoints without preprocessing metadata (foreign state dicts) get torchvision's ImageNet
preprocessing instead: shorter side resized to 256/224 of the input size (256 for 224), centre
crop, per-channel mean (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225) (for a grey model,
the averages 0.449 and 0.226).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF
from PIL import Image
from torch import Tensor, nn

from reslab.data.folder import open_image_header, pil_to_uint8
from reslab.errors import ReslabError, check_positive
from reslab.models import create_model, model_info, state_shapes
from reslab.runtime import select_device
from reslab.train.checkpoint import (
    checkpoint_file,
    checkpoint_options,
    load_weights_into,
    read_weights,
)

IMAGE_SUFFIXES = frozenset(
    {".bmp", ".gif", ".jpeg", ".jpg", ".pgm", ".png", ".pnm", ".ppm", ".tif", ".tiff", ".webp"}
)
log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # torchvision's ImageNet normalisation, RGB in [0, 1]
IMAGENET_STD = (0.229, 0.224, 0.225)
TEST_RESIZE_RATIO = 256 / 224  # torchvision's test transform: resize 256, centre crop 224

ImageLike = Tensor | Image.Image | str | os.PathLike
Images = ImageLike | Sequence[ImageLike]


class Preprocessing(nn.Module):
    """Turn float images in [0, 1], [N, C, H, W] or [C, H, W], into the model's input.

    Args:
        channels: The model's input channels.
        size: The model's input (H, W), centre-cropped after the resize; None: no crop.
        resize: Length the shorter side is resized to (when it differs); None: no resize.
        mean: Subtracted: per-pixel [C, H, W] (Sec. 4.2) or per-channel [C].
        std: Divides the result, per channel [C]; None for nothing (the paper's recipe).
    """

    def __init__(
        self, *, channels: int, size: tuple[int, int] | None, resize: int | None, mean: Tensor,
        std: Tensor | None = None,
    ) -> None:  # fmt: skip
        super().__init__()
        self.channels = channels
        self.size = None if size is None else tuple(size)
        self.resize = resize
        self.register_buffer("mean", mean.view(-1, 1, 1) if mean.dim() == 1 else mean)
        self.register_buffer("std", None if std is None else std.view(-1, 1, 1))

    def forward(self, x: Tensor) -> Tensor:  # x: float [N, C', H', W'] or [C', H', W']
        x = match_channels(x, self.channels)  # -> [N, C, H', W']
        if self.resize is not None and min(x.shape[-2:]) != self.resize:
            x = TF.resize(x, self.resize, antialias=True)  # shorter side -> resize
        if self.size is not None and tuple(x.shape[-2:]) != self.size:
            x = TF.center_crop(x, list(self.size))  # -> [N, C, H, W]
        x = x - self.mean
        return x if self.std is None else x / self.std

    def with_view(self, *, resize: int | None, crop: bool) -> Preprocessing:
        """The same normalisation for another view of the images, on the CPU.

        Args:
            resize: The shorter side's length (None: kept).
            crop: Centre-crop to the input size. Whole (uncropped) views subtract the
                per-channel mean: the channel averages of a per-pixel mean.

        Returns:
            A new :class:`Preprocessing`.
        """
        mean = self.mean.cpu()
        return Preprocessing(
            channels=self.channels, size=self.size if crop else None, resize=resize,
            mean=mean if crop else mean.mean((-2, -1)),
            std=None if self.std is None else self.std.cpu(),
        )  # fmt: skip

    def describe(self) -> dict[str, Any]:
        """JSON-ready description (for ONNX metadata and reports)."""
        return {
            "input": "float32 [N, C, H, W]: pixels scaled to [0, 1], mean subtracted"
            + ("" if self.std is None else ", divided by std"),
            "channels": self.channels, "size": None if self.size is None else list(self.size),
            "resize": self.resize,
            "mean_shape": list(self.mean.shape),
            "mean": [round(v, 6) for v in self.mean.flatten().tolist()],
            "std": None if self.std is None else self.std.flatten().tolist(),
        }  # fmt: skip


def match_channels(x: Tensor, channels: int) -> Tensor:
    """Convert float images [..., C, H, W] to ``channels`` channels (grey <-> RGB).

    Args:
        x: Float images [..., C, H, W].
        channels: The model's input channels.

    Returns:
        ``x`` itself when it has ``channels`` channels, else the converted images (grey to RGB
        is an expanded view).

    Raises:
        ReslabError: A conversion other than 1 <-> 3 channels.
    """
    have = x.shape[-3]
    if have == channels:
        return x
    if (have, channels) == (3, 1):
        return TF.rgb_to_grayscale(x)
    if (have, channels) == (1, 3):
        return x.expand(*x.shape[:-3], 3, *x.shape[-2:])
    layout = (" (a [H, W, C] tensor? permute it to [C, H, W])"
              if x.shape[-1] in (1, 3) and have not in (1, 3) else "")
    raise ReslabError(f"cannot convert {have}-channel images to the model's {channels} "
                      f"channels{layout}")


def preprocessing_from_meta(
    meta: dict[str, Any], *, channels: int, size: tuple[int, int], source: str
) -> Preprocessing:
    """The preprocessing a checkpoint's metadata describes, or the ImageNet fallback.

    Args:
        meta: The checkpoint's ``reslab`` metadata (empty for foreign checkpoints).
        channels: The model's input channels.
        size: The model's input (H, W).
        source: The checkpoint, for messages.

    Returns:
        The :class:`Preprocessing`.

    Raises:
        ReslabError: The metadata names an unknown kind or a mean of the wrong size.
    """
    spec = meta.get("preprocess")
    if not spec:
        mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
        if channels == 1:
            mean, std = mean.mean(0, keepdim=True), std.mean(0, keepdim=True)
        resize = round(max(size) * TEST_RESIZE_RATIO)
        return Preprocessing(channels=channels, size=size, resize=resize, mean=mean, std=std)
    if spec.get("kind") != "per-pixel-mean" or abs(spec.get("scale", 1 / 255) * 255 - 1) > 1e-6:
        raise ReslabError(
            f"{source}: unsupported preprocessing {spec.get('kind')!r} (scale "
            f"{spec.get('scale')}); this reslab reads 'per-pixel-mean' with scale 1/255"
        )
    mean = torch.tensor(spec.get("mean", []), dtype=torch.float32)
    shape = list(spec.get("shape", []))
    if len(shape) not in (1, 3) or shape[0] != channels or mean.numel() != math.prod(shape):
        raise ReslabError(f"{source}: a preprocessing mean of shape {shape} with {mean.numel()} "
                          f"values does not fit a {channels}-channel model")
    if len(shape) == 3 and tuple(shape[1:]) != tuple(size):
        raise ReslabError(f"{source}: a per-pixel preprocessing mean of shape {shape} does not "
                          f"fit the model's {size[0]}x{size[1]} input")
    std = spec.get("std")
    if std is not None and len(std) != channels:
        raise ReslabError(f"{source}: a preprocessing std of {len(std)} values does not fit a "
                          f"{channels}-channel model")
    # A per-pixel mean [C, H, W]: trained on whole images of the input size (CIFAR, MNIST), so
    # the image is resized to it; a per-channel mean [C]: trained on crops of larger images
    # (image folders, Sec. 3.4), so the test view is the 256 -> 224 one of `reslab eval`.
    resize = max(size) if len(shape) == 3 else round(max(size) * TEST_RESIZE_RATIO)
    return Preprocessing(
        channels=channels, size=size, resize=resize, mean=mean.view(shape),
        std=None if std is None else torch.tensor(std, dtype=torch.float32),
    )  # fmt: skip


class Predictor:
    """An eval-mode classifier with its class names and preprocessing (see :func:`load`).

    Args:
        model: The classifier (put in eval mode, gradients off, moved to ``device``).
        classes: Class names by output index.
        preprocessing: What turns [0, 1] images into the model's input.
        device: Where the model runs.
        meta: The checkpoint's metadata (empty for foreign checkpoints).
        source: The checkpoint file.
    """

    def __init__(
        self, model: nn.Module, *, classes: Sequence[str], preprocessing: Preprocessing,
        device: torch.device, meta: dict[str, Any] | None = None, source: str = "",
    ) -> None:  # fmt: skip
        self.model = model.eval().requires_grad_(False).to(device)
        self.classes = list(classes)
        self.preprocessing = preprocessing.to(device)
        self.device = device
        self.meta = dict(meta or {})
        self.source = source

    @property
    def input_size(self) -> tuple[int, int]:
        """The model's input (H, W)."""
        return self.preprocessing.size

    @property
    def in_channels(self) -> int:
        """The model's input channels."""
        return self.preprocessing.channels

    @property
    def model_name(self) -> str:
        """The registered architecture name."""
        return self.model.model_name

    def preprocess(self, images: Images) -> Tensor:
        """Turn images into the normalised batch the model expects.

        Args:
            images: A uint8 tensor [N, C, H, W] or [C, H, W], a PIL image, an image file, or a
                sequence of these (of any sizes; each is resized and cropped to the input size).

        Returns:
            float32 [N, C, H, W] on the predictor's device.

        Raises:
            ReslabError: An image that cannot be decoded, or a tensor that is not uint8 images.
        """
        parts = list(self._preprocessed(images))
        if not parts:
            raise ReslabError("no images given")
        return torch.cat(parts)

    def _preprocessed(self, images: Images, batch_size: int | None = None) -> Iterator[Tensor]:
        """:meth:`preprocess`, one decoded file or given tensor at a time (a given tensor in
        parts of at most ``batch_size`` images, when given)."""
        for batch in uint8_batches(images, channels=self.in_channels):
            for part in batch.split(batch_size) if batch_size else (batch,):
                yield self.preprocessing(TF.to_dtype(part.to(self.device), torch.float32,
                                                     scale=True))  # fmt: skip

    def _batches(self, images: Images, batch_size: int) -> Iterator[Tensor]:
        """The preprocessed images in batches of ``batch_size`` (the last one smaller), so that
        no more than about one batch is held at a time, however many images there are."""
        pending: list[Tensor] = []
        held = 0
        for part in self._preprocessed(images, batch_size):  # part: float [n, C, H, W]
            pending.append(part)
            held += len(part)
            if held >= batch_size:
                batches = list(torch.cat(pending).split(batch_size))
                pending = [batches.pop()] if len(batches[-1]) < batch_size else []
                held = len(pending[0]) if pending else 0
                yield from batches
        if pending:
            yield torch.cat(pending)

    @torch.no_grad()
    def __call__(self, images: Images, *, batch_size: int = 256) -> Tensor:
        """Class probabilities.

        Args:
            images: As for :meth:`preprocess`.
            batch_size: Images per forward pass.

        Returns:
            float32 [N, num_classes] on the CPU, rows summing to 1. Images are decoded and
            preprocessed a batch at a time, so memory does not grow with N beyond the result.

        Raises:
            ReslabError: As :meth:`preprocess`, or a ``batch_size`` that is not a positive
                integer.
        """
        check_positive(batch_size=batch_size)
        rows = [F.softmax(self.model(x).float(), 1).cpu()  # x: [batch_size, C, H, W]
                for x in self._batches(images, batch_size)]
        if not rows:
            raise ReslabError("no images given")
        return torch.cat(rows)

    def topk(self, images: Images, k: int = 5, *, batch_size: int = 256
             ) -> list[list[tuple[str, float]]]:
        """The ``k`` most probable classes of each image.

        Args:
            images: As for :meth:`preprocess`.
            k: Classes per image (at most the number of classes).
            batch_size: Images per forward pass.

        Returns:
            For each image, ``(class name, probability)`` pairs, most probable first.

        Raises:
            ReslabError: As :meth:`__call__`, or a ``k`` that is not a positive integer.
        """
        check_positive(k=k)
        probabilities, indices = self(images, batch_size=batch_size).topk(
            min(k, len(self.classes)), dim=1)
        return [[(self.classes[i], p) for i, p in zip(row_i.tolist(), row_p.tolist())]
                for row_i, row_p in zip(indices, probabilities)]


def uint8_batches(images: Images, *, channels: int) -> Iterator[Tensor]:
    """Yield ``images`` as uint8 [n, C, H, W] batches, decoding files one at a time.

    Args:
        images: As for :meth:`Predictor.preprocess`.
        channels: Decode files and PIL images to this many channels (1: grey, 3: RGB).

    Raises:
        ReslabError: A file that cannot be decoded, or a tensor that is not uint8 images.
    """
    if isinstance(images, (Tensor, Image.Image, str, os.PathLike, bytes, bytearray)):
        images = [images]
    for image in images:
        if isinstance(image, Tensor):
            if (image.dtype != torch.uint8 or image.dim() not in (3, 4)
                    or 0 in image.shape[-3:]):
                raise ReslabError(
                    f"image tensors must be uint8 [N, C, H, W] or [C, H, W] with C, H and W "
                    f"above 0, got {image.dtype} {list(image.shape)}"
                )
            yield image if image.dim() == 4 else image[None]
        elif isinstance(image, Image.Image):
            yield pil_to_uint8(image, channels=channels)[None]
        elif isinstance(image, (str, os.PathLike)):
            yield decode_image(Path(image), channels=channels)[None]
        else:
            raise ReslabError(f"cannot read an image from a {type(image).__name__}: give a "
                              "file path, a PIL image or a uint8 tensor")


def decode_image(path: Path, *, channels: int) -> Tensor:
    """Decode an image file (any format Pillow reads) to uint8 [C, H, W].

    Args:
        path: The image file.
        channels: 1 (grey) or 3 (RGB): the image is converted to it.

    Returns:
        uint8 [C, H, W].

    Raises:
        ReslabError: ``cannot decode image <path>: <reason>``, or an image of more pixels than
            Pillow's decompression-bomb limit, refused from its header as the image-folder
            reader refuses it (:func:`reslab.data.folder.open_image_header`).
    """
    if not path.is_file():
        raise ReslabError(f"image {path} does not exist (or is not a file)")
    try:
        with open_image_header(path, path) as image:
            return pil_to_uint8(image, channels=channels)
    except ReslabError:
        raise
    except (OSError, ValueError) as exc:
        raise ReslabError(f"cannot decode image {path}: {exc}") from None


def list_images(paths: Sequence[str | os.PathLike]) -> list[Path]:
    """Expand folders into their image files (by extension, sorted); keep files as given.

    Args:
        paths: Image files and folders of images.

    Returns:
        The image files, in the order given (each folder's sorted).

    Raises:
        ReslabError: A path that does not exist, or a folder without images.
    """
    found = []
    for path in map(Path, paths):
        if path.is_dir():
            images = sorted(p for p in path.iterdir()
                            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not images:
                raise ReslabError(f"{path} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
            found.extend(images)
        elif path.exists():
            found.append(path)
        else:
            raise ReslabError(f"image {path} does not exist")
    return found


def load(
    path: str | os.PathLike, *, device: str | torch.device = "cpu", model: str | None = None,
    options: dict[str, Any] | None = None,
) -> Predictor:  # fmt: skip
    """Load a checkpoint as a :class:`Predictor` (see the module docs for what it reads).

    Args:
        path: A run folder, one of our ``.safetensors`` files, or a ``.pth``/``.pt`` state dict.
        device: Where the model runs (``"auto"``, ``"cpu"``, ``"cuda"``, ...).
        model: The architecture; required for foreign state dicts, and overrides the
            checkpoint's own (the weights must then fit it).
        options: Model options (e.g. ``{"variant": "v1"}``), overriding the checkpoint's;
            not ``num_classes`` or ``in_channels``, which the checkpoint decides.

    Returns:
        The predictor, its model in eval mode on ``device``.

    Raises:
        ReslabError: Missing, truncated or corrupt file, no architecture for a foreign state
            dict, ``num_classes`` or ``in_channels`` in ``options``, or weights that do not fit
            the architecture (the mismatched keys and shapes are named).
    """
    file = checkpoint_file(path)
    state, meta = read_weights(file)
    name = model or meta.get("model")
    if name is None:
        raise ReslabError(
            f"{file} has no reslab metadata (a torchvision-style state dict?); name its "
            "architecture, e.g. model='resnet50' (--model resnet50 on the command line)"
        )
    for key in ("num_classes", "in_channels"):
        if key in (options or {}):
            raise ReslabError(f"{file}: {key} comes from the checkpoint, not from options")
    model_options = {**checkpoint_options(name, meta), **(options or {})}
    if "num_classes" in meta and "in_channels" in meta:
        num_classes, in_channels = meta["num_classes"], meta["in_channels"]
    else:
        num_classes, in_channels = head_and_stem_sizes(name, model_options, state, source=file)
    net = create_model(name, num_classes=num_classes, in_channels=in_channels, **model_options)
    load_weights_into(net, state, source=str(file))
    size = tuple(meta.get("input_size") or model_info(name).input_size)
    classes = meta.get("classes") or default_classes(num_classes)
    if len(classes) != num_classes:
        raise ReslabError(f"{file}: {len(classes)} class names for {num_classes} outputs")
    if not meta and num_classes != 1000:
        log.warning("%s records no preprocessing and no class names (not a reslab checkpoint): "
                    "using torchvision's ImageNet preprocessing and the names 0..%d; if the "
                    "model was trained with another input normalisation, its predictions are "
                    "off", file, num_classes - 1)
    return Predictor(
        net, classes=classes, device=select_device(str(device)), meta=meta, source=str(file),
        preprocessing=preprocessing_from_meta(meta, channels=in_channels, size=size,
                                              source=str(file)),
    )  # fmt: skip


def head_and_stem_sizes(
    name: str, options: dict[str, Any], state: dict[str, Tensor], *, source: Path
) -> tuple[int, int]:
    """``(num_classes, in_channels)`` of a state dict without metadata, read off the weights
    where architecture ``name`` keeps its classifier (last matrix) and first convolution.

    Args:
        name: A registered model name.
        options: Its model options (they decide the key names).
        state: The weights, parameter name to tensor.
        source: The checkpoint file, for the error message.

    Returns:
        ``(num_classes, in_channels)``.

    Raises:
        ReslabError: The state dict lacks those weights.
    """
    shapes = state_shapes(name, **options)
    head = [k for k, shape in shapes.items() if len(shape) == 2][-1]
    stem = next(k for k, shape in shapes.items() if len(shape) == 4)
    for key in (head, stem):
        if key not in state:
            raise ReslabError(f"{source} does not fit {name}: it has no {key!r} weight")
    return state[head].shape[0], state[stem].shape[1]


def default_classes(num_classes: int) -> list[str]:
    """Class names for a checkpoint without them: torchvision's ImageNet names for a 1000-way
    head, else ``"0"``, ``"1"``, ...

    Args:
        num_classes: The head's outputs.

    Returns:
        ``num_classes`` class names.
    """
    if num_classes == 1000:
        from torchvision.models import ResNet50_Weights

        return list(ResNet50_Weights.IMAGENET1K_V1.meta["categories"])
    return [str(i) for i in range(num_classes)]
