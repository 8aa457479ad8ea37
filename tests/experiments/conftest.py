"""Shared tiny set-up for the experiment tests: a Fashion-MNIST-format data set of a few
hundred images and a recipe of a few iterations."""

import pytest

from reslab.experiments.runs import Setup
from tests.data_fixtures import write_tiny_fashion_mnist

TINY_RECIPE = dict(iters=4, batch_size=16, eval_every=2, log_every=2, monitor=2,
                   train_split="train", val_split=None, test_split="test", seed=0)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("fmnist")
    write_tiny_fashion_mnist(root, train=200, test=100)
    return root


def tiny_setup(out, data_dir, **recipe) -> Setup:
    return Setup(data="fashion-mnist", out=out, recipe={**TINY_RECIPE, **recipe},
                 data_dir=str(data_dir), device="cpu", progress=False)


@pytest.fixture(scope="session")
def degradation_dir(tiny_data, tmp_path_factory):
    """One degradation experiment at depths 8 and 14, shared by several tests."""
    from reslab.experiments.degradation import run_degradation

    out = tmp_path_factory.mktemp("exp") / "degradation"
    run_degradation(tiny_setup(out, tiny_data), depths=[14, 8])
    return out
