"""CIFAR-10 and CIFAR-100 in the official *binary* version (the pickled one is never read).

Each ``.bin`` file is a run of fixed-size records: the label byte(s), then 3072 pixel bytes, the
1024 red, 1024 green and 1024 blue values of a 32x32 image in row-major order. CIFAR-10 has one
label byte (0..9); CIFAR-100 two, coarse (0..19) then fine (0..99), and reslab uses the fine one.

Damage shows in the sizes: every file must be a whole number of records, and the files must hold
records in the official proportions (CIFAR-10: the same count in all six files; CIFAR-100:
``train.bin`` five times ``test.bin``), so a file cut short anywhere is caught before training.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from reslab.data.arrays import ArrayData
from reslab.data.download import Resource, fetch, safe_extract
from reslab.data.registry import DatasetInfo, dataset_dirs
from reslab.errors import ReslabError

MIRRORS = ("https://www.cs.toronto.edu/~kriz/",)
IMAGE_SHAPE = (3, 32, 32)
PIXEL_BYTES = 3 * 32 * 32


@dataclass(frozen=True)
class CifarFormat:
    """The layout of one CIFAR binary release.

    Attributes:
        label_limits: For each label byte, the number of classes it counts (the last is used).
        splits: The files of each split, in order.
        records: The official number of records in each file.
        meta: The file with one class name per line.
        archive: The official archive, which unpacks to a folder of the files above.
    """

    label_limits: tuple[int, ...]
    splits: dict[str, tuple[str, ...]]
    records: dict[str, int]
    meta: str
    archive: Resource

    @property
    def record_bytes(self) -> int:
        return len(self.label_limits) + PIXEL_BYTES


_CIFAR10_TRAIN = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
FORMATS = {
    "cifar10": CifarFormat(
        label_limits=(10,),
        splits={"train": _CIFAR10_TRAIN, "test": ("test_batch.bin",)},
        records=dict.fromkeys((*_CIFAR10_TRAIN, "test_batch.bin"), 10_000),
        meta="batches.meta.txt",
        archive=Resource("cifar-10-binary.tar.gz", "c32a1d4ab5d03f1284b67883e8d87530", MIRRORS),
    ),
    "cifar100": CifarFormat(
        label_limits=(20, 100),
        splits={"train": ("train.bin",), "test": ("test.bin",)},
        records={"train.bin": 50_000, "test.bin": 10_000},
        meta="fine_label_names.txt",
        archive=Resource("cifar-100-binary.tar.gz", "03b5dce01913d631647c71ecec9e9cb8", MIRRORS),
    ),
}


def find(info: DatasetInfo, root: Path) -> Path | None:
    """The folder holding ``info``'s ``.bin`` files under ``root``, or None.

    Args:
        info: ``cifar10`` or ``cifar100``.
        root: The data dir.

    Returns:
        The first of :func:`reslab.data.registry.dataset_dirs` holding a record or meta file,
        or None.
    """
    fmt = FORMATS[info.name]
    for folder in dataset_dirs(info, root):
        if any((folder / name).is_file() for name in (*fmt.records, fmt.meta)):
            return folder
    return None


def _whole_records(path: Path, size: int, fmt: CifarFormat) -> int:
    if size == 0 or size % fmt.record_bytes:
        raise ReslabError(
            f"{path}: size {size} bytes is not a whole number of {fmt.record_bytes}-byte "
            f"records ({size // fmt.record_bytes} records and {size % fmt.record_bytes} bytes); "
            "the file is truncated or not a CIFAR binary file"
        )
    return size // fmt.record_bytes


def record_counts(folder: Path, fmt: CifarFormat) -> dict[str, int]:
    """Check every file's size and return its number of records.

    Args:
        folder: The release's folder.
        fmt: Its release's layout.

    Returns:
        File name to number of records, for every file of the release.

    Raises:
        ReslabError: A file is missing, is not a whole number of records, or holds fewer
            records than the other files imply (truncated at a record boundary).
    """
    counts = {}
    for name in fmt.records:
        path = folder / name
        if not path.is_file():
            raise ReslabError(f"{path} is missing")
        counts[name] = _whole_records(path, path.stat().st_size, fmt)
    # Each file's share of the official total must be the same (the official proportions).
    scale = max(counts[name] / fmt.records[name] for name in counts)
    for name, count in counts.items():
        implied = round(scale * fmt.records[name])
        if count < implied:
            raise ReslabError(
                f"{folder / name}: truncated: {count} records, the other files imply {implied}"
            )
    return counts


def read_records(path: Path, fmt: CifarFormat) -> tuple[torch.Tensor, torch.Tensor]:
    """Read one ``.bin`` file.

    Args:
        path: The file.
        fmt: Its release's layout.

    Returns:
        ``(images, labels)``: uint8 [N, 3, 32, 32] and int64 [N] (the last label byte).

    Raises:
        ReslabError: The size is not a whole number of records, or a label byte is out of range.
    """
    data = bytearray(path.read_bytes())
    _whole_records(path, len(data), fmt)
    records = torch.frombuffer(data, dtype=torch.uint8).view(-1, fmt.record_bytes)
    num_labels = len(fmt.label_limits)
    for column, limit in enumerate(fmt.label_limits):
        bad = (records[:, column] >= limit).nonzero()
        if len(bad):
            index = int(bad[0])
            raise ReslabError(
                f"{path}: record {index} has label byte {int(records[index, column])}, "
                f"out of range 0..{limit - 1}"
            )
    images = records[:, num_labels:].reshape(-1, *IMAGE_SHAPE).clone()  # [N, 3, 32, 32]
    return images, records[:, num_labels - 1].long()


def read_classes(folder: Path, info: DatasetInfo) -> list[str]:
    """Class names from the release's meta file, or the built-in names when it is absent.

    Args:
        folder: The release's folder.
        info: ``cifar10`` or ``cifar100``.

    Returns:
        The class names, by label.

    Raises:
        ReslabError: The meta file does not hold ``info.num_classes`` non-empty lines.
    """
    path = folder / FORMATS[info.name].meta
    if not path.is_file():
        return list(info.classes)
    names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    names = [name for name in names if name]
    if len(names) != info.num_classes:
        raise ReslabError(f"{path}: {len(names)} class names, expected {info.num_classes}")
    return names


def load(info: DatasetInfo, folder: Path, split: str) -> ArrayData:
    """Read the official ``train`` or ``test`` split from ``folder``.

    Args:
        info: ``cifar10`` or ``cifar100``.
        folder: The release's folder (``cifar-10-batches-bin`` or ``cifar-100-binary``).
        split: ``"train"`` or ``"test"``.

    Returns:
        The split.
    """
    fmt = FORMATS[info.name]
    record_counts(folder, fmt)
    parts = [read_records(folder / name, fmt) for name in fmt.splits[split]]
    images = torch.cat([images for images, _ in parts])
    labels = torch.cat([labels for _, labels in parts])
    return ArrayData(images, labels, read_classes(folder, info), info.name, split)


def download(info: DatasetInfo, root: Path, *, mirrors: tuple[str, ...] | None = None) -> Path:
    """Download the official archive into ``root`` (MD5 checked) and extract it there.

    Args:
        info: ``cifar10`` or ``cifar100``.
        root: The data dir.
        mirrors: Base URLs to download from instead of the official ones (None: official).

    Returns:
        The extracted release folder.

    Raises:
        ReslabError: The archive did not contain the expected release folder.
    """
    archive = fetch(FORMATS[info.name].archive, root, mirrors=mirrors)
    safe_extract(archive, root)
    folder = root / info.folder
    if find(info, root) != folder:
        raise ReslabError(f"{archive} did not contain {info.folder}/")
    return folder
