"""Finding, downloading and opening the data sets by name (the API the trainer calls)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from torch.utils.data import Dataset

from reslab.data import cifar, idx, imagenet
from reslab.data.arrays import ArrayData, ArrayDataset, select_holdout
from reslab.data.download import check_mirrors
from reslab.data.folder import (
    ImageFolderDataset,
    ImageList,
    class_folders,
    scan_tree,
    warn_skipped,
)
from reslab.data.registry import (
    DatasetInfo,
    check_split,
    data_dir_named,
    data_root,
    dataset_info,
)
from reslab.errors import ReslabError

# The reader of each small data set's official format.
ARRAY_FORMATS: dict[str, ModuleType] = {
    "cifar10": cifar, "cifar100": cifar, "fashion-mnist": idx, "mnist": idx,
}  # fmt: skip
OFFICIAL_SPLITS = ("train", "test")


def locate(info: DatasetInfo, root: str | os.PathLike | None) -> Path | None:
    """The folder with a small data set's files: under the data dir; when the user named no
    data dir, also a system-wide copy (Debian's Fashion-MNIST, :func:`reslab.data.idx.system_copy`).

    Args:
        info: A small data set (one of :data:`ARRAY_FORMATS`).
        root: The data dir the user named, or None.

    Returns:
        The folder, or None.

    Raises:
        ReslabError: A data dir the user named does not exist.
    """
    folder = ARRAY_FORMATS[info.name].find(info, data_root(root))
    if folder is None and not data_dir_named(root):
        folder = idx.system_copy(info)
    return folder


def find_files(info: DatasetInfo, root: str | os.PathLike | None) -> Path:
    """The folder with a small data set's files (:func:`locate`).

    Args:
        info: A small data set (one of :data:`ARRAY_FORMATS`).
        root: The data dir the user named, or None.

    Returns:
        The folder.

    Raises:
        ReslabError: None found (the message says how to get them).
    """
    folder = locate(info, root)
    if folder is None:
        base = data_root(root)
        system = idx.system_copy(info)
        hint = (f"; a system-wide copy is in {system}: use --data-dir {system}, or "
                f"`reslab data get {info.name} --data-dir {base}` to copy it there"
                if system is not None else
                f"; run `reslab data get {info.name} --data-dir {base}`")
        *folders, last = ARRAY_FORMATS[info.name].search_folders(info, base)
        searched = f"{', '.join(map(str, folders))} or {last}" if folders else str(last)
        raise ReslabError(f"{info.name}: no files in {searched}{hint}")
    return folder


def _not_downloadable(info: DatasetInfo) -> ReslabError:
    return ReslabError(
        f"{info.name} cannot be downloaded by reslab; place its files under the data dir "
        f"({info.description})"
    )


def download(
    name: str, root: str | os.PathLike | None, *, mirrors: tuple[str, ...] | None = None
) -> Path:
    """Make a small data set's files available, downloading them if they are nowhere yet.

    Args:
        name: A small data set (ImageNet and folder trees cannot be downloaded).
        root: The data dir (created if missing); None for the default.
        mirrors: Base URLs to try instead of the official ones (e.g. ``file:///srv/mirror/``).

    Returns:
        The folder with the files. Without a named data dir, that may be a system-wide copy
        that was already there; with one, such a copy is copied into it (content checked)
        rather than downloaded, unless ``mirrors`` are given.

    Raises:
        ReslabError: The data set cannot be downloaded, or no mirror gave the official files.
    """
    info = dataset_info(name)
    if not info.small:
        raise _not_downloadable(info)
    check_mirrors(mirrors)
    return _fetch(info, root, mirrors=mirrors)


def _fetch(info: DatasetInfo, root: str | os.PathLike | None, *,
           mirrors: tuple[str, ...] | None = None) -> Path:
    """:func:`download` for a small data set, the mirrors checked."""
    base = data_root(root, create=True)
    found = locate(info, root)
    if found is not None:
        try:
            ARRAY_FORMATS[info.name].check_complete(info, found)
        except ReslabError as exc:
            raise ReslabError(f"{info.name}: {found} holds an incomplete or damaged copy ({exc}); "
                              "move it away and run this command again") from None
        return found
    system = idx.system_copy(info)
    if system is not None and not mirrors:
        return idx.copy_release(info, system, base)
    return ARRAY_FORMATS[info.name].download(info, base, mirrors=mirrors)


def load_arrays(
    name: str, root: str | os.PathLike | None, split: str, *, download: bool = False
) -> ArrayData:
    """Read one split of a small data set into memory.

    Args:
        name: ``cifar10``, ``cifar100``, ``fashion-mnist`` or ``mnist``.
        root: The data dir; None for ``$RESLAB_DATA_DIR`` or ``./data``.
        split: ``train``, ``test``, or the paper's fixed hold-out split (``train45k`` /
            ``val5k`` for CIFAR, ``train55k`` / ``val5k`` for (Fashion-)MNIST; see
            :func:`reslab.data.arrays.holdout_indices`).
        download: Fetch the official files (MD5 checked) when they are not found.

    Returns:
        The split: images uint8 [N, C, H, W] on the CPU, labels int64 [N].

    Raises:
        ReslabError: Unknown name or split, a missing data dir or files, damaged files.
    """
    info = dataset_info(name)
    if not info.small:
        raise ReslabError(f"{name} is read image by image; use reslab.data.get_dataset")
    check_split(info, split)
    folder = _fetch(info, root) if download else find_files(info, root)
    official = ARRAY_FORMATS[name].load(info, folder, _official(split))
    if split in OFFICIAL_SPLITS:
        return official
    return select_holdout(official, split, official_size=info.counts["train"])


def _official(split: str) -> str:
    """The official split a hold-out split is cut from."""
    return split if split in OFFICIAL_SPLITS else "train"


def scan_folder_split(root: Path, split: str) -> ImageList:
    """Scan ``root/<split>/<class>/`` with the label order of ``root/train/`` when it exists.

    Args:
        root: The tree's root (holding ``train/``, ``val/``, ...).
        split: The split's folder name.

    Returns:
        The split's images; labels follow ``root/train``'s sorted class folders when it exists
        (and ``split`` is not ``train``), else the split's own sorted class folders.
    """
    train = root / "train"
    classes = None
    if split != "train" and train.is_dir():
        classes = [p.name for p in class_folders(train)]
    return scan_tree(root / split, classes=classes)


def get_dataset(
    name: str,
    root: str | os.PathLike | None,
    split: str,
    *,
    download: bool = False,
    transform: Callable[[Any], Any] | None = None,
    seed: int = 0,
) -> Dataset:
    """A map-style data set yielding ``(transform(image), label)``.

    Images are uint8 [C, H, W] tensors before the transform (decoded by
    :func:`reslab.data.folder.decode_file` for ``imagenet`` and ``folder``). Random transforms draw
    from (seed, epoch, index): call the data set's ``set_epoch`` at each epoch.

    Args:
        name: A key of :data:`reslab.data.DATASETS`.
        root: The data dir (for ``folder``: the tree with ``<split>/<class>/`` folders).
        split: One of the data set's splits.
        download: Fetch missing files (small data sets only).
        transform: E.g. ``reslab.data.pipeline("cifar").train``.
        seed: The run's data seed.

    Returns:
        The data set; it has ``classes`` (names by label).

    Raises:
        ReslabError: Unknown name or split, missing or damaged files.
    """
    info = dataset_info(name)
    check_split(info, split)
    if info.small:
        data = load_arrays(name, root, split, download=download)
        return ArrayDataset(data, transform=transform, seed=seed)
    if download:
        raise _not_downloadable(info)
    images = scan_images(info, data_root(root), split)
    warn_skipped(images)
    return ImageFolderDataset(images, transform=transform, seed=seed)


def scan_images(info: DatasetInfo, root: Path, split: str) -> ImageList:
    """List an image-folder data set's split, without warning about the files it skips.

    Args:
        info: ``imagenet`` or ``folder``.
        root: The data dir (for ``folder``: the tree).
        split: One of the data set's splits.

    Returns:
        The split's images and skipped files.

    Raises:
        ReslabError: The layout is missing or wrong.
    """
    if info.name == "imagenet":
        return imagenet.scan(info, root, split)
    return scan_folder_split(root, split)
