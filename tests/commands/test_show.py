"""``reslab show filters`` draws the first layer: found by the model's module order, not by
the order a file happens to store its tensors in."""

import random

import pytest
import torch
import torchvision

import reslab
from reslab.commands.show import first_conv_weight
from reslab.errors import ReslabError
from reslab.train.checkpoint import read_weights
from tests.checkpoint_fixtures import write_checkpoint


@pytest.mark.parametrize("model", ["resnet8", "resnet18", "alexnet", "googlenet"])
def test_the_first_layer_of_a_reslab_checkpoint(model, tmp_path):
    path = write_checkpoint(tmp_path / "w.safetensors", model=model, in_channels=3,
                            size=224 if model != "resnet8" else 32)
    state, meta = read_weights(path)
    net = reslab.create_model(model, num_classes=3)
    first = next(name for name, m in net.named_modules() if isinstance(m, torch.nn.Conv2d))
    keys = list(state)
    for seed in range(3):  # whatever order the tensors come in
        random.Random(seed).shuffle(keys)
        key, weight = first_conv_weight({k: state[k] for k in keys}, meta, source=str(path),
                                        ordered=False)
        assert key == f"{first}.weight"
        assert weight.shape[1] == 3 and torch.equal(weight, state[key])


def test_a_reslab_checkpoint_is_read_by_its_model_not_by_a_rule(tmp_path):
    """A 1-channel kernel that is not a module of the recorded model, stored first, would win
    under the foreign-file rule: the model's module order ignores it."""
    state, meta = read_weights(write_checkpoint(tmp_path / "w.safetensors", model="resnet8"))
    decoy = {"a_decoy.weight": torch.zeros(4, 1, 3, 3), **state}
    assert first_conv_weight(decoy, {}, source="x")[0] == "a_decoy.weight"
    assert first_conv_weight(decoy, meta, source="x")[0] == "conv1.weight"


@pytest.mark.parametrize("ordered", [True, False])
@pytest.mark.parametrize(("build", "stem"), [
    (lambda: reslab.create_model("resnet18", variant="v1.5"), "conv1.weight"),
    (lambda: torchvision.models.mobilenet_v2(), "features.0.0.weight"),  # depthwise convs later
    (lambda: torchvision.models.googlenet(aux_logits=True, init_weights=False),
     "conv1.conv.weight"),  # aux1 sorts before conv1
])
def test_a_foreign_state_dict_takes_the_first_kernel_that_sees_the_image(build, stem, ordered):
    state = build().state_dict()
    if not ordered:  # as a safetensors file gives it back: not the model's order
        state = dict(sorted(state.items(), key=lambda item: item[0][::-1]))
    assert first_conv_weight(state, {}, source="x.pth", ordered=ordered)[0] == stem


def test_no_kernel_is_one_line():
    with pytest.raises(ReslabError, match="x.pth holds no convolution weights"):
        first_conv_weight({"fc.weight": torch.zeros(2, 3)}, {}, source="x.pth")


@pytest.fixture
def drawn(monkeypatch):
    """The matplotlib figures ``reslab.plots.figure_png`` is given, instead of PNG bytes."""
    from reslab import plots

    figures = []
    monkeypatch.setattr(plots, "figure_png", lambda fig: figures.append(fig) or b"png")
    yield figures
    for fig in figures:
        plots.pyplot().close(fig)


@pytest.mark.parametrize("in_channels", [1, 2, 3])
def test_filters_are_drawn_one_tile_each_scaled_to_its_range(in_channels, tmp_path, drawn):
    """Each of conv1's 16 filters is one tile: the weights (RGB for 3 channels, else their
    channel mean in grey) scaled to the filter's own min..max."""
    from reslab.commands.show import filters_png

    path = write_checkpoint(tmp_path / "w.safetensors", in_channels=in_channels, size=32)
    assert filters_png(str(path)) == b"png"
    weight = read_weights(path)[0]["conv1.weight"]  # (16, C, 3, 3)
    if in_channels != 3:
        weight = weight.mean(1, keepdim=True)
    (fig,) = drawn
    tiles = [ax.get_images()[0].get_array() for ax in fig.axes if ax.get_images()]
    for tile, w in zip(tiles, weight, strict=True):
        expected = ((w - w.min()) / (w.max() - w.min())).permute(1, 2, 0).squeeze(-1)
        torch.testing.assert_close(torch.as_tensor(tile.data, dtype=torch.float32), expected)
    assert fig._suptitle.get_text() == "conv1.weight: 16 filters 3x3"


def test_feature_maps_are_each_stages_first_channels(tmp_path, drawn):
    """One row per stage (conv1, conv2_x, ...), its first ``maps`` channels for the image as
    the model's preprocessing makes it."""
    from PIL import Image

    from reslab.commands.show import feature_maps_png
    from reslab.models import stage_outputs

    path = write_checkpoint(tmp_path / "w.safetensors")  # resnet8, grey 28x28
    image = tmp_path / "shoe.png"
    Image.fromarray(torch.randint(0, 256, (28, 28), dtype=torch.uint8).numpy()).save(image)
    assert feature_maps_png(str(path), str(image), maps=4) == b"png"
    predictor = reslab.load(path)
    with torch.no_grad():
        stages = stage_outputs(predictor.model, predictor.preprocess([image]))
    axes = drawn[0].axes
    assert len(axes) == 4 * len(stages)
    for row, (name, output) in enumerate(stages.items()):
        assert axes[4 * row].get_title(loc="left").startswith(name)
        for i in range(4):
            (shown,) = axes[4 * row + i].get_images()
            torch.testing.assert_close(torch.as_tensor(shown.get_array().data),
                                       output[0, i].float())


def test_feature_maps_are_capped_at_the_widest_stage(tmp_path, drawn):
    """More maps than any stage has channels: as many columns as the widest stage (resnet8's
    64), each stage's channels drawn and the rest of its row blank."""
    from PIL import Image

    from reslab.commands.show import feature_maps_png

    path = write_checkpoint(tmp_path / "w.safetensors")  # resnet8: 16, 16, 32, 64 channels
    image = tmp_path / "shoe.png"
    Image.new("L", (28, 28), 90).save(image)
    assert feature_maps_png(str(path), str(image), maps=100_000) == b"png"
    (fig,) = drawn
    assert len(fig.axes) == 64 * 4
    drawn_per_row = [sum(bool(ax.get_images()) for ax in fig.axes[64 * row:64 * (row + 1)])
                     for row in range(4)]
    assert drawn_per_row == [16, 16, 32, 64]
    assert fig._suptitle.get_text() == "resnet8: first 64 maps of each stage"
