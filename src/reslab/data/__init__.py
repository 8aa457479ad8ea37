"""The paper's data sets, read from their official formats, and its data pipelines.

Typical use (CIFAR-10, Sec. 4.2)::

    from reslab import data

    train = data.load_arrays("cifar10", "data", "train45k")
    preset = data.pipeline("cifar", mean=data.per_pixel_mean(train.images))
    loader = data.TensorLoader(
        train.images, train.labels, batch_size=128, device=device, train=True,
        mean=preset.mean, pad=preset.pad, flip=preset.flip, seed=0,
    )
    for epoch in range(epochs):
        loader.set_epoch(epoch)
        for x, y in loader:
            ...

ImageNet and folder trees are map-style data sets for a ``DataLoader``::

    train = data.get_dataset("imagenet", "data", "train", transform=data.pipeline("imagenet").train)
"""

from reslab.data.arrays import SPLIT_SEED, ArrayData, ArrayDataset, holdout_indices, per_pixel_mean
from reslab.data.datasets import download, get_dataset, load_arrays
from reslab.data.fast import TensorLoader
from reslab.data.folder import ImageFolderDataset
from reslab.data.registry import DATASETS, DatasetInfo, dataset_info
from reslab.data.transforms import PIPELINES, PROTOCOLS, Pipeline, pipeline
from reslab.data.verify import verify

__all__ = [
    "DATASETS",
    "PIPELINES",
    "PROTOCOLS",
    "SPLIT_SEED",
    "ArrayData",
    "ArrayDataset",
    "DatasetInfo",
    "ImageFolderDataset",
    "Pipeline",
    "TensorLoader",
    "dataset_info",
    "download",
    "get_dataset",
    "holdout_indices",
    "load_arrays",
    "per_pixel_mean",
    "pipeline",
    "verify",
]
