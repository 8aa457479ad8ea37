"""``reslab train``: train a model with the paper's recipe (every config key is a flag)."""

from __future__ import annotations

import argparse
import os
import typing
from pathlib import Path

from reslab.errors import ReslabError
from reslab.train.config import FIELDS, TrainConfig, resolve

_HINTS = typing.get_type_hints(TrainConfig)


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per :class:`TrainConfig` field (``--batch-size``, ``--amp/--no-amp``, ...).

    Flags default to None (not given); values are checked by :func:`reslab.train.config.coerce`.

    Args:
        parser: The ``reslab train`` parser (the flags go into their own group).
    """
    group = parser.add_argument_group("recipe (defaults: the preset, see docs/TRAINING.md)")
    for name, field in FIELDS.items():
        flag = "--" + name.replace("_", "-")
        help_text = field.metadata.get("help", "")
        if _HINTS[name] in (bool, bool | None):  # None: the default decides
            group.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction,
                               default=None, help=help_text)
        elif typing.get_origin(_HINTS[name]) is list:
            group.add_argument(flag, dest=name, nargs="+", default=None, metavar="N",
                               help=help_text)
        elif "bare" in field.metadata:  # ``--monitor`` alone or ``--monitor 50``
            bare = field.metadata["bare"]
            group.add_argument(flag, dest=name, nargs="?", const=str(bare), default=None,
                               metavar=name.upper(), help=f"{help_text} (alone: {bare})")
        else:
            group.add_argument(flag, dest=name, default=None, metavar=name.upper(),
                               help=help_text)


def config_overrides(args: argparse.Namespace) -> dict[str, typing.Any]:
    """The config keys given on the command line (flags and ``--set KEY=VALUE``).

    Args:
        args: The parsed command line.

    Returns:
        Config key to value: flags as parsed, ``--set`` values as strings (dashes in the key
        become underscores).

    Raises:
        ReslabError: A ``--set`` item has no ``=``, or sets a key that a flag sets too.
    """
    flags = {name: getattr(args, name) for name in FIELDS if getattr(args, name) is not None}
    overrides = dict(flags)
    for item in args.set or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise ReslabError(f"--set needs KEY=VALUE, got {item!r}")
        key = key.strip().replace("-", "_")
        if key in flags:
            raise ReslabError(f"{key} is given twice, as --{key.replace('_', '-')} and with "
                              f"--set {item}; give it once")
        overrides[key] = value
    return overrides


def configure(parser: argparse.ArgumentParser) -> None:
    """Describe ``reslab train`` and add its arguments."""
    parser.description = (
        "Train with the paper's recipe (Sec. 4.2 for CIFAR, Sec. 3.4 for ImageNet). "
        "Precedence: preset < --config TOML < flags (--set KEY=VALUE is a flag)."
    )
    parser.add_argument("--config", metavar="TOML", help="TOML file of config keys")
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue a run exactly")
    parser.add_argument("--stop-after", type=int, metavar="N",
                        help="stop with a checkpoint after N iterations (resume later)")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE",
                        help="set any config key (repeatable)")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="progress bar (default: when on a terminal)")
    parser.add_argument("--nproc", type=int, metavar="N",
                        help="train with N processes on this machine (one per GPU) through "
                        "torchrun; for several machines run torchrun yourself "
                        "(docs/DISTRIBUTED.md)")
    add_config_flags(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``reslab train``."""
    from reslab.train.distributed import env_ranks
    from reslab.train.engine import train

    overrides = config_overrides(args)
    if args.stop_after is not None and args.stop_after <= 0:
        raise ReslabError(f"--stop-after must be positive, got {args.stop_after}")
    if args.resume and args.config:
        raise ReslabError("--config starts a new run and --resume continues a saved one with "
                          "its own configuration; give one of them")
    if args.nproc is not None:
        return _launch(args, overrides)
    if args.resume:
        result = train(resume=args.resume, stop_after=args.stop_after, progress=args.progress,
                       **overrides)
    else:
        config = resolve(overrides, config_file=args.config)
        result = train(config, stop_after=args.stop_after, progress=args.progress)
    if env_ranks()[0] != 0:
        return 0  # rank 0 reports
    status = "finished" if result.finished else "stopped (resume with --resume)"
    print(f"run {status} at iteration {result.iteration}: {result.run_dir}")
    for label, value in (("best val error", result.best_val_error),
                         ("test error", result.test_error)):
        if value is not None:
            print(f"  {label}: {100 * value:.2f}%")
    files = [f"{label}: {result.run_dir / name}" for label, name in (
        ("curves", "curves.png"), ("weights", "last.safetensors"), ("metrics", "metrics.csv"))
        if (result.run_dir / name).is_file()]  # a stop before the first log line: no curves
    if files:
        print("  " + "   ".join(files))
    return 0


def _launch(args: argparse.Namespace, overrides: dict[str, typing.Any]) -> int:
    """``--nproc N``: check the run here (one error line, not one per rank), then start N ranks
    of the same command, without ``--nproc``, through torchrun's launcher."""
    from reslab.train.distributed import env_ranks, launch_local, rank_device
    from reslab.train.engine import resumed_config
    from reslab.train.run_lock import check_not_written

    if env_ranks()[1] > 1 or "TORCHELASTIC_RUN_ID" in os.environ:
        raise ReslabError("--nproc starts torchrun itself; leave it out under torchrun")
    if args.nproc < 1:
        raise ReslabError(f"--nproc must be at least 1, got {args.nproc}")
    config = (resumed_config(Path(args.resume), overrides) if args.resume
              else resolve(overrides, config_file=args.config))
    rank_device(config.device, local_rank=args.nproc - 1, distributed=args.nproc > 1)
    if config.out is not None:
        check_not_written(config.out)  # one line here rather than one per rank
    if config.batch_size % args.nproc:
        raise ReslabError(f"the global batch {config.batch_size} does not divide into "
                          f"--nproc {args.nproc} equal shards")
    return launch_local(args.nproc, _rank_argv(args, overrides))


def _rank_argv(args: argparse.Namespace, overrides: dict[str, typing.Any]) -> list[str]:
    """The ``reslab`` arguments of every rank: this command without ``--nproc``, config keys
    passed as ``--set KEY=VALUE``."""
    argv = ["train"]
    for flag, value in (("--config", args.config), ("--resume", args.resume),
                        ("--stop-after", args.stop_after)):
        if value is not None:
            argv += [flag, str(value)]
    if args.progress is not None:
        argv.append("--progress" if args.progress else "--no-progress")
    for key, value in overrides.items():
        if isinstance(value, list):
            value = ",".join(map(str, value))
        elif isinstance(value, bool):
            value = str(value).lower()
        argv.append(f"--set={key}={value}")
    return argv
