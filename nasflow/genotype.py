"""DARTS-space genotypes: a discrete cell as validated JSON, derivation, published cells.

A genotype follows DARTS' layout: for each intermediate node ``edges_per_node`` ``(op, input)``
pairs, where input 0 and 1 are the cell's two inputs and input ``2 + k`` is intermediate node
``k``. Two pairs of a node may name the same input (GDAS keeps two ops on one edge). The same
type serves every space with the DARTS macro network (``darts``, ``rdarts_s1`` .. ``s4``); its
JSON carries ``"space": "darts"`` (files without the tag, written before the space registry,
load unchanged). Other spaces have their own genotype type (``nasflow.spaces.<space>``);
:func:`nasflow.spaces.genotype_from_json` picks the type from the tag. Genotypes are read with
pydantic, never ``eval``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from nasflow.errors import NasflowError
from nasflow.io import read_json, write_json
from nasflow.spaces.ops import OPS


class Genotype(BaseModel):
    """A normal and a reduction cell. ``normal[2k]``, ``normal[2k+1]`` feed node ``k``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    space: Literal["darts"] = "darts"
    normal: list[tuple[str, int]]
    normal_concat: list[int]
    reduce: list[tuple[str, int]]
    reduce_concat: list[int]
    edges_per_node: int = Field(2, ge=1)

    @model_validator(mode="after")
    def _check(self) -> Genotype:
        for cell in ("normal", "reduce"):
            genes: list[tuple[str, int]] = getattr(self, cell)
            if not genes or len(genes) % self.edges_per_node:
                raise ValueError(f"{cell}: needs {self.edges_per_node} (op, input) pairs per node")
            for i, (op, src) in enumerate(genes):
                node = i // self.edges_per_node
                if op not in OPS or op == "none":
                    raise ValueError(f"{cell}[{i}]: unknown op {op!r}")
                if not 0 <= src < node + 2:
                    raise ValueError(
                        f"{cell}[{i}]: input index {src} invalid for node {node} "
                        f"(must be in 0..{node + 1})"
                    )
            concat = getattr(self, f"{cell}_concat")
            n_nodes = len(genes) // self.edges_per_node
            if not concat or any(not 0 <= c < n_nodes + 2 for c in concat):
                raise ValueError(f"{cell}_concat: indices must be in 0..{n_nodes + 1}")
        return self

    @property
    def nodes(self) -> int:
        return len(self.normal) // self.edges_per_node

    def save(self, path: str | os.PathLike) -> None:
        write_json(path, self.model_dump(mode="json"))

    @classmethod
    def from_json(cls, data, source: str = "genotype") -> Genotype:
        """Validate parsed JSON; one error naming ``source`` and the field."""
        if isinstance(data, dict) and "genotype" in data and "normal" not in data:
            data = data["genotype"]  # a search / result record embeds the genotype
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            err = exc.errors()[0]
            key = ".".join(str(p) for p in err["loc"]) or "genotype"
            raise NasflowError(f"{source}: {key}: {err['msg']}") from None

    @classmethod
    def load(cls, path: str | os.PathLike) -> Genotype:
        return cls.from_json(read_json(path), str(path))


def _g(normal, reduce, concat=(2, 3, 4, 5)) -> Genotype:
    return Genotype(normal=normal, normal_concat=list(concat), reduce=reduce,
                    reduce_concat=list(concat))


# Published cells (DARTS genotypes.py; DropNAS README, CIFAR-10 cell).
PUBLISHED: dict[str, Genotype] = {
    "DARTS_V1": _g(
        [("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("skip_connect", 0), ("sep_conv_3x3", 1),
         ("skip_connect", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("skip_connect", 2)],
        [("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 0),
         ("max_pool_3x3", 0), ("skip_connect", 2), ("skip_connect", 2), ("avg_pool_3x3", 0)],
    ),
    "DARTS_V2": _g(
        [("sep_conv_3x3", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("sep_conv_3x3", 1),
         ("sep_conv_3x3", 1), ("skip_connect", 0), ("skip_connect", 0), ("dil_conv_3x3", 2)],
        [("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 1),
         ("max_pool_3x3", 0), ("skip_connect", 2), ("skip_connect", 2), ("max_pool_3x3", 1)],
    ),
    "DropNAS_C10": _g(
        [("sep_conv_3x3", 1), ("skip_connect", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0),
         ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("dil_conv_5x5", 4), ("dil_conv_3x3", 1)],
        [("max_pool_3x3", 0), ("sep_conv_5x5", 1), ("dil_conv_5x5", 2), ("sep_conv_5x5", 1),
         ("dil_conv_5x5", 3), ("dil_conv_5x5", 2), ("dil_conv_5x5", 3), ("dil_conv_5x5", 4)],
    ),
}




def derive_cell(
    alpha: np.ndarray,
    edge_ops: Sequence[Sequence[str]],
    nodes: int,
    rank_by: Literal["softmax", "alpha"] = "softmax",
    edges_per_node: int = 2,
) -> list[tuple[str, int]]:
    """DARTS derivation (Liu et al. 2019, Sec. 2.4) for one cell type.

    Per edge the strongest non-``none`` op is kept; per node the ``edges_per_node`` incoming
    edges whose kept op is strongest are selected. Strength is the softmax weight over the
    edge's ops (DARTS; DropNAS paper) or the raw alpha (``rank_by="alpha"``, DropNAS code).
    ``alpha`` is (edges, K) with columns following ``edge_ops`` (padded columns ignored).
    """
    genes: list[tuple[str, int]] = []
    start = 0
    for node in range(nodes):
        n_in = node + 2
        candidates = []
        for j in range(n_in):
            ops = list(edge_ops[start + j])
            row = np.asarray(alpha[start + j][: len(ops)], dtype=np.float64)
            if rank_by == "softmax":
                row = np.exp(row - row.max())
                row = row / row.sum()
            best_k, best_v = None, -np.inf
            for k, op in enumerate(ops):
                if op != "none" and row[k] > best_v:
                    best_k, best_v = k, row[k]
            if best_k is not None:
                candidates.append((best_v, j, ops[best_k]))
        if len(candidates) < edges_per_node:
            raise NasflowError(
                f"node {node}: only {len(candidates)} edges have a non-'none' op, "
                f"{edges_per_node} needed"
            )
        # Stable: ties go to the lower input index, like DARTS' sorted(..., key=-max).
        candidates.sort(key=lambda c: (-c[0], c[1]))
        genes.extend((op, j) for _, j, op in candidates[:edges_per_node])
        start += n_in
    return genes


def derive_genotype(
    alpha_normal: np.ndarray,
    alpha_reduce: np.ndarray,
    edge_ops_normal: Sequence[Sequence[str]],
    edge_ops_reduce: Sequence[Sequence[str]],
    nodes: int,
    rank_by: Literal["softmax", "alpha"] = "softmax",
    edges_per_node: int = 2,
) -> Genotype:
    concat = list(range(2, 2 + nodes))
    return Genotype(
        normal=derive_cell(alpha_normal, edge_ops_normal, nodes, rank_by, edges_per_node),
        normal_concat=concat,
        reduce=derive_cell(alpha_reduce, edge_ops_reduce, nodes, rank_by, edges_per_node),
        reduce_concat=concat,
        edges_per_node=edges_per_node,
    )
