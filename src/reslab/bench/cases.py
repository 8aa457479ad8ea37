"""What ``reslab bench`` measures: each case is one workload, run by a baseline and by the
alternatives, all with the same architecture and weights.

- ``train small``: ResNet-20 (Sec. 4.2) at 32x32, batch 128. Baseline: the loop users write
  with torchvision: a ``DataLoader`` over a ``TensorDataset`` whose images get
  ``RandomCrop(32, padding=4)``, ``RandomHorizontalFlip`` and ``Normalize`` one at a time, the
  same net in eager fp32, torch's default SGD. Ours: :class:`reslab.data.TensorLoader`, fused
  SGD and the fast paths that pay on the device (:func:`fast_paths`).
- ``train large``: ResNet-50 (Table 1) at 224x224 on one fixed batch (the step alone, no
  JPEG decoding): torchvision's ``resnet50`` eager fp32, timm's, and ours.
- ``infer``: ResNet-50 at batch 1 (latency) and 32 (throughput): torchvision eager, timm
  eager, ours (BN folded into the convolutions, channels-last, ``inference_mode``, bf16 on CUDA,
  compiled with ``--compile``) and ONNX Runtime on the file ``reslab export`` writes (CPU).
- ``data``: the torchvision ``DataLoader`` above against ``TensorLoader``, batches only.
"""

from __future__ import annotations

import copy
import itertools
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torchvision
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset
from torchvision.transforms import v2

from reslab.bench.measure import Unit, count_flops
from reslab.data import TensorLoader, per_pixel_mean
from reslab.models import create_model, model_info
from reslab.models.fuse import fold_batchnorm
from reslab.train.inputs import endless
from reslab.train.step import CHANNELS_LAST_DEVICES, WARMUP_STEPS, TrainStep

SGD_OPTIONS = {"lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4}  # Sec. 3.4 / 4.2
SGD_KERNELS = {"default": {}, "fused": {"fused": True}, "foreach": {"foreach": True}}
BASELINE = "torchvision eager"


@dataclass(frozen=True)
class Settings:
    """Sizes and switches of one ``reslab bench`` run (see :func:`make_settings`)."""

    device: torch.device
    quick: bool
    compile: bool
    workers: int
    warmup: int
    repeats: int
    small: tuple[str, int, int]  # model, image size, batch: the CIFAR training case
    large: tuple[str, int, int]  # model, image size, training batch: the ImageNet cases
    infer_batches: tuple[int, int]  # latency batch, throughput batch
    iters: int  # training iterations (or batches) per timed call
    peak_size: int  # side of the reference matrix product

    def describe(self) -> dict[str, object]:
        """JSON-ready settings."""
        return {
            "device": str(self.device), "quick": self.quick, "compile": self.compile,
            "dataloader_workers": self.workers, "warmup_rounds": self.warmup,
            "repeats": self.repeats, "iterations_per_call": self.iters,
            "small": dict(zip(("model", "size", "batch"), self.small)),
            "large": dict(zip(("model", "size", "train_batch"), self.large)),
            "infer_batches": list(self.infer_batches), "peak_matmul": self.peak_size,
        }  # fmt: skip


def make_settings(device: torch.device, *, quick: bool = False, compile: bool = False,
                  workers: int | None = None, repeats: int | None = None) -> Settings:
    """The sizes the issue asks for (GPU), the CPU's smaller ones, or tiny ones (``quick``).

    Args:
        device: Where to measure.
        quick: Tiny models and sizes: checks that everything runs, in seconds.
        compile: Add ``torch.compile`` to our candidates.
        workers: Baseline ``DataLoader`` workers (default: 0 on the CPU, which has no core to
            spare, 4 on a GPU machine).
        repeats: Timed rounds (default 10 on a GPU, 3 on the CPU, 2 quick); the batch-1
            latency case runs three times as many.

    Returns:
        The settings.
    """
    gpu = device.type == "cuda"
    workers = (4 if gpu else 0) if workers is None else workers
    if quick:  # on CUDA the warm-up covers the graph's eager steps and capture (a step a call)
        return Settings(device, True, compile, workers, warmup=WARMUP_STEPS + 1 if gpu else 1,
                        repeats=repeats or 2,
                        small=("resnet8", 16, 16), large=("resnet18", 32, 4),
                        infer_batches=(1, 4), iters=1, peak_size=256)
    return Settings(device, False, compile, workers, warmup=3 if gpu else 1,
                    repeats=repeats or (10 if gpu else 3), small=("resnet20", 32, 128),
                    large=("resnet50", 224, 32 if gpu else 8), infer_batches=(1, 32),
                    iters=20 if gpu else 1, peak_size=8192 if gpu else 2048)


@dataclass
class Candidate:
    """One way of running a case's workload.

    Attributes:
        name: ``torchvision eager``, ``timm eager``, ``reslab``, ``onnxruntime``, ...
        unit: One timed call.
        settings: How it runs, in words.
        dtype: Its compute precision (its % of peak is against a matmul of this dtype).
        memory: Whether one call's memory can be measured (not ONNX Runtime's, compiled CPU
            code's, or a CUDA graph's, allocated once at capture).
        forward: For inference candidates, logits of a batch (to check they agree).
    """

    name: str
    unit: Unit
    settings: str
    dtype: torch.dtype = torch.float32
    memory: bool = True
    forward: Callable[[Tensor], Tensor] | None = None


@dataclass
class Case:
    """A workload and its candidates, the baseline first.

    Attributes:
        name: E.g. ``train resnet20 32px b128``.
        kind: ``train``, ``infer`` or ``data``.
        images: Images per call.
        iters: Iterations (or batches) per call.
        flops: FLOPs per call (None: not a compute workload).
        candidates: The baseline first.
        repeats: Timed rounds.
        latency: Report the 90th percentile too.
        check: A batch whose logits every candidate computes (inference).
    """

    name: str
    kind: str
    images: int
    iters: int
    flops: int | None
    candidates: list[Candidate]
    repeats: int
    latency: bool = False
    check: Tensor | None = field(default=None, repr=False)


def fast_paths(device: torch.device, *, compile: bool) -> dict[str, bool]:
    """Our training switches on ``device``: channels-last everywhere (the training default on
    CUDA and the CPU, see :func:`reslab.train.step.device_defaults`), bf16 and CUDA graphs on
    CUDA (the graphs give way to ``compile``); no bf16 on the CPU (ten times slower on one
    without bf16 instructions, see docs/PERFORMANCE.md).

    Args:
        device: The device the training runs on.
        compile: Whether ``torch.compile`` is used (``compile_step``; turns CUDA graphs off).

    Returns:
        :class:`reslab.train.step.TrainStep` switches: ``amp``, ``channels_last``,
        ``compile_step`` and ``cuda_graphs``.
    """
    gpu = device.type == "cuda"
    return {"amp": gpu, "channels_last": device.type in CHANNELS_LAST_DEVICES,
            "compile_step": compile,
            "cuda_graphs": gpu and not compile}


def describe_switches(switches: dict[str, bool]) -> str:
    """``fused SGD, amp, channels_last`` from the switches that are on.

    Args:
        switches: Switch name to whether it is on, as from :func:`fast_paths`.

    Returns:
        ``fused SGD`` followed by the names of the switches that are on, comma-separated.
    """
    return ", ".join(["fused SGD", *(name for name, on in switches.items() if on)])


# -- building blocks --------------------------------------------------------------------------


def synthetic_images(n: int, size: int, *, seed: int = 0) -> tuple[Tensor, Tensor]:
    """CIFAR-shaped random data: uint8 [n, 3, size, size] and 10-class labels [n].

    Args:
        n: Number of images.
        size: Height and width in pixels.
        seed: Seed of the generator the images and labels are drawn from.

    Returns:
        (images, labels): uint8 [n, 3, size, size] in 0..255 and int64 labels [n] in 0..9.
    """
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, size, size), generator=generator, dtype=torch.uint8)
    return images, torch.randint(0, 10, (n,), generator=generator)


class AugmentBatch:
    """``collate_fn`` applying a per-image transform, then stacking (picklable for workers)."""

    def __init__(self, transform: Callable[[Tensor], Tensor]) -> None:
        self.transform = transform

    def __call__(self, samples: list[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
        images = torch.stack([self.transform(image) for image, _ in samples])  # [B, C, H, W]
        return images, torch.stack([label for _, label in samples])


def baseline_loader(images: Tensor, labels: Tensor, *, batch_size: int, workers: int,
                    device: torch.device) -> DataLoader:
    """The torchvision way: a ``DataLoader`` over a ``TensorDataset``, each image cropped from
    its 4-pixel zero padding, flipped at random and normalised per channel.

    Args:
        images: uint8 images [N, C, H, W] (square: the crop size is ``W``).
        labels: Labels [N].
        batch_size: Images per batch (the last incomplete batch is dropped).
        workers: ``DataLoader`` worker processes (0: load in this process).
        device: Target device; memory is pinned when it is CUDA (batches are not moved here).

    Returns:
        The shuffling ``DataLoader``.
    """
    scaled = images.float() / 255
    mean, std = scaled.mean((0, 2, 3)).tolist(), scaled.std((0, 2, 3)).tolist()
    transform = v2.Compose([
        v2.RandomCrop(images.shape[-1], padding=4), v2.RandomHorizontalFlip(),
        v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std),
    ])  # fmt: skip
    return DataLoader(TensorDataset(images, labels), batch_size=batch_size, shuffle=True,
                      drop_last=True, num_workers=workers, collate_fn=AugmentBatch(transform),
                      pin_memory=device.type == "cuda", persistent_workers=workers > 0)


def fast_loader(images: Tensor, labels: Tensor, *, batch_size: int, device: torch.device,
                channels_last: bool) -> TensorLoader:
    """reslab's loader on the same images: on the device, augmented with batched ops.

    Args:
        images: uint8 images [N, C, H, W].
        labels: Labels [N].
        batch_size: Images per batch.
        device: Where the loader keeps the images and produces batches.
        channels_last: Produce channels-last batches.

    Returns:
        A training-mode :class:`reslab.data.TensorLoader` that subtracts the per-pixel mean.
    """
    return TensorLoader(images, labels, batch_size=batch_size, device=device, train=True,
                        mean=per_pixel_mean(images), channels_last=channels_last)


def train_unit(model: nn.Module, batches: Iterator[tuple[Tensor, Tensor]], *,
               device: torch.device, iters: int, sgd: str = "default",
               channels_last: bool = False, **switches: bool) -> Unit:
    """``iters`` SGD steps on the next batches (moved to ``device`` if they are not there).

    Args:
        model: On ``device``.
        batches: An endless iterator of (images, labels).
        device: The training device.
        iters: Steps per call.
        sgd: A key of :data:`SGD_KERNELS`: torch's default implementation, fused or foreach.
        channels_last: Convert the model (the batches must already be channels-last).
        **switches: :class:`reslab.train.step.TrainStep` switches.

    Returns:
        The unit.
    """
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), **SGD_KERNELS[sgd], **SGD_OPTIONS)
    step = TrainStep(model, optimizer, **switches)

    def unit() -> None:
        for _ in range(iters):
            x, y = next(batches)
            step(x.to(device, non_blocking=True), y.to(device, non_blocking=True),
                 lr=SGD_OPTIONS["lr"])

    return unit


def reslab_training(model: nn.Module, batches: Callable[[bool], Iterator[tuple[Tensor, Tensor]]],
                    settings: Settings, *, loader: str = "") -> list[Candidate]:
    """Our step with the device's fast paths, and with ``torch.compile`` too when asked.

    Args:
        model: The net (copied for each candidate).
        batches: Makes the batches, channels-last or not.
        settings: The run's settings.
        loader: What makes the batches, for the settings text.

    Returns:
        ``reslab`` and, with ``--compile``, ``reslab + compile``.
    """
    candidates = []
    for compile in (False, True) if settings.compile else (False,):
        switches = fast_paths(settings.device, compile=compile)
        unit = train_unit(copy.deepcopy(model), batches(switches["channels_last"]),
                          device=settings.device, iters=settings.iters, sgd="fused", **switches)
        candidates.append(Candidate(
            "reslab + compile" if compile else "reslab", unit,
            ", ".join(filter(None, [loader, describe_switches(switches)])),
            dtype=torch.bfloat16 if switches["amp"] else torch.float32,
            memory=not (compile or switches["cuda_graphs"])))  # allocations made at capture
    return candidates


def fetch_unit(batches: Iterator[tuple[Tensor, Tensor]], *, device: torch.device,
               iters: int) -> Unit:
    """Take ``iters`` batches and put them on ``device`` (the data pipeline alone).

    Args:
        batches: An endless iterator of (images, labels).
        device: Where each batch is moved.
        iters: Batches per call.

    Returns:
        The unit.
    """

    def unit() -> None:
        for _ in range(iters):
            x, y = next(batches)
            x.to(device, non_blocking=True), y.to(device, non_blocking=True)

    return unit


def reslab_model(name: str) -> nn.Module:
    """Our net of torchvision's architecture (``v1.5`` bottleneck for the ImageNet nets).

    Args:
        name: A registered reslab model name (also a torchvision one, e.g. ``resnet50``).

    Returns:
        The freshly initialised model, on the CPU.
    """
    options = {"variant": "v1.5"} if model_info(name).family == "imagenet" else {}
    return create_model(name, **options)


def timm_model(name: str) -> nn.Module | None:
    """timm's net of that name, or None when timm is not installed.

    Args:
        name: A timm model name.

    Returns:
        The freshly initialised timm model, or None when timm is not installed.
    """
    try:
        import timm
    except ImportError:
        return None
    return timm.create_model(name)


# -- the cases ----------------------------------------------------------------------------------


def small_training(settings: Settings) -> Case:
    """ResNet-20 training at 32x32, batch 128: the torchvision-style loop against ours.

    Args:
        settings: The run's settings (its ``small`` entry gives model, image size and batch).

    Returns:
        The case: the torchvision-style baseline first, then :func:`reslab_training`'s candidates.
    """
    name, size, batch = settings.small
    device, iters = settings.device, settings.iters
    images, labels = synthetic_images(batch * 10, size)
    torch.manual_seed(0)
    model = create_model(name).to(device)
    baseline = train_unit(
        copy.deepcopy(model),
        endless(baseline_loader(images, labels, batch_size=batch, workers=settings.workers,
                                device=device)),
        device=device, iters=iters,
    )  # fmt: skip

    def batches(channels_last: bool) -> Iterator[tuple[Tensor, Tensor]]:
        return endless(fast_loader(images, labels, batch_size=batch, device=device,
                                   channels_last=channels_last))

    return Case(
        name=f"train {name} {size}px b{batch}", kind="train", images=batch * iters, iters=iters,
        flops=iters * count_flops(lambda: create_model(name), (batch, 3, size, size), train=True),
        repeats=settings.repeats,
        candidates=[
            Candidate("torchvision-style eager", baseline,
                      f"DataLoader(TensorDataset, num_workers={settings.workers}), per-image "
                      "RandomCrop(pad 4)+flip+Normalize, fp32, torch's default SGD"),
            *reslab_training(model, batches, settings, loader="TensorLoader"),
        ],
    )  # fmt: skip


def large_training(settings: Settings) -> Case:
    """ResNet-50 training on one fixed batch: torchvision and timm eager fp32 against ours.

    Args:
        settings: The run's settings (its ``large`` entry gives model, image size and batch).

    Returns:
        The case: torchvision first, timm when installed, then ours, all with the same weights.
    """
    name, size, batch = settings.large
    device, iters = settings.device, settings.iters
    torch.manual_seed(0)
    reference = torchvision.models.get_model(name).to(device)
    x = torch.randn(batch, 3, size, size, device=device)  # [B, 3, H, W]
    y = torch.randint(0, 1000, (batch,), device=device)
    candidates = [Candidate(BASELINE, train_unit(reference, itertools.repeat((x, y)),
                                                 device=device, iters=iters),
                            "torchvision.models." + name + ", fp32, torch's default SGD")]
    other = timm_model(name)
    if other is not None:
        other.load_state_dict(reference.state_dict())
        candidates.append(Candidate("timm eager", train_unit(
            other.to(device), itertools.repeat((x, y)), device=device, iters=iters),
            "timm.create_model, fp32, torch's default SGD"))
    ours = reslab_model(name)
    ours.load_state_dict(reference.state_dict())

    def batches(channels_last: bool) -> Iterator[tuple[Tensor, Tensor]]:
        layout = torch.channels_last if channels_last else torch.contiguous_format
        return itertools.repeat((x.contiguous(memory_format=layout), y))

    candidates += reslab_training(ours.to(device), batches, settings)
    return Case(
        name=f"train {name} {size}px b{batch}", kind="train", images=batch * iters, iters=iters,
        flops=iters * count_flops(lambda: reslab_model(name), x.shape, train=True),
        repeats=settings.repeats, candidates=candidates,
    )  # fmt: skip


def inference(settings: Settings, batch: int, *, folder: Path) -> Case:
    """ResNet-50 inference at ``batch``: eager baselines, ours, and ONNX Runtime (CPU).

    Args:
        settings: The run's settings.
        batch: 1 (latency: one forward per call) or the throughput batch.
        folder: Where the ONNX file is written.
    """
    name, size, _ = settings.large
    device = settings.device
    latency = batch == settings.infer_batches[0]
    iters = 1 if latency else settings.iters
    torch.manual_seed(0)
    reference = torchvision.models.get_model(name).eval().to(device)
    x = torch.randn(batch, 3, size, size, device=device)  # [B, 3, H, W]
    candidates = [eager_candidate(BASELINE, reference, x, iters=iters,
                                  settings="torchvision.models." + name + ", fp32, no_grad")]
    other = timm_model(name)
    if other is not None:
        other.load_state_dict(reference.state_dict())
        candidates.append(eager_candidate("timm eager", other.eval().to(device), x, iters=iters,
                                          settings="timm.create_model, fp32, no_grad"))
    ours = reslab_model(name)
    ours.load_state_dict(reference.state_dict())
    candidates += [fast_inference_candidate(ours, x, iters=iters, compile=compile)
                   for compile in ((False, True) if settings.compile else (False,))]
    if device.type == "cpu":
        onnx = onnx_candidate(ours, x, iters=iters, folder=folder)
        if onnx is not None:
            candidates.append(onnx)
    return Case(
        name=f"infer {name} {size}px b{batch}", kind="infer", images=batch * iters, iters=iters,
        flops=iters * count_flops(lambda: reslab_model(name), x.shape, train=False),
        repeats=settings.repeats * (3 if latency else 1), latency=latency,
        candidates=candidates, check=x,
    )  # fmt: skip


def eager_candidate(name: str, model: nn.Module, x: Tensor, *, iters: int,
                    settings: str) -> Candidate:
    """An eval-mode model called under ``no_grad``, as most inference code does.

    Args:
        name: The candidate's name.
        model: An eval-mode model on ``x``'s device.
        x: The input batch [B, C, H, W].
        iters: Forward passes per call.
        settings: How it runs, in words.

    Returns:
        The candidate.
    """
    forward = torch.no_grad()(model)
    return Candidate(name, repeat(forward, x, iters), settings, forward=forward)


def fast_inference_candidate(model: nn.Module, x: Tensor, *, iters: int,
                             compile: bool) -> Candidate:
    """Ours: BN folded into the convolutions, channels-last, ``inference_mode``, bf16 autocast
    on CUDA, and ``torch.compile`` when asked.

    Args:
        model: The net (its BN is folded into a copy, moved to ``x``'s device).
        x: The input batch [B, C, H, W], on the measured device.
        iters: Forward passes per call.
        compile: Wrap the folded net in ``torch.compile``.

    Returns:
        The candidate.
    """
    device = x.device
    gpu = device.type == "cuda"
    net = fold_batchnorm(model).to(device, memory_format=torch.channels_last)
    net = torch.compile(net) if compile else net

    @torch.inference_mode()
    def forward(images: Tensor) -> Tensor:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=gpu):
            return net(images.contiguous(memory_format=torch.channels_last))

    settings = "BN folded, channels_last, inference_mode" + (", bf16" if gpu else ", fp32")
    return Candidate("reslab + compile" if compile else "reslab", repeat(forward, x, iters),
                     settings + (", torch.compile" * compile),
                     dtype=torch.bfloat16 if gpu else torch.float32, memory=not compile,
                     forward=forward)


def onnx_candidate(model: nn.Module, x: Tensor, *, iters: int, folder: Path) -> Candidate | None:
    """ONNX Runtime (CPU) on the file ``reslab export`` writes for ``model``; None when
    onnxruntime is not installed.

    Args:
        model: The net, with an ``fc`` head and a ``model_name``.
        x: The input batch [B, C, H, W], on the CPU.
        iters: Forward passes per call.
        folder: Where the ONNX file is written.

    Returns:
        The candidate, or None when onnxruntime is not installed.
    """
    try:
        import onnxruntime
    except ImportError:
        return None
    from reslab.eval.predictor import Predictor, Preprocessing
    from reslab.export import INPUT_NAME, export_onnx

    size = tuple(x.shape[-2:])
    predictor = Predictor(
        model, classes=[str(i) for i in range(model.fc.out_features)], device=x.device,
        preprocessing=Preprocessing(channels=x.shape[1], size=size, resize=None,
                                    mean=torch.zeros(x.shape[1])),
    )  # fmt: skip
    start = time.perf_counter()
    path = export_onnx(predictor, folder / f"{model.model_name}.onnx")
    exported = time.perf_counter() - start
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def forward(images: Tensor) -> Tensor:
        return torch.from_numpy(session.run(None, {INPUT_NAME: images.numpy()})[0])

    return Candidate("onnxruntime", repeat(forward, x, iters),
                     f"`reslab export` file (exported in {exported:.0f} s), "
                     f"CPUExecutionProvider, ORT {onnxruntime.__version__}",
                     memory=False, forward=forward)


def repeat(forward: Callable[[Tensor], Tensor], x: Tensor, iters: int) -> Unit:
    """A unit of ``iters`` forward passes on ``x``.

    Args:
        forward: Maps a batch to logits.
        x: The input batch.
        iters: Forward passes per call.

    Returns:
        The unit.
    """

    def unit() -> None:
        for _ in range(iters):
            forward(x)

    return unit


def data_pipeline(settings: Settings) -> Case:
    """Batches per second of the torchvision ``DataLoader`` and of ``TensorLoader``.

    Args:
        settings: The run's settings (its ``small`` entry gives image size and batch).

    Returns:
        The case: the torchvision ``DataLoader`` first, then ``TensorLoader``.
    """
    _, size, batch = settings.small
    device = settings.device
    images, labels = synthetic_images(batch * 10, size)
    iters = 10
    loaders = {
        "torchvision DataLoader": baseline_loader(images, labels, batch_size=batch,
                                                  workers=settings.workers, device=device),
        "reslab TensorLoader": fast_loader(images, labels, batch_size=batch, device=device,
                                           channels_last=False),
    }  # fmt: skip
    described = {"torchvision DataLoader": f"num_workers={settings.workers}, per-image "
                 "transforms v2, then to the device",
                 "reslab TensorLoader": "whole split on the device, batched crop/flip/mean"}
    return Case(
        name=f"data {size}px b{batch}", kind="data", images=batch * iters, iters=iters,
        flops=None, repeats=settings.repeats,
        candidates=[Candidate(label, fetch_unit(endless(loader), device=device, iters=iters),
                              described[label], memory=False)
                    for label, loader in loaders.items()],
    )  # fmt: skip


# Which cases each ``--models`` name runs.
SUITE: dict[str, tuple[str, ...]] = {
    "resnet20": ("small_training", "data_pipeline"),
    "resnet50": ("large_training", "inference_latency", "inference_throughput"),
}


def build_cases(model: str, settings: Settings) -> Iterator[Case]:
    """The cases of one ``--models`` entry, built one at a time (each holds its own nets).

    Args:
        model: A key of :data:`SUITE`.
        settings: The run's settings.

    Yields:
        The cases.
    """
    with tempfile.TemporaryDirectory(prefix="reslab-bench-") as folder:
        builders = {
            "small_training": lambda: small_training(settings),
            "data_pipeline": lambda: data_pipeline(settings),
            "large_training": lambda: large_training(settings),
            "inference_latency": lambda: inference(settings, settings.infer_batches[0],
                                                   folder=Path(folder)),
            "inference_throughput": lambda: inference(settings, settings.infer_batches[1],
                                                      folder=Path(folder)),
        }  # fmt: skip
        for key in SUITE[model]:
            yield builders[key]()
