"""Fig. 7 layer responses: which layers count and the std over a data set."""

import torch

import reslab
from reslab.analysis.responses import response_layers, response_stds


def test_response_layers_are_the_3x3_bns():
    model = reslab.create_model("resnet8", num_classes=10, in_channels=1, shortcut="B")
    names = list(response_layers(model))
    assert names == ["conv1", "layer1.0.conv1", "layer1.0.conv2", "layer2.0.conv1",
                     "layer2.0.conv2", "layer3.0.conv1", "layer3.0.conv2"]
    bottleneck = reslab.create_model("resnet50", num_classes=10)
    layers = response_layers(bottleneck)
    assert len(layers) == 16 and all(n.endswith("conv2") for n in layers)  # the 7x7 stem is not 3x3


def test_response_std_over_batches_matches_direct_computation():
    torch.manual_seed(0)
    model = reslab.create_model("plain8", num_classes=10, in_channels=1).eval()
    x = torch.randn(12, 1, 28, 28)
    stds = response_stds(model, [x[:5], x[5:]])  # accumulated over two batches
    captured = {}

    def capture(module, inputs, output):  # before the in-place ReLU changes it
        captured["y"] = output.clone()

    model.layer2[0].bn2.register_forward_hook(capture)
    with torch.no_grad():
        model(x)
    expected = captured["y"].std(correction=0).item()
    assert abs(stds["layer2.0.conv2"] - expected) < 1e-5 * max(1.0, expected)
    assert len(stds) == 7 and all(v > 0 for v in stds.values())
    assert all(not m._forward_hooks for m in model.modules() if m is not model.layer2[0].bn2)
