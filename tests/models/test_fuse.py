"""BN folded into the convolutions: the same outputs, no BN left, the original untouched."""

import pytest
import torch
import torchvision
from torch import nn

import reslab
from reslab.models.fuse import fold_batchnorm


def with_trained_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BN non-trivial statistics and affine parameters (fresh ones are identities)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.running_mean.copy_(torch.randn(c, generator=generator) * 0.5)
                m.running_var.copy_(torch.rand(c, generator=generator) * 2 + 0.1)
                m.weight.copy_(torch.randn(c, generator=generator))
                m.bias.copy_(torch.randn(c, generator=generator))
    return model.eval()


def assert_same_outputs(actual: torch.Tensor, expected: torch.Tensor) -> None:
    """Equal up to float rounding, relative to the outputs' scale (random BN statistics make
    deep nets' logits large)."""
    scale = expected.abs().max().item()
    torch.testing.assert_close(actual, expected, rtol=0, atol=1e-5 * max(scale, 1.0))


def count(model: nn.Module, kind: type[nn.Module]) -> int:
    return sum(isinstance(m, kind) for m in model.modules())


@pytest.mark.parametrize(("name", "options", "size"), [
    ("resnet20", {}, 32),                       # option A shortcuts (Sec. 4.2)
    ("resnet8", {"shortcut": "B"}, 16),         # projection shortcuts with their own BN
    ("plain8", {}, 16),
    ("resnet50", {"variant": "v1"}, 32),        # the paper's bottleneck
    ("resnet18", {"in_channels": 1}, 32),
])  # fmt: skip
def test_folded_outputs_match(name, options, size):
    torch.manual_seed(0)
    model = with_trained_bn(reslab.create_model(name, **options))
    x = torch.randn(2, model.conv1.in_channels, size, size)
    folded = fold_batchnorm(model)
    assert count(model, nn.BatchNorm2d) > 0 and count(folded, nn.BatchNorm2d) == 0
    with torch.no_grad():
        expected, actual = model(x), folded(x)
    assert_same_outputs(actual, expected)
    assert folded.model_name == name and not folded.training


def test_torchvision_model_and_channels_last():
    torch.manual_seed(0)
    model = with_trained_bn(torchvision.models.resnet18(num_classes=7))
    folded = fold_batchnorm(model).to(memory_format=torch.channels_last)
    x = torch.randn(2, 3, 48, 48)
    with torch.inference_mode():
        assert_same_outputs(folded(x.contiguous(memory_format=torch.channels_last)), model(x))
    assert count(folded, nn.BatchNorm2d) == 0


def test_original_untouched_and_unfoldable_bn_kept():
    shared = nn.Conv2d(3, 4, 3, padding=1)
    model = nn.Sequential()
    model.conv = shared
    model.relu = nn.ReLU()
    model.bn = nn.BatchNorm2d(4)  # after a ReLU: not foldable into the conv
    with_trained_bn(model).train()
    folded = fold_batchnorm(model)
    assert model.training and count(model, nn.BatchNorm2d) == 1  # the original is unchanged
    assert count(folded, nn.BatchNorm2d) == 1 and not folded.training
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model.eval()(x))


class ConvBN(nn.Module):
    """A 1x1 conv and a BN, wired by ``wiring(conv, bn, x)``."""

    def __init__(self, wiring):
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 1)
        self.bn = nn.BatchNorm2d(2)
        self.wiring = wiring

    def forward(self, x):
        return self.wiring(self.conv, self.bn, x)


def _bn_plus_raw(conv, bn, x):
    y = conv(x)
    return bn(y) + y  # the raw conv output is needed too


def _two_call_sites(conv, bn, x):
    return bn(conv(x)) + bn(conv(x * 2))  # one conv and one BN, each called twice


@pytest.mark.parametrize("wiring", [_bn_plus_raw, _two_call_sites])
def test_conv_bn_pairs_that_cannot_fold_are_kept(wiring):
    model = with_trained_bn(ConvBN(wiring))
    folded = fold_batchnorm(model)
    assert count(folded, nn.BatchNorm2d) == 1
    x = torch.randn(1, 2, 4, 4)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x))


def test_folded_copy_keeps_the_model_interface():
    model = with_trained_bn(reslab.create_model("resnet8", num_classes=3))
    folded = fold_batchnorm(model)
    assert type(folded) is type(model)
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert_same_outputs(folded.forward_head(folded.forward_features(x)), model(x))


def test_bn_subclass_with_control_flow_is_traced_whole_and_folded():
    class BranchingBN(nn.BatchNorm2d):  # like reslab.train.distributed.CPUSyncBatchNorm
        def forward(self, x):
            if self.training and x.shape[0] > 1:
                return super().forward(x)
            return super().forward(x)

    model = with_trained_bn(nn.Sequential(nn.Conv2d(2, 3, 3), BranchingBN(3), nn.ReLU()))
    folded = fold_batchnorm(model)
    assert count(folded, nn.BatchNorm2d) == 0
    x = torch.randn(2, 2, 6, 6)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x))
