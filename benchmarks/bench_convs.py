"""How fast the CIFAR ResNets' 3x3 convolutions run here, against a matmul peak measured now.

A CIFAR ResNet (Sec. 4.2) has three stages of 3x3 convolutions: 16 filters on 32x32 maps, 32 on
16x16, 64 on 8x8, 2n of each. Almost all of a training step is these convolutions (see
``bench_profile.py``), and reslab runs the same oneDNN (CPU) or cuDNN kernels as torchvision,
so this sets how much faster than a torchvision-style loop a training step can be at all.

For each stage's shape, in the contiguous (NCHW) and the channels-last layout, it times the
forward pass and the backward pass's two halves (the gradient of the input and of the weight,
``aten.convolution_backward`` with one output each) and prints GFLOP/s beside the FLOP/s of a
large matmul in the same run. The last lines add the stages up for ResNet-20 (6 convolutions
per stage) and give the ratio of the two layouts: the convolutions' share of any speed-up a
layout can bring to a training step.

    python benchmarks/bench_convs.py [--batch 128] [--repeats 9] [--device cpu]
"""

from __future__ import annotations

import argparse
import statistics

import torch

from reslab.analysis.summary import render
from reslab.bench.measure import interleave, matmul_peak
from reslab.runtime import select_device

STAGES = ((16, 32), (32, 16), (64, 8))  # (filters, map side) of the CIFAR ResNets' stages
LAYOUTS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}


def conv_units(channels: int, side: int, *, batch: int, layout: torch.memory_format,
               device: torch.device) -> dict[str, object]:
    """The forward, grad-input and grad-weight calls of one stage's 3x3 convolution.

    Args:
        channels: Input and output channels.
        side: Height and width of the feature maps.
        batch: Images per call.
        layout: Memory format of the input, weight and output gradient.
        device: Where the tensors live.

    Returns:
        ``{"forward" | "grad input" | "grad weight": callable}``.
    """
    generator = torch.Generator().manual_seed(0)

    def tensor(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator).to(device, memory_format=layout)

    x, grad_out = tensor(batch, channels, side, side), tensor(batch, channels, side, side)
    weight = tensor(channels, channels, 3, 3)

    def backward(mask: list[bool]):
        return lambda: torch.ops.aten.convolution_backward(
            grad_out, x, weight, None, [1, 1], [1, 1], [1, 1], False, [0, 0], 1, mask)

    return {"forward": lambda: torch.conv2d(x, weight, padding=1),
            "grad input": backward([True, False, False]),
            "grad weight": backward([False, True, False])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()
    device = select_device(args.device)
    peak = matmul_peak(device, torch.float32, size=2048, repeats=args.repeats)
    rows, step_ms = [], dict.fromkeys(LAYOUTS, 0.0)
    for channels, side in STAGES:
        flops = 2 * args.batch * channels * channels * 9 * side * side  # each of the three
        for layout_name, layout in LAYOUTS.items():
            units = conv_units(channels, side, batch=args.batch, layout=layout, device=device)
            _, times = interleave(list(units.values()), warmup=2, repeats=args.repeats,
                                  device=device, label=f"{channels}x{side}px {layout_name}")
            for part, part_times in zip(units, times):
                ms = 1000 * statistics.median(part_times)
                step_ms[layout_name] += 6 * ms  # ResNet-20: 2n = 6 convolutions per stage
                rows.append([f"{channels} filters, {side}x{side}", layout_name, part,
                             f"{ms:.2f}", f"{flops / ms / 1e6:.1f}",
                             f"{100 * flops / (ms / 1e3) / peak:.0f}%"])
    print(f"3x3 convolutions of the CIFAR ResNets, batch {args.batch}, {device}, torch threads "
          f"{torch.get_num_threads()}; matmul peak (2048x2048 fp32) {peak / 1e9:.1f} GFLOP/s")
    print(render(["stage", "layout", "part", "ms", "GFLOP/s", "% peak"], rows, left=3))
    contiguous, channels_last = step_ms["contiguous"], step_ms["channels_last"]
    print(f"ResNet-20's 18 stage convolutions, forward + backward: contiguous {contiguous:.0f} ms, "
          f"channels_last {channels_last:.0f} ms, ratio {contiguous / channels_last:.2f}")


if __name__ == "__main__":
    main()
