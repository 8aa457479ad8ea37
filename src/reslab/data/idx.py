"""MNIST and Fashion-MNIST in the IDX format, gzip-compressed or raw.

An IDX file is a 4-byte big-endian magic number ``0x000008DD`` (``08``: unsigned bytes, ``DD``:
the number of dimensions), then each dimension as a big-endian uint32, then the values in
row-major order: images are ``0x00000803`` (N x 28 x 28), labels ``0x00000801`` (N).

Files are found in ``<data dir>/<name>/``, then in the data dir itself; when the user names no
data dir, Fashion-MNIST is also found in ``/usr/share/datasets/fashion-mnist`` (Debian's
``dataset-fashion-mnist``, :func:`system_copy`). Debian recompresses the ``.gz`` files, so their
MD5 differs from the official one, but the decoded files are the official ones
(:data:`CONTENT_MD5`, which ``reslab data verify`` checks). Every load checks the structure:
magic, dims against the file size, equal image and label counts, labels 0..9.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import math
import struct
import zlib
from pathlib import Path

import torch

from reslab.data.arrays import ArrayData
from reslab.data.download import Resource, fetch
from reslab.data.registry import DatasetInfo
from reslab.data.registry import dataset_dirs as search_folders  # where find() looks
from reslab.errors import ReslabError
from reslab.io import atomic_save_bytes

IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801
IMAGE_SIZE = (28, 28)
NUM_CLASSES = 10
GZIP_MAGIC = b"\x1f\x8b"
MAX_DECODED = 1 << 30  # bytes a gzip-compressed IDX file may decode to: 20x the official largest
SYSTEM_DIRS = {"fashion-mnist": Path("/usr/share/datasets/fashion-mnist")}

# Official file names per split: (images, labels). On disk either name or name + ".gz".
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
FILE_NAMES = (*FILES["train"], *FILES["test"])  # the order of the checksum tables below
_MIRRORS = {
    "mnist": ("https://ossci-datasets.s3.amazonaws.com/mnist/",
              "http://yann.lecun.com/exdb/mnist/"),
    "fashion-mnist": ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
}
# Official MD5s of the .gz files, in FILE_NAMES order (as in torchvision/datasets/mnist.py).
_MD5 = {
    "mnist": (
        "f68b3c2dcbeaaa9fbdd348bbdeb94873", "d53e105ee54ea40749a09fcbcd1e9432",
        "9fb629c4189551a2d022fa330f9573f3", "ec29112dd5afa0611ce80d1b7f02629c",
    ),
    "fashion-mnist": (
        "8d4fb7e6c68d591d4c3dfef9ec88bf0d", "25c81989df183df01b3e8a0aad5dffbe",
        "bef4ecab320f06d8554ea6380940ec79", "bb300cfdad3c16e7a12a480ee83cd310",
    ),
}  # fmt: skip
# MD5s of the decoded (uncompressed) files of the official release, in FILE_NAMES order: the same
# for the official .gz files, raw copies and recompressed ones such as Debian's.
CONTENT_MD5 = {
    "mnist": (
        "6bbc9ace898e44ae57da46a324031adb", "a25bea736e30d166cdddb491f175f624",
        "2646ac647ad5339dbf082846283269ea", "27ae3e4e09519cfbb04c329615203637",
    ),
    "fashion-mnist": (
        "f4a8712d7a061bf5bd6d2ca38dc4d50a", "9018921c3c673c538a1fc5bad174d6f9",
        "8181f5470baa50b63fa0f6fddb340f0a", "15d484375f8d13e6eb1aabb0c3f46965",
    ),
}  # fmt: skip
RESOURCES = {
    name: tuple(
        Resource(f"{base}.gz", md5, _MIRRORS[name])
        for base, md5 in zip(FILE_NAMES, digests, strict=True)
    )
    for name, digests in _MD5.items()
}


def _read_bytes(path: Path) -> bytes:
    """An IDX file's bytes, decoded if gzip-compressed.

    Decoding stops past :data:`MAX_DECODED` bytes: gzip packs about 1000 bytes of zeros into
    one, so a small crafted file could otherwise claim gigabytes of memory.

    Args:
        path: A raw or gzip-compressed file.

    Returns:
        The (decoded) bytes.

    Raises:
        ReslabError: Damaged gzip data, or more than :data:`MAX_DECODED` bytes of it.
    """
    data = path.read_bytes()
    if not data.startswith(GZIP_MAGIC):
        return data
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(data)) as stream:
            decoded = stream.read(MAX_DECODED + 1)
    except (EOFError, OSError, zlib.error) as exc:
        raise ReslabError(f"{path}: damaged gzip data ({exc})") from exc
    if len(decoded) > MAX_DECODED:
        raise ReslabError(f"{path}: decodes to more than {MAX_DECODED} bytes, far more than an "
                          "IDX file of MNIST's size; not read")
    return decoded


def read_idx(path: Path, *, magic: int) -> torch.Tensor:
    """Read an unsigned-byte IDX file (gzip-compressed or raw: told apart by content).

    Args:
        path: The file.
        magic: The magic number it must have (:data:`IMAGES_MAGIC` or :data:`LABELS_MAGIC`).

    Returns:
        uint8 tensor with the header's dims.

    Raises:
        ReslabError: Wrong magic, or header dims that do not match the file's size.
    """
    data = _read_bytes(path)
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ReslabError(f"{path}: {len(data)} bytes, too short for an IDX header")
    (found,) = struct.unpack(">I", data[:4])
    if found != magic:
        raise ReslabError(
            f"{path}: IDX magic 0x{found:08x}, expected 0x{magic:08x} (unsigned bytes, {ndim}-d)"
        )
    dims = struct.unpack(f">{ndim}I", data[4:header])
    need = header + math.prod(dims)
    if len(data) != need:
        shape = "x".join(map(str, dims))
        raise ReslabError(
            f"{path}: header dims {shape} need {need} bytes, the (decoded) file has {len(data)}"
        )
    return torch.frombuffer(bytearray(memoryview(data)[header:]), dtype=torch.uint8).view(dims)


def idx_path(folder: Path, name: str) -> Path | None:
    """``folder/name`` or ``folder/name.gz``, whichever exists (raw first), else None.

    Args:
        folder: Where to look.
        name: The raw file's name (without ``.gz``).

    Returns:
        The existing file, or None.
    """
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def find(info: DatasetInfo, root: Path) -> Path | None:
    """The first folder under ``root`` with any of ``info``'s IDX files.

    Args:
        info: ``mnist`` or ``fashion-mnist``.
        root: The data dir.

    Returns:
        The folder, or None when no IDX file is found.
    """
    for folder in search_folders(info, root):
        if any(idx_path(folder, name) for name in FILE_NAMES):
            return folder
    return None


def check_complete(info: DatasetInfo, folder: Path) -> None:
    """Check that ``folder`` holds all four IDX files (raw or ``.gz``).

    Args:
        info: ``mnist`` or ``fashion-mnist``.
        folder: The folder :func:`find` returned.

    Raises:
        ReslabError: A file is missing.
    """
    del info  # the same four file names for both data sets
    for name in FILE_NAMES:
        if idx_path(folder, name) is None:
            raise ReslabError(f"{folder / name}(.gz) is missing")


def system_copy(info: DatasetInfo) -> Path | None:
    """A system-wide copy of the data set (Debian's Fashion-MNIST), if one is installed.

    Args:
        info: A data set.

    Returns:
        Its folder, or None.
    """
    folder = SYSTEM_DIRS.get(info.name)
    return find(info, folder) if folder is not None else None


def content_md5(path: Path) -> str:
    """The MD5 of an IDX file's decoded content (see :data:`CONTENT_MD5`).

    Args:
        path: A raw or gzip-compressed IDX file.
    """
    return hashlib.md5(_read_bytes(path)).hexdigest()


def check_content(info: DatasetInfo, folder: Path) -> list[tuple[Path, str]]:
    """Compare each file's decoded content with the official release's.

    Args:
        info: ``mnist`` or ``fashion-mnist``.
        folder: The folder holding the four IDX files (raw or ``.gz``).

    Returns:
        ``(file, content MD5)`` for each of the four files, in :data:`FILE_NAMES` order.

    Raises:
        ReslabError: A file is missing, or its content is not the official one.
    """
    checked = []
    for name, official in zip(FILE_NAMES, CONTENT_MD5[info.name], strict=True):
        path = idx_path(folder, name)
        if path is None:
            raise ReslabError(f"{folder / name}(.gz) is missing")
        got = content_md5(path)
        if got != official:
            raise ReslabError(f"{path}: the decoded file's MD5 is {got}, not the official "
                              f"{official}: it is not the official {info.name} {name}")
        checked.append((path, got))
    return checked


def copy_release(info: DatasetInfo, source: Path, root: Path) -> Path:
    """Copy the four files of an official release (checked) into ``root/<name>``.

    Args:
        info: ``mnist`` or ``fashion-mnist``.
        source: A folder holding them (raw or ``.gz``), e.g. :func:`system_copy`.
        root: The data dir.

    Returns:
        The folder they were copied to.
    """
    target = root / info.folder
    target.mkdir(parents=True, exist_ok=True)
    for path, _ in check_content(info, source):
        atomic_save_bytes(target / path.name, path.read_bytes())
    return target


def load(info: DatasetInfo, folder: Path, split: str) -> ArrayData:
    """Read the official ``train`` or ``test`` split from ``folder``, checking its content.

    Args:
        info: ``mnist`` or ``fashion-mnist``.
        folder: The folder holding the IDX files (raw or ``.gz``).
        split: ``"train"`` or ``"test"``.

    Returns:
        The split: images uint8 [N, 1, 28, 28], labels int64 [N].

    Raises:
        ReslabError: A file is missing or damaged, the image size is not 28x28, the counts
            differ, or a label is out of range.
    """
    paths = []
    for name in FILES[split]:
        path = idx_path(folder, name)
        if path is None:
            raise ReslabError(f"{folder / name}(.gz) is missing")
        paths.append(path)
    images = read_idx(paths[0], magic=IMAGES_MAGIC)  # [N, 28, 28]
    labels = read_idx(paths[1], magic=LABELS_MAGIC).long()  # [N]
    if tuple(images.shape[1:]) != IMAGE_SIZE:
        raise ReslabError(f"{paths[0]}: images are {images.shape[1]}x{images.shape[2]}, not 28x28")
    if len(images) != len(labels):
        raise ReslabError(
            f"{paths[0]} has {len(images)} images but {paths[1]} has {len(labels)} labels"
        )
    bad = (labels >= NUM_CLASSES).nonzero()
    if len(bad):
        index = int(bad[0])
        raise ReslabError(
            f"{paths[1]}: label {int(labels[index])} at index {index}, out of range 0..9"
        )
    return ArrayData(images.unsqueeze(1), labels, list(info.classes), info.name, split)


def download(info: DatasetInfo, root: Path, *, mirrors: tuple[str, ...] | None = None) -> Path:
    """Download the four official ``.gz`` files into ``root/<name>`` (MD5 checked).

    Args:
        info: ``mnist`` or ``fashion-mnist``.
        root: The data dir; the files go to ``root / info.folder``.
        mirrors: Base URLs to download from instead of the official ones (None: official).

    Returns:
        The folder.
    """
    folder = root / info.folder
    for resource in RESOURCES[info.name]:
        fetch(resource, folder, mirrors=mirrors)
    return folder
