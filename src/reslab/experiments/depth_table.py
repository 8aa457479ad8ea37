"""The depth table (Sec. 4.2, Table 6): CIFAR ResNets of several depths, each trained with
several seeds; test error mean ± std and best, and parameters, beside the paper's CIFAR-10
column."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path

from reslab.errors import ReslabError
from reslab.experiments.report import MONITOR_HEADING, md_table, monitor_lines, percent, write_csv
from reslab.experiments.runs import NetResult, Setup, check_depths, net_result

# Table 6 of the paper (CIFAR-10 test error %, params); ResNet-110: best of 5 (mean 6.61±0.16).
PAPER_TABLE6: dict[int, tuple[str, str]] = {
    20: ("8.75", "0.27M"), 32: ("7.51", "0.46M"), 44: ("7.17", "0.66M"), 56: ("6.97", "0.85M"),
    110: ("6.43 (6.61±0.16)", "1.7M"), 1202: ("7.93", "19.4M"),
}


def run_depth_table(setup: Setup, *, depths: Sequence[int] = (20, 32, 44, 56),
                    seeds: int = 1) -> Path:
    """Train ResNets of each depth with ``seeds`` seeds and write the Table 6 report.

    Args:
        setup: Data set, recipe and folder; the recipe's ``seed`` is the first seed.
        depths: CIFAR depths (6n+2).
        seeds: Runs per depth.

    Returns:
        The report (``report.md``).
    """
    depths = check_depths(depths)
    if seeds < 1:
        raise ReslabError(f"--seeds must be at least 1, got {seeds}")
    first = int(setup.recipe.get("seed", 0))
    nets = {(d, s): f"resnet{d}-seed{s}" for d in depths for s in range(first, first + seeds)}
    folders = setup.run("depth-table", {name: {"depth": d, "model": f"resnet{d}", "seed": s}
                                        for (d, s), name in nets.items()},
                        depths=depths, seeds=seeds)
    results = [net_result(f"ResNet-{d}", "resnet", d, folders[name])
               for (d, _), name in nets.items()]
    return write_report(setup, results)


def summarize(results: Sequence[NetResult]) -> list[dict]:
    """One row per depth: test error mean, sample std (None for one seed), best, params.

    Args:
        results: The runs, any number per depth; runs without a test error are not counted.

    Returns:
        Dicts with ``depth``, ``runs``, ``mean``, ``std``, ``best`` (errors as fractions; None
        without runs) and ``params``, sorted by depth.
    """
    rows = []
    for depth in sorted({r.depth for r in results}):
        errors = [r.test_error for r in results if r.depth == depth and r.test_error is not None]
        rows.append({
            "depth": depth, "runs": len(errors),
            "mean": statistics.fmean(errors) if errors else None,
            "std": statistics.stdev(errors) if len(errors) >= 2 else None,
            "best": min(errors) if errors else None,
            "params": next(r.params for r in results if r.depth == depth),
        })
    return rows


def claims(rows: Sequence[dict]) -> list[str]:
    """Whether the mean test error falls with depth (Table 6: it does up to 110 layers).

    Args:
        rows: From :func:`summarize`; rows without a mean are ignored.

    Returns:
        Two sentences, or none with fewer than two depths.
    """
    rows = [r for r in rows if r["mean"] is not None]
    if len(rows) < 2:
        return []
    falls = all(b["mean"] < a["mean"] for a, b in zip(rows, rows[1:]))
    order = ", ".join(f"ResNet-{r['depth']} {percent(r['mean'])}%" for r in rows)
    deepest, shallowest = rows[-1], rows[0]
    better = deepest["mean"] < shallowest["mean"]
    return [
        f"The mean test error {'falls' if falls else 'does not fall'} at every step in depth: "
        f"{order}.",
        f"The deepest net (ResNet-{deepest['depth']}) is {'better' if better else 'not better'} "
        f"than the shallowest (ResNet-{shallowest['depth']}): {percent(deepest['mean'])}% vs "
        f"{percent(shallowest['mean'])}%.",
    ]


def write_report(setup: Setup, results: Sequence[NetResult]) -> Path:
    """Write the depth-table report and its CSV.

    Args:
        setup: The experiment's setup (its ``out`` folder receives the files).
        results: The runs, one per depth and seed.

    Returns:
        The Markdown report (``report.md``).
    """
    rows = summarize(results)
    report = setup.report(
        f"Test error against depth on {setup.data} (cf. Table 6)",
        "CIFAR ResNets with option-A shortcuts (He et al. 2016, Sec. 4.2, Table 6). Test error "
        "of each run's last evaluation; mean ± sample std over seeds, and the best run.")
    report.add("## Table 6-style errors (%)", md_table(
        ["net", "params", "runs", "test error mean ± std", "best", "paper CIFAR-10",
         "paper params"],
        [[f"ResNet-{r['depth']}", f"{r['params'] / 1e6:.2f}M", r["runs"],
          percent(r["mean"]) + (f" ± {percent(r['std'])}" if r["std"] is not None else ""),
          percent(r["best"]), *PAPER_TABLE6.get(r["depth"], ("–", "–"))] for r in rows]))
    report.bullets("What the numbers show", claims(rows))
    report.bullets(MONITOR_HEADING, monitor_lines([(f"{r.label} ({r.run_dir.name})", r.run_dir)
                                                   for r in results]))
    report.add("Complexity of each net: `reslab summary --compare "
               + " ".join(f"resnet{r['depth']}" for r in rows) + "`.")
    write_csv(setup.out / "depth_table_summary.csv", [
        {"net": f"ResNet-{r['depth']}", "depth": r["depth"], "runs": r["runs"],
         "test_error_mean": r["mean"], "test_error_std": r["std"], "test_error_best": r["best"],
         "params": r["params"], "paper_test_error": PAPER_TABLE6.get(r["depth"], ("", ""))[0],
         "paper_params": PAPER_TABLE6.get(r["depth"], ("", ""))[1]} for r in rows])
    report.add("The table's rows: [depth_table_summary.csv](depth_table_summary.csv).")
    report.table_csv("depth_table.csv", [
        {"net": r.label, "depth": r.depth, "run_dir": r.run_dir.name, "test_error": r.test_error,
         "train_error": r.train_error, "params": r.params} for r in results])
    return report.save()
