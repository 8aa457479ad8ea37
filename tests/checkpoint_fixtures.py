"""Tiny checkpoints in the trainer's format, for the eval, predict and export tests."""

from __future__ import annotations

from pathlib import Path

import torch

import reslab
from reslab.train.checkpoint import save_weights


def write_checkpoint(
    path: Path,
    *,
    model: str = "resnet8",
    classes: list[str] | None = None,
    in_channels: int = 1,
    size: int = 28,
    mean: torch.Tensor | None = None,
    seed: int = 0,
) -> Path:
    """Save a randomly initialised net with the metadata of ``Trainer.checkpoint_meta``.

    Args:
        path: The ``.safetensors`` file.
        model: The architecture.
        classes: Class names (default ``cat``, ``dog``, ``fox``).
        in_channels: Input channels.
        size: Input height and width.
        mean: The per-pixel mean [C, H, W] (default: a seeded random image).
        seed: Seeds the weights, the BN statistics and the mean.

    Returns:
        ``path``.
    """
    classes = classes or ["cat", "dog", "fox"]
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = reslab.create_model(model, num_classes=len(classes), in_channels=in_channels)
    for module in net.modules():  # BN statistics that are not the identity
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.normal_(0, 0.1, generator=generator)
            module.running_var.uniform_(0.5, 1.5, generator=generator)
    if mean is None:
        mean = torch.rand(in_channels, size, size, generator=generator) * 0.2 + 0.4
    meta = {
        "model": model, "model_options": {}, "num_classes": len(classes),
        "in_channels": in_channels, "classes": classes, "input_size": [size, size],
        "data": "tiny", "paper_ref": "Sec. 4.2", "iteration": 1,
        "preprocess": {"kind": "per-pixel-mean", "scale": 1 / 255, "shape": list(mean.shape),
                       "mean": mean.flatten().tolist()},
    }  # fmt: skip
    save_weights(path, net, meta)
    return path
