"""What every experiment writes: a Markdown report, the same as HTML, PNG figures and a CSV of
every number, each file written atomically (a report is never seen half-written).

The HTML comes from :func:`markdown_to_html`, a converter for the small Markdown subset the
reports use (headings, paragraphs, bullet lists, pipe tables, images, code spans and blocks,
bold), so that no extra dependency is needed.
"""

from __future__ import annotations

import csv
import html
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from reslab.analysis.monitor import findings, read_monitor
from reslab.io import atomic_save_bytes, atomic_write
from reslab.plots import curve, figure_png, pyplot
from reslab.train.rundir import read_metrics


def percent(value: float | None, digits: int = 2) -> str:
    """``0.0875`` -> ``"8.75"``; None -> ``"–"``.

    Args:
        value: A fraction, or None.
        digits: Decimal places.

    Returns:
        The percentage without a ``%`` sign.
    """
    return "–" if value is None else f"{100 * value:.{digits}f}"


def recipe_text(recipe: dict[str, Any]) -> str:
    """The training keys of an experiment as ``key=value`` words.

    Args:
        recipe: Config key to value.

    Returns:
        The words, or ``the data set's preset`` when ``recipe`` is empty.
    """
    return " ".join(f"{k}={v}" for k, v in recipe.items()) or "the data set's preset"


def md_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown pipe table.

    Args:
        header: Column titles.
        rows: Cells (any values, written with ``str``).

    Returns:
        The table's lines, without a final newline.
    """
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def write_csv(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    """Write dict rows (columns from the first row) atomically.

    Args:
        path: The ``.csv`` file; its folder must exist.
        rows: One dict per row, all with the first row's keys (empty: an empty file).
    """
    with atomic_write(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]) if rows else [])
        writer.writeheader()
        writer.writerows(rows)


def plot_error_panels(panels: dict[str, dict[str, Path]], *, title: str) -> bytes:
    """Error curves drawn like Fig. 6: one panel per family (plain left, ResNet right), thin
    lines for training error, bold lines for test error, one colour per net.

    Args:
        panels: Panel title -> {net label -> run folder}.
        title: Figure title.

    Returns:
        PNG bytes.
    """
    plt = pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.5), dpi=110,
                             sharey=True, squeeze=False)
    for ax, (panel, runs) in zip(axes[0], panels.items()):
        for color, (label, folder) in zip(plt.rcParams["axes.prop_cycle"].by_key()["color"],
                                          runs.items()):
            rows = read_metrics(folder / "metrics.csv")
            for column, width, suffix in (("train_error", 0.8, "train"),
                                          ("test_error", 2.4, "test")):
                points = curve(rows, column)
                if points:
                    xs, ys = zip(*points)
                    ax.plot(xs, [100 * y for y in ys], lw=width, color=color,
                            marker="o" if len(points) < 4 and width > 1 else None,
                            label=f"{label} {suffix}")
        ax.set_title(panel)
        ax.set_xlabel("iteration")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0][0].set_ylabel("error (%)")
    fig.suptitle(title)
    return figure_png(fig)


def plot_lines(panels: dict[str, dict[str, tuple[Sequence[float], str]]], *, xlabel: str,
               ylabel: str, title: str) -> bytes:
    """Side-by-side panels of lines against their index (Fig. 7 style).

    Args:
        panels: Panel title -> {line label -> (values, matplotlib line style)}.
        xlabel: x-axis label.
        ylabel: y-axis label.
        title: Figure title.

    Returns:
        PNG bytes.
    """
    plt = pyplot()
    fig, axes = plt.subplots(len(panels), 1, figsize=(8, 3.6 * len(panels)), dpi=110,
                             squeeze=False)
    for ax, (panel, lines) in zip(axes[:, 0], panels.items()):
        for label, (values, style) in lines.items():
            ax.plot(range(1, len(values) + 1), values, ls=style, marker=".", label=label)
        ax.set_title(panel)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    return figure_png(fig)


class Report:
    """An experiment's output folder: Markdown text, figures, CSV tables; :meth:`save` writes
    ``report.md`` and ``report.html``.

    Args:
        out: The experiment folder.
        title: The report's first heading.
    """

    def __init__(self, out: Path, title: str) -> None:
        self.out = out
        self.parts = [f"# {title}"]

    def add(self, *blocks: str) -> None:
        """Append Markdown blocks (paragraphs, tables, lists).

        Args:
            *blocks: Markdown blocks, in order.
        """
        self.parts.extend(blocks)

    def bullets(self, heading: str, lines: Sequence[str]) -> None:
        """A section of bullet points; nothing when ``lines`` is empty.

        Args:
            heading: The section's heading (level 2).
            lines: One bullet each.
        """
        if lines:
            self.parts += [f"## {heading}", "\n".join(f"- {line}" for line in lines)]

    def figure(self, name: str, png: bytes, caption: str) -> None:
        """Write ``name`` (a PNG) and show it in the report.

        Args:
            name: The PNG's file name in the report folder.
            png: The PNG bytes.
            caption: The image's alt text.
        """
        atomic_save_bytes(self.out / name, png)
        self.parts.append(f"![{caption}]({name})")

    def table_csv(self, name: str, rows: Sequence[dict[str, Any]]) -> None:
        """Write ``name`` (CSV) and link it from the report.

        Args:
            name: The CSV's file name in the report folder.
            rows: Dict rows (see :func:`write_csv`).
        """
        write_csv(self.out / name, rows)
        self.parts.append(f"Every number above: [{name}]({name}).")

    def save(self) -> Path:
        """Write report.md and report.html; returns the Markdown file."""
        text = "\n\n".join(self.parts) + "\n"
        with atomic_write(self.out / "report.md", "w") as handle:
            handle.write(text)
        title = self.parts[0].lstrip("# ")
        with atomic_write(self.out / "report.html", "w") as handle:
            handle.write(html_page(title, markdown_to_html(text)))
        return self.out / "report.md"


_STYLE = ("body{font-family:sans-serif;max-width:60em;margin:2em auto;line-height:1.45}"
          "table{border-collapse:collapse}td,th{border:1px solid #bbb;padding:.2em .6em}"
          "img{max-width:100%}code{background:#f3f3f3}")


def html_page(title: str, body: str) -> str:
    """A standalone HTML page around ``body``.

    Args:
        title: The page title (escaped here).
        body: HTML (inserted as is).

    Returns:
        The document, ending with a newline.
    """
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}"
            f"</title><style>{_STYLE}</style></head><body>\n{body}</body></html>\n")


def _inline(text: str) -> str:
    text = html.escape(text, quote=False)
    text = re.sub(r"!\[([^\]]*)\]\(([^)]+)\)", r'<img alt="\1" src="\2">', text)
    text = re.sub(r"\[([^\]]+)\]\(([^)]+)\)", r'<a href="\2">\1</a>', text)
    text = re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", text)
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", text)


def markdown_to_html(text: str) -> str:
    """Convert the Markdown subset of the reports to HTML.

    Args:
        text: Blocks separated by blank lines: ``#`` headings, ``- `` lists, ``|`` tables,
            fenced code, images and paragraphs.

    Returns:
        The HTML body.
    """
    out = []
    for block in re.split(r"\n\s*\n", text.strip()):
        lines = block.splitlines()
        if block.startswith("```"):
            code = "\n".join(lines[1:-1] if lines[-1].startswith("```") else lines[1:])
            out.append(f"<pre><code>{html.escape(code)}</code></pre>")
        elif block.startswith("#"):
            level = len(block) - len(block.lstrip("#"))
            out.append(f"<h{level}>{_inline(block[level:].strip())}</h{level}>")
        elif all(line.startswith("- ") for line in lines):
            items = "".join(f"<li>{_inline(line[2:])}</li>" for line in lines)
            out.append(f"<ul>{items}</ul>")
        elif all(line.startswith("|") for line in lines) and len(lines) >= 2:
            cells = [[c.strip() for c in line.strip().strip("|").split("|")] for line in lines]
            head = "".join(f"<th>{_inline(c)}</th>" for c in cells[0])
            body = "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in row) + "</tr>"
                           for row in cells[2:])
            out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        else:
            out.append(f"<p>{_inline(' '.join(lines))}</p>")
    return "\n".join(out) + "\n"


MONITOR_HEADING = ("Training monitors (course notes: update/weight ratio near 1e-3, no activation "
                   "collapse)")


def monitor_lines(runs: Sequence[tuple[str, Path]]) -> list[str]:
    """One line per run on its training monitors (when it recorded any), for the section
    headed :data:`MONITOR_HEADING`.

    Args:
        runs: ``(name in the report, run folder)``; the folders' ``monitor.csv`` and
            ``metrics.csv`` are read.

    Returns:
        One sentence per run with monitor rows; runs without any are left out.
    """
    lines = []
    for name, run_dir in runs:
        found = findings(read_monitor(run_dir / "monitor.csv"))
        if found is None:
            continue
        ratio = (f"{len(found.off_ratio)} layers with an update/weight ratio outside "
                 f"[1e-4, 1e-2] (e.g. {found.off_ratio[0][0]} {found.off_ratio[0][1]:.1e})"
                 if found.off_ratio else "every update/weight ratio within [1e-4, 1e-2]")
        acts = ("activation std collapses with depth" if found.collapsed
                else "no activation collapse with depth")
        lrs = logged_lrs(run_dir)
        before = [lr for it, lr in lrs if it <= found.iteration]
        at = f"iteration {found.iteration}"
        if before:  # the ratio scales with the lr; the ~1e-3 rule is meant for the initial one
            lr, initial = before[-1], lrs[0][1]
            share = f", 1/{initial / lr:.3g} of the initial {initial:g}" if lr < initial else ""
            at += f" (lr {lr:g}{share})"
        lines.append(f"{name} at {at}: {ratio}; {acts} (first "
                     f"layers {found.first_std:.3g}, last layers {found.last_std:.3g}).")
    return lines


def logged_lrs(run_dir: Path) -> list[tuple[int, float]]:
    """``(iteration, lr)`` of each row of the run's metrics.csv that logged the lr.

    Args:
        run_dir: The run folder.

    Returns:
        The pairs, in file order.
    """
    return [(int(row["iteration"]), float(row["lr"]))
            for row in read_metrics(run_dir / "metrics.csv") if row.get("lr")]
