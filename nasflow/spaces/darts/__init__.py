"""The DARTS CNN cell space (Liu et al. 2019, Sec. 2.1), with its op-set variants.

Two cell types (``normal``, ``reduce``) of ``nodes`` intermediate nodes; node ``i`` reads the
two cell inputs and every earlier node (``2 + i`` edges), sums them, and the cell outputs the
concatenation of its intermediate nodes. The op set is data: the 8 DARTS ops (``original``),
DropNAS' ``3-skip`` / ``1-skip`` variants (Sec. 5.3), or a ``custom`` list for every edge or per
edge. Macro network: the DARTS supernet (:class:`SearchNetwork`) and ``NetworkCIFAR`` /
``NetworkImageNet`` for retraining.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from nasflow.errors import NasflowError
from nasflow.params import DeriveParams, RetrainParams
from nasflow.spaces.base import Edge, OpInfo, SearchSpace, SpaceParamsBase, register_space
from nasflow.spaces.darts.supernet import SearchNetwork
from nasflow.spaces.ops import DARTS_OPS, OPS

CELL_TYPES = ("normal", "reduce")


def variant_ops(variant: str) -> list[str]:
    """DropNAS Sec. 5.3 space variants over the DARTS op list."""
    if variant == "original":
        return list(DARTS_OPS)
    if variant == "3-skip":  # both poolings replaced by skip_connect: three skips per edge
        return ["skip_connect" if "pool" in op else op for op in DARTS_OPS]
    if variant == "1-skip":  # poolings removed
        return [op for op in DARTS_OPS if "pool" not in op]
    raise ValueError(f"no built-in op list for variant {variant!r}")


def darts_edges(nodes: int) -> tuple[Edge, ...]:
    """Node ``i`` (cell node ``2 + i``) reads inputs 0, 1 and nodes 2 .. 1 + i, in that order."""
    return tuple(Edge(src=j, dst=2 + i) for i in range(nodes) for j in range(2 + i))


def check_op_lists(ops: list[str], where: str) -> None:
    for op in ops:
        if op not in OPS:
            raise ValueError(f"{where}: unknown op {op!r}; known: {', '.join(OPS)}")


class DartsSpaceParams(SpaceParamsBase):
    """The DARTS CNN cell space; the op set is data (DropNAS variants, RobustDARTS-style lists)."""

    name: Literal["darts"] = "darts"
    variant: Literal["original", "3-skip", "1-skip", "custom"] = Field(
        "original",
        description="original: 8 DARTS ops; 3-skip: both poolings replaced by skip_connect; "
        "1-skip: poolings removed (DropNAS Sec. 5.3); custom: take `ops` / `edge_ops`",
    )
    ops: list[str] | None = Field(None, description="op list for every edge (variant=custom)")
    edge_ops: dict[Literal["normal", "reduce"], list[list[str]]] | None = Field(
        None, description="per-edge op lists, RobustDARTS S1-S4 style (variant=custom)"
    )
    nodes: int = Field(4, ge=1, le=8, description="intermediate nodes per cell")
    stem_multiplier: int = Field(3, ge=1, le=8)

    @model_validator(mode="after")
    def _check_ops(self) -> DartsSpaceParams:
        check_op_lists(list(self.ops or []), "space.ops")
        for cell, cell_lists in (self.edge_ops or {}).items():
            for e, edge in enumerate(cell_lists):
                check_op_lists(edge, f"space.edge_ops.{cell}[{e}]")
        if self.variant == "custom" and not (self.ops or self.edge_ops):
            raise ValueError("variant 'custom' needs `ops` or `edge_ops`")
        if self.variant != "custom" and (self.ops or self.edge_ops):
            raise ValueError(f"`ops` / `edge_ops` need variant 'custom', not {self.variant!r}")
        n_edges = sum(2 + i for i in range(self.nodes))
        for cell, cell_lists in (self.edge_ops or {}).items():
            if len(cell_lists) != n_edges:
                raise ValueError(f"edge_ops.{cell} has {len(cell_lists)} edges, needs {n_edges}")
            if any(len(edge) == 0 for edge in cell_lists):
                raise ValueError(f"edge_ops.{cell}: every edge needs at least one op")
        return self


class DartsLikeSpace(SearchSpace):
    """The DARTS macro network and cell graph over some per-edge op lists. Subclasses (the
    RobustDARTS spaces) only choose the lists."""

    genotype_kind = "darts"
    cell_types = CELL_TYPES
    n_inputs = 2

    def __init__(self, params: Any, nodes: int, edge_ops: dict[str, list[list[str]]],
                 stem_multiplier: int):
        super().__init__(params)
        self.edges = darts_edges(nodes)
        self.edge_ops = edge_ops
        self.stem_multiplier = stem_multiplier

    def op_info(self, op: str) -> OpInfo:
        return OpInfo(parametric=OPS[op].parametric)

    def supernet_options(self) -> frozenset[str]:
        return frozenset({"partial_channels"})

    def build_supernet(self, *, C: int, layers: int, num_classes: int, in_channels: int,
                       **options: Any) -> SearchNetwork:
        self.check_supernet_options(options)
        return SearchNetwork(self, C, num_classes, layers, in_channels,
                             partial_channels=options.get("partial_channels", 1))

    def build_network(self, genotype: Any, retrain: RetrainParams, *, num_classes: int,
                      in_channels: int):
        from nasflow.nets import build_network

        return build_network(retrain.network, genotype, C=retrain.init_channels,
                             layers=retrain.layers, num_classes=num_classes,
                             auxiliary=retrain.auxiliary, in_channels=in_channels)

    def derive(self, strengths: dict[str, np.ndarray], derive: DeriveParams):
        """DARTS' rule (Sec. 2.4) on the given strengths: per edge the strongest non-``none``
        op, per node the ``edges_per_node`` strongest edges (``nasflow.genotype.derive_cell``)."""
        from nasflow.genotype import Genotype, derive_cell

        genes = {}
        for cell in CELL_TYPES:
            try:
                genes[cell] = derive_cell(strengths[cell], self.edge_ops[cell], self.nodes,
                                          rank_by="alpha", edges_per_node=derive.edges_per_node)
            except NasflowError as exc:
                raise NasflowError(f"{cell} cell: {exc}") from None
        concat = list(range(2, 2 + self.nodes))
        return Genotype(normal=genes["normal"], normal_concat=concat, reduce=genes["reduce"],
                        reduce_concat=concat, edges_per_node=derive.edges_per_node)

    def genotype_from_json(self, data: Any, source: str = "genotype"):
        from nasflow.genotype import Genotype

        return Genotype.from_json(data, source)


@register_space
class DartsSpace(DartsLikeSpace):
    Params = DartsSpaceParams

    def __init__(self, params: DartsSpaceParams):
        n_edges = sum(2 + i for i in range(params.nodes))
        if params.edge_ops:
            given = {str(c): lists for c, lists in params.edge_ops.items()}
            edge_ops = {c: [list(e) for e in given.get(c, [])] for c in CELL_TYPES}
            for cell in CELL_TYPES:  # a cell type not given takes the other's lists
                if not edge_ops[cell]:
                    other = "reduce" if cell == "normal" else "normal"
                    edge_ops[cell] = [list(e) for e in edge_ops[other]]
        else:
            ops = list(params.ops) if params.ops else variant_ops(params.variant)
            edge_ops = {c: [list(ops) for _ in range(n_edges)] for c in CELL_TYPES}
        super().__init__(params, params.nodes, edge_ops, params.stem_multiplier)


__all__ = ["CELL_TYPES", "DartsLikeSpace", "DartsSpace", "DartsSpaceParams", "SearchNetwork",
           "darts_edges", "variant_ops"]
