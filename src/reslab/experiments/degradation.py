"""The degradation experiment (Sec. 4.1-4.2, Fig. 4 and 6, Table 2): plain nets and their
residual counterparts at several depths, trained with one recipe.

The paper finds that the deeper *plain* net has the higher training error (plain-56 above
plain-20 on CIFAR-10, plain-34 above plain-18 on ImageNet), and that residual learning reverses
it. The report states what the runs at hand show, computed from their numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from reslab.experiments.report import (MONITOR_HEADING, md_table, monitor_lines, percent,
                                      plot_error_panels)
from reslab.experiments.runs import NetResult, Setup, check_depths, net_result

FAMILIES = {"plain": "plain", "resnet": "ResNet"}


def run_degradation(setup: Setup, *, depths: Sequence[int] = (20, 32, 44, 56)) -> Path:
    """Train plain and residual nets at each depth and write the report.

    Args:
        setup: Data set, recipe and folder.
        depths: CIFAR depths (6n+2).

    Returns:
        The report (``report.md``).
    """
    depths = check_depths(depths)
    nets = {(family, depth): f"{family}{depth}" for depth in depths for family in FAMILIES}
    folders = setup.run("degradation", {name: {"depth": depth, "model": name}
                                        for (_, depth), name in nets.items()}, depths=depths)
    results = [net_result(f"{FAMILIES[family]}-{depth}", family, depth, folders[name])
               for (family, depth), name in nets.items()]
    return write_report(setup, results)


def claims(results: Sequence[NetResult]) -> list[str]:
    """Sentences about degradation that follow from the final training errors.

    For each family, the shallowest and the deepest net are compared: a deeper plain net with
    a higher training error shows degradation (Fig. 6 left); residual nets reverse it when
    the deeper one has the lower training error (Fig. 6 right).

    Args:
        results: The nets (two or more depths per family for a comparison).

    Returns:
        One sentence per family with at least two depths.
    """
    sentences = []
    by_family = {f: sorted((r for r in results if r.family == f and r.train_error is not None),
                           key=lambda r: r.depth) for f in FAMILIES}
    plain, resnet = by_family["plain"], by_family["resnet"]
    plain_degrades = None
    if len(plain) >= 2:
        shallow, deep = plain[0], plain[-1]
        plain_degrades = deep.train_error > shallow.train_error
        verdict = ("higher training error than" if plain_degrades
                   else "no higher training error than")
        meaning = ("the degradation problem of Sec. 4.1" if plain_degrades
                   else "no degradation in this run")
        sentences.append(
            f"The deeper plain net ends with {verdict} the shallower one: {deep.label} "
            f"{percent(deep.train_error)}% vs {shallow.label} {percent(shallow.train_error)}% "
            f"({meaning})."
        )
    if len(resnet) >= 2:
        shallow, deep = resnet[0], resnet[-1]
        better = deep.train_error < shallow.train_error
        if better and plain_degrades:
            meaning = "residual learning reverses the degradation, as in Fig. 6 right"
        elif better:
            meaning = "deeper is better for the residual nets"
        else:
            meaning = "the residual nets do not reverse it in this run" if plain_degrades \
                else "deeper is not better for the residual nets in this run"
        verdict = "lower" if better else "no lower"
        sentences.append(
            f"The deeper ResNet ends with {verdict} training error than the shallower one: "
            f"{deep.label} {percent(deep.train_error)}% vs {shallow.label} "
            f"{percent(shallow.train_error)}% ({meaning})."
        )
    for depth in sorted({r.depth for r in results}):
        pair = {r.family: r for r in results if r.depth == depth}
        p, r = pair.get("plain"), pair.get("resnet")
        if p and r and p.train_error is not None and r.train_error is not None:
            lower = "lower" if r.train_error < p.train_error else "no lower"
            sentences.append(
                f"At depth {depth} the ResNet ends with {lower} training error than the plain "
                f"net: {percent(r.train_error)}% vs {percent(p.train_error)}%."
            )
    return sentences


def write_report(setup: Setup, results: Sequence[NetResult]) -> Path:
    """Write the degradation report, its figure and its CSV.

    Args:
        setup: The experiment's setup (its ``out`` folder receives the files).
        results: The nets, both families at each depth.

    Returns:
        The Markdown report (``report.md``).
    """
    report = setup.report(
        f"Degradation: plain vs residual nets on {setup.data}",
        "Plain nets and ResNets of the same depth, width and recipe (He et al. 2016, Sec. 4.2, "
        "Fig. 6, Table 2). Training error: the last logging window; test error: the last "
        "evaluation.")
    report.figure("degradation.png", plot_error_panels(
        {f"plain-{'/'.join(str(r.depth) for r in results if r.family == 'plain')}":
             {r.label: r.run_dir for r in results if r.family == "plain"},
         f"ResNet-{'/'.join(str(r.depth) for r in results if r.family == 'resnet')}":
             {r.label: r.run_dir for r in results if r.family == "resnet"}},
        title=f"{setup.data}: thin lines training error, bold lines test error (cf. Fig. 6)"),
        "Fig. 6-style error curves")
    depths = sorted({r.depth for r in results})
    by_key = {(r.family, r.depth): r for r in results}
    report.add("## Table 2-style errors (%)", md_table(
        ["layers", "plain train", "ResNet train", "plain test", "ResNet test"],
        [[d, percent(by_key[("plain", d)].train_error), percent(by_key[("resnet", d)].train_error),
          percent(by_key[("plain", d)].test_error), percent(by_key[("resnet", d)].test_error)]
         for d in depths]))
    report.add("The paper (ImageNet, Table 2, top-1 val error): plain-18 27.94, plain-34 28.54, "
               "ResNet-18 27.88, ResNet-34 25.03; CIFAR-10 (Fig. 6): the deeper plain nets have "
               "higher training error, the deeper ResNets lower (up to 110 layers; "
               "ResNet-1202 trains as well but tests worse).")
    report.bullets("What the numbers show", claims(results))
    report.bullets(MONITOR_HEADING, monitor_lines([(r.label, r.run_dir) for r in results]))
    report.add("Complexity of each net: `reslab summary --compare "
               + " ".join(f"{r.family}{r.depth}" for r in results) + "`.")
    report.table_csv("degradation.csv", [r.csv_row() for r in results])
    return report.save()
