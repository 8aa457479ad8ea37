"""reslab's training engine against a straightforward torchvision-style loop, same run.

The workload of the paper's CIFAR experiments (Sec. 4.2): ResNet-20 at 32x32, batch 128, SGD
with momentum 0.9, weight decay 1e-4, pad-4 crop and flip augmentation, on CIFAR-10-format data.

- **ours**: ``reslab.train`` itself (the engine ``reslab train`` runs) on a CIFAR-10 folder in the
  official binary format, written here from random images: ``TensorLoader`` batches, the step
  with its default switches, device-side loss/error sums, logging, the run folder. Its speed is
  the engine's own ``images_per_s`` in ``metrics.csv`` (wall time between two log lines, every
  cost inside the loop included).
- **baseline**: what users write with torchvision: a ``DataLoader`` over the same images with
  per-image ``RandomCrop(32, padding=4)``, ``RandomHorizontalFlip`` and ``Normalize``, the same
  ResNet-20 in eager fp32, torch's default SGD, and ``loss.item()`` every step for the running
  loss. Timed over the same windows of ``--log-every`` iterations.

The first window of each (warm-up) is dropped; the median of the rest is reported. Run on an
otherwise idle machine (docs/PERFORMANCE.md):

    .venv/bin/python benchmarks/bench_engine.py --iters 60 --log-every 10
    .venv/bin/python benchmarks/bench_engine.py --iters 60 --log-every 10 --amp  # ours in bf16

``--amp`` runs the engine with bf16 autocast (``reslab train --amp``) against the same fp32
baseline: it pays on CPUs with native bf16 (AVX-512 BF16, AMX), not on AVX2 ones.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import reslab
from reslab.bench.cases import baseline_loader, synthetic_images
from reslab.data.registry import CIFAR10_CLASSES
from reslab.train.inputs import endless
from reslab.train.rundir import read_metrics

TRAIN_FILES = [f"data_batch_{i}.bin" for i in range(1, 6)]


def write_cifar10(folder: Path, images: torch.Tensor, labels: torch.Tensor) -> None:
    """``images`` (uint8 [N, 3, 32, 32]) as ``cifar-10-batches-bin``: records of one label byte
    and 3072 pixel bytes, split over the five training files, the first file's records again as
    the test file (the reader wants every file the same length)."""
    folder.mkdir(parents=True)
    records = np.concatenate([labels.numpy().astype(np.uint8)[:, None],
                              images.reshape(len(images), -1).numpy()], axis=1)  # [N, 3073]
    per_file = len(records) // len(TRAIN_FILES)
    for i, name in enumerate(TRAIN_FILES):
        records[i * per_file:(i + 1) * per_file].tofile(folder / name)
    records[:per_file].tofile(folder / "test_batch.bin")
    (folder / "batches.meta.txt").write_text("\n".join(CIFAR10_CLASSES) + "\n")


def engine_rates(data_dir: Path, run_dir: Path, *, iters: int, log_every: int,
                 batch_size: int, amp: bool = False) -> list[float]:
    """images/s of each logging window of ``reslab.train`` (the first one dropped)."""
    reslab.train(model="resnet20", data="cifar10", data_dir=str(data_dir), train_split="train",
                 val_split=None, test_split=None, iters=iters, eval_every=iters,
                 log_every=log_every, batch_size=batch_size, device="cpu", out=str(run_dir),
                 amp=amp, progress=False)
    rows = [row for row in read_metrics(run_dir / "metrics.csv") if row.get("images_per_s")]
    return [float(row["images_per_s"]) for row in rows[1:]]


def baseline_rates(images: torch.Tensor, labels: torch.Tensor, *, iters: int, log_every: int,
                   batch_size: int) -> list[float]:
    """images/s of each window of ``log_every`` iterations of the torchvision-style loop."""
    device = torch.device("cpu")
    model = reslab.create_model("resnet20").to(device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    batches = endless(baseline_loader(images, labels, batch_size=batch_size, workers=0,
                                      device=device))
    rates, running_loss = [], 0.0
    tic = time.perf_counter()
    for iteration in range(1, iters + 1):
        x, y = next(batches)
        loss = F.cross_entropy(model(x.to(device)), y.to(device))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        running_loss += loss.item()
        if iteration % log_every == 0:
            rates.append(log_every * batch_size / (time.perf_counter() - tic))
            tic = time.perf_counter()
    return rates[1:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iters", type=int, default=60, help="iterations of each loop")
    parser.add_argument("--log-every", type=int, default=10, help="iterations per timed window")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--images", type=int, default=5000, help="synthetic training images")
    parser.add_argument("--amp", action="store_true", help="the engine in bf16 autocast")
    args = parser.parse_args()
    if args.iters < 2 * args.log_every:
        parser.error("--iters must cover at least two windows of --log-every")

    images, labels = synthetic_images(args.images, 32)
    print(f"ResNet-20, 32x32, batch {args.batch_size}, {args.iters} iterations per loop, "
          f"windows of {args.log_every}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, CPU ({torch.backends.cpu.get_cpu_capability()})")
    with tempfile.TemporaryDirectory(prefix="reslab-bench-engine-") as tmp:
        write_cifar10(Path(tmp) / "cifar-10-batches-bin", images, labels)
        base = baseline_rates(images, labels, iters=args.iters, log_every=args.log_every,
                              batch_size=args.batch_size)
        ours = engine_rates(Path(tmp), Path(tmp) / "run", iters=args.iters,
                            log_every=args.log_every, batch_size=args.batch_size, amp=args.amp)
    base_median, ours_median = statistics.median(base), statistics.median(ours)
    print(f"  torchvision-style loop: {base_median:7.1f} images/s "
          f"(windows: {', '.join(f'{r:.0f}' for r in base)})")
    label = "reslab engine, bf16:" if args.amp else "reslab engine:"
    print(f"  {label:<24}{ours_median:7.1f} images/s "
          f"(windows: {', '.join(f'{r:.0f}' for r in ours)})")
    print(f"  ratio reslab / torchvision-style: {ours_median / base_median:.3f}")


if __name__ == "__main__":
    main()
