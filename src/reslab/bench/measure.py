"""Measuring on a shared machine: interleaved repeats, FLOPs, a peak measured on the spot,
and the memory of one iteration.

Candidates are timed in turns (A B C A B C ...) rather than one after the other, so that a
change in the machine's load during the run hits them alike; each candidate's time is the
median of its repeats and its speed-up is the median of the per-round ratios to the baseline.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from importlib import metadata

import torch
from torch import Tensor, nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.flop_counter import FlopCounterMode

from reslab.data.base import progress

Unit = Callable[[], object]  # one timed piece of work


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op on the CPU).

    Args:
        device: The device to wait for (only CUDA and MPS queue work).
    """
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def interleave(
    units: Sequence[Unit], *, warmup: int, repeats: int, device: torch.device, label: str = ""
) -> tuple[list[float], list[list[float]]]:
    """Time ``units`` in turns, round after round: A B C, A B C, ...

    Args:
        units: The candidates' units of work.
        warmup: Untimed rounds first (compilation, graph capture, caches, autotuning).
        repeats: Timed rounds.
        device: Synchronised before and after each call.
        label: The progress bar's description.

    Returns:
        The seconds of each unit's first call (its set-up cost included), and each unit's
        timed seconds, one per round.
    """
    first: list[float] = []
    times: list[list[float]] = [[] for _ in units]
    with progress(total=(warmup + repeats) * len(units), desc=label, unit="call") as bar:
        for round_index in range(warmup + repeats):
            for unit, unit_times in zip(units, times):
                synchronize(device)
                start = time.perf_counter()
                unit()
                synchronize(device)
                elapsed = time.perf_counter() - start
                if round_index == 0:
                    first.append(elapsed)
                if round_index >= warmup:
                    unit_times.append(elapsed)
                bar.update(1)
    return first, times


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100), linear between the closest ranks.

    Args:
        values: The samples (at least one).
        q: The percentile, 0 to 100.

    Returns:
        The interpolated value.
    """
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def median_ratio(baseline: Sequence[float], candidate: Sequence[float]) -> float:
    """The median over rounds of ``baseline time / candidate time`` (the speed-up).

    Args:
        baseline: The baseline's seconds, one per round.
        candidate: The candidate's seconds for the same rounds.

    Returns:
        The median of the per-round ratios (above 1: the candidate is faster).
    """
    return statistics.median(b / c for b, c in zip(baseline, candidate))


def count_flops(build: Callable[[], nn.Module], shape: Sequence[int], *, train: bool) -> int:
    """Floating-point operations of one forward pass (and its backward when ``train``), counted
    on the ``meta`` device: shapes only, nothing computed. A multiply-add counts as 2.

    Args:
        build: Makes the model.
        shape: The input [B, C, H, W].
        train: Count the backward pass too (about twice the forward).

    Returns:
        The FLOPs of convolutions and matrix products (what dominates a ResNet).
    """
    with torch.device("meta"):
        model = build().train(train)
    x = torch.empty(*shape, device="meta")
    with FlopCounterMode(display=False) as counter:
        out = model(x)
        if train:
            out.float().sum().backward()
    return counter.get_total_flops()


def tf32_convolutions(device: torch.device) -> bool:
    """Whether float32 convolutions on ``device`` run on TF32 tensor cores: on CUDA, what
    ``torch.backends.cudnn.allow_tf32`` says (PyTorch's default: yes).

    Args:
        device: The measured device.

    Returns:
        True on CUDA with cuDNN's TF32 allowed; False elsewhere.
    """
    return device.type == "cuda" and torch.backends.cudnn.allow_tf32


@contextmanager
def cudnn_autotuning(device: torch.device) -> Iterator[None]:
    """cuDNN's algorithm search on for the block on CUDA (what ``reslab train`` sets and what
    torchvision's reference training script sets), restored afterwards; nothing elsewhere.

    Args:
        device: The measured device.
    """
    saved = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = saved or device.type == "cuda"
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = saved


def matmul_peak(device: torch.device, dtype: torch.dtype, *, size: int, repeats: int) -> float:
    """The machine's reference speed: FLOP/s of a large square matrix product in ``dtype``,
    the median of ``repeats`` after one warm-up, measured now (under the same load as the
    rows it is compared with). A float32 product runs in the precision float32 convolutions
    get (:func:`tf32_convolutions`): a true-fp32 peak would let TF32 convolutions exceed 100%.

    Args:
        device: Where the product runs.
        dtype: The matrices' dtype.
        size: Side of the square matrices.
        repeats: Timed products.

    Returns:
        FLOP/s (``2 * size**3`` over the median time).
    """
    generator = torch.Generator().manual_seed(0)
    a, b = (torch.randn(size, size, generator=generator).to(device, dtype) for _ in range(2))
    saved = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32_convolutions(device)
    try:
        _, (times,) = interleave([lambda: a @ b], warmup=1, repeats=repeats, device=device,
                                 label=f"peak {str(dtype).removeprefix('torch.')}")
    finally:
        torch.backends.cuda.matmul.allow_tf32 = saved
    return 2 * size**3 / statistics.median(times)


class TensorMemory(TorchDispatchMode):
    """Bytes of tensor storage that PyTorch ops allocate while the mode is on: ``peak`` (the
    most alive at once) and ``current``. Storage allocated before the mode is not counted, so
    for a training step this is its activations, gradients and temporaries. Code that does not
    go through PyTorch's dispatcher (compiled kernels, ONNX Runtime) is not seen."""

    def __init__(self) -> None:
        super().__init__()
        self.current = self.peak = 0
        self.alive: set[int] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: D105
        out = func(*args, **(kwargs or {}))
        for tensor in tree_leaves(out):
            if isinstance(tensor, Tensor):
                self._track(tensor.untyped_storage())
        return out

    def _track(self, storage: torch.UntypedStorage) -> None:
        key, size = storage.data_ptr(), storage.nbytes()
        if size == 0 or key in self.alive:
            return
        self.alive.add(key)
        self.current += size
        self.peak = max(self.peak, self.current)
        weakref.finalize(storage, self._free, key, size)

    def _free(self, key: int, size: int) -> None:
        self.alive.discard(key)
        self.current -= size


def peak_memory(unit: Unit, device: torch.device) -> int:
    """Peak bytes that one call of ``unit`` allocates above what was allocated before it.

    On CUDA the caching allocator's statistics; elsewhere :class:`TensorMemory`.

    Args:
        unit: The work, called once.
        device: Its device: CUDA uses the allocator's statistics, anything else
            :class:`TensorMemory`.

    Returns:
        The peak in bytes.
    """
    if device.type == "cuda":
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        unit()
        synchronize(device)
        return torch.cuda.max_memory_allocated(device) - before
    with TensorMemory() as memory:
        unit()
    return memory.peak


def load_average() -> list[float]:
    """The 1, 5 and 15-minute load averages (empty where the system has none)."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return []


def machine(device: torch.device) -> dict[str, object]:
    """What the numbers were measured on: processor or GPU, cores, threads and versions.

    Args:
        device: The measured device (a CUDA device adds the GPU's name).

    Returns:
        ``cpu``, ``cores``, ``torch_threads``, ``python``, ``gpu`` (CUDA only) and the versions
        of torch, torchvision, timm and onnxruntime (None when not installed).
    """
    info: dict[str, object] = {
        "cpu": cpu_model(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
    }  # fmt: skip
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    for package in ("torch", "torchvision", "timm", "onnxruntime"):
        try:
            info[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            info[package] = None
    return info


def cpu_model() -> str:
    """The processor's model name (``/proc/cpuinfo`` on Linux)."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
