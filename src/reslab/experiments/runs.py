"""The sub-runs of an experiment: ordinary run folders, trained with the engine, resumed when
unfinished and skipped when finished, and recognised as *active* while another process writes.

A run folder is **finished** when its ``metrics.csv`` has a row at the run's last iteration (the
engine logs it together with the final evaluation). It is **active** (still being written) while
the training process that writes it lives: the engine records itself in ``writer.json`` and
removes it when it ends, also on Ctrl-C (see :func:`reslab.train.run_lock.live_writer`). Active
folders are refused, so that two processes never write one folder and no report reads a
half-trained model; a stopped or crashed run can be resumed at once.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reslab.data import dataset_info
from reslab.errors import ReslabError
from reslab.experiments.report import Report, recipe_text
from reslab.io import atomic_write
from reslab.models.resnet import IMAGENET_ARCHS, check_cifar_depth
from reslab.train.checkpoint import saved_iteration
from reslab.train.config import PLACEMENT_KEYS, check_one_length, read_toml, resolve
from reslab.train.run_lock import live_writer
from reslab.train.rundir import read_metrics

if TYPE_CHECKING:
    from reslab.train.engine import RunResult

# The small version of every experiment (``--quick``): a few hundred iterations of batch 32 on
# the usual training split, the test error at the middle and the end, no validation pass.
# Finishes in about 15 minutes on 2 CPU cores for degradation at depths 20 and 56.
QUICK_RECIPE: dict[str, Any] = {
    "iters": 200, "batch_size": 32, "eval_every": 100, "log_every": 10,
    "val_split": None, "test_split": "test", "monitor": 20,
}


@dataclass(frozen=True)
class RunState:
    """Where a run folder stands.

    Attributes:
        folder: The run folder.
        iteration: Last iteration logged in metrics.csv (0 when none).
        total: The run's last iteration (from config.toml).
        finished: Its ``last.safetensors`` was saved at ``total``: the final evaluation and
            checkpoint are written (a run killed after logging its last training row, during
            that evaluation, is not finished).
        writer: The live process that writes it (:func:`reslab.train.run_lock.live_writer`),
            or None.
        resumable: A trainer state exists to continue from.
    """

    folder: Path
    iteration: int
    total: int
    finished: bool
    writer: dict[str, Any] | None
    resumable: bool

    @property
    def active(self) -> bool:
        """A live process writes the folder (it is still being written)."""
        return self.writer is not None


def run_state(folder: str | Path, *, now: float | None = None) -> RunState:
    """Read a run folder's progress.

    Args:
        folder: A run folder (config.toml, metrics.csv, ...).
        now: The current time (``time.time()`` when None), for writers on other hosts.

    Returns:
        Its :class:`RunState`.

    Raises:
        ReslabError: ``folder`` holds no config.toml.
    """
    folder = Path(folder)
    if not (folder / "config.toml").is_file():
        raise ReslabError(f"{folder} is not a run folder (no config.toml)")
    config = read_toml(folder / "config.toml")
    rows = read_metrics(folder / "metrics.csv")
    iteration = max((int(r["iteration"]) for r in rows), default=0)
    total = _total_iterations(folder, config)
    saved = saved_iteration(folder / "last.safetensors")
    return RunState(folder, iteration, total, saved is not None and saved >= total,
                    live_writer(folder, now=now),
                    (folder / "trainer_state.pt").is_file())


def _total_iterations(folder: Path, config: dict[str, Any]) -> int:
    """The engine's run length, as it recorded it in ``run.json``; for folders written before
    it did: ``iters``, or ``epochs`` times the batches per epoch of the official split size."""
    with contextlib.suppress(FileNotFoundError, json.JSONDecodeError, KeyError, TypeError):
        return int(json.loads((folder / "run.json").read_text())["total_iters"])
    if config.get("epochs") is None:
        return int(config.get("iters", 64000))
    images = dataset_info(config["data"]).counts.get(config.get("train_split", "train"), 0)
    return max(1, round(config["epochs"] * (images // int(config.get("batch_size", 128)))))


def check_idle(state: RunState) -> None:
    """Refuse a run folder that another process is still writing.

    Args:
        state: The folder's :func:`run_state`.

    Raises:
        ReslabError: ``state.active``.
    """
    if state.active:
        raise ReslabError(
            f"run folder {state.folder} is still being written (iteration {state.iteration} of "
            f"{state.total}, by process {state.writer['pid']} on {state.writer['host']}); "
            "wait for it to finish"
        )


def check_depths(depths: Iterable[int]) -> list[int]:
    """Validate CIFAR depths (6n+2, Sec. 4.2) and return them sorted, without repeats.

    Args:
        depths: The depths asked for.

    Returns:
        The depths, sorted and unique.

    Raises:
        ReslabError: A depth is not 6n+2, is 50 or 152 (6n+2, but ``resnet50``/``plain152``
            name the ImageNet nets of Table 1, which the experiments would train instead of
            CIFAR nets), or the list is empty.
    """
    depths = sorted(set(depths))
    if not depths:
        raise ReslabError("give at least one depth")
    for depth in depths:
        check_cifar_depth(depth)
        if depth in IMAGENET_ARCHS:
            raise ReslabError(
                f"depth {depth} cannot be used here: resnet{depth} and plain{depth} name the "
                f"ImageNet nets of Table 1 (bottleneck blocks, 7x7 stem), not CIFAR nets of "
                f"{depth} layers; choose another 6n+2 depth ({depth - 6} or {depth + 6})"
            )
    return depths


# Config keys an experiment sets itself, so a recipe may not: what to use instead.
EXPERIMENT_KEYS = {
    "model": "the experiment picks the nets (--depths, --depth)",
    "shortcut": "the shortcuts experiment compares the options; the others use the paper's A",
    "data": "use --data", "data_dir": "use --data-dir", "device": "use --device",
    "out": "use --out (sub-runs go to OUT/runs/)",
}


def recipe(*, quick: bool, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The training keys every sub-run of an experiment shares.

    Args:
        quick: Use :data:`QUICK_RECIPE`; else the data set's preset (the paper's recipe).
        overrides: Config keys given by the user (``--set``), applied last.

    Returns:
        Config keys for :func:`reslab.train.engine.train`.

    Raises:
        ReslabError: ``overrides`` holds a key the experiment sets (:data:`EXPERIMENT_KEYS`), or
            both ``iters`` and ``epochs``.
    """
    overrides = overrides or {}
    for key in overrides:
        if key in EXPERIMENT_KEYS:
            raise ReslabError(f"an experiment's recipe cannot set {key!r}: "
                              f"{EXPERIMENT_KEYS[key]}")
    check_one_length(overrides, how="--set iters=N or --set epochs=E")
    base = dict(QUICK_RECIPE) if quick else {}
    if "epochs" in overrides:  # a length given replaces the quick recipe's, as in resolve()
        base.pop("iters", None)
    return {**base, **overrides}


# The keys of ``experiment.json`` that make two sub-runs comparable; the rest (depths, seeds,
# the shortcut net's depth) only select which sub-runs a report shows. The recipe's seed is not
# shared either: the depth table names its sub-runs by seed, and a sub-run of another seed
# under the same name is refused by check_reusable.
SHARED_KEYS = ("experiment", "data", "recipe")


def _shared(description: dict[str, Any], key: str) -> Any:
    value = description.get(key)
    if key == "recipe" and isinstance(value, dict):
        return {name: setting for name, setting in value.items() if name != "seed"}
    return value


def claim_folder(out: Path, description: dict[str, Any], *,
                 sub_runs: dict[Path, dict[str, Any]] | None = None) -> None:
    """Create the experiment folder and record what it runs (``experiment.json``).

    Re-running the same experiment in the same folder resumes it, and may add depths or seeds:
    sub-runs are named by net and seed, so the finished ones are reused. Another recipe or data
    set there would mix incomparable runs, so it is refused once a sub-run has started; before
    that (e.g. the first attempt stopped at a bad split name) the new settings replace the old.
    The sub-runs to train are checked too (:func:`check_reusable`), before anything is written.

    Args:
        out: The experiment folder.
        description: JSON-serialisable experiment name, data set and recipe
            (:data:`SHARED_KEYS`), and which sub-runs it trains.
        sub_runs: Folder -> config keys of each sub-run the experiment trains.

    Raises:
        ReslabError: ``out`` holds another experiment, or one with another data set or recipe,
            or a sub-run that cannot be reused.
    """
    if out.exists() and not out.is_dir():
        raise ReslabError(f"cannot write the experiment into {out}: it is a file")
    out.mkdir(parents=True, exist_ok=True)
    path = out / "experiment.json"
    described = json.loads(json.dumps(description))
    previous = _read_description(path)
    changed = [key for key in SHARED_KEYS
               if previous and _shared(previous, key) != _shared(described, key)]
    if changed and any(out.glob("runs/*/config.toml")):
        raise ReslabError(
            f"{out} holds an experiment run with other settings ({', '.join(changed)}; see "
            f"{path}); choose another --out or delete the folder"
        )
    for folder, config in (sub_runs or {}).items():
        check_reusable(folder, config)
    if previous != described:
        with atomic_write(path, "w") as handle:
            json.dump(described, handle, indent=2)


def _read_description(path: Path) -> dict[str, Any] | None:
    """An experiment folder's description.

    Args:
        path: Its ``experiment.json``.

    Returns:
        The description, or None when there is none yet.

    Raises:
        ReslabError: The file is not a JSON object.
    """
    if not path.is_file():
        return None
    try:
        previous = json.loads(path.read_text())
    except ValueError:
        previous = None
    if not isinstance(previous, dict):
        raise ReslabError(f"{path} is damaged (not a JSON object); delete it to run the "
                          "experiment here again (finished sub-runs are kept)")
    return previous


def ensure_run(folder: Path, config: dict[str, Any], *, progress: bool | None = None) -> Path:
    """Train one sub-run to its end: skip it when finished, resume it when stopped.

    Args:
        folder: The sub-run's folder.
        config: Its config keys (``out`` is set to ``folder``).
        progress: Progress bar (None: when stderr is a terminal).

    Returns:
        ``folder``, holding a finished run.

    Raises:
        ReslabError: Another process is still writing ``folder``.
        KeyboardInterrupt: The training stopped early (Ctrl-C, SIGTERM), with a checkpoint: the
            experiment stops too, and running it again resumes here.
    """
    from reslab.train.engine import train

    if (folder / "config.toml").is_file():
        state = run_state(folder)
        check_idle(state)
        if state.finished:
            return folder
        if state.resumable:
            result = train(resume=folder, progress=progress, device=config.get("device", "auto"))
            return _check_finished(folder, result)
    folder.parent.mkdir(parents=True, exist_ok=True)
    # Nothing to resume from: a new run (which clears the logs of a run killed before its
    # first checkpoint).
    result = train({**config, "out": str(folder)}, progress=progress)
    return _check_finished(folder, result)


# Keys the engine decides when a run starts if the config leaves them None (the device's
# channels-last default, the bottleneck variant of an --init checkpoint).
DECIDED_AT_START = ("channels_last", "variant")


def check_reusable(folder: Path, config: dict[str, Any]) -> None:
    """Refuse to skip or resume a sub-run trained with other settings than the experiment asks
    for (sub-runs left by a deleted ``experiment.json``, or copied in from elsewhere), so that
    a report never states one recipe over runs of another. A folder with nothing to reuse
    (none yet, or one killed before its first checkpoint) passes: it is trained afresh.

    Args:
        folder: The sub-run's folder.
        config: The config keys the experiment trains it with.

    Raises:
        ReslabError: A resolved key other than :data:`~reslab.train.config.PLACEMENT_KEYS`
            differs (each named with both values), or another process still writes ``folder``.
    """
    if not (folder / "config.toml").is_file():
        return
    state = run_state(folder)
    check_idle(state)
    if not (state.finished or state.resumable):
        return
    saved = resolve({}, base=read_toml(folder / "config.toml")).to_dict()
    changed = [f"{key} {saved[key]!r}, not {value!r}"
               for key, value in resolve(config).to_dict().items()
               if key not in PLACEMENT_KEYS and saved[key] != value
               and not (value is None and key in DECIDED_AT_START)]
    if changed:
        raise ReslabError(f"{folder} was trained with other settings than this experiment's "
                          f"({'; '.join(changed)}); delete it or choose another --out")


def _check_finished(folder: Path, result: RunResult) -> Path:
    if not result.finished:
        print(f"reslab: {folder} stopped at iteration {result.iteration}; run the same command "
              "again to resume it", file=sys.stderr)
        raise KeyboardInterrupt
    return folder


@dataclass(frozen=True)
class Setup:
    """What every sub-run of one experiment shares.

    Attributes:
        data: Data set name.
        out: The experiment folder (sub-runs go to ``out/runs/<name>``).
        recipe: Training keys (:func:`recipe`).
        data_dir: Folder holding the data set (None: reslab's default search).
        device: Training device.
        progress: Progress bars (None: when stderr is a terminal).
    """

    data: str
    out: Path
    recipe: dict[str, Any]
    data_dir: str | None = None
    device: str = "auto"
    progress: bool | None = None

    def run(self, experiment: str, nets: dict[str, dict[str, Any]],
            **details: Any) -> dict[str, Path]:
        """Claim ``out`` for ``experiment`` (:func:`claim_folder`, which checks the sub-runs
        already there), then train (or resume, or skip) each sub-run.

        Args:
            experiment: The experiment's name (e.g. ``degradation``).
            nets: Sub-run name (its folder under ``out/runs``) -> keys for :meth:`config`.
            **details: More JSON-serialisable keys for ``experiment.json`` (depths, seeds, ...).

        Returns:
            Sub-run name -> its folder, holding a finished run.

        Raises:
            ReslabError: Unknown data set, a bad recipe key, or a sub-run that cannot be
                reused, before anything is written.
        """
        resolve({"data": self.data}, base=self.recipe)
        configs = {self.out / "runs" / name: self.config(**keys) for name, keys in nets.items()}
        claim_folder(self.out, {"experiment": experiment, "data": self.data,
                                "recipe": self.recipe, **details}, sub_runs=configs)
        return {folder.name: ensure_run(folder, config, progress=self.progress)
                for folder, config in configs.items()}

    def report(self, title: str, intro: str) -> Report:
        """A report in ``out`` that opens with ``intro`` and the shared recipe.

        Args:
            title: The report's first heading.
            intro: The opening paragraph (the recipe sentence is appended).

        Returns:
            The :class:`Report`, not yet saved.
        """
        report = Report(self.out, title)
        report.add(f"{intro} Recipe: `{recipe_text(self.recipe)}`.")
        return report

    def config(self, *, depth: int, **keys: Any) -> dict[str, Any]:
        """The config keys of one sub-run: the shared recipe and ``keys``.

        Args:
            depth: The net's depth: from 110 layers on, the paper's warm-up is added
                (:func:`paper_warmup`).
            **keys: More config keys (e.g. ``model``, ``seed``); they override the recipe's.

        Returns:
            Config keys for :func:`reslab.train.engine.train`.
        """
        return {**self.recipe, **paper_warmup(self.recipe, depth), "data": self.data,
                "data_dir": self.data_dir, "device": self.device, **keys}


# Sec. 4.2: "ResNet-110: warm up at lr 0.01 until training error is below 80% (about 400
# iterations), then 0.1" (the engine's warmup_lr / warmup_error, 0.8 by default).
WARMUP_DEPTH = 110
WARMUP_LR = 0.01


def paper_warmup(recipe: dict[str, Any], depth: int) -> dict[str, Any]:
    """The config keys of the paper's warm-up for a net of ``depth`` layers.

    Args:
        recipe: The experiment's shared keys: a warm-up of its own (``warmup_lr`` or
            ``lr_ramp``) is kept as it is.
        depth: The net's depth.

    Returns:
        ``{"warmup_lr": 0.01}`` from :data:`WARMUP_DEPTH` layers on, else nothing.
    """
    if depth < WARMUP_DEPTH or "warmup_lr" in recipe or recipe.get("lr_ramp"):
        return {}
    return {"warmup_lr": WARMUP_LR}


@dataclass(frozen=True)
class NetResult:
    """One trained net of an experiment.

    Attributes:
        label: How the report names it (``plain-20``, ``ResNet-32 B``, ...).
        family: ``"plain"`` or ``"resnet"``.
        depth: Weighted layers.
        run_dir: Its run folder.
        train_error: Training error of the last logging window.
        test_error: Test error of the last evaluation.
        params: Trainable parameters.
    """

    label: str
    family: str
    depth: int
    run_dir: Path
    train_error: float | None
    test_error: float | None
    params: int

    def csv_row(self) -> dict[str, Any]:
        """The net's row in an experiment's CSV."""
        return {"net": self.label, "family": self.family, "depth": self.depth,
                "train_error": self.train_error, "test_error": self.test_error,
                "params": self.params, "run_dir": self.run_dir.name}


def net_result(label: str, family: str, depth: int, run_dir: Path) -> NetResult:
    """Read a finished sub-run's final numbers (see :func:`final_value`).

    Args:
        label: How the report names the net.
        family: ``"plain"`` or ``"resnet"``.
        depth: Weighted layers.
        run_dir: The finished sub-run's folder.

    Returns:
        The :class:`NetResult`.
    """
    return NetResult(label, family, depth, run_dir, final_value(run_dir, "train_error"),
                     final_value(run_dir, "test_error"), param_count(run_dir))


def final_value(run_dir: Path, column: str) -> float | None:
    """The last value of a metrics.csv column (the training error of the last logging window,
    the test error of the last evaluation); None when the column was never written.

    Args:
        run_dir: The run folder.
        column: A metrics.csv column, e.g. ``test_error``.

    Returns:
        The value, or None.
    """
    values = [float(r[column]) for r in read_metrics(run_dir / "metrics.csv") if r.get(column)]
    return values[-1] if values else None


def param_count(run_dir: Path) -> int:
    """Parameters of a run's model (built from its checkpoint's metadata; all of them are
    trained, as in the paper's tables).

    Args:
        run_dir: The run folder (its ``last.safetensors`` is read).

    Returns:
        The number of parameters.
    """
    from reslab.models import create_model
    from reslab.train.checkpoint import read_weights

    _, meta = read_weights(run_dir / "last.safetensors")
    model = create_model(meta["model"], num_classes=meta["num_classes"],
                         in_channels=meta["in_channels"], **meta.get("model_options", {}))
    return sum(p.numel() for p in model.parameters())
