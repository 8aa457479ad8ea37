"""Each fast path of the training step gives the plain step's results, within tolerance: on the
CPU, and on CUDA where there is a GPU (benchmarks/gpu_session.sh runs these there)."""

import contextlib
import sys
from typing import NamedTuple

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

import reslab
from reslab.errors import ReslabError
from reslab.train.config import resolve
from reslab.train.engine import Trainer, train
from reslab.train.step import TrainStep, device_defaults
from tests.data_fixtures import write_tiny_fashion_mnist

LRS = (0.1, 0.1, 0.05, 0.01)  # changing values: a fast path must follow the schedule
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def batches(device="cpu", *, n=len(LRS), size=16, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [(torch.randn(8, 3, size, size, generator=generator).to(device),
             torch.randint(0, 10, (8,), generator=generator).to(device)) for _ in range(n)]


def fresh_model(device="cpu"):
    torch.manual_seed(0)
    return reslab.create_model("resnet8").to(device)


def sgd(model, **options):
    return torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4, **options)


def train_steps(model, data, *, sgd_options=None, channels_last=False, **switches):
    """Run one TrainStep per batch with the LRS schedule; return the model and the losses."""
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    step = TrainStep(model, sgd(model, **(sgd_options or {})), **switches)
    losses = []
    for (x, y), lr in zip(data, LRS):
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        loss, _ = step(x, y, lr=lr)
        losses.append(loss.item())
    return model, losses


def assert_same_weights(a, b, *, atol):
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        torch.testing.assert_close(p.float(), q.float(), rtol=1e-3, atol=atol, msg=name)


def assert_same_updates(model, reference, *, rel):
    """Each tensor moved from the common start as in the reference run, within ``rel`` of the
    reference's own movement: a fast path that skipped or mangled updates is off by ~1."""
    start = fresh_model(next(reference.parameters()).device).state_dict()
    for (name, p), q in zip(model.state_dict().items(), reference.state_dict().values()):
        if q.is_floating_point():
            moved = (q - start[name]).norm()
            assert moved > 0, name
            assert (p.float() - q).norm() <= rel * moved, name


class Plain(NamedTuple):
    """The reference run: the plain step (for-loop SGD, fp32, contiguous) on ``device``."""

    model: torch.nn.Module
    losses: list[float]
    device: str


@contextlib.contextmanager
def true_fp32_cuda():
    """CUDA convolutions and matmuls in true fp32 (no TF32), with deterministic cuDNN kernels."""
    switches = [(torch.backends.cudnn, "allow_tf32", False),
                (torch.backends.cuda.matmul, "allow_tf32", False),
                (torch.backends.cudnn, "deterministic", True),
                (torch.backends.cudnn, "benchmark", False)]
    saved = [getattr(owner, name) for owner, name, _ in switches]
    for owner, name, value in switches:
        setattr(owner, name, value)
    try:
        yield
    finally:
        for (owner, name, _), value in zip(switches, saved):
            setattr(owner, name, value)


@pytest.fixture(scope="module", params=["cpu", pytest.param("cuda", marks=needs_cuda)])
def plain(request):
    """The plain step's run on each device; on CUDA in true fp32 and with deterministic kernels
    (for the fast paths' runs too), so that they are held to the CPU's tolerances."""
    device = request.param
    with true_fp32_cuda() if device == "cuda" else contextlib.nullcontext():
        model, losses = train_steps(fresh_model(device), batches(device),
                                    sgd_options={"foreach": False})
        yield Plain(model, losses, device)


def test_the_plain_step_is_the_textbook_sgd_iteration():
    """The reference of every fast path, checked in turn against a hand-written loop: forward,
    cross-entropy (here with label smoothing), backward, SGD at the scheduled lr."""
    model = fresh_model()
    optimizer = sgd(model, foreach=False, nesterov=True)
    losses = []
    for (x, y), lr in zip(batches(), LRS):
        for group in optimizer.param_groups:
            group["lr"] = lr
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x), y, label_smoothing=0.1)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    stepped, step_losses = train_steps(fresh_model(), batches(), label_smoothing=0.1,
                                       sgd_options={"foreach": False, "nesterov": True})
    assert_same_weights(stepped, model, atol=1e-6)
    assert step_losses == pytest.approx(losses, rel=1e-6)


def test_the_trainer_takes_its_recipe_from_the_config(tmp_path):
    write_tiny_fashion_mnist(tmp_path, train=32, test=16)
    trainer = Trainer(resolve({
        "model": "resnet8", "data": "fashion-mnist", "data_dir": str(tmp_path),
        "out": str(tmp_path / "run"), "iters": 1, "batch_size": 16, "device": "cpu", "lr": 0.07,
        "momentum": 0.8, "weight_decay": 3e-4, "nesterov": True, "label_smoothing": 0.2,
        "train_split": "train", "val_split": "test", "test_split": None,
    }), progress=False)
    group = trainer.optimizer.param_groups[0]
    assert (group["lr"], group["momentum"], group["weight_decay"], group["nesterov"]) == (
        0.07, 0.8, 3e-4, True)
    assert trainer.step.label_smoothing == 0.2
    assert trainer.run().finished


@pytest.mark.parametrize("options", [{"foreach": True}, {"fused": True}])
def test_foreach_and_fused_sgd_match_the_loop(plain, options):
    model, losses = train_steps(fresh_model(plain.device), batches(plain.device),
                                sgd_options=options)
    assert_same_weights(model, plain.model, atol=1e-6)
    assert losses == pytest.approx(plain.losses, rel=1e-6)


def test_channels_last_matches(plain):
    model, losses = train_steps(fresh_model(plain.device), batches(plain.device),
                                channels_last=True)
    assert_same_weights(model, plain.model, atol=1e-4)
    assert_same_updates(model, plain.model, rel=1e-3)
    assert losses == pytest.approx(plain.losses, rel=1e-4)


def test_bf16_autocast_is_close(plain):
    model, losses = train_steps(fresh_model(plain.device), batches(plain.device), amp=True)
    assert losses == pytest.approx(plain.losses, rel=3e-2)  # bf16 keeps 8 bits of mantissa
    assert_same_weights(model, plain.model, atol=2e-2)
    assert_same_updates(model, plain.model, rel=0.5)  # measured on the CPU: at most 0.2


@pytest.mark.slow
def test_compile_step_matches(plain):
    model, losses = train_steps(fresh_model(plain.device), batches(plain.device),
                                sgd_options={"fused": True}, compile_step=True)
    assert_same_weights(model, plain.model, atol=1e-4)
    assert losses == pytest.approx(plain.losses, rel=1e-4)


@needs_cuda
@pytest.mark.parametrize("amp", [False, True])
def test_cuda_graphs_match_the_eager_step(amp):
    data = batches("cuda", n=len(LRS))  # 3 warm-up steps, the capture, then replays
    data += data
    schedule = LRS + LRS[::-1]

    def run(**switches):
        model = fresh_model("cuda")
        step = TrainStep(model, sgd(model, fused=True), amp=amp, **switches)
        return model, [step(x, y, lr=lr)[0].item() for (x, y), lr in zip(data, schedule)]

    eager, eager_losses = run()
    graphed, graphed_losses = run(cuda_graphs=True)
    assert_same_weights(graphed, eager, atol=1e-3 if amp else 1e-4)
    assert graphed_losses == pytest.approx(eager_losses, rel=1e-2 if amp else 1e-4)


@pytest.mark.parametrize(("switches", "sgd_options", "message"), [
    ({}, {"foreach": True}, "needs fused SGD"),
    ({"compile_step": True}, {"fused": True}, "one of cuda_graphs and compile_step"),
    ({"after_backward": lambda: None}, {"fused": True}, "training monitor"),
    ({}, {"fused": True}, "needs a CUDA device" if not torch.cuda.is_available() else None),
])  # fmt: skip
def test_cuda_graphs_refuses_what_a_capture_cannot_do(switches, sgd_options, message):
    if message is None:
        pytest.skip("CUDA is available: the device check passes")
    model = fresh_model()
    with pytest.raises(ReslabError, match=message):
        TrainStep(model, sgd(model, **sgd_options), cuda_graphs=True, **switches)


def test_after_backward_sees_gradients_before_the_update():
    model = fresh_model()
    before = model.fc.weight.detach().clone()
    seen = []

    def hook():
        seen.append((model.fc.weight.grad is not None, torch.equal(model.fc.weight, before)))

    step = TrainStep(model, sgd(model), after_backward=hook)
    x, y = batches(n=1)[0]
    step(x, y, lr=0.1)
    assert seen == [(True, True)] and not torch.equal(model.fc.weight, before)


def test_device_defaults():
    config = resolve({"device": "cpu"})
    assert config.channels_last is None and config.fused_sgd
    assert device_defaults(config, torch.device("cpu")).channels_last is True
    assert device_defaults(config, torch.device("cuda")).channels_last is True
    assert device_defaults(config, torch.device("mps")).channels_last is False
    explicit = resolve({"device": "cpu", "channels_last": False})
    assert device_defaults(explicit, torch.device("cpu")).channels_last is False


def test_engine_switches_train_the_same(tmp_path):
    (tmp_path / "data").mkdir()
    write_tiny_fashion_mnist(tmp_path / "data", train=32, test=16)
    common = dict(model="resnet8", data="fashion-mnist", data_dir=str(tmp_path / "data"),
                  iters=3, eval_every=3, log_every=3, batch_size=16, device="cpu", seed=1,
                  deterministic=True, train_split="train", val_split=None, test_split="test",
                  progress=False)
    default = train(**common, out=str(tmp_path / "default"))
    switched = train(**common, fused_sgd=False, channels_last=False, out=str(tmp_path / "other"))
    a, b = (load_file(run.run_dir / "last.safetensors") for run in (default, switched))
    for key in a:  # channels-last convolutions sum in another order: 2e-4 apart on 1 thread
        torch.testing.assert_close(b[key].float(), a[key].float(), rtol=1e-3, atol=5e-4, msg=key)
    saved = (default.run_dir / "config.toml").read_text()
    assert "channels_last = true" in saved and "fused_sgd = true" in saved  # as resolved


HOST_READS = ("item", "tolist", "numpy", "cpu", "__bool__", "__float__", "__int__", "__index__")


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=needs_cuda)])
def test_training_loop_reads_nothing_back_between_log_steps(device, tmp_path, monkeypatch):
    """No host-device sync in the loop: batches, steps and the running loss/error stay on the
    device; values are read back only at log and evaluation steps. Every way a tensor's value
    reaches Python is recorded with the loop's phase and iteration. On CUDA, torch's sync debug
    mode also turns any synchronising call inside the ops of a step or a batch fetch (a
    ``nonzero``, a boolean mask, a blocking copy) into an error."""
    engine = sys.modules["reslab.train.engine"]
    phase, reads = ["setup"], []
    trainers = []

    def enter(name):  # the loop enters phase ``name``; syncs are errors in steps and fetches
        phase[0] = name
        if device == "cuda":
            torch.cuda.set_sync_debug_mode("error" if name in ("step", "fetch") else "default")

    def recording(name):
        original = getattr(torch.Tensor, name)

        def read(self, *args, **kwargs):
            if trainers:
                reads.append((phase[0], trainers[0].iteration, name))
            return original(self, *args, **kwargs)
        return read

    class FlaggedStep(engine.TrainStep):
        def __call__(self, *args, **kwargs):
            enter("step")
            try:
                return super().__call__(*args, **kwargs)
            finally:
                enter("loop")

    def flagged_batches(loader):
        for batch in engine_endless(loader):
            enter("loop")
            yield batch
            enter("fetch")

    engine_endless = engine.endless
    monkeypatch.setattr(engine, "TrainStep", FlaggedStep)
    monkeypatch.setattr(engine, "endless", flagged_batches)
    (tmp_path / "data").mkdir()
    write_tiny_fashion_mnist(tmp_path / "data", train=64, test=16)
    config = resolve(dict(model="resnet8", data="fashion-mnist", data_dir=str(tmp_path / "data"),
                          iters=12, eval_every=8, log_every=4, batch_size=8, device=device,
                          train_split="train", val_split=None, test_split="test",
                          out=str(tmp_path / "run")))
    trainer = engine.Trainer(config, progress=False)
    for name in HOST_READS:
        monkeypatch.setattr(torch.Tensor, name, recording(name))
    trainers.append(trainer)
    enter("fetch")
    try:
        trainer.run()
    finally:
        enter("setup")
    trainers.clear()
    assert reads, "the log steps read the loss and error back: the recording must see them"
    assert [r for r in reads if r[0] in ("step", "fetch")] == []
    assert {iteration for _, iteration, _ in reads} <= {4, 8, 12}  # log (and eval) steps only


@pytest.mark.parametrize("backend", ["aot_eager", pytest.param("inductor", marks=pytest.mark.slow)])
def test_compiled_model_matches(plain, backend):
    """``compile=True`` (torch.compile of the model): the traced forward and backward give the
    eager results. aot_eager traces like inductor without generating code, so it runs in the
    default suite; inductor itself (a cold compile takes minutes on 2 cores) is in the slow one."""
    model = fresh_model(plain.device)
    _, losses = train_steps(torch.compile(model, backend=backend), batches(plain.device),
                            sgd_options={"foreach": False})
    assert_same_weights(model, plain.model, atol=1e-4)
    assert_same_updates(model, plain.model, rel=1e-3)
    assert losses == pytest.approx(plain.losses, rel=1e-4)


def test_engine_compiles_the_model_when_asked(tmp_path, monkeypatch):
    compiled = []
    real_compile = torch.compile

    def compile_cheaply(model, **options):
        compiled.append(model)
        return real_compile(model, backend="aot_eager")

    monkeypatch.setattr(torch, "compile", compile_cheaply)
    (tmp_path / "data").mkdir()
    write_tiny_fashion_mnist(tmp_path / "data", train=32, test=16)
    common = dict(model="resnet8", data="fashion-mnist", data_dir=str(tmp_path / "data"),
                  iters=3, eval_every=3, log_every=3, batch_size=16, device="cpu", seed=1,
                  train_split="train", val_split=None, test_split="test", progress=False)
    eager = train(**common, out=str(tmp_path / "eager"))
    assert compiled == []
    traced = train(**common, compile=True, out=str(tmp_path / "compiled"))
    assert len(compiled) == 1 and isinstance(compiled[0], torch.nn.Module)
    a, b = (load_file(run.run_dir / "last.safetensors") for run in (eager, traced))
    assert a.keys() == b.keys() and "_orig_mod" not in "".join(b)  # plain torchvision keys
    for key in a:
        torch.testing.assert_close(b[key].float(), a[key].float(), rtol=1e-3, atol=1e-4, msg=key)
