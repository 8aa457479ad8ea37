"""Tiny data sets written byte for byte in the official formats, for the data tests."""

from __future__ import annotations

import gzip
import io
import pickle
import struct
import tarfile
from pathlib import Path

import torch
from PIL import Image

from reslab.data.registry import CIFAR10_CLASSES, CIFAR100_CLASSES


def random_images(n: int, shape: tuple[int, ...], *, seed: int) -> torch.Tensor:
    """uint8 [n, *shape] from a seeded generator."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, *shape), generator=generator, dtype=torch.uint8)


def cifar_bytes(labels: torch.Tensor, images: torch.Tensor) -> bytes:
    """Records: label byte(s) ([N] or [N, 2]) then 3072 pixel bytes (R, G, B planes)."""
    labels = labels.view(len(images), -1).to(torch.uint8)
    return torch.cat([labels, images.reshape(len(images), -1)], dim=1).numpy().tobytes()


Arrays = dict[str, tuple[torch.Tensor, torch.Tensor]]


def write_cifar10(folder: Path, *, per_file: int = 3) -> Arrays:
    """``cifar-10-batches-bin``: data_batch_1..5.bin and test_batch.bin of ``per_file`` records.

    Returns:
        ``{"train": (images, labels), "test": (images, labels)}`` as written.
    """
    folder.mkdir(parents=True)
    parts = {}
    names = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]
    for seed, name in enumerate(names):
        images = random_images(per_file, (3, 32, 32), seed=seed)
        labels = torch.arange(seed, seed + per_file) % 10
        (folder / name).write_bytes(cifar_bytes(labels, images))
        parts[name] = (images, labels)
    (folder / "batches.meta.txt").write_text("\n".join(CIFAR10_CLASSES) + "\n\n")
    train = [parts[name] for name in names[:5]]
    return {
        "train": (torch.cat([i for i, _ in train]), torch.cat([lab for _, lab in train])),
        "test": parts["test_batch.bin"],
    }


def write_cifar100(folder: Path, *, test: int = 2) -> Arrays:
    """``cifar-100-binary``: train.bin (5 * test records) and test.bin, coarse + fine labels."""
    folder.mkdir(parents=True)
    written = {}
    for seed, (split, n) in enumerate((("train", 5 * test), ("test", test))):
        images = random_images(n, (3, 32, 32), seed=10 + seed)
        fine = (torch.arange(n) * 7 + 95) % 100
        coarse = fine % 20
        (folder / f"{split}.bin").write_bytes(cifar_bytes(torch.stack([coarse, fine], 1), images))
        written[split] = (images, fine)
    (folder / "fine_label_names.txt").write_text("\n".join(CIFAR100_CLASSES) + "\n")
    return written


def write_pickle(path: Path, entry: dict) -> None:
    """One file of a CIFAR python release: a dict pickled at protocol 2, as the release's."""
    path.write_bytes(pickle.dumps(entry, protocol=2))


def write_cifar_python(folder: Path, written: Arrays, name: str) -> None:
    """The python release (``cifar-10-batches-py`` or ``cifar-100-python``) of the same images
    and labels that :func:`write_cifar10` / :func:`write_cifar100` wrote in the binary one: the
    keys, dtypes and file names of the official files (CIFAR-100's coarse labels: fine % 20)."""
    folder.mkdir(parents=True)

    def batch(images: torch.Tensor, labels: torch.Tensor, label: str) -> dict:
        n = len(images)
        entry = {"batch_label": label, "filenames": [f"image_{i}.png" for i in range(n)],
                 "data": images.reshape(n, -1).numpy()}  # uint8 [N, 3072], R, G, B planes
        if name == "cifar10":
            return {**entry, "labels": labels.tolist()}
        return {**entry, "fine_labels": labels.tolist(), "coarse_labels": (labels % 20).tolist()}

    if name == "cifar10":
        images, labels = written["train"]
        per_file = len(images) // 5
        for i in range(5):
            part = slice(i * per_file, (i + 1) * per_file)
            write_pickle(folder / f"data_batch_{i + 1}",
                         batch(images[part], labels[part], f"training batch {i + 1} of 5"))
        write_pickle(folder / "test_batch", batch(*written["test"], "testing batch 1 of 1"))
        write_pickle(folder / "batches.meta", {"label_names": list(CIFAR10_CLASSES),
                                               "num_cases_per_batch": 10000, "num_vis": 3072})
        return
    write_pickle(folder / "train", batch(*written["train"], "training batch 1 of 1"))
    write_pickle(folder / "test", batch(*written["test"], "testing batch 1 of 1"))
    write_pickle(folder / "meta", {"fine_label_names": list(CIFAR100_CLASSES),
                                   "coarse_label_names": [f"group{i}" for i in range(20)]})


def idx_bytes(array: torch.Tensor, *, magic: int | None = None) -> bytes:
    """An unsigned-byte IDX file: magic 0x000008DD, big-endian uint32 dims, the values."""
    magic = 0x800 + array.dim() if magic is None else magic
    dims = struct.pack(f">I{array.dim()}I", magic, *array.shape)
    return dims + array.to(torch.uint8).contiguous().numpy().tobytes()


def write_idx_set(folder: Path, *, train: int = 12, test: int = 4, gz: bool = True) -> Arrays:
    """The four MNIST-layout files, gzip-compressed or raw.

    Returns:
        ``{"train": (images [N, 28, 28], labels), "test": ...}`` as written.
    """
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for seed, (prefix, split, n) in enumerate((("train", "train", train), ("t10k", "test", test))):
        images = random_images(n, (28, 28), seed=20 + seed)
        labels = (torch.arange(n) * 3) % 10
        for kind, array in (("images-idx3", images), ("labels-idx1", labels)):
            data = idx_bytes(array)
            name = f"{prefix}-{kind}-ubyte"
            if gz:
                (folder / f"{name}.gz").write_bytes(gzip.compress(data))
            else:
                (folder / name).write_bytes(data)
        written[split] = (images, labels)
    return written


def write_image(path: Path, image: torch.Tensor, *, quality: int = 95) -> None:
    """Save uint8 [3, H, W] as JPEG (by the path's extension .JPEG/.jpg) or PNG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = "PNG" if path.suffix.lower() == ".png" else "JPEG"
    Image.fromarray(image.permute(1, 2, 0).numpy()).save(path, format=fmt, quality=quality)


def tar_bytes(members: dict[str, bytes], *, links: dict[str, str] | None = None,
              compression: str = "gz") -> bytes:
    """A tar archive (``compression`` "gz" or "" for none) of the given regular files (and
    symbolic links), names taken as given, in the order given."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=f"w:{compression}") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    return buffer.getvalue()


def make_tar(path: Path, members: dict[str, bytes], *, links: dict[str, str] | None = None,
             compression: str = "gz") -> Path:
    """:func:`tar_bytes` written to ``path``."""
    path.write_bytes(tar_bytes(members, links=links, compression=compression))
    return path


def jpeg_bytes(image: torch.Tensor) -> bytes:
    """uint8 [3, H, W] as JPEG bytes (quality 95)."""
    buffer = io.BytesIO()
    Image.fromarray(image.permute(1, 2, 0).numpy()).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def devkit_meta_mat(synsets: list[tuple[int, str, list[int]]]) -> bytes:
    """ILSVRC-2012's ``meta.mat``: a ``synsets`` struct array (N x 1) with the devkit's eight
    fields, one per (ILSVRC2012_ID, WNID, children IDs), compressed as MATLAB's default -v7
    save writes it. Written by SciPy, an implementation independent of reslab's reader."""
    import numpy as np
    import scipy.io

    fields = ["ILSVRC2012_ID", "WNID", "words", "gloss", "num_children", "children",
              "wordnet_height", "num_train_images"]  # fmt: skip
    table = np.empty((len(synsets), 1), dtype=[(field, "O") for field in fields])
    for row, (number, wnid, children) in enumerate(synsets):
        table[row, 0] = (
            np.array([[float(number)]]), np.array([wnid]), np.array([f"words of {wnid}"]),
            np.array(["a gloss, with unicode: \u00e9"]), np.array([[float(len(children))]]),
            np.array([[float(c) for c in children]]).reshape(1, len(children)),
            np.array([[float(bool(children))]]), np.array([[0.0 if children else 1300.0]]),
        )
    buffer = io.BytesIO()
    scipy.io.savemat(buffer, {"synsets": table}, do_compression=True)
    return buffer.getvalue()


def write_imagenet_archives(folder: Path, train: dict[str, list[torch.Tensor]],
                            val: list[tuple[str, torch.Tensor]]) -> dict[str, bytes]:
    """The three official ILSVRC-2012 archives, laid out as released.

    ``ILSVRC2012_img_train.tar`` holds one uncompressed ``<wnid>.tar`` per class of
    ``<wnid>_<n>.JPEG``; ``ILSVRC2012_img_val.tar`` the flat ``ILSVRC2012_val_<8 digits>.JPEG``;
    ``ILSVRC2012_devkit_t12.tar.gz`` ``data/meta.mat`` (the train wnids get ILSVRC2012_IDs in
    reverse sorted order, not the sorted order labels use, plus one parent synset) and
    ``data/ILSVRC2012_validation_ground_truth.txt``.

    Args:
        folder: Where the archives go (created).
        train: wnid to its training images (uint8 [3, H, W]).
        val: (wnid, image) per validation image, in file-number order.

    Returns:
        Each unpacked image's path relative to the ImageNet folder
        (``train/<wnid>/...``, ``val/<wnid>/...``) to its JPEG bytes.
    """
    folder.mkdir(parents=True, exist_ok=True)
    expected, inner = {}, {}
    for wnid, images in train.items():
        members = {f"{wnid}_{i}.JPEG": jpeg_bytes(image) for i, image in enumerate(images)}
        expected.update({f"train/{wnid}/{name}": data for name, data in members.items()})
        inner[f"{wnid}.tar"] = tar_bytes(members, compression="")
    make_tar(folder / "ILSVRC2012_img_train.tar", inner, compression="")
    ids = {wnid: number for number, wnid in enumerate(sorted(train, reverse=True), start=1)}
    flat = {}
    for number, (wnid, image) in enumerate(val, start=1):
        flat[f"ILSVRC2012_val_{number:08d}.JPEG"] = jpeg_bytes(image)
        expected[f"val/{wnid}/ILSVRC2012_val_{number:08d}.JPEG"] = flat[
            f"ILSVRC2012_val_{number:08d}.JPEG"]
    make_tar(folder / "ILSVRC2012_img_val.tar", flat, compression="")
    synsets = [(number, wnid, []) for wnid, number in ids.items()]
    synsets.append((len(ids) + 1, "n00001740", sorted(ids.values())))  # 'entity', a parent
    truth = "".join(f"{ids[wnid]}\n" for wnid, _ in val)
    make_tar(folder / "ILSVRC2012_devkit_t12.tar.gz", {
        "ILSVRC2012_devkit_t12/data/meta.mat": devkit_meta_mat(synsets),
        "ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt": truth.encode(),
    })  # fmt: skip
    return expected


def matlab_mat(variables: dict[str, object], *, order: str = "<", chars: str = "utf-16") -> bytes:
    """An uncompressed level-5 MAT-file laid out as MATLAB itself writes one, unlike SciPy: a
    double array is stored in the smallest integer type that holds its values (miUINT8,
    miUINT16; the array flags keep mxDOUBLE_CLASS), names and other data of 4 bytes or less use
    the small data element format, char data is miUINT16 (``chars="utf-16"``) or miUTF8
    (``"utf-8"``), in either byte order (``order`` "<" or ">").

    Args:
        variables: Name to value: a float or list of floats (a 1 x N double array), a str
            (a 1 x N char array), or a list of dicts with the same keys (an N x 1 struct array).
        order: The byte order.
        chars: How char data is encoded.

    Returns:
        The file's bytes.
    """

    def element(kind: int, data: bytes) -> bytes:
        if 0 < len(data) <= 4:
            return struct.pack(order + "I", len(data) << 16 | kind) + data.ljust(4, b"\0")
        return struct.pack(order + "II", kind, len(data)) + data + b"\0" * (-len(data) % 8)

    def matrix(value: object, name: str = "") -> bytes:
        if isinstance(value, str):
            if chars == "utf-8":
                klass, dims, body = 4, (1, len(value)), element(16, value.encode("utf-8"))
            else:
                text = value.encode("utf-16-le" if order == "<" else "utf-16-be")
                klass, dims, body = 4, (1, len(value)), element(4, text)
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            fields = list(value[0])
            names = b"".join(f.encode().ljust(32, b"\0") for f in fields)
            body = element(5, struct.pack(order + "i", 32)) + element(1, names)
            body += b"".join(matrix(item[f]) for item in value for f in fields)
            klass, dims = 2, (len(value), 1)
        else:
            numbers = [float(v) for v in (value if isinstance(value, list) else [value])]
            if all(v.is_integer() and 0 <= v <= 255 for v in numbers):
                code, kind = "B", 2  # miUINT8
            elif all(v.is_integer() and 0 <= v <= 65535 for v in numbers):
                code, kind = "H", 4  # miUINT16
            else:
                code, kind = "d", 9  # miDOUBLE
            cast = float if code == "d" else int
            data = struct.pack(f"{order}{len(numbers)}{code}", *map(cast, numbers))
            klass, dims, body = 6, (1, len(numbers)), element(kind, data)
        content = (element(6, struct.pack(order + "II", klass, 0))
                   + element(5, struct.pack(f"{order}{len(dims)}i", *dims))
                   + element(1, name.encode()) + body)  # fmt: skip
        return struct.pack(order + "II", 14, len(content)) + content

    text = b"MATLAB 5.0 MAT-file, written as MATLAB writes it, for the tests".ljust(116, b" ")
    header = text + b"\0" * 8 + struct.pack(order + "H", 0x0100) + (b"IM" if order == "<" else
                                                                     b"MI")  # fmt: skip
    return header + b"".join(matrix(value, name) for name, value in variables.items())
