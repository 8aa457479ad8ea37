"""The ``reslab`` command.

Each sub-command lives in its own module under :mod:`reslab.commands` and provides
``configure(parser)``, which gives the sub-command's ``argparse`` parser its description and
arguments and a ``func`` default that takes the parsed namespace and returns an exit status.
Only the command being run is imported. Errors the user can cause
(:class:`reslab.errors.ReslabError`, argparse mistakes, missing files) print one line
``reslab: error: ...`` and exit with status 2, never a traceback. reslab's warnings (the
``logging`` records of its modules) print as ``reslab: warning: ...`` lines on stderr.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from reslab.errors import RankLost, ReslabError, user_message

# Sub-commands: (module, one-line help), in the order `reslab --help` lists them. Only the module
# of the command being run is imported, so that `reslab --help` does not load torch.
COMMANDS = {
    "summary": ("reslab.commands.summary",
                "per-layer output sizes, params, MACs, activations, receptive fields"),
    "models": ("reslab.commands.models", "list the models with their params and MACs"),
    "train": ("reslab.commands.train", "train a model with the paper's recipe"),
    "data": ("reslab.commands.data", "list, get, verify and show the data sets"),
    "eval": ("reslab.commands.eval", "evaluate a checkpoint on a data set"),
    "predict": ("reslab.commands.predict", "classify image files with a checkpoint"),
    "export": ("reslab.commands.export", "export a checkpoint to ONNX"),
    "experiment": ("reslab.commands.experiment",
                   "run one of the paper's experiments and write its report"),
    "show": ("reslab.commands.show", "draw a model's first-layer filters or feature maps"),
    "bench": ("reslab.commands.bench", "training and inference speed against torchvision and timm"),
}

EXIT_USAGE = 2
ALL = "*"  # build_parser: configure every sub-command


class ArgumentParser(argparse.ArgumentParser):
    """An argparse parser whose errors are one line, ``reslab: error: ...``, exit 2."""

    def error(self, message: str) -> None:  # noqa: D102 - argparse API
        hint = f" (see '{self.prog} --help')"
        sys.stderr.write(f"reslab: error: {message}{hint}\n")
        raise SystemExit(EXIT_USAGE)


class StderrLines(logging.Handler):
    """``reslab: warning: ...`` on whatever ``sys.stderr`` is when a record comes."""

    def emit(self, record: logging.LogRecord) -> None:  # noqa: D102 - logging API
        sys.stderr.write(f"reslab: {record.levelname.lower()}: {record.getMessage()}\n")


def show_warnings() -> None:
    """Send the ``reslab`` loggers' warnings to stderr, once per process."""
    logger = logging.getLogger("reslab")
    if not any(isinstance(handler, StderrLines) for handler in logger.handlers):
        logger.addHandler(StderrLines(logging.WARNING))


def build_parser(command: str | None = ALL) -> ArgumentParser:
    """Build the top-level parser.

    Args:
        command: The sub-command to configure fully: a name in :data:`COMMANDS`, :data:`ALL`
            (every one, the default), or None (only their names and one-line help, enough for
            ``reslab --help`` and for rejecting an unknown command).

    Returns:
        The parser.
    """
    from reslab import __version__

    parser = ArgumentParser(
        prog="reslab",
        description="Deep residual learning for image recognition (He et al., CVPR 2016).",
    )
    parser.add_argument("--version", action="version", version=f"reslab {__version__}")
    subparsers = parser.add_subparsers(
        dest="command", metavar="COMMAND", parser_class=ArgumentParser
    )
    for name, (module_name, summary) in COMMANDS.items():
        subparser = subparsers.add_parser(name, help=summary)
        if command in (name, ALL):
            importlib.import_module(module_name).configure(subparser)
    return parser


def command_in(argv: Sequence[str]) -> str | None:
    """The sub-command that ``argv`` runs.

    Args:
        argv: Arguments without the program name.

    Returns:
        Its first word that is not an option, if that is a command and no top-level ``-h`` or
        ``--version`` (which argparse answers before any command) comes first; else None.
    """
    for arg in argv:
        if not arg.startswith("-"):
            return arg if arg in COMMANDS else None
        if arg == "-h" or (len(arg) > 2 and ("--help".startswith(arg)
                                             or "--version".startswith(arg))):
            return None
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line.

    Args:
        argv: Arguments without the program name; ``sys.argv[1:]`` when None.

    Returns:
        The exit status: 0 on success, 2 for a usage error, 1 when another rank of a
        distributed run stopped, 130 when interrupted.
    """
    show_warnings()
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(command_in(argv))
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(args.func(args) or 0)
    except ReslabError as exc:
        sys.stderr.write(f"reslab: error: {user_message(exc)}\n")
        return EXIT_USAGE
    except (FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError,
            PermissionError) as exc:
        sys.stderr.write(f"reslab: error: {exc.strerror or exc}: {exc.filename}\n")
        return EXIT_USAGE
    except RankLost as exc:
        sys.stderr.write(f"reslab: {exc}\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write("reslab: interrupted\n")
        return 130
    except BrokenPipeError:
        return 0
