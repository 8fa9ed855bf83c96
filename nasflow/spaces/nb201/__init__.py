"""The NAS-Bench-201 cell space (Dong & Yang, ICLR 2020; AutoDL-Projects ``xautodl/models``).

* **Cell**: one cell type (``cell``), 4 nodes (node 0 the cell input), 6 edges
  ``1<-0, 2<-0, 2<-1, 3<-0, 3<-1, 3<-2`` (alpha rows in that order), node = sum of its inputs,
  cell output = node 3 (not a concatenation). 5 ops per edge, in alpha column order
  ``none, skip_connect, nor_conv_1x1, nor_conv_3x3, avg_pool_3x3``: 5^6 = 15,625 cells, each
  one entry of the benchmark (:mod:`~nasflow.spaces.nb201.genotype`).
* **Macro network**: stem conv 3x3 + BN, three stages of N cells at C, 2C, 4C channels with a
  residual block (stride 2) between stages, BN-ReLU, global average pooling, linear
  (``tiny_network.py``). Here **``layers`` (``search.layers``, ``retrain.layers``) is N, the
  number of cells per stage** (3N cells in all), and ``init_channels`` is C; the benchmark
  trains every cell at C = 16, N = 5 (``params/profiles/nb201_protocol.yaml``).
* **Supernet** (``search_model_darts.py``): the cells' op BNs have no affine parameters and
  track running statistics only with ``space.track_running_stats`` (default off: batch
  statistics, as NATS-Bench searches; the NB201 paper reports both, the untracked search
  doing much better, AutoDL issue #70).
* **Derivation** (``TinyNetworkDarts.genotype``): per edge the op of the highest strength
  among all 5, ``none`` included (a ``none`` edge is part of the benchmark's cells).
  ``derive.edges_per_node`` does not apply: every edge of an NB201 cell exists.
* **Genotype**: :class:`Nb201Genotype`, JSON ``{"space": "nb201", "arch": "|...|+|...|+|...|"}``.
* **Standalone network**: :class:`~nasflow.spaces.nb201.network.Nb201Network`, sized by
  ``retrain.init_channels`` (C) and ``retrain.layers`` (N); no auxiliary head and no drop path,
  so ``retrain.auxiliary`` must be false and ``retrain.drop_path_prob`` 0 (``retrain.network``
  does not apply: NB201 uses the same network at every image size).
* **Benchmark look-ups**: :mod:`~nasflow.spaces.nb201.benchmark` (``nasflow lookup``).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from nasflow.errors import NasflowError
from nasflow.params import DeriveParams, RetrainParams
from nasflow.spaces.base import Edge, OpInfo, SearchSpace, SpaceParamsBase, register_space
from nasflow.spaces.nb201.genotype import (
    EDGE_PAIRS,
    N_ARCHS,
    NB201_OPS,
    Nb201Genotype,
    arch_index,
    enumerate_archs,
    format_arch,
    parse_arch,
)
from nasflow.spaces.nb201.network import Nb201Network
from nasflow.spaces.nb201.supernet import CELL, SearchNetwork
from nasflow.spaces.ops import set_fused_mixing

PARAMETRIC = frozenset({"nor_conv_1x1", "nor_conv_3x3"})


class Nb201SpaceParams(SpaceParamsBase):
    """The NAS-Bench-201 cell space (fixed ops and graph)."""

    name: Literal["nb201"] = "nb201"
    track_running_stats: bool = Field(
        False,
        description="search cells' BN tracks running statistics (AutoDL --track_running_stats "
        "1); off: batch statistics always (NATS-Bench; the better search in NB201 Table 5)",
    )


@register_space
class Nb201Space(SearchSpace):
    Params = Nb201SpaceParams
    genotype_kind = "nb201"
    cell_types = (CELL,)
    edges = tuple(Edge(src=src, dst=dst) for dst, src in EDGE_PAIRS)
    n_inputs = 1
    #: cells named in the released code: AutoDL ``cell_searchs/genotypes.py`` ``ResNet_CODE``
    #: (its absent edges written as ``none``), and the topology that AutoDL's NATS-Bench
    #: size-space training script fixes for every candidate of that space
    published: ClassVar[dict[str, Nb201Genotype]] = {
        "NB201_RESNET": Nb201Genotype(
            arch="|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|"),
        "NB201_NATS_SSS": Nb201Genotype(
            arch="|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|"
                 "nor_conv_3x3~1|nor_conv_3x3~2|"),
    }

    def __init__(self, params: Nb201SpaceParams):
        super().__init__(params)
        self.track_running_stats = params.track_running_stats
        self.edge_ops = {CELL: [list(NB201_OPS) for _ in EDGE_PAIRS]}

    def describe(self) -> str:
        return (super().describe() + "\tmacro=3 stages of `layers` cells at C, 2C, 4C "
                "(C = init_channels), ResNet blocks between; NB201: layers 5, C 16")

    def op_info(self, op: str) -> OpInfo:
        if op not in NB201_OPS:
            raise KeyError(f"unknown NB201 op {op!r}")
        return OpInfo(parametric=op in PARAMETRIC)

    def supernet_options(self) -> frozenset[str]:
        return frozenset({"partial_channels"})

    def build_supernet(self, *, C: int, layers: int, num_classes: int, in_channels: int,
                       **options: Any) -> SearchNetwork:
        self.check_supernet_options(options)
        return SearchNetwork(self, C, num_classes, layers, in_channels,
                             partial_channels=options.get("partial_channels", 1),
                             track_running_stats=self.track_running_stats)

    @staticmethod
    def retrain_problem(retrain: RetrainParams) -> tuple[str, str] | None:
        """The retraining key the NB201 network cannot honour, with why (None: none)."""
        if retrain.auxiliary:
            return ("retrain.auxiliary", "the NB201 network has no auxiliary head; set "
                    "retrain.auxiliary: false (params/profiles/nb201_protocol.yaml does)")
        if retrain.drop_path_prob > 0:
            return ("retrain.drop_path_prob", f"{retrain.drop_path_prob}, but the NB201 network "
                    "has no drop path; set it to 0 (params/profiles/nb201_protocol.yaml does)")
        return None

    def check_run(self, config: Any) -> None:
        from nasflow.params import RelationError

        problem = self.retrain_problem(config.retrain)
        if problem:
            raise RelationError((problem[0], "space.name"), f"{problem[0]}: {problem[1]}")

    def build_network(self, genotype: Any, retrain: RetrainParams, *, num_classes: int,
                      in_channels: int) -> Nb201Network:
        if not isinstance(genotype, Nb201Genotype):
            raise NasflowError(f"space nb201 builds NB201 cells, not a "
                               f"{getattr(genotype, 'space', type(genotype).__name__)!r} genotype")
        problem = self.retrain_problem(retrain)
        if problem:
            raise NasflowError(f"{problem[0]}: {problem[1]}")
        return Nb201Network(genotype, C=retrain.init_channels, N=retrain.layers,
                            num_classes=num_classes, in_channels=in_channels)

    def derive(self, strengths: dict[str, np.ndarray], derive: DeriveParams) -> Nb201Genotype:
        """Per edge the strongest of all 5 ops, ``none`` included (AutoDL
        ``TinyNetworkDarts.genotype``: argmax of the edge's alphas; ties: the first column).
        ``derive.edges_per_node`` is ignored: every edge of the cell exists."""
        s = np.asarray(strengths[CELL], dtype=np.float64)
        if s.shape != (self.n_edges, self.width):
            raise NasflowError(f"cell: strengths of shape {list(s.shape)}, the NB201 cell has "
                               f"{self.n_edges} edges x {self.width} ops")
        if not np.isfinite(s).all():
            raise NasflowError("cell: the op strengths hold NaN or infinite values")
        return Nb201Genotype.from_edge_ops([NB201_OPS[k] for k in s.argmax(axis=1)])

    def genotype_from_json(self, data: Any, source: str = "genotype") -> Nb201Genotype:
        return Nb201Genotype.from_json(data, source)


__all__ = [
    "NB201_OPS",
    "N_ARCHS",
    "Nb201Genotype",
    "Nb201Network",
    "Nb201Space",
    "Nb201SpaceParams",
    "SearchNetwork",
    "arch_index",
    "enumerate_archs",
    "format_arch",
    "parse_arch",
    "set_fused_mixing",
]
