"""Datasets and device-side loaders.

``available_datasets``, ``dataset_info`` and ``load_dataset`` give the data; ``make_loader`` turns a
dataset (and optional index subset) into a reproducible :class:`Loader` of normalised batches.
Importing this package registers the built-in datasets; add one with :func:`register_dataset`.
"""

from nasflow.data.registry import (
    DATASETS,
    ArrayDataset,
    DatasetInfo,
    available_datasets,
    dataset_info,
    load_dataset,
    register_dataset,
    search_split,
)

# Registration order is the order of ``available_datasets()``.
from nasflow.data import digits, fashion_mnist, cifar, imagenet  # noqa: F401  isort: skip
from nasflow.data.imagenet import FolderDataset
from nasflow.data.loader import Loader, make_loader

__all__ = ["DATASETS", "ArrayDataset", "DatasetInfo", "FolderDataset", "Loader", "available_datasets",
           "dataset_info", "load_dataset", "make_loader", "register_dataset", "search_split"]
