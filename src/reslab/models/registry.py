"""The model registry: one name reaches every constructor (timm-style).

``create_model(name, **options)`` builds any registered net, ``list_models(pattern)`` lists the
names. Besides the fixed names, the CIFAR family of Sec. 4.2 accepts any depth ``6n+2`` by name:
``resnet8``, ``plain14``, ... (ImageNet depths 18/34/50/101/152 keep their Table-1 meaning; for a
CIFAR net of depth 50 or 152 use ``create_model("cifar_resnet", depth=50)``).
"""

from __future__ import annotations

import difflib
import fnmatch
import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from reslab.errors import ReslabError, choices_hint, natural_key

FAMILIES = ("imagenet", "cifar", "classic")  # Table 1, Sec. 4.2, the course's case studies
_CIFAR_NAME = re.compile(r"^(resnet|plain)([1-9]\d*)$")  # no leading zeros: resnet020


def family_and_depth(name: str) -> tuple[str, int] | None:
    """Split a ResNet or plain net's name into its family and depth.

    Args:
        name: A model name, e.g. ``resnet56`` or ``plain20``.

    Returns:
        ``("resnet", 56)``, ``("plain", 20)``; None for other names (``vgg16``).
    """
    match = _CIFAR_NAME.match(name)
    return (match.group(1), int(match.group(2))) if match else None


@dataclass(frozen=True)
class ModelInfo:
    """What the registry knows about a named model.

    Attributes:
        name: The registered name.
        family: ``"imagenet"``, ``"cifar"`` or ``"classic"`` (the course's case studies).
        constructor: Builds the model from keyword options.
        input_size: Default input (H, W): 224x224 for ImageNet nets, 32x32 for CIFAR.
        in_channels: Default input channels.
        source: Where the net is specified (paper table or section, or course notes).
        options: Keyword options the name fixes (e.g. ``depth=20``).
        fixed_input_size: The classifier flattens a feature map of one size (LeNet, AlexNet,
            ZFNet), so the net runs at ``input_size`` only; the others pool globally (or
            adaptively) and run at any size (Sec. 3.4's fully-convolutional test).
    """

    name: str
    family: str
    constructor: Callable[..., nn.Module]
    input_size: tuple[int, int]
    in_channels: int
    source: str
    options: dict[str, Any] = field(default_factory=dict)
    fixed_input_size: bool = False


_REGISTRY: dict[str, ModelInfo] = {}


def register_model(
    name: str,
    constructor: Callable[..., nn.Module],
    *,
    family: str,
    input_size: tuple[int, int],
    source: str,
    in_channels: int = 3,
    fixed_input_size: bool = False,
    **options: Any,
) -> None:
    """Register a model name.

    Args:
        name: The name users pass to :func:`create_model`.
        constructor: A callable taking keyword options and returning an ``nn.Module``.
        family: ``"imagenet"``, ``"cifar"`` or ``"classic"``.
        input_size: Default input (H, W).
        source: The paper table/section or course-notes entry the net comes from.
        in_channels: Default number of input channels.
        fixed_input_size: The net runs at ``input_size`` only (see :class:`ModelInfo`).
        **options: Keyword options fixed by this name, passed to ``constructor``.
    """
    if name in _REGISTRY:
        raise ValueError(f"model {name!r} is registered twice")
    _REGISTRY[name] = ModelInfo(name, family, constructor, input_size, in_channels, source, options,
                                fixed_input_size)


def _registry() -> dict[str, ModelInfo]:
    # Importing the model modules registers their names (once).
    from reslab.models import classic, resnet  # noqa: F401

    return _REGISTRY


def list_models(pattern: str = "*", *, family: str | None = None) -> list[str]:
    """List registered model names.

    Args:
        pattern: A shell-style pattern, e.g. ``"resnet*"``.
        family: Keep only ``"imagenet"``, ``"cifar"`` or ``"classic"`` models.

    Returns:
        Sorted names (fixed names only; any ``resnet<6n+2>`` also works, see module docs).

    Raises:
        ReslabError: ``pattern`` is not a string, or ``family`` is not one of :data:`FAMILIES`.
    """
    if not isinstance(pattern, str):
        raise ReslabError(f"a model name pattern must be a string, got {pattern!r}")
    if family is not None and family not in FAMILIES:
        raise ReslabError(f"unknown model family {family!r}; {choices_hint(FAMILIES)}")
    names = [
        info.name
        for info in _registry().values()
        if fnmatch.fnmatchcase(info.name, pattern) and (family is None or info.family == family)
    ]
    return sorted(names, key=natural_key)


def model_info(name: str) -> ModelInfo:
    """Look up a model name, including the ``resnet<6n+2>`` / ``plain<6n+2>`` CIFAR names.

    Args:
        name: A model name.

    Returns:
        The model's :class:`ModelInfo`.

    Raises:
        ReslabError: The name is not a string, is unknown, or names a CIFAR depth that is not
            6n+2.
    """
    if not isinstance(name, str):
        raise ReslabError(f"a model name must be a string such as 'resnet20', got {name!r}")
    registry = _registry()
    if name in registry:
        return registry[name]
    parsed = family_and_depth(name)
    if parsed:
        kind, depth = parsed
        base = registry[f"cifar_{kind}"]
        from reslab.models.resnet import check_cifar_depth

        check_cifar_depth(depth)
        # Table 6 and Fig. 6 list only the paper's depths; others are Sec. 4.2's rule.
        source = f"Sec. 4.2{' (plain)' if kind == 'plain' else ''}, 6n+2 with n={(depth - 2) // 6}"
        return ModelInfo(
            name, base.family, base.constructor, base.input_size, base.in_channels, source,
            {**base.options, "depth": depth},
        )
    close = difflib.get_close_matches(name, registry, n=3)
    suggestion = f"did you mean {', '.join(close)}? " if close else ""
    raise ReslabError(
        f"unknown model {name!r}; {suggestion}{choices_hint(registry)} "
        "(or resnet<6n+2>/plain<6n+2> for any CIFAR depth)"
    )


def create_model(name: str, **options: Any) -> nn.Module:
    """Build a registered model.

    Args:
        name: A name from :func:`list_models`, or ``resnet<6n+2>`` / ``plain<6n+2>``.
        **options: Keyword options of the model's constructor (``num_classes``,
            ``in_channels``, ``shortcut``, ``variant``, ``zero_init_residual``, ...).

    Returns:
        The model, in training mode, on the CPU, with ``model.model_name``,
        ``model.default_input_size`` and ``model.paper_ref`` set.

    Raises:
        ReslabError: Unknown name, unknown option, or an invalid option value.
    """
    info = model_info(name)
    accepted = inspect.signature(info.constructor).parameters
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        valid = sorted(set(accepted) - set(info.options))
        raise ReslabError(
            f"model {name!r} has no option {', '.join(map(repr, unknown))}; {choices_hint(valid)}"
        )
    fixed = sorted(set(options) & set(info.options))
    if fixed:
        raise ReslabError(f"model {name!r} fixes {', '.join(fixed)}; use another name instead")
    model = info.constructor(**info.options, **options)
    model.model_name = name
    model.default_input_size = info.input_size
    model.paper_ref = info.source
    return model


def state_shapes(name: str, **options: Any) -> dict[str, torch.Size]:
    """A model's state-dict keys, in the model's order, with their shapes: built on the meta
    device, so nothing is allocated or initialised.

    Args:
        name: As for :func:`create_model`.
        **options: As for :func:`create_model`.

    Returns:
        Key to shape, in the order of the model's modules.
    """
    with torch.device("meta"):
        state = create_model(name, **options).state_dict()
    return {key: value.shape for key, value in state.items()}
