"""The loaders a run builds from its configuration: random erasing reaches both data paths."""

import pytest
import torch
from torchvision.transforms import v2

from reslab.data.transforms import ERASE_AREA, ERASE_RATIO
from reslab.errors import ReslabError
from reslab.train.config import resolve
from reslab.train.inputs import build_inputs
from tests.data_fixtures import write_tiny_fashion_mnist
from tests.train.test_image_inputs import _tree


def _fashion(tmp_path, **overrides):
    tmp_path.mkdir(exist_ok=True)
    write_tiny_fashion_mnist(tmp_path, train=64, test=16)
    config = resolve({"data": "fashion-mnist", "data_dir": str(tmp_path),
                      "train_split": "train", "val_split": "none", "batch_size": 16,
                      **overrides})
    return build_inputs(config, torch.device("cpu"))


def test_erase_reaches_the_small_data_loader_and_needs_augment(tmp_path):
    inputs = _fashion(tmp_path, erase="0.25")
    assert inputs.train.erase == 0.25 and inputs.evals["test"].erase == 0.0
    assert _fashion(tmp_path / "default").train.erase == 0.0
    with pytest.raises(ReslabError, match="erase is part of the training augmentation"):
        _fashion(tmp_path / "plain", erase="0.25", augment="false")  # not silently dropped


def test_erase_ends_the_image_folder_training_transform(tmp_path):
    _tree(tmp_path)
    config = resolve({"data": "folder", "data_dir": str(tmp_path), "erase": "0.5",
                      "batch_size": 4, "workers": 0})
    transform = build_inputs(config, torch.device("cpu")).train.dataset.transform
    erasing = transform.transforms[-1]
    assert isinstance(erasing, v2.RandomErasing)
    assert (erasing.p, erasing.scale, erasing.ratio, erasing.value) == (
        0.5, ERASE_AREA, ERASE_RATIO, [0.0])
    config = resolve({"data": "folder", "data_dir": str(tmp_path), "batch_size": 4,
                      "workers": 0})
    plain = build_inputs(config, torch.device("cpu")).train.dataset.transform
    assert not any(isinstance(t, v2.RandomErasing) for t in plain.transforms)
