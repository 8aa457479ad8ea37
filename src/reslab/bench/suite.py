"""Run the cases, turn the timings into rows, print them as a table or JSON."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import torch
from torch import Tensor

from reslab.analysis.summary import render
from reslab.bench.cases import Case, Settings, build_cases, fast_paths
from reslab.bench.measure import (
    cudnn_autotuning,
    interleave,
    load_average,
    machine,
    matmul_peak,
    median_ratio,
    peak_memory,
    percentile,
    tf32_convolutions,
)


@dataclass
class Row:
    """One candidate's result in one case.

    Attributes:
        case: The workload, e.g. ``train resnet20 32px b128``.
        candidate: Who ran it.
        images_per_s: Median throughput.
        ms: Median milliseconds per iteration (training) or batch (inference, data).
        p90_ms: 90th percentile of ``ms`` (latency cases).
        speedup: Median over rounds of baseline time / this time (1 for the baseline).
        peak_pct: Achieved FLOP/s as a percentage of the matmul peak of its dtype.
        memory_mb: Peak MB one call allocates above what it held before (training cases).
        first_s: Seconds of the first call: compilation, capture, warm caches included.
        deviation: Largest |logit difference| from the baseline's (inference cases).
        settings: How the candidate runs.
    """

    case: str
    candidate: str
    images_per_s: float
    ms: float
    p90_ms: float | None
    speedup: float
    peak_pct: float | None
    memory_mb: float | None
    first_s: float
    deviation: float | None
    settings: str


@dataclass
class Report:
    """A whole ``reslab bench`` run."""

    settings: Settings
    machine: dict[str, object]
    load_start: list[float]
    load_end: list[float]
    peaks: dict[str, float]  # dtype name -> FLOP/s
    rows: list[Row]
    seconds: float
    cudnn_benchmark: bool = False  # cuDNN's algorithm search was on
    tf32: bool = False  # float32 convolutions (and so the float32 peak's matmul) ran in TF32

    def to_dict(self) -> dict[str, object]:
        """JSON-ready."""
        return {
            "settings": self.settings.describe(), "machine": self.machine,
            "load_average": {"start": self.load_start, "end": self.load_end},
            "peak_flops": self.peaks, "rows": [asdict(row) for row in self.rows],
            "seconds": round(self.seconds, 1),
            "backends": {"cudnn_benchmark": self.cudnn_benchmark, "tf32": self.tf32},
        }  # fmt: skip


def run_suite(settings: Settings, models: Sequence[str], *,
              on_case: Callable[[list[Row]], None] | None = None) -> Report:
    """Measure the reference peaks, then every case of ``models``, with cuDNN's algorithm
    search on (CUDA; as ``reslab train`` and torchvision's reference script run).

    Args:
        settings: From :func:`reslab.bench.cases.make_settings`.
        models: Keys of :data:`reslab.bench.cases.SUITE`.
        on_case: Called with each case's rows as soon as it is measured (so that a run cut
            short still shows what it measured).

    Returns:
        The report.
    """
    load_start, start = load_average(), time.perf_counter()
    bf16 = fast_paths(settings.device, compile=False)["amp"]
    dtypes = [torch.float32] + ([torch.bfloat16] if bf16 else [])
    with cudnn_autotuning(settings.device):
        peaks = {dtype: matmul_peak(settings.device, dtype, size=settings.peak_size, repeats=3)
                 for dtype in dtypes}
        rows = []
        for model in models:
            for case in build_cases(model, settings):
                case_rows = measure(case, settings, peaks)
                rows += case_rows
                if on_case is not None:
                    on_case(case_rows)
        cudnn_benchmark = torch.backends.cudnn.benchmark
    return Report(
        settings=settings, machine=machine(settings.device), load_start=load_start,
        load_end=load_average(), peaks={dtype_name(d): v for d, v in peaks.items()}, rows=rows,
        seconds=time.perf_counter() - start, cudnn_benchmark=cudnn_benchmark,
        tf32=tf32_convolutions(settings.device),
    )  # fmt: skip


def measure(case: Case, settings: Settings, peaks: dict[torch.dtype, float]) -> list[Row]:
    """Time a case's candidates in turns, then take their memory and check their outputs.

    Args:
        case: The case, baseline candidate first.
        settings: The run's settings (device and warm-up rounds).
        peaks: Matmul FLOP/s per dtype, for the % of peak.

    Returns:
        One :class:`Row` per candidate, in the case's order.
    """
    first, times = interleave([c.unit for c in case.candidates], warmup=settings.warmup,
                              repeats=case.repeats, device=settings.device, label=case.name)
    rows = []
    for candidate, first_s, seconds in zip(case.candidates, first, times):
        median = statistics.median(seconds)
        memory = (peak_memory(candidate.unit, settings.device) / 1e6
                  if case.kind == "train" and candidate.memory else None)
        rows.append(Row(
            case=case.name, candidate=candidate.name, images_per_s=case.images / median,
            ms=1000 * median / case.iters,
            p90_ms=1000 * percentile(seconds, 90) / case.iters if case.latency else None,
            speedup=median_ratio(times[0], seconds),
            peak_pct=100 * case.flops / median / peaks[candidate.dtype] if case.flops else None,
            memory_mb=memory, first_s=first_s, deviation=deviation(case, candidate.forward),
            settings=candidate.settings,
        ))  # fmt: skip
    return rows


def deviation(case: Case, forward: Callable[[Tensor], Tensor] | None) -> float | None:
    """Largest |logit difference| between a candidate and the baseline on the check batch.

    Args:
        case: The case; its ``check`` batch and first candidate's ``forward`` are the reference.
        forward: The candidate's logits function; None for candidates without one.

    Returns:
        The largest absolute difference, or None when the case has no check batch or
        ``forward`` is None.
    """
    if case.check is None or forward is None:
        return None
    reference = case.candidates[0].forward(case.check).float().cpu()
    return (forward(case.check).float().cpu() - reference).abs().max().item()


def dtype_name(dtype: torch.dtype) -> str:
    """``float32`` for ``torch.float32``.

    Args:
        dtype: A torch dtype.

    Returns:
        Its name without the ``torch.`` prefix.
    """
    return str(dtype).removeprefix("torch.")


def format_report(report: Report) -> str:
    """The table, its settings and the conditions of the measurement, as text.

    Args:
        report: From :func:`run_suite`.

    Returns:
        The text, ending with a line of the total seconds.
    """
    settings, info = report.settings, report.machine
    header = ["case", "candidate", "images/s", "ms/iter", "p90 ms", "x base", "% peak",
              "step MB", "first s", "max|dlogit|"]
    rows = [[
        row.case, row.candidate, f"{row.images_per_s:,.1f}", f"{row.ms:,.1f}",
        _cell(row.p90_ms, "{:,.1f}"), f"{row.speedup:.2f}", _cell(row.peak_pct, "{:.1f}"),
        _cell(row.memory_mb, "{:,.0f}"), f"{row.first_s:.1f}", _cell(row.deviation, "{:.1e}"),
    ] for row in report.rows]  # fmt: skip
    where = info.get("gpu") or info["cpu"]
    versions = ", ".join(f"{k} {info[k]}" for k in ("torch", "torchvision", "timm", "onnxruntime")
                         if info.get(k))
    peaks = ", ".join(f"{name} {value / 1e9:,.1f} GFLOP/s" for name, value in report.peaks.items())
    if report.tf32:
        peaks += " (the float32 matmul in TF32, as cuDNN runs float32 convolutions)"
    state = "on" if report.cudnn_benchmark else "off"
    search = ([f"cuDNN algorithm search (cudnn.benchmark): {state}"]
              if settings.device.type == "cuda" else [])
    lines = [
        f"reslab bench on {settings.device} ({where}; {info['cores']} cores, torch threads "
        f"{info['torch_threads']}); {versions}",
        f"load average at start {report.load_start}, at end {report.load_end}",
        f"peak (median {settings.peak_size}x{settings.peak_size} matmul, measured now): {peaks}",
        *search,
        f"{settings.warmup} warm-up round(s) excluded, then A B A B ... rounds; medians; "
        "'x base' is the median of per-round time ratios to the case's first row",
        "", render(header, rows, left=2), "",
    ]
    lines += [f"  {row.case} / {row.candidate}: {row.settings}" for row in report.rows]
    lines.append(f"\n{report.seconds:.0f} s in all")
    return "\n".join(lines)


def _cell(value: float | None, spec: str) -> str:
    return "-" if value is None else spec.format(value)
