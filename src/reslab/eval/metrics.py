"""Classification metrics: top-1/top-5 error, per-class accuracy and the confusion matrix,
accumulated on the device and read once at the end (no host sync per batch)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass
class EvalResult:
    """What an evaluation measured.

    Attributes:
        top1_error: Fraction of samples whose top class is wrong.
        top5_error: Fraction whose label is not among the top 5 (top-k for fewer classes).
        loss: Mean cross-entropy.
        count: Number of samples.
        confusion: ``[num_classes, num_classes]`` counts, rows = true class, columns = predicted.
    """

    top1_error: float
    top5_error: float
    loss: float
    count: int
    confusion: Tensor

    @property
    def per_class_accuracy(self) -> list[float]:
        """Accuracy of each true class (NaN for a class with no sample)."""
        totals = self.confusion.sum(1).double()
        return (self.confusion.diag().double() / totals).tolist()

    def to_dict(self, classes: list[str] | None = None) -> dict:
        """JSON-ready numbers.

        Args:
            classes: Class names by label, used as ``per_class_accuracy`` keys; None (or empty):
                the labels as strings.

        Returns:
            The errors, loss, count, per-class accuracy and confusion matrix (nested lists).
        """
        names = classes or [str(i) for i in range(len(self.confusion))]
        return {
            "top1_error": self.top1_error, "top5_error": self.top5_error, "loss": self.loss,
            "count": self.count,
            "per_class_accuracy": dict(zip(names, self.per_class_accuracy)),
            "confusion": self.confusion.tolist(),
        }


class MetricAccumulator:
    """Running sums of loss, top-1/top-5 hits and the confusion matrix, kept on ``device``.

    Args:
        num_classes: Number of classes.
        device: Where the sums live (the model's device).
    """

    def __init__(self, num_classes: int, device: torch.device) -> None:
        self.num_classes = num_classes
        self.k = min(5, num_classes)
        self.loss = torch.zeros((), dtype=torch.float64, device=device)
        self.confusion = torch.zeros(num_classes * num_classes, dtype=torch.int64, device=device)
        self.top5_hits = torch.zeros((), dtype=torch.int64, device=device)

    def update(self, scores: Tensor, labels: Tensor, *, probabilities: bool = False) -> None:
        """Add a batch.

        Args:
            scores: (N, num_classes) logits, or class probabilities when ``probabilities``.
            labels: (N,) true classes.
            probabilities: ``scores`` are probabilities (e.g. averaged over 10 crops).
        """
        scores = scores.float()
        log_p = scores.clamp_min(1e-12).log() if probabilities else F.log_softmax(scores, 1)
        # per-sample losses summed in float64: the same total whatever the batches' split
        self.loss += F.nll_loss(log_p, labels, reduction="none").double().sum()
        predicted = scores.argmax(1)
        self.confusion += torch.bincount(labels * self.num_classes + predicted,
                                         minlength=self.num_classes**2)
        topk = scores.topk(self.k, dim=1).indices  # (N, k)
        self.top5_hits += (topk == labels[:, None]).any(1).sum()

    def result(self, *, reduce: Callable[[Tensor], Tensor] | None = None) -> EvalResult:
        """Read the sums (one host transfer).

        Args:
            reduce: Applied once to each sum before it is read; with
                :func:`reslab.train.distributed.all_reduce_sum`, ranks that each accumulated
                their own shard of a data set all get the result of the whole data set.
        """
        reduce = reduce or (lambda sums: sums)
        confusion = reduce(self.confusion).view(self.num_classes, self.num_classes).cpu()
        count = int(confusion.sum())
        correct = int(confusion.diag().sum())
        denominator = max(count, 1)
        return EvalResult(
            top1_error=1 - correct / denominator if count else float("nan"),
            top5_error=1 - int(reduce(self.top5_hits)) / denominator if count else float("nan"),
            loss=float(reduce(self.loss)) / denominator if count else float("nan"),
            count=count,
            confusion=confusion,
        )


@torch.no_grad()
def evaluate(
    model: nn.Module,
    batches: Iterable[tuple[Tensor, Tensor]],
    *,
    num_classes: int,
    device: torch.device,
    predict: Callable[[nn.Module, Tensor], Tensor] | None = None,
    amp: bool = False,
    reduce: Callable[[Tensor], Tensor] | None = None,
) -> EvalResult:
    """Evaluate ``model`` on ``batches`` in eval mode (the mode is restored afterwards).

    Args:
        model: The classifier.
        batches: ``(images, labels)`` pairs, already preprocessed and on ``device``.
        num_classes: Number of classes.
        device: The model's device.
        predict: A test protocol returning class probabilities for a batch (e.g. 10-crop,
            :mod:`reslab.eval.protocols`); default: the logits ``model(x)``.
        amp: bf16 autocast (CUDA/CPU where supported).
        reduce: Combines the ranks' sums when each rank evaluates its own shard (see
            :meth:`MetricAccumulator.result`).

    Returns:
        The :class:`EvalResult`.
    """
    was_training = model.training
    model.eval()
    metrics = MetricAccumulator(num_classes, device)
    try:
        for images, labels in batches:
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                scores = model(images) if predict is None else predict(model, images)
            metrics.update(scores, labels, probabilities=predict is not None)
    finally:
        model.train(was_training)
    return metrics.result(reduce=reduce)
