"""``reslab summary``: the table, --json, --compare, model options, and one-line errors."""

import json

import pytest

from reslab.cli import main


def run(capsys, *argv):
    try:
        code = main(["summary", *argv])
    except SystemExit as exc:  # argparse's usage errors
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def test_table_reads_like_table1(capsys):
    code, out, err = run(capsys, "resnet18")
    assert code == 0 and not err
    for stage, shape in [("conv1", "64x112x112"), ("conv2_x", "64x56x56"), ("conv3_x", "128x28x28"),
                         ("conv4_x", "256x14x14"), ("conv5_x", "512x7x7")]:
        assert any(stage in line and shape in line for line in out.splitlines())
    assert "11,689,512" in out and "1.81G" in out


def test_json_has_the_keys(capsys):
    code, out, _ = run(capsys, "resnet20", "--json", "--batch", "2")
    data = json.loads(out)
    assert code == 0
    assert {"params", "macs", "activations", "layers"} <= set(data)
    assert data["params"] == 269_722 and data["input_shape"] == [2, 3, 32, 32]


def test_all_adds_batchnorm_and_relu_rows(capsys):
    _, default, _ = run(capsys, "resnet20")
    _, every, _ = run(capsys, "resnet20", "--all")
    assert "BatchNorm2d" not in default and "BatchNorm2d" in every and "ReLU" in every


def test_model_options_are_passed_on(capsys):
    _, out, _ = run(capsys, "resnet50", "--json", "--variant", "v1.5", "--num-classes", "10")
    v15 = json.loads(out)
    assert v15["macs"] == pytest.approx(4.09e9, rel=0.01)  # v1: 3.86e9
    assert v15["layers"][-1]["shape"] == [1, 10]
    _, out, _ = run(capsys, "resnet20", "--json", "--shortcut", "B", "--in-channels", "1",
                    "--input-size", "28", "28")
    assert json.loads(out)["input_shape"] == [1, 1, 28, 28]


def test_compare_prints_one_row_per_model(capsys):
    code, out, _ = run(capsys, "--compare", "lenet5", "alexnet", "resnet20")
    lines = out.strip().splitlines()
    assert code == 0 and len(lines) == 2 + 3  # header, rule, one row each
    assert [line.split()[0] for line in lines[2:]] == ["lenet5", "alexnet", "resnet20"]
    _, out, _ = run(capsys, "--compare", "lenet5", "resnet20", "--json")
    assert [row["depth"] for row in json.loads(out)] == [5, 20]


@pytest.mark.parametrize(
    "argv, words",
    [
        (["resnet21x"], ["resnet21x", "choose from", "resnet20"]),
        (["vgg16", "--input-size", "16", "16"], ["too small for vgg16", "32x32"]),
        (["alexnet", "--input-size", "100", "100"], ["alexnet", "100x100"]),
        (["resnet14", "--shortcut", "D"], ["invalid choice", "'A', 'B', 'C'"]),
        (["vgg16", "--shortcut", "A"], ["vgg16", "shortcut"]),
        (["resnet20", "--num-classes", "0"], ["num_classes"]),
        ([], ["MODEL"]),
        (["resnet20", "--compare", "lenet5"], ["MODEL"]),
        (["--compare", "lenet5", "--input-size", "64", "64"], ["--input-size"]),
    ],
)
def test_bad_input_is_one_line_exit_2(capsys, argv, words):
    code, out, err = run(capsys, *argv)
    lines = err.strip().splitlines()
    assert code == 2 and not out
    assert len(lines) == 1 and lines[0].startswith("reslab: error:")
    assert all(word in lines[0] for word in words)
