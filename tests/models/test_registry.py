"""Registry-wide tests, as torchvision's and timm's model tests: every model builds, runs forward
and backward, and has the right output shape."""

import pytest
import torch

import reslab
from reslab.errors import ReslabError
from reslab.models.fuse import fold_batchnorm

SLOW = {"resnet1202", "resnet152", "plain152", "vgg19"}
# Nets with global pooling run at any size: a 64x64 input checks them at a fraction of the cost
# of 224x224 (the stage-size tests use 224). AlexNet, ZFNet and LeNet-5 need their own size.
FULLY_CONVOLUTIONAL = {"vgg16", "vgg19", "googlenet"}


def small_input(info) -> tuple[int, int]:
    if info.family == "imagenet" or info.name in FULLY_CONVOLUTIONAL:
        return (64, 64)
    return info.input_size


def _params(model) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in reslab.list_models()],
)
def test_every_model_forward_backward(name):
    torch.manual_seed(0)
    info = reslab.model_info(name)
    model = reslab.create_model(name, num_classes=7)
    h, w = small_input(info)
    x = torch.randn(2, info.in_channels, h, w)
    out = model(x)
    assert out.shape == (2, 7)
    assert torch.isfinite(out).all()
    out.sum().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)
    assert model.default_input_size == info.input_size
    assert model.paper_ref == info.source


@pytest.mark.parametrize("name", [n for n in reslab.list_models() if n not in SLOW])
def test_every_model_heads_and_reset(name):
    info = reslab.model_info(name)
    model = reslab.create_model(name, num_classes=5, in_channels=1).eval()
    h, w = small_input(info)
    x = torch.randn(1, 1, h, w)
    with torch.no_grad():
        feats = model.forward_features(x)
        assert torch.equal(model.forward_head(feats), model(x))
        pooled = model.forward_head(feats, pre_logits=True)
        assert pooled.shape == (1, model.num_features)
        model.reset_classifier(3)
        assert model(x).shape == (1, 3)


@pytest.mark.parametrize("name", ["resnet20", "lenet5", "vgg16"])
def test_reset_classifier_keeps_dtype(name):
    model = reslab.create_model(name).double().eval()
    model.reset_classifier(3)
    info = reslab.model_info(name)
    x = torch.randn(1, info.in_channels, *small_input(info), dtype=torch.float64)
    with torch.no_grad():
        assert model(x).dtype == torch.float64


@pytest.mark.parametrize("name", ["resnet20", "plain20", "resnet50"])
def test_resnet_fc_swapped_for_identity(name):
    """The usual feature-extraction pattern: ``fc = Identity()`` keeps num_features, and
    reset_classifier puts a fresh fc back."""
    model = reslab.create_model(name)
    width = model.num_features
    model.fc = torch.nn.Identity()
    assert model.num_features == width
    model.reset_classifier(4)
    assert (model.fc.in_features, model.fc.out_features) == (width, 4)


@pytest.mark.parametrize("name", [n for n in reslab.list_models() if n not in SLOW])
def test_every_model_folds_for_inference(name):
    """Evaluation runs every net with BN folded (reslab.eval, the trainer's val/test passes)."""
    torch.manual_seed(0)
    info = reslab.model_info(name)
    model = reslab.create_model(name, num_classes=5).eval()
    for m in model.modules():  # statistics that are not the identity
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    x = torch.randn(2, info.in_channels, *small_input(info))
    folded = fold_batchnorm(model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    with torch.no_grad():
        expected = model(x)
        torch.testing.assert_close(folded(x), expected, rtol=1e-4,
                                   atol=1e-4 * max(1.0, expected.abs().max().item()))


def test_list_models_patterns():
    names = reslab.list_models()
    for n in ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
              "plain18", "plain34", "plain50", "plain101", "plain152",
              "resnet20", "resnet32", "resnet44", "resnet56", "resnet110", "resnet1202",
              "plain20", "plain32", "plain44", "plain56", "plain110"):
        assert n in names
    assert reslab.list_models("plain*") == [n for n in names if n.startswith("plain")]
    assert set(reslab.list_models(family="cifar")) >= {"resnet20", "plain56", "cifar_resnet"}
    assert "resnet20" not in reslab.list_models(family="imagenet")


def test_any_cifar_depth_by_name():
    model = reslab.create_model("resnet8")
    assert [len(getattr(model, f"layer{i}")) for i in (1, 2, 3)] == [1, 1, 1]
    model = reslab.create_model("plain14")
    assert model.layer1[0].downsample is None
    model = reslab.create_model("cifar_resnet", depth=50)  # resnet50 is the ImageNet net
    assert model.num_features == 64 and len(model.layer1) == 8
    # A depth outside Table 6 / Fig. 6 cites Sec. 4.2's rule, not the table.
    assert reslab.model_info("resnet8").source == "Sec. 4.2, 6n+2 with n=1"
    assert reslab.model_info("plain14").source == "Sec. 4.2 (plain), 6n+2 with n=2"
    assert reslab.model_info("resnet56").source == "Sec. 4.2, Table 6"


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: reslab.create_model("resnet21x"), "unknown model 'resnet21x'"),
        (lambda: reslab.create_model("resnet21"), "6n+2"),
        (lambda: reslab.create_model("resnet020"), "unknown model 'resnet020'; did you mean resnet20"),
        (lambda: reslab.create_model("resnet018"), "unknown model 'resnet018'; did you mean resnet18"),
        (lambda: reslab.create_model("cifar_resnet", depth=22), "6n+2"),
        (lambda: reslab.create_model("resnet20", shortcut="D"), "shortcut option 'D'; choose from: A, B, C"),
        (lambda: reslab.create_model("resnet50", variant="v2"), "variant 'v2'"),
        (lambda: reslab.create_model("resnet20", num_classes=0), "num_classes must be a positive integer"),
        (lambda: reslab.create_model("resnet20", in_channels=-1), "in_channels"),
        (lambda: reslab.create_model("resnet20", depth=32), "fixes depth"),
        (lambda: reslab.create_model("plain34", shortcut="A"), "no option 'shortcut'"),
        (lambda: reslab.create_model("resnet20", widht=3), "no option 'widht'"),
        (lambda: reslab.create_model("resnet20", residual="no"), "residual must be True or False"),
        (lambda: reslab.create_model("resnet50", zero_init_residual="false"),
         "zero_init_residual must be True or False, got 'false'"),
        (lambda: reslab.list_models(family="imagenet1k"),
         "unknown model family 'imagenet1k'; choose from: cifar, classic, imagenet"),
        (lambda: reslab.list_models(20), "pattern must be a string"),
        (lambda: reslab.create_model(None), "model name must be a string"),
        (lambda: reslab.create_model(20), "model name must be a string"),
        (lambda: reslab.model_info(["resnet20"]), "model name must be a string"),
    ],
)
def test_bad_options_raise_value_error(call, message):
    with pytest.raises(ValueError) as excinfo:
        call()
    assert isinstance(excinfo.value, ReslabError)
    assert message in str(excinfo.value)


def test_unknown_model_suggests_close_names():
    with pytest.raises(ReslabError, match="did you mean .*resnet20"):
        reslab.create_model("resnet2O")
