"""The fast path for small data sets: a whole split as one uint8 tensor on the training device.

Each batch's augmentation (Sec. 4.2: zero-pad, random crop of the original size, random
horizontal flip), the scaling to [0, 1], the per-pixel mean subtraction and, optionally, random
erasing (not in the paper: Zhong et al., "Random Erasing Data Augmentation", AAAI 2020) are a
handful of batched tensor ops, in the airbench style: no per-image Python, no worker processes.

Randomness: at the start of each epoch one ``torch.Generator`` seeded from (seed, epoch) draws
the permutation, then the crop offsets of all N samples, then their flips, then (only when
erasing is on) their erased boxes, on the CPU (so every device and machine gets the same
numbers). Sample ``i`` always gets offset ``i``, flip ``i`` and box ``i``, so a sample's view
depends on (seed, epoch, i) only, never on batch boundaries or world size.

Distributed training (DDP): every rank builds the loader with the same seed; global batch ``b``
is positions ``b*B .. b*B+B-1`` of the epoch's order, split into ``world_size`` contiguous
shards, and rank ``r`` yields shard ``r`` (``B / world_size`` samples). Evaluation
(``train=False``) walks the samples in order, keeps the last partial batch, and splits each
global batch into ``world_size`` contiguous shards as :func:`torch.tensor_split` does (sizes
differ by at most one), so across ranks every sample is seen exactly once; every rank yields
``len(loader)`` batches, the last one possibly empty, so per-batch collectives stay in step.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor

from reslab.data.base import EpochPosition, derive_seed
from reslab.data.transforms import ERASE_AREA, ERASE_RATIO
from reslab.errors import ReslabError

# Random erasing's box (transforms.ERASE_AREA, ERASE_RATIO): a box that does not fit is drawn
# again, up to ERASE_TRIES times (the sample is then left as it is).
ERASE_TRIES = 10


class TensorLoader(EpochPosition):
    """Batches of a split held on ``device``, augmented with batched tensor ops.

    Args:
        images: uint8 [N, C, H, W] (copied to ``device`` once; zero-padded once when
            ``train``, so a crop is a row gather and a column gather).
        labels: int64 [N].
        batch_size: Global batch size (all ranks together); must divide by ``world_size``.
        device: Where the data lives and the batches are made.
        train: Shuffle, augment and drop the last partial batch; else the samples in order,
            unaugmented, with the last partial batch.
        mean: Subtracted after scaling to [0, 1]: per-pixel [C, H, W] or per-channel [C];
            None for nothing.
        pad: Zero padding on each side before the random crop of the original size.
        flip: Random horizontal flips (probability 1/2).
        erase: Probability of random erasing: a box of the (cropped, flipped) sample is set to
            0 after the mean subtraction, i.e. to the mean image (training only; 0 for none).
        seed: The run's data seed.
        rank: This process's rank.
        world_size: Number of processes.
        channels_last: Return batches in ``torch.channels_last`` memory format.
    """

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        *,
        batch_size: int,
        device: torch.device | str,
        train: bool,
        mean: Tensor | None = None,
        pad: int = 4,
        flip: bool = True,
        erase: float = 0.0,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        channels_last: bool = False,
    ) -> None:
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ReslabError(
                f"images must be uint8 [N, C, H, W], got {images.dtype} {list(images.shape)}"
            )
        if labels.shape != (len(images),):
            raise ReslabError(f"{len(images)} images but labels of shape {list(labels.shape)}")
        if batch_size < 1 or world_size < 1 or not 0 <= rank < world_size:
            raise ReslabError(
                f"need batch_size >= 1 and 0 <= rank < world_size, "
                f"got {batch_size}, {rank}, {world_size}"
            )
        if batch_size % world_size:
            raise ReslabError(
                f"batch size {batch_size} does not divide by world size {world_size}"
            )
        if pad < 0:
            raise ReslabError(f"pad must be >= 0, got {pad}")
        if not 0.0 <= erase <= 1.0:
            raise ReslabError(f"erase must be a probability in [0, 1], got {erase}")
        if train and pad >= min(images.shape[-2:]):  # a corner crop would be all padding
            raise ReslabError(f"pad must be less than the image side ({min(images.shape[-2:])} "
                              f"for {tuple(images.shape[-2:])} images), got {pad}")
        if train and len(images) < batch_size:
            raise ReslabError(
                f"{len(images)} training samples, fewer than one batch of {batch_size}"
            )
        self.device = torch.device(device)
        self.image_shape = tuple(images.shape[1:])  # (C, H, W)
        self.images = images.to(self.device)  # uint8 [N, C, H, W]
        if train and pad:  # zero-padded once: uint8 [N, C, H+2p, W+2p]
            self.images = F.pad(self.images, (pad, pad, pad, pad))
        self.labels = labels.to(self.device, torch.int64)
        self.mean = None
        if mean is not None:
            mean = mean.to(self.device, torch.float32)
            self.mean = mean.view(-1, 1, 1) if mean.dim() == 1 else mean
        self.batch_size = batch_size
        self.train = train
        self.pad = pad
        self.flip = flip
        self.erase = erase
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.channels_last = channels_last
        self.epoch = 0
        self.batch = 0  # the next batch of self.epoch to yield

    def __len__(self) -> int:
        """Batches per epoch (the same on every rank)."""
        n = len(self.labels)
        return n // self.batch_size if self.train else -(-n // self.batch_size)

    @property
    def samples_per_epoch(self) -> int:
        """Samples per epoch, all ranks together."""
        return len(self) * self.batch_size if self.train else len(self.labels)

    def state_dict(self) -> dict[str, int]:
        """The position, for an exact resume.

        Returns:
            ``epoch`` and ``batch`` (the next batch to yield), ``seed``, and ``samples_seen``
            (samples yielded to all ranks since epoch 0, for logs).
        """
        done = min(self.batch * self.batch_size, self.samples_per_epoch)
        return {**super().state_dict(),
                "samples_seen": self.epoch * self.samples_per_epoch + done}

    def _plan(self) -> tuple[Tensor, Tensor | None, Tensor | None, Tensor | None]:
        """This epoch's order, and by sample index: crop offsets [N, 2], flips [N], and the
        erased boxes [N, 4] (None when erasing is off)."""
        n = len(self.labels)
        if not self.train:
            return torch.arange(n, device=self.device), None, None, None
        generator = torch.Generator().manual_seed(derive_seed(self.seed, self.epoch))
        order = torch.randperm(n, generator=generator)
        offsets = torch.randint(0, 2 * self.pad + 1, (n, 2), generator=generator)  # (dy, dx)
        flips = torch.rand(n, generator=generator) < 0.5
        if not self.flip:
            flips.zero_()
        boxes = self._erase_boxes(n, generator) if self.erase else None
        return (self._upload(order), self._upload(offsets), self._upload(flips),
                None if boxes is None else self._upload(boxes))

    def _erase_boxes(self, n: int, generator: torch.Generator) -> Tensor:
        """Random erasing's boxes ``(top, left, height, width)`` [N, 4] (int64), each sample's
        with probability ``erase``; an empty box (height 0) leaves the sample as it is."""
        _, h, w = self.image_shape
        area = torch.empty(n, ERASE_TRIES).uniform_(*ERASE_AREA, generator=generator) * (h * w)
        log_ratio = torch.empty(n, ERASE_TRIES).uniform_(
            *map(math.log, ERASE_RATIO), generator=generator)
        heights = (area * log_ratio.exp()).sqrt().round().long()  # [N, tries]
        widths = (area / log_ratio.exp()).sqrt().round().long()
        fits = (heights < h) & (widths < w)
        first = fits.long().argmax(1, keepdim=True)  # the first try that fits, per sample
        keep = fits.any(1) & (torch.rand(n, generator=generator) < self.erase)
        height = heights.gather(1, first).squeeze(1) * keep  # [N]
        width = widths.gather(1, first).squeeze(1) * keep
        top = (torch.rand(n, generator=generator) * (h - height + 1)).long()
        left = (torch.rand(n, generator=generator) * (w - width + 1)).long()
        return torch.stack([top, left, height, width], 1)

    def _erase(self, x: Tensor, boxes: Tensor) -> Tensor:
        """``x`` [b, C, H, W] with each sample's box [b, 4] set to 0, in place."""
        _, h, w = self.image_shape
        top, left, height, width = boxes.unbind(1)  # [b] each
        rows = torch.arange(h, device=self.device) - top[:, None]  # [b, H]
        cols = torch.arange(w, device=self.device) - left[:, None]  # [b, W]
        inside_rows = (rows >= 0) & (rows < height[:, None])
        inside_cols = (cols >= 0) & (cols < width[:, None])
        return x.masked_fill_(inside_rows[:, None, :, None] & inside_cols[:, None, None, :], 0)

    def _upload(self, tensor: Tensor) -> Tensor:
        """``tensor`` on the device. To CUDA through pinned memory, without blocking: a copy
        from pageable memory would make the host wait for the GPU once per epoch."""
        if self.device.type == "cuda":
            return tensor.pin_memory().to(self.device, non_blocking=True)
        return tensor.to(self.device)

    def _crop_flip(self, index: Tensor, offsets: Tensor, flips: Tensor) -> Tensor:
        """Crops of the original size at ``offsets`` [b, 2] of the padded samples ``index``
        [b], flipped where ``flips`` [b]: one row gather, then one column gather."""
        c, h, w = self.image_shape
        padded_h, padded_w = h + 2 * self.pad, w + 2 * self.pad
        arange = functools.partial(torch.arange, device=self.device)
        # Row r of channel k of sample i is row (i*C + k)*(H+2p) + dy_i + r of the flat view.
        planes = index[:, None] * c + arange(c)  # [b, C]
        rows = planes[:, :, None] * padded_h + offsets[:, :1, None] + arange(h)  # [b, C, H]
        x = self.images.view(-1, padded_w).index_select(0, rows.flatten())
        x = x.view(len(index), c, h, padded_w)  # [b, C, H, W+2p]
        cols = offsets[:, 1:] + arange(w)  # [b, W]
        cols = torch.where(flips[:, None], cols.flip(1), cols)
        return x.gather(3, cols[:, None, None, :].expand(len(index), c, h, w))  # [b, C, H, W]

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        """Yield this rank's ``(x float32 [b, C, H, W], y int64 [b])`` for the rest of the
        epoch, then move to the next epoch."""
        order, offsets, flips, boxes = self._plan()
        for batch in range(self.batch, len(self)):
            lo, hi = self.shard(batch, len(self.labels))
            index = order[lo:hi]
            if self.train:
                x = self._crop_flip(index, offsets[index], flips[index])  # uint8 [b, C, H, W]
            else:
                x = self.images.index_select(0, index)
            x = x.float().mul_(1 / 255)
            if self.mean is not None:
                x = x.sub_(self.mean)
            if boxes is not None:
                x = self._erase(x, boxes[index])
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            self.batch = batch + 1
            yield x, self.labels.index_select(0, index)
        self.epoch, self.batch = self.epoch + 1, 0
