"""reslab.evaluate: the single-view test of small data sets, precise BN, the image-folder
protocols (center, 10-crop, multi-scale), and checkpoints that do not fit the data."""

import pytest
import torch

import reslab
from reslab.data import load_arrays, per_pixel_mean
from reslab.data.registry import FASHION_MNIST_CLASSES
from reslab.errors import ReslabError
from reslab.eval.protocols import predict_multiscale
from reslab.eval.runner import run_evaluation
from tests.checkpoint_fixtures import write_checkpoint
from tests.data.formats import write_image


@pytest.fixture(scope="module")
def fashion(fashion_dir, tmp_path_factory):
    """The tiny Fashion-MNIST and a checkpoint for it (with its per-pixel mean)."""
    mean = per_pixel_mean(load_arrays("fashion-mnist", fashion_dir, "train").images)
    checkpoint = write_checkpoint(tmp_path_factory.mktemp("ckpt") / "model.safetensors",
                                  classes=list(FASHION_MNIST_CLASSES), mean=mean)
    return fashion_dir, checkpoint


def test_single_view_matches_the_predictor(fashion):
    root, checkpoint = fashion
    result = reslab.evaluate(checkpoint, data="fashion-mnist", data_dir=root, device="cpu",
                             batch_size=16, progress=False)
    test = load_arrays("fashion-mnist", root, "test")
    probabilities = reslab.load(checkpoint)(test.images)  # [40, 10]
    wrong = (probabilities.argmax(1) != test.labels).float().mean().item()
    top5 = (probabilities.topk(5, 1).indices == test.labels[:, None]).any(1)
    assert result.count == 40 and result.confusion.sum() == 40
    assert result.top1_error == pytest.approx(wrong)
    assert result.top5_error == pytest.approx(1 - top5.float().mean().item())
    loss = torch.nn.functional.nll_loss(probabilities.log(), test.labels).item()
    assert result.loss == pytest.approx(loss, rel=1e-4)


def test_precise_bn_works_on_a_copy(fashion):
    root, checkpoint = fashion
    predictor = reslab.load(checkpoint)
    before = predictor.model.bn1.running_mean.clone()
    evaluation = run_evaluation(predictor, data="fashion-mnist", data_dir=root, precise_bn=2,
                                batch_size=40, progress=False)
    torch.testing.assert_close(predictor.model.bn1.running_mean, before)
    assert not torch.allclose(evaluation.predictor.model.bn1.running_mean, before)
    assert not evaluation.predictor.model.training


def test_checkpoints_that_do_not_fit_the_data(fashion, tmp_path):
    root, checkpoint = fashion
    cases = [
        (checkpoint, dict(protocol="10crop"), "single view of the original image"),
        (checkpoint, dict(protocol="fivecrop"), "unknown protocol 'fivecrop'"),
        (checkpoint, dict(split="val"), "no split 'val'"),
        (checkpoint, dict(batch_size=0), "batch size must be at least 1"),
        (write_checkpoint(tmp_path / "three.safetensors"), {},
         "has 3 classes but fashion-mnist has 10"),
        (write_checkpoint(tmp_path / "digits.safetensors", classes=list("0123456789")), {},
         "trained on the classes"),
        (write_checkpoint(tmp_path / "rgb.safetensors", classes=list(FASHION_MNIST_CLASSES),
                          in_channels=3, size=32), {},
         "takes 3x32x32 images, fashion-mnist has 1x28x28"),
    ]  # fmt: skip
    for path, options, message in cases:
        with pytest.raises(ReslabError, match=message):
            reslab.evaluate(path, data="fashion-mnist", data_dir=root, **options)


def test_image_folder_protocols(tmp_path):
    """Uniform images: every crop and flip is the same view, so 10-crop equals center."""
    classes = ["ant", "bee", "cow"]
    for label, (name, (h, w)) in enumerate(zip(classes, [(40, 60), (50, 36), (33, 33)])):
        colour = torch.tensor([60 * label + 20, 90, 200 - 50 * label], dtype=torch.uint8)
        write_image(tmp_path / "test" / name / "0.png", colour.view(3, 1, 1).expand(3, h, w))
    checkpoint = write_checkpoint(tmp_path / "model.safetensors", classes=classes,
                                  in_channels=3, size=32, mean=torch.full((3, 32, 32), 0.5))
    results = {
        protocol: reslab.evaluate(checkpoint, data="folder", data_dir=tmp_path, split="test",
                                  protocol=protocol, batch_size=4, progress=False)
        for protocol in ("center", "10crop", "multiscale")
    }  # fmt: skip
    assert all(r.count == 3 and r.confusion.sum() == 3 for r in results.values())
    assert results["10crop"].loss == pytest.approx(results["center"].loss, rel=1e-5)
    # multi-scale: each whole image, mean subtracted, at the paper's scales taken to a 32 px
    # net (224..640 * 32/224), scores averaged; uniform images stay uniform when resized
    model = reslab.load(checkpoint).model.eval()
    losses, hits = [], 0
    for label, (h, w) in enumerate([(40, 60), (50, 36), (33, 33)]):
        colour = torch.tensor([60 * label + 20, 90, 200 - 50 * label]) / 255
        view = (colour - 0.5).view(3, 1, 1).expand(3, h, w)
        scores = predict_multiscale(model, [view], scales=[32, 37, 55, 69, 91])[0]
        losses.append(-scores[label].log().item())
        hits += int(scores.argmax() == label)
    assert results["multiscale"].loss == pytest.approx(sum(losses) / 3, rel=1e-4)
    assert results["multiscale"].top1_error == pytest.approx(1 - hits / 3)
    with pytest.raises(ReslabError, match="precise-bn is supported on the small data sets"):
        reslab.evaluate(checkpoint, data="folder", data_dir=tmp_path, precise_bn=1)
