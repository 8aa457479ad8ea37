"""ImageNet (ILSVRC-2012) as users have it on disk.

Supported layout, under ``<data dir>/imagenet/`` or the data dir itself::

    train/<wnid>/*.JPEG              1000 WordNet-id folders (n + 8 digits)
    val/<wnid>/*.JPEG                validation sorted into the same folders, or
    val/ILSVRC2012_val_00000001.JPEG the flat validation folder, labelled by
    LOC_val_solution.csv             the ground truth next to train/ and val/

``LOC_val_solution.csv`` is the ground truth as the Kaggle ILSVRC distribution ships it (header
``ImageId,PredictionString``; the label is the first wnid of the prediction string). The
devkit's ``ILSVRC2012_validation_ground_truth.txt`` is not read: its IDs 1..1000 need the
devkit's ``meta.mat`` (a MATLAB file) to become wnids; sort the flat folder into ``val/<wnid>/``
with any of the usual scripts, or use the CSV. Labels are the index of the wnid in the sorted
training folders (the torchvision ImageFolder order), so train and val always agree; the class
names are the wnids. Non-image files are skipped and counted as in :mod:`reslab.data.folder`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from reslab.data.folder import ImageList, class_folders, scan_tree, split_images
from reslab.data.registry import DatasetInfo, dataset_dirs
from reslab.errors import ReslabError

WNID = re.compile(r"n\d{8}")
VAL_SOLUTION = "LOC_val_solution.csv"
_CSV_HEADER = "ImageId,PredictionString"


def find(info: DatasetInfo, root: Path) -> Path | None:
    """The folder under ``root`` holding ``train/`` or ``val/``, or None.

    Args:
        info: The ``imagenet`` entry.
        root: The data dir.

    Returns:
        The first of :func:`reslab.data.registry.dataset_dirs` with a ``train`` or ``val``
        folder, or None.
    """
    for folder in dataset_dirs(info, root):
        if (folder / "train").is_dir() or (folder / "val").is_dir():
            return folder
    return None


def _check_wnids(folder: Path, names: Sequence[str]) -> None:
    for name in names:
        if not WNID.fullmatch(name):
            raise ReslabError(f"{folder / name}: not a WordNet id folder (n + 8 digits)")


def read_val_solution(path: Path) -> dict[str, str]:
    """Read ``LOC_val_solution.csv``: image id (file name without extension) -> wnid.

    Args:
        path: The CSV file.

    Returns:
        Image id to the first wnid of its row (blank lines skipped).

    Raises:
        ReslabError: A wrong header or a row without a wnid (named by line number).
    """
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()  # -sig: a BOM is no header
    except UnicodeDecodeError:
        raise ReslabError(f"{path}: not UTF-8 text (a CSV file)") from None
    if not lines or lines[0].strip() != _CSV_HEADER:
        raise ReslabError(f"{path}: first line must be {_CSV_HEADER!r}")
    labels = {}
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        image_id, _, prediction = line.partition(",")
        tokens = prediction.split()
        if not tokens or not WNID.fullmatch(tokens[0]):
            raise ReslabError(f"{path}:{number}: no wnid in {line.strip()!r}")
        labels[image_id.strip()] = tokens[0]
    return labels


def _scan_flat_val(base: Path, classes: Sequence[str] | None) -> ImageList:
    val_dir, csv = base / "val", base / VAL_SOLUTION
    if not csv.is_file():
        raise ReslabError(f"{val_dir} is a flat folder but {csv} (its ground truth) is missing")
    truth = read_val_solution(csv)
    classes = tuple(classes if classes is not None else sorted(set(truth.values())))
    label_of = {wnid: label for label, wnid in enumerate(classes)}
    images, skipped = split_images(sorted(p for p in val_dir.iterdir() if p.is_file()))
    samples = []
    for path in images:
        wnid = truth.get(path.stem)
        if wnid is None:
            raise ReslabError(f"{path}: no ground truth in {csv}")
        if wnid not in label_of:
            raise ReslabError(f"{csv}: {path.stem} is labelled {wnid}, not a training class")
        samples.append((str(path), label_of[wnid]))
    if not samples:
        raise ReslabError(f"{val_dir}: no images")
    return ImageList(val_dir, classes, tuple(samples), tuple(skipped))


def scan(info: DatasetInfo, root: Path, split: str) -> ImageList:
    """List the images of ImageNet's ``train`` or ``val`` split.

    Args:
        info: The ``imagenet`` entry.
        root: The data dir.
        split: ``"train"`` or ``"val"``.

    Returns:
        The images, labelled by wnid in the sorted order of ``train/``'s folders (of ``val/``'s,
        or of the ground truth's, when there is no ``train/``).

    Raises:
        ReslabError: The layout is missing or wrong (see the module docstring).
    """
    base = find(info, root)
    if base is None:
        raise ReslabError(f"no ImageNet under {root} (expected {root}/imagenet/train/<wnid>/)")
    classes = None
    if (base / "train").is_dir():
        classes = [p.name for p in class_folders(base / "train")]
        _check_wnids(base / "train", classes)
    folder = base / split
    if not folder.is_dir():
        raise ReslabError(f"{folder} does not exist")
    if split == "val" and not any(p.is_dir() and not p.name.startswith(".")
                                  for p in folder.iterdir()):  # hidden: .ipynb_checkpoints, ...
        return _scan_flat_val(base, classes)
    _check_wnids(folder, [p.name for p in class_folders(folder)])
    return scan_tree(folder, classes=classes)
