"""Training on several processes: torchrun starts them, PyTorch DistributedDataParallel keeps them
in step. The paper trained its CIFAR nets on two GPUs (Sec. 4.2) with BN statistics per GPU.

    torchrun --nproc-per-node 2 -m reslab train --model resnet110 --data cifar10 ...
    reslab train --nproc 2 --model resnet110 --data cifar10 ...   # the same, through torchrun

Each process (rank) reads torchrun's environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR``, ``MASTER_PORT``) and joins one process group: NCCL on CUDA (rank ``r`` of a
machine uses ``cuda:LOCAL_RANK``), gloo on CPU. ``timeout_s`` (``--dist-timeout``, 600 s by
default) bounds the wait for the rendezvous and for every collective; a rendezvous that cannot be
reached is one :class:`~reslab.errors.ReslabError` line after at most that long. When a rank
fails, torchrun's agent stops the others (SIGTERM, then SIGKILL after its shutdown timeout,
30 s); only rank 0 writes, atomically, so the last complete checkpoint stays intact.

Outside torchrun (no ``WORLD_SIZE``, or 1) everything here is a no-op and a run is a single
process, exactly as before. See docs/DISTRIBUTED.md.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from reslab.errors import RankLost, ReslabError
from reslab.runtime import select_device


@dataclass(frozen=True)
class World:
    """This process's place in the job.

    Attributes:
        device: This rank's device.
        rank: Global rank, 0 .. world_size - 1 (rank 0 writes the run folder).
        world_size: Number of processes.
        local_rank: Rank on this machine (picks the GPU).
    """

    device: torch.device
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0


def env_ranks() -> tuple[int, int, int]:
    """``(RANK, WORLD_SIZE, LOCAL_RANK)`` as torchrun sets them; ``(0, 1, 0)`` outside torchrun.

    Raises:
        ReslabError: A variable is not an integer, or the ranks do not fit the world size.
    """
    values = []
    for name, default in (("RANK", "0"), ("WORLD_SIZE", "1"), ("LOCAL_RANK", "0")):
        text = os.environ.get(name, default)
        try:
            values.append(int(text))
        except ValueError:
            raise ReslabError(f"environment variable {name}={text!r} is not an integer") from None
    rank, world_size, local_rank = values
    if world_size < 1 or not 0 <= rank < world_size or local_rank < 0:
        raise ReslabError(f"RANK={rank}, WORLD_SIZE={world_size}, LOCAL_RANK={local_rank} do "
                          "not describe a process group (0 <= RANK < WORLD_SIZE)")
    return rank, world_size, local_rank


def rank_device(name: str, *, local_rank: int, distributed: bool) -> torch.device:
    """The device of local rank ``local_rank``: ``cuda:LOCAL_RANK`` when several ranks use CUDA.

    Args:
        name: The configured device (``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps``).
        local_rank: This process's rank on its machine.
        distributed: Several ranks in the job.

    Returns:
        The device.

    Raises:
        ReslabError: The device is missing, names one GPU for several ranks, or the machine has
            fewer GPUs than ranks.
    """
    device = select_device(name)
    if not distributed or device.type == "cpu":
        return device
    if device.type != "cuda":
        raise ReslabError(f"device {name!r}: several ranks need cuda (NCCL) or cpu (gloo)")
    if device.index is not None:
        raise ReslabError(f"device {name!r} names one GPU, but every rank needs its own: use "
                          "--device cuda (rank r of a machine uses cuda:r) and "
                          "CUDA_VISIBLE_DEVICES to choose the GPUs")
    count = torch.cuda.device_count()
    if local_rank >= count:
        raise ReslabError(f"local rank {local_rank} needs cuda:{local_rank} but this machine has "
                          f"{count} CUDA device(s): start at most {count} processes per machine")
    return torch.device("cuda", local_rank)


@contextlib.contextmanager
def join(device: str = "auto", *, timeout_s: float) -> Iterator[World]:
    """Join the process group torchrun's environment describes, and leave it at the end.

    Args:
        device: The configured device (see :func:`rank_device`).
        timeout_s: Longest wait for the rendezvous and for any collective afterwards.

    Yields:
        This process's :class:`World` (a world of one outside torchrun: no process group).

    Raises:
        ReslabError: Bad environment or device, or the rendezvous was not reached in time.
    """
    rank, world_size, local_rank = env_ranks()
    world = World(rank_device(device, local_rank=local_rank, distributed=world_size > 1),
                  rank, world_size, local_rank)
    if world_size == 1:
        yield world
        return
    addr, port = _store_address()
    where = f"rank {rank} of {world_size} (rendezvous {addr}:{port})"
    # rank 0 hosts the store, unless torchrun's agent does; the others connect to it
    if rank or os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True":
        _wait_for_listener(addr, port, timeout_s=timeout_s, where=where)
    if world.device.type == "cuda":
        torch.cuda.set_device(world.device)
    try:
        dist.init_process_group("nccl" if world.device.type == "cuda" else "gloo", rank=rank,
                                world_size=world_size, timeout=timedelta(seconds=timeout_s))
    except dist.DistError as exc:
        reason = str(exc).strip().splitlines()[0]
        raise ReslabError(f"{where}: could not join the process group within "
                          f"{timeout_s:g} s: {reason}") from None
    try:
        yield world
    except RuntimeError as exc:
        if not _peer_lost(exc):
            raise
        raise RankLost(f"rank {rank} of {world_size} stopped because another rank stopped "
                       f"(its message is above; here: {_first_sentence(exc)})") from None
    finally:
        dist.destroy_process_group()


def _peer_lost(error: RuntimeError) -> bool:
    """Whether ``error`` is a collective that failed because another rank's process ended:
    gloo closes the connection at once; NCCL errors are :class:`torch.distributed.DistError`."""
    return isinstance(error, dist.DistError) or any(
        text in str(error)
        for text in ("Connection closed by peer", "Connection reset by peer", "Broken pipe"))


def _first_sentence(error: Exception) -> str:
    """``error``'s first sentence, without the source location gloo puts in front of it
    (``[.../pair.cc:561] Connection closed by peer [127.0.0.1]:7307``)."""
    lines = str(error).strip().splitlines() or [""]
    return re.sub(r"^\[[^\]]*\]\s*", "", lines[0]).split(". ")[0][:200]


def _store_address() -> tuple[str, int]:
    addr, port = os.environ.get("MASTER_ADDR"), os.environ.get("MASTER_PORT", "")
    if not addr or not port.isdigit():
        raise ReslabError(f"WORLD_SIZE={os.environ['WORLD_SIZE']} but MASTER_ADDR/MASTER_PORT "
                          f"are {addr!r}/{port!r}: start the ranks with torchrun")
    return addr, int(port)


def _wait_for_listener(addr: str, port: int, *, timeout_s: float, where: str) -> None:
    """Wait until something accepts connections at ``addr:port``. torch's store client would
    wait as well, but prints C++ stack traces for every failed try; this gives one line."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection((addr, port), timeout=min(5.0, timeout_s)):
                return
        except OSError as exc:
            if time.monotonic() >= deadline:
                raise ReslabError(
                    f"{where}: nothing answered within {timeout_s:g} s "
                    f"({exc.strerror or exc}); is rank 0 running, and are MASTER_ADDR and "
                    "MASTER_PORT (torchrun --rdzv-endpoint) right?"
                ) from None
            time.sleep(0.25)


# -- collectives -------------------------------------------------------------------------------


def all_reduce_sum(tensor: Tensor) -> Tensor:
    """The sum of ``tensor`` over all ranks (a new tensor); ``tensor`` itself outside a group.

    Args:
        tensor: The same shape and dtype on every rank, on the rank's device.

    Returns:
        The element-wise sum.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return tensor
    total = tensor.clone()
    dist.all_reduce(total)
    return total


def sum_over_ranks(values: Sequence[Tensor | float], *, device: torch.device) -> list[float]:
    """Sum a few scalars over all ranks in one collective (float64, so counts stay exact).

    Args:
        values: 0-dim tensors on ``device`` or Python numbers.
        device: This rank's device (NCCL reduces CUDA tensors only).

    Returns:
        The sums as Python floats (one host transfer).
    """
    stacked = torch.stack([torch.as_tensor(v, dtype=torch.float64, device=device) for v in values])
    return all_reduce_sum(stacked).tolist()


@torch.no_grad()
def average_buffers(model: nn.Module) -> None:
    """Make every rank's floating-point buffers (BN running statistics) their mean over the
    ranks, in one collective, so that every rank evaluates, and rank 0 saves, the same model.

    Without ``--sync-bn`` each rank's statistics come from its own shards; DDP copies rank 0's
    buffers to the others at every training step, so this only changes what evaluation sees.

    Args:
        model: The unwrapped model, identical in structure on every rank.
    """
    buffers = [b for b in model.buffers() if b.is_floating_point()]
    if not buffers or not dist.is_initialized():
        return
    flat = all_reduce_sum(torch.cat([b.flatten().double() for b in buffers]))  # (total,)
    flat /= dist.get_world_size()
    for buffer, part in zip(buffers, flat.split([b.numel() for b in buffers])):
        buffer.copy_(part.view_as(buffer))


def data_parallel(model: nn.Module, world: World, *, sync_bn: bool = False
                  ) -> tuple[nn.Module, nn.Module]:
    """Prepare ``model`` (on ``world.device``) for training on all ranks.

    Args:
        model: The model.
        world: This process's :class:`World`.
        sync_bn: Normalise with the statistics of the global batch rather than each rank's
            shard (:func:`sync_batch_norm`).

    Returns:
        ``(model, step_model)``: the model that is evaluated and saved, and what the training
        step calls, :class:`~torch.nn.parallel.DistributedDataParallel` around it (rank 0's
        weights broadcast at construction, gradients averaged over ranks in the backward pass).
        Both are ``model`` in a single process.
    """
    if world.world_size == 1:
        return model, model
    if sync_bn:
        model = sync_batch_norm(model, device=world.device)
    device_ids = [world.device.index] if world.device.type == "cuda" else None
    return model, DistributedDataParallel(model, device_ids=device_ids)


# -- BatchNorm over the global batch -----------------------------------------------------------


def sync_batch_norm(model: nn.Module, *, device: torch.device) -> nn.Module:
    """Replace every BatchNorm2d by one whose training statistics cover all ranks' samples.

    GPUs get :meth:`torch.nn.SyncBatchNorm.convert_sync_batchnorm`. torch's SyncBatchNorm has
    CUDA kernels only, so CPU ranks (gloo) get :class:`CPUSyncBatchNorm`, which computes the
    same statistics from all-reduced per-channel sums.

    Args:
        model: The model (changed in place; the parameters keep their values).
        device: The ranks' device type decides the implementation.

    Returns:
        The converted model (the same state-dict keys).
    """
    if device.type != "cpu":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    if isinstance(model, nn.BatchNorm2d):
        sync = CPUSyncBatchNorm(model.num_features, eps=model.eps, momentum=model.momentum,
                                affine=model.affine, track_running_stats=model.track_running_stats)
        sync.load_state_dict(model.state_dict())
        return sync.train(model.training)
    for name, child in model.named_children():
        setattr(model, name, sync_batch_norm(child, device=device))
    return model


class CPUSyncBatchNorm(nn.BatchNorm2d):
    """BatchNorm2d that normalises with the mean and variance of the global batch, on CPU.

    Training mode sums ``x`` and ``x**2`` per channel (float64) over all ranks in one
    differentiable all-reduce; the running statistics are updated as BatchNorm2d does (unbiased
    variance). Evaluation uses the running statistics, with no communication.
    """

    def forward(self, x: Tensor) -> Tensor:  # noqa: D102 - nn.Module API
        if not self.training:
            return super().forward(x)
        c = x.shape[1]
        x64 = x.double()
        local = torch.cat([x64.sum((0, 2, 3)), x64.square().sum((0, 2, 3)),
                           x64.new_full((1,), x.numel() // c)])  # (2C + 1,)
        total = _AllReduceSum.apply(local)
        count = total[-1]
        mean = total[:c] / count  # (C,)
        var = total[c : 2 * c] / count - mean.square()  # biased, as BN normalises
        if self.track_running_stats:
            self._track(mean.detach(), var.detach() * count / (count - 1))
        scale = torch.rsqrt(var + self.eps).to(x.dtype)
        y = (x - mean.to(x.dtype)[:, None, None]) * scale[:, None, None]  # (N, C, H, W)
        if self.affine:
            y = y * self.weight[:, None, None] + self.bias[:, None, None]
        return y

    @torch.no_grad()
    def _track(self, mean: Tensor, var: Tensor) -> None:
        self.num_batches_tracked += 1
        factor = 1 / int(self.num_batches_tracked) if self.momentum is None else self.momentum
        self.running_mean.lerp_(mean.to(self.running_mean.dtype), factor)
        self.running_var.lerp_(var.to(self.running_var.dtype), factor)


class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks; every rank's loss depends on every rank's input through the sum, so the
    gradient is the sum of the ranks' gradients."""

    @staticmethod
    def forward(ctx, tensor: Tensor) -> Tensor:  # noqa: D102
        return all_reduce_sum(tensor)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # noqa: D102
        return all_reduce_sum(grad)


# -- launching ---------------------------------------------------------------------------------


def launch_local(nproc: int, argv: Sequence[str]) -> int:
    """Run ``python -m reslab ARGV`` as ``nproc`` ranks on this machine through torchrun's
    elastic launcher, as ``torchrun --standalone --nproc-per-node N --max-restarts 0 -m reslab
    ARGV`` would (a local rendezvous on a free port; no restarts: resume instead).

    Each rank gets ``OMP_NUM_THREADS`` = cores / ``nproc`` unless it is set. The launcher's own
    log lines are silenced: the ranks print their errors themselves.

    Args:
        nproc: Number of ranks (checked by the caller).
        argv: The ``reslab`` arguments, e.g. ``["train", "--model", "resnet20"]``.

    Returns:
        0 when every rank finished; 2 when a rank stopped on a user error; 1 after a crash, 130
        after an interrupt (with one line saying which rank failed).
    """
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    from reslab.cli import EXIT_USAGE  # what a rank exits with after a user error

    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    args = parse_args(["--standalone", f"--nproc-per-node={nproc}", "--max-restarts=0",
                       "-m", "reslab", *argv])
    with _quiet_loggers("torch.distributed"):
        try:
            run(args)
        except ChildFailedError as exc:
            if any(failure.exitcode == EXIT_USAGE for failure in exc.failures.values()):
                return EXIT_USAGE
            rank, failure = exc.get_first_failure()
            how = (f"was killed by {failure.signal_name()}" if failure.exitcode < 0
                   else f"exited with status {failure.exitcode}")
            sys.stderr.write(f"reslab: rank {rank} of {nproc} {how}; the run stopped with its "
                             "last complete checkpoint (continue with --resume)\n")
            return 1
        except SignalException as exc:
            sys.stderr.write(f"reslab: interrupted ({exc.sigval.name}); the ranks saved a "
                             "checkpoint if they reached a log step in time\n")
            return 130
    return 0


@contextlib.contextmanager
def _quiet_loggers(prefix: str) -> Iterator[None]:
    """Raise every logger under ``prefix`` to CRITICAL for the duration."""
    loggers = [logging.getLogger(name) for name in list(logging.root.manager.loggerDict)
               if name.startswith(prefix)]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)
