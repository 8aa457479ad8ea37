"""Data pipeline speed: reslab's TensorLoader against a torchvision DataLoader, same run.

Both do the CIFAR recipe of Sec. 4.2 (pad 4, random crop of the image size, 32x32 for CIFAR,
random horizontal flip, to float, normalise) on the same uint8 images. The DataLoader is timed
in two forms, the classic PIL one (``RandomCrop(32, padding=4)``, ``RandomHorizontalFlip``,
``ToTensor``, ``Normalize``, as with ``torchvision.datasets.CIFAR10``) and transforms v2 on
uint8 tensors, each with every ``--workers`` count; the best is the baseline. The
TensorLoader's per-batch time is also compared with one ResNet-20 training step (forward,
backward, SGD) at the same batch size.
``--erase P`` adds random erasing with probability P to both (``reslab train --erase``; the
baselines end in torchvision's ``RandomErasing``).

    python benchmarks/bench_data.py                        # synthetic CIFAR-shaped data
    python benchmarks/bench_data.py --data cifar10 --data-dir data
    python benchmarks/bench_data.py --data fashion-mnist --data-dir data/fashion-mnist  # 28x28x1
    python benchmarks/bench_data.py --erase 0.5
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torchvision.transforms as T
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

import reslab
from reslab.data import TensorLoader, load_arrays, per_pixel_mean
from reslab.data.transforms import ERASE_AREA, ERASE_RATIO


class UInt8Images(Dataset):
    """The images as PIL images (``pil=True``, as torchvision's CIFAR10) or uint8 tensors."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform, *, pil: bool):
        if pil:  # PIL wants [H, W, C], or [H, W] for one channel (MNIST, Fashion-MNIST)
            images = images.permute(0, 2, 3, 1).numpy()
            images = images[..., 0] if images.shape[-1] == 1 else images
        self.images = images
        self.labels = labels
        self.transform = transform
        self.pil = pil

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        image = Image.fromarray(self.images[index]) if self.pil else self.images[index]
        return self.transform(image), int(self.labels[index])


def baseline_transforms(mean: list[float], std: list[float], erase: float, *,
                        size: int) -> dict[str, tuple]:
    """The per-image recipes for ``size`` x ``size`` images: name -> (transform, whether it
    takes PIL images); random erasing with probability ``erase`` at the end when it is above 0."""
    erasing = [T.RandomErasing(erase, scale=ERASE_AREA, ratio=ERASE_RATIO)] if erase else []
    classic = T.Compose([
        T.RandomCrop(size, padding=4), T.RandomHorizontalFlip(), T.ToTensor(),
        T.Normalize(mean, std), *erasing,
    ])  # fmt: skip
    tensor = v2.Compose([
        v2.RandomCrop(size, padding=4), v2.RandomHorizontalFlip(),
        v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std), *erasing,
    ])  # fmt: skip
    return {"PIL+ToTensor": (classic, True), "tensor v2": (tensor, False)}


def images_per_second(batches, *, count: int) -> float:
    """Consume ``batches`` (after one warm-up batch) and return images per second."""
    iterator = iter(batches)
    next(iterator)
    seen, start = 0, time.perf_counter()
    for x, _ in iterator:
        seen += len(x)
        if seen >= count:
            break
    return seen / (time.perf_counter() - start)


def step_time(model, loader: TensorLoader, *, steps: int) -> float:
    """Median seconds of one training step (forward, backward, SGD) on the loader's batches."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    times = []
    batches = iter(loader)
    for i in range(steps + 2):
        x, y = next(batches)
        start = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if i >= 2:  # two warm-up steps
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="a small data set to read (default: synthetic)")
    parser.add_argument("--data-dir", help="its data dir")
    parser.add_argument("--images", type=int, default=50_000, help="synthetic images")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--baseline-images", type=int, default=5120,
                        help="images timed per DataLoader configuration")
    parser.add_argument("--workers", default="0,1,2", help="DataLoader num_workers to try")
    parser.add_argument("--steps", type=int, default=20, help="ResNet-20 steps timed")
    parser.add_argument("--erase", type=float, default=0.0,
                        help="random erasing probability, for both (default 0: off)")
    args = parser.parse_args()

    if args.data:
        data = load_arrays(args.data, args.data_dir, "train")
        images, labels = data.images, data.labels
    else:
        generator = torch.Generator().manual_seed(0)
        images = torch.randint(0, 256, (args.images, 3, 32, 32), generator=generator,
                               dtype=torch.uint8)  # fmt: skip
        labels = torch.randint(0, 10, (args.images,), generator=generator)
    mean = per_pixel_mean(images)
    channel_mean = mean.mean((1, 2)).tolist()
    channel_std = (images.float() / 255).std((0, 2, 3)).tolist()
    print(f"data: {len(images)} images {list(images.shape[1:])}, batch {args.batch_size}, "
          f"torch threads {torch.get_num_threads()}, random erasing {args.erase:g}")  # fmt: skip

    loader = TensorLoader(images, labels, batch_size=args.batch_size, device="cpu", train=True,
                          mean=mean, erase=args.erase)  # fmt: skip
    ours = images_per_second(loader, count=len(images))  # one epoch
    rows = [("TensorLoader", "device tensor, batched ops", ours)]
    recipes = baseline_transforms(channel_mean, channel_std, args.erase, size=images.shape[-1])
    for name, (transform, pil) in recipes.items():
        dataset = UInt8Images(images, labels, transform, pil=pil)
        for workers in map(int, args.workers.split(",")):
            dataloader = DataLoader(dataset, batch_size=args.batch_size, shuffle=True,
                                    num_workers=workers, drop_last=True)  # fmt: skip
            rate = images_per_second(dataloader, count=args.baseline_images)
            rows.append(("DataLoader", f"{name}, num_workers={workers}", rate))
    best = max(rows[1:], key=lambda row: row[2])

    torch.manual_seed(0)
    model = reslab.create_model("resnet20", num_classes=10, in_channels=images.shape[1])
    step = step_time(model, loader, steps=args.steps)
    batch_ms = 1000 * args.batch_size / ours

    print(f"\n| pipeline | configuration | images/s | ms/batch of {args.batch_size} |")
    print("|---|---|---:|---:|")
    for pipeline, config, rate in rows:
        print(f"| {pipeline} | {config} | {rate:,.0f} | {1000 * args.batch_size / rate:.2f} |")
    print(f"\nTensorLoader vs best DataLoader ({best[1]}): {ours / best[2]:.1f}x "
          f"(target >= 10x)")
    print(f"ResNet-20 training step, batch {args.batch_size}: {1000 * step:.1f} ms; TensorLoader "
          f"batch {batch_ms:.2f} ms = {100 * batch_ms / (1000 * step):.2f}% of a step "
          f"(target < 5%)")  # fmt: skip


if __name__ == "__main__":
    main()
