"""The op set of a cell space as data: which ops sit on which edge of which cell type.

Alphas are stored per cell type as one (edges, K) tensor; an edge with fewer than K ops
(RobustDARTS-style per-edge lists) has its extra columns marked invalid in ``valid``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nasflow.params import SpaceParams
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


@dataclass(frozen=True)
class CellSpace:
    nodes: int
    edge_ops: dict[str, list[list[str]]]  # cell type -> per-edge op names
    stem_multiplier: int = 3

    @property
    def n_edges(self) -> int:
        return sum(2 + i for i in range(self.nodes))

    @property
    def width(self) -> int:
        return max(len(ops) for lists in self.edge_ops.values() for ops in lists)

    def valid(self, cell: str) -> np.ndarray:
        """(edges, K) bool: True where an op exists."""
        mask = np.zeros((self.n_edges, self.width), dtype=bool)
        for e, ops in enumerate(self.edge_ops[cell]):
            mask[e, : len(ops)] = True
        return mask

    def parametric(self, cell: str) -> np.ndarray:
        """(edges, K) bool: True for valid ops with learnable weights (DropNAS group O_p)."""
        mask = np.zeros((self.n_edges, self.width), dtype=bool)
        for e, ops in enumerate(self.edge_ops[cell]):
            for k, op in enumerate(ops):
                mask[e, k] = OPS[op].parametric
        return mask

    def edge_inputs(self) -> list[int]:
        """Input node index of every edge, in alpha row order."""
        return [j for i in range(self.nodes) for j in range(2 + i)]


def build_cell_space(params: SpaceParams) -> CellSpace:
    n_edges = sum(2 + i for i in range(params.nodes))
    if params.edge_ops:
        edge_ops = {c: [list(e) for e in params.edge_ops.get(c, [])] for c in CELL_TYPES}
        for cell in CELL_TYPES:  # a cell type not given takes the other's lists
            if not edge_ops[cell]:
                other = "reduce" if cell == "normal" else "normal"
                edge_ops[cell] = [list(e) for e in edge_ops[other]]
    else:
        ops = list(params.ops) if params.ops else variant_ops(params.variant)
        edge_ops = {c: [list(ops) for _ in range(n_edges)] for c in CELL_TYPES}
    return CellSpace(nodes=params.nodes, edge_ops=edge_ops, stem_multiplier=params.stem_multiplier)
