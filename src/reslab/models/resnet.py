"""The paper's networks: ImageNet ResNets (Table 1), CIFAR ResNets (Sec. 4.2), and their plain
counterparts (the same nets with the shortcuts removed, Sec. 3.3 and Fig. 3).

The two tables below are the paper's, one line per net. Read them beside Table 1 and Sec. 4.2.
"""

from __future__ import annotations

from functools import partial

import torch
from torch import Tensor, nn

from reslab.errors import ReslabError, check_positive, choices_hint
from reslab.models.blocks import (
    SHORTCUT_OPTIONS,
    VARIANTS,
    BasicBlock,
    Bottleneck,
    init_weights,
    make_stage,
)
from reslab.models.interface import ModelInterface
from reslab.models.registry import register_model

# Table 1: depth -> (building block, blocks in conv2_x, conv3_x, conv4_x, conv5_x).
IMAGENET_ARCHS: dict[int, tuple[type[nn.Module], tuple[int, ...]]] = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
    101: (Bottleneck, (3, 4, 23, 3)),
    152: (Bottleneck, (3, 8, 36, 3)),
}
IMAGENET_WIDTHS = (64, 128, 256, 512)  # conv2_x .. conv5_x; conv1 has 64 filters, 7x7/2

# Sec. 4.2: depth 6n+2 -> n, three stages of n basic blocks (2n layers) on 32/16/8 maps.
CIFAR_DEPTHS: dict[int, int] = {20: 3, 32: 5, 44: 7, 56: 9, 110: 18, 1202: 200}
CIFAR_WIDTHS = (16, 32, 64)  # filters per stage; conv1 is 3x3 with 16 filters


def check_cifar_depth(depth: int) -> int:
    """Return ``n`` for a CIFAR depth ``6n + 2`` (Sec. 4.2).

    Args:
        depth: The total number of weighted layers.

    Returns:
        The number of blocks per stage, ``n = (depth - 2) / 6``.

    Raises:
        ReslabError: ``depth`` is not of the form 6n+2 with n >= 1.
    """
    if not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
        raise ReslabError(
            f"CIFAR depth must be 6n+2 with n >= 1 (8, 14, 20, 32, 44, 56, 110, 1202, ...), "
            f"got {depth!r}"
        )
    return (depth - 2) // 6


def _check_options(
    *, num_classes: int, in_channels: int, shortcut: str, variant: str, **switches: bool
) -> None:
    """Reject invalid constructor options with one clear :class:`ReslabError`.

    Args:
        num_classes: Must be a positive integer.
        in_channels: Must be a positive integer.
        shortcut: One of the options A/B/C of Sec. 4.1.
        variant: ``"v1"`` or ``"v1.5"``.
        **switches: On/off options (``residual``, ``zero_init_residual``): must be ``bool``, so
            that a string such as ``"no"`` is not silently taken as true.
    """
    check_positive(num_classes=num_classes, in_channels=in_channels)
    for name, value in switches.items():
        if not isinstance(value, bool):
            raise ReslabError(f"{name} must be True or False, got {value!r}")
    if shortcut not in SHORTCUT_OPTIONS:
        raise ReslabError(f"unknown shortcut option {shortcut!r}; {choices_hint(SHORTCUT_OPTIONS)}")
    if variant not in VARIANTS:
        raise ReslabError(f"unknown variant {variant!r}; {choices_hint(VARIANTS)}")


class ResNet(ModelInterface, nn.Module):
    """A residual (or plain) net: a stem, stages of blocks, global average pooling, and an fc.

    Module names follow torchvision (``conv1, bn1, relu, maxpool, layer1.., avgpool, fc``), so
    ``torchvision.models.resnet50().state_dict()`` loads into ``variant="v1.5"`` unchanged.

    Args:
        block: :class:`BasicBlock` or :class:`Bottleneck`.
        layers: Blocks per stage.
        widths: Width (``planes``) of each stage.
        stem: ``"imagenet"`` (7x7/2 conv with 64 filters, then 3x3/2 max pool; Table 1) or
            ``"cifar"`` (3x3 conv with 16 filters; Sec. 4.2).
        num_classes: Size of the final fc layer.
        in_channels: Channels of the input image (3 for RGB, 1 for Fashion-MNIST).
        shortcut: Option ``"A"``, ``"B"`` or ``"C"`` (Sec. 4.1).
        residual: False builds the plain counterpart (no shortcuts).
        variant: ``"v1"`` (paper) or ``"v1.5"`` (torchvision) bottleneck stride placement.
        zero_init_residual: Zero the last BN of every residual branch.
    """

    logits_name = "fc"

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        layers: tuple[int, ...],
        *,
        widths: tuple[int, ...],
        stem: str,
        num_classes: int,
        in_channels: int,
        shortcut: str,
        residual: bool,
        variant: str,
        zero_init_residual: bool,
    ) -> None:
        super().__init__()
        _check_options(
            num_classes=num_classes, in_channels=in_channels, shortcut=shortcut, variant=variant,
            residual=residual, zero_init_residual=zero_init_residual,
        )
        stem_planes = widths[0]
        if stem == "imagenet":
            self.conv1 = nn.Conv2d(in_channels, stem_planes, 7, stride=2, padding=3, bias=False)
            self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
            conv1_reduction, reduction = 2, 4  # conv1 is stride 2, the max pool another 2
        else:
            self.conv1 = nn.Conv2d(in_channels, stem_planes, 3, stride=1, padding=1, bias=False)
            self.maxpool = None
            conv1_reduction, reduction = 1, 1
        self.bn1 = nn.BatchNorm2d(stem_planes)
        self.relu = nn.ReLU(inplace=True)

        # The stages: the first keeps the resolution, each later one halves it (stride 2).
        self.feature_info = [
            {"name": "conv1", "module": "relu", "num_chs": stem_planes,
             "reduction": conv1_reduction}
        ]
        in_planes = stem_planes
        for i, (planes, blocks) in enumerate(zip(widths, layers)):
            stride = 1 if i == 0 else 2
            reduction *= stride
            stage = make_stage(
                block, in_planes, planes, blocks,
                stride=stride, shortcut=shortcut, residual=residual, variant=variant,
            )
            self.add_module(f"layer{i + 1}", stage)
            in_planes = planes * block.expansion
            self.feature_info.append(
                {"name": f"conv{i + 2}_x", "module": f"layer{i + 1}", "num_chs": in_planes,
                 "reduction": reduction}
            )
        self.num_stages = len(layers)
        self.residual = residual
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_planes, num_classes)
        init_weights(self, zero_init_residual=zero_init_residual)

    @property
    def stage_nodes(self) -> dict[str, str]:
        """Module name of each stage's output, keyed by the paper's stage name (``conv1``,
        ``conv2_x``, ...); pass to ``torchvision.models.feature_extraction``."""
        return {info["module"]: info["name"] for info in self.feature_info}

    def forward_features(self, x: Tensor) -> Tensor:
        """The convolutional trunk: image to the last stage's feature map.

        Args:
            x: Images, (N, C_in, H, W).

        Returns:
            The last stage's feature map: (N, num_features, H/32, W/32) for the ImageNet stem,
            (N, 64, H/4, W/4) for the CIFAR one.
        """
        # (N, C_in, H, W) -> (N, 64, H/2, W/2) (ImageNet stem) | (N, 16, H, W) (CIFAR stem)
        x = self.relu(self.bn1(self.conv1(x)))
        if self.maxpool is not None:
            x = self.maxpool(x)  # -> (N, 64, H/4, W/4)
        for i in range(1, self.num_stages + 1):
            x = getattr(self, f"layer{i}")(x)  # each later stage halves H and W
        return x  # (N, num_features, H/32, W/32) | (N, 64, H/4, W/4)

    def forward_head(self, x: Tensor, *, pre_logits: bool = False) -> Tensor:
        """Global average pooling and the fc layer (fully convolutional at any input size).

        Args:
            x: The last stage's feature map, (N, C, h, w).
            pre_logits: Return the pooled features, without the fc layer.

        Returns:
            (N, C) with ``pre_logits``, else the logits (N, num_classes).
        """
        x = torch.flatten(self.avgpool(x), 1)  # (N, C, h, w) -> (N, C)
        return x if pre_logits else self.fc(x)  # -> (N, num_classes)

    @property
    def num_features(self) -> int:
        """Channels of the last stage (the ``pre_logits`` width), whatever ``fc`` now is."""
        return self.feature_info[-1]["num_chs"]


def imagenet_resnet(
    depth: int,
    *,
    residual: bool = True,
    num_classes: int = 1000,
    in_channels: int = 3,
    shortcut: str = "B",
    variant: str = "v1",
    zero_init_residual: bool = False,
) -> ResNet:
    """An ImageNet net of Table 1 (224x224 input).

    Args:
        depth: 18, 34, 50, 101 or 152.
        residual: False for the plain counterpart.
        num_classes: Outputs of the fc layer (1000 for ImageNet).
        in_channels: Input image channels.
        shortcut: ``"A"``, ``"B"`` (default, as for the paper's 50/101/152) or ``"C"``.
        variant: ``"v1"`` (default, the paper's) or ``"v1.5"`` (torchvision's).
        zero_init_residual: Zero the last BN of every residual branch (off in the paper).

    Returns:
        The model.
    """
    if depth not in IMAGENET_ARCHS:
        raise ReslabError(f"ImageNet depth must be one of {sorted(IMAGENET_ARCHS)}, got {depth!r}")
    block, layers = IMAGENET_ARCHS[depth]
    return ResNet(
        block, layers, widths=IMAGENET_WIDTHS, stem="imagenet", num_classes=num_classes,
        in_channels=in_channels, shortcut=shortcut, residual=residual, variant=variant,
        zero_init_residual=zero_init_residual,
    )


def cifar_resnet(
    depth: int = 20,
    *,
    residual: bool = True,
    num_classes: int = 10,
    in_channels: int = 3,
    shortcut: str = "A",
    zero_init_residual: bool = False,
) -> ResNet:
    """A CIFAR-10 net of Sec. 4.2: depth 6n+2, stages of {16, 32, 64} filters on 32/16/8 maps.

    Args:
        depth: 6n+2 (20, 32, 44, 56, 110, 1202 are the paper's).
        residual: False for the plain counterpart.
        num_classes: Outputs of the fc layer.
        in_channels: Input image channels (1 for Fashion-MNIST).
        shortcut: ``"A"`` (default: the paper's identity shortcuts everywhere), ``"B"`` or ``"C"``.
        zero_init_residual: Zero the last BN of every residual branch.

    Returns:
        The model.
    """
    n = check_cifar_depth(depth)
    return ResNet(
        BasicBlock, (n, n, n), widths=CIFAR_WIDTHS, stem="cifar", num_classes=num_classes,
        in_channels=in_channels, shortcut=shortcut, residual=residual, variant="v1",
        zero_init_residual=zero_init_residual,
    )


def imagenet_plain(
    depth: int, *, num_classes: int = 1000, in_channels: int = 3, variant: str = "v1"
) -> ResNet:
    """The plain counterpart of an ImageNet ResNet (Fig. 3 middle): no shortcuts.

    Args:
        depth: 18, 34, 50, 101 or 152.
        num_classes: Outputs of the fc layer (1000 for ImageNet).
        in_channels: Input image channels.
        variant: ``"v1"`` (default, the paper's) or ``"v1.5"`` (torchvision's).

    Returns:
        The model.
    """
    return imagenet_resnet(
        depth, residual=False, num_classes=num_classes, in_channels=in_channels, variant=variant
    )


def cifar_plain(depth: int = 20, *, num_classes: int = 10, in_channels: int = 3) -> ResNet:
    """The plain counterpart of a CIFAR ResNet (Fig. 6 left): no shortcuts.

    Args:
        depth: 6n+2.
        num_classes: Outputs of the fc layer.
        in_channels: Input image channels (1 for Fashion-MNIST).

    Returns:
        The model.
    """
    return cifar_resnet(depth, residual=False, num_classes=num_classes, in_channels=in_channels)


for _depth in IMAGENET_ARCHS:
    register_model(f"resnet{_depth}", partial(imagenet_resnet, _depth), family="imagenet",
                   input_size=(224, 224), source="Table 1")
    register_model(f"plain{_depth}", partial(imagenet_plain, _depth), family="imagenet",
                   input_size=(224, 224), source="Table 1 (plain), Fig. 3")
register_model("cifar_resnet", cifar_resnet, family="cifar", input_size=(32, 32),
               source="Sec. 4.2, depth=6n+2 (default 20)")
register_model("cifar_plain", cifar_plain, family="cifar", input_size=(32, 32),
               source="Sec. 4.2 (plain), depth=6n+2 (default 20)")
for _depth in CIFAR_DEPTHS:
    register_model(f"resnet{_depth}", cifar_resnet, family="cifar", input_size=(32, 32),
                   source="Sec. 4.2, Table 6", depth=_depth)
    if _depth != 1202:  # the paper trains no plain-1202
        register_model(f"plain{_depth}", cifar_plain, family="cifar", input_size=(32, 32),
                       source="Sec. 4.2 (plain), Fig. 6", depth=_depth)
