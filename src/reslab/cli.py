"""The ``reslab`` command.

Each sub-command lives in its own module under :mod:`reslab.commands` and provides
``add_parser(subparsers)``, which registers an ``argparse`` parser whose ``func`` default takes
the parsed namespace and returns an exit status. Errors the user can cause
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

from reslab.errors import ReslabError, user_message

# Sub-command modules, in the order `reslab --help` lists them.
COMMAND_MODULES = (
    "reslab.commands.summary",
    "reslab.commands.models",
    "reslab.commands.train",
    "reslab.commands.data",
    "reslab.commands.eval",
    "reslab.commands.predict",
    "reslab.commands.export",
    "reslab.commands.experiment",
    "reslab.commands.show",
    "reslab.commands.bench",
)

EXIT_USAGE = 2


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


def build_parser() -> ArgumentParser:
    """Build the top-level parser with every sub-command registered."""
    from reslab import __version__

    parser = ArgumentParser(
        prog="reslab",
        description="Deep residual learning for image recognition (He et al., CVPR 2016).",
    )
    parser.add_argument("--version", action="version", version=f"reslab {__version__}")
    subparsers = parser.add_subparsers(
        dest="command", metavar="COMMAND", parser_class=ArgumentParser
    )
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line.

    Args:
        argv: Arguments without the program name; ``sys.argv[1:]`` when None.

    Returns:
        The exit status: 0 on success, 2 for a usage error, 130 when interrupted.
    """
    show_warnings()
    parser = build_parser()
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
    except KeyboardInterrupt:
        sys.stderr.write("reslab: interrupted\n")
        return 130
    except BrokenPipeError:
        return 0
