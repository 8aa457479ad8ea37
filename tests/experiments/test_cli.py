"""``reslab experiment`` and ``reslab show`` on the command line: success and bad input (one
line, exit status 2)."""

import json
import os
import shutil
import time

import PIL.Image
import pytest
import torch

from reslab.cli import main
from reslab.train import checkpoint
from reslab.train.checkpoint import read_weights


def exit_code(argv):
    """main()'s status; argparse mistakes exit through SystemExit."""
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code


def one_error_line(capsys):
    err = capsys.readouterr().err
    assert err.startswith("reslab: error: ") and err.count("\n") == 1
    return err


@pytest.mark.parametrize("argv, message", [
    (["experiment", "nonsense"], "invalid choice"),
    (["experiment", "degradation", "--data", "fashion-mnist", "--depths", "20", "21"],
     "6n+2"),
    (["experiment", "shortcuts", "--data", "fashion-mnist", "--depth", "10"], "6n+2"),
    (["experiment", "layer-responses"], "at least one run folder"),
    (["experiment", "depth-table", "--data", "nope"], "unknown data set"),
])
def test_bad_input(argv, message, capsys, tmp_path):
    assert exit_code([*argv] + (["--out", str(tmp_path / "x")] if len(argv) > 2 else [])) == 2
    assert message in one_error_line(capsys)


def test_layer_responses_refuses_mixed_data_and_active_runs(degradation_dir, tmp_path, capsys):
    mnist = tmp_path / "mnist-run"
    shutil.copytree(degradation_dir / "runs" / "resnet8", mnist)
    config = mnist / "config.toml"
    config.write_text(config.read_text().replace('"fashion-mnist"', '"mnist"'))
    assert main(["experiment", "layer-responses", str(degradation_dir / "runs" / "plain8"),
                 str(mnist), "--out", str(tmp_path / "lr")]) == 2
    assert "different data sets" in one_error_line(capsys)

    active = tmp_path / "active-run"
    shutil.copytree(degradation_dir / "runs" / "plain8", active)
    provenance = json.loads((active / "run.json").read_text())
    (active / "run.json").write_text(json.dumps({**provenance, "total_iters": 400}))
    os.utime(active / "metrics.csv", (time.time(), time.time()))
    assert main(["experiment", "layer-responses", str(active), "--out", str(tmp_path / "lr")]) == 2
    assert "still being written" in one_error_line(capsys)


def test_experiment_folder_refuses_another_recipe(degradation_dir, tiny_data, capsys):
    assert main(["experiment", "degradation", "--data", "fashion-mnist", "--depths", "8", "14",
                 "--data-dir", str(tiny_data), "--out", str(degradation_dir), "--quick",
                 "--device", "cpu"]) == 2
    assert "other settings" in one_error_line(capsys)


def test_show_filters_and_features(degradation_dir, tmp_path, capsys, monkeypatch):
    run = degradation_dir / "runs" / "resnet8"
    assert main(["show", "filters", str(run / "last.safetensors"),
                 "-o", str(tmp_path / "conv1.png")]) == 0
    assert PIL.Image.open(tmp_path / "conv1.png").size[0] > 100
    assert not (run / "best.safetensors").exists()  # no validation split: the run's last
    read = []
    monkeypatch.setattr(checkpoint, "read_weights",
                        lambda path: read.append(path) or read_weights(path))
    assert main(["show", "filters", str(run), "-o", str(tmp_path / "run.png")]) == 0
    assert read == [run / "last.safetensors"]
    image = tmp_path / "shoe.png"
    PIL.Image.fromarray(torch.randint(0, 255, (28, 28), dtype=torch.uint8).numpy()).save(image)
    assert main(["show", "features", str(run), str(image), "-o", str(tmp_path / "maps.png"),
                 "--maps", "4"]) == 0
    assert PIL.Image.open(tmp_path / "maps.png").size[1] > 100
    capsys.readouterr()
    assert main(["show", "filters", str(tmp_path / "missing.safetensors"),
                 "-o", str(tmp_path / "x.png")]) == 2
    assert "does not exist" in one_error_line(capsys)
