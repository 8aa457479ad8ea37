"""The figure helpers every plot shares: matplotlib with the file-only Agg backend, a figure
rendered to PNG bytes (written atomically by the caller), and a metrics.csv column as points."""

from __future__ import annotations

import io


def pyplot():
    """matplotlib.pyplot with the file-only Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def figure_png(fig) -> bytes:
    """Render a matplotlib figure to PNG bytes and close it.

    Args:
        fig: A figure made with :func:`pyplot`.

    Returns:
        The PNG bytes.
    """
    plt = pyplot()
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def curve(rows: list[dict[str, str]], column: str) -> list[tuple[int, float]]:
    """``(iteration, value)`` points of one metrics.csv column (the rows where it is set).

    Args:
        rows: metrics.csv rows (:func:`reslab.train.rundir.read_metrics`).
        column: The column, e.g. ``"test_error"``.

    Returns:
        The points, in file order.
    """
    return [(int(r["iteration"]), float(r[column])) for r in rows if r.get(column)]
