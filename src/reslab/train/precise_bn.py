"""Precise BN: re-estimate BatchNorm statistics on training batches before evaluating.

The running averages that BN keeps during training lag behind the weights; averaging the batch
statistics of N batches with the final weights gives better test statistics, as done for the
paper's released models.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor, nn


@torch.no_grad()
def update_bn_stats(model: nn.Module, batches: Iterator[tuple[Tensor, Tensor]],
                    num_batches: int) -> None:
    """Replace every BN layer's running mean/var by their average over ``num_batches`` batches.

    Args:
        model: The model (its training/eval mode is restored afterwards).
        batches: An iterator of ``(images, labels)`` training batches on the model's device.
        num_batches: How many batches to average (a cumulative, equal-weight average).
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns or num_batches <= 0:
        return
    momenta = [bn.momentum for bn in bns]
    was_training = model.training
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative moving average over the batches below
    model.train()
    try:
        for _ in range(num_batches):
            images, _labels = next(batches)
            model(images)
    finally:
        for bn, momentum in zip(bns, momenta):
            bn.momentum = momentum
        model.train(was_training)
