"""Every stage's output (``conv1``, ``conv2_x`` ... of Table 1), through torchvision's FX
feature extraction."""

from __future__ import annotations

from torch import Tensor, nn
from torchvision.models.feature_extraction import create_feature_extractor


def stage_extractor(model: nn.Module) -> nn.Module:
    """Wrap a reslab ResNet so that it returns each stage's output.

    Args:
        model: A model with a ``stage_nodes`` mapping (every ResNet and plain net here).

    Returns:
        A module whose forward returns ``{"conv1": ..., "conv2_x": ..., ...}``.
    """
    return create_feature_extractor(model, return_nodes=dict(model.stage_nodes))


def stage_outputs(model: nn.Module, x: Tensor) -> dict[str, Tensor]:
    """Run ``model`` on ``x`` and return each stage's output, keyed by the paper's stage name.

    Args:
        model: A reslab ResNet or plain net.
        x: Input batch (N, C, H, W).

    Returns:
        The stage outputs in order, e.g. for ResNet-50 at 224: 112, 56, 28, 14, 7 pixels.
    """
    return stage_extractor(model)(x)
