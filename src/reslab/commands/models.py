"""``reslab models``: the registered models with their parameters and MACs, and the catalogue
``docs/MODELS.md`` (``reslab models --markdown``, run by ``make docs``)."""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Iterable, Sequence
from typing import Any

from tqdm import tqdm

from reslab.analysis.summary import (
    Totals,
    build_model,
    byte_size,
    render,
    shape_text,
    si,
    summarize,
)
from reslab.commands.summary import SHAPES_ONLY
from reslab.errors import ReslabError, choices_hint
from reslab.io import atomic_write, check_output_path
from reslab.models import list_models, model_info
from reslab.models.blocks import SHORTCUT_OPTIONS
from reslab.models.registry import FAMILIES, family_and_depth
from reslab.models.resnet import IMAGENET_ARCHS

TABLE1_GMACS = {18: 1.8, 34: 3.6, 50: 3.8, 101: 7.6, 152: 11.3}  # Table 1, "FLOPs" (multiply-adds)


def configure(parser: argparse.ArgumentParser) -> None:
    """Describe ``reslab models`` and add its arguments."""
    parser.description = (
        "List the registered models: family, source (paper table or course notes), "
        "default input, parameters and MACs at that input. Any CIFAR depth 6n+2 also works as "
        "resnet<depth> / plain<depth>."
    )
    parser.add_argument("pattern", nargs="?", default="*",
                        help="shell-style name pattern, e.g. 'resnet*' (default: all)")
    parser.add_argument("--family", choices=FAMILIES, help="only this family")
    parser.add_argument("--markdown", action="store_true",
                        help="print the full catalogue (docs/MODELS.md) instead")
    parser.add_argument("-o", "--output", metavar="FILE",
                        help="write to FILE (replaced atomically) instead of printing")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``reslab models``."""
    if args.output:
        check_output_path(args.output)
    if args.markdown:
        if args.pattern != "*" or args.family:
            raise ReslabError("--markdown lists every model: drop the pattern and --family")
        text = catalogue(progress=progress_enabled())
    else:
        names = list_models(args.pattern, family=args.family)
        if (not names and family_and_depth(args.pattern) and args.family in (None, "cifar")
                and args.pattern not in list_models()):  # resnet50 is ImageNet's, not a depth
            model_info(args.pattern)  # any CIFAR depth 6n+2 by name, or why it is not one
            names = [args.pattern]
        if not names:
            raise ReslabError(f"no model matches {args.pattern!r}; {choices_hint(list_models())}")
        text = listing(names)
    if args.output:
        with atomic_write(args.output, encoding="utf-8") as handle:
            handle.write(text + "\n")
    else:
        print(text)
    return 0


def progress_enabled() -> bool:
    """Show progress bars on a terminal only."""
    return sys.stderr.isatty()


@functools.cache
def figures(name: str, **options: Any) -> Totals:
    """A model's totals at its default input size, batch 1 (shapes only, nothing allocated).

    Args:
        name: A registered model name.
        **options: Passed to :func:`reslab.create_model` (hashable values: results are cached).

    Returns:
        The model's :class:`reslab.analysis.summary.Totals`.
    """
    return summarize(build_model(name, device=SHAPES_ONLY, **options), device=SHAPES_ONLY).totals


def param_count(name: str, **options: Any) -> int:
    """A model's parameters, without running it.

    Args:
        name: A registered model name.
        **options: Passed to :func:`reslab.create_model`.

    Returns:
        The number of parameters.
    """
    return sum(p.numel() for p in build_model(name, device=SHAPES_ONLY, **options).parameters())


def each(names: Sequence[str], label: str, *, progress: bool) -> Iterable[str]:
    """``names`` with a progress bar (sizing a 1202-layer net takes a few seconds).

    Args:
        names: The model names.
        label: The progress bar's description.
        progress: Show the bar.

    Returns:
        An iterable over ``names``.
    """
    return tqdm(names, desc=label, unit="model", disable=not progress, leave=False)


def listing(names: Sequence[str]) -> str:
    """The plain-text table of ``reslab models``.

    Args:
        names: Registered model names.

    Returns:
        One line per model: name, family, source, input, params, MACs.
    """
    rows = []
    for name in each(names, "sizing", progress=progress_enabled()):
        info, totals = model_info(name), figures(name)
        rows.append([name, info.family, info.source, shape_text(totals.input_shape[1:]),
                     f"{totals.params:,}", si(totals.macs)])
    return render(["model", "family", "source", "input", "params", "MACs"], rows, left=4)


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]], *, left: int = 1) -> str:
    """A GitHub markdown table: the first ``left`` columns text, the others right-aligned.

    Args:
        header: Column titles.
        rows: The cells (any values, written with ``str``).
        left: How many leading columns are left-aligned.

    Returns:
        The table's lines, without a final newline.
    """
    rule = [":---"] * left + ["---:"] * (len(header) - left)
    return "\n".join("| " + " | ".join(map(str, cells)) + " |" for cells in (header, rule, *rows))


INTRO = """\
# reslab models

Generated by `make docs` (`reslab models --markdown`): do not edit by hand. Every figure is
computed by `reslab summary` from a forward pass at the model's default input, batch 1:

- **params**: parameters (each shared tensor once).
- **MACs**: multiply-accumulates, PyTorch's `FlopCounterMode` FLOPs / 2. The paper's "FLOPs"
  (multiply-adds, Table 1) are MACs.
- **activations**: the course's convention: the input plus the output of every conv, pool and fc
  layer (ReLU and BN in place), in fp32 (4 bytes a value).
- **depth**: weighted (conv/fc) layers on the longest path from input to output.
"""

IMAGENET_INTRO = """\
## ImageNet nets (Table 1): 224x224, 1000 classes, shortcut option B

`variant="v1"` (the default) is the paper's bottleneck, stride 2 on its first 1x1 conv; `"v1.5"`
is torchvision's, stride on the 3x3 conv: the same parameters, more MACs in conv3_1, conv4_1 and
conv5_1. Depths 18 and 34 have no bottleneck, so both variants agree. The two variants have the
same keys and shapes, so torchvision's ResNet-50/101/152 weights load into either without a
complaint, but give torchvision's outputs only in `v1.5`: build it with `variant="v1.5"` before
`load_state_dict` by hand (`reslab train --init`, `reslab eval` and `reslab.load` of a file
without reslab metadata choose `v1.5` themselves).
"""

SHORTCUT_INTRO = """\
Parameters with each shortcut option (Sec. 4.1, Table 3): A adds none, B projects where
dimensions increase, C projects on every block.
"""

CIFAR_INTRO = """\
## CIFAR-10 nets (Sec. 4.2): 32x32, 10 classes

Shortcut option A (identity with zero-padded channels) is the paper's and the default; a plain net
has option A's parameters. Any depth 6n+2 works by name (`resnet8`, `plain14`, ...); `cifar_resnet`
and `cifar_plain` take it as an option, also for the depths whose names are ImageNet nets
(`reslab.create_model("cifar_resnet", depth=50)`).
"""

CLASSIC_INTRO = """\
## Case studies of the course notes

Each at its own input size; `src/reslab/models/classic.py` documents the choices the notes leave
open (LeNet-5 with ReLU and max pooling, the single-tower AlexNet).
"""

VGG_NOTE = """\
### VGG-16 activation memory

The notes total VGG-16's forward activations as "24M * 4 bytes ~ 96MB / image", but their own
per-layer rows (input 150K, 3.2M, 3.2M, 800K, ..., 25K, 4096, 4096, 1000) sum to
{values:,} values, {memory} in fp32. reslab reports the rows' sum: the notes' total is wrong.
(torchvision's adaptive 7x7 pool is an identity at 224x224 and adds no values.)
"""


def catalogue(*, progress: bool = False) -> str:
    """The model catalogue, ``docs/MODELS.md``: every figure computed, none typed in.

    Args:
        progress: Show a progress bar per section.

    Returns:
        The markdown text, without a final newline.
    """
    sections = [INTRO] + [section(progress=progress)
                          for section in (imagenet_section, cifar_section, classic_section)]
    return "\n".join(sections).rstrip()


def imagenet_section(*, progress: bool) -> str:
    """Table 1's nets: MACs of both variants beside the paper's, and params per shortcut option.

    Args:
        progress: Show a progress bar.

    Returns:
        The section's markdown.
    """
    rows = []
    for depth in each(list(IMAGENET_ARCHS), "ImageNet", progress=progress):
        for kind, paper in (("resnet", f"{TABLE1_GMACS[depth]}G"), ("plain", "")):
            v1, v15 = figures(f"{kind}{depth}"), figures(f"{kind}{depth}", variant="v1.5")
            rows.append([f"`{kind}{depth}`", f"{v1.params:,}", si(v1.macs), si(v15.macs), paper,
                         v1.depth, f"{v1.activations:,}"])
    header = ["model", "params", "MACs v1", "MACs v1.5", "Table 1", "depth", "activations"]
    options = [
        [f"`resnet{depth}`",
         *(f"{param_count(f'resnet{depth}', shortcut=option):,}" for option in SHORTCUT_OPTIONS)]
        for depth in IMAGENET_ARCHS
    ]
    options_header = ["model", *(f"option {option}" for option in SHORTCUT_OPTIONS)]
    return "\n".join([IMAGENET_INTRO, markdown_table(header, rows), "", SHORTCUT_INTRO,
                      markdown_table(options_header, options), ""])


def cifar_section(*, progress: bool) -> str:
    """Sec. 4.2's nets: params per shortcut option (plain nets have none), MACs, depth.

    Args:
        progress: Show a progress bar.

    Returns:
        The section's markdown.
    """
    rows = []
    names = list_models("resnet*", family="cifar") + list_models("plain*", family="cifar")
    for name in each(names, "CIFAR", progress=progress):
        totals = figures(name)
        if name.startswith("resnet"):
            other_options = [f"{param_count(name, shortcut=o):,}" for o in SHORTCUT_OPTIONS[1:]]
        else:
            other_options = ["", ""]
        rows.append([f"`{name}`", f"{totals.params:,}", *other_options, si(totals.macs),
                     totals.depth, f"{totals.activations:,}"])
    header = ["model", "params (A)", "params (B)", "params (C)", "MACs", "depth", "activations"]
    return "\n".join([CIFAR_INTRO, markdown_table(header, rows), ""])


def classic_section(*, progress: bool) -> str:
    """The course's case studies, and the note on VGG-16's activation memory.

    Args:
        progress: Show a progress bar.

    Returns:
        The section's markdown.
    """
    names = list_models(family="classic")
    totals = {name: figures(name) for name in each(names, "classic", progress=progress)}
    header = ["model", "source", "input", "params", "MACs", "activations", "act. memory", "depth"]
    rows = [
        [f"`{name}`", model_info(name).source, shape_text(t.input_shape[1:]),
         f"{t.params:,}", si(t.macs), f"{t.activations:,}", byte_size(t.activation_bytes), t.depth]
        for name, t in totals.items()
    ]
    vgg = totals["vgg16"]
    note = VGG_NOTE.format(values=vgg.activations, memory=byte_size(vgg.activation_bytes))
    return "\n".join([CLASSIC_INTRO, markdown_table(header, rows, left=3), "", note])
