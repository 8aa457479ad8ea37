"""The paper's nets, checked against Table 1, Sec. 4.2 and Table 6, and against torchvision."""

import math

import pytest
import torch
import torchvision
from torch import nn

import reslab
from reslab.models import stage_outputs
from reslab.models.blocks import Bottleneck, ZeroPadShortcut


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


CIFAR_PARAMS = {  # option A, 10 classes (Table 6: 0.27M, 0.46M, 0.66M, 0.85M, 1.7M, 19.4M)
    "resnet20": 269_722, "resnet32": 464_154, "resnet44": 658_586,
    "resnet56": 853_018, "resnet110": 1_727_962, "resnet1202": 19_421_274,
}
IMAGENET_PARAMS = {  # as torchvision's
    "resnet18": 11_689_512, "resnet34": 21_797_672, "resnet50": 25_557_032,
    "resnet101": 44_549_160, "resnet152": 60_192_808,
}


@pytest.mark.parametrize(("name", "expected"), CIFAR_PARAMS.items())
def test_cifar_params_table6(name, expected):
    assert n_params(reslab.create_model(name)) == expected
    plain = name.replace("resnet", "plain")
    if plain in reslab.list_models():
        assert n_params(reslab.create_model(plain)) == expected  # option A adds no parameter


@pytest.mark.parametrize(("name", "expected"), IMAGENET_PARAMS.items())
def test_imagenet_params_match_torchvision(name, expected):
    for variant in ("v1", "v1.5"):
        assert n_params(reslab.create_model(name, variant=variant)) == expected


def test_shortcut_options_parameters():
    # ResNet-34: 3 stages change dimensions; option B projects there, C everywhere (16 blocks).
    a = reslab.create_model("resnet34", shortcut="A")
    b = reslab.create_model("resnet34", shortcut="B")
    c = reslab.create_model("resnet34", shortcut="C")
    plain = reslab.create_model("plain34")
    assert n_params(a) == n_params(plain)
    proj_b = sum(64 * 128 + 2 * 128 for _ in [0]) + 128 * 256 + 2 * 256 + 256 * 512 + 2 * 512
    assert n_params(b) - n_params(a) == proj_b
    # C: a projection (1x1 conv + BN) on each of the 16 blocks, (in, out) channels per Table 1
    widths = ([(64, 64)] * 3 + [(64, 128)] + [(128, 128)] * 3 + [(128, 256)] + [(256, 256)] * 5
              + [(256, 512)] + [(512, 512)] * 2)
    assert n_params(c) - n_params(a) == sum(cin * cout + 2 * cout for cin, cout in widths)
    blocks = [blk for name in ("layer1", "layer2", "layer3", "layer4") for blk in getattr(c, name)]
    assert len(blocks) == 16
    assert all(isinstance(blk.downsample, nn.Sequential) for blk in blocks)
    kinds_a = [type(blk.downsample).__name__ for blk in a.layer2]
    assert kinds_a == ["ZeroPadShortcut", "Identity", "Identity", "Identity"]
    assert all(blk.downsample is None for blk in plain.layer2)


def test_zero_pad_shortcut_option_a():
    shortcut = ZeroPadShortcut(16, 32, stride=2)
    x = torch.arange(2 * 16 * 4 * 4, dtype=torch.float32).reshape(2, 16, 4, 4)
    y = shortcut(x)
    assert y.shape == (2, 32, 2, 2)
    assert torch.equal(y[:, :16], x[:, :, ::2, ::2])  # every other pixel
    assert torch.count_nonzero(y[:, 16:]) == 0  # zero entries for the extra channels
    assert not list(shortcut.parameters())


def test_bottleneck_stride_variants():
    v1 = reslab.create_model("resnet50", variant="v1")
    v15 = reslab.create_model("resnet50", variant="v1.5")
    first = v1.layer2[0]
    assert isinstance(first, Bottleneck)
    assert first.conv1.stride == (2, 2) and first.conv2.stride == (1, 1)  # Caffe: on the 1x1
    assert v15.layer2[0].conv1.stride == (1, 1) and v15.layer2[0].conv2.stride == (2, 2)


def randomize_batchnorm(model: nn.Module) -> None:
    """Give every BN its own scale, shift and running statistics, as trained weights have.

    A freshly built torchvision net's BN layers are all the identity in eval mode (gamma 1,
    beta 0, mean 0, var 1), so a BN applied after the ReLU instead of before it, or the wrong
    BN of a block, would give the same outputs.
    """
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0.0, 0.2)
                m.running_mean.normal_(0.0, 0.2)
                m.running_var.uniform_(0.5, 2.0)


@pytest.mark.parametrize("depth", [18, 34, 50, 101, 152])
def test_torchvision_interchange(depth):
    torch.manual_seed(depth)
    tv = getattr(torchvision.models, f"resnet{depth}")().eval()
    randomize_batchnorm(tv)
    ours = reslab.create_model(f"resnet{depth}", variant="v1.5").eval()
    ours.load_state_dict(tv.state_dict(), strict=True)
    assert list(ours.state_dict()) == list(tv.state_dict())
    x = torch.randn(2, 3, 64, 64) if depth >= 101 else torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        expected = tv(x)
        assert expected.std() > 0.1  # not a degenerate (all but constant) output
        torch.testing.assert_close(ours(x), expected, rtol=1e-5, atol=1e-5 * expected.abs().max())


@pytest.mark.parametrize(
    ("name", "size", "expected"),
    [
        ("resnet18", 224, {"conv1": (64, 112), "conv2_x": (64, 56), "conv3_x": (128, 28),
                           "conv4_x": (256, 14), "conv5_x": (512, 7)}),
        ("resnet50", 224, {"conv1": (64, 112), "conv2_x": (256, 56), "conv3_x": (512, 28),
                           "conv4_x": (1024, 14), "conv5_x": (2048, 7)}),
        ("resnet20", 32, {"conv1": (16, 32), "conv2_x": (16, 32), "conv3_x": (32, 16),
                          "conv4_x": (64, 8)}),
        ("plain20", 32, {"conv1": (16, 32), "conv2_x": (16, 32), "conv3_x": (32, 16),
                         "conv4_x": (64, 8)}),
    ],
)
def test_stage_outputs_table1(name, size, expected):
    model = reslab.create_model(name).eval()
    with torch.no_grad():
        outs = stage_outputs(model, torch.randn(1, 3, size, size))
    assert {k: (v.shape[1], v.shape[2]) for k, v in outs.items()} == expected
    assert [f["name"] for f in model.feature_info] == list(expected)
    assert [f["num_chs"] for f in model.feature_info] == [c for c, _ in expected.values()]
    assert [size // f["reduction"] for f in model.feature_info] == [s for _, s in expected.values()]


def test_default_input_and_paper_reference():
    assert reslab.create_model("resnet50").default_input_size == (224, 224)
    assert reslab.create_model("resnet50").paper_ref == "Table 1"
    assert reslab.create_model("resnet110").default_input_size == (32, 32)
    assert "Sec. 4.2" in reslab.create_model("resnet110").paper_ref


def test_he_init_and_batchnorm():
    torch.manual_seed(0)
    model = reslab.create_model("resnet56")
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(convs) == len(bns) == 55  # BN right after every conv
    conv = model.layer3[4].conv2  # 64 filters of 3x3: fan_out 576
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / 576), rel=0.05)
    assert all(torch.equal(b.weight, torch.ones_like(b.weight)) for b in bns)
    assert all(c.bias is None for c in convs)


def test_zero_init_residual():
    model = reslab.create_model("resnet50", zero_init_residual=True)
    assert all(torch.count_nonzero(b.bn3.weight) == 0 for b in model.layer3)
    assert torch.count_nonzero(model.layer3[0].bn2.weight) > 0
    default = reslab.create_model("resnet50")
    assert torch.count_nonzero(default.layer3[0].bn3.weight) > 0  # off by default, as the paper
    # a zero-initialised residual block is the identity on its (non-negative) input
    model = reslab.create_model("resnet20", zero_init_residual=True).eval()
    x = torch.relu(torch.randn(1, 16, 8, 8))
    with torch.no_grad():
        assert torch.allclose(model.layer1[0](x), x)


def test_plain_net_has_no_shortcut_and_differs():
    torch.manual_seed(0)
    res = reslab.create_model("resnet20").eval()
    plain = reslab.create_model("plain20").eval()
    plain.load_state_dict(res.state_dict())  # same parameters, option A
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert not torch.allclose(res(x), plain(x))
        # block by block: the plain block is F(x) alone, the residual one F(x) + x (Eq. 1)
        for stage in ("layer1", "layer2"):  # layer2[0] changes dimensions, the others do not
            for res_block, plain_block in zip(getattr(res, stage), getattr(plain, stage)):
                h = torch.randn(2, res_block.conv1.in_channels, 16, 16)
                branch = plain_block.bn2(plain_block.conv2(
                    torch.relu(plain_block.bn1(plain_block.conv1(h)))))
                torch.testing.assert_close(plain_block(h), torch.relu(branch))
                torch.testing.assert_close(res_block(h),
                                           torch.relu(branch + res_block.downsample(h)))
                if res_block.conv1.stride == (1, 1):
                    torch.testing.assert_close(res_block.downsample(h), h)


def test_in_channels_for_grayscale():
    model = reslab.create_model("resnet20", in_channels=1, num_classes=10)
    assert model.conv1.weight.shape == (16, 1, 3, 3)
    assert model(torch.randn(3, 1, 28, 28)).shape == (3, 10)
