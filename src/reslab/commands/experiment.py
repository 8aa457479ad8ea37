"""``reslab experiment``: the paper's experiments as commands, each writing a report folder.

- ``degradation``: plain vs residual nets at several depths (Fig. 6, Table 2).
- ``depth-table``: test error against depth over seeds (Table 6).
- ``layer-responses RUN...``: per-layer response std of trained runs (Fig. 7).
- ``shortcuts``: shortcut options A, B, C on one net (Table 3).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from reslab.commands.train import config_overrides
from reslab.data.registry import DATA_DIR_HELP
from reslab.errors import ReslabError
from reslab.train.config import FIELDS, coerce


def configure(parser: argparse.ArgumentParser) -> None:
    """Describe ``reslab experiment`` and add its arguments."""
    parser.description = (
        "Run an experiment of He et al. (2016) and write experiments/<name>/ "
        "(report.md, report.html, PNG plots, CSV; each sub-run a normal run folder). "
        "Re-running resumes unfinished sub-runs and skips finished ones."
    )
    names = parser.add_subparsers(dest="experiment", metavar="EXPERIMENT", required=True,
                                  parser_class=type(parser))
    for name, help_text in (
        ("degradation", "plain vs residual nets at each depth (Fig. 6, Table 2)"),
        ("depth-table", "test error against depth, mean ± std over seeds (Table 6)"),
        ("shortcuts", "shortcut options A, B, C on one net (Table 3)"),
    ):
        sub = names.add_parser(name, help=help_text, description=help_text)
        _training_arguments(sub, name)
        if name != "shortcuts":
            sub.add_argument("--depths", type=int, nargs="+", metavar="D",
                             default=[20, 32, 44, 56], help="depths 6n+2 (default 20 32 44 56)")
        else:
            sub.add_argument("--depth", type=int, default=32, help="depth 6n+2 (default 32)")
        if name == "depth-table":
            sub.add_argument("--seeds", type=int, default=1, help="runs per depth (default 1)")
        sub.set_defaults(func=run)
    sub = names.add_parser("layer-responses", help="std of each 3x3 layer's response (Fig. 7)",
                           description="Std of each 3x3 layer's BN output on the test set "
                           "(Fig. 7) for trained runs of one data set.")
    sub.add_argument("runs", nargs="*", metavar="RUN", help="run folders (plain and residual)")
    sub.add_argument("--out", help="report folder (default experiments/layer-responses)")
    sub.add_argument("--images", type=int, metavar="N", help="use the first N test images")
    sub.add_argument("--data-dir", help=DATA_DIR_HELP)
    sub.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    sub.set_defaults(func=run)


def _training_arguments(parser: argparse.ArgumentParser, name: str) -> None:
    parser.add_argument("--data", required=True, help="data set (see `reslab data list`)")
    parser.add_argument("--data-dir", help=DATA_DIR_HELP)
    parser.add_argument("--quick", action="store_true",
                        help="small version: 200 iterations of batch 32 per sub-run, test "
                        "error at 100 and 200, no validation (degradation at depths 20 and 56: "
                        "about 15 minutes on 2 CPU cores)")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE",
                        help="override a training config key for every sub-run (repeatable)")
    parser.add_argument("--out", help=f"report folder (default experiments/{name})")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    parser.add_argument("--seed", type=int, default=0, help="random seed (first seed)")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="progress bars (default: when on a terminal)")


def run(args: argparse.Namespace) -> int:
    """Run ``reslab experiment``."""
    out = Path(args.out or f"experiments/{args.experiment}")
    if args.experiment == "layer-responses":
        from reslab.experiments.layer_responses import run_layer_responses

        path = run_layer_responses(args.runs, out=out, images=args.images,
                                   data_dir=args.data_dir, device=args.device)
    else:
        from reslab.experiments.runs import Setup, recipe

        setup = Setup(data=args.data, out=out,
                      recipe=recipe(quick=args.quick, overrides={"seed": args.seed,
                                                                 **_set_keys(args.set)}),
                      data_dir=args.data_dir, device=args.device, progress=args.progress)
        path = _train_experiment(args, setup)
    print(f"report: {path}  (HTML: {path.with_suffix('.html')})")
    return 0


def _set_keys(items: list[str] | None) -> dict:
    """The ``--set KEY=VALUE`` config keys, typed (parsed as ``reslab train --set`` does)."""
    given = config_overrides(argparse.Namespace(**dict.fromkeys(FIELDS), set=items))
    if "seed" in given:  # the depth table counts its seeds up from --seed
        raise ReslabError("an experiment's recipe cannot set 'seed': use --seed")
    return {key: coerce(key, value) for key, value in given.items()}


def _train_experiment(args: argparse.Namespace, setup) -> Path:
    if args.experiment == "degradation":
        from reslab.experiments.degradation import run_degradation

        return run_degradation(setup, depths=args.depths)
    if args.experiment == "depth-table":
        from reslab.experiments.depth_table import run_depth_table

        return run_depth_table(setup, depths=args.depths, seeds=args.seeds)
    from reslab.experiments.shortcuts import run_shortcuts

    return run_shortcuts(setup, depth=args.depth)
