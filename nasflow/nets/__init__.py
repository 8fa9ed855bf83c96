"""Retraining networks built from a genotype (DARTS ``model.py``, faithfully)."""

from __future__ import annotations

from typing import Literal

from torch import nn

from nasflow.genotype import Genotype
from nasflow.nets.darts_nets import (
    AuxiliaryHeadCIFAR,
    AuxiliaryHeadImageNet,
    Cell,
    NetworkCIFAR,
    NetworkImageNet,
    drop_path,
)

__all__ = [
    "AuxiliaryHeadCIFAR",
    "AuxiliaryHeadImageNet",
    "Cell",
    "NetworkCIFAR",
    "NetworkImageNet",
    "build_network",
    "drop_path",
]

_NETWORKS = {"cifar": NetworkCIFAR, "imagenet": NetworkImageNet}


def build_network(kind: Literal["cifar", "imagenet"], genotype: Genotype, *, C: int, layers: int,
                  num_classes: int, auxiliary: bool, in_channels: int = 3) -> nn.Module:
    """The DARTS retraining network of ``kind`` for ``genotype``.

    ``cifar``: :class:`NetworkCIFAR` (stem at full resolution; CIFAR, MNIST-like, digits).
    ``imagenet``: :class:`NetworkImageNet` (two stride-2 stems, 1/8 resolution; ``C`` even).
    """
    try:
        cls = _NETWORKS[kind]
    except KeyError:
        raise ValueError(f"unknown network kind {kind!r}; expected one of {sorted(_NETWORKS)}") from None
    return cls(C, num_classes, layers, auxiliary, genotype, in_channels=in_channels)
