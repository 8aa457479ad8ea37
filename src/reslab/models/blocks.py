"""Residual building blocks and their shortcuts (Sec. 3.2, 3.3, 4.1; Fig. 2, Fig. 5).

A block computes ``y = relu(F(x) + shortcut(x))``, with BN right after each convolution and
before the activation (Sec. 3.4). A *plain* block is the same ``F`` with the shortcut removed:
``y = relu(F(x))``. Parameter names follow torchvision (``conv1``/``bn1``/.../``downsample``),
so checkpoints are interchangeable.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

SHORTCUT_OPTIONS = ("A", "B", "C")
VARIANTS = ("v1", "v1.5")


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """3x3 convolution, padding 1, no bias (BN follows).

    Args:
        in_planes: Input channels.
        out_planes: Output channels.
        stride: Spatial stride.

    Returns:
        The convolution.
    """
    return nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=1, bias=False)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """1x1 convolution, no bias (BN follows).

    Args:
        in_planes: Input channels.
        out_planes: Output channels.
        stride: Spatial stride.

    Returns:
        The convolution.
    """
    return nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False)


class ZeroPadShortcut(nn.Module):
    """Option A (Sec. 3.3, 4.1): identity with zero entries padded for the extra channels.

    Parameter-free. When the block subsamples (stride 2), the identity takes every other pixel,
    matching the spatial size of the stride-2 convolution in the residual branch.
    """

    def __init__(self, in_planes: int, out_planes: int, stride: int) -> None:
        super().__init__()
        if out_planes < in_planes:
            raise ValueError("option A cannot reduce the number of channels")
        self.extra_channels = out_planes - in_planes
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]  # (N, C, H, W) -> (N, C, H/s, W/s)
        return F.pad(x, (0, 0, 0, 0, 0, self.extra_channels))  # -> (N, C_out, H/s, W/s)

    def extra_repr(self) -> str:
        return f"extra_channels={self.extra_channels}, stride={self.stride}"


def projection(in_planes: int, out_planes: int, stride: int) -> nn.Sequential:
    """Options B/C (Eqn. 2): ``W_s x`` as a 1x1 convolution (with the block's stride) and BN.

    Args:
        in_planes: Channels entering the block.
        out_planes: Channels leaving the block.
        stride: The block's spatial stride.

    Returns:
        ``Sequential(conv1x1, BatchNorm2d)``, named ``0`` and ``1`` as torchvision's
        ``downsample``.
    """
    return nn.Sequential(conv1x1(in_planes, out_planes, stride), nn.BatchNorm2d(out_planes))


def make_shortcut(
    option: str, in_planes: int, out_planes: int, stride: int, *, residual: bool
) -> nn.Module | None:
    """The shortcut of one block, per option A/B/C of Sec. 4.1 (Table 3).

    Args:
        option: ``"A"`` zero-padding identity where dimensions increase; ``"B"`` projection
            where dimensions increase, identity elsewhere; ``"C"`` projection everywhere.
        in_planes: Channels entering the block.
        out_planes: Channels leaving the block.
        stride: The block's spatial stride.
        residual: False for a plain net, which has no shortcut at all.

    Returns:
        ``None`` (plain), ``nn.Identity``, :class:`ZeroPadShortcut` or a projection.
    """
    if not residual:
        return None
    changes_shape = stride != 1 or in_planes != out_planes
    if option == "C" or (option == "B" and changes_shape):
        return projection(in_planes, out_planes, stride)
    if option == "A" and changes_shape:
        return ZeroPadShortcut(in_planes, out_planes, stride)
    return nn.Identity()


class BasicBlock(nn.Module):
    """Two 3x3 convolutions (Fig. 5 left): ResNet-18/34 and every CIFAR net of Sec. 4.2."""

    expansion = 1

    def __init__(
        self,
        in_planes: int,
        planes: int,
        *,
        stride: int = 1,
        downsample: nn.Module | None = None,
        variant: str = "v1",
    ) -> None:
        super().__init__()
        del variant  # accepted for a uniform interface: v1 and v1.5 differ only in the bottleneck
        self.conv1 = conv3x3(in_planes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample  # the shortcut; None in a plain net

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))  # (N, C_in, H, W) -> (N, C, H/s, W/s)
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            out = out + self.downsample(x)  # y = F(x) + x  (or W_s x)
        return self.relu(out)

    @property
    def last_bn(self) -> nn.BatchNorm2d:
        """The BN closing the residual branch (zeroed by ``zero_init_residual``)."""
        return self.bn2


class Bottleneck(nn.Module):
    """1x1 -> 3x3 -> 1x1 convolutions (Fig. 5 right): ResNet-50/101/152.

    ``variant="v1"`` is the paper's (Caffe) block, stride on the first 1x1 convolution;
    ``"v1.5"`` puts the stride on the 3x3 convolution, as torchvision does.
    """

    expansion = 4

    def __init__(
        self,
        in_planes: int,
        planes: int,
        *,
        stride: int = 1,
        downsample: nn.Module | None = None,
        variant: str = "v1",
    ) -> None:
        super().__init__()
        stride_1x1, stride_3x3 = (stride, 1) if variant == "v1" else (1, stride)
        self.conv1 = conv1x1(in_planes, planes, stride_1x1)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride_3x3)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample  # the shortcut; None in a plain net

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))  # (N, C_in, H, W) -> (N, C, H/s, W/s)
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))  # -> (N, 4C, H/s, W/s)
        if self.downsample is not None:
            out = out + self.downsample(x)
        return self.relu(out)

    @property
    def last_bn(self) -> nn.BatchNorm2d:
        """The BN closing the residual branch (zeroed by ``zero_init_residual``)."""
        return self.bn3


def make_stage(
    block: type[BasicBlock] | type[Bottleneck],
    in_planes: int,
    planes: int,
    blocks: int,
    *,
    stride: int,
    shortcut: str,
    residual: bool,
    variant: str,
) -> nn.Sequential:
    """Build one stage (a ``convN_x`` row of Table 1): ``blocks`` blocks, the first one strided.

    Args:
        block: :class:`BasicBlock` or :class:`Bottleneck`.
        in_planes: Channels entering the stage.
        planes: The stage's width (its output has ``planes * block.expansion`` channels).
        blocks: Number of blocks.
        stride: Stride of the first block (2 for conv3_1, conv4_1, conv5_1).
        shortcut: Option ``"A"``, ``"B"`` or ``"C"``.
        residual: False for the plain counterpart.
        variant: ``"v1"`` or ``"v1.5"``.

    Returns:
        The stage as an ``nn.Sequential`` of blocks.
    """
    out_planes = planes * block.expansion
    layers = []
    for i in range(blocks):
        block_in, block_stride = (in_planes, stride) if i == 0 else (out_planes, 1)
        layers.append(
            block(
                block_in,
                planes,
                stride=block_stride,
                downsample=make_shortcut(
                    shortcut, block_in, out_planes, block_stride, residual=residual
                ),
                variant=variant,
            )
        )
    return nn.Sequential(*layers)


def init_weights(model: nn.Module, *, zero_init_residual: bool) -> None:
    """He (MSRA) initialisation of every convolution [13], BN to (1, 0) (Sec. 3.4).

    Args:
        model: The net to initialise in place.
        zero_init_residual: Set the last BN of each residual branch to zero, so each residual
            block starts as an identity (off in the paper; a common later improvement).
    """
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    if zero_init_residual:
        for m in model.modules():
            if isinstance(m, (BasicBlock, Bottleneck)) and m.downsample is not None:
                with torch.no_grad():
                    m.last_bn.weight.zero_()
