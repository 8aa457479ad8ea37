"""reslab: deep residual learning for image recognition (He et al., CVPR 2016) in PyTorch.

The Python API::

    import reslab
    model = reslab.create_model("resnet20", num_classes=10)
    reslab.list_models("resnet*")
    result = reslab.train(model="resnet20", data="cifar10", data_dir="data")  # Sec. 4.2 recipe
    predictor = reslab.load("runs/resnet20-cifar10")  # the model, class names, preprocessing
    predictor.topk(["cat.png"], k=3)
    reslab.evaluate("runs/resnet20-cifar10", data="cifar10").top1_error

The names, and the subpackages (``reslab.data``, ``reslab.models``, ...), are imported on first
use (PEP 562), so that ``import reslab`` and ``reslab --help`` do not pay for torch and
torchvision. ``reslab.train`` is the function; its package's modules are imported by name,
``from reslab.train.config import TrainConfig``.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# API name -> the module that defines it.
_API = {
    "Predictor": "reslab.eval.predictor",
    "ReslabError": "reslab.errors",
    "TrainConfig": "reslab.train.config",
    "create_model": "reslab.models",
    "evaluate": "reslab.eval.runner",
    "list_models": "reslab.models",
    "load": "reslab.eval.predictor",
    "model_info": "reslab.models",
    "train": "reslab.train.engine",
}

__all__ = [
    "Predictor", "ReslabError", "TrainConfig", "__version__", "create_model", "evaluate",
    "list_models", "load", "model_info", "train",
]

# Modules and subpackages reachable as attributes (``reslab.data.TensorLoader``); ``train`` is
# the API function above.
_SUBMODULES = (
    "analysis", "bench", "cli", "commands", "data", "errors", "eval", "experiments", "export",
    "io", "models", "plots", "runtime",
)

if TYPE_CHECKING:
    from reslab.errors import ReslabError
    from reslab.eval.predictor import Predictor, load
    from reslab.eval.runner import evaluate
    from reslab.models import create_model, list_models, model_info
    from reslab.train.config import TrainConfig
    from reslab.train.engine import train


def __getattr__(name: str) -> Any:
    """An API name or a submodule, imported on first use and then bound here."""
    if name in _API:
        value = getattr(importlib.import_module(_API[name]), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f"{__name__}.{name}")
    else:
        raise AttributeError(f"module 'reslab' has no attribute {name!r}")
    setattr(sys.modules[__name__], name, value)
    return value


def __dir__() -> list[str]:
    """The module's own names, the API and the submodules (for completion in a shell)."""
    return sorted(set(globals()) | set(__all__) | set(_SUBMODULES))


class _Package(types.ModuleType):
    """``reslab.train`` is the API function, although ``reslab/train/`` is also a package.

    Importing a submodule of a package binds the package as an attribute of its parent; for
    ``reslab.train`` that would hide the function (or, before its first use, the lazy lookup).
    The binding is refused here; the package stays reachable by its full name in ``sys.modules``
    and by ``from reslab.train.engine import ...``.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "train" and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
