"""``reslab bench``: it runs and prints its table (never a timing assertion), and the
measuring helpers count what they should."""

import dataclasses
import importlib.util
import json

import pytest
import torch

import reslab
from reslab.bench import Report, Row, format_report, make_settings
from reslab.bench import measure as measure_module
from reslab.bench.measure import (
    TensorMemory,
    count_flops,
    cudnn_autotuning,
    interleave,
    matmul_peak,
    median_ratio,
    percentile,
)
from reslab.cli import main
from reslab.train.step import WARMUP_STEPS


def test_quick_bench_runs_every_case_and_prints_the_table(capsys, tmp_path):
    """Every case of the default suite in its quick size (training, data, inference at two
    batch sizes with the ONNX Runtime and timm candidates): the table, and the JSON document
    with our inference outputs equal to torchvision's."""
    saved = tmp_path / "bench.json"
    assert main(["bench", "--quick", "--device", "cpu", "--save", str(saved)]) == 0
    out, err = capsys.readouterr()
    for text in ("images/s", "x base", "% peak", "load average at start", "GFLOP/s",
                 "train resnet8 16px b16", "data 16px b16", "TensorLoader, fused SGD"):
        assert text in out, text
    table = [line.split("  ") for line in out.splitlines() if line.startswith("train resnet8")]
    assert [cells[1].strip() for cells in table if len(cells) > 1] == [
        "torchvision-style eager", "reslab"]
    document = json.loads(saved.read_text())
    cases = {}
    for row in document["rows"]:
        cases.setdefault(row["case"], []).append(row)
    optional = [name for name, module in (("timm eager", "timm"), ("onnxruntime", "onnxruntime"))
                if importlib.util.find_spec(module)]
    inference = [case for case in cases if case.startswith("infer")]
    assert len(inference) == 2 and any(case.startswith("train resnet18") for case in cases)
    progress = [f"{row['case']} / {row['candidate']}: {row['images_per_s']:,.1f} images/s, "
                f"{row['speedup']:.2f}x" for row in document["rows"]]
    printed = [line for line in err.splitlines() if " images/s, " in line]
    assert printed == progress  # each case on stderr as soon as it is measured
    for case in inference:
        rows = {row["candidate"]: row for row in cases[case]}
        assert {"torchvision eager", "reslab", *optional} <= set(rows), case
        assert rows["torchvision eager"]["speedup"] == 1.0
        for name, row in rows.items():
            assert row["images_per_s"] > 0 and row["deviation"] < 1e-3, (case, name)


@pytest.mark.parametrize(("argv", "message"), [
    (["--repeats", "0"], "--repeats must be at least 1"),
    (["--workers", "-1"], "--workers must be at least 0"),
    (["--device", "cuda:7"] if not torch.cuda.is_available() else ["--device", "nope"],
     "device"),
])  # fmt: skip
def test_bad_input_is_one_line(capsys, argv, message):
    assert main(["bench", "--quick", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("reslab: error:") and message in err and "Traceback" not in err


def test_unknown_model_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "--models", "resnet1000"])
    assert exit_info.value.code == 2 and "invalid choice" in capsys.readouterr().err


def test_interleave_takes_turns_and_excludes_warmup():
    calls = []
    first, times = interleave([lambda: calls.append("A"), lambda: calls.append("B")],
                              warmup=2, repeats=3, device=torch.device("cpu"))
    assert "".join(calls) == "AB" * 5
    assert len(first) == 2 and [len(t) for t in times] == [3, 3]


def test_statistics():
    assert percentile([4, 1, 3, 2], 50) == 2.5 and percentile([1, 2, 3, 4, 5], 90) == 4.6
    assert median_ratio([2.0, 4.0, 9.0], [1.0, 1.0, 3.0]) == 3.0  # per-round, not ratio of medians


def test_flops_are_the_papers():
    def resnet50():
        return reslab.create_model("resnet50", variant="v1.5")

    forward = count_flops(resnet50, (1, 3, 224, 224), train=False)
    assert forward == pytest.approx(2 * 4.09e9, rel=0.01)  # 4.1 GMACs (Table 1 gives 3.8 for v1)
    assert 2.9 < count_flops(resnet50, (1, 3, 224, 224), train=True) / forward < 3.0
    cifar = count_flops(lambda: reslab.create_model("resnet20"), (1, 3, 32, 32), train=False)
    assert cifar == pytest.approx(2 * 41e6, rel=0.02)  # Sec. 4.2: 41M multiply-adds


def test_tensor_memory_follows_live_storage():
    with TensorMemory() as memory:
        a = torch.empty(1000, 1000)  # 4 MB
        b = a * 2  # 8 MB alive
        del a
        c = b + 1  # 8 MB alive again
        del b
    assert memory.peak == 8_000_000 and memory.current == 4_000_000
    assert c.shape == (1000, 1000)


@pytest.mark.parametrize("quick", [True, False])
def test_cuda_warmup_reaches_the_graph_replays(quick):
    """On CUDA our training candidate runs CUDA graphs: its first WARMUP_STEPS steps are eager
    and the next one captures, so the untimed rounds must hold more steps than that, or the
    timed rounds measure (and --quick checks) eager steps and never a replay."""
    settings = make_settings(torch.device("cuda"), quick=quick)
    assert settings.warmup * settings.iters > WARMUP_STEPS


def test_report_as_json_and_text():
    settings = make_settings(torch.device("cpu"), quick=True)
    row = Row(case="infer x", candidate="reslab", images_per_s=10.0, ms=100.0, p90_ms=120.0,
              speedup=1.5, peak_pct=12.5, memory_mb=None, first_s=2.0, deviation=1e-6,
              settings="BN folded")
    report = Report(settings=settings, machine={"cpu": "cpu", "cores": 2, "torch_threads": 2,
                                                "torch": "2"},
                    load_start=[1.0, 1.0, 1.0], load_end=[2.0, 2.0, 2.0],
                    peaks={"float32": 1e10}, rows=[row], seconds=3.0)
    data = json.loads(json.dumps(report.to_dict()))
    assert data["rows"][0]["speedup"] == 1.5 and data["settings"]["quick"] is True
    assert data["load_average"]["end"] == [2.0, 2.0, 2.0]
    text = format_report(report)
    assert "infer x" in text and "1.50" in text and "120.0" in text and "10.0 GFLOP/s" in text
    assert "cudnn.benchmark" not in text and "TF32" not in text  # CPU
    gpu = dataclasses.replace(report, settings=make_settings(torch.device("cuda"), quick=True),
                              machine={**report.machine, "gpu": "H100"}, cudnn_benchmark=True,
                              tf32=True)
    text = format_report(gpu)
    assert "cuDNN algorithm search (cudnn.benchmark): on" in text and "in TF32" in text
    assert json.loads(json.dumps(gpu.to_dict()))["backends"] == {"cudnn_benchmark": True,
                                                                  "tf32": True}


def test_cudnn_autotuning_is_on_for_cuda_only_and_restored(monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    with cudnn_autotuning(torch.device("cpu")):
        assert torch.backends.cudnn.benchmark is False
    with cudnn_autotuning(torch.device("cuda")):
        assert torch.backends.cudnn.benchmark is True
    assert torch.backends.cudnn.benchmark is False


@pytest.mark.parametrize("tf32", [True, False])
def test_float32_peak_matmul_runs_in_the_convolutions_precision(monkeypatch, tf32):
    """On CUDA cuDNN runs float32 convolutions in TF32 by default; the float32 peak they are
    compared with must too (a true-fp32 peak is several times lower: % of peak over 100)."""
    seen = []
    monkeypatch.setattr(measure_module, "interleave", lambda units, **_: (
        seen.append(torch.backends.cuda.matmul.allow_tf32), ([], [[1.0]]))[1])
    gpu_like = torch.device("cuda") if torch.cuda.is_available() else torch.device("meta")
    monkeypatch.setattr(measure_module, "tf32_convolutions",
                        lambda device: device == gpu_like and torch.backends.cudnn.allow_tf32)
    saved = torch.backends.cuda.matmul.allow_tf32  # a property: monkeypatch cannot restore it
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        with torch.backends.cudnn.flags(allow_tf32=tf32):
            assert matmul_peak(gpu_like, torch.float32, size=8, repeats=1) == 2 * 8**3
        assert seen == [tf32] and torch.backends.cuda.matmul.allow_tf32 is False  # restored
    finally:
        torch.backends.cuda.matmul.allow_tf32 = saved
