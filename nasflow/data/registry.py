"""Dataset registry, static metadata and the in-memory dataset type.

A dataset is registered with its static :class:`DatasetInfo` and a loader function
``load(params, split)`` returning either ``(images, labels)`` (uint8 ``(N, C, H, W)`` and integer
labels, as numpy arrays or tensors) or a :class:`~nasflow.data.imagenet.FolderDataset`.
:func:`load_dataset` validates the arrays against the info and applies the ``limit_*`` params, so
every source gets the same checks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

from nasflow.errors import DataError

if TYPE_CHECKING:
    from nasflow.data.imagenet import FolderDataset
    from nasflow.params import DatasetParams

Split = Literal["train", "test"]


@dataclass(frozen=True)
class DatasetInfo:
    """Static metadata; ``mean`` / ``std`` are per channel on the [0, 1] scale."""

    name: str
    num_classes: int
    in_channels: int
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]


@dataclass
class ArrayDataset:
    """A whole split as one uint8 tensor ``(N, C, H, W)`` plus int64 labels, on the CPU."""

    images: torch.Tensor
    labels: torch.Tensor
    info: DatasetInfo
    # One device copy per device, shared by every loader over this dataset (search uses two).
    _on_device: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(
        default_factory=dict, init=False, repr=False, compare=False)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def to_device(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """``(images, labels)`` on ``device``, copied there once and cached."""
        if device.type == "cpu":
            return self.images, self.labels
        key = str(device)
        if key not in self._on_device:
            self._on_device[key] = (self.images.to(device), self.labels.to(device))
        return self._on_device[key]


@dataclass(frozen=True)
class DatasetSource:
    info: DatasetInfo
    load: Callable[[DatasetParams, Split], Any]


DATASETS: dict[str, DatasetSource] = {}


def register_dataset(name: str, *, num_classes: int, in_channels: int, image_size: int,
                     mean: tuple[float, ...], std: tuple[float, ...]):
    """Decorator registering ``load(params, split)`` under ``name`` with its static info."""
    if len(mean) != in_channels or len(std) != in_channels:
        raise ValueError(f"{name}: mean/std need one value per channel ({in_channels})")
    if name in DATASETS:
        raise ValueError(f"dataset {name!r} is already registered")

    def decorate(load: Callable[[DatasetParams, Split], Any]):
        if name in DATASETS:
            raise ValueError(f"dataset {name!r} is already registered")
        info = DatasetInfo(name, num_classes, in_channels, image_size, tuple(mean), tuple(std))
        DATASETS[name] = DatasetSource(info, load)
        return load

    return decorate


def available_datasets() -> list[str]:
    return list(DATASETS)


def _source(name: str) -> DatasetSource:
    try:
        return DATASETS[name]
    except KeyError:
        raise DataError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}") from None


def dataset_info(params: DatasetParams) -> DatasetInfo:
    """Static metadata of ``params.name``; reads no data files."""
    return _source(params.name).info


def load_dataset(params: DatasetParams, split: Split) -> ArrayDataset | FolderDataset:
    """Load one split (``train`` or ``test``), keeping the first ``limit_<split>`` examples."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', not {split!r}")
    source = _source(params.name)
    limit = params.limit_train if split == "train" else params.limit_test
    loaded = source.load(params, split)
    if not isinstance(loaded, tuple):  # a FolderDataset limits itself
        return loaded.limited(limit) if limit is not None else loaded
    images, labels = loaded
    ds = _as_array_dataset(images, labels, source.info, f"{params.name} {split}")
    if limit is not None and limit < len(ds):
        ds = ArrayDataset(ds.images[:limit].contiguous(), ds.labels[:limit].contiguous(), ds.info)
    return ds


def _as_array_dataset(images, labels, info: DatasetInfo, what: str) -> ArrayDataset:
    if isinstance(images, np.ndarray):
        # Parsers return views of read-only file buffers; torch needs writable memory.
        images = np.array(images, order="C", copy=not images.flags.writeable or None)
    images = torch.as_tensor(images)
    labels = torch.as_tensor(np.array(labels, dtype=np.int64) if isinstance(labels, np.ndarray)
                             else labels).to(torch.int64)
    shape = (info.in_channels, info.image_size, info.image_size)
    if images.dtype != torch.uint8 or images.dim() != 4 or tuple(images.shape[1:]) != shape:
        raise DataError(f"{what}: expected uint8 images of shape (N, {', '.join(map(str, shape))}), "
                        f"got {images.dtype} {tuple(images.shape)}")
    if labels.shape != (images.shape[0],):
        raise DataError(f"{what}: {images.shape[0]} images but labels of shape {tuple(labels.shape)}")
    if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= info.num_classes):
        raise DataError(f"{what}: labels outside 0..{info.num_classes - 1}")
    return ArrayDataset(images.contiguous(), labels.contiguous(), info)


def search_split(n: int, train_portion: float) -> tuple[torch.Tensor, torch.Tensor]:
    """DARTS split: ``[0, floor(portion * n))`` trains the weights, the rest trains alpha."""
    if not 0.0 < train_portion <= 1.0:
        raise ValueError(f"train_portion must lie in (0, 1], not {train_portion}")
    cut = int(np.floor(train_portion * n))
    return torch.arange(cut), torch.arange(cut, n)
