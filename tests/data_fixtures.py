"""Tiny data sets in the official formats, for tests outside tests/data."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import torch


def write_idx(path: Path, array: torch.Tensor) -> None:
    """Write a uint8 tensor as a gzipped IDX file (magic 0x0803 images / 0x0801 labels)."""
    magic = 0x800 + array.dim()
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.to(torch.uint8).numpy().tobytes())


def write_tiny_fashion_mnist(root: Path, *, train: int, test: int, seed: int = 0) -> None:
    """Fashion-MNIST-format IDX files (28x28, 10 classes) whose classes are learnable: each
    class is a brighter horizontal band at its own height, plus noise."""
    generator = torch.Generator().manual_seed(seed)
    for prefix, n in (("train", train), ("t10k", test)):
        labels = torch.arange(n) % 10
        images = torch.randint(0, 60, (n, 28, 28), generator=generator)
        for c in range(10):
            images[labels == c, 2 * c + 4 : 2 * c + 7, :] += 150
        write_idx(root / f"{prefix}-images-idx3-ubyte.gz", images.clamp(0, 255))
        write_idx(root / f"{prefix}-labels-idx1-ubyte.gz", labels)
