"""The course notes' case-study nets (PAPER.md Sec. 7): sizes, torchvision interchange, options."""

import pytest
import torch
import torchvision

import reslab
from reslab.errors import ReslabError
from reslab.models.classic import TorchvisionGoogLeNet, output_size


def _params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def _meta_model(name, **options):
    with torch.device("meta"):
        return reslab.create_model(name, **options)


@pytest.mark.parametrize(
    "name, expected",
    [
        ("lenet5", 61_706),  # C1 156 + C3 2,416 + C5 48,120 + F6 10,164 + output 850
        ("alexnet", 62_378_344),  # the notes' "60M": single tower, no grouped convolutions
        ("zfnet", 107_627_624),
        ("vgg16", 138_357_544),  # the notes' "138M"
        ("vgg19", 143_667_240),
        ("googlenet", 6_624_904),  # torchvision's, without auxiliary classifiers
    ],
)
def test_parameter_counts(name, expected):
    assert _params(_meta_model(name)) == expected


@pytest.mark.parametrize(
    "name, shapes",
    [
        # conv1 55 -> pool 27 -> conv2 27 -> pool 13 -> conv3-5 13 -> pool 6 (the notes' table)
        ("alexnet", [(96, 55), (96, 27), (256, 27), (256, 13), (384, 13), (384, 13), (256, 13),
                     (256, 6)]),
        # Zeiler & Fergus Fig. 3: 110 -> 55 -> 26 -> 13 -> 13 -> 13 -> 13 -> 6
        ("zfnet", [(96, 110), (96, 55), (256, 26), (256, 13), (512, 13), (1024, 13), (512, 13),
                   (512, 6)]),
        # C1 28 -> S2 14 -> C3 10 -> S4 5 -> C5 1
        ("lenet5", [(6, 28), (6, 14), (16, 10), (16, 5), (120, 1)]),
    ],
)
def test_trunk_output_sizes(name, shapes):
    model, info = _meta_model(name), reslab.model_info(name)
    x = torch.zeros(1, info.in_channels, *info.input_size, device="meta")
    seen = []
    for layer in model.features:
        x = layer(x)
        if isinstance(layer, (torch.nn.Conv2d, torch.nn.MaxPool2d)):
            seen.append((x.shape[1], x.shape[2]))
    assert seen == shapes


def test_lenet5_forward_on_cpu():
    torch.manual_seed(0)
    model = reslab.create_model("lenet5")
    out = model(torch.randn(4, 1, 32, 32))  # LeNet-5 reads 32x32 grey images
    assert out.shape == (4, 10)
    assert model.forward_head(model.forward_features(torch.zeros(2, 1, 32, 32)),
                              pre_logits=True).shape == (2, 84)


@pytest.mark.parametrize("name", ["vgg16", "googlenet"])
def test_torchvision_state_dicts_load(name):
    with torch.device("meta"):
        theirs = {"vgg16": torchvision.models.vgg16,
                  "googlenet": lambda: torchvision.models.googlenet(aux_logits=False,
                                                                    init_weights=True)}[name]()
    ours = _meta_model(name)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    assert {k: v.shape for k, v in ours.state_dict().items()} == {
        k: v.shape for k, v in theirs.state_dict().items()
    }


def test_googlenet_same_logits_as_torchvision():
    torch.manual_seed(0)
    model = reslab.create_model("googlenet").eval()
    # torchvision's init (N(0, 0.01) convolutions, identity BN) shrinks the features to ~1e-11,
    # so the logits would be the fc bias whatever the trunk did: give the layers O(1) outputs.
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            elif isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0.0, 0.2)
                m.running_mean.normal_(0.0, 0.2)
                m.running_var.uniform_(0.5, 2.0)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():  # our forward_features/forward_head against torchvision's forward
        features = model.forward_head(model.forward_features(x), pre_logits=True)
        assert features.shape == (2, 1024) and features.std() > 0.1
        expected = TorchvisionGoogLeNet.forward(model, x)
        assert (expected - model.fc.bias).std() > 0.1  # the logits depend on the image
        torch.testing.assert_close(model(x), expected, rtol=1e-5, atol=1e-5 * expected.abs().max())


@pytest.mark.parametrize("name", ["vgg16", "googlenet", "alexnet"])
def test_in_channels_rebuilds_first_conv(name):
    model = _meta_model(name, in_channels=1, num_classes=7)
    first = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert first.in_channels == 1
    size = reslab.model_info(name).input_size
    assert model(torch.zeros(2, 1, *size, device="meta")).shape == (2, 7)


@pytest.mark.parametrize("options", [{"num_classes": 0}, {"in_channels": -1},
                                     {"num_classes": 2.5}])
def test_bad_options_raise(options):
    with pytest.raises(ReslabError, match="must be a positive integer"):
        _meta_model("alexnet", **options)


def test_reset_classifier_rejects_zero_classes():
    with pytest.raises(ReslabError, match="num_classes"):
        _meta_model("vgg16").reset_classifier(0)


def test_output_size_is_the_course_formula():
    assert output_size(227, 11, 4) == 55  # AlexNet conv1
    assert output_size(7, 3, 1, 1) == 7  # "same" 3x3 convolution
    assert output_size(110, 3, 2, ceil=True) == 55  # ZFNet's ceil-mode pool


def test_output_size_matches_torch_and_rejects_a_window_that_does_not_fit():
    # PyTorch's ceil mode drops a last window that would start in the right padding.
    for size, kernel, stride, padding in [(4, 1, 2, 0), (5, 1, 2, 0), (6, 2, 2, 1), (7, 3, 2, 1),
                                          (110, 3, 2, 0), (26, 3, 2, 0), (9, 2, 3, 1)]:
        pool = torch.nn.MaxPool2d(kernel, stride, padding, ceil_mode=True)
        expected = pool(torch.zeros(1, 1, size, size)).shape[-1]
        assert output_size(size, kernel, stride, padding, ceil=True) == expected
    with pytest.raises(ReslabError, match=r"5x5 window does not fit a 4x4 input \(padding 0\)"):
        output_size(4, 5)  # LeNet-5's C5 on 28x28 digits: (4 - 5 + 0) / 1 + 1 = 0
    with pytest.raises(ReslabError, match="does not fit"):
        output_size(3, 11, 4, 2, ceil=True)
    assert output_size(5, 5) == 1 and output_size(3, 5, padding=1) == 1


def test_alexnet_local_response_norm_is_the_papers_formula():
    """Krizhevsky et al. Sec. 3.3: b = a / (k + alpha * sum of a^2 over the n = 5 channels
    centred on it)^beta with k = 2, alpha = 1e-4, beta = 0.75 (no division by n)."""
    norm = reslab.create_model("alexnet").features.norm1
    a = torch.randn(1, 7, 2, 2) * 30
    squares = torch.nn.functional.pad(a.pow(2), (0, 0, 0, 0, 2, 2))  # channel padding
    window = sum(squares[:, c:c + 7] for c in range(5))  # [1, 7, 2, 2], channels c-2..c+2
    torch.testing.assert_close(norm(a), a / (2 + 1e-4 * window).pow(0.75))
