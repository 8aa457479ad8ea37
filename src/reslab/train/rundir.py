"""The run folder: resolved config, provenance, metrics, TensorBoard events and the curves plot.

Layout of ``runs/<name>/``::

    config.toml          the resolved configuration (re-run with ``--config``)
    run.json             git commit, versions, command line, device, start time; each resume's
                         (time, git commit, command, device, torch, iteration) under ``resumes``
    metrics.csv          iteration, epoch, lr, train loss/error, val/test error, images/s
    monitor.csv          per-layer statistics (``--monitor``)
    tensorboard/         TensorBoard events
    curves.png           error curves drawn like Fig. 4/6 of the paper
    last.safetensors     latest weights;   best.safetensors  best by validation error
    trainer_state.pt     everything needed by ``--resume``
    writer.json          the process writing the folder, while it runs (run_lock)
"""

from __future__ import annotations

import contextlib
import json
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

from reslab.errors import ReslabError
from reslab.io import (
    append_csv,
    atomic_save_bytes,
    atomic_write,
    check_output_path,
    read_csv,
    remove_temporaries,
    rewrite_csv,
)
from reslab.plots import curve, figure_png, pyplot
from reslab.train.run_lock import claim_writer, release_writer

# The files a run writes to a temporary name and renames (reslab.io.atomic_write).
RUN_FILES = ("config.toml", "run.json", "metrics.csv", "monitor.csv", "curves.png",
             "last.safetensors", "best.safetensors", "trainer_state.pt")
METRIC_COLUMNS = (
    "iteration", "epoch", "lr", "train_loss", "train_error", "val_error", "test_error",
    "images_per_s",
)


def git_commit() -> str:
    """The commit of the reslab source tree, with ``-dirty`` when it has local changes."""
    src = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=src, capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=src,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + ("-dirty" if dirty else "")


def dump_toml(values: dict[str, Any]) -> str:
    """Write a flat dict of scalars and lists as TOML (``None`` as ``"none"``, which the config
    reader turns back into None, so that a resume keeps e.g. ``val_split = None``).

    Args:
        values: Key to scalar or list (each value written as JSON).

    Returns:
        The TOML text, one ``key = value`` line per key, ending with a newline.
    """
    lines = []
    for key, value in values.items():
        value = "none" if value is None else value
        lines.append(f"{key} = {json.dumps(value)}")  # JSON scalars/lists are valid TOML
    return "\n".join(lines) + "\n"


class RunDir:
    """Writes a run folder. Only the main process (rank 0) writes; others get ``enabled=False``.

    Args:
        folder: The run folder (created if needed).
        enabled: False on non-zero ranks: every method then does nothing.
        resume_iteration: When resuming, drop metrics logged after this iteration (they belong
            to training that the checkpoint does not contain), purge later TensorBoard events,
            and record the resume in run.json (:meth:`write_config`). None: a new run, which
            removes the logs (metrics, monitor, TensorBoard events, curves) that a run killed
            before its first checkpoint left in the folder.
    """

    def __init__(self, folder: str | Path, *, enabled: bool = True,
                 resume_iteration: int | None = None) -> None:
        self.folder = Path(folder)
        self.enabled = enabled
        self.resume_iteration = resume_iteration
        self._writer = None
        self._closed = False
        if not enabled:
            return
        check_output_path(self.folder, folder=True)
        try:
            self.folder.mkdir(exist_ok=True)
        except PermissionError:
            raise ReslabError(
                f"cannot create run folder {self.folder}: permission denied") from None
        claim_writer(self.folder)
        self.metrics_path = self.folder / "metrics.csv"
        try:
            remove_temporaries(self.folder, RUN_FILES)  # left by a writer killed mid-write
            if resume_iteration is None:
                self._clear_logs()
            else:
                self._truncate_metrics(resume_iteration)
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(
                str(self.folder / "tensorboard"),
                purge_step=None if resume_iteration is None else resume_iteration + 1,
            )
        except BaseException:
            release_writer(self.folder)
            raise

    def path(self, name: str) -> Path:
        """A file in the run folder.

        Args:
            name: The file's name.

        Returns:
            ``folder / name`` (nothing is created).
        """
        return self.folder / name

    def write_config(self, config: dict[str, Any], *, device: str, total_iters: int) -> None:
        """Save the resolved config (TOML) and the run's provenance (JSON), with the run's
        length in iterations (``epochs`` resolved against the loader). A resume keeps the
        provenance of the start and appends an entry to its ``resumes`` list.

        Args:
            config: The resolved config keys.
            device: The device training runs on, as text.
            total_iters: The run's length in iterations.
        """
        if not self.enabled:
            return
        with atomic_write(self.path("config.toml"), "w") as handle:
            handle.write(dump_toml(config))
        now = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        this = {"git_commit": git_commit(), "command": sys.argv, "device": device,
                "torch": torch.__version__}
        provenance = self._saved_provenance()
        if provenance is None:  # a new run (or a resume whose run.json is gone or damaged)
            provenance = {**this, "started": now, "total_iters": total_iters,
                          "python": platform.python_version(), "platform": platform.platform(),
                          "config": config}
        if self.resume_iteration is not None:
            provenance.setdefault("resumes", []).append(
                {"time": now, **this, "iteration": self.resume_iteration})
        with atomic_write(self.path("run.json"), "w") as handle:
            json.dump(provenance, handle, indent=2)

    def _saved_provenance(self) -> dict[str, Any] | None:
        """The run.json a resume continues, if it reads as one."""
        if self.resume_iteration is None:
            return None
        with contextlib.suppress(OSError, ValueError):
            saved = json.loads(self.path("run.json").read_text())
            if isinstance(saved, dict) and isinstance(saved.get("resumes", []), list):
                return saved
        return None

    def log(self, row: dict[str, Any]) -> None:
        """Append one row to metrics.csv and its scalars to TensorBoard.

        Args:
            row: ``iteration`` and metric values (missing columns are written empty; None values
                skip TensorBoard).
        """
        if not self.enabled:
            return
        append_csv(self.metrics_path, METRIC_COLUMNS,
                   [{k: _fmt(row.get(k)) for k in METRIC_COLUMNS}])
        step = row["iteration"]
        for key, value in row.items():
            if key not in ("iteration", "epoch") and value is not None:
                self._writer.add_scalar(key, value, step)

    def add_scalars(self, values: dict[str, float], step: int) -> None:
        """Extra scalars for TensorBoard only (e.g. the monitors).

        Args:
            values: TensorBoard tag to value.
            step: The iteration.
        """
        if self.enabled:
            for key, value in values.items():
                self._writer.add_scalar(key, value, step)

    def _clear_logs(self) -> None:
        """Remove the logs of an earlier run that left no checkpoint."""
        for name in ("metrics.csv", "monitor.csv", "curves.png"):
            self.path(name).unlink(missing_ok=True)
        for events in self.path("tensorboard").glob("events.out.tfevents.*"):
            events.unlink()

    def _truncate_metrics(self, iteration: int) -> None:
        kept = [r for r in read_metrics(self.metrics_path) if int(r["iteration"]) <= iteration]
        rewrite_csv(self.metrics_path, METRIC_COLUMNS, kept)

    def draw_curves(self, title: str) -> None:
        """Redraw curves.png from metrics.csv.

        Args:
            title: The figure's title.
        """
        if self.enabled:
            png = plot_curves(read_metrics(self.metrics_path), title)
            atomic_save_bytes(self.path("curves.png"), png)

    @property
    def closed(self) -> bool:
        """True once :meth:`close` ran, on every rank (a run folder is written by one run)."""
        return self._closed

    def close(self) -> None:
        """Flush TensorBoard and hand the folder back (remove ``writer.json``)."""
        self._closed = True
        if self._writer is not None:
            self._writer.close()
            self._writer = None
            release_writer(self.folder)

    def __enter__(self) -> RunDir:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


def _fmt(value: Any) -> Any:
    if isinstance(value, float):
        return f"{value:.6g}"
    return "" if value is None else value


def read_metrics(path: str | Path) -> list[dict[str, str]]:
    """Rows of a metrics.csv (complete rows only: a line cut by a crash is dropped).

    Args:
        path: The metrics.csv (it may not exist yet: no rows).

    Returns:
        The rows as strings keyed by :data:`METRIC_COLUMNS` (empty where a value was not set).
    """
    return [r for r in read_csv(path) if r.get("iteration", "").isdigit()]


def plot_curves(rows: list[dict[str, str]], title: str) -> bytes:
    """Error against iterations as in Fig. 4/6: thin training error, bold val/test error.

    Args:
        rows: metrics.csv rows.
        title: Plot title (model and data set).

    Returns:
        PNG bytes.
    """
    fig, ax = pyplot().subplots(figsize=(7, 4.5), dpi=110)
    for column, style, label in (("train_error", dict(lw=0.8, ls="--"), "train error"),
                                 ("val_error", dict(lw=2.2), "val error"),
                                 ("test_error", dict(lw=2.2, color="black"), "test error")):
        points = curve(rows, column)
        if points:
            xs, ys = zip(*points)
            ax.plot(xs, [100 * y for y in ys], label=label, **style)
    ax.set_xlabel("iteration")
    ax.set_ylabel("error (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    return figure_png(fig)
