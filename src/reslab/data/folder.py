"""Class-per-folder image trees (``<split>/<class>/**/<image>``, as torchvision's ImageFolder).

Non-image and unreadable files are **skipped and counted at scan time** (and
:func:`reslab.data.get_dataset` warns once per split, :func:`warn_skipped`): a file counts as an
image when its extension is one of :data:`IMAGE_EXTENSIONS` (those of torchvision's
ImageFolder) and its first bytes are the signature of one of :data:`FORMATS` (so ``README.txt``,
``.DS_Store``, empty or unreadable files never reach the training loop). An image whose body is
damaged past its header raises :class:`ReslabError` naming the file when it is decoded;
``reslab data verify`` decodes every image to find such files before training, and fails on a
skipped file named as an image (:func:`damaged_images`). A class folder with no images is an
error (its label would silently never occur).
"""

from __future__ import annotations

import io
import logging
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torchvision.io import ImageReadMode, decode_image
from torchvision.transforms.functional import pil_to_tensor

from reslab.data.base import SeededDataset, progress
from reslab.errors import ReslabError

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff",
                              ".ppm", ".pgm", ".pnm"})  # fmt: skip
FORMATS = "JPEG, PNG, WebP, BMP, TIFF or PPM/PGM"
_JPEG_SIGNATURE = b"\xff\xd8\xff"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_SIGNATURES = (_JPEG_SIGNATURE, _PNG_SIGNATURE, b"BM", b"II*\0", b"MM\0*",  # BMP, TIFF
               b"P2", b"P3", b"P5", b"P6")  # fmt: skip - grey and colour PNM, text or binary


def _is_webp(head: bytes) -> bool:
    return head[:4] == b"RIFF" and head[8:12] == b"WEBP"


@dataclass(frozen=True)
class ImageList:
    """The images of one split.

    Attributes:
        folder: The split's folder.
        classes: Class names by label.
        samples: ``(path, label)`` per image, in a fixed (sorted) order (paths as strings,
            which stay small for ImageNet's 1.28 million images).
        skipped: Files left out because they are not readable images.
    """

    folder: Path
    classes: tuple[str, ...]
    samples: tuple[tuple[str, int], ...]
    skipped: tuple[Path, ...]


def is_image(path: Path) -> bool:
    """True when ``path`` has an image extension and starts like a file of :data:`FORMATS`.

    Args:
        path: The file (its first 12 bytes are read).

    Returns:
        False also when the file cannot be opened.
    """
    if path.suffix.lower() not in IMAGE_EXTENSIONS:
        return False
    try:
        with open(path, "rb") as handle:
            head = handle.read(12)
    except OSError:
        return False
    return head.startswith(_SIGNATURES) or _is_webp(head)


def split_images(paths: Sequence[Path]) -> tuple[list[Path], list[Path]]:
    """Sort ``paths`` into ``(images, skipped)`` with :func:`is_image`, keeping their order.

    Args:
        paths: Candidate files.

    Returns:
        ``(images, skipped)``.
    """
    images, skipped = [], []
    for path in paths:
        (images if is_image(path) else skipped).append(path)
    return images, skipped


def damaged_images(skipped: Sequence[Path]) -> list[Path]:
    """The skipped files named as images (an image extension, but not a readable file of
    :data:`FORMATS`): corrupt or unreadable images rather than files of another kind.

    Args:
        skipped: Files that :func:`split_images` left out.

    Returns:
        Those with an extension of :data:`IMAGE_EXTENSIONS`, in their order.
    """
    return [path for path in skipped if path.suffix.lower() in IMAGE_EXTENSIONS]


def _files_under(folder: Path) -> list[Path]:
    """Every file below ``folder`` (following links, but not a link to a folder the walk is
    in: a loop would repeat its files until the path grew too long), sorted, hidden files
    included."""
    found = []
    # a folder's path -> the real folders it is inside (the start's own parents included)
    above = {os.fspath(folder): frozenset(Path(folder).resolve().parents)}
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        chain = above.pop(dirpath, frozenset()) | {Path(dirpath).resolve()}
        dirnames[:] = [d for d in sorted(dirnames) if Path(dirpath, d).resolve() not in chain]
        above.update((os.path.join(dirpath, d), chain) for d in dirnames)
        found.extend(Path(dirpath, name) for name in sorted(filenames))
    return found


def class_folders(folder: Path) -> list[Path]:
    """The sorted class sub-folders of ``folder`` (hidden ones left out).

    Args:
        folder: A split's folder.

    Returns:
        Its non-hidden sub-folders, sorted by name.

    Raises:
        ReslabError: ``folder`` is missing or has no sub-folders.
    """
    if not folder.is_dir():
        raise ReslabError(f"{folder} does not exist (or is not a folder)")
    found = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not found:
        raise ReslabError(f"{folder}: no class folders (expected {folder}/<class>/<image>)")
    return found


def warn_skipped(images: ImageList) -> None:
    """Log one warning for the files a scan left out (nothing when it left none out).

    Args:
        images: The scanned split; its folder and first skipped file are named.
    """
    if images.skipped:
        log.warning(
            "%s: skipped %d file(s) that are not readable %s images (first: %s)",
            images.folder, len(images.skipped), FORMATS, images.skipped[0],
        )  # fmt: skip


def scan_tree(folder: Path, *, classes: Sequence[str] | None = None) -> ImageList:
    """List the images of a ``<class>/**/<image>`` tree.

    Args:
        folder: The split's folder.
        classes: The label order to use (e.g. the training split's classes); every class
            folder must be one of them. None: the sorted class folder names.

    Returns:
        The images and the skipped files (files directly in ``folder`` are skipped too).

    Raises:
        ReslabError: ``folder`` is missing, has no class folders, has an unknown class, or has
            a class folder without images.
    """
    folders = class_folders(folder)
    names = [p.name for p in folders]
    classes = tuple(classes if classes is not None else names)
    label_of = {name: label for label, name in enumerate(classes)}
    skipped = [p for p in folder.iterdir() if p.is_file()]
    samples = []
    for class_dir in progress(folders, desc=f"scan {folder.name}"):
        if class_dir.name not in label_of:
            raise ReslabError(f"{class_dir}: class {class_dir.name!r} is not a training class")
        images, bad = split_images(_files_under(class_dir))
        if not images:
            raise ReslabError(f"{class_dir}: empty class folder (no readable images)")
        samples.extend((str(path), label_of[class_dir.name]) for path in images)
        skipped.extend(bad)
    return ImageList(folder, classes, tuple(samples), tuple(sorted(skipped)))


def decode_file(path: str | os.PathLike) -> torch.Tensor:
    """Decode an image file to uint8 RGB [3, H, W]: JPEG and WebP with
    ``torchvision.io.decode_image``, the others (PNG, BMP, TIFF, PNM) with Pillow
    (:func:`_decode_with_pillow`); a 16-bit image keeps its high byte, as Pillow (and so
    ``reslab predict``) reads it. An image of more
    pixels than Pillow's ``Image.MAX_IMAGE_PIXELS`` (its decompression-bomb limit, which
    ``reslab predict`` obeys too) is refused from its header, before it is decoded.

    Args:
        path: The image file (one of :data:`FORMATS`).

    Returns:
        uint8 [3, H, W], RGB.

    Raises:
        ReslabError: The file cannot be read or decoded, or has too many pixels.
    """
    try:
        data = bytearray(Path(path).read_bytes())
        if not (data.startswith(_JPEG_SIGNATURE) or _is_webp(data[:12])):
            return _decode_with_pillow(path, data)
        _check_pixels(path, data)
        image = decode_image(torch.frombuffer(data, dtype=torch.uint8), mode=ImageReadMode.RGB)
        return image if image.dtype == torch.uint8 else (image.to(torch.int32) >> 8).byte()
    except ReslabError:
        raise
    except (OSError, RuntimeError, ValueError, SyntaxError, EOFError) as exc:
        raise ReslabError(
            f"{path}: cannot decode image ({exc}); `reslab data verify` lists damaged files"
        ) from exc


def _decode_with_pillow(path: str | os.PathLike, data: bytearray) -> torch.Tensor:
    """An image file's bytes as uint8 RGB [3, H, W], decoded by Pillow: BMP, TIFF and PNM,
    which torchvision does not decode, and PNG: torchvision's libpng decoder (0.29) kills the
    process with a segmentation fault on a PNG whose compressed pixel data is damaged ("IDAT:
    incorrect data check", "Not enough image data"), where Pillow raises an ``OSError``. A
    PNG's chunks are checked first (``verify``: their CRCs, a file cut short), as libpng does:
    Pillow alone decodes a file cut after its pixel data. 16-bit images keep their high byte
    (:func:`pil_to_uint8`), so a PNG's pixels are torchvision's."""
    with open_image_header(io.BytesIO(data), path) as image:
        image.verify()  # leaves the image unusable: it is opened again to decode
    with open_image_header(io.BytesIO(data), path) as image:
        image.load()
        return pil_to_uint8(image, channels=3)


def pil_to_uint8(image: Image.Image, *, channels: int) -> torch.Tensor:
    """A PIL image as uint8 [C, H, W], converted to grey (``channels=1``) or RGB.

    16-bit grey images (modes ``I;16*`` and ``I``, e.g. 16-bit PNG, TIFF and PGM files) keep
    their high byte, as Pillow keeps it of 16-bit RGB(A) and torchvision's decoder of any
    16-bit PNG (Pillow's own conversion clips them to 255). Used by :func:`decode_file` (PNG)
    and by ``reslab predict``.

    Args:
        image: Any PIL image.
        channels: 1 (grey) or anything else (RGB).

    Returns:
        uint8 [C, H, W].
    """
    if image.mode == "I" or image.mode.startswith("I;16"):
        high = np.asarray(image).astype(np.int64).clip(0, 65535) >> 8  # [H, W]
        image = Image.fromarray(high.astype(np.uint8))
    image = image.convert("L" if channels == 1 else "RGB")
    return pil_to_tensor(image)


def _check_pixels(path: str | os.PathLike, data: bytearray) -> None:
    """Refuse an image larger than ``Image.MAX_IMAGE_PIXELS`` from its header (a header Pillow
    cannot parse is left to the decoder)."""
    try:
        header = open_image_header(io.BytesIO(data), path)
    except ReslabError:
        raise
    except (OSError, ValueError, SyntaxError):
        return
    header.close()


def open_image_header(source: str | os.PathLike | io.BytesIO, path: str | os.PathLike
                      ) -> Image.Image:
    """Open an image with Pillow (which reads only its header until the pixels are asked for),
    refusing one over ``Image.MAX_IMAGE_PIXELS`` (:func:`check_pixel_limit`).

    Args:
        source: The file, or its bytes as a file object.
        path: The file, for messages.

    Returns:
        The open image; the caller closes it.

    Raises:
        ReslabError: Too many pixels (Pillow's own message past twice the limit).
        OSError: Pillow cannot read the header.
    """
    try:
        with warnings.catch_warnings():  # Pillow warns over the limit: refused below instead
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(source)
    except Image.DecompressionBombError as exc:  # twice the limit: Pillow refuses itself
        raise ReslabError(f"{path}: {exc}") from None
    try:
        check_pixel_limit(path, *image.size)
    except ReslabError:
        image.close()
        raise
    return image


def check_pixel_limit(path: str | os.PathLike, width: int, height: int) -> None:
    """Refuse an image of more pixels than ``Image.MAX_IMAGE_PIXELS`` (Pillow's
    decompression-bomb limit, up to twice which Pillow itself only warns).

    Args:
        path: The image file, for the message.
        width: Its width, from its header.
        height: Its height.

    Raises:
        ReslabError: ``<path>: image of WxH pixels is over the limit of N ...``.
    """
    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and width * height > limit:
        raise ReslabError(f"{path}: image of {width}x{height} pixels is over the limit of "
                          f"{limit} (PIL.Image.MAX_IMAGE_PIXELS; raise it to read larger images)")


class ImageFolderDataset(SeededDataset):
    """Decoded images of an :class:`ImageList`, as a map-style data set.

    Args:
        images: The scanned split.
        transform: Applied to each uint8 [3, H, W] image, with randomness from
            (seed, epoch, index) (see :class:`reslab.data.base.SeededDataset`).
        seed: The run's data seed.
    """

    def __init__(
        self, images: ImageList, *, transform: Callable[[torch.Tensor], Any] | None = None,
        seed: int = 0,
    ) -> None:  # fmt: skip
        super().__init__(transform=transform, seed=seed)
        self.classes = list(images.classes)
        self.samples = images.samples
        self.skipped = images.skipped
        self.targets = [label for _, label in images.samples]

    def __len__(self) -> int:
        return len(self.samples)

    def load(self, index: int) -> tuple[torch.Tensor, int]:
        path, label = self.samples[index]
        return decode_file(path), label
