"""One training iteration, with the fast paths as switches (docs/PERFORMANCE.md, "Speed").

The plain step is the paper's SGD iteration (Sec. 3.4): forward, cross-entropy, backward, SGD
with momentum and weight decay. The switches change how it runs, not what it computes
(``tests/train/test_fast_paths.py`` checks each against the plain step):

- ``amp``: bf16 autocast of the forward pass (and so of its backward);
- ``compile_step``: ``torch.compile`` of the whole step: the forward and the loss become one
  graph whose backward AOTAutograd compiles, the SGD update another (``loss.backward()`` is
  where the two meet);
- ``cuda_graphs``: after a few eager warm-up steps the whole step (forward, backward, SGD) is
  captured as one CUDA graph and replayed on static input buffers: one launch per iteration
  instead of hundreds. It needs fixed shapes (the training loader drops the last partial
  batch), one process, and fused SGD (its learning rate is read from device memory, with no
  host synchronisation).

Fused SGD itself is the optimizer's switch (``TrainConfig.fused_sgd``), channels-last the
model's and the loader's (``TrainConfig.channels_last``, on by default on CUDA and the CPU:
:func:`device_defaults`).

The learning rate is passed to every call. With ``compile_step`` or ``cuda_graphs`` it lives in
a device tensor that the optimizer reads, so a new value neither recompiles nor invalidates the
captured graph.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from reslab.errors import ReslabError
from reslab.train.config import TrainConfig

WARMUP_STEPS = 3  # eager steps before a CUDA-graph capture (lazy state, cuDNN autotuning)


# Where channels-last is the default: measured faster for the CIFAR nets on CUDA and on the CPU
# (1.13x a ResNet-20 step at 32x32, 1.07x at 28x28 on 2 AVX2 cores; docs/PERFORMANCE.md).
CHANNELS_LAST_DEVICES = ("cuda", "cpu")


def device_defaults(config: TrainConfig, device: torch.device) -> TrainConfig:
    """``config`` with the switches it leaves to the device decided: channels-last on CUDA and
    the CPU (:data:`CHANNELS_LAST_DEVICES`).

    Args:
        config: The run's configuration (``channels_last`` None means "the device's default").
        device: The training device.

    Returns:
        The configuration with ``channels_last`` True or False.
    """
    if config.channels_last is None:
        return dataclasses.replace(config, channels_last=device.type in CHANNELS_LAST_DEVICES)
    return config


class TrainStep:
    """One SGD iteration: ``loss, logits = step(images, labels, lr=0.1)``.

    Args:
        model: The module to train (possibly compiled or DDP-wrapped).
        optimizer: SGD over the model's parameters.
        amp: bf16 autocast.
        label_smoothing: Cross-entropy label smoothing.
        compile_step: ``torch.compile`` the whole step.
        cuda_graphs: Capture the step as a CUDA graph after ``warmup_steps`` eager steps.
        after_backward: Called between the backward pass and the SGD update (the training
            monitor reads the gradients there); not with ``cuda_graphs``.
        warmup_steps: Eager steps before the capture.

    Raises:
        ReslabError: ``cuda_graphs`` without a CUDA device, with several processes, without
            fused SGD, with ``compile_step`` or with ``after_backward``.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        *,
        amp: bool = False,
        label_smoothing: float = 0.0,
        compile_step: bool = False,
        cuda_graphs: bool = False,
        after_backward: Callable[[], None] | None = None,
        warmup_steps: int = WARMUP_STEPS,
    ) -> None:
        self.device = next(model.parameters()).device
        if cuda_graphs:
            check_cuda_graphs(model, optimizer, device=self.device, compile_step=compile_step,
                              hooked=after_backward is not None)
        self.model = model
        self.optimizer = optimizer
        self.amp = amp
        self.label_smoothing = label_smoothing
        self.cuda_graphs = cuda_graphs
        self.after_backward = after_backward
        self.warmup_steps = warmup_steps
        self.lr_in_tensor = compile_step or cuda_graphs
        self._run = torch.compile(self._step) if compile_step else self._step
        self.steps = 0
        self.graph: torch.cuda.CUDAGraph | None = None
        self.static: tuple[Tensor, ...] = ()  # images, labels, loss, logits of the graph

    def __call__(self, images: Tensor, labels: Tensor, *, lr: float) -> tuple[Tensor, Tensor]:
        """Train on one batch.

        Args:
            images: float [B, C, H, W] on the model's device.
            labels: int64 [B].
            lr: This iteration's learning rate.

        Returns:
            The loss (a 0-dim tensor) and the logits [B, num_classes], detached, on the device
            (no host synchronisation). With ``cuda_graphs`` they are the graph's output buffers,
            overwritten by the next call.
        """
        self._set_lr(lr)
        self.steps += 1
        if not self.cuda_graphs:
            return self._run(images, labels)
        if self.graph is None and self.steps <= self.warmup_steps:
            return self._side_stream_step(images, labels)
        if self.graph is None:
            self._capture(images, labels)
        static_images, static_labels, loss, logits = self.static
        static_images.copy_(images)
        static_labels.copy_(labels)
        self.graph.replay()
        return loss, logits

    def _step(self, images: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        """The plain iteration (every switch runs exactly this code)."""
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp,
                            cache_enabled=not self.cuda_graphs):  # graphs forbid the cache
            logits = self.model(images)  # (B, num_classes)
            loss = F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.after_backward is not None:
            self.after_backward()
        self.optimizer.step()
        return loss.detach(), logits.detach()

    def _set_lr(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            current = group["lr"]
            if not self.lr_in_tensor:
                group["lr"] = lr
            elif isinstance(current, Tensor) and current.device == self.device:
                current.fill_(lr)  # in place: the compiled step and the graph read this memory
            else:  # the first call, or a state dict loaded since: a float lr
                group["lr"] = torch.tensor(lr, dtype=torch.float32, device=self.device)

    def _side_stream_step(self, images: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        """An eager step on a side stream, as warm-up before a capture must be."""
        main = torch.cuda.current_stream(self.device)
        side = torch.cuda.Stream(self.device)
        side.wait_stream(main)
        with torch.cuda.stream(side):
            outputs = self._step(images, labels)
        main.wait_stream(side)
        return outputs

    def _capture(self, images: Tensor, labels: Tensor) -> None:
        """Record one step on static copies of the inputs (recording does not run it)."""
        static_images, static_labels = images.clone(), labels.clone()
        self.optimizer.zero_grad(set_to_none=True)  # gradients get allocated in the graph's pool
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            loss, logits = self._step(static_images, static_labels)
        self.static = (static_images, static_labels, loss, logits)


def check_cuda_graphs(model: nn.Module, optimizer: torch.optim.Optimizer, *,
                      device: torch.device, compile_step: bool, hooked: bool) -> None:
    """Refuse the settings a captured step cannot have.

    Args:
        model: The model being trained (a ``DistributedDataParallel`` wrapper is refused).
        optimizer: Its optimizer; every param group must be fused.
        device: The training device.
        compile_step: Whether ``compile_step`` is on.
        hooked: Whether the training monitor reads gradients between backward and update.

    Raises:
        ReslabError: Naming the setting that must change.
    """
    if not all(group.get("fused") for group in optimizer.param_groups):
        raise ReslabError("cuda_graphs needs fused SGD (fused_sgd = true)")
    if compile_step:
        raise ReslabError("choose one of cuda_graphs and compile_step")
    if hooked:
        raise ReslabError("the training monitor (monitor > 0) reads gradients on the host "
                          "between backward and update; leave cuda_graphs off to use it")
    if isinstance(model, nn.parallel.DistributedDataParallel):
        raise ReslabError("cuda_graphs runs in one process; leave it off with torchrun/--nproc")
    if device.type != "cuda":
        raise ReslabError(f"cuda_graphs needs a CUDA device; the model is on {device}")
