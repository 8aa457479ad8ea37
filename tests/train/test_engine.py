"""The training engine end to end on a tiny data set: run folder, checkpoints, exact resume,
fine-tuning init, precise BN and bad input."""

import csv
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import reslab
from reslab.cli import main
from reslab.data import load_arrays, per_pixel_mean
from reslab.eval.metrics import EvalResult
from reslab.train import engine
from reslab.train.checkpoint import read_weights
from reslab.train.config import TrainConfig, resolve
from reslab.train.engine import Trainer, train
from reslab.train.run_lock import live_writer, this_process
from reslab.train.rundir import RunDir
from tests.checkpoint_fixtures import write_checkpoint
from tests.data.formats import write_cifar10
from tests.data_fixtures import write_tiny_fashion_mnist

TINY = dict(model="resnet8", data="fashion-mnist", iters=8, eval_every=4, log_every=2,
            batch_size=16, device="cpu", deterministic=True, seed=3,
            train_split="train", val_split="test", test_split="test")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("fmnist")
    write_tiny_fashion_mnist(root, train=64, test=40)
    return root


def test_run_folder_contents(data_dir, tmp_path):
    out = tmp_path / "run"
    result = train(**TINY, data_dir=str(data_dir), out=str(out), progress=False)
    assert result.finished and result.iteration == 8
    for name in ("config.toml", "run.json", "metrics.csv", "curves.png", "last.safetensors",
                 "best.safetensors", "trainer_state.pt"):
        assert (out / name).is_file(), name
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    assert [int(r["iteration"]) for r in rows if r["train_error"]] == [2, 4, 6, 8]
    assert [int(r["iteration"]) for r in rows if r["val_error"]] == [4, 8]
    assert all(0 <= float(r["test_error"]) <= 1 for r in rows if r["test_error"])
    provenance = json.loads((out / "run.json").read_text())
    assert provenance["config"]["model"] == "resnet8" and provenance["git_commit"]
    # weights: torchvision-style keys, readable with plain safetensors; state weights-only
    weights = load_file(out / "last.safetensors")
    assert "layer1.0.conv1.weight" in weights and "fc.weight" in weights
    state = torch.load(out / "trainer_state.pt", weights_only=True)
    assert state["iteration"] == 8 and "optimizer" in state and "loader" in state
    _, meta = read_weights(out / "last.safetensors")
    assert meta["model"] == "resnet8" and meta["in_channels"] == 1 and len(meta["classes"]) == 10
    train_images = load_arrays("fashion-mnist", str(data_dir), "train").images
    torch.testing.assert_close(torch.tensor(meta["preprocess"]["mean"]),
                               per_pixel_mean(train_images).flatten(), atol=1e-6, rtol=0)
    # best.safetensors: the weights of the first evaluation with the lowest val error
    val = [(float(r["val_error"]), int(r["iteration"])) for r in rows if r["val_error"]]
    best_error, best_iteration = min(val, key=lambda v: v[0])
    _, best_meta = read_weights(out / "best.safetensors")
    assert (best_meta["iteration"], best_meta["val_error"]) == (best_iteration, best_error)
    assert result.best_val_error == best_error
    assert not (out / "writer.json").exists()  # handed back when the run ended
    # TensorBoard holds the numbers of metrics.csv, at the same iterations
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    for column in ("lr", "train_loss", "train_error", "val_error", "test_error"):
        logged = {e.step: e.value for e in events.Scalars(column)}
        expected = {int(r["iteration"]): float(r[column]) for r in rows if r[column]}
        assert logged.keys() == expected.keys() and expected, column
        assert [logged[i] for i in expected] == pytest.approx(list(expected.values()),
                                                              rel=1e-3), column
    with pytest.raises(reslab.ReslabError, match="already holds a run; continue it with --resume"):
        train(**TINY, data_dir=str(data_dir), out=str(out), progress=False)
    # weights whose trainer state is gone (a kill between the two writes, a deleted file): a new
    # run there is refused, since `reslab eval` of the folder would read the old weights
    (out / "trainer_state.pt").unlink()
    with pytest.raises(reslab.ReslabError) as refused:
        train(**TINY, data_dir=str(data_dir), out=str(out), progress=False)
    assert str(refused.value) == (
        f"{out} holds best.safetensors and last.safetensors of an earlier run but no "
        "trainer_state.pt to resume it; move them away or choose another --out")


def test_best_is_kept_when_a_later_evaluation_is_worse(data_dir, tmp_path, monkeypatch):
    """val errors 0.5 then 0.7: best.safetensors stays at the first evaluation, last moves on."""
    errors = iter([0.5, 0.5, 0.7, 0.7])  # (val, test) at iterations 4 and 8

    def fake_evaluate(*args, **kwargs):
        return EvalResult(top1_error=next(errors), top5_error=0.0, loss=1.0, count=40,
                          confusion=torch.zeros(10, 10, dtype=torch.int64))

    monkeypatch.setattr(engine, "evaluate", fake_evaluate)
    out = tmp_path / "run"
    result = train(**TINY, data_dir=str(data_dir), out=str(out), progress=False)
    _, best = read_weights(out / "best.safetensors")
    _, last = read_weights(out / "last.safetensors")
    assert (best["iteration"], best["val_error"]) == (4, 0.5)
    assert (last["iteration"], last["val_error"]) == (8, 0.7)
    assert result.best_val_error == 0.5
    assert not torch.equal(load_file(out / "best.safetensors")["fc.weight"],
                           load_file(out / "last.safetensors")["fc.weight"])


def test_training_learns_the_tiny_task(data_dir, tmp_path):
    """Loss falls and the test error ends far below chance (0.9): the loop really trains.
    (No augmentation: a class is the height of a band, which random crops would move.)"""
    out = tmp_path / "run"
    result = train(**{**TINY, "iters": 60, "eval_every": 60, "log_every": 10, "lr": 0.1,
                      "schedule": "cosine", "augment": False},
                   data_dir=str(data_dir), out=str(out), progress=False)
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    losses = [float(r["train_loss"]) for r in rows if r["train_loss"]]
    assert losses[-1] < 0.5 * losses[0]
    assert result.test_error < 0.3


def test_default_run_folder_is_made_under_runs(data_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = train(**{**TINY, "iters": 1}, data_dir=str(data_dir), progress=False)
    (folder,) = (tmp_path / "runs").iterdir()
    assert folder.name.startswith("resnet8-fashion-mnist-") and result.iteration == 1
    assert (folder / "last.safetensors").is_file()


def test_resume_is_exact(data_dir, tmp_path):
    common = dict(TINY, data_dir=str(data_dir), progress=False)
    straight = train(**common, out=str(tmp_path / "straight"))
    half = train(**common, out=str(tmp_path / "split"), stop_after=3)
    assert not half.finished and half.iteration == 3
    resumed = train(resume=tmp_path / "split", progress=False)
    assert resumed.finished and resumed.iteration == 8
    again = train(resume=tmp_path / "split", progress=False)  # finished: evaluates nothing
    assert (again.iteration, again.test, again.best_val_error) == (8, None,
                                                                   resumed.best_val_error)
    assert (again.val_error, again.test_error) == (resumed.val_error, resumed.test_error)
    assert again.test_error is not None
    a = load_file(straight.run_dir / "last.safetensors")
    b = load_file(resumed.run_dir / "last.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    rows = list(csv.DictReader(open(resumed.run_dir / "metrics.csv")))
    assert [int(r["iteration"]) for r in rows if r["train_error"]] == [2, 4, 6, 8]


def logged(run_dir):
    """metrics.csv's rows without the clock's column (images/s)."""
    rows = list(csv.DictReader(open(run_dir / "metrics.csv")))
    assert all(float(r["images_per_s"]) > 0 for r in rows if r["train_error"])
    return [{k: v for k, v in r.items() if k != "images_per_s"} for r in rows]


def test_a_repeated_sigterm_stops_once_and_a_second_ctrl_c_aborts():
    """`timeout` signals the child and its process group: two SIGTERMs must still give the
    checkpointed stop; only Ctrl-C twice aborts at once."""
    with engine._stop_requests(announce=False) as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.requested
    with pytest.raises(KeyboardInterrupt), engine._stop_requests(announce=False) as stop:
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.requested
        os.kill(os.getpid(), signal.SIGINT)


@pytest.mark.parametrize(
    ("keys", "stop_at", "how"),
    [
        ({}, 3, "stop_after"),  # in the middle of a log window
        ({"lr_ramp": 6}, 3, "sigterm"),
        ({"warmup_lr": 0.01, "log_every": 3}, 4, "stop_after"),  # at an evaluation, mid-window
    ],
)
def test_stopped_and_resumed_run_logs_the_rows_of_a_straight_run(keys, stop_at, how, data_dir,
                                                                 tmp_path, monkeypatch):
    """The training loss and error of the log window a stop cuts are saved, not logged early
    (the ResNet-110 warm-up ends on a logged error): the rows of an uninterrupted run."""
    common = dict(TINY, **keys, data_dir=str(data_dir), progress=False)
    train(**common, out=str(tmp_path / "straight"))
    split = tmp_path / "split"
    if how == "sigterm":  # sent while iteration stop_at runs (lr is asked for 0-based ones)
        lr = engine.LRSchedule.lr

        def signalling(schedule, iteration):
            if iteration == stop_at - 1:
                os.kill(os.getpid(), signal.SIGTERM)
            return lr(schedule, iteration)

        monkeypatch.setattr(engine.LRSchedule, "lr", signalling)
        stopped = train(**common, out=str(split))
        monkeypatch.undo()
    else:
        stopped = train(**common, out=str(split), stop_after=stop_at)
    assert stopped.iteration == stop_at and not stopped.finished
    window = torch.load(split / "trainer_state.pt", weights_only=True)["log_window"]
    assert window["seen"] == 16 * (stop_at % common["log_every"]) and window["seconds"] > 0
    assert train(resume=split, progress=False).finished
    assert logged(split) == logged(tmp_path / "straight")


def test_trainer_state_of_an_older_version_resumes(data_dir, tmp_path):
    """Files without the keys added later (the --ema average, the precise-BN loader, the log
    window): the first row after the resume averages the steps it saw."""
    out = tmp_path / "run"
    train(**TINY, data_dir=str(data_dir), out=str(out), stop_after=3, progress=False)
    state = torch.load(out / "trainer_state.pt", weights_only=True)
    for key in ("average", "bn_loader", "log_window"):
        del state[key]
    torch.save(state, out / "trainer_state.pt")
    assert train(resume=out, progress=False).finished
    assert [r["iteration"] for r in logged(out) if r["train_error"]] == ["2", "4", "6", "8"]


def test_the_summary_names_only_files_the_run_folder_holds(data_dir, tmp_path, capsys):
    """A run stopped before its first log line has no metrics.csv or curves.png yet: the
    summary of `reslab train` names its weights alone, and all three once it has them."""
    run = tmp_path / "run"
    flags = [f"--set={key}={value}" for key, value in TINY.items()]
    assert main(["train", *flags, "--data-dir", str(data_dir), "--out", str(run),
                 "--stop-after", "1", "--no-progress"]) == 0
    assert not (run / "curves.png").exists()
    last = capsys.readouterr().out.splitlines()[-1]
    assert last == f"  weights: {run / 'last.safetensors'}", last
    assert main(["train", "--resume", str(run), "--no-progress"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == (
        f"  curves: {run / 'curves.png'}   weights: {run / 'last.safetensors'}   "
        f"metrics: {run / 'metrics.csv'}")


def test_a_run_killed_before_its_first_checkpoint_starts_again(data_dir, tmp_path, capsys):
    """--resume says how to start it again; doing so keeps none of the dead run's logs."""
    run = tmp_path / "run"
    train(**TINY, monitor=2, data_dir=str(data_dir), out=str(run), stop_after=3, progress=False)
    for name in ("trainer_state.pt", "last.safetensors"):  # as if killed at iteration 3
        (run / name).unlink()
    assert (run / "monitor.csv").is_file() and list(run.glob("tensorboard/events.*"))
    assert main(["train", "--resume", str(run)]) == 2
    assert capsys.readouterr().err == (
        f"reslab: error: {run} has no checkpoint to resume from (no trainer_state.pt); start it "
        f"again with --config {run / 'config.toml'} --out {run}\n")
    assert main(["train", "--config", str(run / "config.toml"), "--out", str(run),
                 "--monitor", "0", "--no-progress"]) == 0
    assert not (run / "monitor.csv").exists()
    straight = train(**TINY, data_dir=str(data_dir), out=str(tmp_path / "straight"),
                     progress=False)
    assert logged(run) == logged(straight.run_dir)
    (events,) = run.glob("tensorboard/events.*")  # the dead run's file is gone
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(events))
    accumulator.Reload()
    assert [e.step for e in accumulator.Scalars("train_error")] == [2, 4, 6, 8]


def test_resume_after_a_kill_inside_the_first_checkpoint_says_what_to_move(data_dir, tmp_path,
                                                                           capsys):
    """Killed between the first checkpoint's weights and its trainer state: the advice of
    --resume, followed, starts the run again (the weights left behind refuse a new run)."""
    run = tmp_path / "run"
    train(**TINY, data_dir=str(data_dir), out=str(run), stop_after=4, progress=False)
    (run / "trainer_state.pt").unlink()  # as if killed before it replaced its temporary file
    assert main(["train", "--resume", str(run)]) == 2
    assert capsys.readouterr().err == (
        f"reslab: error: {run} has no checkpoint to resume from (no trainer_state.pt); move "
        f"best.safetensors and last.safetensors away (saved without it), then start it again "
        f"with --config {run / 'config.toml'} --out {run}\n")
    for name in ("best.safetensors", "last.safetensors"):
        (run / name).rename(tmp_path / name)
    assert main(["train", "--config", str(run / "config.toml"), "--out", str(run),
                 "--stop-after", "1", "--no-progress"]) == 0


def test_resumes_keep_the_provenance_and_add_theirs(data_dir, tmp_path, monkeypatch):
    out = tmp_path / "run"
    train(**TINY, data_dir=str(data_dir), out=str(out), stop_after=3, progress=False)
    started = json.loads((out / "run.json").read_text())
    assert "resumes" not in started
    monkeypatch.setattr(sys, "argv", ["reslab", "train", "--resume", str(out)])
    train(resume=out, stop_after=2, progress=False)
    assert train(resume=out, progress=False).finished
    provenance = json.loads((out / "run.json").read_text())
    resumes = provenance.pop("resumes")
    assert provenance == started  # start time, commit, command, config: the start's
    assert [r["iteration"] for r in resumes] == [3, 5]
    for entry in resumes:
        assert entry["command"] == sys.argv and entry["device"] == "cpu"
        assert entry["git_commit"] == started["git_commit"] and entry["torch"] == torch.__version__
        assert entry["time"] >= started["started"]


def killed_while_writing(path):
    """Write ``path`` with reslab.io.atomic_write in a process killed (SIGKILL) before the
    rename: it leaves its temporary file."""
    code = ("import os, signal, sys\nfrom reslab.io import atomic_write\n"
            "with atomic_write(sys.argv[1], 'wb') as handle:\n"
            "    handle.write(b'half'), handle.flush(), os.kill(os.getpid(), signal.SIGKILL)\n")
    env = dict(os.environ, PYTHONPATH=str(Path(reslab.__file__).parents[1]))
    assert subprocess.run([sys.executable, "-c", code, str(path)], env=env).returncode == -9


def test_runs_remove_the_temporary_files_of_a_killed_writer(data_dir, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    killed_while_writing(out / "config.toml")
    (out / ".notes.txt.abcdefgh.tmp").write_text("not a file of the run: kept")
    train(**TINY, data_dir=str(data_dir), out=str(out), stop_after=3, progress=False)
    assert [p.name for p in out.glob(".*.tmp")] == [".notes.txt.abcdefgh.tmp"]
    for name in ("last.safetensors", "trainer_state.pt"):  # killed while checkpointing
        killed_while_writing(out / name)
    assert len(list(out.glob(".*.tmp"))) == 3
    assert train(resume=out, progress=False).finished
    assert [p.name for p in out.glob(".*.tmp")] == [".notes.txt.abcdefgh.tmp"]


def test_a_folder_has_one_writer(data_dir, tmp_path, capsys):
    """A second trainer is refused while the folder's writer lives (one line, also through
    --nproc's launcher); once it is gone the folder resumes, and is handed back at the end."""
    common = dict(TINY, data_dir=str(data_dir), progress=False)
    folder = train(**common, out=str(tmp_path / "run"), stop_after=2).run_dir
    assert not (folder / "writer.json").exists() and live_writer(folder) is None
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        claim = {**this_process(), "pid": sleeper.pid, "start": None}
        (folder / "writer.json").write_text(json.dumps(claim))
        assert live_writer(folder) == claim
        expected = (f"reslab: error: run folder {folder} is being written by process "
                    f"{sleeper.pid} on {socket.gethostname()} (see {folder / 'writer.json'}); "
                    "wait for it to finish or stop it\n")
        for launch in ([], ["--nproc", "1"]):
            assert main(["train", "--resume", str(folder), "--no-progress", *launch]) == 2
            assert capsys.readouterr().err == expected
    finally:
        sleeper.kill()
        sleeper.wait()
    assert live_writer(folder) is None  # its pid is gone
    resumed = train(resume=folder, progress=False)  # the dead claim is replaced, then removed
    assert resumed.finished and not (folder / "writer.json").exists()


def test_a_trainer_runs_once(data_dir, tmp_path):
    trainer = Trainer(resolve({**TINY, "iters": 2, "data_dir": str(data_dir),
                               "out": str(tmp_path / "run")}), progress=False)
    assert (tmp_path / "run" / "writer.json").is_file()  # claimed while set up
    assert trainer.run().finished and not (tmp_path / "run" / "writer.json").exists()
    with pytest.raises(RuntimeError, match="this Trainer has run"):
        trainer.run()
    other_rank = RunDir(tmp_path / "run", enabled=False)  # ranks > 0 write nothing
    assert not other_rank.closed
    other_rank.close()
    assert other_rank.closed


def test_failed_set_up_hands_the_folder_back(data_dir, tmp_path, monkeypatch):
    def broken_monitor(*args, **kwargs):
        raise RuntimeError("monitor failed")

    monkeypatch.setattr(sys.modules["reslab.train.engine"], "Monitor", broken_monitor)
    out = tmp_path / "run"
    with pytest.raises(RuntimeError, match="monitor failed"):
        train(**TINY, monitor=2, data_dir=str(data_dir), out=str(out), progress=False)
    assert (out / "config.toml").is_file() and not (out / "writer.json").exists()
    if not torch.cuda.is_available():  # a step the device cannot build: refused, handed back
        with pytest.raises(reslab.ReslabError, match="needs a CUDA device"):
            train(**TINY, cuda_graphs=True, data_dir=str(data_dir), out=str(tmp_path / "g"),
                  progress=False)
        assert not (tmp_path / "g" / "writer.json").exists()


def test_init_from_checkpoint_replaces_head(data_dir, tmp_path, capsys):
    source = reslab.create_model("resnet8", num_classes=3, in_channels=1)
    torch.save({"state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}},
               tmp_path / "foreign.pth")
    result = train(**dict(TINY, iters=2, eval_every=2), data_dir=str(data_dir),
                   out=str(tmp_path / "ft"), init=str(tmp_path / "foreign.pth"), progress=False)
    assert result.finished
    err = capsys.readouterr().err
    assert ("foreign.pth: new head ['fc.bias', 'fc.weight'] (the checkpoint's is for 3 classes); "
            "missing keys none; unexpected keys none") in err
    # the body is loaded, the head is the model's own (10 classes, freshly initialised)
    config = resolve(dict(TINY, data_dir=str(data_dir), out=str(tmp_path / "ft2"),
                          init=str(tmp_path / "foreign.pth")))
    model = Trainer(config, progress=False).model
    loaded = model.state_dict()
    for key, value in source.state_dict().items():
        if not key.startswith("fc."):
            assert torch.equal(loaded[key], value), key
    assert loaded["fc.weight"].shape == (10, 64)
    # a run folder stands for its weights file, as everywhere else
    again = train(**dict(TINY, iters=1, eval_every=1), data_dir=str(data_dir),
                  out=str(tmp_path / "ft3"), init=str(tmp_path / "ft"), progress=False)
    assert again.finished
    assert f"init from {tmp_path / 'ft' / 'best.safetensors'}:" in capsys.readouterr().err
    # and a torch.save file of any name is read as a .pth (e.g. pytorch_model.bin)
    shutil.copy(tmp_path / "foreign.pth", tmp_path / "pytorch_model.bin")
    assert train(**dict(TINY, iters=1, eval_every=1), data_dir=str(data_dir),
                 out=str(tmp_path / "ft4"), init=str(tmp_path / "pytorch_model.bin"),
                 progress=False).finished


def test_init_from_torchvision_bottleneck_net_builds_its_v15_layout(tmp_path, capsys):
    """torchvision's ResNet-50 has the same keys as the paper's v1 layout but strides its 3x3
    conv: a state dict without reslab metadata gets variant v1.5, recorded for the resume."""
    write_cifar10(tmp_path / "data" / "cifar-10-batches-bin", per_file=4)
    source = reslab.create_model("resnet50", num_classes=3, variant="v1.5")
    torch.save(source.state_dict(), tmp_path / "tv.pth")
    common = dict(TINY, model="resnet50", data="cifar10", data_dir=str(tmp_path / "data"),
                  iters=1, eval_every=1, val_split=None, progress=False)
    out = tmp_path / "ft"
    train(**common, out=str(out), init=str(tmp_path / "tv.pth"))
    assert ("tv.pth (variant v1.5): new head ['fc.bias', 'fc.weight'] (the checkpoint's is for 3 "
            "classes); missing keys none") in capsys.readouterr().err
    assert 'variant = "v1.5"' in (out / "config.toml").read_text()
    _, meta = read_weights(out / "last.safetensors")
    assert meta["model_options"]["variant"] == "v1.5"
    # another architecture's checkpoint lends no options: it is refused for its weights
    with pytest.raises(reslab.ReslabError, match="does not fit this architecture"):
        train(**{**common, "model": "resnet8"}, out=str(tmp_path / "other"), init=str(out))


@pytest.mark.parametrize("other", ["resnet14", "lenet5"])
def test_init_refuses_another_architecture(data_dir, tmp_path, other):
    source = reslab.create_model(other, num_classes=10, in_channels=1)
    torch.save(source.state_dict(), tmp_path / "other.pth")
    with pytest.raises(reslab.ReslabError, match="does not fit this architecture"):
        train(**TINY, data_dir=str(data_dir), out=str(tmp_path / "ft"),
              init=str(tmp_path / "other.pth"), progress=False)


def test_precise_bn_changes_running_stats(data_dir, tmp_path):
    from reslab.train.precise_bn import update_bn_stats

    model = reslab.create_model("resnet8", in_channels=1)
    before = model.bn1.running_mean.clone()
    batches = iter([(torch.randn(8, 1, 28, 28) * 2 + 1, None) for _ in range(3)])
    update_bn_stats(model, batches, 3)
    after = model.bn1.running_mean
    assert not torch.allclose(before, after)
    assert model.bn1.momentum == 0.1 and model.training
    # equal-weight average of the 3 batch means, not an exponential average
    model2 = reslab.create_model("resnet8", in_channels=1)
    model2.load_state_dict(model.state_dict())
    xs = [torch.randn(8, 1, 28, 28) for _ in range(3)]
    update_bn_stats(model2, iter([(x, None) for x in xs]), 3)
    with torch.no_grad():
        conv_means = torch.stack([model2.conv1(x).mean((0, 2, 3)) for x in xs]).mean(0)
    assert torch.allclose(model2.bn1.running_mean, conv_means, atol=1e-5)


def test_lr_ramp_in_epochs(data_dir, tmp_path):
    """--lr-ramp 1 with --epochs 2: up to lr 0.1 over the first epoch (4 iterations), then a
    linear decay over the other 4; metrics.csv logs the lr of each logged step."""
    recipe = {k: v for k, v in TINY.items() if k != "iters"}
    result = train(**recipe, epochs=2, schedule="linear", lr_ramp=1, data_dir=str(data_dir),
                   out=str(tmp_path / "run"), progress=False)
    assert result.finished and result.iteration == 8
    rows = list(csv.DictReader(open(result.run_dir / "metrics.csv")))
    logged = {int(r["iteration"]): float(r["lr"]) for r in rows if r["train_error"]}
    assert logged == pytest.approx({2: 0.05, 4: 0.1, 6: 0.075, 8: 0.025})


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--model", "resnet21x"], "unknown model 'resnet21x'"),
        (["--data", "svhn"], "unknown data set 'svhn'"),
        (["--lr", "abc"], "config key 'lr' must be a finite float, got 'abc'"),
        (["--lr", "0"], "lr must be positive"),
        (["--batch-size", "-3"], "batch_size must be positive"),
        (["--set", "foo=1"], "unknown config key 'foo'"),
        (["--lr", "0.3", "--set", "lr=0.5"],
         "lr is given twice, as --lr and with --set lr=0.5; give it once"),
        (["--set", "batch-size=64", "--batch-size", "32"], "batch_size is given twice"),
        (["--lr-ramp", "64000"], "lr_ramp must be at least 0 and shorter than the run"),
        (["--epochs", "2", "--lr-ramp", "-1"], "shorter than the run (2 epochs), got -1"),
        (["--lr-ramp", "100", "--warmup-lr", "0.01"], "two warm-ups"),
        (["--warmup-lr", "-0.01"], "warmup_lr must be positive, got -0.01"),
        (["--warmup-error", "0"], "warmup_error must be in (0, 1], got 0.0"),
        (["--plateau-patience", "0"], "plateau_patience must be positive, got 0"),
        (["--model", "lenet5", "--batch-size", "16"], "lenet5 cannot run on a 1x28x28 input"),
        (["--pad", "28"], "pad must be less than the image side (28 for (28, 28) images), "
                          "got 28"),
        (["--milestones", "nan"], "config key 'milestones' must be a list of finite floats"),
    ],
)
def test_cli_bad_input(argv, message, data_dir, tmp_path, capsys):
    code = main(["train", "--data-dir", str(data_dir), "--data", "fashion-mnist",
                 "--train-split", "train", "--val-split", "test", "--out", str(tmp_path / "r"),
                 *argv])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("reslab: error:") and message in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()  # refused before the run folder is written


def test_cli_missing_root_and_bad_resume(tmp_path, capsys):
    assert main(["train", "--data", "fashion-mnist", "--data-dir", str(tmp_path / "nope"),
                 "--out", str(tmp_path / "r")]) == 2
    assert "reslab: error:" in capsys.readouterr().err
    (tmp_path / "notarun").mkdir()
    assert main(["train", "--resume", str(tmp_path / "notarun")]) == 2
    assert "is not a run folder (no config.toml)" in capsys.readouterr().err
    assert main(["train", "--out", str(tmp_path / "missing" / "run")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_resume_refuses_changed_training_keys(data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    train(**dict(TINY, iters=4, eval_every=2), data_dir=str(data_dir), out=str(out),
          stop_after=2, progress=False)
    assert main(["train", "--resume", str(out), "--lr", "0.5", "--iters", "9"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("reslab: error: --resume continues") and "cannot change iters, lr" in err
    (tmp_path / "c.toml").write_text("lr = 0.5\n")
    assert main(["train", "--resume", str(out), "--config", str(tmp_path / "c.toml")]) == 2
    assert "give one of them" in capsys.readouterr().err
    # keys that only place the run (device, the data's folder) and unchanged values are accepted
    moved = shutil.copytree(data_dir, tmp_path / "moved-data")
    assert train(resume=out, device="cpu", iters=4, data_dir=str(moved), progress=False).finished


def test_api_config_object_takes_overrides_and_is_checked(data_dir, tmp_path):
    config = resolve(dict(TINY, data_dir=str(data_dir)))
    result = train(config, iters=2, eval_every=2, out=str(tmp_path / "r"), progress=False)
    assert result.finished and result.iteration == 2
    bad = TrainConfig(**{**config.to_dict(), "lr": -1.0})
    with pytest.raises(reslab.ReslabError, match="lr must be positive"):
        train(bad, out=str(tmp_path / "bad"), progress=False)


def test_cli_corrupt_trainer_state(data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    train(**dict(TINY, iters=2, eval_every=2), data_dir=str(data_dir), out=str(out), progress=False)
    data = (out / "trainer_state.pt").read_bytes()
    (out / "trainer_state.pt").write_bytes(data[: len(data) // 2])
    assert main(["train", "--resume", str(out)]) == 2
    assert "truncated or corrupt" in capsys.readouterr().err


def test_cli_init_with_a_file_that_is_not_a_checkpoint(data_dir, tmp_path, capsys):
    from PIL import Image

    Image.new("L", (28, 28)).save(tmp_path / "a.png")
    assert main(["train", "--data-dir", str(data_dir), "--data", "fashion-mnist",
                 "--out", str(tmp_path / "r"), "--init", str(tmp_path / "a.png")]) == 2
    assert capsys.readouterr().err == (f"reslab: error: {tmp_path / 'a.png'} is not a checkpoint "
                                       "(safetensors or torch state dict)\n")
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("zipped", [True, False])
def test_init_reads_both_torch_save_formats(tmp_path, zipped):
    state = reslab.create_model("resnet8").state_dict()
    torch.save(state, tmp_path / "w.pth", _use_new_zipfile_serialization=zipped)
    read, meta = read_weights(tmp_path / "w.pth")
    assert meta == {} and read.keys() == state.keys()
    assert all(torch.equal(read[k], v) for k, v in state.items())


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        (lambda s: {k: v for k, v in s.items() if k not in ("rng", "schedule")},
         "is not one reslab wrote: missing keys schedule, rng"),
        (lambda s: {**s, "iteration": "3", "rng": {"torch": s["rng"]["torch"]},
                    "log_window": [0.5, 1]},
         "is not one reslab wrote: missing keys rng.python; keys of the wrong type iteration, "
         "log_window"),
        (lambda s: {**s, "log_window": {**s["log_window"], "seen": 1.5}, "average": 1},
         "is not one reslab wrote: keys of the wrong type average, log_window.seen"),
        (lambda s: [s], "is not a dict (a file reslab did not write?)"),
    ],
)
def test_cli_trainer_state_with_missing_or_wrong_keys(damage, problem, data_dir, tmp_path,
                                                      capsys):
    out = tmp_path / "run"
    train(**TINY, data_dir=str(data_dir), out=str(out), stop_after=1, progress=False)
    state = torch.load(out / "trainer_state.pt", weights_only=True)
    torch.save(damage(state), out / "trainer_state.pt")
    assert main(["train", "--resume", str(out)]) == 2
    assert capsys.readouterr().err == (
        f"reslab: error: trainer state {out / 'trainer_state.pt'} {problem}\n")


def test_cli_init_with_metadata_that_is_not_an_object(data_dir, tmp_path, capsys):
    weights = {k: v.contiguous() for k, v in reslab.create_model("resnet8").state_dict().items()}
    save_file(weights, tmp_path / "odd.safetensors", metadata={"reslab": "[1, 2]"})
    assert main(["train", "--data-dir", str(data_dir), "--data", "fashion-mnist",
                 "--train-split", "train", "--val-split", "test", "--out", str(tmp_path / "r"),
                 "--init", str(tmp_path / "odd.safetensors")]) == 2
    err = capsys.readouterr().err
    assert err == (f"reslab: error: checkpoint {tmp_path / 'odd.safetensors'}: its reslab "
                   "metadata is not a JSON object\n")


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"classes": ["a", 2, "c"]}, "classes must be a list of strings"),
        ({"input_size": [28]}, "input_size must be a list of 2 positive integers"),
        ({"input_size": [28, 28.0], "iteration": "1"},
         "input_size must be a list of 2 positive integers; iteration must be a non-negative "
         "integer"),
        ({"num_classes": True, "val_error": float("nan")},
         "num_classes must be a positive integer; val_error must be a finite number"),
        ({"preprocess": {"kind": "per-pixel-mean", "scale": 1 / 255, "shape": [1],
                         "mean": [float("inf")]}},
         "preprocess.mean must be a list of finite numbers"),
        ({"preprocess": "per-pixel-mean", "model_options": []},
         "model_options must be an object; preprocess must be an object"),
    ],
)
def test_weights_with_bad_metadata_are_refused_in_one_line(change, problem, tmp_path, capsys):
    """Metadata of the wrong type or with non-finite numbers fails where it is read, naming
    the file, not later inside the model or the preprocessing."""
    state, meta = read_weights(write_checkpoint(tmp_path / "good.safetensors"))
    bad = tmp_path / "bad.safetensors"
    save_file(state, bad, metadata={"reslab": json.dumps({**meta, **change})})
    expected = f"checkpoint {bad}: bad reslab metadata: {problem}"
    with pytest.raises(reslab.ReslabError) as error:
        read_weights(bad)
    assert str(error.value) == expected
    assert main(["predict", str(bad), str(tmp_path / "no-image.png")]) == 2
    assert capsys.readouterr().err == f"reslab: error: {expected}\n"


def test_plain_output_has_no_line_without_numbers(data_dir, tmp_path, capsys):
    """With no val or test split an evaluation has nothing to print: its metrics.csv row stays
    (it marks the checkpoint), the terminal gets no 'iter 4/6 epoch=... lr=...' line."""
    out = tmp_path / "run"
    assert main(["train", "--model", "resnet8", "--data", "fashion-mnist", "--data-dir",
                 str(data_dir), "--iters", "6", "--eval-every", "3", "--log-every", "2",
                 "--batch-size", "16", "--train-split", "train", "--val-split", "none",
                 "--test-split", "none", "--device", "cpu", "--no-progress", "--out",
                 str(out)]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("iter ")]
    assert [line.split()[1] for line in lines] == ["2/6", "4/6", "6/6"]
    assert all("train_loss=" in line for line in lines)
    with open(out / "metrics.csv") as f:
        assert [row["iteration"] for row in csv.DictReader(f)] == ["2", "3", "4", "6", "6"]
