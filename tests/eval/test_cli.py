"""`reslab eval` and `reslab predict` end to end: a trained run, JSON and text output, the
confusion-matrix figure, folders of images."""

import json
import warnings

import pytest
import torch
from PIL import Image

import reslab
from reslab.cli import main
from reslab.data.image_loader import usable_cores
from reslab.data.registry import FASHION_MNIST_CLASSES
from reslab.train.engine import train
from tests.checkpoint_fixtures import write_checkpoint

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_eval_of_a_trained_run_reproduces_its_test_error(fashion_dir, tmp_path, capsys,
                                                         caplog, monkeypatch):
    run = train(model="resnet8", data="fashion-mnist", data_dir=str(fashion_dir), iters=4,
                eval_every=4, log_every=4, batch_size=16, device="cpu", seed=1,
                train_split="train", val_split="test", test_split="test",
                out=str(tmp_path / "run"), progress=False)
    capsys.readouterr()
    out = tmp_path / "report"
    assert main(["eval", str(run.run_dir), "--data", "fashion-mnist", "--data-dir",
                 str(fashion_dir), "--device", "cpu", "--json", "-o", str(out)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["top1_error"] == pytest.approx(run.test_error)
    monkeypatch.delenv("RESLAB_DATA_DIR", raising=False)
    assert main(["eval", str(run.run_dir), "--device", "cpu", "--json", "-o",
                 str(tmp_path / "again")]) == 0  # the run's data set and data dir by default
    again = json.loads(capsys.readouterr().out)
    assert (again["data"], again["count"]) == ("fashion-mnist", 40)
    assert again["top1_error"] == pytest.approx(run.test_error)
    (run.run_dir / "writer.json").write_text(json.dumps({"host": "node-7", "pid": 1}))  # live
    with caplog.at_level("WARNING", logger="reslab"):
        again = reslab.evaluate(run.run_dir, data_dir=fashion_dir, device="cpu")
    assert again.top1_error == pytest.approx(run.test_error)
    assert [r.getMessage().split(":")[0] for r in caplog.records] == [
        f"{run.run_dir} is still being trained (process 1 on node-7)"]  # said once
    assert report["checkpoint"].endswith("best.safetensors") and report["count"] == 40
    assert list(report["per_class_accuracy"]) == list(FASHION_MNIST_CLASSES)
    assert json.loads((out / "eval-fashion-mnist-test-center.json").read_text()) == report
    figure = out / "confusion-fashion-mnist-test-center.png"
    assert figure.read_bytes().startswith(PNG_SIGNATURE)
    assert Image.open(figure).size[0] > 400
    assert sorted(p.name for p in out.iterdir()) == [figure.name,
                                                     "eval-fashion-mnist-test-center.json"]


def test_eval_text_output_and_precise_bn(fashion_dir, tmp_path, capsys):
    checkpoint = write_checkpoint(tmp_path / "model.safetensors",
                                  classes=list(FASHION_MNIST_CLASSES))
    assert main(["eval", str(checkpoint), "--data", "fashion-mnist", "--data-dir",
                 str(fashion_dir), "--precise-bn", "2", "--batch-size", "16"]) == 0
    text = capsys.readouterr().out
    assert "resnet8" in text and "top-1 error" in text and "top-5 error" in text
    assert "T-shirt/top" in text and "(4 images)" in text
    report = json.loads((tmp_path / "eval-fashion-mnist-test-center.json").read_text())
    assert report["precise_bn"] == 2
    plain = reslab.evaluate(checkpoint, data="fashion-mnist", data_dir=fashion_dir)
    assert report["loss"] != pytest.approx(plain.loss)  # new BN statistics, other numbers


def test_eval_interrupted_while_drawing_leaves_no_report(fashion_dir, tmp_path, capsys,
                                                         monkeypatch):
    """The JSON report, which names the figure, is written last: an eval stopped while the
    confusion matrix is drawn (seconds for 1000 classes) leaves no report of a missing figure."""
    import reslab.eval.report

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    checkpoint = write_checkpoint(tmp_path / "model.safetensors",
                                  classes=list(FASHION_MNIST_CLASSES))
    monkeypatch.setattr(reslab.eval.report, "save_confusion_matrix", interrupted)
    out = tmp_path / "report"
    assert main(["eval", str(checkpoint), "--data", "fashion-mnist", "--data-dir",
                 str(fashion_dir), "-o", str(out)]) == 130
    assert capsys.readouterr().err == "reslab: interrupted\n"
    assert list(out.iterdir()) == []


def test_eval_of_a_folder_caps_its_workers_at_the_cores_with_a_reslab_warning(tmp_path, capsys):
    """More workers than cores: one ``reslab: warning`` line and the cores' count used, not
    torch's warning with its file and code line; the default (4) is capped silently."""
    checkpoint = write_checkpoint(tmp_path / "model.safetensors")
    for name in ("cat", "dog", "fox"):
        (tmp_path / "test" / name).mkdir(parents=True)
        Image.new("L", (30, 28), 90).save(tmp_path / "test" / name / "x.png")
    cores = usable_cores()
    argv = ["eval", str(checkpoint), "--data", "folder", "--data-dir", str(tmp_path),
            "--device", "cpu", "--json", "-o", str(tmp_path / "out")]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main([*argv, "--workers", str(cores + 3)]) == 0
        assert capsys.readouterr().err == (
            f"reslab: warning: {cores + 3} DataLoader workers asked for, but this process may "
            f"use {cores} CPU cores: using {cores}\n")
        assert main(argv) == 0
        assert capsys.readouterr().err == ""
    assert [str(w.message) for w in caught] == []


def test_predict_images_and_folders(tmp_path, capsys):
    checkpoint = write_checkpoint(tmp_path / "model.safetensors")
    folder = tmp_path / "images"
    folder.mkdir()
    for name in ("b.png", "a.jpg", "c.bmp"):
        image = torch.randint(0, 256, (30, 40, 3), dtype=torch.uint8).numpy()
        Image.fromarray(image).save(folder / name)
    (folder / "notes.txt").write_text("not an image")
    assert main(["predict", str(checkpoint), str(folder), str(folder / "b.png"), "--topk", "2",
                 "--json"]) == 0
    predictions = json.loads(capsys.readouterr().out)
    assert [p["image"].rsplit("/", 1)[1] for p in predictions] == ["a.jpg", "b.png", "c.bmp",
                                                                   "b.png"]
    assert predictions[1] == predictions[3]
    expected = reslab.load(checkpoint).topk(folder / "a.jpg", k=2)[0]
    assert [(p["class"], p["probability"]) for p in predictions[0]["top"]] == [
        (name, pytest.approx(prob)) for name, prob in expected]
    assert main(["predict", str(checkpoint), str(folder / "a.jpg")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith("a.jpg") and len(lines) == 4  # the path, then the 3 classes
    assert lines[1].strip().startswith(f"{100 * expected[0][1]:.2f}%")


def test_predict_on_a_run_that_still_trains_says_so(tmp_path, capsys):
    """The checkpoint is read (it is complete); a warning line says the run trains on."""
    from reslab.train.run_lock import WRITER_FILE

    run = tmp_path / "run"
    run.mkdir()
    write_checkpoint(run / "last.safetensors")
    (run / WRITER_FILE).write_text(json.dumps({"host": "node-7", "pid": 123}))  # fresh: live
    image = tmp_path / "a.png"
    Image.fromarray(torch.zeros(28, 28, dtype=torch.uint8).numpy()).save(image)
    assert main(["predict", str(run), str(image)]) == 0
    captured = capsys.readouterr()
    assert "a.png" in captured.out
    assert captured.err.startswith(f"reslab: warning: {run} is still being trained (process 123 "
                                   "on node-7): reading last.safetensors as saved at ")
    assert captured.err.count("\n") == 1  # one line
    assert main(["predict", str(run), str(image)]) == 0
    assert capsys.readouterr().err.count("reslab: warning:") == 1  # one handler, however often


def test_predict_with_a_foreign_state_dict_warns_about_the_guessed_preprocessing(tmp_path,
                                                                                  capsys):
    weights = write_checkpoint(tmp_path / "model.safetensors")
    from safetensors.torch import load_file

    torch.save(load_file(weights), tmp_path / "plain.pth")
    image = tmp_path / "a.png"
    Image.fromarray(torch.zeros(28, 28, dtype=torch.uint8).numpy()).save(image)
    assert main(["predict", str(tmp_path / "plain.pth"), str(image), "--model", "resnet8"]) == 0
    err = capsys.readouterr().err
    assert err == (f"reslab: warning: {tmp_path / 'plain.pth'} records no preprocessing and no "
                   "class names (not a reslab checkpoint): using torchvision's ImageNet "
                   "preprocessing and the names 0..2; if the model was trained with another "
                   "input normalisation, its predictions are off\n")
    assert main(["predict", str(weights), str(image)]) == 0  # a reslab checkpoint: silent
    assert capsys.readouterr().err == ""
