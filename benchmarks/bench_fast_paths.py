"""Each fast path on its own: training-step and inference speed-ups, measured side by side.

Training (ResNet-20, batch 128, 32x32, on the device): the plain step (torch's default SGD)
against the same step with one switch at a time: fused SGD, foreach SGD, channels-last, bf16
autocast, and (``--compile``) ``torch.compile`` of the whole step, (CUDA) CUDA graphs.
Inference (ResNet-50, batch 1): eager ``no_grad`` against ``inference_mode``, BN folded,
BN folded + channels-last, and ONNX Runtime (CPU). All candidates take turns (A B C ...), so
a change of load hits them alike; the ratio is the median of the per-round ratios.

    python benchmarks/bench_fast_paths.py                   # both parts, default device
    python benchmarks/bench_fast_paths.py --part train --compile --repeats 5
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
from pathlib import Path

import torch
import torchvision

from reslab.analysis.summary import render
from reslab.bench.cases import (
    eager_candidate,
    fast_loader,
    onnx_candidate,
    reslab_model,
    repeat,
    synthetic_images,
    train_unit,
)
from reslab.bench.measure import interleave, load_average, median_ratio
from reslab.models import create_model
from reslab.models.fuse import fold_batchnorm
from reslab.runtime import select_device
from reslab.train.inputs import endless
from reslab.train.step import WARMUP_STEPS


def training_variants(device: torch.device, *, compile: bool) -> dict[str, dict]:
    """Name -> :func:`reslab.bench.cases.train_unit` options of each candidate."""
    variants = {
        "plain (torch's default SGD)": {},
        "fused SGD": {"sgd": "fused"},
        "foreach SGD": {"sgd": "foreach"},
        "channels_last": {"channels_last": True},
        "bf16 autocast": {"amp": True},
    }
    if compile:
        variants["compile_step + fused SGD"] = {"compile_step": True, "sgd": "fused"}
        variants["compile_step + fused SGD + channels_last"] = {
            "compile_step": True, "sgd": "fused", "channels_last": True}
    if device.type == "cuda":
        variants["cuda_graphs + fused SGD"] = {"cuda_graphs": True, "sgd": "fused"}
    return variants


def warmup_rounds(variants: dict[str, dict], requested: int) -> int:
    """Untimed rounds of the training part: ``requested``, and with a CUDA-graph variant at
    least its eager warm-up steps and its capture (one step a round), so that each of its
    timed rounds is a replay of the graph."""
    if any(options.get("cuda_graphs") for options in variants.values()):
        return max(requested, WARMUP_STEPS + 1)
    return requested


def training(args: argparse.Namespace, device: torch.device) -> list[list[str]]:
    """Time one training step per variant."""
    images, labels = synthetic_images(args.batch * 10, args.size)
    torch.manual_seed(0)
    model = create_model(args.model).to(device)
    units = {}
    variants = training_variants(device, compile=args.compile)
    for name, options in variants.items():
        batches = endless(fast_loader(images, labels, batch_size=args.batch, device=device,
                                      channels_last=options.get("channels_last", False)))
        units[name] = train_unit(copy.deepcopy(model), batches, device=device, iters=1,
                                 **options)
    return timed_rows(units, args, device, label=f"train {args.model} b{args.batch}",
                      warmup=warmup_rounds(variants, args.warmup))


def inference(args: argparse.Namespace, device: torch.device, folder: Path) -> list[list[str]]:
    """Time one forward pass at batch 1 per variant."""
    torch.manual_seed(0)
    reference = torchvision.models.get_model(args.infer_model).eval().to(device)
    ours = reslab_model(args.infer_model)
    ours.load_state_dict(reference.state_dict())
    ours = ours.eval().to(device)
    x = torch.randn(1, 3, 224, 224, device=device)
    folded = fold_batchnorm(ours)
    folded_cl = copy.deepcopy(folded).to(memory_format=torch.channels_last)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    units = {
        "eager no_grad": eager_candidate("eager", reference, x, iters=1, settings="").unit,
        "inference_mode": repeat(torch.inference_mode()(ours), x, 1),
        "BN folded": repeat(torch.inference_mode()(folded), x, 1),
        "BN folded + channels_last": repeat(torch.inference_mode()(folded_cl), x_cl, 1),
    }
    if device.type == "cpu":
        onnx = onnx_candidate(ours, x, iters=1, folder=folder)
        if onnx is not None:
            units["onnxruntime"] = onnx.unit
    return timed_rows(units, args, device, label=f"infer {args.infer_model} b1",
                      warmup=args.warmup)


def timed_rows(units: dict, args: argparse.Namespace, device: torch.device, *,
               label: str, warmup: int) -> list[list[str]]:
    """Interleave the units after ``warmup`` untimed rounds; one table row each: median ms and
    the ratio to the first."""
    _, times = interleave(list(units.values()), warmup=warmup, repeats=args.repeats,
                          device=device, label=label)
    return [[label, name, f"{1000 * statistics.median(t):,.1f}",
             f"{median_ratio(times[0], t):.2f}"] for name, t in zip(units, times)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--part", choices=("train", "infer", "both"), default="both")
    parser.add_argument("--model", default="resnet20", help="training model")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--infer-model", default="resnet50")
    parser.add_argument("--compile", action="store_true", help="add compile_step (slow on CPU)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    device = select_device(args.device)
    print(f"device {device}, torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"load average {load_average()}")
    rows = []
    if args.part in ("train", "both"):
        rows += training(args, device)
    if args.part in ("infer", "both"):
        with tempfile.TemporaryDirectory() as folder:
            rows += inference(args, device, Path(folder))
    print(render(["case", "variant", "ms", "x first"], rows, left=2))
    print(f"load average at end {load_average()}")


if __name__ == "__main__":
    main()
