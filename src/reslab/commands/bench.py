"""``reslab bench``: speed against torchvision and timm, measured side by side."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from reslab.bench.suite import Row


def configure(parser: argparse.ArgumentParser) -> None:
    """Describe ``reslab bench`` and add its arguments."""
    from reslab.bench import SUITE

    parser.description = (
        "Time ResNet-20 training (32x32, batch 128), ResNet-50 training and "
        "inference (batch 1 and 32) and the data pipeline: torchvision's eager loop, timm's "
        "(when installed), ours and ONNX Runtime (on the CPU), interleaved in one process. "
        "Each row: images/s, its ratio to the torchvision row, and FLOP/s as a % of a matmul "
        "peak measured in the same run. See docs/PERFORMANCE.md."
    )
    parser.add_argument("--quick", action="store_true",
                        help="tiny models and sizes: checks that everything runs")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument("--save", metavar="FILE", help="also write the JSON document to FILE")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    parser.add_argument("--models", nargs="+", default=list(SUITE), choices=list(SUITE),
                        metavar="MODEL",
                        help=f"cases to run, among {' '.join(SUITE)} (default: all)")
    parser.add_argument("--compile", action="store_true",
                        help="add torch.compile to our candidates (minutes of compiling on a CPU)")
    parser.add_argument("--workers", type=int, metavar="N",
                        help="the baseline DataLoader's workers (default: 0 on the CPU, 4 on CUDA)")
    parser.add_argument("--repeats", type=int, metavar="N",
                        help="timed rounds per case (default: 3 on the CPU, 10 on CUDA, 2 quick)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``reslab bench``."""
    from reslab.bench import format_report, make_settings, run_suite
    from reslab.errors import ReslabError
    from reslab.io import atomic_write, check_output_path
    from reslab.runtime import select_device

    for flag, value, least in (("--workers", args.workers, 0), ("--repeats", args.repeats, 1)):
        if value is not None and value < least:
            raise ReslabError(f"{flag} must be at least {least}, got {value}")
    settings = make_settings(select_device(args.device), quick=args.quick, compile=args.compile,
                             workers=args.workers, repeats=args.repeats)
    if args.save:
        check_output_path(args.save, suffix=".json")  # before minutes of measuring
    report = run_suite(settings, args.models, on_case=print_case)
    document = json.dumps(report.to_dict(), indent=2)
    if args.save:
        with atomic_write(args.save) as handle:
            handle.write(document + "\n")
    print(document if args.json else format_report(report))
    return 0


def print_case(rows: list[Row]) -> None:
    """One line a candidate on stderr as each case is measured: what a run stopped early
    (Ctrl-C, a time limit) has measured so far. The full table follows on stdout."""
    for row in rows:
        print(f"{row.case} / {row.candidate}: {row.images_per_s:,.1f} images/s, "
              f"{row.speedup:.2f}x", file=sys.stderr, flush=True)
