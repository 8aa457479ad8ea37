"""Training configuration: one dataclass whose defaults are the paper's CIFAR recipe (Sec. 4.2),
named presets for the other recipes, and strict loading from TOML files and command-line flags.

Precedence, lowest first: the dataclass defaults, the preset, the ``--config`` TOML file (or a
base configuration in Python), flags; a run length given in a layer replaces the one under it
and moves its milestones (:func:`resolve`).
Unknown keys and values of the wrong type are errors (:class:`reslab.errors.ReslabError`).
"""

from __future__ import annotations

import dataclasses
import math
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reslab.data.registry import DATA_DIR_HELP
from reslab.errors import ReslabError, choices_hint

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

# The monitors' interval when --monitor is given without one (reslab.analysis.monitor).
MONITOR_EVERY = 100


def _opt(default: Any, help: str, *, bare: Any = None) -> Any:  # noqa: A002 - argparse's word
    """A field with its ``--flag`` help; ``bare``: the value of the flag given without one."""
    metadata = {"help": help} if bare is None else {"help": help, "bare": bare}
    if isinstance(default, (list, tuple)):
        return field(default_factory=lambda: list(default), metadata=metadata)
    return field(default=default, metadata=metadata)


SCHEDULES = ("step", "plateau", "cosine", "linear")  # reslab.train.schedule.LRSchedule's kinds


@dataclass
class TrainConfig:
    """Everything a training run depends on. Defaults: the CIFAR-10 recipe of Sec. 4.2."""

    # What to train, on what.
    model: str = _opt("resnet20", "registered model name (see `reslab models`)")
    data: str = _opt("cifar10", "data set name (see `reslab data list`)")
    data_dir: str | None = _opt(None, DATA_DIR_HELP)
    preset: str | None = _opt(None, "named recipe; default chosen by the data set")
    out: str | None = _opt(None, "run folder (default runs/<model>-<data>-<time>)")
    train_split: str = _opt("train45k", "split to train on (Sec. 4.2: 45k/5k train/val)")
    val_split: str | None = _opt(
        "val5k", "split for model selection (best.safetensors); none to skip")
    test_split: str | None = _opt("test", "split reported as test error; none to skip")
    # The model's options (None: the model's own default).
    shortcut: str | None = _opt(None, "shortcut option A, B or C (Sec. 4.1)")
    variant: str | None = _opt(None, "bottleneck variant v1 (paper) or v1.5 (torchvision)")
    zero_init_residual: bool = _opt(False, "zero the last BN of every residual branch")
    # Optimisation (Sec. 3.4, 4.2).
    batch_size: int = _opt(128, "global mini-batch size")
    lr: float = _opt(0.1, "initial learning rate")
    momentum: float = _opt(0.9, "SGD momentum, in [0, 1)")
    weight_decay: float = _opt(1e-4, "weight decay")
    nesterov: bool = _opt(False, "Nesterov momentum (not in the paper)")
    iters: int = _opt(64000, "training iterations (Sec. 4.2: 64k)")
    epochs: float | None = _opt(None, "train this many epochs instead of --iters")
    schedule: str = _opt("step", f"learning-rate schedule: {', '.join(SCHEDULES)}")
    milestones: list[float] = _opt(
        [32000, 48000], "where the lr is divided (step): increasing iterations inside the run, "
        "or epochs with --epochs"
    )
    lr_decay: float = _opt(0.1, "factor applied at each milestone / plateau")
    plateau_patience: int = _opt(3, "evaluations without improvement before dividing (plateau)")
    warmup_lr: float | None = _opt(
        None, "start at this lr until training error < warmup_error (ResNet-110)")
    warmup_error: float = _opt(0.8, "training error below which the warm-up ends")
    lr_ramp: float = _opt(0.0, "raise the lr linearly to --lr over this many iterations (epochs "
                       "with --epochs), then decay (not in the paper)")
    label_smoothing: float = _opt(0.0, "label smoothing (not in the paper)")
    ema: float = _opt(0.0, "evaluate and save an exponential moving average of the weights "
                      "with this decay per iteration, e.g. 0.999 (not in the paper); 0: off")
    # Data pipeline (Sec. 4.2).
    augment: bool = _opt(True, "pad-and-crop and flip augmentation")
    pad: int = _opt(4, "pixels of zero padding before the random crop")
    flip: bool = _opt(True, "random horizontal flips")
    erase: float = _opt(0.0, "random erasing probability: a random box of 0.02-0.4 of the "
                        "image set to the mean (Zhong et al. 2020; not in the paper); 0: off")
    # Evaluation, logging, checkpoints.
    eval_every: int = _opt(1000, "evaluate and checkpoint every N iterations")
    log_every: int = _opt(100, "log training loss/error every N iterations")
    precise_bn: int = _opt(0, "re-estimate BN statistics on N training batches before evaluating")
    monitor: int = _opt(0, "every N iterations record per-layer activation/gradient std and "
                        "update/weight ratio (monitor.csv); 0: off", bare=MONITOR_EVERY)
    # System.
    device: str = _opt("auto", "auto, cpu, cuda, cuda:N or mps")
    amp: bool = _opt(False, "bf16 autocast where supported")
    channels_last: bool | None = _opt(
        None, "channels-last memory format (default: on for CUDA and the CPU)")
    compile: bool = _opt(False, "torch.compile the model")
    compile_step: bool = _opt(False, "torch.compile the whole step: forward, backward and SGD")
    cuda_graphs: bool = _opt(False, "replay each step as one CUDA graph (one GPU, fixed shapes)")
    fused_sgd: bool = _opt(True, "one fused SGD kernel for all parameters (off: torch's default)")
    seed: int = _opt(0, "random seed")
    deterministic: bool = _opt(False, "deterministic algorithms (bit-exact resume on CPU)")
    workers: int = _opt(4, "DataLoader workers for image-folder data sets, at most the CPU cores")
    init: str | None = _opt(None, "initialise from a checkpoint (fine-tuning)")
    # Several processes (torchrun; docs/DISTRIBUTED.md).
    sync_bn: bool = _opt(False, "BN statistics over the global batch (the paper's are per GPU)")
    dist_timeout: float = _opt(600.0, "seconds to wait for the rendezvous and for any collective")

    def to_dict(self) -> dict[str, Any]:
        """The configuration as plain data (for JSON/TOML)."""
        return dataclasses.asdict(self)


# Named recipes: field overrides on top of the defaults.
PRESETS: dict[str, dict[str, Any]] = {
    # Sec. 4.2: batch 128, lr 0.1 /10 at 32k and 48k, stop at 64k, 45k/5k split.
    "cifar-paper": {},
    # Sec. 3.4: batch 256, lr 0.1 /10 when the validation error plateaus, up to 60e4 iterations.
    "imagenet-paper": {
        "batch_size": 256, "iters": 600_000, "schedule": "plateau", "milestones": [],
        "train_split": "train", "val_split": "val", "test_split": None, "eval_every": 5000,
    },
    # A fixed-epoch ImageNet variant: 90 epochs, lr /10 at epochs 30 and 60 (iterations scaled).
    "imagenet-epochs": {
        "batch_size": 256, "epochs": 90, "milestones": [30, 60],
        "train_split": "train", "val_split": "val", "test_split": None, "eval_every": 5000,
    },
    # The CIFAR recipe on Fashion-MNIST/MNIST: 55k/5k split, same iterations and milestones.
    "fashion-mnist": {"train_split": "train55k", "val_split": "val5k"},
}
# MNIST: the same without the flip (a mirrored digit is another symbol, or none).
PRESETS["mnist"] = {**PRESETS["fashion-mnist"], "flip": False}
DEFAULT_PRESET = {
    "cifar10": "cifar-paper", "cifar100": "cifar-paper", "imagenet": "imagenet-paper",
    "folder": "imagenet-paper", "fashion-mnist": "fashion-mnist", "mnist": "mnist",
}
DEVICES = ("auto", "cpu", "cuda", "mps")
# Keys that place a run (where it runs, reads and writes) without changing its training: a
# resume may change them, and two runs that differ only in them are the same experiment.
PLACEMENT_KEYS = ("device", "workers", "out", "dist_timeout", "data_dir")

FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}
_HINTS = typing.get_type_hints(TrainConfig)


def coerce(key: str, value: Any) -> Any:
    """Check ``value`` against the type of field ``key``, converting strings from the command line.

    Args:
        key: A :class:`TrainConfig` field name.
        value: A TOML value, or a string from a flag (``"0.1"``, ``"true"``, ``"32000,48000"``).

    Returns:
        The value with the field's type.

    Raises:
        ReslabError: Unknown key, or a value that does not fit the field's type.
    """
    if key not in FIELDS:
        raise ReslabError(f"unknown config key {key!r}; {choices_hint(FIELDS)}")
    hint = _HINTS[key]
    optional = isinstance(hint, types.UnionType) and type(None) in typing.get_args(hint)
    base = next(a for a in typing.get_args(hint) if a is not type(None)) if optional else hint
    if optional and (value is None or (isinstance(value, str) and value.lower() in ("none", ""))):
        return None
    try:
        return _coerce_to(base, value)
    except (TypeError, ValueError, OverflowError):
        expected = {float: "a finite float", list[float]: "a list of finite floats"}.get(
            base, getattr(base, "__name__", str(base)))
        raise ReslabError(f"config key {key!r} must be {expected}, got {value!r}") from None


def _coerce_to(base: Any, value: Any) -> Any:
    if typing.get_origin(base) is list:
        (item,) = typing.get_args(base)
        if isinstance(value, str):
            value = [v for v in value.replace(" ", "").split(",") if v]
        if not isinstance(value, (list, tuple)):
            raise TypeError
        return [_coerce_to(item, v) for v in value]
    if base is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("false", "0", "no", "off"):
            return False
        raise TypeError
    if base is int:
        if isinstance(value, bool) or isinstance(value, float):
            raise TypeError
        return int(value)
    if base is float:
        if isinstance(value, bool) or not math.isfinite(number := float(value)):
            raise TypeError
        return number
    if base is str:
        if not isinstance(value, str):
            raise TypeError
        return value
    raise TypeError


def read_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML config file (flat keys, or under a ``[train]`` table).

    Args:
        path: The file.

    Returns:
        Its keys and values, each checked with :func:`coerce`.

    Raises:
        ReslabError: A missing file, a folder, not TOML, or a bad key or value.
    """
    path = Path(path)
    if path.is_dir():
        raise ReslabError(f"config file {path} is a folder; give a .toml file, e.g. "
                          f"{path / 'config.toml'} of a run folder")
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ReslabError(f"config file {path} does not exist") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ReslabError(f"config file {path} is not valid TOML: {exc}") from None
    if "train" in data:
        outside = sorted(set(data) - {"train"})
        if outside:
            raise ReslabError(f"config file {path}: keys outside the [train] table "
                              f"({', '.join(outside)}); put them all under [train] or none")
        data = data["train"]
    if not isinstance(data, dict):
        raise ReslabError(f"config file {path}: [train] must be a table of config keys")
    return {key: coerce(key, value) for key, value in data.items()}


def check_one_length(keys: dict[str, Any], *, how: str) -> None:
    """Refuse one layer of keys that sets the run's length twice.

    Args:
        keys: Config keys given together (flags, ``--set`` keys of an experiment).
        how: How the user gives a length there, for the message.

    Raises:
        ReslabError: ``keys`` holds both ``iters`` and ``epochs``.
    """
    if "iters" in keys and "epochs" in keys:
        raise ReslabError(f"iters and epochs both set the run's length; give one of them ({how})")


def resolve(
    overrides: dict[str, Any],
    *,
    config_file: str | Path | None = None,
    base: dict[str, Any] | None = None,
) -> TrainConfig:
    """Build the configuration of a run in layers, lowest first: the dataclass defaults, the
    preset, the TOML file, ``base``, the overrides.

    A layer that sets the run's length (``iters`` or ``epochs``) replaces the length of the
    layers under it: ``iters`` alone clears their ``epochs``, ``epochs`` counts instead of their
    ``iters``. Their milestones and ``lr_ramp`` (unless the layer sets them too) are scaled
    with the length (``--iters 6400`` moves the paper's 32k/48k to 3.2k/4.8k; ``--epochs 5``
    over a file of 6400 iterations with milestones 3200 and 4800 gives epochs 2.5 and 3.75).

    Args:
        overrides: Keys set on the command line or in Python (checked with :func:`coerce`).
        config_file: Optional TOML file.
        base: Optional keys of a base configuration (e.g. :meth:`TrainConfig.to_dict`).

    Returns:
        The resolved, validated configuration.

    Raises:
        ReslabError: A bad key or value, or ``overrides`` giving both ``iters`` and ``epochs``.
    """
    check_one_length(overrides, how="--iters N or --epochs E")
    layers = [read_toml(config_file) if config_file else {},
              {k: coerce(k, v) for k, v in (base or {}).items()},
              {k: coerce(k, v) for k, v in overrides.items()}]
    given = {k: v for layer in layers for k, v in layer.items()}
    data = given.get("data", TrainConfig.data)
    preset_name = given.get("preset") or DEFAULT_PRESET.get(data, "cifar-paper")
    if preset_name not in PRESETS:
        raise ReslabError(f"unknown preset {preset_name!r}; {choices_hint(PRESETS)}")
    values = TrainConfig(**PRESETS[preset_name]).to_dict()
    for layer in layers:
        values = _with_layer(values, layer)
    config = TrainConfig(**{**values, "preset": preset_name})
    validate(config)
    return config


def _with_layer(values: dict[str, Any], layer: dict[str, Any]) -> dict[str, Any]:
    """``values`` with ``layer``'s keys on top; a new run length in ``layer`` moves the points
    of the schedule of ``values`` (milestones, ``lr_ramp``: in the run's unit) proportionally,
    unless ``layer`` sets them."""
    merged = {**values, **layer}
    if "iters" in layer and "epochs" not in layer:
        merged["epochs"] = None  # an iteration count replaces the epochs under it
    if ("iters" in layer or "epochs" in layer) and _run_length(values)[0] > 0:  # else nothing
        scale = _run_length(merged)[0] / _run_length(values)[0]
        if "milestones" not in layer:
            merged["milestones"] = [m * scale for m in values["milestones"]]
        if "lr_ramp" not in layer:
            merged["lr_ramp"] = values["lr_ramp"] * scale
    return merged


def model_options(config: TrainConfig) -> dict[str, Any]:
    """The options of ``config`` that :func:`reslab.create_model` takes (besides the data
    set's classes and channels).

    Args:
        config: The configuration.

    Returns:
        ``shortcut`` and ``variant`` where set, ``zero_init_residual`` where true.
    """
    options = {k: getattr(config, k) for k in ("shortcut", "variant")
               if getattr(config, k) is not None}
    if config.zero_init_residual:
        options["zero_init_residual"] = True
    return options


def validate(config: TrainConfig) -> None:
    """Check value ranges that a type cannot express.

    Args:
        config: The configuration.

    Raises:
        ReslabError: The first problem found, naming the key.
    """
    import torch

    from reslab.data import dataset_info
    from reslab.models import create_model, model_info

    model_info(config.model)  # unknown names fail here, before any data is read
    dataset_info(config.data)
    with torch.device("meta"):  # and options the model does not take (shapes only: no memory)
        create_model(config.model, **model_options(config))
    positive = {"batch_size": config.batch_size, "lr": config.lr, "iters": config.iters,
                "eval_every": config.eval_every, "log_every": config.log_every,
                "dist_timeout": config.dist_timeout, "plateau_patience": config.plateau_patience}
    if config.warmup_lr is not None:
        positive["warmup_lr"] = config.warmup_lr
    for key, value in positive.items():
        if value <= 0:
            raise ReslabError(f"{key} must be positive, got {value}")
    if config.epochs is not None and config.epochs <= 0:
        raise ReslabError(f"epochs must be positive, got {config.epochs}")
    for key in ("weight_decay", "label_smoothing", "precise_bn", "pad", "workers", "monitor"):
        if getattr(config, key) < 0:
            raise ReslabError(f"{key} must not be negative, got {getattr(config, key)}")
    if not 0 <= config.momentum < 1:
        raise ReslabError(f"momentum must be in [0, 1), got {config.momentum}")
    if not 0 <= config.seed < 2**63:
        raise ReslabError(f"seed must be in [0, 2**63), got {config.seed}")
    if config.label_smoothing >= 1:
        raise ReslabError(f"label_smoothing must be in [0, 1), got {config.label_smoothing}")
    if not 0 <= config.ema < 1:
        raise ReslabError(f"ema must be a decay in [0, 1) (e.g. 0.999), got {config.ema}")
    if not 0 <= config.erase <= 1:
        raise ReslabError(f"erase must be a probability in [0, 1], got {config.erase}")
    if config.erase and not config.augment:
        raise ReslabError("erase is part of the training augmentation, which augment=false "
                          "turns off; drop one of them")
    if config.nesterov and config.momentum == 0:
        raise ReslabError("nesterov needs a momentum above 0 (set --momentum, e.g. 0.9)")
    if config.schedule not in SCHEDULES:
        raise ReslabError(f"unknown schedule {config.schedule!r}; {choices_hint(SCHEDULES)}")
    if config.device.split(":")[0] not in DEVICES:
        raise ReslabError(f"unknown device {config.device!r}; {choices_hint(DEVICES)} (or cuda:N)")
    if not 0 < config.lr_decay <= 1:
        raise ReslabError(f"lr_decay must be in (0, 1], got {config.lr_decay}")
    if not 0 < config.warmup_error <= 1:
        raise ReslabError(f"warmup_error must be in (0, 1], got {config.warmup_error}")
    _validate_milestones(config)
    _validate_ramp(config)
    _validate_held_out(config)


def _validate_held_out(config: TrainConfig) -> None:
    """val5k is held out of train45k/train55k (Sec. 4.2's 45k/5k split) but is part of the full
    ``train``: choosing the model, or reporting an error, on images the run trains on is refused."""
    if config.train_split != "train":
        return
    for flag, split in (("val-split", config.val_split), ("test-split", config.test_split)):
        if split == "val5k":
            held_out = "train45k" if config.data.startswith("cifar") else "train55k"
            raise ReslabError(
                f"--{flag} val5k is part of --train-split train, so the run would be judged on "
                f"images it trains on; train on {held_out} to keep val5k out, or give "
                f"--{flag} none")


def _run_length(values: dict[str, Any]) -> tuple[float, str]:
    """The run's length and its unit: ``epochs`` when set, else ``iterations``.

    Args:
        values: Config keys holding ``epochs`` and ``iters``.
    """
    if values["epochs"] is not None:
        return values["epochs"], "epochs"
    return values["iters"], "iterations"


def _validate_milestones(config: TrainConfig) -> None:
    """The milestones increase, each given once, and a step schedule reaches every one."""
    milestones = config.milestones
    if any(m < 0 for m in milestones):
        raise ReslabError(f"milestones must not be negative, got {milestones}")
    if any(a >= b for a, b in zip(milestones, milestones[1:])):
        raise ReslabError(f"milestones must increase, each given once, got {milestones}")
    length, unit = _run_length(vars(config))
    if config.schedule == "step" and milestones and milestones[-1] >= length:
        raise ReslabError(f"milestones must be inside the run ({length:g} {unit}), got "
                          f"{milestones}")


def _validate_ramp(config: TrainConfig) -> None:
    """The linear ramp ends before the run does and is the run's only warm-up."""
    length, unit = _run_length(vars(config))
    if not 0 <= config.lr_ramp < length:
        raise ReslabError(f"lr_ramp must be at least 0 and shorter than the run "
                          f"({length:g} {unit}), got {config.lr_ramp:g}")
    if config.lr_ramp and config.warmup_lr is not None:
        raise ReslabError("lr_ramp and warmup_lr are two warm-ups (a linear ramp, the paper's "
                          "constant lr until an error); choose one")
