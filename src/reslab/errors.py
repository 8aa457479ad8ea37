"""Errors a user can cause.

Every mistake a user can make (an unknown model name, a damaged data file, a wrong config type)
raises :class:`ReslabError`. It subclasses :class:`ValueError`, so the Python API raises a
``ValueError`` with a clear message, and the command line turns it into one line
``reslab: error: <message>`` with exit status 2 (see :mod:`reslab.cli`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable


class ReslabError(ValueError):
    """A problem caused by the user's input, reported without a traceback."""


class RankLost(RuntimeError):
    """Another rank of a distributed run stopped (it printed why); this one cannot go on.

    The command line reports it as one line with exit status 1, not a traceback of the failed
    collective.
    """


def user_message(error: ReslabError) -> str:
    """The message of a :class:`ReslabError`, without the traceback that torch's DataLoader
    puts in front of it when a worker process raised it (a damaged image in a folder data set).

    Args:
        error: The error as caught.

    Returns:
        One line for ``reslab: error: ...``.
    """
    text = str(error)
    if "Original Traceback" in text:  # torch's ExceptionWrapper: "... ReslabError: <message>"
        text = " ".join(text.rsplit(f"{type(error).__name__}: ", 1)[-1].split())
    return text


def choices_hint(choices: Iterable[str], limit: int = 40) -> str:
    """Format valid choices for an error message.

    Args:
        choices: The valid values.
        limit: Show at most this many, then "...".

    Returns:
        A string such as ``"choose from: a, b, c"``.
    """
    items = sorted(set(choices), key=natural_key)
    shown = ", ".join(items[:limit])
    if len(items) > limit:
        shown += f", ... ({len(items)} in all)"
    return f"choose from: {shown}"


def natural_key(text: str) -> tuple:
    """Sort key putting ``resnet20`` before ``resnet110`` (numbers compared as numbers).

    Args:
        text: The string to sort.

    Returns:
        A tuple comparing digit runs by value and the other runs as text.
    """
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"(\d+)", text))


def check_positive(**values: int) -> None:
    """Raise :class:`ReslabError` unless every value is a positive integer.

    Args:
        **values: Option names and their values, e.g. ``num_classes=10``.
    """
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ReslabError(f"{name} must be a positive integer, got {value!r}")
