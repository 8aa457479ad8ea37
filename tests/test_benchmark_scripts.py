"""The scripts in benchmarks/ still run: each once, on the CPU, at a size that takes seconds.

They are measurement tools, not tests of speed; this only checks that each one gets to its
result line with a number in it, so that the commands quoted in docs/PERFORMANCE.md keep working.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
NUMBER = r"[0-9][0-9,]*(?:\.[0-9]+)?"

CASES = {  # script: (tiny arguments, a line its result must contain)
    "bench_convs.py": (["--batch", "2", "--repeats", "1"],
                       rf"channels_last {NUMBER} ms, ratio {NUMBER}"),
    "bench_profile.py": (["--batch", "4", "--steps", "1"], rf"total\s+{NUMBER}"),
    "bench_engine.py": (["--iters", "4", "--log-every", "2", "--batch-size", "8",
                         "--images", "100"], rf"ratio reslab / torchvision-style: {NUMBER}"),
    "bench_data.py": (["--images", "256", "--batch-size", "32", "--baseline-images", "64",
                       "--workers", "0", "--steps", "1", "--erase", "0.5"],
                      rf"TensorLoader vs best DataLoader .*: {NUMBER}x"),
    "bench_fast_paths.py": (["--device", "cpu", "--batch", "2", "--infer-model", "resnet18",
                             "--warmup", "0", "--repeats", "1"],
                            rf"BN folded \+ channels_last\s+{NUMBER}\s+{NUMBER}"),
    "bench_monitor.py": (["--batch-size", "4", "--steps", "4", "--rounds", "1", "--every", "2"],
                         rf"ratio {NUMBER}"),
}


def test_every_script_is_covered():
    assert sorted(CASES) == sorted(p.name for p in BENCHMARKS.glob("*.py"))


@pytest.mark.parametrize("script", sorted(CASES))
def test_benchmark_script_runs(script, tmp_path):
    arguments, result_line = CASES[script]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # tiny ops: one thread, no spinning on a busy CPU
    done = subprocess.run([sys.executable, str(BENCHMARKS / script), *arguments], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert re.search(result_line, done.stdout), done.stdout[-3000:]
