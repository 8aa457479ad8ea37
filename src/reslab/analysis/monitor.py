"""Training monitors from the CNN course notes ("babysitting the learning process", PAPER.md
Sec. 7): per-layer activation std, gradient std, and the ratio of the update norm to the weight
norm (healthy near 1e-3), recorded every ``every`` iterations into ``monitor.csv`` and
TensorBoard.

Forward hooks are registered only for the monitored iterations and removed right after, and
every statistic stays on the device until one transfer per monitored iteration, so the cost
between monitored iterations is one integer comparison (see benchmarks/bench_monitor.py).
Under DDP only rank 0 monitors: gradients (averaged) and weights are the same on every rank,
the activations are rank 0's shard of the global batch.

    monitor = Monitor(model, every=100, run_dir=run_dir)
    ...
    loss.backward()
    monitor.after_backward(iteration + 1)
    optimizer.step()
    monitor.after_step(iteration + 1)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from reslab.io import append_csv, read_csv, rewrite_csv

HEALTHY_RATIO = 1e-3
RATIO_TOLERANCE = 10.0  # flag ratios outside [1e-4, 1e-2]
COLLAPSE_FACTOR = 10.0  # flag when the deepest layers' activation std is 10x below the first's
COLUMNS = ("iteration", "layer", "activation_std", "grad_std", "update_ratio")


def monitored_layers(model: nn.Module) -> dict[str, nn.Module]:
    """The weight layers (convolutions and fully-connected layers) in forward order.

    Args:
        model: The model to search.

    Returns:
        Module name (as in ``named_modules``) to module, for every ``nn.Conv2d`` and ``nn.Linear``.
    """
    return {name: m for name, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}


class Monitor:
    """Per-layer training statistics every ``every`` iterations.

    Args:
        model: The (unwrapped) model being trained.
        every: Interval in iterations (iterations ``every``, ``2 * every``, ...).
        csv_path: Where rows are appended (``monitor.csv`` in the run folder).
        run_dir: Optional :class:`reslab.train.rundir.RunDir` for TensorBoard scalars.
        start: The iteration training starts from (rows after it are dropped on resume).
    """

    def __init__(self, model: nn.Module, *, every: int, csv_path: str | Path,
                 run_dir=None, start: int = 0) -> None:
        if every <= 0:
            raise ValueError(f"monitor interval must be positive, got {every}")
        self.layers = monitored_layers(model)
        self.every = every
        self.csv_path = Path(csv_path)
        self.run_dir = run_dir
        self._hooks: list[torch.utils.hooks.RemovableHandle] = []
        self._activations: dict[str, Tensor] = {}
        self._before: list[Tensor] = []
        self._grad_std: list[Tensor] = []
        _truncate(self.csv_path, start)
        self._arm_if_due(start + 1)

    def after_backward(self, iteration: int) -> None:
        """After ``loss.backward()`` of ``iteration`` (1-based): read the gradients and keep a
        copy of the weights the optimizer is about to change.

        Args:
            iteration: The iteration just run, 1-based; nothing is done unless it is a multiple of
                ``every``.
        """
        if iteration % self.every:
            return
        self._disarm()
        weights = [m.weight.detach() for m in self.layers.values()]
        self._grad_std = [_std(m.weight.grad, m.weight.device) for m in self.layers.values()]
        self._before = [w.clone() for w in weights]

    def after_step(self, iteration: int) -> None:
        """After ``optimizer.step()`` of ``iteration``: write the row of a monitored iteration,
        and arm the hooks when the next iteration is monitored.

        Args:
            iteration: The iteration just run, 1-based.
        """
        if iteration % self.every == 0 and self._before:
            self._write(iteration)
        self._arm_if_due(iteration + 1)

    def _arm_if_due(self, iteration: int) -> None:
        if iteration % self.every or self._hooks:
            return
        for name, module in self.layers.items():
            self._hooks.append(module.register_forward_hook(self._recorder(name)))

    def _recorder(self, name: str):
        def record(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
            self._activations[name] = output.detach().float().std()
        return record

    def _disarm(self) -> None:
        for handle in self._hooks:
            handle.remove()
        self._hooks.clear()

    def _write(self, iteration: int) -> None:
        nan = torch.tensor(math.nan)
        ratios = [torch.linalg.vector_norm(m.weight.detach() - before)
                  / torch.linalg.vector_norm(before).clamp_min(1e-12)
                  for m, before in zip(self.layers.values(), self._before)]
        acts = [self._activations.get(name, nan).to(ratios[0].device) for name in self.layers]
        # (3, layers): one transfer for every number of this iteration.
        table = torch.stack([torch.stack(acts), torch.stack(self._grad_std),
                             torch.stack(ratios)]).cpu().tolist()
        rows = [{"iteration": iteration, "layer": name, "activation_std": a, "grad_std": g,
                 "update_ratio": r} for name, a, g, r in zip(self.layers, *table)]
        append_csv(self.csv_path, COLUMNS, ({k: f"{v:.6g}" if isinstance(v, float) else v
                                             for k, v in r.items()} for r in rows))
        if self.run_dir is not None:
            scalars = {f"monitor/{key}/{row['layer']}": row[key] for row in rows
                       for key in COLUMNS[2:] if math.isfinite(row[key])}
            self.run_dir.add_scalars(scalars, iteration)
        self._activations.clear()
        self._before = []


def _std(tensor: Tensor | None, device: torch.device) -> Tensor:
    """The std of ``tensor`` as a 0-d tensor; NaN on ``device`` (beside the others: they are
    stacked) for a layer without a gradient."""
    if tensor is None:
        return torch.tensor(math.nan, device=device)
    return tensor.detach().float().std()


def _truncate(path: Path, iteration: int) -> None:
    """On resume, drop rows recorded after the checkpoint the run continues from."""
    if path.exists():
        rewrite_csv(path, COLUMNS, [r for r in read_csv(path) if int(r["iteration"]) <= iteration])


@dataclass(frozen=True)
class MonitorRow:
    """One layer at one monitored iteration."""

    iteration: int
    layer: str
    activation_std: float
    grad_std: float
    update_ratio: float


def read_monitor(path: str | Path) -> list[MonitorRow]:
    """Rows of a monitor.csv (empty when the file does not exist; cut lines are dropped).

    Args:
        path: The ``monitor.csv`` file.

    Returns:
        One :class:`MonitorRow` per complete row, in file order (rows with a missing or
        non-numeric field are skipped).
    """
    rows = []
    for r in read_csv(path):
        try:
            rows.append(MonitorRow(int(r["iteration"]), r["layer"], float(r["activation_std"]),
                                   float(r["grad_std"]), float(r["update_ratio"])))
        except (KeyError, ValueError):
            continue
    return rows


@dataclass(frozen=True)
class MonitorFindings:
    """What a run's monitor says, at its last monitored iteration.

    Attributes:
        iteration: The iteration the findings describe.
        off_ratio: ``(layer, ratio)`` for layers whose update/weight ratio is more than
            :data:`RATIO_TOLERANCE` away from :data:`HEALTHY_RATIO`.
        first_std: Mean activation std of the first quarter of the layers.
        last_std: Mean activation std of the last quarter of the layers.
        collapsed: ``last_std * COLLAPSE_FACTOR < first_std``.
    """

    iteration: int
    off_ratio: list[tuple[str, float]]
    first_std: float
    last_std: float
    collapsed: bool


def findings(rows: Sequence[MonitorRow]) -> MonitorFindings | None:
    """Judge the last monitored iteration of a run (the course notes' rules of thumb).

    Args:
        rows: :func:`read_monitor` rows.

    Returns:
        The :class:`MonitorFindings`, or None when nothing was recorded.
    """
    if not rows:
        return None
    last = max(r.iteration for r in rows)
    layers = [r for r in rows if r.iteration == last]  # in forward order
    low, high = HEALTHY_RATIO / RATIO_TOLERANCE, HEALTHY_RATIO * RATIO_TOLERANCE
    off = [(r.layer, r.update_ratio) for r in layers if not low <= r.update_ratio <= high]
    stds = [r.activation_std for r in layers if math.isfinite(r.activation_std)]
    quarter = max(1, len(stds) // 4)
    first = sum(stds[:quarter]) / quarter if stds else math.nan
    final = sum(stds[-quarter:]) / quarter if stds else math.nan
    return MonitorFindings(last, off, first, final, final * COLLAPSE_FACTOR < first)
