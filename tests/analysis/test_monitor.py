"""The training monitors: what is recorded, when the hooks are active, the update/weight ratio,
the findings, and the engine's ``monitor`` option (with resume)."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from reslab.analysis.monitor import Monitor, MonitorRow, _std, findings, read_monitor
from reslab.train.engine import train
from tests.data_fixtures import write_tiny_fashion_mnist


def tiny_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))


def hooked(net):
    return sum(len(m._forward_hooks) for m in net.modules())


def test_records_every_interval_with_hooks_only_when_due(tmp_path):
    net = tiny_net()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)  # no momentum: update = lr * grad
    monitor = Monitor(net, every=2, csv_path=tmp_path / "monitor.csv")
    x, y = torch.randn(5, 1, 8, 8), torch.tensor([0, 1, 2, 0, 1])
    armed = []
    for iteration in range(1, 6):
        armed.append(hooked(net))
        with torch.no_grad():
            act_std = {"0": net[0](x).std().item(), "3": net(x).std().item()}  # before the step
        loss = F.cross_entropy(net(x), y)
        optimizer.zero_grad()
        loss.backward()
        monitor.after_backward(iteration)
        grads = {name: p.grad.clone() for name, p in net.named_parameters()}
        weights = {name: p.detach().clone() for name, p in net.named_parameters()}
        optimizer.step()
        monitor.after_step(iteration)
        if iteration == 4:
            expected = {
                "0": (0.1 * grads["0.weight"].norm() / weights["0.weight"].norm()).item(),
                "3": (0.1 * grads["3.weight"].norm() / weights["3.weight"].norm()).item(),
            }
            expected_grad_std = grads["3.weight"].std().item()
            expected_act_std = act_std
    assert armed == [0, 2, 0, 2, 0]  # hooks on both weight layers only before iterations 2, 4
    rows = read_monitor(tmp_path / "monitor.csv")
    assert [(r.iteration, r.layer) for r in rows] == [(2, "0"), (2, "3"), (4, "0"), (4, "3")]
    at4 = {r.layer: r for r in rows if r.iteration == 4}
    assert at4["0"].update_ratio == pytest.approx(expected["0"], rel=1e-4)
    assert at4["3"].update_ratio == pytest.approx(expected["3"], rel=1e-4)
    assert at4["3"].grad_std == pytest.approx(expected_grad_std, rel=1e-4)
    for layer in ("0", "3"):  # the std of each layer's own output, with the weights it ran with
        assert at4[layer].activation_std == pytest.approx(expected_act_std[layer], rel=1e-4)


def test_a_layer_without_gradient_is_recorded_as_nan(tmp_path):
    """A frozen layer has no gradient: its grad std is NaN, made on the layer's device (it is
    stacked with the other layers' numbers: a CPU NaN beside CUDA tensors would crash)."""
    net = tiny_net()
    net[0].requires_grad_(False)
    monitor = Monitor(net, every=1, csv_path=tmp_path / "monitor.csv")
    optimizer = torch.optim.SGD(net[3].parameters(), lr=0.1)
    monitor.after_step(0)  # arms the hooks for iteration 1
    F.cross_entropy(net(torch.randn(5, 1, 8, 8)), torch.tensor([0, 1, 2, 0, 1])).backward()
    monitor.after_backward(1)
    optimizer.step()
    monitor.after_step(1)
    rows = {r.layer: r for r in read_monitor(tmp_path / "monitor.csv")}
    assert math.isnan(rows["0"].grad_std) and rows["0"].update_ratio == 0
    assert math.isfinite(rows["3"].grad_std) and rows["3"].update_ratio > 0
    assert _std(None, torch.device("meta")).device.type == "meta"


def test_findings_flag_ratios_and_collapse():
    rows = [MonitorRow(10, f"l{i}", std, 1.0, ratio) for i, (std, ratio) in enumerate(
        [(1.0, 1e-3), (0.8, 2e-3), (0.5, 5e-2), (0.05, 1e-5)])]
    found = findings([MonitorRow(5, "old", 9.0, 1.0, 1.0), *rows])
    assert found.iteration == 10
    assert found.off_ratio == [("l2", 5e-2), ("l3", 1e-5)]
    assert found.first_std == 1.0 and found.last_std == 0.05 and found.collapsed
    healthy = findings([MonitorRow(1, f"l{i}", 1.0, 1.0, 1e-3) for i in range(4)])
    assert healthy.off_ratio == [] and not healthy.collapsed
    assert findings([]) is None


def test_engine_monitor_option_and_resume(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    write_tiny_fashion_mnist(data, train=64, test=20)
    common = dict(model="resnet8", data="fashion-mnist", data_dir=str(data), iters=6,
                  eval_every=6, log_every=2, batch_size=16, device="cpu", monitor=2,
                  train_split="train", val_split="test", test_split="test", progress=False)
    out = tmp_path / "run"
    train(**common, out=str(out), stop_after=5)
    rows = read_monitor(out / "monitor.csv")
    assert sorted({r.iteration for r in rows}) == [2, 4]
    assert len({r.layer for r in rows}) == 8  # 7 convolutions and the fc layer
    # the checkpoint is at 5: resuming keeps rows up to 5 and adds iteration 6
    train(resume=out, progress=False)
    assert sorted({r.iteration for r in read_monitor(out / "monitor.csv")}) == [2, 4, 6]
    assert all(r.update_ratio > 0 and r.grad_std > 0 for r in read_monitor(out / "monitor.csv"))


def test_cli_monitor_writes_tensorboard_and_csv_alike(tmp_path):
    """`reslab train --monitor 2`: each monitored layer's three values reach TensorBoard as
    ``monitor/<value>/<layer>`` at the iteration monitor.csv gives, with the same numbers."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from reslab.cli import main

    data = tmp_path / "data"
    data.mkdir()
    write_tiny_fashion_mnist(data, train=32, test=16)
    out = tmp_path / "run"
    assert main(["train", "--model", "resnet8", "--data", "fashion-mnist", "--data-dir", str(data),
                 "--iters", "4", "--eval-every", "4", "--log-every", "2", "--batch-size", "16",
                 "--train-split", "train", "--val-split", "none", "--device", "cpu",
                 "--monitor", "2", "--no-progress", "--out", str(out)]) == 0
    rows = read_monitor(out / "monitor.csv")
    assert sorted({r.iteration for r in rows}) == [2, 4] and len(rows) == 2 * 8
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    for row in rows:
        for value in ("activation_std", "grad_std", "update_ratio"):
            tag = f"monitor/{value}/{row.layer}"
            assert tag in tags, tag
            logged = {e.step: e.value for e in events.Scalars(tag)}
            assert logged[row.iteration] == pytest.approx(getattr(row, value), rel=1e-5)
            assert getattr(row, value) > 0


def test_cli_monitor_longer_than_the_run_is_warned(tmp_path, capsys):
    from reslab.cli import main

    data = tmp_path / "data"
    data.mkdir()
    write_tiny_fashion_mnist(data, train=32, test=16)
    out = tmp_path / "run"
    assert main(["train", "--model", "resnet8", "--data", "fashion-mnist", "--data-dir", str(data),
                 "--iters", "2", "--batch-size", "16", "--train-split", "train",
                 "--val-split", "none", "--test-split", "none", "--device", "cpu",
                 "--monitor", "--no-progress", "--out", str(out)]) == 0
    assert ("reslab: warning: --monitor 100 is longer than the run (2 iterations): the monitors "
            "record nothing\n") in capsys.readouterr().err
    assert read_monitor(out / "monitor.csv") == []
