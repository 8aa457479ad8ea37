"""Checkpoints: model weights as safetensors that torchvision users can read, the trainer state
for an exact resume, and loading of foreign checkpoints for fine-tuning.

- ``last.safetensors`` / ``best.safetensors``: the model's ``state_dict`` (torchvision's key names)
  with a JSON ``reslab`` metadata entry: model name and options, class names, input size and the
  preprocessing: pixels scaled to [0, 1], then a mean subtracted (``"kind": "per-pixel-mean"``
  with its ``scale``, ``shape`` and ``mean``): the per-pixel mean [C, H, W] of the training split
  for the small data sets (Sec. 4.2), torchvision's per-channel ImageNet mean [C] for image
  folders. No std is stored: training divides by none (the paper subtracts the mean only).
  ``torchvision.models.resnet50()`` loads the weights of ``resnet50 --variant v1.5`` with
  ``load_state_dict(safetensors.torch.load_file(p))``. Reading one checks the types of the
  metadata's keys (:data:`META_FIELDS`).
- ``trainer_state.pt``: model, optimizer, schedule, data position, RNG states and the sums of
  the open log window in one file, readable with ``torch.load(weights_only=True)``; one file, so
  a resume is always consistent.

Every file is written to a temporary name and renamed (:mod:`reslab.io`): a run killed at any
moment leaves the previous complete checkpoint readable.
"""

from __future__ import annotations

import inspect
import io
import json
import logging
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import save as save_safetensors_bytes
from torch import nn

from reslab.errors import ReslabError, choices_hint
from reslab.io import atomic_save_bytes
from reslab.models import model_info
from reslab.train.run_lock import live_writer

log = logging.getLogger(__name__)

RUN_CHECKPOINTS = ("best.safetensors", "last.safetensors")
CHECKPOINT_SUFFIXES = (".safetensors", ".pth", ".pt")

FORMAT = "reslab-1"


def _is_finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_positive(value: Any) -> bool:
    return _is_count(value) and value > 0


def _is_string(value: Any) -> bool:
    return isinstance(value, str)


def _list_of(check: Callable[[Any], bool], length: int | None = None) -> Callable[[Any], bool]:
    return lambda value: (isinstance(value, list) and length in (None, len(value))
                          and all(map(check, value)))


def _of_type(*types: type) -> tuple[Callable[[Any], bool], str]:
    return (lambda value: isinstance(value, types)), " or ".join(t.__name__ for t in types)


# A schema maps a key to a check and what it expects, or to the schema of a nested object
# (checked by _schema_problems).

# The keys of a weights file's reslab metadata (Trainer.checkpoint_meta), each optional (older
# files lack some).
PREPROCESS_FIELDS = {
    "kind": (_is_string, "a string"),
    "scale": (_is_finite, "a finite number"),
    "shape": (_list_of(_is_positive), "a list of positive integers"),
    "mean": (_list_of(_is_finite), "a list of finite numbers"),
    "std": (_list_of(_is_finite), "a list of finite numbers"),
}
META_FIELDS = {
    "model": (_is_string, "a string"),
    "model_options": (lambda value: isinstance(value, dict), "an object"),
    "num_classes": (_is_positive, "a positive integer"),
    "in_channels": (_is_positive, "a positive integer"),
    "classes": (_list_of(_is_string), "a list of strings"),
    "input_size": (_list_of(_is_positive, 2), "a list of 2 positive integers"),
    "data": (_is_string, "a string"),
    "preprocess": PREPROCESS_FIELDS,
    "paper_ref": (_is_string, "a string"),
    "iteration": (_is_count, "a non-negative integer"),
    "ema": (_is_finite, "a finite number"),
    "val_error": (_is_finite, "a finite number"),
    "test_error": (_is_finite, "a finite number"),
}

# What trainer_state.pt holds, by type. The optional keys are missing from files of older
# versions, or None when the run does not use them: the --ema average, the precise-BN loader's
# position and the open log window.
TRAINER_STATE = {
    "iteration": _of_type(int), "model": _of_type(dict), "optimizer": _of_type(dict),
    "schedule": _of_type(dict), "loader": _of_type(dict),
    "best_val_error": _of_type(float, type(None)),
    "rng": {"torch": _of_type(torch.Tensor), "python": _of_type(tuple)},
}
OPTIONAL_TRAINER_STATE = {
    "average": _of_type(dict), "bn_loader": _of_type(dict),
    "log_window": {"loss": _of_type(float), "wrong": _of_type(int), "seen": _of_type(int),
                   "seconds": _of_type(float)},
}


def save_weights(path: str | Path, model: nn.Module, meta: dict[str, Any]) -> None:
    """Write the model's weights and ``meta`` as a safetensors file, atomically.

    Args:
        path: Destination ``.safetensors`` file.
        model: The model (any device; DDP/compile wrappers must be unwrapped by the caller).
        meta: JSON-serialisable description (model name, options, classes, preprocessing).
    """
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    metadata = {"format": FORMAT, "reslab": json.dumps(meta)}
    atomic_save_bytes(path, save_safetensors_bytes(tensors, metadata=metadata))


def checkpoint_file(path: str | os.PathLike) -> Path:
    """The weights file ``path`` names: itself, or a run folder's best/last checkpoint.

    Args:
        path: A ``.safetensors``/``.pth``/``.pt`` file, or a run folder.

    Returns:
        The file to read.

    Raises:
        ReslabError: Missing path, a folder without checkpoints, or an unknown file type.
    """
    path = Path(path)
    if path.is_dir():
        for name in RUN_CHECKPOINTS:
            if (path / name).is_file():
                _warn_if_training(path, path / name)
                return path / name
        writer = live_writer(path)
        if writer is not None:
            raise ReslabError(f"{path} is still being trained (process {writer['pid']} on "
                              f"{writer['host']}) and has no checkpoint yet: the first comes "
                              "with its first evaluation (--eval-every)")
        raise ReslabError(f"{path} is not a run folder: it has no {' or '.join(RUN_CHECKPOINTS)}")
    if not path.exists():
        raise ReslabError(f"checkpoint {path} does not exist")
    if path.suffix not in CHECKPOINT_SUFFIXES:
        raise ReslabError(
            f"checkpoint {path}: unknown file type; {choices_hint(CHECKPOINT_SUFFIXES)}")
    return path


def _warn_if_training(folder: Path, file: Path) -> None:
    """Say that a run folder is still being trained: its checkpoint is complete (written
    atomically) but will be replaced by a newer one."""
    writer = live_writer(folder)
    if writer is not None:
        saved = time.strftime("%H:%M:%S", time.localtime(file.stat().st_mtime))
        log.warning("%s is still being trained (process %s on %s): reading %s as saved at %s",
                    folder, writer["pid"], writer["host"], file.name, saved)


def read_weights(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a weights file: our safetensors, or a torchvision-style ``.pth``/``.pt`` state dict.

    Args:
        path: The file.

    Returns:
        ``(state_dict, meta)``; ``meta`` is empty for foreign checkpoints. A ``module.`` prefix
        (from DataParallel/DDP) is removed, and a ``{"state_dict": ...}`` or ``{"model": ...}``
        wrapper is unwrapped.

    Raises:
        ReslabError: Missing file, one of another kind (an image, text), a truncated or corrupt
            checkpoint, one that is not a state dict, or reslab metadata that is not a JSON
            object or has a key of :data:`META_FIELDS` of another type (a non-finite number,
            ``classes`` that are not strings, ...).
    """
    path = Path(path)
    if not path.is_file():
        raise ReslabError(f"checkpoint {path} does not exist")
    data = path.read_bytes()
    if not _starts_like_a_checkpoint(data):
        raise ReslabError(f"{path} is not a checkpoint (safetensors or torch state dict)")
    if path.suffix == ".safetensors":
        try:
            state = load_safetensors_bytes(data)
            header = _safetensors_metadata(data)
            meta = json.loads(header.get("reslab", "{}"))
        except (SafetensorError, ValueError, json.JSONDecodeError) as exc:
            raise ReslabError(f"checkpoint {path} is truncated or corrupt ({exc})") from None
        if not isinstance(meta, dict):
            raise ReslabError(f"checkpoint {path}: its reslab metadata is not a JSON object")
        wrong = _schema_problems(meta, META_FIELDS, required=False)[1]
        if wrong:
            problems = "; ".join(f"{name} must be {expected}" for name, expected in wrong)
            raise ReslabError(f"checkpoint {path}: bad reslab metadata: {problems}")
    else:
        state = _torch_load(io.BytesIO(data), f"checkpoint {path} is truncated, corrupt or not "
                                              "a weights-only state dict")
        for key in ("state_dict", "model"):
            if isinstance(state, dict) and isinstance(state.get(key), dict):
                state = state[key]
        meta = {}
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ReslabError(f"checkpoint {path} does not hold a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in state.items()}, meta


def _schema_problems(obj: dict[str, Any], schema: dict[str, Any], *, required: bool,
                     prefix: str = "") -> tuple[list[str], list[tuple[str, str]]]:
    """The keys of ``schema`` that ``obj`` lacks, and those that fail their check.

    Args:
        obj: A dict read from a file; keys the schema does not name pass.
        schema: Key to ``(check, expected)``, or to the schema of a nested dict.
        required: Every key of the schema must be present (else a missing key passes).
        prefix: Put before the names (the nested dict's own name and a dot).

    Returns:
        The dotted names of the missing keys, and ``(name, expected)`` for each failing one.
    """
    missing, wrong = [], []
    for key, rule in schema.items():
        name = prefix + key
        if key not in obj:
            missing += [name] if required else []
        elif isinstance(rule, dict) and isinstance(obj[key], dict):
            inner_missing, inner_wrong = _schema_problems(obj[key], rule, required=required,
                                                          prefix=f"{name}.")
            missing, wrong = missing + inner_missing, wrong + inner_wrong
        elif isinstance(rule, dict):
            wrong.append((name, "an object"))
        elif not rule[0](obj[key]):
            wrong.append((name, rule[1]))
    return missing, wrong


def saved_meta(path: str | Path) -> dict[str, Any]:
    """A reslab weights file's metadata, from its header alone, keeping only the keys of
    :data:`META_FIELDS` of the right type.

    Args:
        path: A ``.safetensors`` file (a run's ``last.safetensors``).

    Returns:
        The metadata; empty when the file is missing, damaged or foreign.
    """
    try:
        with safe_open(path, "pt") as handle:
            meta = json.loads((handle.metadata() or {}).get("reslab", "{}"))
    except (OSError, SafetensorError, ValueError):
        return {}
    if not isinstance(meta, dict):
        return {}
    wrong = {name for name, _ in _schema_problems(meta, META_FIELDS, required=False)[1]}
    return {key: value for key, value in meta.items() if key not in wrong}


def saved_iteration(path: str | Path) -> int | None:
    """The training iteration a reslab weights file was saved at, from its header alone.

    Args:
        path: A ``.safetensors`` file (a run's ``last.safetensors``).

    Returns:
        Its metadata's ``iteration``; None when the file is missing, damaged, foreign or
        written without one.
    """
    return saved_meta(path).get("iteration")


def _safetensors_metadata(data: bytes) -> dict[str, str]:
    header_size = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + header_size])
    return header.get("__metadata__", {})


def checkpoint_options(name: str, meta: dict[str, Any]) -> dict[str, Any]:
    """The model options to build ``name`` with so that a checkpoint's weights fit: the ones it
    recorded when it was saved for ``name``; else (a torchvision-style state dict, or one saved
    for another model) torchvision's ``v1.5`` bottleneck, where ``name`` has one.

    Args:
        name: The architecture to build.
        meta: The checkpoint's reslab metadata (:func:`read_weights`; empty for foreign files).
    """
    if meta.get("model") == name:
        return dict(meta.get("model_options", {}))
    info = model_info(name)
    takes_variant = "variant" in inspect.signature(info.constructor).parameters
    return {"variant": "v1.5"} if takes_variant and "variant" not in info.options else {}


def _is_head(key: str) -> bool:
    """Whether a state-dict key belongs to the classifier (replaced when fine-tuning)."""
    return key.split(".")[0] in ("fc", "classifier", "head")


def load_weights_into(
    model: nn.Module, state: dict[str, torch.Tensor], *, source: str, allow_new_head: bool = False
) -> tuple[list[str], list[str]]:
    """Load ``state`` into ``model``, explaining any mismatch.

    Args:
        model: The target model.
        state: A state dict (e.g. from :func:`read_weights`).
        source: Where ``state`` came from, for messages.
        allow_new_head: Fine-tuning: skip the classifier's weights when their shape differs
            (another class count) or they are absent, and keep the model's fresh head; every
            other key must still match.

    Returns:
        ``(missing_keys, unexpected_keys)``.

    Raises:
        ReslabError: Shapes or keys differ (outside the classifier with ``allow_new_head``);
            the message names the first mismatched keys and shapes.
    """
    own = model.state_dict()
    mismatched = [k for k in own if k in state and own[k].shape != state[k].shape]
    if allow_new_head:
        state = {k: v for k, v in state.items() if not (k in mismatched and _is_head(k))}
        mismatched = [k for k in mismatched if not _is_head(k)]
    if mismatched:
        details = "; ".join(
            f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
            for k in mismatched[:4]
        )
        raise ReslabError(f"{source} does not fit this architecture: {details}")
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    # Fine-tuning tolerates a missing or different classifier, nothing else: a body that does
    # not load would train from scratch without saying so.
    body_missing = [k for k in missing if not (allow_new_head and _is_head(k))]
    body_unexpected = [k for k in unexpected if not (allow_new_head and _is_head(k))]
    if body_missing or body_unexpected:
        raise ReslabError(
            f"{source} does not fit this architecture: missing keys {body_missing[:4]}, "
            f"unexpected keys {body_unexpected[:4]}"
        )
    model.load_state_dict(state, strict=False)
    return missing, unexpected


def save_trainer_state(path: str | Path, state: dict[str, Any]) -> None:
    """Write the trainer state (tensors, numbers, strings, lists, dicts) atomically.

    Args:
        path: Destination, ``trainer_state.pt``.
        state: Model and optimizer state dicts, schedule, loader position, RNG states, counters.
    """
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_save_bytes(path, buffer.getvalue())


def load_trainer_state(path: str | Path) -> dict[str, Any]:
    """Read :func:`save_trainer_state`'s file with ``weights_only=True``.

    Args:
        path: The ``trainer_state.pt`` file.

    Returns:
        The state dict :func:`save_trainer_state` wrote, its tensors on the CPU, with the keys
        of :data:`TRAINER_STATE` (and any of :data:`OPTIONAL_TRAINER_STATE`) of their types.

    Raises:
        ReslabError: Missing, truncated or corrupt file, or one with keys missing or of
            another type (the message names them).
    """
    path = Path(path)
    if not path.is_file():
        raise ReslabError(f"{path.parent} is not a resumable run: {path.name} is missing")
    state = _torch_load(path, f"trainer state {path} is truncated or corrupt")
    if not isinstance(state, dict):
        raise ReslabError(f"trainer state {path} is not a dict (a file reslab did not write?)")
    missing, wrong = _schema_problems(state, TRAINER_STATE, required=True)
    used = {key: value for key, value in state.items() if value is not None}
    wrong += _schema_problems(used, OPTIONAL_TRAINER_STATE, required=False)[1]
    wrong = [name for name, _ in wrong]
    problems = [f"{what} {', '.join(keys)}" for what, keys in
                (("missing keys", missing), ("keys of the wrong type", wrong)) if keys]
    if problems:
        raise ReslabError(f"trainer state {path} is not one reslab wrote: {'; '.join(problems)}")
    return state


def _starts_like_a_checkpoint(data: bytes) -> bool:
    """Whether ``data`` begins as a safetensors file (an 8-byte header length, then the JSON
    header) or a ``torch.save`` file (a zip archive, or the legacy format's pickle) does."""
    return data[8:9] == b"{" or data.startswith((b"PK\x03\x04", b"\x80"))


def _torch_load(source: str | Path | io.BytesIO, failure: str) -> Any:
    """``torch.load(weights_only=True)`` on the CPU; any failure to read becomes ``failure``.

    A damaged file makes the unpickler fail in many ways (KeyError, IndexError, ValueError on a
    seek, ...), so every exception is taken as a sign of a bad file.
    """
    try:
        return torch.load(source, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - see the docstring
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        if lines and lines[0].startswith("Weights only load failed"):
            # torch's first line advises weights_only=False, i.e. running the file's code
            detail = next((line.split(". ")[0].rstrip(".") for line in lines[1:]
                           if "GLOBAL" in line or "nsupported" in line),
                          "it holds objects other than tensors and plain data")
            raise ReslabError(f"{failure} (refused: {detail}; reslab loads tensors and plain "
                              "data only, never code from a file)") from None
        reason = f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
        raise ReslabError(f"{failure} ({reason})") from None
