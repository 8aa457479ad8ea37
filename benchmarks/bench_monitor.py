"""Overhead of the training monitor (``reslab train --monitor``) at its default interval.

Runs the engine's training step (forward, cross-entropy, backward, SGD step) on ResNet-20 with
Fashion-MNIST-sized random batches, alternating blocks without and with the monitor in the same
process, and prints the ratio of the times. On a shared machine the blocks' times drift more
than the monitor costs, so it also compares each monitored step with the median of the six
steps around it (same block, same moment): the overhead is then
``extra time of a monitored step / (interval * median step)``.

    python benchmarks/bench_monitor.py [--steps 200] [--rounds 3] [--batch-size 128]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import reslab
from reslab.analysis.monitor import Monitor
from reslab.train.config import MONITOR_EVERY


def step(model, optimizer, x, y, monitor, iteration) -> None:
    loss = F.cross_entropy(model(x), y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if monitor is not None:
        monitor.after_backward(iteration)
    optimizer.step()
    if monitor is not None:
        monitor.after_step(iteration)


def block(model, optimizer, x, y, *, steps: int, monitor, start: int) -> list[float]:
    """The time of each of ``steps`` training steps."""
    times = []
    for i in range(start + 1, start + steps + 1):
        tic = time.perf_counter()
        step(model, optimizer, x, y, monitor, i)
        times.append(time.perf_counter() - tic)
    return times


def monitored_extra(times: list[float], *, start: int, every: int) -> list[float]:
    """Each monitored step's time minus the median of the three steps on either side."""
    extra = []
    for k, t in enumerate(times):
        if (start + k + 1) % every == 0:
            around = times[max(0, k - 3):k] + times[k + 1:k + 4]
            extra.append(t - statistics.median(around))
    return extra


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet20")
    parser.add_argument("--steps", type=int, default=2 * MONITOR_EVERY, help="steps per block")
    parser.add_argument("--rounds", type=int, default=3, help="blocks of each kind")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--every", type=int, default=MONITOR_EVERY)
    args = parser.parse_args()
    if args.every < 1 or args.steps < max(2, args.every):
        parser.error(f"--steps ({args.steps}) must be at least --every ({args.every}) and 2, and "
                     "--every positive: a shorter block may hold no monitored step")

    device = torch.device("cpu")
    torch.manual_seed(0)
    model = reslab.create_model(args.model, num_classes=10, in_channels=1).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    x = torch.randn(args.batch_size, 1, 28, 28, device=device)  # (B, 1, 28, 28)
    y = torch.randint(0, 10, (args.batch_size,), device=device)
    for i in range(5):  # warm-up
        step(model, optimizer, x, y, None, i)

    with tempfile.TemporaryDirectory() as tmp:
        monitor = Monitor(model, every=args.every, csv_path=Path(tmp) / "monitor.csv")
        plain_times, monitor_times, extra = [], [], []
        iteration = 0
        for _ in range(args.rounds):
            plain_times.append(sum(block(model, optimizer, x, y, steps=args.steps, monitor=None,
                                         start=iteration)))
            iteration += args.steps
            times = block(model, optimizer, x, y, steps=args.steps, monitor=monitor,
                          start=iteration)
            monitor_times.append(sum(times))
            extra += monitored_extra(times, start=iteration, every=args.every)
            iteration += args.steps

    plain_step = statistics.median(plain_times) / args.steps
    with_step = statistics.median(monitor_times) / args.steps
    per_monitored = statistics.median(extra)
    print(f"{args.model}, batch {args.batch_size}, monitor every {args.every}, "
          f"{args.rounds} x {args.steps} steps each, torch threads {torch.get_num_threads()}")
    print(f"  blocks without monitor: {1e3 * plain_step:.1f} ms/step")
    print(f"  blocks with monitor:    {1e3 * with_step:.1f} ms/step   ratio "
          f"{with_step / plain_step:.4f}")
    print(f"  a monitored step costs {1e3 * per_monitored:.1f} ms more than its neighbours "
          f"({len(extra)} samples) -> overhead {100 * per_monitored / (args.every * plain_step):.2f}%"
          f" at every {args.every}")


if __name__ == "__main__":
    main()
