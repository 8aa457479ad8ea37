"""Fixtures shared by the eval, predict and bad-input tests."""

import pytest

from tests.data_fixtures import write_tiny_fashion_mnist


@pytest.fixture(scope="session")
def fashion_dir(tmp_path_factory):
    """A tiny Fashion-MNIST in the official IDX format: 64 training and 40 test images."""
    root = tmp_path_factory.mktemp("fmnist")
    write_tiny_fashion_mnist(root, train=64, test=40)
    return root
