"""The training loop, readable top to bottom: the paper's recipe (Sec. 3.4, 4.2) with SGD,
checkpoints that a crash cannot damage (Ctrl-C and SIGTERM checkpoint first; a hard crash loses
at most the iterations since the last ``eval_every`` checkpoint), and an exact resume.

    result = reslab.train(model="resnet20", data="cifar10", data_dir="data")
"""

from __future__ import annotations

import logging
import math
import random
import signal
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from reslab.analysis.monitor import Monitor
from reslab.analysis.summary import check_model_runs
from reslab.errors import ReslabError
from reslab.eval.metrics import EvalResult, evaluate
from reslab.io import check_output_path
from reslab.models import create_model, model_info
from reslab.models.fuse import fold_batchnorm
from reslab.runtime import bf16_supported, seed_everything, select_device
from reslab.train.checkpoint import (
    RUN_CHECKPOINTS,
    checkpoint_file,
    checkpoint_options,
    load_trainer_state,
    load_weights_into,
    read_weights,
    save_trainer_state,
    save_weights,
    saved_meta,
)
from reslab.train.config import (
    PLACEMENT_KEYS,
    TrainConfig,
    coerce,
    model_options,
    read_toml,
    resolve,
)
from reslab.train.distributed import (
    World,
    all_reduce_sum,
    average_buffers,
    data_parallel,
    join,
    sum_over_ranks,
)
from reslab.train.ema import WeightAverage
from reslab.train.inputs import Inputs, build_inputs, endless
from reslab.train.precise_bn import update_bn_stats
from reslab.train.rundir import RunDir
from reslab.train.schedule import LRSchedule
from reslab.train.step import TrainStep, device_defaults

log = logging.getLogger(__name__)


@dataclass
class RunResult:
    """What a run ended with.

    Attributes:
        run_dir: The run folder.
        iteration: Iterations completed.
        finished: True when the run reached its last iteration.
        val_error: Last validation top-1 error (None without a val split; a resume of a
            finished run gives the one its last checkpoint recorded).
        best_val_error: Best validation top-1 error.
        test_error: Last test top-1 error (None without a test split; likewise).
        test: The last test evaluation of this call (None when it evaluated nothing).
    """

    run_dir: Path
    iteration: int
    finished: bool
    val_error: float | None
    best_val_error: float | None
    test_error: float | None
    test: EvalResult | None


def train(
    config: TrainConfig | dict[str, Any] | None = None,
    *,
    resume: str | Path | None = None,
    stop_after: int | None = None,
    progress: bool | None = None,
    **overrides: Any,
) -> RunResult:
    """Train a model with the paper's recipe (the defaults of :class:`TrainConfig`).

    Args:
        config: A :class:`TrainConfig`, a dict of its keys, or None (defaults + ``overrides``):
            the base under ``overrides``, as a ``--config`` file is under the flags (a length in
            ``overrides`` replaces its ``iters``/``epochs`` and scales its milestones).
        resume: A run folder to continue exactly where its last checkpoint stopped.
        stop_after: Stop (with a checkpoint) after this many iterations of this call, for jobs
            in time-limited slots; ``resume`` continues.
        progress: Show a progress bar (default: when stderr is a terminal).
        **overrides: Config keys, e.g. ``model="resnet56", iters=6400`` (not both ``iters``
            and ``epochs``).

    Returns:
        The :class:`RunResult`.
    """
    if resume is not None:
        config = resumed_config(Path(resume), overrides)
    else:  # the base under ``overrides``, as a --config file is under the flags
        base = config.to_dict() if isinstance(config, TrainConfig) else config
        config = resolve(overrides, base=base)
    with join(config.device, timeout_s=config.dist_timeout) as world:  # torchrun's ranks
        trainer = Trainer(config, resume=resume is not None, progress=progress, world=world)
        return trainer.run(stop_after=stop_after)


def resumed_config(run_dir: Path, overrides: dict[str, Any]) -> TrainConfig:
    """The configuration a resume of ``run_dir`` runs with: the saved one, with only the keys
    that do not change the training (device, workers, out, dist_timeout, and data_dir: the same
    files moved, or on another node) taken from ``overrides``.

    Args:
        run_dir: The run folder to resume (with ``config.toml`` and ``trainer_state.pt``).
        overrides: Config keys given for the resume (e.g. command-line flags).

    Returns:
        The resolved configuration.

    Raises:
        ReslabError: Not a run folder, one without a checkpoint (the message says how to
            start it again), or ``overrides`` change the global batch or any other key that
            shapes the training (refused rather than ignored).
    """
    if not (run_dir / "config.toml").is_file():
        raise ReslabError(f"{run_dir} is not a run folder (no config.toml)")
    if not (run_dir / "trainer_state.pt").is_file():
        # Weights without their trainer state (a kill between the two writes of the first
        # checkpoint) refuse a new run in the folder (_check_free): they must go first.
        orphans = [name for name in RUN_CHECKPOINTS if (run_dir / name).exists()]
        first = (f"move {' and '.join(orphans)} away (saved without it), then " if orphans
                 else "")
        raise ReslabError(f"{run_dir} has no checkpoint to resume from (no trainer_state.pt); "
                          f"{first}start it again with --config {run_dir / 'config.toml'} "
                          f"--out {run_dir}")
    saved = read_toml(run_dir / "config.toml")
    batch = coerce("batch_size", overrides.get("batch_size", saved["batch_size"]))
    if batch != saved["batch_size"]:
        raise ReslabError(
            f"{run_dir} was trained with global batch {saved['batch_size']}, not {batch}: its data "
            "position and schedule count those batches (any rank count dividing it can resume); "
            f"start a new run with --init {run_dir / 'last.safetensors'} to change it")
    refused = sorted(k for k, v in overrides.items() if k not in (*PLACEMENT_KEYS, "batch_size")
                     and coerce(k, v) != saved.get(k))
    if refused:
        raise ReslabError(
            f"--resume continues {run_dir} with its saved configuration; it cannot change "
            f"{', '.join(refused)} (start a new run with --init {run_dir / 'last.safetensors'})")
    changed = {k: v for k, v in overrides.items() if k in PLACEMENT_KEYS}
    return resolve({**changed, "out": str(run_dir)}, base=saved)


class Trainer:
    """One training run: builds the model, data, optimizer and run folder, then loops.

    Args:
        config: The resolved configuration.
        resume: Continue from ``config.out``'s trainer state.
        progress: Progress bar on/off (None: when stderr is a terminal); rank 0 only.
        world: This process's place among torchrun's ranks (:func:`reslab.train.distributed.join`);
            None: a single process on ``config.device``.
    """

    def __init__(self, config: TrainConfig, *, resume: bool = False,
                 progress: bool | None = None, world: World | None = None) -> None:
        self.config = cfg = config
        self.world = world or World(select_device(cfg.device))
        self.rank, self.world_size = self.world.rank, self.world.world_size
        self.is_main = self.rank == 0
        self.device = self.world.device
        self.config = cfg = device_defaults(cfg, self.device)  # channels-last on CUDA and CPU
        init_file, init_state = None, None
        if cfg.init and not resume:  # read first: the checkpoint may fix the bottleneck variant
            init_file = checkpoint_file(cfg.init) if Path(cfg.init).is_dir() else Path(cfg.init)
            init_state, meta = read_weights(init_file)
            variant = checkpoint_options(cfg.model, meta).get("variant")  # torchvision: v1.5
            if cfg.variant is None and variant is not None:
                self.config = cfg = replace(cfg, variant=variant)
        self.amp = cfg.amp and bf16_supported(self.device)
        seed_everything(cfg.seed + self.rank, deterministic=cfg.deterministic)
        self.show_progress = self.is_main and (sys.stderr.isatty() if progress is None
                                               else progress)

        if cfg.out is None:  # the default: runs/<model>-<data>-<time>, runs/ made when missing
            # rank 0's clock on every rank (each rank's own may be a second later: two folders)
            now = sum_over_ranks([time.time() if self.is_main else 0.0], device=self.device)[0]
            stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
            out = Path("runs") / f"{cfg.model}-{cfg.data}-{stamp}"
            if not out.parent.exists():
                out.parent.mkdir(exist_ok=True)
        else:  # a folder the user named: its parent must exist (a typo fails here)
            out = Path(cfg.out)
        check_output_path(out, folder=True)
        if not resume:
            _check_free(out)
        self.inputs: Inputs = build_inputs(cfg, self.device, rank=self.rank,
                                           world_size=self.world_size)
        self.iters_per_epoch = len(self.inputs.train)
        length = cfg.iters if cfg.epochs is None else cfg.epochs
        self.total_iters = max(1, self._in_iters([length])[0])
        milestones = self._in_iters(cfg.milestones)
        (ramp_iters,) = self._in_iters([cfg.lr_ramp])

        self.model_options = model_options(cfg)
        self.model = create_model(cfg.model, num_classes=len(self.inputs.classes),
                                  in_channels=self.inputs.in_channels, **self.model_options)
        check_model_runs(self.model, self.inputs.in_channels, self.inputs.input_size)
        if init_state is not None:
            self._init_from(init_file, init_state)
        self.model.to(self.device)
        if cfg.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.model, step_model = data_parallel(self.model, self.world, sync_bn=cfg.sync_bn)
        self.step_model = torch.compile(step_model) if cfg.compile else step_model

        self.optimizer = torch.optim.SGD(
            self.model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
            weight_decay=cfg.weight_decay, nesterov=cfg.nesterov, fused=cfg.fused_sgd or None,
        )
        self.schedule = LRSchedule(
            base_lr=cfg.lr, total_iters=self.total_iters, kind=cfg.schedule,
            milestones=milestones, decay=cfg.lr_decay, patience=cfg.plateau_patience,
            warmup_lr=cfg.warmup_lr, warmup_error=cfg.warmup_error,
            ramp_iters=min(ramp_iters, self.total_iters - 1),
        )
        # --ema: the average is the run's model (evaluated, saved); SGD trains self.model.
        self.average = WeightAverage(self.model, decay=cfg.ema) if cfg.ema else None
        self.iteration = 0
        self.bn_batches = None  # precise-BN batches, started at the first evaluation
        self.best_val_error: float | None = None
        self.last_eval: dict[str, EvalResult] = {}
        self.log_window = LogWindow(self.device)
        if resume:
            self._load_state(out / "trainer_state.pt")
        refusal = None
        try:  # rank 0 claims the folder: it may be written by another process
            self.run_dir = RunDir(out, enabled=self.is_main,
                                  resume_iteration=self.iteration if resume else None)
        except ReslabError as exc:
            refusal = exc
        if self.world_size > 1 and sum_over_ranks([refusal is not None], device=self.device)[0]:
            refusal = refusal or ReslabError(f"rank 0 cannot write the run folder {out}")
        if refusal is not None:  # every rank stops, rather than wait in its first step
            raise refusal
        with _release_on_error(self.run_dir):
            self.run_dir.write_config(cfg.to_dict(), device=str(self.device),
                                      total_iters=self.total_iters)
            self.monitor = None  # the course's training monitors (reslab.analysis.monitor)
            if cfg.monitor > 0 and self.is_main:
                if cfg.monitor > self.total_iters:
                    log.warning("--monitor %d is longer than the run (%d iterations): the "
                                "monitors record nothing", cfg.monitor, self.total_iters)
                self.monitor = Monitor(self.model, every=cfg.monitor, run_dir=self.run_dir,
                                       csv_path=out / "monitor.csv", start=self.iteration)
            monitor_hook = None if self.monitor is None else (
                lambda: self.monitor.after_backward(self.iteration + 1))
            self.step = TrainStep(self.step_model, self.optimizer, amp=self.amp,
                                  label_smoothing=cfg.label_smoothing,
                                  compile_step=cfg.compile_step, cuda_graphs=cfg.cuda_graphs,
                                  after_backward=monitor_hook)

    # -- set-up helpers ------------------------------------------------------------------------

    def _in_iters(self, points: list[float]) -> list[int]:
        """Points of the run (its length, milestones, the ramp) in iterations: as given, or
        converted from epochs when the run is measured in ``epochs``."""
        scale = 1 if self.config.epochs is None else self.iters_per_epoch
        return [round(p * scale) for p in points]

    def _init_from(self, path: Path, state: dict[str, torch.Tensor]) -> None:
        missing, unexpected = load_weights_into(self.model, state, source=str(path),
                                                allow_new_head=True)
        if self.is_main:
            variant = f" (variant {self.config.variant})" if self.config.variant else ""
            new_head = [k for k in missing if k in state]  # in the file, for another class count
            missing = [k for k in missing if k not in state]
            head = (f"new head {new_head} (the checkpoint's is for "
                    f"{state[new_head[0]].shape[0]} classes); " if new_head else "")
            print(f"init from {path}{variant}: {head}missing keys {missing or 'none'}; "
                  f"unexpected keys {unexpected or 'none'}", file=sys.stderr)

    def _load_state(self, path: Path) -> None:
        state = load_trainer_state(path)
        load_weights_into(self.model, state["model"], source=str(path))
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        self.inputs.train.load_state_dict(state["loader"])
        if self.inputs.bn_loader is not None and state.get("bn_loader"):
            self.inputs.bn_loader.load_state_dict(state["bn_loader"])
        if self.average is not None:
            if state.get("average") is None:
                raise ReslabError(f"trainer state {path} holds no weight average for --ema")
            self.average.module.load_state_dict(state["average"])
        self.iteration = state["iteration"]
        self.best_val_error = state["best_val_error"]
        if self.is_main:  # the other ranks keep their own seeds (seed + rank), and empty windows
            torch.set_rng_state(state["rng"]["torch"])
            random.setstate(state["rng"]["python"])
            if state.get("log_window") is not None:  # absent in files of older reslab versions
                self.log_window.load_state_dict(state["log_window"])

    def checkpoint_meta(self, **extra: Any) -> dict[str, Any]:
        """The metadata stored in every weights file (what ``reslab.load`` needs).

        Args:
            **extra: More keys (they override the standard ones).

        Returns:
            ``model``, ``model_options``, ``num_classes``, ``in_channels``, ``classes``,
            ``input_size``, ``data``, ``preprocess``, ``paper_ref``, ``iteration`` and ``ema``
            (the decay of the weight average the file holds; 0: the trained weights).
        """
        info = model_info(self.config.model)
        return {
            "model": self.config.model, "model_options": self.model_options,
            "num_classes": len(self.inputs.classes), "in_channels": self.inputs.in_channels,
            "classes": self.inputs.classes, "input_size": list(self.inputs.input_size),
            "data": self.config.data, "preprocess": self.inputs.preprocess,
            "paper_ref": info.source, "iteration": self.iteration, "ema": self.config.ema,
            **extra,
        }

    # -- the loop ------------------------------------------------------------------------------

    def run(self, *, stop_after: int | None = None) -> RunResult:
        """Train until the last iteration, a stop request (Ctrl-C, SIGTERM) or ``stop_after``.

        A trainer runs once: it hands its run folder back at the end (continue a stopped run
        with ``train(resume=...)``).

        Args:
            stop_after: Iterations to run in this call at most (None: to the end).

        Returns:
            The :class:`RunResult`.
        """
        if self.run_dir.closed:
            raise RuntimeError("this Trainer has run; continue with train(resume=run_dir)")
        cfg = self.config
        loader = self.inputs.train
        step = self.step
        window = self.log_window
        end = self.total_iters if stop_after is None else min(self.total_iters,
                                                              self.iteration + stop_after)
        bar = tqdm(total=self.total_iters, initial=self.iteration, disable=not self.show_progress,
                   desc=f"{cfg.model} on {cfg.data}", unit="it", dynamic_ncols=True)
        batches = endless(loader)
        window.start_clock()
        # The run folder is handed back (writer.json removed) however the loop ends.
        with self.run_dir, _stop_requests(distributed=self.world_size > 1,
                                          announce=self.is_main) as stop:
            while self.iteration < end and not stop.requested:
                images, labels = next(batches)  # (B, C, H, W) float on device, (B,) int64
                lr = self.schedule.lr(self.iteration)
                loss, logits = step(images, labels, lr=lr)  # (), (B, num_classes); detached
                self.iteration += 1
                if self.average is not None:
                    self.average.update(self.iteration)
                if self.monitor is not None:
                    self.monitor.after_step(self.iteration)
                window.add(loss, logits, labels)
                bar.update(1)

                # A stop logs nothing: the window goes on after the resume (saved in the
                # checkpoint), so a stopped and resumed run logs the rows of a straight one.
                if self.iteration % cfg.log_every == 0 or self.iteration == self.total_iters:
                    elapsed = window.elapsed()
                    loss_total, wrong_total, count, stop_votes = sum_over_ranks(
                        [window.loss, window.wrong, window.seen, stop.signalled],
                        device=self.device)
                    stop.requested = stop.requested or stop_votes > 0  # every rank agrees
                    row = {"iteration": self.iteration, "epoch": self.epoch, "lr": lr,
                           "train_loss": loss_total / count, "train_error": wrong_total / count,
                           "images_per_s": count / elapsed}
                    self.schedule.observe_train_error(row["train_error"])
                    self._report(row, bar)
                    window.clear()
                if self.iteration % cfg.eval_every == 0 or self.iteration == self.total_iters:
                    self._evaluate_and_checkpoint(lr, bar)
            if self.iteration % cfg.eval_every and self.iteration < self.total_iters:
                self._checkpoint()  # stopped early: keep everything done so far
        bar.close()
        test = self.last_eval.get("test")
        val = self.last_eval.get("val")
        # Nothing evaluated in this call (a resume of a finished run): the errors the last
        # checkpoint recorded, when it is of this iteration.
        recorded = {} if self.last_eval else saved_meta(self.run_dir.folder / "last.safetensors")
        if recorded.get("iteration") != self.iteration:
            recorded = {}
        return RunResult(
            run_dir=self.run_dir.folder, iteration=self.iteration,
            finished=self.iteration >= self.total_iters,
            val_error=val.top1_error if val else recorded.get("val_error"),
            best_val_error=self.best_val_error,
            test_error=test.top1_error if test else recorded.get("test_error"), test=test,
        )

    @property
    def epoch(self) -> float:
        """Epochs completed, fractional."""
        return self.iteration / self.iters_per_epoch

    def _report(self, row: dict[str, Any], bar: tqdm) -> None:
        if not self.is_main:
            return
        self.run_dir.log(row)
        text = {k: row[k] for k in ("train_loss", "train_error", "lr", "images_per_s") if k in row}
        if self.show_progress:
            bar.set_postfix({k: f"{v:.3g}" for k, v in text.items()}, refresh=False)
        elif any(row[k] is not None for k in row if k not in ("iteration", "epoch", "lr")):
            # (an evaluation with no val or test split has no numbers to print)
            fields = " ".join(f"{k}={row[k]:.4g}" for k in row if row[k] is not None
                              and k != "iteration")
            print(f"iter {row['iteration']}/{self.total_iters} {fields}", flush=True)

    @property
    def model_to_keep(self) -> nn.Module:
        """The weights evaluated and saved: the trained model, or its average (``--ema``)."""
        return self.model if self.average is None else self.average.module

    def _evaluate_and_checkpoint(self, lr: float, bar: tqdm) -> None:
        kept = self.model_to_keep
        if self.config.precise_bn:
            if self.bn_batches is None:
                self.bn_batches = endless(self.inputs.bn_loader)
            update_bn_stats(kept, self.bn_batches, self.config.precise_bn)
        average_buffers(kept)  # one set of BN statistics on every rank
        net = fold_batchnorm(kept)  # BN folded into the convolutions: faster, same errors
        for role, loader in self.inputs.evals.items():
            self.last_eval[role] = evaluate(net, loader, num_classes=len(self.inputs.classes),
                                            device=self.device, amp=self.amp,
                                            reduce=all_reduce_sum)  # each rank saw a shard
        row = {"iteration": self.iteration, "epoch": self.epoch, "lr": lr}
        val = self.last_eval.get("val")
        if val is not None:
            row["val_error"] = val.top1_error
            self.schedule.observe_val_error(val.top1_error)
        if "test" in self.last_eval:
            row["test_error"] = self.last_eval["test"].top1_error
        self._report(row, bar)
        improved = val is not None and (self.best_val_error is None
                                        or val.top1_error < self.best_val_error)
        if improved:
            self.best_val_error = val.top1_error
        self._checkpoint(best=improved)
        self.run_dir.draw_curves(f"{self.config.model} on {self.config.data}")

    def _checkpoint(self, *, best: bool = False) -> None:
        """Write last.safetensors (and best.safetensors), then the trainer state (every rank
        calls it: the log window is summed over the ranks)."""
        log_window = self.log_window.state_dict()
        if not self.is_main:
            return
        meta = self.checkpoint_meta(
            **{f"{role}_error": r.top1_error for role, r in self.last_eval.items()})
        save_weights(self.run_dir.path("last.safetensors"), self.model_to_keep, meta)
        if best:
            save_weights(self.run_dir.path("best.safetensors"), self.model_to_keep, meta)
        save_trainer_state(self.run_dir.path("trainer_state.pt"), {
            "iteration": self.iteration,
            "model": self.model.state_dict(),
            "average": None if self.average is None else self.average.module.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "loader": self.inputs.train.state_dict(),
            "bn_loader": self.inputs.bn_loader.state_dict() if self.inputs.bn_loader else None,
            "best_val_error": self.best_val_error,
            "rng": {"torch": torch.get_rng_state(), "python": random.getstate()},
            "log_window": log_window,
        })


class LogWindow:
    """The training loss and error summed since the last log line, with its images and clock
    time. The sums stay on the device (no sync per step); every checkpoint saves them, so that
    a run stopped between two log lines logs, once resumed, the rows of an uninterrupted run.

    Args:
        device: Where the sums are kept.
    """

    def __init__(self, device: torch.device) -> None:
        self.loss = torch.zeros((), device=device)  # summed over the images
        self.wrong = torch.zeros((), dtype=torch.int64, device=device)
        self.clear()

    def clear(self) -> None:
        """Start a new window (after a log line)."""
        self.loss.zero_(), self.wrong.zero_()
        self.seen = 0
        self.seconds = 0.0  # before :meth:`start_clock`
        self.start_clock()

    def start_clock(self) -> None:
        """Count time from now on (a resumed window keeps the seconds it had)."""
        self.started = time.perf_counter()

    def add(self, loss: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> None:
        """Add one step.

        Args:
            loss: The step's mean loss, 0-dim.
            logits: (B, num_classes).
            labels: (B,) int64.
        """
        self.loss += loss.detach() * labels.numel()
        self.wrong += (logits.detach().argmax(1) != labels).sum()
        self.seen += labels.numel()

    def elapsed(self) -> float:
        """Seconds of training in the window."""
        return self.seconds + time.perf_counter() - self.started

    def state_dict(self) -> dict[str, float | int]:
        """The window summed over the ranks (a collective: every rank calls it), for the trainer
        state.

        Returns:
            ``loss`` (summed over the images), ``wrong``, ``seen`` and ``seconds``.
        """
        loss, wrong, seen = sum_over_ranks([self.loss, self.wrong, self.seen],
                                           device=self.loss.device)
        return {"loss": loss, "wrong": int(wrong), "seen": int(seen), "seconds": self.elapsed()}

    def load_state_dict(self, state: dict[str, float | int]) -> None:
        """Continue a saved window (on rank 0; the other ranks start empty, as the sums over
        the ranks are what is logged).

        Args:
            state: From :meth:`state_dict`.
        """
        self.loss.fill_(state["loss"])
        self.wrong.fill_(state["wrong"])
        self.seen, self.seconds = state["seen"], state["seconds"]


def _check_free(out: Path) -> None:
    """Refuse a new run in a folder that holds another run: its checkpoint, or weights whose
    trainer state is gone (`reslab eval` of the folder would read them as the new run's)."""
    if (out / "trainer_state.pt").exists():
        raise ReslabError(f"{out} already holds a run; continue it with --resume {out} "
                          "or choose another --out")
    orphans = [name for name in RUN_CHECKPOINTS if (out / name).exists()]
    if orphans:
        raise ReslabError(f"{out} holds {' and '.join(orphans)} of an earlier run but no "
                          "trainer_state.pt to resume it; move them away or choose another "
                          "--out")


@contextmanager
def _release_on_error(run_dir: RunDir):
    """Hand the run folder back when setting up the run fails (the loop's ``with`` does it
    once it runs), so that a Python session that caught the error does not keep it."""
    try:
        yield
    except BaseException:
        run_dir.close()
        raise


class _StopFlag:
    signalled = False  # this process got Ctrl-C or SIGTERM
    requested = False  # the loop stops (distributed: once the ranks agreed at a log step)


@contextmanager
def _stop_requests(*, distributed: bool = False, announce: bool = True):
    """Turn Ctrl-C and SIGTERM into a flag checked between steps, so that the run stops at a
    step boundary with a consistent checkpoint (a second Ctrl-C interrupts at once; a second
    SIGTERM does not: ``timeout``, SLURM and process-group kills may send it twice).

    Distributed runs stop at the next log step, where the ranks agree (they may be signalled at
    different steps), and ignore repeated signals: torchrun's agent forwards the signals it
    gets and kills the ranks still running after its shutdown timeout (30 s).
    """
    flag = _StopFlag()
    previous = {}

    def handler(signum, frame):
        if flag.signalled:
            if distributed or signum != signal.SIGINT:
                return
            raise KeyboardInterrupt
        flag.signalled = True
        flag.requested = flag.requested or not distributed
        if announce:
            when = "at the next log step" if distributed else "after this step"
            again = "" if distributed else "; Ctrl-C again to abort"
            print(f"\nreslab: stopping {when} (checkpoint follows){again}", file=sys.stderr)

    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, handler)
    try:
        yield flag
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
