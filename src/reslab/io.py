"""Files that are never seen half-written.

Every file reslab writes (checkpoints, downloads, figures, reports) goes through
:func:`atomic_write`: the bytes go to a temporary file in the destination's folder, which is then
renamed over the destination with :func:`os.replace` (atomic on POSIX and Windows). A crash or an
exception leaves the old file (or no file) in place and removes the temporary one; what a
killed process leaves, :func:`remove_temporaries` removes.
:func:`check_output_path` checks a destination before any work, so that a bad ``-o`` fails at
once with one line.

The one exception are the CSV logs a run appends to while it trains (``metrics.csv``,
``monitor.csv``): :func:`append_csv` adds rows, :func:`read_csv` returns only the complete ones
(a last line that a crash cut before its newline is dropped), and :func:`rewrite_csv` replaces
a log atomically (on resume, without the rows after the checkpoint).
"""

from __future__ import annotations

import contextlib
import csv
import glob
import io
import os
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from reslab.errors import ReslabError

TMP_SUFFIX = ".tmp"  # atomic_write's temporary files: .NAME.<random>.tmp next to NAME

# New files get the usual permissions (0o666 less the umask), not mkstemp's private 0o600.
_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", **open_kwargs: Any) -> Iterator[IO]:
    """Open a temporary file that replaces ``path`` when the ``with`` block ends without error.

    Args:
        path: The destination file. Its folder must exist.
        mode: A write mode for :func:`open`: ``"w"`` (text) or ``"wb"`` (binary).
        **open_kwargs: Passed to :func:`open` (``encoding``, ``newline``, ...).

    Yields:
        The open temporary file, in the destination's folder.

    Raises:
        ValueError: ``mode`` does not write a new file.
    """
    if mode not in ("w", "wb", "wt"):
        raise ValueError(f"atomic_write needs mode 'w' or 'wb', not {mode!r}")
    path = Path(path)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX)
    try:
        os.chmod(tmp_name, 0o666 & ~_UMASK)
        with open(fd, mode, **open_kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise


def remove_temporaries(folder: str | os.PathLike, names: Iterable[str]) -> None:
    """Remove the temporary files of :func:`atomic_write` for ``names`` in ``folder`` that a
    process killed before its rename left (kill -9, a lost machine). Call it only while no
    other process writes those files.

    Args:
        folder: The folder.
        names: The destination files' names.
    """
    for name in names:
        for path in Path(folder).glob(f".{glob.escape(name)}.*{TMP_SUFFIX}"):
            path.unlink(missing_ok=True)


def atomic_save_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`).

    Args:
        path: The destination file. Its folder must exist.
        data: The complete contents.
    """
    with atomic_write(path, "wb") as handle:
        handle.write(data)


def check_output_path(path: str | os.PathLike, *, folder: bool = False,
                      suffix: str | None = None) -> Path:
    """Check, before any work, that ``path`` can be written: its parent is an existing,
    writable folder (nothing is created here), and its name has the suffix of the format.

    Args:
        path: A file to write, or (``folder=True``) a folder to create or write into.
        folder: ``path`` is a folder.
        suffix: The file's format, e.g. ``".png"``: the name must end in it (any case).

    Returns:
        ``path`` as a :class:`Path`.

    Raises:
        ReslabError: The parent folder is missing, is not a folder, or is not writable;
            ``path`` exists with the wrong kind (a folder for a file, a file for a folder); or
            its suffix is not ``suffix``.
    """
    path = Path(path)
    if suffix is not None and path.name.lower() == suffix:  # ".onnx": a hidden file, no suffix
        raise ReslabError(f"cannot write {path}: give the file a name before {suffix}, e.g. "
                          f"model{suffix}")
    if suffix is not None and path.suffix.lower() != suffix:
        raise ReslabError(f"cannot write {path}: the file is {suffix[1:].upper()}, so its "
                          f"name must end in {suffix}")
    parent = path.parent
    if not parent.exists():
        raise ReslabError(f"cannot write {path}: folder {parent} does not exist")
    if not parent.is_dir():
        raise ReslabError(f"cannot write {path}: {parent} is not a folder")
    if path.exists() and path.is_dir() != folder:
        kind = "a folder" if path.is_dir() else "a file"
        raise ReslabError(f"cannot write {path}: it is {kind}")
    target = path if folder and path.is_dir() else parent
    if not os.access(target, os.W_OK | os.X_OK):
        raise ReslabError(f"cannot write {path}: folder {target} is read-only")
    return path


def append_csv(path: str | os.PathLike, columns: Sequence[str],
               rows: Iterable[dict[str, Any]]) -> None:
    """Append rows to a CSV log, writing the header first when the file is new.

    Args:
        path: The log file.
        columns: Its columns, in order.
        rows: Rows keyed by column (missing keys are written empty).
    """
    new = not Path(path).exists()
    with open(path, "a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        if new:
            writer.writeheader()
        writer.writerows(rows)


def rewrite_csv(path: str | os.PathLike, columns: Sequence[str],
                rows: Iterable[dict[str, Any]]) -> None:
    """Replace a CSV log atomically with a header and ``rows``.

    Args:
        path: The log file.
        columns: Its columns, in order.
        rows: Rows keyed by column.
    """
    with atomic_write(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def read_csv(path: str | os.PathLike) -> list[dict[str, str]]:
    """The complete rows of a CSV log: a last line without its newline (cut by a crash) and
    rows with missing or extra fields are dropped.

    Args:
        path: The log file (it may not exist: no rows).

    Returns:
        The rows, keyed by the header's columns.
    """
    path = Path(path)
    if not path.exists():
        return []
    with open(path, newline="") as handle:
        text = handle.read()
    text = text[: text.rfind("\n") + 1]  # up to the last complete line
    return [row for row in csv.DictReader(io.StringIO(text))
            if None not in row and None not in row.values()]
