"""The case-study nets of the CNN course notes (PAPER.md Sec. 7), for comparison with the ResNets.

``lenet5``, ``alexnet`` and ``zfnet`` are written here from the layer tables below; ``vgg16``,
``vgg19`` and ``googlenet`` are torchvision's nets (same module and parameter names, so
torchvision state dicts load unchanged) with reslab's model interface added. Every net takes
``num_classes`` and ``in_channels`` and has ``forward_features``, ``forward_head`` and
``reset_classifier``, like :class:`reslab.models.resnet.ResNet`.

Choices the notes leave open:

- LeNet-5 is the modern reading of the notes' [CONV-POOL-CONV-POOL-FC-FC]: ReLU and 2x2 max
  pooling instead of LeCun's scaled tanh and trainable average subsampling, C3 connected to all
  six S2 maps (no sparse connection table), and a linear output layer instead of the RBF units.
  C5 is a 5x5 convolution with 120 filters (1x1 output at 32x32), so the net has 61,706 params.
- AlexNet is the notes' single-tower net (227x227 input, no grouped convolutions), with local
  response normalisation after the first two pools: 62,378,344 params (the notes' "60M").
  torchvision's ``alexnet`` is a different net (64/192 filters in conv1/conv2, 61.1M params).
- ZFNet is AlexNet with the notes' changes (conv1 7x7/2, conv3-5 with 512/1024/512 filters) at
  Zeiler & Fergus' 224x224 input and conv2 stride 2, with ceil-mode pooling as in their Fig. 3:
  maps of 110, 55, 26, 13, 13, 13 and 6 pixels.
- AlexNet and ZFNet use He initialisation for convolutions and N(0, 0.01) for fc layers, as
  torchvision's VGG does.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import NamedTuple

import torch
import torchvision.models.vgg as tv_vgg
from torch import Tensor, nn
from torchvision.models.googlenet import GoogLeNet as TorchvisionGoogLeNet

from reslab.errors import ReslabError, check_positive
from reslab.models.interface import ModelInterface
from reslab.models.registry import register_model


class Conv(NamedTuple):
    """One row of a layer table: a convolution (+ ReLU), then optionally max pooling and LRN."""

    filters: int
    kernel: int
    stride: int = 1
    padding: int = 0
    pool: int = 0  # max-pool kernel (stride 2) after the ReLU; 0 for none
    norm: bool = False  # local response normalisation after the pool


# LeNet-5 at 32x32x1: C1 6@5x5 -> 28, S2 -> 14, C3 16@5x5 -> 10, S4 -> 5, C5 120@5x5 -> 1.
LENET5 = (Conv(6, 5, pool=2), Conv(16, 5, pool=2), Conv(120, 5))
# The notes' AlexNet at 227x227x3: 55 -> pool 27 -> 27 -> pool 13 -> 13 -> 13 -> 13 -> pool 6.
ALEXNET = (
    Conv(96, 11, stride=4, pool=3, norm=True),
    Conv(256, 5, padding=2, pool=3, norm=True),
    Conv(384, 3, padding=1),
    Conv(384, 3, padding=1),
    Conv(256, 3, padding=1, pool=3),
)
# ZFNet at 224x224x3: 110 -> pool 55 -> 26 -> pool 13 -> 13 -> 13 -> 13 -> pool 6.
ZFNET = (
    Conv(96, 7, stride=2, padding=1, pool=3, norm=True),
    Conv(256, 5, stride=2, pool=3, norm=True),
    Conv(512, 3, padding=1),
    Conv(1024, 3, padding=1),
    Conv(512, 3, padding=1, pool=3),
)
# GoogLeNet's trunk, in execution order (torchvision's module names; aux classifiers off).
GOOGLENET_TRUNK = (
    "conv1", "maxpool1", "conv2", "conv3", "maxpool2", "inception3a", "inception3b", "maxpool3",
    "inception4a", "inception4b", "inception4c", "inception4d", "inception4e", "maxpool4",
    "inception5a", "inception5b",
)


def output_size(
    size: int, kernel: int, stride: int = 1, padding: int = 0, *, ceil: bool = False
) -> int:
    """The course notes' output size of a convolution or pooling: ``(W - F + 2P) / S + 1``.

    Args:
        size: Input width W.
        kernel: Filter size F.
        stride: Stride S.
        padding: Zero padding P on each side.
        ceil: Round up (ceil-mode pooling) instead of down.

    Returns:
        The output width, as PyTorch computes it: in ceil mode a last window that would start
        in the right-hand padding is dropped.

    Raises:
        ReslabError: The window is larger than the padded input (``W - F + 2P < 0``).
    """
    span = size - kernel + 2 * padding
    if span < 0:
        raise ReslabError(
            f"a {kernel}x{kernel} window does not fit a {size}x{size} input (padding {padding}): "
            f"(W - F + 2P) = ({size} - {kernel} + {2 * padding}) < 0"
        )
    out = (-(-span // stride) if ceil else span // stride) + 1
    if ceil and (out - 1) * stride >= size + padding:
        out -= 1
    return out


def conv_trunk(
    table: Sequence[Conv], *, in_channels: int, input_size: int, ceil_mode: bool = False
) -> tuple[nn.Sequential, int]:
    """Build the convolutional trunk of a layer table.

    Args:
        table: The rows, first layer first.
        in_channels: Channels of the input image.
        input_size: Side of the (square) input image the net is designed for.
        ceil_mode: Round pooled sizes up (ZFNet) instead of down.

    Returns:
        The trunk (modules ``conv1, relu1, pool1, norm1, conv2, ...``) and the number of values
        it outputs per image at ``input_size`` (the first fc layer's input width).
    """
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    channels, size = in_channels, input_size
    for i, row in enumerate(table, start=1):
        layers[f"conv{i}"] = nn.Conv2d(channels, row.filters, row.kernel, row.stride, row.padding)
        layers[f"relu{i}"] = nn.ReLU(inplace=True)
        channels, size = row.filters, output_size(size, row.kernel, row.stride, row.padding)
        if row.pool:
            layers[f"pool{i}"] = nn.MaxPool2d(row.pool, stride=2, ceil_mode=ceil_mode)
            size = output_size(size, row.pool, 2, ceil=ceil_mode)
        if row.norm:  # AlexNet Sec. 3.3: a / (k + alpha * sum over n channels of a^2)^beta,
            # k=2, n=5, alpha=1e-4, beta=0.75; PyTorch divides its alpha by n, so it gets n * alpha
            layers[f"norm{i}"] = nn.LocalResponseNorm(5, alpha=5 * 1e-4, beta=0.75, k=2.0)
    return nn.Sequential(layers), channels * size * size


def mlp_classifier(
    in_features: int, hidden: Sequence[int], num_classes: int, *, first: int, dropout: float
) -> nn.Sequential:
    """The fully connected layers ``fc<first>, ...``, each but the last followed by ReLU.

    Args:
        in_features: Width of the flattened trunk output.
        hidden: Widths of the hidden fc layers.
        num_classes: Width of the last fc layer (the class scores).
        first: Number of the first fc layer in the net (``fc6`` in AlexNet).
        dropout: Dropout probability before each hidden fc layer (0 for none).

    Returns:
        The classifier; its last module is the ``nn.Linear`` giving the logits.
    """
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    width = in_features
    for i, out in enumerate(hidden, start=first):
        if dropout:
            layers[f"drop{i}"] = nn.Dropout(dropout)
        layers[f"fc{i}"] = nn.Linear(width, out)
        layers[f"relu{i}"] = nn.ReLU(inplace=True)
        width = out
    layers[f"fc{first + len(hidden)}"] = nn.Linear(width, num_classes)
    return nn.Sequential(layers)


class ClassifierHead(ModelInterface):
    """Mixin for nets ending in ``self.classifier``, a Sequential of fc layers (with ReLU and
    dropout) whose last module gives the logits."""

    classifier: nn.Sequential

    @property
    def logits_name(self) -> str:
        """Path of the last fc layer, e.g. ``classifier.fc8``."""
        return f"classifier.{[name for name, _ in self.classifier.named_children()][-1]}"

    def forward_head(self, x: Tensor, *, pre_logits: bool = False) -> Tensor:
        """Flatten the trunk's output; apply the fc layers (all but the last if ``pre_logits``).

        Args:
            x: The trunk's output, (N, C, h, w).
            pre_logits: Stop before the last fc layer.

        Returns:
            (N, num_features) with ``pre_logits``, else the logits (N, num_classes).
        """
        *hidden, logits = self.classifier  # the installed modules (torch.fx can trace them)
        x = torch.flatten(x, 1)  # (N, C, h, w) -> (N, C*h*w)
        for layer in hidden:
            x = layer(x)  # -> (N, num_features)
        return x if pre_logits else logits(x)  # -> (N, num_classes)


class ConvNet(ClassifierHead, nn.Module):
    """A plain stack: convolutional trunk, flatten, fully connected layers (LeNet, AlexNet, ZFNet).

    Args:
        features: The trunk (see :func:`conv_trunk`).
        classifier: The fc layers (see :func:`mlp_classifier`).
    """

    def __init__(self, features: nn.Sequential, classifier: nn.Sequential) -> None:
        super().__init__()
        self.features = features
        self.classifier = classifier
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: Tensor) -> Tensor:
        """The convolutional trunk: image to its last feature map.

        Args:
            x: Images, (N, C_in, H, W).

        Returns:
            The last feature map, (N, C, h, w).
        """
        return self.features(x)


class VGG(ClassifierHead, tv_vgg.VGG):
    """torchvision's VGG with reslab's model interface; module and parameter names unchanged."""

    min_input_size = 32  # five 2x2/2 max pools

    def forward_features(self, x: Tensor) -> Tensor:
        """The 13 (VGG-16) or 16 (VGG-19) 3x3 convolutions and the 7x7 adaptive pool.

        Args:
            x: Images, (N, C_in, H, W).

        Returns:
            (N, 512, 7, 7).
        """
        return self.avgpool(self.features(x))  # (N, C_in, H, W) -> (N, 512, 7, 7)


class GoogLeNet(ModelInterface, TorchvisionGoogLeNet):
    """torchvision's GoogLeNet (Inception v1) without the auxiliary classifiers, with reslab's
    model interface; module and parameter names unchanged."""

    logits_name = "fc"

    def forward_features(self, x: Tensor) -> Tensor:
        """The stem and the nine Inception modules.

        Args:
            x: Images, (N, C_in, H, W).

        Returns:
            (N, 1024, H/32, W/32).
        """
        for name in GOOGLENET_TRUNK:
            x = getattr(self, name)(x)
        return x  # (N, 1024, H/32, W/32)

    def forward_head(self, x: Tensor, *, pre_logits: bool = False) -> Tensor:
        """Global average pooling, dropout and the fc layer.

        Args:
            x: The trunk's output, (N, 1024, h, w).
            pre_logits: Return the pooled features, before dropout and the fc layer.

        Returns:
            (N, 1024) with ``pre_logits``, else the logits (N, num_classes).
        """
        x = torch.flatten(self.avgpool(x), 1)  # (N, 1024, h, w) -> (N, 1024)
        return x if pre_logits else self.fc(self.dropout(x))  # -> (N, num_classes)


def with_in_channels(conv: nn.Conv2d, in_channels: int) -> nn.Conv2d:
    """A fresh convolution like ``conv`` but reading ``in_channels`` channels.

    Args:
        conv: The convolution to copy (its weights are not copied).
        in_channels: The new input channels.

    Returns:
        A freshly initialised ``nn.Conv2d`` with ``conv``'s other settings.
    """
    return nn.Conv2d(
        in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
        padding=conv.padding, dilation=conv.dilation, groups=conv.groups,
        bias=conv.bias is not None,
    )


def lenet5(*, num_classes: int = 10, in_channels: int = 1) -> ConvNet:
    """LeNet-5 (course notes, "Case Study - LeNet"): 32x32 input, ReLU and max pooling.

    Args:
        num_classes: Outputs of the last layer.
        in_channels: Input image channels.

    Returns:
        The model: trunk ``conv1 (C1), pool1 (S2), conv2 (C3), pool2 (S4), conv3 (C5)``,
        classifier ``fc4 (F6, 84), fc5 (output)``.
    """
    check_positive(num_classes=num_classes, in_channels=in_channels)
    features, width = conv_trunk(LENET5, in_channels=in_channels, input_size=32)
    return ConvNet(features, mlp_classifier(width, (84,), num_classes, first=4, dropout=0.0))


def alexnet(*, num_classes: int = 1000, in_channels: int = 3) -> ConvNet:
    """AlexNet as the course notes give it (single tower, 227x227 input, 62.4M params).

    Args:
        num_classes: Outputs of fc8.
        in_channels: Input image channels.

    Returns:
        The model: ``conv1..conv5`` (conv1 output 96x55x55), ``fc6, fc7`` (4096) with dropout 0.5,
        ``fc8``.
    """
    check_positive(num_classes=num_classes, in_channels=in_channels)
    features, width = conv_trunk(ALEXNET, in_channels=in_channels, input_size=227)
    return ConvNet(features, mlp_classifier(width, (4096, 4096), num_classes, first=6, dropout=0.5))


def zfnet(*, num_classes: int = 1000, in_channels: int = 3) -> ConvNet:
    """ZFNet (course notes, "Case Study - ZFNet"): AlexNet with conv1 7x7/2 and 512/1024/512
    filters in conv3-5, at 224x224.

    Args:
        num_classes: Outputs of fc8.
        in_channels: Input image channels.

    Returns:
        The model, with AlexNet's module names.
    """
    check_positive(num_classes=num_classes, in_channels=in_channels)
    features, width = conv_trunk(ZFNET, in_channels=in_channels, input_size=224, ceil_mode=True)
    return ConvNet(features, mlp_classifier(width, (4096, 4096), num_classes, first=6, dropout=0.5))


def vgg(config: str, *, num_classes: int = 1000, in_channels: int = 3) -> VGG:
    """torchvision's VGG without batch norm (course notes, "Case Study - VGGNet").

    Args:
        config: torchvision's configuration letter: ``"D"`` (VGG-16) or ``"E"`` (VGG-19).
        num_classes: Outputs of the last fc layer.
        in_channels: Input image channels (the first convolution is rebuilt when not 3).

    Returns:
        The model; VGG-16 has 138,357,544 params.
    """
    check_positive(num_classes=num_classes, in_channels=in_channels)
    features = tv_vgg.make_layers(tv_vgg.cfgs[config], batch_norm=False)
    features[0] = with_in_channels(features[0], in_channels)  # before torchvision's init runs
    return VGG(features, num_classes=num_classes, init_weights=True)


def googlenet(*, num_classes: int = 1000, in_channels: int = 3) -> GoogLeNet:
    """torchvision's GoogLeNet (course notes, "Case Study - GoogLeNet"): 22 weighted layers,
    auxiliary classifiers off, no input transform, torchvision's initialisation.

    Args:
        num_classes: Outputs of the fc layer.
        in_channels: Input image channels (the first convolution is rebuilt when not 3).

    Returns:
        The model (6,624,904 params with 1000 classes).
    """
    check_positive(num_classes=num_classes, in_channels=in_channels)
    model = GoogLeNet(
        num_classes=num_classes, aux_logits=False, transform_input=False, init_weights=True
    )
    if in_channels != 3:
        model.conv1.conv = with_in_channels(model.conv1.conv, in_channels)
        nn.init.trunc_normal_(model.conv1.conv.weight, std=0.01, a=-2, b=2)  # as torchvision
    return model


register_model("lenet5", lenet5, family="classic", input_size=(32, 32), in_channels=1,
               fixed_input_size=True, source="CNN course notes: LeNet-5")
register_model("alexnet", alexnet, family="classic", input_size=(227, 227),
               fixed_input_size=True, source="CNN course notes: AlexNet")
register_model("zfnet", zfnet, family="classic", input_size=(224, 224),
               fixed_input_size=True, source="CNN course notes: ZFNet")
register_model("vgg16", vgg, family="classic", input_size=(224, 224),
               source="CNN course notes: VGGNet (torchvision vgg16)", config="D")
register_model("vgg19", vgg, family="classic", input_size=(224, 224),
               source="CNN course notes: VGGNet (torchvision vgg19)", config="E")
register_model("googlenet", googlenet, family="classic", input_size=(224, 224),
               source="CNN course notes: GoogLeNet (torchvision googlenet)")
