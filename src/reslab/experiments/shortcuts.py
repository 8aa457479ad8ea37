"""Shortcut options (Sec. 4.1, Table 3): one CIFAR net with shortcuts A (zero-padding
identity), B (projections where dimensions increase) and C (projections everywhere), beside
its plain counterpart."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from reslab.experiments.report import MONITOR_HEADING, md_table, monitor_lines, percent
from reslab.experiments.runs import NetResult, Setup, check_depths, net_result

OPTIONS = ("A", "B", "C")


def run_shortcuts(setup: Setup, *, depth: int = 32) -> Path:
    """Train the plain net and ResNets with options A, B, C at ``depth``; write the report.

    Args:
        setup: Data set, recipe and folder.
        depth: CIFAR depth (6n+2).

    Returns:
        The report (``report.md``).
    """
    (depth,) = check_depths([depth])
    nets = {f"plain{depth}": (f"plain-{depth}", "plain", {"model": f"plain{depth}"})}
    nets |= {f"resnet{depth}-{option}": (f"ResNet-{depth} {option}", "resnet",
                                         {"model": f"resnet{depth}", "shortcut": option})
             for option in OPTIONS}
    folders = setup.run("shortcuts", {name: {"depth": depth, **keys}
                                      for name, (_, _, keys) in nets.items()}, depth=depth)
    results = [net_result(label, family, depth, folders[name])
               for name, (label, family, _) in nets.items()]
    return write_report(setup, results)


def claims(results: Sequence[NetResult]) -> list[str]:
    """Whether every option beats the plain net, and whether the options differ less among
    themselves than from the plain net (Table 3: "small differences among A/B/C").

    Args:
        results: The plain net and the ResNets of each shortcut option; nets without a test
            error are ignored.

    Returns:
        The sentences; none when no option has a test error.
    """
    plain = next((r for r in results if r.family == "plain"), None)
    options = [r for r in results if r.family == "resnet" and r.test_error is not None]
    if not options:
        return []
    lowest = min(r.test_error for r in options)
    best = [r.label for r in options if r.test_error == lowest]  # ties: each of them
    who = (f"{best[0]} has" if len(best) == 1
           else f"{', '.join(best[:-1])} and {best[-1]} share")
    spread = max(r.test_error for r in options) - lowest
    sentences = [f"{who} the lowest test error of the options "
                 f"({percent(lowest)}%); the options span {percent(spread)} points."]
    if plain is not None and plain.test_error is not None:
        all_better = all(r.test_error < plain.test_error for r in options)
        gain = plain.test_error - max(r.test_error for r in options)
        sentences.append(
            f"{'Every' if all_better else 'Not every'} option beats {plain.label} "
            f"({percent(plain.test_error)}%).")
        if all_better:
            small = spread < gain
            sentences.append(
                f"The differences among the options ({percent(spread)} points) are "
                f"{'smaller' if small else 'not smaller'} than the smallest gain over the plain "
                f"net ({percent(gain)} points).")
    return sentences


def write_report(setup: Setup, results: Sequence[NetResult]) -> Path:
    """Write the shortcuts report and its CSV.

    Args:
        setup: The experiment's setup (its ``out`` folder receives the files).
        results: The plain net and the ResNets of each shortcut option.

    Returns:
        The Markdown report (``report.md``).
    """
    report = setup.report(
        f"Shortcut options A, B, C on {setup.data} (cf. Table 3)",
        "The same net with the shortcut options of Sec. 4.1: A zero-padding identity, B "
        "projections where dimensions increase, C projections everywhere, and the plain "
        "counterpart.")
    report.add("## Table 3-style errors (%)", md_table(
        ["net", "params", "train error", "test error"],
        [[r.label, f"{r.params / 1e6:.3f}M", percent(r.train_error), percent(r.test_error)]
         for r in results]))
    report.add("The paper (ImageNet ResNet-34, Table 3, top-1/top-5 10-crop val error): plain "
               "28.54/10.02; A 25.03/7.76; B 24.52/7.46; C 24.19/7.40.")
    report.bullets("What the numbers show", claims(results))
    report.bullets(MONITOR_HEADING, monitor_lines([(r.label, r.run_dir) for r in results]))
    report.table_csv("shortcuts.csv", [r.csv_row() for r in results])
    return report.save()
