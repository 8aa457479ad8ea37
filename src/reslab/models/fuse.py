"""BatchNorm folded into the convolution before it, for inference.

The paper puts BN "right after each convolution and before activation" (Sec. 3.4). At test
time BN is the fixed affine map ``y = (x - mean) / sqrt(var + eps) * gamma + beta`` per
channel, so it can be absorbed into the preceding convolution's weight and bias:
``W' = W * gamma / sqrt(var + eps)``, ``b' = (b - mean) * gamma / sqrt(var + eps) + beta``.
The folded net computes the same function (up to float rounding) with one layer fewer per
conv-BN pair: 53 BN layers of ResNet-50 disappear.

    fast = fold_batchnorm(model)  # an eval-mode copy; ``model`` is untouched

Evaluation (``reslab eval`` and the trainer's validation/test passes) runs on such a copy by
default: the same errors up to float rounding, and faster (``reslab bench`` measures it).
"""

from __future__ import annotations

import copy
from collections import Counter

import torch.fx
from torch import nn
from torch.nn.utils import fuse_conv_bn_eval


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """An eval-mode copy of ``model`` with every BN that directly follows a convolution folded
    into that convolution (the BN becomes an ``nn.Identity``).

    A BN is folded when its input is the output of an ``nn.Conv2d`` used by nothing else, both
    modules are called once per forward pass, and the BN tracks running statistics; other BN
    layers stay. ``torch.fx`` finds the pairs, so this works for any net it can trace
    (reslab's, torchvision's and timm's ResNets). The copy keeps the model's class, so its
    methods (``forward_features``, ``forward_head``) and attributes work as before.

    Args:
        model: The network (any mode; it is copied, not changed).

    Returns:
        The folded network, in eval mode (only valid for inference: BN no longer updates).
    """
    folded = copy.deepcopy(model).eval()
    graph = _NormLeafTracer().trace(folded)
    modules = dict(folded.named_modules())
    calls = Counter(node.target for node in graph.nodes if node.op == "call_module")
    for node in graph.nodes:
        bn = _module(node, modules)
        if not isinstance(bn, nn.BatchNorm2d) or not bn.track_running_stats:
            continue
        conv_node = node.args[0]
        conv = _module(conv_node, modules)
        if (not isinstance(conv, nn.Conv2d) or len(conv_node.users) != 1
                or calls[conv_node.target] != 1 or calls[node.target] != 1):
            continue
        _replace_module(folded, conv_node.target, fuse_conv_bn_eval(conv, bn))
        _replace_module(folded, node.target, nn.Identity())
    return folded


class _NormLeafTracer(torch.fx.Tracer):
    """torch.fx's tracer, also keeping every BN subclass whole (e.g. the CPU SyncBatchNorm of
    :mod:`reslab.train.distributed`, whose forward branches on the process group)."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return isinstance(m, nn.modules.batchnorm._BatchNorm) or super().is_leaf_module(
            m, module_qualified_name)


def _module(node: object, modules: dict[str, nn.Module]) -> nn.Module | None:
    """The module a graph node calls, or None for other nodes."""
    if isinstance(node, torch.fx.Node) and node.op == "call_module":
        return modules[node.target]
    return None


def _replace_module(root: nn.Module, qualified_name: str, module: nn.Module) -> None:
    """Set the submodule at dotted path ``qualified_name`` (``layer1.0.conv1``) to ``module``."""
    parent_name, _, name = qualified_name.rpartition(".")
    setattr(root.get_submodule(parent_name), name, module)
