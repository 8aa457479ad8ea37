"""An exponential moving average (EMA) of the weights, evaluated and saved in place of the last
weights (``--ema DECAY``; not in the paper, which evaluates the weights SGD ends with).

The average follows the trained weights after every iteration: ``avg += (1 - d_t) (w - avg)``
with ``d_t = min(decay, (1 + t) / (10 + t))`` after ``t`` iterations, the warm-up of
TensorFlow's ``ExponentialMovingAverage(num_updates=...)``: the first, random weights are
forgotten within tens of iterations however high ``decay`` is. The BN running statistics are
averaged the same way; integer buffers (BN's batch counter) are copied.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class WeightAverage:
    """The exponential moving average of a model's parameters and buffers.

    Args:
        model: The trained model, on its device and in its memory format (copied once; the
            copy holds the average).
        decay: The decay per iteration, in [0, 1); about ``1 / (1 - decay)`` iterations count.
    """

    def __init__(self, model: nn.Module, *, decay: float) -> None:
        if not 0 <= decay < 1:
            raise ValueError(f"decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.module = copy.deepcopy(model).eval().requires_grad_(False)
        pairs = list(zip(self.module.parameters(), model.parameters(), strict=True))
        pairs += zip(self.module.buffers(), model.buffers(), strict=True)
        self._averaged = [(a, w) for a, w in pairs if a.is_floating_point()]
        self._copied = [(a, w) for a, w in pairs if not a.is_floating_point()]

    def decay_at(self, iteration: int) -> float:
        """The decay used by the update after ``iteration`` iterations (1 for the first)."""
        return min(self.decay, (1 + iteration) / (10 + iteration))

    @torch.no_grad()
    def update(self, iteration: int) -> None:
        """Move the average toward the model's current weights.

        Args:
            iteration: Iterations trained so far, this one included.
        """
        if self._averaged:
            averages, weights = zip(*self._averaged)
            torch._foreach_lerp_(averages, weights, 1 - self.decay_at(iteration))
        for average, weight in self._copied:
            average.copy_(weight)
