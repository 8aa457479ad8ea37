"""reslab.evaluate: the single-view test of small data sets, precise BN, the image-folder
protocols (center, 10-crop, multi-scale), and checkpoints that do not fit the data."""

import itertools

import pytest
import torch
import torchvision.transforms.v2.functional as TF

import reslab
from reslab.data import load_arrays, per_pixel_mean
from reslab.data.registry import FASHION_MNIST_CLASSES, dataset_info
from reslab.errors import ReslabError
from reslab.eval.protocols import predict_multiscale
from reslab.eval.runner import run_evaluation, training_batches
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
    predicted = probabilities.argmax(1)
    expected = torch.zeros(10, 10, dtype=torch.int64)  # rows: true class, columns: predicted
    expected.index_put_((test.labels, predicted), torch.ones(40, dtype=torch.int64),
                        accumulate=True)
    assert torch.equal(result.confusion, expected)
    recall = [(predicted[test.labels == c] == c).double().mean().item() for c in range(10)]
    assert result.per_class_accuracy == pytest.approx(recall)


def test_precise_bn_works_on_a_copy(fashion):
    root, checkpoint = fashion
    predictor = reslab.load(checkpoint)
    before = predictor.model.bn1.running_mean.clone()
    evaluation = run_evaluation(predictor, data="fashion-mnist", data_dir=root, precise_bn=2,
                                batch_size=40, progress=False)
    torch.testing.assert_close(predictor.model.bn1.running_mean, before)
    assert not evaluation.predictor.model.training
    # the statistics are those of augmented training batches, not of the test set
    info = dataset_info("fashion-mnist")
    first, second = itertools.islice(training_batches(predictor, info, root), 2)
    train_labels = load_arrays("fashion-mnist", root, "train").labels
    assert torch.equal(first[1].sort().values, train_labels.sort().values)  # 64 < BN_BATCH
    conv1 = predictor.model.conv1
    with torch.no_grad():
        means = [conv1(images).mean((0, 2, 3)) for images, _ in (first, second)]
        test_images = predictor.preprocessing(load_arrays("fashion-mnist", root, "test").images)
        test_mean = conv1(test_images).mean((0, 2, 3))
    estimated = evaluation.predictor.model.bn1.running_mean
    torch.testing.assert_close(estimated, (means[0] + means[1]) / 2, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(estimated, test_mean, rtol=1e-4, atol=1e-5)


def test_checkpoints_that_do_not_fit_the_data(fashion, tmp_path):
    root, checkpoint = fashion
    cases = [
        (checkpoint, dict(protocol="10crop"), "single view of the original image"),
        (checkpoint, dict(protocol="fivecrop"), "unknown protocol 'fivecrop'"),
        (checkpoint, dict(split="val"), "no split 'val'"),
        (checkpoint, dict(batch_size=0), "batch size must be an integer of at least 1, got 0"),
        (checkpoint, dict(batch_size=2.5), "batch size must be an integer of at least 1, got 2.5"),
        (checkpoint, dict(precise_bn=1.5), "--precise-bn must be an integer of at least 0"),
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


def test_center_view_of_a_folder_is_the_predictors_view(tmp_path):
    """A CIFAR-style checkpoint (per-pixel mean, whole 32x32 images) evaluated on image files:
    the same view as reslab.load predicts on (the image at its input size, not a 256/224 crop),
    so the two agree on every file, also on images of another size."""
    classes = ["ant", "bee", "cow"]
    generator = torch.Generator().manual_seed(0)
    paths = []
    for name, side in zip(classes, (32, 32, 48)):
        image = torch.randint(0, 256, (3, side, side), generator=generator, dtype=torch.uint8)
        paths.append(tmp_path / "test" / name / "0.png")
        write_image(paths[-1], image)
    checkpoint = write_checkpoint(tmp_path / "model.safetensors", classes=classes,
                                  in_channels=3, size=32)
    result = reslab.evaluate(checkpoint, data="folder", data_dir=tmp_path, split="test",
                             batch_size=4, progress=False)
    probabilities = reslab.load(checkpoint)([str(path) for path in paths])  # [3, 3]
    loss = torch.nn.functional.nll_loss(probabilities.log(), torch.arange(3)).item()
    assert result.loss == pytest.approx(loss, rel=1e-5)


def test_ten_crop_reads_the_corners_the_centre_and_their_flips(tmp_path):
    """Random images: 10-crop through the runner equals the views cut here by hand (shorter
    side resized to 32 * 256/224 = 37, four corners and the centre, each also flipped)."""
    generator = torch.Generator().manual_seed(0)
    classes, sizes = ["ant", "bee", "cow"], [(40, 60), (50, 36), (37, 37)]
    pixels = []
    for name, (h, w) in zip(classes, sizes):
        image = torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=generator)
        write_image(tmp_path / "test" / name / "0.png", image)
        pixels.append(image)
    checkpoint = write_checkpoint(tmp_path / "model.safetensors", classes=classes,
                                  in_channels=3, size=32, mean=torch.full((3, 32, 32), 0.5))
    ten, center = (reslab.evaluate(checkpoint, data="folder", data_dir=tmp_path, split="test",
                                   protocol=protocol, batch_size=2, progress=False)
                   for protocol in ("10crop", "center"))
    model = reslab.load(checkpoint).model.eval()
    losses = []
    for label, image in enumerate(pixels):
        view = TF.resize(image.float() / 255, 37, antialias=True) - 0.5  # shorter side 37
        h, w = view.shape[-2:]
        top, left = round((h - 32) / 2), round((w - 32) / 2)
        corners = [(0, 0), (0, w - 32), (h - 32, 0), (h - 32, w - 32), (top, left)]
        crops = [view[:, y:y + 32, x:x + 32] for y, x in corners]
        crops += [crop.flip(-1) for crop in crops]
        with torch.no_grad():
            scores = model(torch.stack(crops)).softmax(1).mean(0)
        losses.append(-scores[label].log().item())
    assert ten.loss == pytest.approx(sum(losses) / 3, rel=1e-4)
    assert ten.loss != pytest.approx(center.loss, rel=1e-3)


def test_a_folder_tree_without_test_is_evaluated_on_val(tmp_path):
    """The default split is test, else val: a train/val tree (torchvision's ImageFolder layout)
    is evaluated on val/, with train/'s class order; a tree with test/ on test/."""
    classes = ["ant", "bee", "cow"]
    image = torch.full((3, 32, 32), 90, dtype=torch.uint8)
    for split, count in (("train", 1), ("val", 2)):
        for name, i in itertools.product(classes, range(count)):
            write_image(tmp_path / split / name / f"{i}.png", image)
    checkpoint = write_checkpoint(tmp_path / "model.safetensors", classes=classes,
                                  in_channels=3, size=32)
    evaluation = run_evaluation(checkpoint, data="folder", data_dir=tmp_path, progress=False)
    assert (evaluation.split, evaluation.result.count) == ("val", 6)
    (tmp_path / "val").rename(tmp_path / "test")
    evaluation = run_evaluation(checkpoint, data="folder", data_dir=tmp_path, progress=False)
    assert (evaluation.split, evaluation.result.count) == ("test", 6)
