"""The paper's ImageNet test protocols (Sec. 3.4) beyond the single center view: 10-crop and the
fully-convolutional multi-scale test.

Inputs are test-pipeline outputs (``reslab.data.pipeline("imagenet").eval(protocol)``): float
images, mean subtracted. Each function returns softmax scores [B, num_classes] and runs under
``torch.inference_mode``; put the model in eval mode first. ``images`` may be one batch tensor
[B, C, H, W] or a list of [C, H, W] tensors of different sizes (then each image is run alone).

The multi-scale test uses only ``model.forward_features`` (the convolutional trunk, any input
size) and ``model.forward_head`` (global average pooling + fc). Applying the fc at every
position of the last feature map gives a class-score map (the fully-convolutional form of
[41, 13]); since pooling and fc are both linear, its spatial average equals
``forward_head(forward_features(x))``, so the scores averaged over positions come from the
trunk and head unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn
from torchvision.transforms.v2 import functional as TF

from reslab.data.transforms import CROP, MULTISCALE_SIZES

Images = Tensor | Sequence[Tensor]


def _per_image(predict: Callable[[Tensor], Tensor], images: Images) -> Tensor:
    """``predict`` on a batch tensor, or on each [C, H, W] image of a list, concatenated."""
    if isinstance(images, Tensor):
        return predict(images)
    return torch.cat([predict(image.unsqueeze(0)) for image in images])


@torch.inference_mode()
def predict_ten_crop(model: nn.Module, images: Images, *, crop: int = CROP) -> Tensor:
    """The standard 10-crop test: the 4 corner and the center crops and the horizontal flips of
    those same crops (as AlexNet and Caffe's ``oversample``), softmax scores averaged. Crop
    positions are ``torchvision``'s ``five_crop``.

    Args:
        model: The network.
        images: float [B, C, H, W] or a list of [C, H, W] (shorter side 256 in the paper).
        crop: Side of the square crops.

    Returns:
        Softmax scores [B, K].
    """

    def predict(batch: Tensor) -> Tensor:
        five = TF.five_crop(batch, [crop, crop])
        crops = torch.stack([*five, *(view.flip(-1) for view in five)])  # [10, B, C, crop, crop]
        scores = model(crops.flatten(0, 1)).softmax(dim=1)  # [10 * B, K]
        return scores.view(10, len(batch), -1).mean(0)

    return _per_image(predict, images)


@torch.inference_mode()
def predict_multiscale(
    model: nn.Module, images: Images, scales: Sequence[int] = MULTISCALE_SIZES, *,
    flip: bool = False,
) -> Tensor:  # fmt: skip
    """The fully-convolutional multi-scale test: the whole image resized so its shorter side is
    each of ``scales``, class scores averaged over spatial positions, softmax scores averaged
    over scales (Sec. 3.4, Table 4).

    Args:
        model: A network with ``forward_features`` and ``forward_head``.
        images: float [B, C, H, W] or a list of [C, H, W] (whole images).
        scales: Shorter sides.
        flip: Also average over the horizontally flipped images (as VGG's test [41]).

    Returns:
        Softmax scores [B, K].
    """

    def predict(batch: Tensor) -> Tensor:
        views = [batch, batch.flip(-1)] if flip else [batch]
        scores = [
            model.forward_head(model.forward_features(TF.resize(view, [side], antialias=True)))
            for side in scales  # the resize makes the shorter side `side`
            for view in views
        ]  # each [B, K]: the score map averaged over positions
        return torch.stack(scores).softmax(dim=2).mean(0)

    return _per_image(predict, images)
