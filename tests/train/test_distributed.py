"""Training on several processes (DDP, gloo on CPU): two ranks against one, resuming across
rank counts, evaluation all-reduced exactly, and bad input.

Ranks are forked from the test process with torchrun's environment (one thread each), so they
share its imports; the slow tests start real ``reslab train --nproc 2`` processes.
"""

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import matplotlib.pyplot  # noqa: F401 - imported once here, not in every forked rank
import pytest
import torch
import torch.multiprocessing as mp
import torch.utils.tensorboard  # noqa: F401 - likewise
from safetensors.torch import load_file

from reslab.cli import main
from reslab.data import TensorLoader, load_arrays
from reslab.errors import RankLost
from reslab.eval.metrics import evaluate
from reslab.train.distributed import CPUSyncBatchNorm, all_reduce_sum, join
from reslab.train import engine
from reslab.train.engine import train
from tests.data_fixtures import write_tiny_fashion_mnist

SEED = 3
# NCHW, not the CPU's channels-last default: oneDNN's channels-last convolutions sum in an
# order that depends on the batch size (2e-4 apart between a batch of 16 and two of 8), which
# would hide what these tests check, that the ranks together make the one-process step.
TINY = dict(model="resnet8", data="fashion-mnist", iters=8, eval_every=4, log_every=1,
            batch_size=16, device="cpu", deterministic=True, seed=SEED, channels_last=False,
            train_split="train", val_split="test", test_split="test")
TOLERANCE = 1e-4  # 2 ranks with --sync-bn vs 1 rank (max_difference), measured: 8e-7 on an
# AVX2 CPU, 1.3e-5 on an AVX-512 one (other oneDNN kernels, other rounding)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("fmnist")
    write_tiny_fashion_mnist(root, train=64, test=41)  # 41: no equal split over 2 ranks
    return root


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_ranks(world_size, fn, *args):
    """``fn(rank, *args)`` in ``world_size`` forked processes set up as torchrun sets them up."""
    mp.start_processes(_rank_main, args=(world_size, free_port(), fn, args), nprocs=world_size,
                       start_method="fork")


def _rank_main(rank, world_size, port, fn, args):
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), OMP_NUM_THREADS="1")
    torch.set_num_threads(1)
    fn(rank, *args)


def _train(rank, kwargs, record=None):
    """Train; with ``record``, write the training loader's (epoch, start, stop) positions."""
    shards = []
    if record:
        shard = TensorLoader.shard

        def recording(loader, batch, num_samples):
            lo, hi = shard(loader, batch, num_samples)
            if loader.train and loader.seed == SEED:
                shards.append((loader.epoch, lo, hi))
            return lo, hi

        TensorLoader.shard = recording  # in this forked rank only
    train(**kwargs, progress=False)
    if record:
        Path(f"{record}-{rank}.json").write_text(json.dumps(shards))


def losses(run_dir):
    rows = csv.DictReader((run_dir / "metrics.csv").read_text().splitlines())
    return [float(r["train_loss"]) for r in rows if r["train_loss"]]


def max_difference(run_a, run_b, *, parameters_only=False):
    """Largest |a - b| / (1 + |a|) over the final weights (and BN statistics) of two runs."""
    a, b = load_file(run_a / "last.safetensors"), load_file(run_b / "last.safetensors")
    assert a.keys() == b.keys()
    keys = [k for k in a if a[k].is_floating_point()
            and not (parameters_only and "running_" in k)]
    return max(((a[k] - b[k]).abs() / (1 + a[k].abs())).max().item() for k in keys)


@pytest.fixture(scope="module")
def one_rank(data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "one"
    run_ranks(1, _train, dict(TINY, data_dir=str(data_dir), precise_bn=2, out=str(out)))
    return out


def test_two_ranks_with_sync_bn_match_one(data_dir, one_rank, tmp_path):
    """Same global batch and seed: the loss curve and weights of one process (precise BN
    included); without --sync-bn each rank's BN sees half the batch and the run drifts."""
    common = dict(TINY, data_dir=str(data_dir), precise_bn=2)
    run_ranks(2, _train, dict(common, sync_bn=True, out=str(tmp_path / "sync")))
    run_ranks(2, _train, dict(common, out=str(tmp_path / "per-rank")))
    assert losses(tmp_path / "sync") == pytest.approx(losses(one_rank), rel=TOLERANCE)
    synced = max_difference(one_rank, tmp_path / "sync")
    assert synced < TOLERANCE
    drift = max_difference(one_rank, tmp_path / "per-rank")  # measured: 0.12
    assert drift > 100 * synced
    per_rank = torch.tensor(losses(tmp_path / "per-rank"))
    assert len(per_rank) == TINY["iters"] and per_rank.isfinite().all()


@pytest.mark.parametrize(("first", "then"), [(2, 1), (1, 2)])
def test_resume_on_another_rank_count(first, then, data_dir, one_rank, tmp_path):
    """Stop after 3 of 8 iterations on ``first`` ranks, finish on ``then``: every sample of
    both epochs is drawn exactly once, and the parameters are those of the one-rank run (not
    the BN statistics: precise BN's own loader starts afresh after a resume)."""
    out, record = tmp_path / "run", tmp_path / "positions"
    common = dict(TINY, data_dir=str(data_dir), precise_bn=2, sync_bn=True)
    run_ranks(first, _train, dict(common, out=str(out), stop_after=3), f"{record}-a")
    state = torch.load(out / "trainer_state.pt", weights_only=True)
    assert state["iteration"] == 3 and state["loader"]["samples_seen"] == 3 * 16
    run_ranks(then, _train, {"resume": str(out)}, f"{record}-b")
    positions = {}
    for path in tmp_path.glob("positions-*.json"):
        for epoch, lo, hi in json.loads(path.read_text()):
            positions.setdefault(epoch, []).extend(range(lo, hi))
    assert sorted(positions) == [0, 1]
    for epoch, seen in positions.items():
        assert sorted(seen) == list(range(64)), f"epoch {epoch}: a sample twice or skipped"
    assert max_difference(one_rank, out, parameters_only=True) < TOLERANCE


def _evaluate(rank, data_dir, out):
    with join("cpu", timeout_s=60) as world:
        arrays = load_arrays("fashion-mnist", str(data_dir), "test")
        loader = TensorLoader(arrays.images, arrays.labels, batch_size=10, device="cpu",
                              train=False, rank=world.rank, world_size=world.world_size)
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(28 * 28, 10))
        result = evaluate(model, loader, num_classes=10, device=world.device,
                          reduce=all_reduce_sum)
    if rank == 0:
        Path(out).write_text(json.dumps(result.to_dict()))


def test_evaluation_on_two_ranks_equals_one(data_dir, tmp_path):
    """41 samples in batches of 10 over 2 ranks: shards of 5 and 5, ..., then 1 and 0."""
    run_ranks(1, _evaluate, data_dir, tmp_path / "one.json")
    run_ranks(2, _evaluate, data_dir, tmp_path / "two.json")
    one = json.loads((tmp_path / "one.json").read_text())
    two = json.loads((tmp_path / "two.json").read_text())
    assert one["count"] == 41 and sum(1 for row in zip(*one["confusion"]) if any(row)) > 1
    for key in ("count", "confusion", "top1_error", "top5_error", "loss"):
        assert two[key] == one[key], key


def _sync_bn_step(rank, out):
    with join("cpu", timeout_s=60) as world:
        torch.manual_seed(0)
        x, weight = torch.randn(8, 3, 4, 4) * 3 + 1, torch.randn(8, 3, 4, 4)
        shard = slice(4 * world.rank, 4 * world.rank + 4) if world.world_size == 2 else slice(None)
        bn = CPUSyncBatchNorm(3) if world.world_size == 2 else torch.nn.BatchNorm2d(3)
        torch.nn.init.uniform_(bn.weight), torch.nn.init.uniform_(bn.bias)
        x = x[shard].requires_grad_()
        (bn(x) * weight[shard]).sum().backward()
        grads = [all_reduce_sum(p.grad) for p in (bn.weight, bn.bias)]
        torch.save({"y": bn(x).detach(), "x_grad": x.grad, "param_grads": grads,
                    "stats": [bn.running_mean, bn.running_var]}, f"{out}-{rank}.pt")


class AheadClock:
    """The ``time`` module an hour ahead (its wall clock; its other functions unchanged)."""

    def __getattr__(self, name):
        return getattr(time, name)

    def time(self):
        return time.time() + 3600

    def strftime(self, form, when=None):
        return time.strftime(form, time.localtime(self.time()) if when is None else when)


def _train_in(rank, folder, kwargs):
    """Train with ``folder`` as the working directory, rank 1's clock an hour ahead."""
    os.chdir(folder)
    if rank:
        engine.time = AheadClock()  # in this forked rank only
    result = train(**kwargs, progress=False)
    Path(f"rank{rank}.txt").write_text(str(result.run_dir))


def test_default_out_folder_is_one_for_all_ranks(data_dir, tmp_path):
    """Without --out, every rank names the run folder by rank 0's clock, not its own."""
    run_ranks(2, _train_in, tmp_path, dict(TINY, data_dir=str(data_dir), iters=2, eval_every=2))
    folders = list((tmp_path / "runs").iterdir())
    assert len(folders) == 1 and (folders[0] / "last.safetensors").is_file()
    for rank in (0, 1):
        assert (tmp_path / (tmp_path / f"rank{rank}.txt").read_text()) == folders[0]


def test_cpu_sync_batch_norm_is_batch_norm_of_the_global_batch(tmp_path):
    run_ranks(1, _sync_bn_step, tmp_path / "one")
    run_ranks(2, _sync_bn_step, tmp_path / "two")
    one = torch.load(tmp_path / "one-0.pt", weights_only=True)
    two = [torch.load(tmp_path / f"two-{r}.pt", weights_only=True) for r in (0, 1)]
    for key in ("y", "x_grad"):
        torch.testing.assert_close(torch.cat([t[key] for t in two]), one[key])
    for r in (0, 1):
        for key in ("param_grads", "stats"):
            for a, b in zip(two[r][key], one[key]):
                torch.testing.assert_close(a, b)


# -- bad input ---------------------------------------------------------------------------------


def _one_error_line(capsys, message):
    err = capsys.readouterr().err
    assert err.startswith("reslab: error:") and message in err, err
    assert len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("rank", [1, 0])
def test_unreachable_rendezvous_is_one_line_within_the_timeout(rank, monkeypatch, capsys):
    """Rank 1 finds nothing at a closed localhost port; rank 0 waits for a rank 1 that never
    comes. Both give up after --dist-timeout."""
    monkeypatch.setenv("RANK", str(rank)), monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", str(rank)), monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(free_port()))  # closed: nothing listens there
    code = main(["train", "--data", "fashion-mnist", "--device", "cpu", "--dist-timeout", "2"])
    assert code == 2
    _one_error_line(capsys, f"rank {rank} of 2 (rendezvous 127.0.0.1:")


@pytest.fixture()
def fake_gpus(monkeypatch):
    """Claim one CUDA device (checked before any CUDA call)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--nproc", "0"], "--nproc must be at least 1, got 0"),
        (["--nproc", "3", "--device", "cpu"],
         "the global batch 16 does not divide into --nproc 3 equal shards"),
        (["--nproc", "2", "--device", "cuda"],
         "local rank 1 needs cuda:1 but this machine has 1 CUDA device(s)"),
        (["--nproc", "2", "--device", "cuda:0"], "device 'cuda:0' names one GPU"),
        (["--nproc", "two"], "argument --nproc: invalid int value: 'two'"),
    ],
)
def test_nproc_bad_input(argv, message, fake_gpus, data_dir, capsys):
    try:
        code = main(["train", "--data", "fashion-mnist", "--data-dir", str(data_dir),
                     "--batch-size", "16", *argv])
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    assert code == 2
    _one_error_line(capsys, message)


def test_nproc_under_torchrun_and_bad_environment(monkeypatch, capsys):
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(["train", "--nproc", "2"]) == 2
    _one_error_line(capsys, "--nproc starts torchrun itself")
    monkeypatch.setenv("RANK", "abc")
    assert main(["train", "--device", "cpu"]) == 2
    _one_error_line(capsys, "environment variable RANK='abc' is not an integer")


def test_resume_with_another_global_batch_is_refused(tmp_path, capsys):
    """The loader position and the schedule count global batches: refused, one line, through
    the single-process path and the --nproc launcher alike."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.toml").write_text('data = "fashion-mnist"\nbatch_size = 16\n')
    (run / "trainer_state.pt").write_bytes(b"")
    for extra in ([], ["--nproc", "2"]):
        assert main(["train", "--resume", str(run), "--batch-size", "32", *extra]) == 2
        _one_error_line(capsys, "was trained with global batch 16, not 32")


# -- the real launcher (slow: every rank is a fresh Python that imports torch) -----------------


def _reslab(*argv, **popen):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(Path(__file__).parents[2]))
    return subprocess.Popen([sys.executable, "-m", "reslab", *argv], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **popen)


def _flags(config):
    return [f"--set={key}={str(value).lower() if isinstance(value, bool) else value}"
            for key, value in config.items()]


@pytest.mark.slow
def test_nproc_launches_torchrun_end_to_end(data_dir, tmp_path):
    out = tmp_path / "run"
    process = _reslab("train", "--nproc", "2", "--sync-bn", "--data-dir", str(data_dir),
                      "--out", str(out), *_flags(TINY))
    stdout, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, stderr
    assert stdout.count("run finished at iteration 8") == 1  # rank 0 reports, rank 1 is quiet
    assert stdout.count("iter 8/8") == 2  # rank 0's log: the train row and the eval row
    state = torch.load(out / "trainer_state.pt", weights_only=True)
    assert state["iteration"] == 8 and state["loader"] == {"epoch": 1, "batch": 4, "seed": SEED,
                                                          "samples_seen": 128}
    assert len(losses(out)) == 8 and not list(out.glob(".*.tmp"))


@pytest.mark.slow
def test_a_killed_rank_stops_the_run_and_resume_works(data_dir, tmp_path):
    """SIGKILL rank 1 after the first checkpoint (as the OOM killer would): the launcher exits
    with one line, the checkpoint is intact, and one process resumes it."""
    out = tmp_path / "run"
    config = dict(TINY, iters=100_000, eval_every=2, log_every=50)
    process = _reslab("train", "--nproc", "2", "--data-dir", str(data_dir), "--out", str(out),
                      *_flags(config))
    deadline = time.monotonic() + 400
    while not (out / "trainer_state.pt").exists():
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.2)
    os.kill(_rank_pid(process.pid, rank=1), signal.SIGKILL)
    _, stderr = process.communicate(timeout=120)  # torchrun tears the group down: no hang
    assert process.returncode == 1
    assert stderr.strip().splitlines()[-1].startswith("reslab: rank 1 of 2 was killed by SIGKILL")
    state = torch.load(out / "trainer_state.pt", weights_only=True)
    resumed = train(resume=out, stop_after=2, progress=False)
    assert resumed.iteration == state["iteration"] + 2


def _rank_pid(launcher: int, *, rank: int) -> int:
    """The process id of ``rank`` among the launcher's children (Linux /proc)."""
    for proc in Path("/proc").iterdir():
        try:
            status = (proc / "status").read_text()
            environ = (proc / "environ").read_bytes().split(b"\0")
        except (OSError, ValueError):
            continue
        if f"\nPPid:\t{launcher}\n" in status and f"RANK={rank}".encode() in environ:
            return int(proc.name)
    raise AssertionError(f"no rank {rank} under process {launcher}")


def _lose_rank_one(rank, data_dir, out):
    """Rank 1 ends during set-up (as after its own error); rank 0 records what it raised."""
    if rank == 1:
        engine.build_inputs = lambda *args, **kwargs: os._exit(0)
    try:
        train(**TINY, data_dir=str(data_dir), out=str(out), progress=False)
    except RankLost as exc:
        Path(f"{out}.error").write_text(str(exc))


def test_a_stopped_rank_is_one_line_on_the_others(data_dir, tmp_path, monkeypatch, capsys):
    """The survivor's failed collective is RankLost (one CLI line, status 1), no traceback."""
    run_ranks(2, _lose_rank_one, data_dir, tmp_path / "run")
    message = (tmp_path / "run.error").read_text()
    assert message.startswith("rank 0 of 2 stopped because another rank stopped (its message "
                              "is above; here: ")
    assert "by peer" in message and ".cc:" not in message  # closed or reset; no gloo source

    def lost(*args, **kwargs):
        raise RankLost(message)

    monkeypatch.setattr(engine, "train", lost)
    assert main(["train", "--model", "resnet8"]) == 1
    assert capsys.readouterr().err == f"reslab: {message}\n"
