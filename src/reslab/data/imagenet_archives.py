"""ImageNet from the official ILSVRC-2012 archives: ``reslab data get imagenet --archives DIR``.

ImageNet cannot be downloaded without an account, so users fetch its archives themselves:

    ILSVRC2012_img_train.tar       138 GB: one ``<wnid>.tar`` of JPEGs per class
    ILSVRC2012_img_val.tar         6.3 GB: the 50,000 validation JPEGs, flat
    ILSVRC2012_devkit_t12.tar.gz   the validation ground truth (see :mod:`reslab.data.imagenet`)

:func:`prepare` checks each archive's MD5 against the official one and unpacks it into the
layout :mod:`reslab.data.imagenet` reads: ``imagenet/train/<wnid>/`` and, sorted by the devkit's
ground truth, ``imagenet/val/<wnid>/``. Nothing half-written looks complete: a split is built
in ``.train.partial`` / ``.val.partial`` and renamed when whole, and each training class in a
hidden folder renamed when whole, so a rerun after an interruption skips the finished classes.
Members are checked as :func:`reslab.data.download.safe_extract` checks them: only regular
files with plain names are written.
"""

from __future__ import annotations

import os
import shutil
import tarfile
from pathlib import Path, PurePosixPath

from reslab.data.base import progress
from reslab.data.download import ARCHIVE_ERRORS, copy_member, md5_file
from reslab.data.imagenet import DEVKIT_ARCHIVE, WNID, find, read_devkit
from reslab.data.registry import DATASETS, data_root
from reslab.errors import ReslabError

TRAIN_ARCHIVE = "ILSVRC2012_img_train.tar"
VAL_ARCHIVE = "ILSVRC2012_img_val.tar"
OFFICIAL_MD5 = {
    TRAIN_ARCHIVE: "1d675b47d978889d74fa0da5fadfb00e",
    VAL_ARCHIVE: "29b22e2961454d5413ddabcf34fc5622",
    DEVKIT_ARCHIVE: "fa75699e90414af021442c21a62c3abf",
}


def _plain_name(archive: str, member: tarfile.TarInfo) -> str:
    """The member's file name, or :class:`ReslabError` unless it is a regular file with a
    plain name (no folder, no ``..``, not hidden)."""
    name = member.name
    path = PurePosixPath(name)
    if not member.isfile() or len(path.parts) != 1 or name.startswith((".", "\\")):
        raise ReslabError(f"{archive}: member {name!r} is not a plain file; not extracted")
    return name


def _check_md5(archive: Path) -> None:
    got = md5_file(archive, show_progress=True)
    if got != OFFICIAL_MD5[archive.name]:
        raise ReslabError(
            f"{archive}: MD5 {got} is not the official {OFFICIAL_MD5[archive.name]} (a damaged "
            "download or another release; --skip-md5 to unpack it anyway)"
        )


def unpack_train(archive: Path, dest: Path) -> int:
    """Unpack ``ILSVRC2012_img_train.tar`` into ``dest`` (``train/<wnid>/*.JPEG``).

    Args:
        archive: The official training archive (a tar of one ``<wnid>.tar`` per class).
        dest: The ``train`` folder to create; must not exist.

    Returns:
        The number of images unpacked in this call (classes finished before are skipped).

    Raises:
        ReslabError: A member that is not ``<wnid>.tar`` or not a plain file, or a damaged
            archive.
    """
    staging = dest.with_name(f".{dest.name}.partial")
    staging.mkdir(parents=True, exist_ok=True)
    images = 0
    try:
        with tarfile.open(archive, "r:") as outer:
            classes = outer.getmembers()
            for member in classes:
                name = _plain_name(archive.name, member)
                if not (name.endswith(".tar") and WNID.fullmatch(name[:-4])):
                    raise ReslabError(f"{archive}: member {name!r} is not a <wnid>.tar")
            for member in progress(classes, desc="train", unit="class"):
                wnid = member.name[:-4]
                if (staging / wnid).is_dir():
                    continue  # unpacked before an interruption
                partial = staging / f".{wnid}"
                shutil.rmtree(partial, ignore_errors=True)
                partial.mkdir()
                with tarfile.open(fileobj=outer.extractfile(member), mode="r|") as inner:
                    for image in inner:
                        name = _plain_name(f"{archive.name}: {member.name}", image)
                        copy_member(inner, image, partial / name)
                        images += 1
                os.replace(partial, staging / wnid)
    except ARCHIVE_ERRORS as exc:
        raise ReslabError(f"{archive}: cannot unpack ({exc}); run the command again to "
                          "go on from the last whole class") from None  # fmt: skip
    os.replace(staging, dest)
    return images


def unpack_val(archive: Path, labels: dict[str, str], dest: Path) -> int:
    """Unpack ``ILSVRC2012_img_val.tar`` into ``dest``, sorted into ``<wnid>/`` folders.

    Args:
        archive: The official validation archive (flat JPEGs).
        labels: Image id (file name without extension) to wnid, from :func:`read_devkit`.
        dest: The ``val`` folder to create; must not exist.

    Returns:
        The number of images unpacked.

    Raises:
        ReslabError: An image without ground truth or twice in the archive, a count that
            differs from the ground truth's, a member that is not a plain file, or a damaged
            archive.
    """
    staging = dest.with_name(f".{dest.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    images = 0
    try:
        with tarfile.open(archive, "r|") as tar, progress(
            total=len(labels), desc="val", unit="image"
        ) as bar:
            for member in tar:
                name = _plain_name(archive.name, member)
                wnid = labels.get(PurePosixPath(name).stem)
                if wnid is None:
                    raise ReslabError(f"{archive}: {name} has no ground truth in the devkit")
                if (staging / wnid / name).exists():  # would hide a missing image in the count
                    raise ReslabError(f"{archive}: {name} is in the archive twice")
                (staging / wnid).mkdir(exist_ok=True)
                copy_member(tar, member, staging / wnid / name)
                images += 1
                bar.update()
    except ARCHIVE_ERRORS as exc:
        raise ReslabError(f"{archive}: cannot unpack ({exc})") from None
    if images != len(labels):
        raise ReslabError(f"{archive}: {images} images, the devkit's ground truth has "
                          f"{len(labels)}; not unpacked")  # fmt: skip
    os.replace(staging, dest)
    return images


def prepare(archives: str | os.PathLike, root: str | os.PathLike | None, *,
            check_md5: bool = True) -> tuple[Path, list[str]]:
    """Build ImageNet's folders from the official archives, skipping splits already there.

    Args:
        archives: The folder holding ``ILSVRC2012_img_train.tar`` and/or
            ``ILSVRC2012_img_val.tar`` with ``ILSVRC2012_devkit_t12.tar.gz``.
        root: The data dir (created if missing); None for the default. The splits go where
            the other commands look for ImageNet (an existing ``imagenet/`` folder, else
            ``<data dir>/imagenet/``).
        check_md5: Compare each archive to unpack (and the devkit, for val) with its
            official MD5. These checks and the reading of the devkit come before any
            unpacking, so a bad file stops the command before hours of work.

    Returns:
        The ImageNet folder and one line per split on what was done.

    Raises:
        ReslabError: The folder holds neither image archive, the validation archive to unpack
            comes without the devkit, an MD5 differs, the devkit cannot be read, or an archive
            cannot be unpacked.
    """
    archives = Path(archives)
    if not archives.is_dir():
        raise ReslabError(f"--archives {archives}: not a folder")
    train, val, devkit = (archives / name for name in (TRAIN_ARCHIVE, VAL_ARCHIVE, DEVKIT_ARCHIVE))
    if not train.is_file() and not val.is_file():
        raise ReslabError(f"{archives} holds neither {TRAIN_ARCHIVE} nor {VAL_ARCHIVE}")
    info = DATASETS["imagenet"]
    base = find(info, data_root(root, create=True)) or data_root(root) / info.folder
    done, todo = [], {}
    for split, archive in (("train", train), ("val", val)):
        if not archive.is_file():
            continue
        if (base / split).exists():
            done.append(f"{split}: {base / split} is already there (remove it to unpack again)")
        else:
            todo[split] = archive
    if "val" in todo and not devkit.is_file():
        raise ReslabError(f"{archives}: {VAL_ARCHIVE} needs {DEVKIT_ARCHIVE} (its ground truth) "
                          "beside it")  # fmt: skip
    # Everything is checked before anything is unpacked (the training archive takes hours):
    # the small files first.
    if check_md5:
        for archive in ([devkit] if "val" in todo else []) + sorted(todo.values(), key=_size):
            _check_md5(archive)
    labels = read_devkit(devkit) if "val" in todo else {}
    for split, archive in todo.items():
        count = (unpack_train(archive, base / split) if split == "train"
                 else unpack_val(archive, labels, base / split))  # fmt: skip
        done.append(f"{split}: {count:,} images unpacked into {base / split}")
    return base, done


def _size(path: Path) -> int:
    return path.stat().st_size
