"""``reslab experiment`` and ``reslab show`` on the command line: success and bad input (one
line, exit status 2)."""

import json
import shutil
import socket
import subprocess
import sys

import PIL.Image
import pytest
import torch

from reslab.cli import main
from reslab.train import checkpoint
from reslab.train.checkpoint import read_weights
from reslab.train.config import read_toml


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
    (["experiment", "depth-table", "--data", "fashion-mnist", "--set", "lr=-1"],
     "lr must be positive, got -1.0"),
    (["experiment", "depth-table", "--data", "fashion-mnist", "--set", "data=cifar10"],
     "an experiment's recipe cannot set 'data': use --data"),
    (["experiment", "degradation", "--data", "fashion-mnist", "--set", "shortcut=B"],
     "cannot set 'shortcut': the shortcuts experiment compares the options"),
    (["experiment", "depth-table", "--data", "fashion-mnist", "--set", "seed=3"],
     "cannot set 'seed': use --seed"),
    (["experiment", "shortcuts", "--data", "fashion-mnist", "--set", "model=resnet56"],
     "cannot set 'model': the experiment picks the nets"),
    (["experiment", "depth-table", "--data", "fashion-mnist", "--depths", "8", "21"], "6n+2"),
    (["experiment", "degradation", "--data", "fashion-mnist", "--quick", "--set", "iters=50",
      "--set", "epochs=2"], "iters and epochs both set the run's length"),
])
def test_bad_input(argv, message, capsys, tmp_path):
    assert exit_code([*argv] + (["--out", str(tmp_path / "x")] if len(argv) > 2 else [])) == 2
    assert message in one_error_line(capsys)
    assert not (tmp_path / "x").exists()  # refused before the folder is claimed


def test_recipe_length_given_replaces_the_quick_recipes():
    from reslab.experiments.runs import QUICK_RECIPE, recipe

    assert recipe(quick=True, overrides={"epochs": 2}) == {
        **{k: v for k, v in QUICK_RECIPE.items() if k != "iters"}, "epochs": 2}
    assert recipe(quick=True, overrides={"iters": 50})["iters"] == 50
    assert recipe(quick=False, overrides={"epochs": 2}) == {"epochs": 2}


def test_experiment_out_that_is_a_file(capsys, tmp_path):
    (tmp_path / "file.txt").write_text("not a folder")
    assert main(["experiment", "depth-table", "--data", "fashion-mnist",
                 "--out", str(tmp_path / "file.txt")]) == 2
    assert "file.txt: it is a file" in one_error_line(capsys)


def copied_run(degradation_dir, folder, *, data="fashion-mnist"):
    """A copy of the tiny ResNet-8 run, recorded as trained on ``data``."""
    shutil.copytree(degradation_dir / "runs" / "resnet8", folder)
    config = folder / "config.toml"
    config.write_text(config.read_text().replace('"fashion-mnist"', f'"{data}"'))
    return folder


def test_layer_responses_refuses_mixed_data_and_active_runs(degradation_dir, tmp_path, capsys):
    mnist = copied_run(degradation_dir, tmp_path / "mnist-run", data="mnist")
    assert main(["experiment", "layer-responses", str(degradation_dir / "runs" / "plain8"),
                 str(mnist), "--out", str(tmp_path / "lr")]) == 2
    assert "different data sets" in one_error_line(capsys)

    active = tmp_path / "active-run"
    shutil.copytree(degradation_dir / "runs" / "plain8", active)
    provenance = json.loads((active / "run.json").read_text())
    (active / "run.json").write_text(json.dumps({**provenance, "total_iters": 400}))
    writer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:  # a live training process recorded as the folder's writer
        (active / "writer.json").write_text(json.dumps({"host": socket.gethostname(),
                                                        "pid": writer.pid}))
        assert main(["experiment", "layer-responses", str(active),
                     "--out", str(tmp_path / "lr")]) == 2
        assert (f"still being written (iteration 4 of 400, by process {writer.pid} on "
                f"{socket.gethostname()})") in one_error_line(capsys)
    finally:
        writer.kill()
        writer.wait()


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
    # a state dict without reslab metadata needs --model, which the error names
    torch.save(read_weights(run / "last.safetensors")[0], tmp_path / "plain.pth")
    capsys.readouterr()
    assert main(["show", "features", str(tmp_path / "plain.pth"), str(image),
                 "-o", str(tmp_path / "m2.png")]) == 2
    assert "--model resnet50 on the command line" in one_error_line(capsys)
    assert main(["show", "features", str(tmp_path / "plain.pth"), str(image), "--model",
                 "resnet8", "-o", str(tmp_path / "m2.png")]) == 0
    capsys.readouterr()
    assert main(["show", "filters", str(tmp_path / "missing.safetensors"),
                 "-o", str(tmp_path / "x.png")]) == 2
    assert "does not exist" in one_error_line(capsys)


def test_damaged_experiment_json(tmp_path, capsys):
    (tmp_path / "exp").mkdir()
    (tmp_path / "exp" / "experiment.json").write_text('{"experiment": "depth-t')  # cut short
    assert main(["experiment", "depth-table", "--data", "fashion-mnist",
                 "--out", str(tmp_path / "exp")]) == 2
    assert "experiment.json is damaged (not a JSON object); delete it" in one_error_line(capsys)


def test_layer_responses_refuses_what_it_cannot_measure(degradation_dir, tmp_path, capsys):
    from tests.checkpoint_fixtures import write_checkpoint

    imagenet = copied_run(degradation_dir, tmp_path / "imagenet-run", data="imagenet")
    assert main(["experiment", "layer-responses", str(imagenet),
                 "--out", str(tmp_path / "lr")]) == 2
    assert "trained on imagenet: layer responses are measured on the test split of a small " \
           "data set (cifar10, cifar100, fashion-mnist, mnist)" in one_error_line(capsys)

    lenet = copied_run(degradation_dir, tmp_path / "lenet-run")
    for name in ("last.safetensors", "best.safetensors"):
        (lenet / name).unlink(missing_ok=True)
    write_checkpoint(lenet / "last.safetensors", model="lenet5", size=32)
    assert main(["experiment", "layer-responses", str(lenet), "--device", "cpu",
                 "--out", str(tmp_path / "lr")]) == 2
    assert "lenet5 has no 3x3 convolution followed by BN" in one_error_line(capsys)

    resnet8 = degradation_dir / "runs" / "resnet8"
    (tmp_path / "link").symlink_to(resnet8)
    assert main(["experiment", "layer-responses", str(resnet8), str(tmp_path / "link"),
                 "--out", str(tmp_path / "lr")]) == 2  # one run twice: a table row each
    assert f"run folder {tmp_path / 'link'} is given twice (as {resnet8})" \
        in one_error_line(capsys)

    (tmp_path / "file.txt").write_text("")
    assert main(["experiment", "layer-responses", str(resnet8),
                 "--out", str(tmp_path / "file.txt")]) == 2
    assert "cannot write the report into" in one_error_line(capsys)
    assert not (tmp_path / "lr").exists()


def test_experiment_command_runs_with_its_flags(tiny_data, tmp_path, capsys):
    """The success path on the command line: --set, --seed, --data-dir and --device reach
    every sub-run, and the report is printed."""
    out = tmp_path / "shortcuts"
    assert main(["experiment", "shortcuts", "--data", "fashion-mnist", "--depth", "8",
                 "--data-dir", str(tiny_data), "--device", "cpu", "--seed", "5", "--no-progress",
                 "--set", "iters=2", "--set", "batch_size=16", "--set", "train_split=train",
                 "--set", "val_split=none", "--set", "eval_every=2", "--out", str(out)]) == 0
    assert capsys.readouterr().out.endswith(f"report: {out / 'report.md'}  "
                                            f"(HTML: {out / 'report.html'})\n")
    runs = sorted(p.name for p in (out / "runs").iterdir())
    assert runs == ["plain8", "resnet8-A", "resnet8-B", "resnet8-C"]
    for name in runs:
        config = read_toml(out / "runs" / name / "config.toml")
        assert (config["iters"], config["batch_size"], config["seed"], config["data_dir"]) == (
            2, 16, 5, str(tiny_data))
        assert config["shortcut"] == (None if name == "plain8" else name[-1])
    recipe = json.loads((out / "experiment.json").read_text())["recipe"]
    assert recipe == {"seed": 5, "iters": 2, "batch_size": 16, "train_split": "train",
                      "val_split": None, "eval_every": 2}
