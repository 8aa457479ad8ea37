"""Who writes a run folder: ``writer.json`` names the training process while it runs.

A training process claims its run folder before it writes anything (:func:`claim_writer`) and
hands it back when it ends, also on Ctrl-C or an error (:func:`release_writer`). Another
process that finds a *live* writer refuses the folder: a second ``reslab train --resume``, an
experiment re-run, a layer-responses report.

A claim left by a killed process must not block the folder for ever, so liveness is checked:

- same host and same process namespace (``/proc/self/ns/pid``): the pid must exist and, where
  ``/proc`` says so, have the start time recorded in the claim (a reused pid is not the writer);
- anything else (another node of a cluster, another container, a system without ``/proc`` or
  where a pid cannot be probed safely): the writer counts as live while the folder changes
  (the engine logs every ``log_every`` iterations), for :data:`QUIET_SECONDS`.

The file is created in one step with its content (a hard link of a finished temporary file),
and only fails when the name exists, so of two processes claiming at once one gets it.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

from reslab.errors import ReslabError

WRITER_FILE = "writer.json"
QUIET_SECONDS = 120.0


def _namespace() -> str | None:
    with contextlib.suppress(OSError):
        return os.readlink("/proc/self/ns/pid")
    return None


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), else None."""
    with contextlib.suppress(OSError, IndexError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[19]  # field 22; the name may hold spaces
    return None


def this_process() -> dict[str, Any]:
    """How this process names itself in ``writer.json``."""
    return {"host": socket.gethostname(), "pid": os.getpid(), "namespace": _namespace(),
            "start": _start_time(os.getpid())}


def _alive(writer: dict[str, Any]) -> bool | None:
    """Whether the process of a claim made on this host lives; None when it cannot be told."""
    me = this_process()
    if writer.get("host") != me["host"] or writer.get("namespace") != me["namespace"] \
            or me["namespace"] is None or os.name == "nt":  # os.kill would end it on Windows
        return None
    pid = int(writer["pid"])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        pass
    start = _start_time(pid)
    return start is None or writer.get("start") is None or start == writer["start"]


def _read(path: Path) -> tuple[str, dict[str, Any] | None]:
    """The claim's text, and the claim (None when the file is missing or damaged)."""
    try:
        text = path.read_text()
    except OSError:
        return "", None
    try:
        writer = json.loads(text)
        int(writer["pid"]), str(writer["host"])
    except (ValueError, KeyError, TypeError):
        return text, None
    return text, writer


def _is_mine(writer: dict[str, Any]) -> bool:
    return (writer["host"], int(writer["pid"])) == (socket.gethostname(), os.getpid())


def _live(folder: Path, writer: dict[str, Any] | None, now: float | None) -> bool:
    if writer is None or _is_mine(writer):
        return False
    alive = _alive(writer)
    if alive is None:
        now = time.time() if now is None else now
        stamps = [p.stat().st_mtime for p in (folder / WRITER_FILE, folder / "metrics.csv",
                                              folder / "trainer_state.pt") if p.exists()]
        alive = any(now - t < QUIET_SECONDS for t in stamps)
    return alive


def live_writer(folder: str | Path, *, now: float | None = None) -> dict[str, Any] | None:
    """The other process writing a run folder, if one is (module docs).

    Args:
        folder: A run folder.
        now: The current time (``time.time()`` when None), for writers whose process cannot
            be probed.

    Returns:
        The live writer's claim (``host``, ``pid``, ...), or None: no claim, a damaged one, a
        dead writer, or this process.
    """
    folder = Path(folder)
    _, writer = _read(folder / WRITER_FILE)
    return writer if _live(folder, writer, now) else None


def _create(path: Path, text: str) -> bool:
    """Create ``path`` holding ``text`` in one step; False when it exists already."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with open(fd, "w") as handle:
            handle.write(text)
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    finally:
        os.unlink(tmp)


def _remove_stale(path: Path, stale: str) -> None:
    """Remove a claim read as ``stale``, unless another process replaced it meanwhile."""
    aside = path.with_name(f".{path.name}.{os.getpid()}.stale")
    try:
        os.replace(path, aside)
    except FileNotFoundError:
        return
    try:
        if aside.read_text() != stale:  # a fresh claim moved by mistake: put it back
            with contextlib.suppress(FileExistsError):
                os.link(aside, path)
    finally:
        aside.unlink()


def _busy(folder: Path, writer: dict[str, Any]) -> ReslabError:
    return ReslabError(f"run folder {folder} is being written by process {writer['pid']} on "
                       f"{writer['host']} (see {folder / WRITER_FILE}); wait for it to finish "
                       "or stop it")


def check_not_written(folder: str | Path) -> None:
    """Refuse a run folder that another live process writes (a check before starting ranks).

    Args:
        folder: A run folder (it may not exist yet).

    Raises:
        ReslabError: :func:`live_writer` names a process.
    """
    writer = live_writer(folder)
    if writer is not None:
        raise _busy(Path(folder), writer)


def claim_writer(folder: Path) -> None:
    """Record this process as the writer of ``folder`` (``writer.json``).

    Args:
        folder: The run folder (it exists).

    Raises:
        ReslabError: Another live process writes the folder (see :func:`live_writer`).
    """
    path = folder / WRITER_FILE
    claim = json.dumps(this_process())
    for _ in range(3):
        text, writer = _read(path)
        if _live(folder, writer, None):
            raise _busy(folder, writer)
        if path.exists():  # left by a process that is gone (or damaged)
            _remove_stale(path, text)
        if _create(path, claim):
            return
    raise ReslabError(f"run folder {folder} is being claimed by another process")


def release_writer(folder: Path) -> None:
    """Remove ``writer.json`` when this process wrote it.

    Args:
        folder: The run folder.
    """
    path = folder / WRITER_FILE
    text, writer = _read(path)
    if writer is not None and _is_mine(writer):
        _remove_stale(path, text)
