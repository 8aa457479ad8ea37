"""``reslab data show``: a labelled grid of samples, as loaded or as the training augmentation
makes them, so a user can see what the net sees."""

from __future__ import annotations

import io
import math
import os
from collections.abc import Sequence

import torch
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

from reslab.data.arrays import per_pixel_mean
from reslab.data.datasets import get_dataset, load_arrays
from reslab.data.fast import TensorLoader
from reslab.data.registry import dataset_info
from reslab.data.transforms import pipeline, with_erasing
from reslab.io import atomic_save_bytes

CELL = 96  # smallest shown image side, in pixels (small images are enlarged by a whole factor)
LABEL_HEIGHT = 14
GAP = 4


def preview(
    name: str,
    root: str | os.PathLike | None,
    split: str,
    *,
    count: int = 64,
    augmented: bool = False,
    erase: float = 0.0,
    seed: int = 0,
) -> tuple[Tensor, list[str]]:
    """Samples spread evenly over a split, with their class names.

    Args:
        name: The data set.
        root: The data dir.
        split: The split.
        count: How many samples.
        augmented: Apply the training augmentation of the data set's pipeline (small data
            sets: :class:`reslab.data.TensorLoader`, which may reorder them); else the plain
            test view.
        erase: With ``augmented``, random erasing with this probability (erased boxes show
            the split's mean, as in training).
        seed: Seed of the augmentation.

    Returns:
        ``(images, names)``: float [n, C, H, W] in [0, 1] (any mean added back), class names.
    """
    info = dataset_info(name)
    preset = pipeline(info.pipeline)
    if info.small:
        data = load_arrays(name, root, split)
        index = torch.linspace(0, len(data) - 1, min(count, len(data))).long()
        images, labels = data.images[index], data.labels[index]
        mean = per_pixel_mean(data.images)  # subtracted and added back: erased boxes show it
        loader = TensorLoader(
            images, labels, batch_size=len(index), device="cpu", train=augmented,
            pad=preset.pad, flip=preset.flip, erase=erase, seed=seed, mean=mean,
        )  # fmt: skip
        x, y = next(iter(loader))
        pixels = ((x + mean) * 255).round_().clamp_(0, 255)  # the uint8 values again
        return pixels / 255, [data.classes[label] for label in y.tolist()]
    transform = with_erasing(preset.train, erase) if augmented else preset.eval("center")
    dataset = get_dataset(name, root, split, transform=transform, seed=seed)
    index = torch.linspace(0, len(dataset) - 1, min(count, len(dataset))).long().tolist()
    samples = [dataset[i] for i in index]
    x = torch.stack([image for image, _ in samples]) + preset.mean.view(-1, 1, 1)
    return x.clamp(0, 1), [dataset.classes[label] for _, label in samples]


def _fit(draw: ImageDraw.ImageDraw, text: str, font, width: int) -> str:
    while text and draw.textlength(text, font=font) > width:
        text = text[:-1]
    return text


def render_grid(images: Tensor, names: Sequence[str], *, columns: int | None = None) -> Image.Image:
    """Lay out images with their labels underneath.

    Args:
        images: float [N, C, H, W] in [0, 1] (C is 1 or 3).
        names: One label per image.
        columns: Images per row (default: a square grid).

    Returns:
        An RGB image.
    """
    n, _, h, w = images.shape
    scale = max(1, math.ceil(CELL / max(h, w)))
    columns = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    cell_w, cell_h = w * scale + GAP, h * scale + LABEL_HEIGHT + GAP
    canvas = Image.new("RGB", (columns * cell_w + GAP, rows * cell_h + GAP), "white")
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    pixels = (images.clamp(0, 1) * 255).round().to(torch.uint8).expand(-1, 3, -1, -1)
    pixels = pixels.permute(0, 2, 3, 1).numpy()  # [N, H, W, 3]
    for i, (tile, name) in enumerate(zip(pixels, names, strict=True)):
        left, top = GAP + (i % columns) * cell_w, GAP + (i // columns) * cell_h
        tile = Image.fromarray(tile).resize((w * scale, h * scale), Image.Resampling.NEAREST)
        canvas.paste(tile, (left, top))
        label = _fit(draw, name, font, w * scale)
        draw.text((left, top + h * scale + 1), label, fill="black", font=font)
    return canvas


def save_png(image: Image.Image, path: str | os.PathLike) -> None:
    """Write ``image`` as a PNG, atomically.

    Args:
        image: The picture, e.g. from :func:`render_grid`.
        path: The destination file; its folder must exist.
    """
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    atomic_save_bytes(path, buffer.getvalue())
