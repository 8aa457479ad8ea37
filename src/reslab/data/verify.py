"""``reslab data verify``: read every file of a data set and compare it with the official release.

Small data sets are decoded completely (which checks sizes, magic numbers, dims and label
ranges) and their counts compared with the official ones. Their content is compared with the
official release by MD5: each (Fashion-)MNIST file's decoded content (so a raw or recompressed
copy, such as Debian's, is checked as fully as the official ``.gz``); for CIFAR, whose release
publishes only the archive's MD5, the archive if it is still in the data dir (and then each
unpacked file against its member in the archive), else only the records' structure and counts,
as the report says. Image trees are scanned and every image decoded; a file named as an image
that is not a readable one is reported as corrupt.
"""

from __future__ import annotations

import os
import tarfile
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from reslab.data import cifar, idx, imagenet
from reslab.data.base import progress
from reslab.data.datasets import ARRAY_FORMATS, OFFICIAL_SPLITS, find_files, scan_images
from reslab.data.download import md5_file, md5_stream
from reslab.data.folder import FORMATS, damaged_images, decode_file
from reslab.data.registry import DatasetInfo, data_root, dataset_info
from reslab.errors import ReslabError

FULL_LISTING = 100  # list every class's count up to this many classes


def class_counts(labels: Sequence[int], classes: Sequence[str]) -> str:
    """Images per class, every class when there are few, else the smallest and largest.

    Args:
        labels: The label of each image.
        classes: Class names by label.

    Returns:
        ``name count`` for every class, comma-separated, when there are at most
        :data:`FULL_LISTING` classes; else the smallest and largest class with their counts.
    """
    counts = Counter(labels)
    per_class = [(classes[label], counts.get(label, 0)) for label in range(len(classes))]
    if len(per_class) <= FULL_LISTING:
        return ", ".join(f"{name} {count}" for name, count in per_class)
    low, high = min(per_class, key=lambda p: p[1]), max(per_class, key=lambda p: p[1])
    return f"min {low[1]} ({low[0]}), max {high[1]} ({high[0]})"


def _check_count(info: DatasetInfo, where: Path, split: str, count: int) -> None:
    official = info.counts.get(split)
    if official is not None and count != official:
        raise ReslabError(
            f"{where}: {split} has {count} images, the official {info.name} has {official}"
        )


def _compare_with_archive(archive: Path, top: str, folder: Path, names: Sequence[str]) -> None:
    """Check that each file ``names`` in ``folder`` has the bytes of its member ``top/<name>``
    in ``archive``, so that the MD5 of the archive vouches for them (``folder`` may have
    another name than the archive's ``top``)."""
    wanted = {f"{top}/{name}": name for name in names}
    seen = set()
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                name = wanted.get(member.name.removeprefix("./"))
                if name is None or not member.isfile():
                    continue
                seen.add(name)
                path = folder / name
                with tar.extractfile(member) as packed:
                    if not path.is_file() or md5_stream(packed) != md5_file(path):
                        raise ReslabError(f"{path} differs from {member.name} in the official "
                                          f"archive {archive}")
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ReslabError(f"{archive}: cannot be read ({exc})") from None
    if missing := sorted(set(names) - seen):
        raise ReslabError(f"{archive} has no {top}/{missing[0]}: it is not the release of "
                          f"{folder}")


def _checksums(info: DatasetInfo, folder: Path, root: Path) -> list[str]:
    if info.name in cifar.FORMATS:
        release = cifar.release_in(info, folder)
        resource = release.archive
        path = next((p for p in (root / resource.filename, folder.parent / resource.filename)
                     if p.is_file()), None)  # fmt: skip
        if path is None:
            return [f"{resource.filename}: not in the data dir, so the content is not compared "
                    "with the official release (only the archive has an official MD5); the "
                    "records' structure and counts are checked"]
        got = md5_file(path)
        if got != resource.md5:
            raise ReslabError(f"{path}: MD5 {got} is not the official {resource.md5}")
        names = cifar.release_files(release)
        _compare_with_archive(path, release.folder, folder, names)
        return [f"{path.name}: MD5 {got} official; the {len(names)} files in {folder} are the "
                "archive's"]
    lines = []
    for (path, content), resource in zip(idx.check_content(info, folder),
                                         idx.RESOURCES[info.name], strict=True):
        if path.name != resource.filename:
            kind = "raw file"
        elif md5_file(path) == resource.md5:
            kind = f".gz MD5 {resource.md5} official"
        else:
            kind = "recompressed .gz"
        lines.append(f"{path.name}: decoded MD5 {content} official ({kind})")
    return lines


def _verify_arrays(info: DatasetInfo, root: str | os.PathLike | None) -> list[str]:
    folder = find_files(info, root)
    lines = [f"{info.name} in {folder}", *_checksums(info, folder, data_root(root))]
    for split in OFFICIAL_SPLITS:
        data = ARRAY_FORMATS[info.name].load(info, folder, split)
        _check_count(info, folder, split, len(data))
        lines.append(
            f"{split}: {len(data)} images {'x'.join(map(str, data.images.shape[1:]))}; "
            f"per class: {class_counts(data.labels.tolist(), data.classes)}"
        )
    return lines


def _verify_images(info: DatasetInfo, root: Path) -> list[str]:
    base = imagenet.find(info, root) if info.name == "imagenet" else root
    splits = [s for s in info.splits if base is not None and (base / s).is_dir()]
    if not splits:
        raise ReslabError(f"{root}: none of the {info.name} splits {', '.join(info.splits)}")
    lines = [f"{info.name} in {base}"]
    for split in splits:
        images = scan_images(info, root, split)  # skipped files are reported below, not warned
        if damaged := damaged_images(images.skipped):
            raise ReslabError(f"{damaged[0]}: corrupt or unreadable image (not a {FORMATS} "
                              f"file, despite its name); {base / split} has "
                              f"{len(damaged)} such file(s)")
        paths = [path for path, _ in images.samples]
        with ThreadPoolExecutor(os.cpu_count()) as pool:
            for _ in progress(pool.map(decode_file, paths), total=len(paths), desc=split):
                pass  # decode_file raises on the first damaged image
        _check_count(info, base / split, split, len(paths))
        if info.num_classes and len(images.classes) != info.num_classes:
            raise ReslabError(
                f"{base / split}: {len(images.classes)} classes, "
                f"the official {info.name} has {info.num_classes}"
            )
        lines.append(
            f"{split}: {len(paths)} images decoded, {len(images.classes)} classes, "
            f"{len(images.skipped)} non-image files skipped; "
            f"per class: {class_counts([label for _, label in images.samples], images.classes)}"
        )
    return lines


def verify(name: str, root: str | os.PathLike | None) -> list[str]:
    """Check a data set against its official release.

    Args:
        name: A key of :data:`reslab.data.DATASETS`.
        root: The data dir (for ``folder``: the tree).

    Returns:
        Report lines: where the files are, checksums, counts and per-class counts per split.

    Raises:
        ReslabError: The first problem found, naming the file.
    """
    info = dataset_info(name)
    return _verify_arrays(info, root) if info.small else _verify_images(info, data_root(root))
