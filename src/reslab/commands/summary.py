"""``reslab summary``: the course's per-layer sizing table of a model (PAPER.md Sec. 2 and 7).

The model is built on PyTorch's ``meta`` device: only shapes are computed, no weights are
allocated, so even VGG-19 or ResNet-152 at a large batch takes a moment.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from reslab.analysis.summary import (
    build_model,
    compare,
    format_comparison,
    format_table,
    summarize,
)
from reslab.errors import ReslabError
from reslab.models.blocks import SHORTCUT_OPTIONS, VARIANTS

SHAPES_ONLY = "meta"  # the device for sizing: shapes without storage


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """The ``create_model`` options a sizing command accepts (passed on only when given).

    Args:
        parser: The sub-command's parser (the options go into their own group).
    """
    group = parser.add_argument_group("model options (passed to create_model)")
    group.add_argument("--num-classes", type=int, metavar="N", help="outputs of the last layer")
    group.add_argument("--in-channels", type=int, metavar="C", help="input image channels")
    group.add_argument("--shortcut", choices=SHORTCUT_OPTIONS,
                       help="ResNet shortcut option of Sec. 4.1")
    group.add_argument("--variant", choices=VARIANTS,
                       help="ImageNet bottleneck: v1 (paper) or v1.5 (torchvision)")


def model_options(args: argparse.Namespace) -> dict[str, Any]:
    """The model options given on the command line.

    Args:
        args: The parsed command line.

    Returns:
        ``num_classes``, ``in_channels``, ``shortcut`` and ``variant``, those given only.
    """
    names = ("num_classes", "in_channels", "shortcut", "variant")
    return {name: getattr(args, name) for name in names if getattr(args, name) is not None}


def configure(parser: argparse.ArgumentParser) -> None:
    """Describe ``reslab summary`` and add its arguments."""
    parser.description = (
        "The CNN course's sizing table for a model: per layer its output shape, "
        "parameters, multiply-accumulates (the paper's FLOPs), activations and receptive field, "
        "with the paper's stages (Table 1) and totals. With --compare, one line per model."
    )
    parser.add_argument("model", nargs="?", metavar="MODEL", help="a name from `reslab models`")
    parser.add_argument("--compare", nargs="+", metavar="MODEL",
                        help="one row per model, each at its own default input size")
    parser.add_argument("--input-size", nargs=2, type=int, metavar=("H", "W"),
                        help="input height and width (default: the model's own, as "
                        "`reslab models` lists it: 224, 32, 227 for alexnet, ...)")
    parser.add_argument("--batch", type=int, default=1, metavar="N", help="batch size (default 1)")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument("--all", action="store_true", dest="all_layers",
                        help="list every leaf module (BN, ReLU, ...), not only conv/fc/pool")
    add_model_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``reslab summary``."""
    if (args.model is None) == (args.compare is None):
        raise ReslabError("give one MODEL, or --compare MODEL [MODEL ...]")
    options = model_options(args)
    if args.compare:
        if args.input_size or args.all_layers:
            raise ReslabError("--compare uses each model's own input size; drop --input-size/--all")
        rows = compare(args.compare, batch=args.batch, device=SHAPES_ONLY, **options)
        print(json.dumps([row.to_dict() for row in rows], indent=2) if args.json
              else format_comparison(rows))
        return 0
    model = build_model(args.model, device=SHAPES_ONLY, **options)
    summary = summarize(model, input_size=args.input_size, batch=args.batch,
                        in_channels=args.in_channels, device=SHAPES_ONLY)
    print(json.dumps(summary.to_dict(all_layers=args.all_layers), indent=2) if args.json
          else format_table(summary, all_layers=args.all_layers))
    return 0
