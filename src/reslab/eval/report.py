"""Evaluation reports: the confusion-matrix figure and JSON numbers (written atomically; the
output path is checked first with :func:`reslab.io.check_output_path`)."""

from __future__ import annotations

import io
import json
import math
import os
from collections.abc import Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")
from matplotlib.figure import Figure  # noqa: E402 - after choosing the backend
from torch import Tensor  # noqa: E402

from reslab.io import atomic_save_bytes  # noqa: E402

MAX_LABELLED_CLASSES = 50  # beyond this, axes carry no class names (they would overlap)
MAX_ANNOTATED_CLASSES = 20  # beyond this, cells carry no counts


def json_ready(value: Any) -> Any:
    """``value`` with NaN/inf floats replaced by None (strict JSON has no NaN).

    Args:
        value: A JSON-like value: floats, dicts, lists, tuples and other scalars, nested.

    Returns:
        A copy with non-finite floats as None and tuples as lists; other values unchanged.
    """
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    return value


def dumps(value: Any) -> str:
    """Strict, indented JSON (NaN written as null).

    Args:
        value: A JSON-like value (see :func:`json_ready`).

    Returns:
        The JSON text, indented by 2, ending with a newline.
    """
    return json.dumps(json_ready(value), indent=2, allow_nan=False) + "\n"


def save_json(path: str | os.PathLike, value: Any) -> None:
    """Write ``value`` as strict JSON, atomically.

    Args:
        path: The ``.json`` file.
        value: Plain data (NaN and inf become null: :func:`json_ready`).
    """
    atomic_save_bytes(path, dumps(value).encode())


def save_confusion_matrix(
    path: str | os.PathLike, confusion: Tensor, classes: Sequence[str], *, title: str
) -> None:
    """Draw a confusion matrix (rows: true class, columns: predicted) as a PNG, atomically.

    Cells show the fraction of each true class (so the diagonal is the per-class accuracy);
    class names label the axes up to :data:`MAX_LABELLED_CLASSES` classes, and cells carry
    their counts up to :data:`MAX_ANNOTATED_CLASSES`.

    Args:
        path: The ``.png`` file.
        confusion: int [K, K] counts.
        classes: The K class names.
        title: The figure's title.
    """
    counts = confusion.double()
    rates = counts / counts.sum(1, keepdim=True).clamp_min(1)  # [K, K], rows sum to 1
    k = len(classes)
    side = min(max(4.0, 0.45 * k + 2.5), 14.0)
    fig = Figure(figsize=(side + 1.2, side), layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(rates.numpy(), cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
    fig.colorbar(image, ax=ax, fraction=0.046, label="fraction of the true class")
    if k <= MAX_LABELLED_CLASSES:
        ax.set_xticks(range(k), labels=classes, rotation=90)
        ax.set_yticks(range(k), labels=classes)
    if k <= MAX_ANNOTATED_CLASSES:
        for (row, col), count in zip(((r, c) for r in range(k) for c in range(k)),
                                     confusion.flatten().tolist()):
            if count:
                ax.text(col, row, str(count), ha="center", va="center", fontsize=7,
                        color="white" if rates[row, col] > 0.5 else "black")
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    atomic_save_bytes(path, buffer.getvalue())
