"""Data set names, facts and the data dir."""

import pytest

from reslab.data import DATASETS, dataset_info, get_dataset, load_arrays
from reslab.data.registry import data_root
from reslab.errors import ReslabError


def test_dataset_facts():
    cifar = dataset_info("cifar10")
    facts = (cifar.num_classes, cifar.channels, cifar.image_size, cifar.small)
    assert facts == (10, 3, (32, 32), True)
    assert cifar.splits == ("train", "test", "train45k", "val5k")
    assert cifar.counts["train45k"] + cifar.counts["val5k"] == cifar.counts["train"] == 50_000
    assert dataset_info("fashion-mnist").splits == ("train", "test", "train55k", "val5k")
    assert dataset_info("fashion-mnist").classes[9] == "Ankle boot"
    assert not dataset_info("imagenet").small and dataset_info("imagenet").num_classes == 1000
    assert set(DATASETS) == {"cifar10", "cifar100", "fashion-mnist", "mnist", "imagenet", "folder"}


def test_unknown_name_lists_choices():
    with pytest.raises(ReslabError, match=r"unknown data set 'cifar11'; choose from: cifar10, "):
        dataset_info("cifar11")


def test_unknown_split_lists_choices(tmp_path):
    with pytest.raises(ReslabError, match=r"cifar10 has no split 'val'; choose from: test, "):
        load_arrays("cifar10", tmp_path, "val")


def test_large_sets_are_not_arrays(tmp_path):
    with pytest.raises(ReslabError, match=r"imagenet is read image by image"):
        load_arrays("imagenet", tmp_path, "train")
    with pytest.raises(ReslabError, match=r"imagenet cannot be downloaded"):
        get_dataset("imagenet", tmp_path, "train", download=True)


def test_data_root(tmp_path, monkeypatch):
    monkeypatch.setenv("RESLAB_DATA_DIR", str(tmp_path / "env"))
    assert data_root(None) == tmp_path / "env"  # the default need not exist
    monkeypatch.delenv("RESLAB_DATA_DIR")
    assert str(data_root(None)) == "data"
    with pytest.raises(ReslabError, match=r"data dir .*missing does not exist"):
        data_root(tmp_path / "missing")
    assert data_root(tmp_path / "new", create=True).is_dir()
