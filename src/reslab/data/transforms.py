"""The paper's data pipelines as named presets (torchvision transforms v2 on uint8 tensors).

========================  =====================================================================
preset                    training augmentation; test views
========================  =====================================================================
``cifar``                 Sec. 4.2: pad 4, random 32x32 crop, random horizontal flip, per-pixel
                          mean subtracted; test: the single original 32x32 view (``center``).
``fashion-mnist``         the CIFAR recipe on 28x28 grey images (pad and flip configurable).
``mnist``                 the same without the flip (digits are not mirror-symmetric).
``imagenet``              Sec. 3.4: shorter side random in [256, 480], random 224 crop, flip,
                          AlexNet PCA lighting, per-channel mean subtracted; test protocols
                          ``center`` (shorter side 256, center 224 crop), ``10crop`` (shorter
                          side 256; the crops are taken by
                          :func:`reslab.eval.protocols.predict_ten_crop`) and ``multiscale``
                          (the whole image; :func:`reslab.eval.protocols.predict_multiscale`
                          resizes it to each of :data:`MULTISCALE_SIZES`).
========================  =====================================================================

The small-image presets also give :class:`reslab.data.TensorLoader` its options (``pad``,
``flip``, ``mean``): the same augmentation as batched tensor ops. Inputs are scaled to [0, 1]
and have the mean subtracted, as in the paper (no division by a standard deviation). The
paper's ImageNet mean is per-pixel too; here it is torchvision's per-channel mean
(:data:`IMAGENET_MEAN`), which needs no pass over the training images and matches the
preprocessing of torchvision's and timm's ImageNet weights.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torchvision.transforms import v2

from reslab.errors import ReslabError, choices_hint

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # RGB, [0, 1] scale (as torchvision and fb.resnet.torch)
# AlexNet's PCA lighting (Krizhevsky et al. 2012, Sec. 4.1) for RGB values in [0, 1]: the
# eigenvalues and eigenvectors (columns) of the ImageNet pixel covariance, from Facebook's
# fb.resnet.torch, datasets/imagenet.lua (the `pca` table), the values later ResNet code reuses.
PCA_EIGVAL = (0.2175, 0.0188, 0.0045)
PCA_EIGVEC = (
    (-0.5675, 0.7192, 0.4009),
    (-0.5808, -0.0045, -0.8140),
    (-0.5836, -0.6948, 0.4203),
)
PCA_STD = 0.1
TRAIN_SHORT_SIDE = (256, 480)  # Sec. 3.4: "shorter side randomly sampled in [256, 480]"
TEST_SHORT_SIDE = 256
CROP = 224
MULTISCALE_SIZES = (224, 256, 384, 480, 640)  # Sec. 3.4, fully-convolutional test
PROTOCOLS = ("center", "10crop", "multiscale")
# Random erasing (Zhong et al., "Random Erasing Data Augmentation", AAAI 2020, Sec. 3.1; not in
# the ResNet paper): the box's area is a fraction U(ERASE_AREA) of the image, its aspect ratio
# h/w in ERASE_RATIO (drawn log-uniformly, as timm does; Zhong et al. draw it uniformly).
ERASE_AREA = (0.02, 0.4)
ERASE_RATIO = (0.3, 1 / 0.3)


class RandomShorterSide(nn.Module):
    """Resize so the shorter side is a uniform random integer in ``[low, high]`` (Sec. 3.4:
    "its shorter side randomly sampled in [256, 480] for scale augmentation")."""

    def __init__(self, low: int, high: int) -> None:
        super().__init__()
        self.low, self.high = low, high

    def sample_side(self) -> int:
        """Draw the shorter side from torch's default generator."""
        return int(torch.randint(self.low, self.high + 1, ()))

    def forward(self, x: Tensor) -> Tensor:
        return v2.functional.resize(x, [self.sample_side()], antialias=True)

    def extra_repr(self) -> str:
        return f"low={self.low}, high={self.high}"


class SubtractMean(nn.Module):
    """``x - mean`` for a per-pixel mean [C, H, W] or a per-channel mean [C] ([C, 1, 1])."""

    def __init__(self, mean: Tensor) -> None:
        super().__init__()
        self.mean = mean.view(-1, 1, 1) if mean.dim() == 1 else mean

    def forward(self, x: Tensor) -> Tensor:
        return x - self.mean

    def extra_repr(self) -> str:
        return f"mean={list(self.mean.shape)}"


class Lighting(nn.Module):
    """AlexNet-style PCA lighting noise (Sec. 3.4: "the standard color augmentation in [21]").

    Adds ``eigvec @ (alpha * eigval)`` to every pixel, ``alpha ~ N(0, std^2)`` per image, drawn
    from torch's default generator (seeded per sample by the data sets).

    Args:
        std: Standard deviation of ``alpha``.
        eigval: The covariance's eigenvalues [3].
        eigvec: Its eigenvectors as the columns of [3, 3].
    """

    def __init__(
        self,
        *,
        std: float = PCA_STD,
        eigval: tuple[float, ...] = PCA_EIGVAL,
        eigvec: tuple[tuple[float, ...], ...] = PCA_EIGVEC,
    ) -> None:
        super().__init__()
        self.std = std
        self.eigval = torch.tensor(eigval)
        self.eigvec = torch.tensor(eigvec)

    def forward(self, x: Tensor) -> Tensor:  # x: float [3, H, W] in [0, 1]
        alpha = torch.randn(3) * self.std
        rgb = self.eigvec @ (alpha * self.eigval)  # [3]
        return x + rgb.to(x).view(3, 1, 1)

    def extra_repr(self) -> str:
        return f"std={self.std}"


@dataclass(frozen=True)
class Pipeline:
    """A preset: per-sample transforms, and the options of the batched small-image path.

    Attributes:
        name: The preset's name.
        train: Training transform, uint8 [C, H, W] -> float [C, h, w].
        evals: Test transform per protocol (see :data:`PROTOCOLS`).
        mean: What is subtracted from [0, 1] pixels (None: nothing).
        pad: Zero padding before the random crop (small-image presets).
        flip: Random horizontal flips.
        size: ``(h, w)`` of the training crop.
    """

    name: str
    train: Callable[[Tensor], Tensor]
    evals: dict[str, Callable[[Tensor], Tensor]] = field(hash=False)
    mean: Tensor | None
    pad: int
    flip: bool
    size: tuple[int, int]

    def eval(self, protocol: str = "center") -> Callable[[Tensor], Tensor]:
        """The test transform of ``protocol``.

        Args:
            protocol: A key of :attr:`evals`, e.g. ``"center"``.

        Returns:
            The transform of a uint8 image.

        Raises:
            ReslabError: The pipeline has no such protocol.
        """
        if protocol not in self.evals:
            raise ReslabError(
                f"pipeline {self.name!r} has no test protocol {protocol!r}; "
                + choices_hint(self.evals)
            )
        return self.evals[protocol]


def with_erasing(transform: Callable[[Tensor], Tensor], p: float) -> Callable[[Tensor], Tensor]:
    """``transform`` followed by random erasing (:data:`ERASE_AREA`, :data:`ERASE_RATIO`) of
    the normalised image, the box set to 0 (the mean); the image-folder form of
    :class:`reslab.data.TensorLoader`'s ``erase``.

    Args:
        transform: A training transform ending in the mean subtraction.
        p: Probability of erasing a box.

    Returns:
        The composed transform, or ``transform`` itself when ``p`` is 0.
    """
    if not p:
        return transform
    return v2.Compose([transform, v2.RandomErasing(p, scale=ERASE_AREA, ratio=ERASE_RATIO,
                                                   value=0)])


def _to_input(mean: Tensor | None) -> list[nn.Module]:
    """uint8 -> float in [0, 1], then the mean subtracted."""
    steps = [v2.ToDtype(torch.float32, scale=True)]
    return steps + ([SubtractMean(mean)] if mean is not None else [])


def _small(name: str, size: int, *, mean: Tensor | None, pad: int, flip: bool) -> Pipeline:
    train = [v2.RandomCrop(size, padding=pad)] + ([v2.RandomHorizontalFlip()] if flip else [])
    return Pipeline(
        name=name,
        train=v2.Compose(train + _to_input(mean)),
        evals={"center": v2.Compose(_to_input(mean))},
        mean=mean,
        pad=pad,
        flip=flip,
        size=(size, size),
    )


def _imagenet(mean: Tensor | None, flip: bool, crop: int) -> Pipeline:
    mean = torch.tensor(IMAGENET_MEAN) if mean is None else mean
    # Sec. 3.4's sides are for 224 crops; another crop keeps their ratios to it
    scale = crop / CROP
    test_side = round(TEST_SHORT_SIDE * scale)  # 256
    train = [
        RandomShorterSide(*(round(side * scale) for side in TRAIN_SHORT_SIDE)),  # [256, 480]
        v2.RandomCrop(crop),
        *([v2.RandomHorizontalFlip()] if flip else []),
        v2.ToDtype(torch.float32, scale=True),
        Lighting(),
        SubtractMean(mean),
    ]
    return Pipeline(
        name="imagenet",
        train=v2.Compose(train),
        evals={
            "center": v2.Compose(
                [v2.Resize(test_side), v2.CenterCrop(crop), *_to_input(mean)]
            ),
            "10crop": v2.Compose([v2.Resize(test_side), *_to_input(mean)]),
            "multiscale": v2.Compose(_to_input(mean)),
        },
        mean=mean,
        pad=0,
        flip=flip,
        size=(crop, crop),
    )


_SMALL = {"cifar": (32, True), "fashion-mnist": (28, True), "mnist": (28, False)}
PIPELINES = (*_SMALL, "imagenet")


def pipeline(
    name: str, *, mean: Tensor | None = None, pad: int | None = None, flip: bool | None = None,
    crop: int | None = None,
) -> Pipeline:  # fmt: skip
    """Build a preset (see the module docstring).

    Args:
        name: One of :data:`PIPELINES`.
        mean: What to subtract from [0, 1] pixels: for the small-image presets the training
            split's per-pixel mean (:func:`reslab.data.per_pixel_mean`), None for none; for
            ``imagenet`` a per-channel mean [3], None for :data:`IMAGENET_MEAN`.
        pad: Padding before the random crop (small-image presets; default 4).
        flip: Random horizontal flips (default: on, off for ``mnist``).
        crop: ``imagenet``: the side of the training and centre crops (default 224; AlexNet's
            227, say); the training scales [256, 480] and the test resize 256 keep their
            ratios to 224.

    Returns:
        The pipeline.

    Raises:
        ReslabError: Unknown name, ``pad`` given for ``imagenet``, or ``crop`` for a
            small-image pipeline.
    """
    if name == "imagenet":
        if pad is not None:
            raise ReslabError("pad applies to the small-image pipelines, not 'imagenet'")
        return _imagenet(mean, True if flip is None else flip, CROP if crop is None else crop)
    if crop is not None:
        raise ReslabError(f"crop applies to the 'imagenet' pipeline, not {name!r} (its crop is "
                          "the image size)")
    if name not in _SMALL:
        raise ReslabError(f"unknown pipeline {name!r}; {choices_hint(PIPELINES)}")
    size, default_flip = _SMALL[name]
    if pad is not None and pad < 0:
        raise ReslabError(f"pad must be >= 0, got {pad}")
    return _small(
        name, size, mean=mean, pad=4 if pad is None else pad,
        flip=default_flip if flip is None else flip,
    )  # fmt: skip
