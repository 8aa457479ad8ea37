"""Bad input to `reslab eval`, `reslab predict` and `reslab export`: one line
``reslab: error: ...``, exit status 2, no traceback, and no file written or left half-written."""

import io
import os
import re
import warnings

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from reslab.cli import main
from tests.checkpoint_fixtures import write_checkpoint


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """Checkpoints (good, truncated, resnet20), images, a regular file."""
    root = tmp_path_factory.mktemp("bad-input")
    good = write_checkpoint(root / "model.safetensors")
    (root / "cut.safetensors").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    buffer = io.BytesIO()
    torch.save(load_file(good), buffer)
    (root / "cut.pth").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    (root / "plain.pth").write_bytes(buffer.getvalue())  # a state dict without reslab metadata
    (root / "text.pth").write_text("hello, not a pickle")
    (root / "empty.pth").write_bytes(b"")
    write_checkpoint(root / "resnet20.safetensors", model="resnet20", in_channels=3, size=32)
    write_checkpoint(root / "lenet5.safetensors", model="lenet5", size=32)
    Image.new("L", (28, 28), 128).save(root / "good.png")
    (root / "image.pth").write_bytes((root / "good.png").read_bytes())
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    (root / "file.txt").write_text("a regular file, not a folder")
    save_file(load_file(good), root / "list-meta.safetensors", metadata={"reslab": "[]"})
    return root


def files_under(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


CASES = {
    "unknown model": (["predict", "{w}/model.safetensors", "{w}/good.png", "--model",
                       "resnet21x"], "unknown model 'resnet21x'"),
    "no data set named or recorded": (["eval", "{w}/plain.pth", "--model", "resnet8"],
                                      "plain.pth does not record the data set it was trained "
                                      "on: name one with --data"),
    "unknown data set": (["eval", "{w}/model.safetensors", "--data", "cifar11"],
                         "unknown data set 'cifar11'; choose from: cifar10"),
    "missing data root": (["eval", "{w}/model.safetensors", "--data", "fashion-mnist",
                           "--data-dir", "{w}/nowhere"], "data dir .*nowhere does not exist"),
    "missing checkpoint": (["predict", "{w}/nothing.safetensors", "{w}/good.png"],
                           "checkpoint .*nothing.safetensors does not exist"),
    "truncated checkpoint": (["eval", "{w}/cut.safetensors", "--data", "fashion-mnist",
                              "--data-dir", "{d}"], "cut.safetensors is truncated or corrupt"),
    "damaged .pth": (["predict", "{w}/cut.pth", "{w}/good.png"],
                     "cut.pth is truncated, corrupt or not a weights-only"),
    **{f"not a checkpoint ({name})": (["predict", f"{{w}}/{name}", "{w}/good.png"],
                                      f"{name} is not a checkpoint \\(safetensors or torch "
                                      "state dict\\)$")
       for name in ("text.pth", "empty.pth", "image.pth")},
    "metadata that is not an object": (["predict", "{w}/list-meta.safetensors", "{w}/good.png"],
                                       "list-meta.safetensors: its reslab metadata is not a JSON "
                                       "object"),
    "other architecture": (["export", "{w}/resnet20.safetensors", "--model", "resnet32", "-o",
                            "{w}/m.onnx"],
                           r"does not fit this architecture: missing keys \['layer1.3.bn1.bias'"),
    "undecodable image": (["predict", "{w}/model.safetensors", "{w}/good.png", "{w}/broken.png"],
                          "cannot decode image .*broken.png: "),
    "missing image": (["predict", "{w}/model.safetensors", "{w}/gone.png"],
                      "image .*gone.png does not exist"),
    "eval output in a missing folder": (
        ["eval", "{w}/model.safetensors", "--data", "fashion-mnist", "--data-dir", "{d}",
         "-o", "{w}/missing/out"], "cannot write .*out: folder .*missing does not exist"),
    "export output in a missing folder": (
        ["export", "{w}/model.safetensors", "-o", "{w}/missing/m.onnx"],
        "cannot write .*m.onnx: folder .*missing does not exist"),
    "eval output under a file": (
        ["eval", "{w}/model.safetensors", "--data", "fashion-mnist", "--data-dir", "{d}",
         "-o", "{w}/file.txt/out"], "cannot write .*out: .*file.txt is not a folder"),
    "export output under a file": (["export", "{w}/model.safetensors", "-o", "{w}/file.txt/m.onnx"],
                                   "cannot write .*m.onnx: .*file.txt is not a folder"),
    "export to a name of another format": (["export", "{w}/model.safetensors", "-o", "{w}/m.pt"],
                                           "cannot write .*m.pt: the file is ONNX, so its name "
                                           "must end in .onnx"),
    "export to the bare suffix": (["export", "{w}/model.safetensors", "-o", "{w}/.onnx"],
                                  r"cannot write .*/\.onnx: give the file a name before \.onnx, "
                                  r"e\.g\. model\.onnx"),
    "show to a name of another format": (["show", "filters", "{w}/model.safetensors", "-o",
                                          "{w}/f.jpg"], "the file is PNG, so its name must end "
                                                        "in .png"),
    "unsupported opset": (["export", "{w}/model.safetensors", "-o", "{w}/m.onnx", "--opset", "12"],
                          "opset 12 is not supported: choose 18 to"),
    "10-crop of a 28x28 image": (["eval", "{w}/model.safetensors", "--data", "fashion-mnist",
                                  "--data-dir", "{d}", "--protocol", "10crop"],
                                 "single view of the original image"),
    "multi-scale test of a net that runs at one size": (
        ["eval", "{w}/lenet5.safetensors", "--data", "imagenet", "--protocol", "multiscale"],
        "lenet5 runs at 32x32 only .* no fully-convolutional multi-scale test: use --protocol "
        "center or 10crop"),
    "classes of another data set": (["eval", "{w}/model.safetensors", "--data", "fashion-mnist",
                                     "--data-dir", "{d}"],
                                    "has 3 classes but fashion-mnist has 10"),
    "device torch knows but reslab does not run on": (
        ["predict", "{w}/model.safetensors", "{w}/good.png", "--device", "xpu"],
        "unknown device 'xpu'; choose from: auto, cpu, cuda, cuda:N, mps"),
    "bad topk": (["predict", "{w}/model.safetensors", "{w}/good.png", "--topk", "0"],
                 "--topk must be positive, got 0"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_exit_2_and_writes_nothing(case, workspace, fashion_dir, capsys):
    argv, message = CASES[case]
    before = files_under(workspace), files_under(fashion_dir)
    assert main([arg.format(w=workspace, d=fashion_dir) for arg in argv]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("reslab: error: "), captured.err
    assert "Traceback" not in captured.err
    assert re.search(message, lines[0]), lines[0]
    assert (files_under(workspace), files_under(fashion_dir)) == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders; the "
                    "read-only case is covered by outputs under a regular file")
def test_read_only_output_folder(workspace, tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    assert main(["export", str(workspace / "model.safetensors"), "-o",
                 str(locked / "m.onnx")]) == 2
    assert "is read-only" in capsys.readouterr().err
    assert list(locked.iterdir()) == []


def test_damaged_image_read_by_a_worker_is_one_line(workspace, tmp_path, capsys):
    """A DataLoader worker's ReslabError reaches the user without torch's traceback."""
    for name in ("cat", "dog", "fox"):  # the checkpoint's classes
        (tmp_path / "test" / name).mkdir(parents=True)
        Image.new("L", (28, 28), 100).save(tmp_path / "test" / name / "ok.png")
    (tmp_path / "test" / "cat" / "zz-cut.png").write_bytes(
        (tmp_path / "test" / "cat" / "ok.png").read_bytes()[:60])
    assert main(["eval", str(workspace / "model.safetensors"), "--data", "folder",
                 "--data-dir", str(tmp_path), "--split", "test", "--workers", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and "worker" not in err, err
    assert re.fullmatch(r"reslab: error: .*zz-cut.png: cannot decode image .*; "
                        r"`reslab data verify` lists damaged files\n", err), err


def test_a_folder_of_other_classes_fails_before_any_worker_is_set_up(workspace, tmp_path, capsys):
    """The class check comes before the DataLoader is made: torch's warning about more workers
    than cores never precedes the error."""
    for name in ("a", "b"):  # the checkpoint has three classes
        (tmp_path / "test" / name).mkdir(parents=True)
        Image.new("L", (28, 28), 100).save(tmp_path / "test" / name / "x.png")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["eval", str(workspace / "model.safetensors"), "--data", "folder",
                     "--data-dir", str(tmp_path), "--split", "test",
                     "--workers", str(4 * (os.cpu_count() or 1))]) == 2
    assert [str(w.message) for w in caught] == []
    assert capsys.readouterr().err == (f"reslab: error: {workspace / 'model.safetensors'} has 3 "
                                       "classes but folder has 2\n")
