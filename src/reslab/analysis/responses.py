"""Layer responses (Sec. 4.2, Fig. 7): the standard deviation of each 3x3 layer's output after
BN and before the nonlinearity (the ReLU, and in a residual block the addition), on a data set.

The paper finds ResNets' responses generally smaller than their plain counterparts', and
smaller in deeper ResNets: residual functions are closer to zero than non-residual ones.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn


def response_layers(model: nn.Module) -> dict[str, nn.BatchNorm2d]:
    """The BN that follows each 3x3 convolution, in forward order.

    Each ``...convK`` is paired with its sibling ``...bnK`` (torchvision's naming), so the stem
    (``conv1``/``bn1``) and both convolutions of a basic block count, the 1x1 convolutions of a
    bottleneck and the projection shortcuts do not.

    Args:
        model: A reslab ResNet or plain net.

    Returns:
        Layer name (the convolution's) -> its BN module.
    """
    modules = dict(model.named_modules())
    layers = {}
    for name, module in modules.items():
        if isinstance(module, nn.Conv2d) and module.kernel_size == (3, 3):
            parent, _, leaf = name.rpartition(".")
            bn = modules.get(f"{parent}.{leaf.replace('conv', 'bn')}".lstrip("."))
            if leaf.startswith("conv") and isinstance(bn, nn.BatchNorm2d):
                layers[name] = bn
    return layers


@torch.no_grad()
def response_stds(model: nn.Module, batches: Iterable[Tensor]) -> dict[str, float]:
    """Std of each 3x3 layer's BN output over all images, channels and positions.

    Args:
        model: The trained model, in eval mode (BN uses its running statistics).
        batches: Normalised input batches (N, C, H, W) on the model's device.

    Returns:
        Layer name -> std, in forward order (empty when the model has no 3x3 layer).
    """
    layers = response_layers(model)
    sums = {name: torch.zeros(3, dtype=torch.float64) for name in layers}  # count, sum, sum sq

    def recorder(name: str):
        def record(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
            y = output.detach().double()
            sums[name] += torch.stack([torch.tensor(y.numel(), dtype=torch.float64),
                                       y.sum().cpu(), y.square().sum().cpu()])
        return record

    handles = [bn.register_forward_hook(recorder(name)) for name, bn in layers.items()]
    try:
        for x in batches:
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    stds = {}
    for name, (count, total, squares) in sums.items():
        mean = total / count
        stds[name] = float((squares / count - mean**2).clamp_min(0).sqrt())
    return stds
