"""CIFAR-10 and CIFAR-100 in either official version: the binary one and the "python" one.

**Binary** (``cifar-10-batches-bin``, ``cifar-100-binary``; what ``reslab data get`` downloads):
each ``.bin`` file is a run of fixed-size records: the label byte(s), then 3072 pixel bytes, the
1024 red, 1024 green and 1024 blue values of a 32x32 image in row-major order. CIFAR-10 has one
label byte (0..9); CIFAR-100 two, coarse (0..19) then fine (0..99), and reslab uses the fine one.

Damage shows in the sizes: every file must be a whole number of records, and the files must hold
records in the official proportions (CIFAR-10: the same count in all six files; CIFAR-100:
``train.bin`` five times ``test.bin``), so a file cut short anywhere is caught before training.

**Python** (``cifar-10-batches-py``, ``cifar-100-python``; the copy torchvision downloads, so the
one many users already have): each file is a pickled dict whose ``data`` is a uint8 array
[N, 3072] of the same pixel layout, with ``labels`` (CIFAR-10) or ``fine_labels`` (CIFAR-100)
and the class names in ``batches.meta`` / ``meta``. Pickles can run code when loaded, so these
are read by :func:`reslab.data.safe_pickle.load`, which builds nothing but plain data and numpy
arrays from the file's own bytes.

Where both versions are in a data dir, the binary one is read.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from reslab.data import safe_pickle
from reslab.data.arrays import ArrayData
from reslab.data.download import Resource, fetch, safe_extract
from reslab.data.registry import DatasetInfo
from reslab.errors import ReslabError

MIRRORS = ("https://www.cs.toronto.edu/~kriz/",)
IMAGE_SHAPE = (3, 32, 32)
PIXEL_BYTES = 3 * 32 * 32


@dataclass(frozen=True, kw_only=True)
class Release:
    """What both CIFAR releases (binary and python) have: files, archive, folder.

    Attributes:
        splits: The files of each split, in order.
        records: The official number of records in each file.
        meta: The file of class names.
        archive: The official archive, which unpacks to a folder of the files above.
        folder: That folder's name.
    """

    splits: dict[str, tuple[str, ...]]
    records: dict[str, int]
    meta: str
    archive: Resource
    folder: str


@dataclass(frozen=True, kw_only=True)
class CifarFormat(Release):
    """The layout of one CIFAR binary release (its meta file: one class name a line).

    Attributes:
        label_limits: For each label byte, the number of classes it counts (the last is used).
    """

    label_limits: tuple[int, ...]

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
        folder="cifar-10-batches-bin",
    ),
    "cifar100": CifarFormat(
        label_limits=(20, 100),
        splits={"train": ("train.bin",), "test": ("test.bin",)},
        records={"train.bin": 50_000, "test.bin": 10_000},
        meta="fine_label_names.txt",
        archive=Resource("cifar-100-binary.tar.gz", "03b5dce01913d631647c71ecec9e9cb8", MIRRORS),
        folder="cifar-100-binary",
    ),
}


@dataclass(frozen=True, kw_only=True)
class PickleFormat(Release):
    """The layout of one CIFAR python release (its meta file: a pickled dict).

    Attributes:
        label_key: The key of the labels used (CIFAR-100: the fine ones).
        names_key: The meta file's key of the class names.
        num_classes: Number of classes.
    """

    label_key: str
    names_key: str
    num_classes: int


_CIFAR10_PY_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
PICKLE_FORMATS = {
    "cifar10": PickleFormat(
        label_key="labels", names_key="label_names", num_classes=10,
        splits={"train": _CIFAR10_PY_TRAIN, "test": ("test_batch",)},
        records=dict.fromkeys((*_CIFAR10_PY_TRAIN, "test_batch"), 10_000),
        meta="batches.meta",
        archive=Resource("cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a", MIRRORS),
        folder="cifar-10-batches-py",
    ),
    "cifar100": PickleFormat(
        label_key="fine_labels", names_key="fine_label_names", num_classes=100,
        splits={"train": ("train",), "test": ("test",)},
        records={"train": 50_000, "test": 10_000},
        meta="meta",
        archive=Resource("cifar-100-python.tar.gz", "eb9058c3a382ffc7106e4002c42a8d85", MIRRORS),
        folder="cifar-100-python",
    ),
}  # fmt: skip


def release_files(fmt: Release) -> tuple[str, ...]:
    """Every file of a release: its record files, then its meta file."""
    return (*fmt.records, fmt.meta)


def release_in(info: DatasetInfo, folder: Path) -> Release | None:
    """Which release of ``info`` has files in ``folder`` (the binary one first), or None.

    Args:
        info: ``cifar10`` or ``cifar100``.
        folder: A folder.

    Returns:
        The release's format, or None when ``folder`` holds no file of either.
    """
    for fmt in (FORMATS[info.name], PICKLE_FORMATS[info.name]):
        if any((folder / name).is_file() for name in release_files(fmt)):
            return fmt
    return None


def _release_read(info: DatasetInfo, folder: Path) -> Release:
    """The release to read from ``folder``: the one with files there, else the binary one
    (whose checks then name the missing files)."""
    return release_in(info, folder) or FORMATS[info.name]


def find(info: DatasetInfo, root: Path) -> Path | None:
    """The folder holding ``info``'s files under ``root``, or None.

    Args:
        info: ``cifar10`` or ``cifar100``.
        root: The data dir.

    Returns:
        The first folder holding a record or meta file of a release: the binary release's
        folder, the python release's, then ``root`` itself; or None.
    """
    for folder in search_folders(info, root):
        if release_in(info, folder) is not None:
            return folder
    return None


def search_folders(info: DatasetInfo, root: Path) -> list[Path]:
    """Where :func:`find` looks, in order: the binary release's folder, the python one's, then
    ``root`` itself.

    Args:
        info: ``cifar10`` or ``cifar100``.
        root: The data dir.

    Returns:
        The candidate folders.
    """
    return [root / FORMATS[info.name].folder, root / PICKLE_FORMATS[info.name].folder, root]


def check_complete(info: DatasetInfo, folder: Path) -> None:
    """Check that ``folder`` holds every file of its release, each of a plausible size.

    Args:
        info: ``cifar10`` or ``cifar100``.
        folder: The release's folder (:func:`find`).

    Raises:
        ReslabError: A file is missing or (binary release) damaged in size.
    """
    fmt = _release_read(info, folder)
    if isinstance(fmt, CifarFormat):
        record_counts(folder, fmt)
        return
    for name in fmt.records:  # the meta file may be missing (built-in class names)
        if not (folder / name).is_file():
            raise ReslabError(f"{folder / name} is missing")


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
    _check_proportions(folder, fmt, counts)
    return counts


def _check_proportions(folder: Path, fmt: Release, counts: dict[str, int]) -> None:
    """Each file's share of the records must be its official share: one file with fewer
    records than the others imply was cut short."""
    scale = max(counts[name] / fmt.records[name] for name in counts)
    for name, count in counts.items():
        implied = round(scale * fmt.records[name])
        if count < implied:
            raise ReslabError(
                f"{folder / name}: truncated: {count} records, the other files imply {implied}"
            )


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
        ReslabError: The meta file is not readable, or does not hold ``info.num_classes``
            non-empty names.
    """
    fmt = _release_read(info, folder)
    path = folder / fmt.meta
    if not path.is_file():
        return list(info.classes)
    if isinstance(fmt, PickleFormat):
        names = _read_pickle(path).get(fmt.names_key)
        if not isinstance(names, list) or not all(isinstance(name, str | bytes) for name in names):
            raise ReslabError(f"{path}: no list of class names under {fmt.names_key!r}")
        names = [_text(name) for name in names]
    else:
        try:
            names = path.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError:
            raise ReslabError(f"{path}: not UTF-8 text (one class name a line)") from None
    names = [name.strip() for name in names if name.strip()]
    if len(names) != info.num_classes:
        raise ReslabError(f"{path}: {len(names)} class names, expected {info.num_classes}")
    return names


def _read_pickle(path: Path) -> dict:
    """A CIFAR python file as a dict with ``str`` keys (read as Python 2 wrote them: latin-1)."""
    try:
        with open(path, "rb") as handle:
            entry = safe_pickle.load(handle)
    except Exception as exc:  # noqa: BLE001 - a damaged pickle fails in many ways; one message
        raise ReslabError(f"{path}: not a CIFAR python file ({type(exc).__name__}: "
                          f"{exc})") from None
    if not isinstance(entry, dict):
        raise ReslabError(f"{path}: not a CIFAR python file (holds a {type(entry).__name__}, "
                          "not a dict)")
    return {_text(key): value for key, value in entry.items()}


def _text(value: str | bytes) -> str:
    """A key or name as text: the official files give ``str`` (read as latin-1); files written
    by Python 3 code may hold ``bytes``."""
    return value.decode("latin1") if isinstance(value, bytes) else value


def read_batch(path: Path, fmt: PickleFormat) -> tuple[torch.Tensor, torch.Tensor]:
    """Read one file of the python release.

    Args:
        path: The file.
        fmt: Its release's layout.

    Returns:
        ``(images, labels)``: uint8 [N, 3, 32, 32] and int64 [N].

    Raises:
        ReslabError: The file is not a CIFAR python batch, or a label is out of range.
    """
    entry = _read_pickle(path)
    data, labels = entry.get("data"), entry.get(fmt.label_key)
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2
            and data.shape[1] == PIXEL_BYTES):
        raise ReslabError(f"{path}: 'data' is not a uint8 array [N, {PIXEL_BYTES}]")
    not_numbers = f"{path}: {fmt.label_key!r} is not a list of class numbers"
    if not _flat_integers(labels):
        raise ReslabError(not_numbers)
    try:
        labels = torch.tensor(labels, dtype=torch.int64)  # [N]
    except (TypeError, OverflowError):
        raise ReslabError(not_numbers) from None
    if not len(data):
        raise ReslabError(f"{path}: holds no images")
    if labels.shape != (len(data),):
        raise ReslabError(f"{path}: {labels.numel()} labels for {len(data)} images")
    bad = ((labels < 0) | (labels >= fmt.num_classes)).nonzero()
    if len(bad):
        index = int(bad[0])
        raise ReslabError(f"{path}: image {index} has label {int(labels[index])}, out of range "
                          f"0..{fmt.num_classes - 1}")
    images = torch.from_numpy(np.ascontiguousarray(data)).reshape(-1, *IMAGE_SHAPE)  # its own memory
    return images, labels


def _flat_integers(labels: object) -> bool:
    """Whether ``labels`` is a list or tuple of integers or a 1-d integer array.

    Checked before ``torch.tensor``, which sizes its tensor by the nesting: a pickle of lists
    that each hold the one before it twice (a few bytes a level) would claim ``2**levels``
    numbers.

    Args:
        labels: The value under a batch's label key.

    Returns:
        True when it is flat and all integers (bools included, as before).
    """
    if isinstance(labels, np.ndarray):
        return labels.ndim == 1 and labels.dtype.kind in "biu"
    return isinstance(labels, list | tuple) and all(isinstance(label, int) for label in labels)


def load(info: DatasetInfo, folder: Path, split: str) -> ArrayData:
    """Read the official ``train`` or ``test`` split from ``folder``.

    Args:
        info: ``cifar10`` or ``cifar100``.
        folder: The release's folder (binary or python, :func:`find`).
        split: ``"train"`` or ``"test"``.

    Returns:
        The split.

    Raises:
        ReslabError: A file of the release is missing or damaged.
    """
    fmt = _release_read(info, folder)
    check_complete(info, folder)
    if isinstance(fmt, CifarFormat):
        parts = [read_records(folder / name, fmt) for name in fmt.splits[split]]
    else:
        parts = [read_batch(folder / name, fmt) for name in fmt.splits[split]]
        _check_proportions(folder, fmt, {name: len(labels) for name, (_, labels)
                                         in zip(fmt.splits[split], parts)})
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
    folder = root / FORMATS[info.name].folder
    if release_in(info, folder) is None:
        raise ReslabError(f"{archive} did not contain {folder.name}/")
    return folder
