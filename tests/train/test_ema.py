"""--ema: the weight average's arithmetic, and a run that evaluates, saves and resumes it."""

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

import reslab
from reslab.train.checkpoint import read_weights
from reslab.train.config import resolve
from reslab.train.ema import WeightAverage
from reslab.train.engine import train
from tests.data_fixtures import write_tiny_fashion_mnist
from tests.train.test_engine import TINY

EMA = dict(TINY, ema=0.9)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("fmnist")
    write_tiny_fashion_mnist(root, train=64, test=40)
    return root


def test_average_follows_the_weights_with_the_warm_up_decay():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2))
    average = WeightAverage(model, decay=0.99)
    assert average.decay_at(1) == pytest.approx(2 / 11)  # TensorFlow's num_updates warm-up
    assert average.decay_at(10_000) == 0.99
    start = {k: v.clone() for k, v in average.module.state_dict().items()}
    with torch.no_grad():
        for tensor in (*model.parameters(), model[1].running_mean, model[1].running_var):
            tensor.add_(1.0)
    model[1].num_batches_tracked.fill_(7)
    average.update(10_000)
    now = average.module.state_dict()
    for key in ("0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean", "1.running_var"):
        torch.testing.assert_close(now[key], start[key] + 0.01)  # moved 1 - 0.99 of the way
    assert now["1.num_batches_tracked"].item() == 7  # counters are copied, not averaged
    assert not average.module.training
    assert not any(p.requires_grad for p in average.module.parameters())


def test_decay_outside_its_range_is_refused():
    for decay in (-0.1, 1.0):
        with pytest.raises(ValueError, match="decay must be in"):
            WeightAverage(nn.Linear(2, 2), decay=decay)
    for value in ("1", "-0.5"):
        with pytest.raises(reslab.ReslabError, match=r"ema must be a decay in \[0, 1\)"):
            resolve({"ema": value})


def test_run_evaluates_and_saves_the_average(data_dir, tmp_path):
    out = tmp_path / "run"
    result = train(**EMA, data_dir=str(data_dir), out=str(out), progress=False)
    state = torch.load(out / "trainer_state.pt", weights_only=True)
    saved = load_file(out / "last.safetensors")
    for key, value in state["average"].items():  # the file holds the average ...
        assert torch.equal(saved[key], value), key
    assert not torch.equal(saved["fc.weight"], state["model"]["fc.weight"])  # ... not SGD's
    _, meta = read_weights(out / "last.safetensors")
    assert meta["ema"] == 0.9
    # the logged val error is the average's: evaluating the saved file gives it again
    again = reslab.evaluate(out / "last.safetensors", data_dir=str(data_dir), split="test",
                            device="cpu")
    assert again.top1_error == pytest.approx(result.val_error)


def test_resume_with_average_is_exact(data_dir, tmp_path):
    common = dict(EMA, data_dir=str(data_dir), progress=False)
    straight = train(**common, out=str(tmp_path / "straight"))
    train(**common, out=str(tmp_path / "split"), stop_after=3)
    resumed = train(resume=tmp_path / "split", progress=False)
    a = load_file(straight.run_dir / "last.safetensors")
    b = load_file(resumed.run_dir / "last.safetensors")
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_resume_without_the_average_is_refused(data_dir, tmp_path):
    out = tmp_path / "run"
    train(**EMA, data_dir=str(data_dir), out=str(out), stop_after=1, progress=False)
    state = torch.load(out / "trainer_state.pt", weights_only=True)
    torch.save({**state, "average": None}, out / "trainer_state.pt")
    with pytest.raises(reslab.ReslabError, match=r"trainer_state.pt holds no weight average for "
                                                 r"--ema$"):
        train(resume=out, progress=False)
