"""The layer-responses experiment (Sec. 4.2, Fig. 7): per-layer response std of trained plain
and residual nets on the test set, in layer order and sorted by magnitude.

    reslab experiment layer-responses runs/plain20 runs/resnet20 runs/resnet56
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from reslab.analysis.responses import response_layers, response_stds
from reslab.data import DATASETS, dataset_info
from reslab.errors import ReslabError
from reslab.experiments.report import Report, md_table, plot_lines
from reslab.experiments.runs import check_idle, run_state
from reslab.models.registry import family_and_depth

EVAL_BATCH = 250


@dataclass(frozen=True)
class Responses:
    """One run's layer responses.

    Attributes:
        run_dir: The run folder.
        model: Registered model name.
        residual: True for a ResNet, False for a plain net.
        depth: Depth from the model name (None when it has none).
        stds: Layer name -> response std, in forward order.
        weights: The checkpoint file measured (``best.safetensors``, else ``last...``).
    """

    run_dir: Path
    model: str
    residual: bool
    depth: int | None
    stds: dict[str, float]
    weights: str = ""

    @property
    def label(self) -> str:
        """``ResNet-56``, ``plain-20``, or the model name."""
        if self.depth is None:
            return self.model
        return f"{'ResNet' if self.residual else 'plain'}-{self.depth}"

    @property
    def mean_std(self) -> float:
        """Mean response std over the layers."""
        return statistics.fmean(self.stds.values())


def measure(run_dir: Path, *, images: int | None, data_dir: str | None,
            device: str) -> Responses:
    """Response stds of one finished (or stopped) run on its data set's test split.

    Args:
        run_dir: The run folder (its best, else last, checkpoint is loaded).
        images: Use only the first N test images (None: all).
        data_dir: Folder holding the data set (None: reslab's default search).
        device: Where the model runs (``"auto"``, ``"cpu"``, ``"cuda"``, ...).

    Returns:
        The run's :class:`Responses`.

    Raises:
        ReslabError: The model has no 3x3 convolution followed by BN.
    """
    from reslab.eval.predictor import load
    from reslab.eval.runner import small_split

    predictor = load(run_dir, device=device)
    if not response_layers(predictor.model):
        raise ReslabError(f"{run_dir}: {predictor.model_name} has no 3x3 convolution followed by "
                          "BN, whose responses Fig. 7 shows")
    info = dataset_info(predictor.meta["data"])
    _, loader, prepare = small_split(predictor, info, data_dir, "test", batch_size=EVAL_BATCH)
    limit = images or float("inf")

    def batches():
        seen = 0
        for x, y in loader:
            if seen >= limit:
                return
            x = x[: int(min(len(x), limit - seen))]
            seen += len(x)
            yield prepare(x, y)[0]

    parsed = family_and_depth(predictor.model_name)
    residual = bool(getattr(predictor.model, "residual", True))
    return Responses(run_dir, predictor.model_name, residual, parsed[1] if parsed else None,
                     response_stds(predictor.model, batches()), Path(predictor.source).name)


def check_runs(runs: Sequence[str | Path]) -> list[Path]:
    """Validate the run folders: at least one, all of one small data set (its test split is
    read as one tensor), none still being written.

    Args:
        runs: The run folders.

    Returns:
        The folders, as paths, in the order given.

    Raises:
        ReslabError: No runs, a folder given twice, a folder that is not a run or is still
            being written, runs of different data sets, or of a data set read image by image
            (ImageNet, folders).
    """
    if not runs:
        raise ReslabError("give at least one run folder (e.g. experiments/degradation/runs/*)")
    folders = [Path(r) for r in runs]
    seen = {}
    for folder in folders:
        if seen.setdefault(folder.resolve(), folder) is not folder:
            raise ReslabError(f"run folder {folder} is given twice (as {seen[folder.resolve()]}): "
                              "each run is measured once")
    data = {}
    for folder in folders:
        check_idle(run_state(folder))
        data[folder] = _run_data(folder)
    if len(set(data.values())) > 1:
        listing = ", ".join(f"{f} ({d})" for f, d in data.items())
        raise ReslabError(f"runs of different data sets cannot share one report: {listing}")
    for folder, name in data.items():
        if not dataset_info(name).small:
            small = ", ".join(n for n, info in DATASETS.items() if info.small)
            raise ReslabError(f"{folder} was trained on {name}: layer responses are measured on "
                              f"the test split of a small data set ({small})")
    return folders


def run_layer_responses(runs: Sequence[str | Path], *, out: Path, images: int | None = None,
                        data_dir: str | None = None, device: str = "auto") -> Path:
    """Measure every run and write the Fig. 7 report.

    Args:
        runs: Run folders of one data set (plain and residual nets, several depths).
        out: The report folder.
        images: Use only the first N test images (None: all).
        data_dir: Folder holding the data set.
        device: Where the models run.

    Returns:
        The report (``report.md``).
    """
    if images is not None and images <= 0:
        raise ReslabError(f"--images must be positive, got {images}")
    folders = check_runs(runs)
    if out.exists() and not out.is_dir():
        raise ReslabError(f"cannot write the report into {out}: it is a file")
    results = sorted((measure(f, images=images, data_dir=data_dir, device=device)
                      for f in folders), key=lambda r: (r.residual, r.depth or 0, str(r.run_dir)))
    out.mkdir(parents=True, exist_ok=True)
    return write_report(out, results, images=images)


def claims(results: Sequence[Responses]) -> list[str]:
    """Sentences about Fig. 7 that follow from the mean response std of each run.

    Residual responses are *smaller* when each ResNet's mean std is below that of every plain
    net of the same depth; they *shrink with depth* when the mean std falls as the ResNets get
    deeper.

    Runs whose mean std is not a number (a diverged net: NaN or infinite responses) are named
    and left out of the comparisons, which NaN would otherwise decide by list order.

    Args:
        results: The measured runs.

    Returns:
        One sentence per comparison the runs allow.
    """
    sentences = []
    broken = [r for r in results if not math.isfinite(r.mean_std)]
    if broken:
        sentences.append(f"{_list(broken)}: not a finite response std (a diverged net); left "
                         "out of the comparisons below.")
        results = [r for r in results if math.isfinite(r.mean_std)]
    for depth in sorted({r.depth for r in results if r.depth is not None}):
        plain = [r for r in results if r.depth == depth and not r.residual]
        resnet = [r for r in results if r.depth == depth and r.residual]
        if plain and resnet:
            smaller = max(r.mean_std for r in resnet) < min(p.mean_std for p in plain)
            sentences.append(
                f"At depth {depth} the residual responses are "
                f"{'smaller' if smaller else 'not smaller'} than the plain ones: mean std "
                f"{_list(resnet)} vs {_list(plain)}.")
    resnets = sorted((r for r in results if r.residual and r.depth is not None),
                     key=lambda r: r.depth)
    depths = sorted({r.depth for r in resnets})
    if len(depths) >= 2:
        means = [statistics.fmean(r.mean_std for r in resnets if r.depth == d) for d in depths]
        shrink = all(b < a for a, b in zip(means, means[1:]))
        sentences.append(
            f"The residual responses {'shrink' if shrink else 'do not shrink'} with depth: "
            + ", ".join(f"ResNet-{d} {m:.3g}" for d, m in zip(depths, means)) + ".")
    return sentences


def _list(results: Sequence[Responses]) -> str:
    return ", ".join(f"{r.label} {r.mean_std:.3g}" for r in results)


def write_report(out: Path, results: Sequence[Responses], *, images: int | None) -> Path:
    """Write the layer-responses report, its figure and its CSV.

    Args:
        out: The report folder (it exists).
        results: The measured runs, in the order the report lists them (at least one).
        images: How many test images were used, for the text (None: all).

    Returns:
        The Markdown report (``report.md``).
    """
    data = _run_data(results[0].run_dir)
    report = Report(out, f"Layer responses on {data} (cf. Fig. 7)")
    report.add(f"Std of each 3x3 layer's response (its BN output, before the ReLU and the "
               f"addition) on the {'first ' + str(images) + ' ' if images else ''}test images "
               f"of {data}, for each run (He et al. 2016, Sec. 4.2, Fig. 7).")
    labels = [r.label for r in results]  # two runs of one net (seeds) get their folder names
    styled = {r.label + ("" if labels.count(r.label) == 1 else f" ({r.run_dir.name})"):
              (list(r.stds.values()), "-" if r.residual else "--") for r in results}
    report.figure("layer_responses.png", plot_lines(
        {"in layer order": styled,
         "sorted by magnitude": {k: (sorted(s, reverse=True), ls) for k, (s, ls)
                                 in styled.items()}},
        xlabel="layer index (3x3 layers)", ylabel="std", title="Layer responses (cf. Fig. 7)"),
        "Fig. 7-style response std")
    report.add("## Mean response std per run", md_table(
        ["run", "folder", "weights", "3x3 layers", "mean std", "max std", "min std"],
        [[r.label, r.run_dir.name, r.weights, len(r.stds), f"{r.mean_std:.4g}",
          f"{max(r.stds.values()):.4g}", f"{min(r.stds.values()):.4g}"] for r in results]))
    report.add("The paper (CIFAR-10, Fig. 7): ResNets' responses are generally smaller than "
               "the plain nets'; the deeper ResNet-56 and ResNet-110 smaller still.")
    report.bullets("What the numbers show", claims(results))
    report.table_csv("layer_responses.csv", [
        {"run": r.label, "run_dir": str(r.run_dir), "weights": r.weights, "model": r.model,
         "residual": r.residual,
         "depth": r.depth, "layer_index": i, "layer": name, "std": std}
        for r in results for i, (name, std) in enumerate(r.stds.items())])
    return report.save()


def _run_data(run_dir: Path) -> str:
    from reslab.train.config import read_toml

    return read_toml(run_dir / "config.toml").get("data", "cifar10")
