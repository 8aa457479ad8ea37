"""Where a training step's time goes: torch.profiler over ResNet-20 steps, grouped by kind.

The plain step (torch's default SGD) and ours (fused SGD) are profiled in turn on the same
batches; each op's self CPU time is put in one of a few groups (convolution forward and
backward, BatchNorm, ReLU, residual additions, optimizer, other) so that one can see which
share of the step a fast path can touch at all. On CUDA the time is the GPU's: the kernels'
self time, attributed to the aten op that launched them.

    python benchmarks/bench_profile.py --steps 3
    python benchmarks/bench_profile.py --device cuda --steps 10
"""

from __future__ import annotations

import argparse
import copy
from collections import defaultdict

import torch
from torch.profiler import ProfilerActivity, profile

from reslab.analysis.summary import render
from reslab.bench.cases import fast_loader, synthetic_images, train_unit
from reslab.bench.measure import synchronize
from reslab.models import create_model
from reslab.runtime import select_device
from reslab.train.inputs import endless

GROUPS = (  # (group, substrings of aten op names), first match wins
    ("convolution backward", ("convolution_backward",)),
    ("convolution forward", ("convolution", "conv2d")),
    ("BatchNorm", ("batch_norm",)),
    ("ReLU", ("relu", "clamp_min", "threshold_backward")),
    ("optimizer", ("sgd", "foreach", "Optimizer")),
    ("residual add / copies", ("add", "copy_", "fill_", "mul_", "pad")),
)


def group_of(name: str) -> str:
    """The group of an op name."""
    for group, keys in GROUPS:
        if any(key in name for key in keys):
            return group
    return "other"


def profile_unit(unit, steps: int, device: torch.device) -> dict[str, float]:
    """Self seconds per group and step over ``steps`` calls of ``unit`` (after one warm-up
    call): CPU time on the CPU, the device's kernel time on CUDA."""
    cuda = device.type == "cuda"
    unit()
    synchronize(device)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        for _ in range(steps):
            unit()
        synchronize(device)  # the queued kernels finish inside the profile
    seconds: dict[str, float] = defaultdict(float)
    for event in prof.key_averages():
        if event.key.startswith("aten::") or event.key.startswith("Optimizer"):
            micros = event.self_device_time_total if cuda else event.self_cpu_time_total
            seconds[group_of(event.key)] += micros / 1e6 / steps
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--model", default="resnet20")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    device = select_device(args.device)
    images, labels = synthetic_images(args.batch * 10, 32)
    torch.manual_seed(0)
    model = create_model(args.model).to(device)
    units = {
        sgd: train_unit(copy.deepcopy(model),
                        endless(fast_loader(images, labels, batch_size=args.batch,
                                            device=device, channels_last=False)),
                        device=device, iters=1, sgd=sgd)
        for sgd in ("default", "fused")
    }  # fmt: skip
    results = {name: profile_unit(unit, args.steps, device) for name, unit in units.items()}
    groups = [g for g, _ in GROUPS] + ["other"]
    rows = []
    for group in groups:
        cells = [group]
        for seconds in results.values():
            total = sum(seconds.values())
            cells += [f"{1000 * seconds[group]:,.0f}", f"{100 * seconds[group] / total:.1f}%"]
        rows.append(cells)
    rows.append(["total"] + [c for s in results.values()
                             for c in (f"{1000 * sum(s.values()):,.0f}", "100%")])
    print(f"{args.model}, batch {args.batch}, {device}, torch threads {torch.get_num_threads()}: "
          f"self {'GPU kernel' if device.type == 'cuda' else 'CPU'} time per step by op group "
          f"(aten ops), mean of {args.steps} steps")
    print(render(["group", "default SGD ms", "share", "fused SGD ms", "share"], rows))


if __name__ == "__main__":
    main()
