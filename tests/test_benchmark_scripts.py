"""The scripts in benchmarks/ still run: each once, on the CPU, at a size that takes seconds.

They are measurement tools, not tests of speed; this only checks that each one gets to its
result line with a number in it, so that the commands quoted in docs/PERFORMANCE.md keep working;
and the GPU session's plan (gpu_session.sh) rehearsed on the CPU.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import torch

from reslab.train.step import WARMUP_STEPS
from tests.data_fixtures import write_tiny_fashion_mnist

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


def load_script(name):
    """The benchmark script ``name`` imported as a module (its main() not run)."""
    spec = importlib.util.spec_from_file_location(name.removesuffix(".py"), BENCHMARKS / name)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script


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


def test_bench_data_reads_one_channel_28px_data(tmp_path):
    """``--data fashion-mnist``: the PIL baseline gets [H, W] images (PIL has no [H, W, 1]
    form) and every baseline crops at the images' own size (28), as TensorLoader does."""
    write_tiny_fashion_mnist(tmp_path, train=64, test=20)
    done = subprocess.run([sys.executable, str(BENCHMARKS / "bench_data.py"), "--data",
                           "fashion-mnist", "--data-dir", str(tmp_path), "--batch-size", "16",
                           "--baseline-images", "32", "--workers", "0", "--steps", "1"],
                          cwd=tmp_path, env={**os.environ, "OMP_NUM_THREADS": "1"},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "data: 64 images [1, 28, 28]" in done.stdout
    assert re.search(rf"TensorLoader vs best DataLoader .*: {NUMBER}x", done.stdout), done.stdout
    image = torch.randint(0, 256, (1, 28, 28), dtype=torch.uint8)
    recipes = load_script("bench_data.py").baseline_transforms([0.5], [0.25], 0.0, size=28)
    assert recipes["tensor v2"][0](image).shape == (1, 28, 28)


def test_bench_monitor_refuses_blocks_shorter_than_its_interval(tmp_path):
    done = subprocess.run([sys.executable, str(BENCHMARKS / "bench_monitor.py"), "--steps", "3",
                           "--every", "5"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2
    assert "error: --steps (3) must be at least --every (5)" in done.stderr


def test_bench_fast_paths_times_only_replays_of_the_cuda_graph():
    """On CUDA the untimed rounds (one step each) cover the CUDA-graph variant's eager warm-up
    steps and its capture, so that its timed rounds are replays, not eager steps."""
    script = load_script("bench_fast_paths.py")
    cuda = script.training_variants(torch.device("cuda"), compile=False)
    assert any(options.get("cuda_graphs") for options in cuda.values())
    assert script.warmup_rounds(cuda, 1) == WARMUP_STEPS + 1
    assert script.warmup_rounds(cuda, 9) == 9
    cpu = script.training_variants(torch.device("cpu"), compile=False)
    assert script.warmup_rounds(cpu, 1) == 1


def rehearse_gpu_session(tmp_path, **env):
    """Run ``gpu_session.sh all`` on the CPU on tiny Fashion-MNIST files, each part shrunk
    (``env`` overrides); return the output folder."""
    data, out = tmp_path / "fashion-mnist", tmp_path / "out"
    data.mkdir()
    write_tiny_fashion_mnist(data, train=64, test=20)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OUT": str(out), "PYTHON": sys.executable,
           "RESLAB_DEVICE": "cpu", "RESLAB_FMNIST_DIR": str(data),
           "RESLAB_RUNS_DIR": str(tmp_path / "runs"),
           "RESLAB_TRAIN_ARGS": "--iters 4 --no-amp --no-cuda-graphs --eval-every 2 "
                                "--train-split train --val-split none --batch-size 16",
           "RESLAB_TESTS": "tests/test_io.py", "RESLAB_COMPILE_TESTS": "tests/test_io.py",
           "RESLAB_BENCH_ARGS": "--quick --models resnet20",  # the last --models wins
           "RESLAB_LIMITS": "300 300 300 300", **env}  # a busy machine: no part cut short
    done = subprocess.run(["bash", str(BENCHMARKS / "gpu_session.sh"), "all"],
                          cwd=BENCHMARKS.parent, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def test_gpu_session_rehearsal(tmp_path):
    """`gpu_session.sh all`: the plan for a GPU session runs its four parts, each under its
    time limit, and brings back what its header promises."""
    out = rehearse_gpu_session(tmp_path)
    summary = (out / "summary.txt").read_text()
    for part in ("tests", "compile", "resnet20", "bench"):
        assert re.search(rf"^{part}: status 0, {NUMBER} s$", summary, re.MULTILINE), summary
    assert sorted(p.name for p in out.iterdir()) == [
        "bench_gpu.json", "bench_gpu.txt", "compile.log", "resnet20.log", "resnet20_run.tgz",
        "summary.txt", "tests.log"]
    assert "PASSED" in (out / "tests.log").read_text()
    assert "train resnet8 16px b16 / reslab: " in (out / "bench_gpu.txt").read_text()
    assert "run finished at iteration 4" in (out / "resnet20.log").read_text()
    with tarfile.open(out / "resnet20_run.tgz") as archive:
        assert sorted(archive.getnames()) == ["config.toml", "metrics.csv", "run.json",
                                              "wall_s.txt"]
        wall = float(archive.extractfile("wall_s.txt").read())
    assert f"resnet20: status 0, {wall:.1f} s" in summary
    assert json.loads((out / "bench_gpu.json").read_text())


def test_gpu_session_time_limit(tmp_path):
    """A part that outlasts its limit is stopped and reported; the next part still runs."""
    out = rehearse_gpu_session(tmp_path, RESLAB_LIMITS="300 300 1 300",
                               RESLAB_TRAIN_ARGS="--no-amp --no-cuda-graphs --train-split train "
                                                 "--val-split none --batch-size 16")
    summary = (out / "summary.txt").read_text()
    assert re.search(rf"^resnet20: status 124 \(time limit\), {NUMBER} s$", summary,
                     re.MULTILINE), summary
    assert re.search(rf"^bench: status 0, {NUMBER} s$", summary, re.MULTILINE), summary


def test_gpu_session_tests_step_runs_the_compile_tests_after_a_failure(tmp_path):
    """`gpu_session.sh tests`: a failing fast-path test does not cost the compile tests their
    run (set -e and pipefail stopped the script at the first failing pytest); both logs come
    back, summary.txt gives each status and the script's own status is the failure's."""
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OUT": str(out), "PYTHON": sys.executable,
           "RESLAB_TESTS": "tests/test_benchmark_scripts.py::no_such_test",  # pytest: status 4
           "RESLAB_COMPILE_TESTS": "tests/test_benchmark_scripts.py::test_every_script_is_covered"}
    done = subprocess.run(["bash", str(BENCHMARKS / "gpu_session.sh"), "tests"],
                          cwd=BENCHMARKS.parent, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 4, done.stderr[-3000:]
    assert "1 passed" in (out / "compile.log").read_text()
    summary = (out / "summary.txt").read_text()
    assert re.search(r"^tests: status 4$", summary, re.MULTILINE), summary
    assert re.search(r"^compile: status 0$", summary, re.MULTILINE), summary


def test_gpu_session_reports_a_part_killed_after_its_time_limit(tmp_path):
    """A part that ignores SIGTERM is killed 20 s after its limit (timeout's status 137): the
    summary says it ran out of time, and the next parts still run. A stand-in for Python
    makes the tests part ignore SIGTERM and every other command return at once."""
    python = tmp_path / "python"
    python.write_text('#!/bin/bash\ncase "$*" in *"not cpu"*) trap "" TERM; sleep 60;; esac\n')
    python.chmod(0o755)
    out = tmp_path / "out"
    env = {**os.environ, "OUT": str(out), "PYTHON": str(python),
           "RESLAB_RUNS_DIR": str(tmp_path / "runs"), "RESLAB_LIMITS": "1 300 300 300"}
    done = subprocess.run(["bash", str(BENCHMARKS / "gpu_session.sh"), "all"],
                          cwd=BENCHMARKS.parent, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = (out / "summary.txt").read_text()
    assert re.search(rf"^tests: status 137 \(time limit; .*\), {NUMBER} s$", summary,
                     re.MULTILINE), summary
    for part in ("compile", "resnet20", "bench"):
        assert re.search(rf"^{part}: status 0, {NUMBER} s$", summary, re.MULTILINE), summary
