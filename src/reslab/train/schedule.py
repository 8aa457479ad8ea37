"""Learning-rate schedules in iterations, as the paper gives them.

- ``step`` (Sec. 4.2): lr divided by 10 at fixed iterations (32k and 48k of 64k).
- ``plateau`` (Sec. 3.4): lr divided by 10 when the validation error stops improving.
- ``cosine``: a smooth decay to zero (not in the paper; a common shortened recipe).
- ``linear``: a straight-line decay to zero (not in the paper; for runs of a few epochs, where
  it keeps the lr higher for longer than the step schedule and ends lower than cosine's tail).
- warm-up (Sec. 4.2, ResNet-110): a small lr (0.01) until the training error is below 80%.
- ramp (not in the paper; Goyal et al. 2017, "Accurate, Large Minibatch SGD"): the lr grows in a
  straight line from ``base_lr / ramp_iters`` to ``base_lr`` over the first ``ramp_iters``
  iterations, whatever the schedule; ``linear`` and ``cosine`` then decay over the rest of the
  run. It lets short runs use a higher peak lr: a ResNet-20 trained 2 epochs on Fashion-MNIST
  ends lower with a 10% ramp to lr 0.2 than with a decay from lr 0.1 (docs/RESULTS.md).

The schedule's whole state is a few numbers, saved in the trainer state for an exact resume.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import asdict, dataclass


@dataclass
class LRSchedule:
    """The learning rate at each iteration.

    Args:
        base_lr: The initial learning rate (0.1).
        total_iters: Length of the run in iterations.
        kind: ``"step"``, ``"plateau"``, ``"cosine"`` or ``"linear"``.
        milestones: Iterations where ``step`` multiplies the lr by ``decay``.
        decay: The factor (0.1).
        patience: Evaluations without a new best validation error before ``plateau`` decays.
        warmup_lr: If set, use this lr until :meth:`observe_train_error` sees an error below
            ``warmup_error``.
        warmup_error: The training error that ends the warm-up (0.8).
        ramp_iters: Iterations of the linear ramp up to ``base_lr`` (0: none).
    """

    base_lr: float
    total_iters: int
    kind: str = "step"
    milestones: tuple[int, ...] = ()
    decay: float = 0.1
    patience: int = 3
    warmup_lr: float | None = None
    warmup_error: float = 0.8
    ramp_iters: int = 0
    # State, saved with the trainer.
    warming_up: bool = False
    plateau_decays: int = 0
    best_val_error: float = math.inf
    evals_since_best: int = 0

    def __post_init__(self) -> None:
        self.milestones = tuple(sorted(int(m) for m in self.milestones))
        self.warming_up = self.warmup_lr is not None  # a resume restores it from the state

    def lr(self, iteration: int) -> float:
        """The learning rate for 0-based ``iteration``.

        Args:
            iteration: The iteration about to run, 0-based.

        Returns:
            The learning rate.
        """
        if self.warming_up:
            return self.warmup_lr
        if iteration < self.ramp_iters:
            return self.base_lr * (iteration + 1) / self.ramp_iters
        if self.kind == "step":
            return self.base_lr * self.decay ** bisect.bisect_right(self.milestones, iteration)
        if self.kind == "plateau":
            return self.base_lr * self.decay**self.plateau_decays
        progress = (iteration - self.ramp_iters) / (self.total_iters - self.ramp_iters)
        if self.kind == "linear":
            return self.base_lr * (1 - progress)
        return 0.5 * self.base_lr * (1 + math.cos(math.pi * progress))

    def observe_train_error(self, error: float) -> None:
        """End the warm-up once the training error is below ``warmup_error`` (Sec. 4.2).

        Args:
            error: The training error of the last logging window, a fraction.
        """
        if self.warming_up and error < self.warmup_error:
            self.warming_up = False

    def observe_val_error(self, error: float) -> None:
        """Track the validation error; ``plateau`` decays after ``patience`` evaluations.

        Args:
            error: The validation error of the last evaluation, a fraction.
        """
        if error < self.best_val_error:
            self.best_val_error, self.evals_since_best = error, 0
            return
        self.evals_since_best += 1
        if self.kind == "plateau" and self.evals_since_best >= self.patience:
            self.plateau_decays += 1
            self.evals_since_best = 0

    def state_dict(self) -> dict:
        """The mutable state, for the trainer checkpoint."""
        state = asdict(self)
        return {k: state[k] for k in ("warming_up", "plateau_decays", "best_val_error",
                                       "evals_since_best")}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`.

        Args:
            state: From :meth:`state_dict`; each key is set as an attribute.
        """
        for key, value in state.items():
            setattr(self, key, value)
