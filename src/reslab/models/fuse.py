"""BatchNorm folded into the convolution before it, for inference.

The paper puts BN "right after each convolution and before activation" (Sec. 3.4). At test
time BN is the fixed affine map ``y = (x - mean) / sqrt(var + eps) * gamma + beta`` per
channel, so it can be absorbed into the preceding convolution's weight and bias:
``W' = W * gamma / sqrt(var + eps)``, ``b' = (b - mean) * gamma / sqrt(var + eps) + beta``.
The folded net computes the same function (up to float rounding) with one layer fewer per
conv-BN pair: 53 BN layers of ResNet-50 disappear.

    fast = fold_batchnorm(model)  # an eval-mode copy; ``model`` is untouched
"""

from __future__ import annotations

import copy

import torch.fx
from torch import nn
from torch.nn.utils import fuse_conv_bn_eval

# Attributes ``create_model`` sets, kept on the folded copy (reports and exports read them).
MODEL_ATTRIBUTES = ("model_name", "default_input_size", "paper_ref")


def fold_batchnorm(model: nn.Module) -> torch.fx.GraphModule:
    """An eval-mode copy of ``model`` with every BN that directly follows a convolution folded
    into that convolution.

    A BN is folded when its input is the output of an ``nn.Conv2d`` used by nothing else and it
    tracks running statistics; other BN layers stay. Works for any net ``torch.fx`` can trace:
    reslab's, torchvision's and timm's ResNets.

    Args:
        model: The network (any mode; it is copied, not changed).

    Returns:
        The folded network, in eval mode (only valid for inference: BN no longer updates).
    """
    traced = torch.fx.symbolic_trace(copy.deepcopy(model).eval())
    modules = dict(traced.named_modules())
    for node in list(traced.graph.nodes):
        bn = _module(node, modules)
        if not isinstance(bn, nn.BatchNorm2d) or not bn.track_running_stats:
            continue
        conv_node = node.args[0]
        conv = _module(conv_node, modules)
        if not isinstance(conv, nn.Conv2d) or len(conv_node.users) != 1:
            continue
        _replace_module(traced, conv_node.target, fuse_conv_bn_eval(conv, bn))
        node.replace_all_uses_with(conv_node)
        traced.graph.erase_node(node)
    traced.graph.lint()
    traced.recompile()
    traced.delete_all_unused_submodules()
    for name in MODEL_ATTRIBUTES:
        if hasattr(model, name):
            setattr(traced, name, getattr(model, name))
    return traced


def _module(node: object, modules: dict[str, nn.Module]) -> nn.Module | None:
    """The module a graph node calls, or None for other nodes."""
    if isinstance(node, torch.fx.Node) and node.op == "call_module":
        return modules[node.target]
    return None


def _replace_module(root: nn.Module, qualified_name: str, module: nn.Module) -> None:
    """Set the submodule at dotted path ``qualified_name`` (``layer1.0.conv1``) to ``module``."""
    parent_name, _, name = qualified_name.rpartition(".")
    setattr(root.get_submodule(parent_name), name, module)
