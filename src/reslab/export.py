"""Export a checkpoint to ONNX, with its class names and preprocessing as metadata.

The graph maps ``images`` (float32 [batch, C, H, W], already preprocessed: pixels in [0, 1]
minus the training set's per-pixel mean, see :class:`reslab.eval.predictor.Preprocessing`) to
``logits`` ([batch, num_classes]); the batch axis is dynamic. The exporter is torch's
``torch.export``-based one (``dynamo=True``, the default since PyTorch 2.9; it needs
``onnxscript``): the TorchScript-based exporter is deprecated and due for removal. This
exporter writes opset 18 or newer (up to what the installed ``onnx`` knows); older runtimes
that need opset 17 or below are not served.

``metadata_props`` of the model: ``reslab.classes`` (JSON list), ``reslab.preprocess`` (JSON:
channels, size, resize, mean and std, as :meth:`Preprocessing.describe`), ``reslab.model``,
``reslab.paper_ref``, ``reslab.version``. Read them with
``onnxruntime.InferenceSession(path).get_modelmeta().custom_metadata_map``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch

from reslab.errors import ReslabError
from reslab.eval.predictor import Predictor
from reslab.io import atomic_save_bytes

INPUT_NAME = "images"
OUTPUT_NAME = "logits"
FORMATS = ("onnx",)
MIN_OPSET = 18  # the torch.export-based exporter's oldest opset


def onnx_metadata(predictor: Predictor) -> dict[str, str]:
    """The ``metadata_props`` written into the ONNX file (all values are strings).

    Args:
        predictor: The loaded checkpoint.

    Returns:
        ``reslab.model``, ``reslab.classes`` and ``reslab.preprocess`` (JSON),
        ``reslab.paper_ref`` and ``reslab.version``.
    """
    from reslab import __version__

    return {
        "reslab.model": predictor.model_name,
        "reslab.classes": json.dumps(predictor.classes),
        "reslab.preprocess": json.dumps(predictor.preprocessing.describe()),
        "reslab.paper_ref": str(getattr(predictor.model, "paper_ref", "")),
        "reslab.version": __version__,
    }


@contextlib.contextmanager
def quiet_exporter() -> Iterator[None]:
    """Hide the exporter's notes on its own internals: its Python warnings, and onnxscript's
    log lines (e.g. that a newer opset is converted by the onnx C API), which would reach
    stderr as raw lines without the ``reslab:`` prefix. Errors still show."""
    logger = logging.getLogger("onnxscript")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def export_onnx(predictor: Predictor, path: str | os.PathLike, *, opset: int | None = None) -> Path:
    """Write ``predictor``'s model as an ONNX file with a dynamic batch axis, atomically.

    Args:
        predictor: The loaded checkpoint (:func:`reslab.load`), traced on its device.
        path: The ``.onnx`` file; its folder must exist.
        opset: The ONNX opset, :data:`MIN_OPSET` or newer (default: the exporter's, 18).

    Returns:
        The written file.

    Raises:
        ReslabError: The ``onnx`` extra is not installed, or an opset outside what the exporter
            and the installed ``onnx`` support.
    """
    try:
        import onnx
        import onnxscript  # noqa: F401 - torch.onnx.export(dynamo=True) needs it
    except ImportError as exc:
        raise ReslabError(f"exporting to ONNX needs the onnx extra ({exc.name} is not "
                          "installed): pip install 'reslab[onnx]'") from None

    newest = onnx.defs.onnx_opset_version()
    if opset is not None and not MIN_OPSET <= opset <= newest:
        raise ReslabError(f"opset {opset} is not supported: choose {MIN_OPSET} to {newest}")
    example = torch.zeros(2, predictor.in_channels, *predictor.input_size,
                          device=predictor.device)  # [2, C, H, W]
    with quiet_exporter():
        program = torch.onnx.export(
            predictor.model, (example,), dynamo=True, opset_version=opset, verbose=False,
            input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
            dynamic_shapes=({0: torch.export.Dim("batch")},),
        )  # fmt: skip
    proto = program.model_proto
    produced = next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
    if opset is not None and produced != opset:
        raise ReslabError(f"the exporter could not convert this model to opset {opset} "
                          f"(it made opset {produced})")
    onnx.helper.set_model_props(proto, onnx_metadata(predictor))
    path = Path(path)
    atomic_save_bytes(path, proto.SerializeToString())
    return path
