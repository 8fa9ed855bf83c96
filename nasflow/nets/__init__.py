"""Retraining networks built from a genotype (DARTS ``model.py``, faithfully)."""

from __future__ import annotations

from typing import Literal

from torch import nn

from nasflow.genotype import Genotype
from nasflow.nets.darts_nets import NetworkCIFAR, NetworkImageNet

__all__ = ["NetworkCIFAR", "NetworkImageNet", "build_network"]


def build_network(kind: Literal["cifar", "imagenet"], genotype: Genotype, *, C: int, layers: int,
                  num_classes: int, auxiliary: bool, in_channels: int = 3) -> nn.Module:
    cls = {"cifar": NetworkCIFAR, "imagenet": NetworkImageNet}[kind]
    return cls(C, num_classes, layers, auxiliary, genotype, in_channels=in_channels)
