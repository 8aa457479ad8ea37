"""The test protocols of Sec. 3.4 on a tiny fully-convolutional model and torchvision's
ResNet-18."""

import inspect

import pytest
import torch
import torchvision
from torch import nn
from torchvision.transforms.v2 import functional as TF

from reslab.eval.protocols import predict_multiscale, predict_ten_crop


class TinyNet(nn.Module):
    """conv + BN + ReLU trunk, global average pool + fc head."""

    def __init__(self, classes: int = 5) -> None:
        super().__init__()
        self.trunk = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.fc = nn.Linear(8, classes)

    def forward_features(self, x):
        return self.trunk(x)

    def forward_head(self, x):
        return self.fc(x.mean((2, 3)))

    def forward(self, x):
        return self.forward_head(self.forward_features(x))


class WrappedResNet18(nn.Module):
    """torchvision's resnet18 with the forward_features / forward_head split."""

    def __init__(self) -> None:
        super().__init__()
        self.net = torchvision.models.resnet18(num_classes=10)

    def forward_features(self, x):
        n = self.net
        x = n.maxpool(n.relu(n.bn1(n.conv1(x))))
        return n.layer4(n.layer3(n.layer2(n.layer1(x))))

    def forward_head(self, x):
        return self.net.fc(torch.flatten(self.net.avgpool(x), 1))

    def forward(self, x):
        return self.forward_head(self.forward_features(x))


@pytest.fixture
def tiny():
    torch.manual_seed(0)
    return TinyNet().eval()


def test_ten_crop_averages_corners_center_and_flips(tiny):
    images = torch.randn(2, 3, 9, 11)
    c = 6
    crops = [images[..., :c, :c], images[..., :c, -c:], images[..., -c:, :c], images[..., -c:, -c:],
             images[..., 2:8, 2:8]]  # center offsets round(1.5) = round(2.5) = 2  # fmt: skip
    crops += [crop.flip(-1) for crop in crops]  # the same five crops, mirrored
    expected = torch.stack([tiny(crop).softmax(1) for crop in crops]).mean(0)
    assert torch.allclose(predict_ten_crop(tiny, images, crop=c), expected, atol=1e-6)
    # A list of differently sized images is run one by one.
    listed = predict_ten_crop(tiny, [images[0], images[1, :, :8, :10]], crop=c)
    assert torch.allclose(listed[0], expected[0], atol=1e-6) and listed.shape == (2, 5)


def test_multiscale_averages_position_scores_and_scales(tiny):
    image = torch.randn(1, 3, 10, 15)
    scores = predict_multiscale(tiny, image, scales=(6, 12))
    expected = []
    for side in (6, 12):
        features = tiny.forward_features(TF.resize(image, [side], antialias=True))
        assert features.shape[2] == side  # the shorter side is resized, the aspect ratio kept
        # The fc applied at every position (class-score map), averaged over positions.
        score_map = torch.einsum("kc,nchw->nkhw", tiny.fc.weight, features)
        score_map = score_map + tiny.fc.bias[:, None, None]
        expected.append(score_map.mean((2, 3)).softmax(1))
    assert torch.allclose(scores, torch.stack(expected).mean(0), atol=1e-6)
    flipped = predict_multiscale(tiny, image, scales=(6,), flip=True)
    both = [tiny(TF.resize(v, [6], antialias=True)).softmax(1) for v in (image, image.flip(-1))]
    assert torch.allclose(flipped, torch.stack(both).mean(0), atol=1e-6)


def test_protocols_on_resnet18():
    torch.manual_seed(0)
    model = WrappedResNet18().eval()
    images = [torch.randn(3, 40, 56), torch.randn(3, 48, 40)]  # whole images, two sizes
    multi = predict_multiscale(model, images, scales=(32,))
    assert multi.shape == (2, 10) and torch.allclose(multi.sum(1), torch.ones(2))
    for scores, image in zip(multi, images, strict=True):
        x = TF.resize(image[None], [32], antialias=True)
        assert min(x.shape[2:]) == 32
        assert torch.allclose(scores, model(x).softmax(1)[0], atol=1e-5)
    ten = predict_ten_crop(model, images[0][None], crop=32)
    assert ten.shape == (1, 10) and torch.allclose(ten.sum(1), torch.ones(1))


def test_default_multiscale_sizes_are_the_papers():
    scales = inspect.signature(predict_multiscale).parameters["scales"].default
    assert scales == (224, 256, 384, 480, 640)
