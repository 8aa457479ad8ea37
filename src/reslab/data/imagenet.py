"""ImageNet (ILSVRC-2012) as users have it on disk.

Supported layout, under ``<data dir>/imagenet/`` or the data dir itself::

    train/<wnid>/*.JPEG              1000 WordNet-id folders (n + 8 digits)
    val/<wnid>/*.JPEG                validation sorted into the same folders, or
    val/ILSVRC2012_val_00000001.JPEG the flat validation folder, labelled by the first of
    LOC_val_solution.csv             the ground truth as Kaggle's ILSVRC release ships it, or
    ILSVRC2012_devkit_t12.tar.gz     the official devkit (archive, or the folder it unpacks to)

``LOC_val_solution.csv`` has the header ``ImageId,PredictionString``; the label is the first
wnid of the prediction string. The devkit's ``data/ILSVRC2012_validation_ground_truth.txt``
gives each validation image (in file-number order) an ILSVRC2012_ID from 1 to 1000, which
``data/meta.mat`` (a MATLAB file, read by :mod:`reslab.data.matfile`) maps to a wnid: the
``synsets`` entry with that ID and no children. ``reslab data get imagenet --archives DIR``
(:mod:`reslab.data.imagenet_archives`) builds the sorted layout from the official archives.
Labels are the index of the wnid in the sorted training folders (the torchvision ImageFolder
order), so train and val always agree; the class names are the wnids. Non-image files are
skipped and counted as in :mod:`reslab.data.folder`.
"""

from __future__ import annotations

import re
import tarfile
from collections.abc import Sequence
from pathlib import Path

from reslab.data import matfile
from reslab.data.download import ARCHIVE_ERRORS
from reslab.data.folder import ImageList, class_folders, scan_tree, split_images
from reslab.data.registry import DatasetInfo, dataset_dirs
from reslab.errors import ReslabError

WNID = re.compile(r"n\d{8}")
VAL_SOLUTION = "LOC_val_solution.csv"
_CSV_HEADER = "ImageId,PredictionString"
DEVKIT = "ILSVRC2012_devkit_t12"  # the folder the devkit archive unpacks to
DEVKIT_ARCHIVE = f"{DEVKIT}.tar.gz"
_DEVKIT_META = "data/meta.mat"
_DEVKIT_TRUTH = "data/ILSVRC2012_validation_ground_truth.txt"
NUM_CLASSES = 1000  # ILSVRC2012_IDs 1..1000 are the classification classes


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


def _devkit_files(devkit: Path) -> tuple[bytes, bytes]:
    """``meta.mat`` and the validation ground truth from the devkit archive or folder."""
    if devkit.is_dir():
        try:
            return (devkit / _DEVKIT_META).read_bytes(), (devkit / _DEVKIT_TRUTH).read_bytes()
        except OSError as exc:
            raise ReslabError(f"{devkit}: not an ILSVRC-2012 devkit ({exc})") from None
    members = {f"{DEVKIT}/{_DEVKIT_META}": b"", f"{DEVKIT}/{_DEVKIT_TRUTH}": b""}
    try:
        with tarfile.open(devkit, "r:*") as tar:
            for name in members:
                try:
                    member = tar.getmember(name)
                except KeyError:
                    raise ReslabError(f"{devkit}: no {name} (not an ILSVRC-2012 devkit)") from None
                handle = tar.extractfile(member)
                if handle is None:
                    raise ReslabError(f"{devkit}: {name} is not a file")
                members[name] = handle.read()
    except ARCHIVE_ERRORS as exc:
        raise ReslabError(f"{devkit}: cannot read the archive ({exc})") from None
    return tuple(members.values())


def _class_wnids(synsets: object, source: str) -> dict[int, str]:
    """ILSVRC2012_ID -> wnid of the classification classes in meta.mat's ``synsets``."""
    if not isinstance(synsets, list) or not all(isinstance(s, dict) for s in synsets):
        raise ReslabError(f"{source}: no 'synsets' struct array")
    wnids = {}
    for synset in synsets:
        try:
            number, wnid, children = synset["ILSVRC2012_ID"], synset["WNID"], synset["num_children"]
        except KeyError as exc:
            raise ReslabError(f"{source}: synsets have no field {exc}") from None
        if children == 0 and isinstance(number, (int, float)) and 1 <= number <= NUM_CLASSES:
            if not isinstance(wnid, str) or not WNID.fullmatch(wnid):
                raise ReslabError(f"{source}: synset {number:g} has WNID {wnid!r}")
            wnids[int(number)] = wnid
    if not wnids:
        raise ReslabError(f"{source}: no classification synsets (IDs 1-{NUM_CLASSES}, no children)")
    return wnids


def read_devkit(devkit: str | Path) -> dict[str, str]:
    """Read the devkit's validation ground truth: image id (file name without extension) -> wnid.

    Args:
        devkit: ``ILSVRC2012_devkit_t12.tar.gz`` or the ``ILSVRC2012_devkit_t12`` folder it
            unpacks to.

    Returns:
        ``ILSVRC2012_val_00000001`` ... to the wnid of its ground-truth class.

    Raises:
        ReslabError: A missing member, a damaged ``meta.mat``, or a ground-truth line that is
            not the ID of a class (named by line number).
    """
    devkit = Path(devkit)
    meta, truth = _devkit_files(devkit)
    source = f"{devkit}: {_DEVKIT_META}"
    wnid_of = _class_wnids(matfile.parse(meta, source).get("synsets"), source)
    labels = {}
    for number, line in enumerate(truth.decode("latin-1").splitlines(), start=1):
        token = line.strip()
        if not token.isdigit() or int(token) not in wnid_of:
            raise ReslabError(f"{devkit}: {_DEVKIT_TRUTH}:{number}: {token!r} is not the "
                              f"ILSVRC2012_ID of a class (1-{NUM_CLASSES})")  # fmt: skip
        labels[f"ILSVRC2012_val_{number:08d}"] = wnid_of[int(token)]
    if not labels:
        raise ReslabError(f"{devkit}: {_DEVKIT_TRUTH} is empty")
    return labels


def val_ground_truth(base: Path) -> tuple[dict[str, str], Path]:
    """The ground truth for a flat ``val/`` folder: Kaggle's CSV, else the devkit.

    Args:
        base: The folder holding ``val/``.

    Returns:
        Image id to wnid, and the file it was read from.

    Raises:
        ReslabError: Neither is there, or the one found cannot be read.
    """
    for candidate, read in ((base / VAL_SOLUTION, read_val_solution),
                            (base / DEVKIT_ARCHIVE, read_devkit), (base / DEVKIT, read_devkit)):
        if candidate.exists():
            return read(candidate), candidate
    raise ReslabError(f"{base / 'val'} is a flat folder but its ground truth is missing: put "
                      f"{VAL_SOLUTION} or {DEVKIT_ARCHIVE} in {base}")  # fmt: skip


def _scan_flat_val(base: Path, classes: Sequence[str] | None) -> ImageList:
    val_dir = base / "val"
    truth, source = val_ground_truth(base)
    classes = tuple(classes if classes is not None else sorted(set(truth.values())))
    label_of = {wnid: label for label, wnid in enumerate(classes)}
    images, skipped = split_images(sorted(p for p in val_dir.iterdir() if p.is_file()))
    samples = []
    for path in images:
        wnid = truth.get(path.stem)
        if wnid is None:
            raise ReslabError(f"{path}: no ground truth in {source}")
        if wnid not in label_of:
            raise ReslabError(f"{source}: {path.stem} is labelled {wnid}, not a training class")
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
