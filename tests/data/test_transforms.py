"""The pipeline presets (Sec. 3.4 and 4.2) and per-sample reproducible randomness."""

import pytest
import torch

from reslab.data import ArrayData, ArrayDataset, pipeline
from reslab.data.transforms import PCA_EIGVAL, PCA_EIGVEC, Lighting, RandomShorterSide
from reslab.errors import ReslabError


def test_cifar_preset_matches_the_paper():
    mean = torch.full((3, 32, 32), 0.5)
    preset = pipeline("cifar", mean=mean)
    assert (preset.pad, preset.flip, preset.size) == (4, True, (32, 32))
    image = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)
    assert torch.allclose(preset.eval()(image), image / 255 - 0.5, atol=1e-6)
    torch.manual_seed(0)
    out = preset.train(image)
    assert out.shape == (3, 32, 32) and out.dtype == torch.float32
    with pytest.raises(ReslabError, match=r"no test protocol '10crop'; choose from: center"):
        preset.eval("10crop")


def test_small_presets_are_configurable():
    fashion = pipeline("fashion-mnist", pad=2, flip=False)
    assert (fashion.pad, fashion.flip, fashion.size, fashion.mean) == (2, False, (28, 28), None)
    assert pipeline("mnist").flip is False and pipeline("fashion-mnist").flip is True
    image = torch.arange(28 * 28, dtype=torch.uint8).view(1, 28, 28)
    assert torch.allclose(pipeline("mnist", pad=0).train(image), image / 255)  # no pad, no flip
    with pytest.raises(ReslabError, match=r"unknown pipeline 'svhn'; choose from: cifar, "):
        pipeline("svhn")
    with pytest.raises(ReslabError, match=r"pad applies to the small-image pipelines"):
        pipeline("imagenet", pad=4)


def test_imagenet_preset_shapes():
    preset = pipeline("imagenet")
    image = torch.randint(0, 256, (3, 300, 450), dtype=torch.uint8)
    assert preset.train(image).shape == (3, 224, 224)
    assert preset.eval("center")(image).shape == (3, 224, 224)
    assert preset.eval("10crop")(image).shape == (3, 256, 384)  # shorter side 256
    whole = preset.eval("multiscale")(image)
    assert whole.shape == (3, 300, 450)
    expected = image[:, 0, 0] / 255 - torch.tensor([0.485, 0.456, 0.406])
    assert torch.allclose(whole[:, 0, 0], expected, atol=1e-6)


def test_imagenet_views_subtract_the_mean_and_train_adds_a_colour_shift():
    colour = torch.tensor([200, 90, 30], dtype=torch.uint8)
    image = colour.view(3, 1, 1).expand(3, 300, 450).clone()  # one colour: crops cannot change it
    centred = (colour / 255 - torch.tensor([0.485, 0.456, 0.406])).view(3, 1, 1)
    preset = pipeline("imagenet")
    for protocol in ("center", "10crop", "multiscale"):
        view = preset.eval(protocol)(image)
        assert torch.allclose(view, centred.expand_as(view), atol=1e-5), protocol
    torch.manual_seed(0)
    shift = preset.train(image) - centred  # the PCA lighting: one offset per channel (Sec. 3.4)
    assert torch.allclose(shift, shift[:, :1, :1].expand_as(shift), atol=1e-5)
    assert shift[:, 0, 0].abs().max() > 1e-4


def test_random_shorter_side_covers_256_to_480():
    resize = RandomShorterSide(256, 480)
    torch.manual_seed(0)
    sides = torch.tensor([resize.sample_side() for _ in range(3000)])
    assert sides.min() == 256 and sides.max() == 480 and len(sides.unique()) == 225
    torch.manual_seed(5)
    side = resize.sample_side()
    torch.manual_seed(5)
    assert resize(torch.zeros(1, 10, 20)).shape == (1, side, 2 * side)
    torch.manual_seed(5)
    assert resize(torch.zeros(1, 30, 10)).shape == (1, 3 * side, side)  # portrait: the width


def test_lighting_adds_the_pca_colour_shift():
    torch.manual_seed(1)
    alpha = torch.randn(3) * 0.1
    expected = torch.tensor(PCA_EIGVEC) @ (alpha * torch.tensor(PCA_EIGVAL))
    torch.manual_seed(1)
    out = Lighting()(torch.zeros(3, 4, 5))
    assert torch.allclose(out, expected.view(3, 1, 1).expand(3, 4, 5))
    assert torch.equal(Lighting(std=0.0)(torch.ones(3, 2, 2)), torch.ones(3, 2, 2))


def test_dataset_transform_randomness_comes_from_seed_epoch_index():
    images = torch.randint(0, 256, (5, 3, 32, 32), dtype=torch.uint8)
    data = ArrayData(images, torch.arange(5), ["x"] * 5, "toy", "train")
    dataset = ArrayDataset(data, transform=pipeline("cifar").train, seed=3)
    forward = [dataset[i][0] for i in range(5)]
    backward = [dataset[i][0] for i in reversed(range(5))][::-1]
    assert all(torch.equal(a, b) for a, b in zip(forward, backward, strict=True))
    dataset.set_epoch(1)
    assert any(not torch.equal(dataset[i][0], forward[i]) for i in range(5))
    state = torch.random.get_rng_state()
    dataset[0]
    assert torch.equal(torch.random.get_rng_state(), state)  # the global generator is untouched
