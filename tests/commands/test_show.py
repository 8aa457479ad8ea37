"""``reslab show filters`` draws the first layer: found by the model's module order, not by
the order a file happens to store its tensors in."""

import random

import pytest
import torch

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
        key, weight = first_conv_weight({k: state[k] for k in keys}, meta, source=str(path))
        assert key == f"{first}.weight"
        assert weight.shape[1] == 3 and torch.equal(weight, state[key])


def test_a_foreign_state_dict_takes_the_kernel_that_sees_the_image():
    state = reslab.create_model("resnet18", variant="v1.5").state_dict()
    shuffled = dict(sorted(state.items(), key=lambda item: item[0][::-1]))  # conv1 not first
    assert next(k for k, v in shuffled.items() if v.ndim == 4) != "conv1.weight"
    assert first_conv_weight(shuffled, {}, source="x.pth")[0] == "conv1.weight"
    with pytest.raises(ReslabError, match="x.pth holds no convolution weights"):
        first_conv_weight({"fc.weight": torch.zeros(2, 3)}, {}, source="x.pth")
