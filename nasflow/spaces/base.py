"""The search-space interface and registry (after timm's ``register_model``).

A space declares everything a method, the derivation and the retraining need to know about it,
so that methods never assume the DARTS cell:

* its **cell types** (DARTS: ``normal``, ``reduce``; NAS-Bench-201: one ``cell``);
* its **edges**: per edge the node it reads (``Edge.src``) and the node it feeds
  (``Edge.dst``), in the row order of the architecture parameters; nodes ``0 .. n_inputs-1``
  are the cell inputs and a node sums its incoming edges;
* the **op list of every edge** per cell type (alphas are one ``(edges, width)`` tensor per
  cell type; an edge with fewer ops than ``width`` has its extra columns marked invalid);
* how to build its weight-sharing **supernet** (``forward(x, weights, active)`` with one
  ``(edges, width)`` weight matrix and one tuple of executed op columns per edge and cell type),
  the **standalone network** of a derived genotype, how a **genotype is derived** from per-edge
  op strengths (a method's ``readout``), and its **genotype type**.

To add a space: subclass :class:`SearchSpace` in a module under ``nasflow/spaces/``, give it a
``Params`` model with ``name: Literal["..."]`` and decorate it with :func:`register_space`;
import the module in ``nasflow/spaces/__init__.py``. The contract tests then cover it with
every method whose ops it supports.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, ClassVar

import numpy as np
from torch import nn

from nasflow.params import DeriveParams, RetrainParams, StrictModel

SPACES: dict[str, type[SearchSpace]] = {}

# Per cell type: for each edge, the tuple of op columns to execute this step.
ActiveOps = dict[str, list[tuple[int, ...]]]


def active_from_mask(mask: np.ndarray, edge_ops: Sequence[Sequence[str]]) -> list[tuple[int, ...]]:
    """Host-side (no device sync) list of executable op columns per edge (``none`` never runs:
    it contributes exactly zero, so skipping it changes neither values nor gradients)."""
    return [
        tuple(k for k in map(int, np.flatnonzero(row[: len(ops)])) if ops[k] != "none")
        for row, ops in zip(mask, edge_ops, strict=True)
    ]


class SpaceParamsBase(StrictModel):
    """Params of one space (``space`` section); subclasses add the space's own keys."""

    name: str


@dataclass(frozen=True)
class Edge:
    """One edge of a cell: ``src`` feeds node ``dst`` (nodes ``0 .. n_inputs - 1`` are the
    cell's inputs)."""

    src: int
    dst: int


@dataclass(frozen=True)
class OpInfo:
    """What methods may ask of an op without building it."""

    parametric: bool
    """has learnable weights (DropNAS group O_p)"""


def register_space(cls: type[SearchSpace]) -> type[SearchSpace]:
    name = cls.Params.model_fields["name"].default
    if not name:
        raise TypeError(f"{cls.__name__}.Params.name needs a default (the space's name)")
    if name in SPACES:
        raise TypeError(f"space {name!r} is registered twice")
    SPACES[name] = cls
    cls.name = name
    return cls


class SearchSpace(ABC):
    """Base class of every registered space. A space object is cheap (no tensors)."""

    name: ClassVar[str] = ""
    Params: ClassVar[type[SpaceParamsBase]] = SpaceParamsBase
    #: the ``space`` tag of this space's genotype JSON (spaces sharing a macro network share it)
    genotype_kind: ClassVar[str] = ""

    cell_types: tuple[str, ...]
    edges: tuple[Edge, ...]
    edge_ops: dict[str, list[list[str]]]
    n_inputs: int

    def __init__(self, params: SpaceParamsBase):
        self.params = params

    # ---- the declaration -----------------------------------------------------------------
    @property
    def n_edges(self) -> int:
        return len(self.edges)

    @property
    def nodes(self) -> int:
        """Intermediate nodes per cell (nodes that are not cell inputs)."""
        return max(e.dst for e in self.edges) - self.n_inputs + 1

    @cached_property
    def width(self) -> int:
        return max(len(ops) for lists in self.edge_ops.values() for ops in lists)

    def edge_inputs(self) -> list[int]:
        """Input node of every edge, in alpha row order."""
        return [e.src for e in self.edges]

    def node_edges(self) -> list[list[int]]:
        """For each intermediate node, the rows of its incoming edges."""
        out: list[list[int]] = [[] for _ in range(self.nodes)]
        for row, e in enumerate(self.edges):
            out[e.dst - self.n_inputs].append(row)
        return out

    def valid(self, cell: str) -> np.ndarray:
        """(edges, width) bool: True where an op exists."""
        mask = np.zeros((self.n_edges, self.width), dtype=bool)
        for e, ops in enumerate(self.edge_ops[cell]):
            mask[e, : len(ops)] = True
        return mask

    def parametric(self, cell: str) -> np.ndarray:
        """(edges, width) bool: True for valid ops with learnable weights."""
        mask = np.zeros((self.n_edges, self.width), dtype=bool)
        for e, ops in enumerate(self.edge_ops[cell]):
            for k, op in enumerate(ops):
                mask[e, k] = self.op_info(op).parametric
        return mask

    def op_names(self) -> list[str]:
        """Every op name that occurs in this space, in first-seen order."""
        seen: dict[str, None] = {}
        for lists in self.edge_ops.values():
            for ops in lists:
                seen.update(dict.fromkeys(ops))
        return list(seen)

    def describe(self) -> str:
        """One line for ``nasflow spaces``: name, cell types, edges, ops."""
        ops = self.op_names()
        per_edge = {len(o) for lists in self.edge_ops.values() for o in lists}
        k = str(per_edge.pop()) if len(per_edge) == 1 else f"{min(per_edge)}-{max(per_edge)}"
        return (f"{self.name}\tcells={','.join(self.cell_types)}\tedges={self.n_edges}"
                f"\tnodes={self.nodes}\tops/edge={k}\tops={','.join(ops)}")

    # ---- what each space implements ------------------------------------------------------
    @abstractmethod
    def op_info(self, op: str) -> OpInfo:
        """Facts about op ``op`` of this space (raises KeyError for an unknown op)."""

    @abstractmethod
    def build_supernet(self, *, C: int, layers: int, num_classes: int, in_channels: int,
                       **options: Any) -> nn.Module:
        """The weight-sharing network. ``forward(x, weights, active, return_features=False)``:
        ``weights[cell]`` is the (edges, width) op-weight matrix of that cell type,
        ``active[cell][e]`` the op columns to execute on edge ``e``. ``options`` are
        method-requested supernet features (e.g. ``partial_channels``); a space that cannot
        honour one raises ``ValueError``."""

    @abstractmethod
    def build_network(self, genotype: Any, retrain: RetrainParams, *, num_classes: int,
                      in_channels: int) -> nn.Module:
        """The standalone network of a derived genotype, sized by ``retrain``."""

    @abstractmethod
    def derive(self, strengths: dict[str, np.ndarray], derive: DeriveParams) -> Any:
        """A genotype from per-(edge, op) strengths (higher = stronger, one (edges, width)
        array per cell type, padded columns ignored): the space's selection rule."""

    @abstractmethod
    def genotype_from_json(self, data: Any, source: str = "genotype") -> Any:
        """Validate a genotype of this space from parsed JSON (errors name ``source``)."""

    # an optional hook: spaces that honour every section keep this no-op default
    def check_run(self, config: Any) -> None:  # noqa: B027
        """Refuse, at config load, sections this space cannot honour (raise
        :class:`nasflow.params.RelationError` naming the keys)."""

    def supernet_options(self) -> frozenset[str]:
        """The ``build_supernet`` options this space honours."""
        return frozenset()

    def check_supernet_options(self, options: dict[str, Any]) -> None:
        """Refuse ``build_supernet`` options this space does not honour."""
        unknown = set(options) - self.supernet_options()
        if unknown:
            raise ValueError(f"space {self.name!r} cannot build a supernet with {sorted(unknown)}")

    def supports_ops(self, ops: set[str]) -> bool:
        """Whether every op in ``ops`` exists in this space."""
        return ops <= set(self.op_names())
