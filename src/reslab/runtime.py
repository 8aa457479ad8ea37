"""The machine a run uses: device selection, seeding, determinism, precision support."""

from __future__ import annotations

import os
import random

import torch

from reslab.errors import ReslabError


def select_device(name: str = "auto") -> torch.device:
    """Resolve a device name.

    Args:
        name: ``auto`` (CUDA, then MPS, then CPU), ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.

    Returns:
        The device.

    Raises:
        ReslabError: The device is not available on this machine.
    """
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda", "mps"):
        raise ReslabError(f"unknown device {name!r}; choose from: auto, cpu, cuda, cuda:N, mps")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ReslabError(f"device {name!r} requested but CUDA is not available here")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ReslabError(f"device {name!r}: only {torch.cuda.device_count()} CUDA device(s)")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ReslabError("device 'mps' requested but MPS is not available here")
    return device


def seed_everything(seed: int, *, deterministic: bool = False) -> None:
    """Seed Python, torch (CPU and CUDA); optionally force deterministic algorithms.

    Args:
        seed: The seed.
        deterministic: Use only deterministic kernels (slower on GPU; bit-exact resume).
    """
    random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    elif torch.cuda.is_available():
        torch.backends.cudnn.benchmark = True


def bf16_supported(device: torch.device) -> bool:
    """Whether bf16 autocast is supported (and worth using) on ``device``.

    Args:
        device: The device to check.

    Returns:
        On CUDA, what ``torch.cuda.is_bf16_supported()`` says; True on the CPU; False
        elsewhere.
    """
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu"
