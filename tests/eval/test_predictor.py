"""reslab.load: run folders, our safetensors, torchvision state dicts; the preprocessing; errors."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
import torchvision.transforms.v2.functional as TF
from PIL import Image
from safetensors.torch import save_file

import reslab
from reslab.errors import ReslabError
from reslab.train.checkpoint import read_weights
from tests.checkpoint_fixtures import write_checkpoint


@pytest.fixture
def checkpoint(tmp_path):
    return write_checkpoint(tmp_path / "model.safetensors")


def test_predictions_are_softmax_of_the_normalised_images(checkpoint):
    predictor = reslab.load(checkpoint)
    images = torch.randint(0, 256, (5, 1, 28, 28), dtype=torch.uint8)
    mean = torch.tensor(predictor.meta["preprocess"]["mean"]).view(1, 28, 28)
    expected_input = images.float() / 255 - mean  # Sec. 4.2: per-pixel mean subtracted
    torch.testing.assert_close(predictor.preprocess(images), expected_input)
    probabilities = predictor(images, batch_size=2)
    torch.testing.assert_close(probabilities, predictor.model(expected_input).softmax(1))
    assert not predictor.model.training
    assert predictor.classes == ["cat", "dog", "fox"] and predictor.input_size == (28, 28)
    top = predictor.topk(images[0], k=5)  # k capped at the 3 classes
    assert [name for name, _ in top[0]] == [
        predictor.classes[i] for i in probabilities[0].argsort(descending=True)]
    assert sum(p for _, p in top[0]) == pytest.approx(1, abs=1e-5)


@pytest.mark.parametrize("batch_size", [1, 2, 3, 4, 64])
def test_images_are_predicted_a_batch_at_a_time(checkpoint, batch_size, monkeypatch):
    """Tensors of several images and single ones, split and joined into batches of exactly
    ``batch_size`` (the last one smaller), each decoded only when its batch is due: the result
    equals one forward pass over everything, and memory does not grow with the image count."""
    predictor = reslab.load(checkpoint)
    images = torch.randint(0, 256, (9, 1, 28, 28), dtype=torch.uint8)
    given = [images[0:3], images[3], images[4:5], images[5:9]]  # [3], [], [1], [4] images
    expected = predictor.model(predictor.preprocess(images)).softmax(1)
    sizes, decoded = [], []
    forward = predictor.model.forward

    def counting_forward(x):
        sizes.append(len(x))
        decoded.append(len(x))
        return forward(x)

    def counting(parts):
        for part in parts:
            decoded.append(-len(part) if part.dim() == 4 else -1)  # taken from the input
            yield part

    monkeypatch.setattr(predictor.model, "forward", counting_forward)
    torch.testing.assert_close(predictor(counting(given), batch_size=batch_size), expected)
    assert sizes == [batch_size] * (9 // batch_size) + ([9 % batch_size] if 9 % batch_size else [])
    held, most = 0, 0  # images taken from the input and not yet through the model
    for event in decoded:
        held -= event
        most = max(most, held)
    assert most < batch_size + 4  # at most one batch and the largest given tensor


def test_a_tensor_of_many_images_is_preprocessed_a_batch_at_a_time(checkpoint, monkeypatch):
    """One uint8 tensor of N images is converted to float, moved to the device and resized a
    batch at a time too, not all N at once: its float copy is N times 4 bytes per pixel."""
    predictor = reslab.load(checkpoint)
    images = torch.randint(0, 256, (9, 1, 28, 28), dtype=torch.uint8)
    expected = predictor.model(predictor.preprocess(images)).softmax(1)
    sizes = []
    forward = predictor.preprocessing.forward

    def counting_forward(x):
        sizes.append(len(x))
        return forward(x)

    monkeypatch.setattr(predictor.preprocessing, "forward", counting_forward)
    torch.testing.assert_close(predictor(images, batch_size=4), expected)
    assert sizes == [4, 4, 1]

def test_pil_images_and_files_of_any_size_and_mode(checkpoint, tmp_path):
    predictor = reslab.load(checkpoint)
    rgb = Image.fromarray(torch.randint(0, 256, (40, 56, 3), dtype=torch.uint8).numpy())
    rgb.save(tmp_path / "photo.png")
    from_pil, from_file = predictor.preprocess([rgb, tmp_path / "photo.png"])
    assert from_pil.shape == (1, 28, 28)  # grey, shorter side resized, centre-cropped
    torch.testing.assert_close(from_pil, from_file)
    pixels = torch.from_numpy(np.array(rgb)).permute(2, 0, 1).float() / 255  # [3, 40, 56]
    grey = (torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1) * pixels).sum(0, keepdim=True)
    resized = TF.resize(grey, 28, antialias=True)  # [1, 28, 39]
    assert resized.shape == (1, 28, 39)
    torch.testing.assert_close(from_pil, resized[:, :, 6:34] - predictor.preprocessing.mean,
                               atol=1e-2, rtol=0)  # columns 6-33: the centre 28 of 39
    grey = rgb.convert("L").resize((28, 28))
    exact = torch.from_numpy(np.array(grey)).float()[None] / 255  # [1, 28, 28]
    torch.testing.assert_close(predictor.preprocess(grey)[0],
                               exact - predictor.preprocessing.mean)


def test_16_bit_grey_images_keep_their_high_byte(checkpoint, tmp_path):
    """A 16-bit grey PNG is not clipped to white: predict reads it as its high byte, as the
    image-folder reader (reslab eval, training) does."""
    from reslab.data.folder import decode_file

    pixels = torch.randint(0, 65536, (28, 28), generator=torch.Generator().manual_seed(0))
    Image.fromarray(pixels.numpy().astype(np.uint16)).save(tmp_path / "grey16.png")
    high = (pixels >> 8).to(torch.uint8)[None]  # [1, 28, 28]
    predictor = reslab.load(checkpoint)
    torch.testing.assert_close(predictor.preprocess(tmp_path / "grey16.png"),
                               predictor.preprocess(high))
    assert torch.equal(decode_file(tmp_path / "grey16.png"), high.expand(3, 28, 28))


def test_grey_images_for_an_rgb_model(tmp_path):
    predictor = reslab.load(write_checkpoint(tmp_path / "rgb.safetensors", in_channels=3,
                                             size=32))
    grey = torch.randint(0, 256, (2, 1, 32, 32), dtype=torch.uint8)
    torch.testing.assert_close(predictor.preprocess(grey),
                               predictor.preprocess(grey.expand(-1, 3, -1, -1)))


def test_run_folder_prefers_best_then_last(tmp_path):
    write_checkpoint(tmp_path / "last.safetensors", classes=["a", "b"])
    assert reslab.load(tmp_path).classes == ["a", "b"]
    write_checkpoint(tmp_path / "best.safetensors", classes=["x", "y"])
    assert reslab.load(tmp_path).source.endswith("best.safetensors")


def test_test_view_follows_the_training_pipeline(tmp_path):
    whole = reslab.load(write_checkpoint(tmp_path / "small.safetensors", in_channels=3, size=32))
    assert whole.preprocessing.resize == 32  # per-pixel mean: whole 32x32 images
    crops = reslab.load(write_checkpoint(tmp_path / "folder.safetensors", in_channels=3, size=224,
                                         mean=torch.full((3,), 0.45)))
    assert crops.preprocessing.resize == 256  # per-channel mean: image folders, 256 -> 224
    assert crops.preprocess(torch.zeros(3, 300, 400, dtype=torch.uint8)).shape == (1, 3, 224, 224)


def test_torchvision_state_dict(tmp_path):
    torch.manual_seed(0)
    reference = torchvision.models.resnet50().eval()
    state = {f"module.{k}": v for k, v in reference.state_dict().items()}  # DDP prefix
    torch.save({"state_dict": state}, tmp_path / "resnet50.pth")
    predictor = reslab.load(tmp_path / "resnet50.pth", model="resnet50")
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():  # torchvision's v1.5 bottleneck, the same numbers
        torch.testing.assert_close(predictor.model(x), reference(x))
    assert predictor.classes[:2] == ["tench", "goldfish"]  # torchvision's ImageNet names
    fallback = predictor.preprocessing  # resize 256, centre crop 224, ImageNet mean/std
    assert (fallback.resize, fallback.size) == (256, (224, 224))
    assert predictor.preprocess(torch.zeros(3, 300, 400, dtype=torch.uint8)).shape == (
        1, 3, 224, 224)
    with pytest.raises(ReslabError, match="no reslab metadata.*model='resnet50'"):
        reslab.load(tmp_path / "resnet50.pth")


def test_bad_checkpoints(tmp_path, checkpoint):
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(checkpoint.read_bytes()[:-1000])
    bad_meta = tmp_path / "meta.safetensors"
    save_file({"w": torch.zeros(1)}, bad_meta, metadata={"reslab": "{not json"})
    resnet20 = write_checkpoint(tmp_path / "resnet20.safetensors", model="resnet20",
                                in_channels=3, size=32)
    cases = [
        (tmp_path / "missing.safetensors", "does not exist"),
        (tmp_path, "not a run folder: it has no best.safetensors or last.safetensors"),
        (cut, "truncated or corrupt"),
        (bad_meta, "truncated or corrupt"),
    ]
    for path, message in cases:
        with pytest.raises(ReslabError, match=message):
            reslab.load(path)
    with pytest.raises(ReslabError, match=r"does not fit this architecture: missing keys "
                                          r"\['layer1\.3\.bn1\.bias'"):
        reslab.load(resnet20, model="resnet32")
    with pytest.raises(ReslabError, match=r"does not fit this architecture: \S+: "
                                          r"checkpoint \([\d, ]+\) vs model \([\d, ]+\)"):
        reslab.load(resnet20, model="resnet18")


class RunsCode:
    """Unpickling this calls ``pathlib.Path.touch``: what a malicious checkpoint would do."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_checkpoint_that_would_run_code_is_refused_in_one_line(tmp_path):
    """torch.load(weights_only=True) refuses the call; the message says so and does not pass
    on torch's advice to retry with weights_only=False (which would run it)."""
    from reslab.train.checkpoint import load_trainer_state

    marker = tmp_path / "PWNED"
    for name in ("evil.pth", "trainer_state.pt"):
        torch.save({"fc.weight": torch.zeros(1), "x": RunsCode(marker)}, tmp_path / name)
    for load_file in (lambda: reslab.load(tmp_path / "evil.pth", model="resnet20"),
                      lambda: load_trainer_state(tmp_path / "trainer_state.pt")):
        with pytest.raises(ReslabError) as error:
            load_file()
        message = str(error.value)
        assert "refused" in message and "never code" in message and "\n" not in message
        assert "GLOBAL" in message and "weights_only" not in message, message
        assert "allowlist" not in message and "trust" not in message, message
    assert not marker.exists()


def test_undecodable_image_and_bad_tensors(checkpoint, tmp_path):
    predictor = reslab.load(checkpoint)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(ReslabError, match="cannot decode image .*broken.png"):
        predictor.topk(tmp_path / "broken.png")
    with pytest.raises(ReslabError, match="uint8"):
        predictor(torch.rand(1, 1, 28, 28))
    with pytest.raises(ReslabError, match=r"with C, H and W above 0, got torch.uint8 "
                                          r"\[1, 1, 0, 28\]"):
        predictor(torch.zeros(1, 1, 0, 28, dtype=torch.uint8))
    with pytest.raises(ReslabError, match="cannot read an image from a bytes: give a file path, "
                                          "a PIL image or a uint8 tensor"):
        predictor((tmp_path / "broken.png").read_bytes())
    with pytest.raises(ReslabError, match=r"cannot convert 28-channel images to the model's 1 "
                                          r"channels \(a \[H, W, C\] tensor\? permute it"):
        predictor(torch.zeros(28, 28, 3, dtype=torch.uint8))


def test_preprocessing_metadata_that_does_not_fit_the_model(tmp_path):
    """A mean of another input size, or a std of another channel count (hand-edited
    metadata): one line naming the file, not a broadcast error at the first prediction."""
    good = write_checkpoint(tmp_path / "good.safetensors")
    state, meta = read_weights(good)
    cases = [({"shape": [1, 32, 32], "mean": [0.5] * 1024},
              r"a per-pixel preprocessing mean of shape \[1, 32, 32\] does not fit the model's "
              r"28x28 input"),
             ({"std": [0.2, 0.2, 0.2]},
              "a preprocessing std of 3 values does not fit a 1-channel model")]
    for change, message in cases:
        bad = tmp_path / "bad.safetensors"
        save_file(state, bad, metadata={"reslab": json.dumps(
            {**meta, "preprocess": {**meta["preprocess"], **change}})})
        with pytest.raises(ReslabError, match="bad.safetensors: " + message):
            reslab.load(bad)


def test_image_over_the_pixel_limit_is_refused_as_by_the_folder_reader(checkpoint, tmp_path,
                                                                        monkeypatch, recwarn):
    """An image file over Pillow's decompression-bomb limit is refused from its header, at the
    limit itself (Pillow only warns up to twice the limit), with the image-folder reader's
    message; no Python warning reaches stderr."""
    predictor = reslab.load(checkpoint)
    Image.new("L", (12, 10), 3).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(ReslabError, match=r"big.png: image of 12x10 pixels is over the limit "
                                          r"of 100 \(PIL.Image.MAX_IMAGE_PIXELS"):
        predictor.topk(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 50)  # twice over: Pillow's own error
    with pytest.raises(ReslabError, match=r"big.png: Image size \(120 pixels\) exceeds limit"):
        predictor.topk(tmp_path / "big.png")
    assert not recwarn.list
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 120)
    assert predictor(tmp_path / "big.png").shape == (1, 3)


def test_batch_size_and_k_that_are_not_positive_integers(checkpoint):
    """The API refuses them with a ReslabError, as `reslab predict` does, not with torch's
    RuntimeError or TypeError."""
    predictor = reslab.load(checkpoint)
    images = torch.zeros(2, 1, 28, 28, dtype=torch.uint8)
    for batch_size in (0, -1, 1.5):
        with pytest.raises(ReslabError, match=rf"batch_size must be a positive integer, got "
                                              rf"{batch_size}"):
            predictor(images, batch_size=batch_size)
        with pytest.raises(ReslabError, match="batch_size must be a positive integer"):
            predictor.topk(images, batch_size=batch_size)
    for k in (0, 2.5):
        with pytest.raises(ReslabError, match=rf"k must be a positive integer, got {k}"):
            predictor.topk(images, k)
    assert predictor(images, batch_size=1).shape == (2, 3)


def test_options_cannot_set_what_the_weights_decide(checkpoint):
    """``num_classes`` and ``in_channels`` (which the model-option error lists among a model's
    options) come from the checkpoint: refused as options in one ReslabError, not a TypeError."""
    for key in ("num_classes", "in_channels"):
        with pytest.raises(ReslabError, match=rf"model.safetensors: {key} comes from the "
                                              "checkpoint, not from options"):
            reslab.load(checkpoint, options={key: 3})
    assert reslab.load(checkpoint, options={"shortcut": "A"}).classes == ["cat", "dog", "fox"]
