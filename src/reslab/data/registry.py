"""The data sets reslab reads, what each one holds, and where it lives on disk.

The data dir (``--data-dir``, or the ``root`` argument of the Python API) holds one folder per
data set, named as the official archives name them: ``cifar-10-batches-bin/`` (or the python
version's ``cifar-10-batches-py/``), ``cifar-100-binary/`` (or ``cifar-100-python/``),
``fashion-mnist/``, ``mnist/``, ``imagenet/``. ``root`` may also point at
that folder itself. When ``root`` is None the data dir is ``$RESLAB_DATA_DIR``, else ``./data``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from reslab.errors import ReslabError, choices_hint

DATA_DIR_ENV = "RESLAB_DATA_DIR"
DATA_DIR_HELP = ("folder holding the data set (default: $RESLAB_DATA_DIR, else ./data, else a "
                 "system-wide copy such as Debian's Fashion-MNIST; a folder you name is used "
                 "alone)")

CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip
# Fine labels 0..99, as in cifar-100-binary/fine_label_names.txt.
CIFAR100_CLASSES = (
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle",
    "bottle", "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle",
    "caterpillar", "cattle", "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch",
    "crab", "crocodile", "cup", "dinosaur", "dolphin", "elephant", "flatfish", "forest", "fox",
    "girl", "hamster", "house", "kangaroo", "keyboard", "lamp", "lawn_mower", "leopard", "lion",
    "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain", "mouse", "mushroom",
    "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear", "pickup_truck", "pine_tree",
    "plain", "plate", "poppy", "porcupine", "possum", "rabbit", "raccoon", "ray", "road",
    "rocket", "rose", "sea", "seal", "shark", "shrew", "skunk", "skyscraper", "snail", "snake",
    "spider", "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank", "telephone",
    "television", "tiger", "tractor", "train", "trout", "tulip", "turtle", "wardrobe", "whale",
    "willow_tree", "wolf", "woman", "worm",
)  # fmt: skip
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
    "Ankle boot",
)  # fmt: skip
MNIST_CLASSES = tuple(str(digit) for digit in range(10))


@dataclass(frozen=True)
class DatasetInfo:
    """What one data set holds.

    Attributes:
        name: The name used by the API and the command line.
        num_classes: Number of classes (``0`` for ``folder``: the tree decides).
        channels: Image channels (3 for RGB, 1 for grey).
        image_size: ``(H, W)`` of the network input the data set's pipeline produces.
        splits: The split names :func:`reslab.data.get_dataset` accepts.
        small: True when a split fits in memory as one uint8 tensor
            (:func:`reslab.data.load_arrays` and :class:`reslab.data.TensorLoader`).
        classes: Class names by label (empty when they come from the folder names).
        counts: Images per split in the official release (empty when there is none).
        pipeline: The :func:`reslab.data.pipeline` preset for this data set.
        folder: The data set's folder name inside the data dir.
        description: One line for listings.
    """

    name: str
    num_classes: int
    channels: int
    image_size: tuple[int, int]
    splits: tuple[str, ...]
    small: bool
    classes: tuple[str, ...]
    counts: dict[str, int] = field(default_factory=dict, hash=False)
    pipeline: str = ""
    folder: str = ""
    description: str = ""


def _small(name, classes, *, channels, size, holdout, train, folder, pipeline, description):
    return DatasetInfo(
        name=name,
        num_classes=len(classes),
        channels=channels,
        image_size=(size, size),
        splits=("train", "test", holdout, "val5k"),
        small=True,
        classes=classes,
        counts={"train": train, "test": 10_000, holdout: train - 5000, "val5k": 5000},
        pipeline=pipeline,
        folder=folder,
        description=description,
    )


DATASETS: dict[str, DatasetInfo] = {
    "cifar10": _small(
        "cifar10", CIFAR10_CLASSES, channels=3, size=32, holdout="train45k", train=50_000,
        folder="cifar-10-batches-bin", pipeline="cifar",
        description="CIFAR-10, official binary or python version (Sec. 4.2)",
    ),
    "cifar100": _small(
        "cifar100", CIFAR100_CLASSES, channels=3, size=32, holdout="train45k", train=50_000,
        folder="cifar-100-binary", pipeline="cifar",
        description="CIFAR-100 (fine labels), official binary or python version",
    ),
    "fashion-mnist": _small(
        "fashion-mnist", FASHION_MNIST_CLASSES, channels=1, size=28, holdout="train55k",
        train=60_000, folder="fashion-mnist", pipeline="fashion-mnist",
        description="Fashion-MNIST, IDX files (gz or raw)",
    ),
    "mnist": _small(
        "mnist", MNIST_CLASSES, channels=1, size=28, holdout="train55k", train=60_000,
        folder="mnist", pipeline="mnist", description="MNIST, IDX files (gz or raw)",
    ),
    "imagenet": DatasetInfo(
        name="imagenet",
        num_classes=1000,
        channels=3,
        image_size=(224, 224),
        splits=("train", "val"),
        small=False,
        classes=(),
        counts={"train": 1_281_167, "val": 50_000},
        pipeline="imagenet",
        folder="imagenet",
        description="ILSVRC-2012: train/<wnid>/*.JPEG, val/<wnid>/ or flat val/ (Sec. 3.4)",
    ),
    "folder": DatasetInfo(
        name="folder",
        num_classes=0,
        channels=3,
        image_size=(224, 224),
        splits=("train", "val", "test"),
        small=False,
        classes=(),
        pipeline="imagenet",
        description="any <split>/<class>/<image> tree (what torchvision's ImageFolder reads)",
    ),
}  # fmt: skip


def dataset_info(name: str) -> DatasetInfo:
    """Look up a data set.

    Args:
        name: A key of :data:`DATASETS`.

    Returns:
        Its :class:`DatasetInfo`.

    Raises:
        ReslabError: The name is unknown.
    """
    try:
        return DATASETS[name]
    except KeyError:
        raise ReslabError(f"unknown data set {name!r}; {choices_hint(DATASETS)}") from None


def check_split(info: DatasetInfo, split: str) -> str:
    """Return ``split`` if ``info`` has it, else raise :class:`ReslabError` listing the splits.

    Args:
        info: The data set.
        split: A split name, e.g. ``"train45k"``.

    Returns:
        ``split``.
    """
    if split not in info.splits:
        raise ReslabError(f"{info.name} has no split {split!r}; {choices_hint(info.splits)}")
    return split


def data_root(root: str | os.PathLike | None, *, create: bool = False) -> Path:
    """Resolve the data dir.

    Args:
        root: The folder the user named, or None for ``$RESLAB_DATA_DIR`` (else ``./data``).
        create: Make the folder when it is missing (for downloads).

    Returns:
        The folder.

    Raises:
        ReslabError: A folder the user named does not exist and ``create`` is False.
    """
    path = Path(root if root is not None else os.environ.get(DATA_DIR_ENV) or "data")
    if create:
        path.mkdir(parents=True, exist_ok=True)
    elif root is not None and not path.is_dir():
        raise ReslabError(f"data dir {path} does not exist (or is not a folder)")
    return path


def data_dir_named(root: str | os.PathLike | None) -> bool:
    """Whether the user named a data dir (``--data-dir`` or ``$RESLAB_DATA_DIR``): then the
    files must be there, and system-wide copies are not used in their place.

    Args:
        root: The folder the user named, or None.
    """
    return root is not None or bool(os.environ.get(DATA_DIR_ENV))


def dataset_dirs(info: DatasetInfo, root: Path) -> list[Path]:
    """The folders where ``info``'s files may be: ``root/<folder>`` first, then ``root`` itself.

    Args:
        info: The data set.
        root: The data dir.

    Returns:
        The candidate folders (only ``root`` when ``info.folder`` is empty).
    """
    return [root / info.folder, root] if info.folder else [root]
