"""`reslab export --format onnx`: the file runs in onnxruntime at any batch size with PyTorch's
numbers, and carries the class names and preprocessing."""

import json
import logging
import sys

import numpy as np
import onnx
import onnxruntime
import torch

import reslab
from reslab.cli import main
from tests.checkpoint_fixtures import write_checkpoint


def test_onnx_matches_pytorch_at_batch_1_and_7(tmp_path, capsys):
    checkpoint = write_checkpoint(tmp_path / "model.safetensors")
    out = tmp_path / "export"
    out.mkdir()
    assert main(["export", str(checkpoint), "--format", "onnx", "-o", str(out / "model.onnx"),
                 "--opset", "18"]) == 0
    assert "images float32 [batch, 1, 28, 28] -> logits [batch, 3]" in capsys.readouterr().out
    assert [p.name for p in out.iterdir()] == ["model.onnx"]  # no temporary file left

    session = onnxruntime.InferenceSession(out / "model.onnx", providers=["CPUExecutionProvider"])
    (graph_input,) = session.get_inputs()
    assert graph_input.name == "images" and graph_input.shape[1:] == [1, 28, 28]
    assert isinstance(graph_input.shape[0], str)  # the dynamic batch axis
    predictor = reslab.load(checkpoint)
    for batch in (1, 7):
        images = torch.randint(0, 256, (batch, 1, 28, 28), dtype=torch.uint8)
        x = predictor.preprocess(images)
        (logits,) = session.run(None, {"images": x.numpy()})
        with torch.no_grad():
            expected = predictor.model(x).numpy()
        assert logits.shape == (batch, 3)
        assert np.abs(logits - expected).max() <= 1e-4

    metadata = session.get_modelmeta().custom_metadata_map
    assert json.loads(metadata["reslab.classes"]) == ["cat", "dog", "fox"]
    preprocess = json.loads(metadata["reslab.preprocess"])
    assert preprocess["size"] == [28, 28] and preprocess["mean_shape"] == [1, 28, 28]
    np.testing.assert_allclose(preprocess["mean"],
                               predictor.preprocessing.mean.flatten().numpy(), atol=1e-6)
    assert metadata["reslab.model"] == "resnet8"


def test_export_without_the_onnx_extra_fails_in_one_line(tmp_path, capsys, monkeypatch):
    checkpoint = write_checkpoint(tmp_path / "model.safetensors")
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # as if not installed
    assert main(["export", str(checkpoint), "--format", "onnx", "-o", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err
    assert err == ("reslab: error: exporting to ONNX needs the onnx extra (onnxscript is not "
                   "installed): pip install 'reslab[onnx]'\n")
    assert not (tmp_path / "m.onnx").exists()


def test_export_to_the_newest_opset_prints_only_its_result(tmp_path, capsys, caplog):
    """onnxscript's note that the onnx C API converts a newer opset is not shown as a raw
    stderr line (nor logged); the file has the opset asked for."""
    checkpoint = write_checkpoint(tmp_path / "model.safetensors")
    newest = onnx.defs.onnx_opset_version()
    with caplog.at_level(logging.WARNING):
        assert main(["export", str(checkpoint), "-o", str(tmp_path / "m.onnx"), "--opset",
                     str(newest)]) == 0
    assert [record.getMessage() for record in caplog.records] == []
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out.startswith(f"wrote {tmp_path / 'm.onnx'}: ")
    opsets = [o.version for o in onnx.load(tmp_path / "m.onnx").opset_import if o.domain == ""]
    assert opsets == [newest]
