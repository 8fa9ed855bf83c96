"""NAS-Bench-201 cells as strings, per-edge op lists and a validated genotype type.

A cell has 4 nodes; node 0 is the cell input, node ``i`` sums one op applied to every earlier
node ``j < i``: 6 edges, in the row order of the architecture parameters
``1<-0, 2<-0, 2<-1, 3<-0, 3<-1, 3<-2`` (AutoDL's sorted ``edge2index`` keys). The benchmark
writes a cell as ``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|``: nodes 1, 2, 3 separated by ``+``,
each a ``|``-delimited list of ``op~input`` (AutoDL ``Structure.tostr``; ``none`` edges are
written out, as in the benchmark's ``meta_archs``). 5 ops on 6 edges: 15,625 cells.

:func:`enumerate_archs` gives every cell in the benchmark's index order: AutoDL's
``CellStructure.gen_all(ops, 4, False)`` (a product over the edges in the order above, the op
order of ``NAS_BENCH_201``, the last edge fastest) shuffled by ``random.seed(88);
random.shuffle`` (``exps/NAS-Bench-201/main.py generate_meta_info``, which asserts the cells
at indices 0, 9 and 123; NATS-Bench's topology space uses the same order).
"""

from __future__ import annotations

import itertools
import os
import random
from functools import lru_cache
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from nasflow.errors import NasflowError

#: alpha column order (AutoDL ``cell_operations.NAS_BENCH_201``)
NB201_OPS: tuple[str, ...] = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
NODES = 4  # node 0 (the cell input) and nodes 1..3
#: (dst, src) of every edge, in alpha row order
EDGE_PAIRS: tuple[tuple[int, int], ...] = tuple((i, j) for i in range(1, NODES) for j in range(i))
N_ARCHS = len(NB201_OPS) ** len(EDGE_PAIRS)  # 15,625
SHUFFLE_SEED = 88  # generate_meta_info: "please do not change this line for reproducibility"


def parse_arch(text: str) -> tuple[str, ...]:
    """The op of every edge (alpha row order) of an NB201 cell string; ``ValueError`` naming
    the first problem. The inputs of a node may come in any order; each earlier node must be
    an input exactly once (write ``none~j`` for a missing edge)."""
    if not isinstance(text, str):
        raise ValueError(f"an NB201 cell string is text, not {type(text).__name__}")
    parts = text.split("+")
    if len(parts) != NODES - 1:
        raise ValueError(f"{text!r}: needs {NODES - 1} nodes separated by '+', found {len(parts)} "
                         "(e.g. |nor_conv_3x3~0|+|none~0|skip_connect~1|+|...~0|...~1|...~2|)")
    ops: dict[tuple[int, int], str] = {}
    for node, part in enumerate(parts, start=1):
        if len(part) < 2 or not (part.startswith("|") and part.endswith("|")):
            raise ValueError(f"node {node}: {part!r} must be written |op~input|...|")
        tokens = part[1:-1].split("|")
        if len(tokens) != node:
            raise ValueError(f"node {node}: has {len(tokens)} input(s) {part!r}, needs {node} "
                             f"(one per earlier node 0..{node - 1}; write none~j for no edge)")
        for token in tokens:
            op, sep, src = token.partition("~")
            if not sep or not op or "~" in src:
                raise ValueError(f"node {node}: {token!r} is not op~input")
            if op not in NB201_OPS:
                raise ValueError(f"node {node}: unknown op {op!r}; NB201 ops: {', '.join(NB201_OPS)}")
            if not (src.isascii() and src.isdigit()) or int(src) >= node:
                raise ValueError(f"node {node}: input {src!r} in {token!r} must be an earlier "
                                 f"node 0..{node - 1}")
            if (node, int(src)) in ops:
                raise ValueError(f"node {node}: input {src} appears twice")
            ops[(node, int(src))] = op
    return tuple(ops[pair] for pair in EDGE_PAIRS)


def format_arch(edge_ops: tuple[str, ...] | list[str]) -> str:
    """The canonical NB201 string of per-edge ops (alpha row order; inputs ascending)."""
    if len(edge_ops) != len(EDGE_PAIRS):
        raise ValueError(f"an NB201 cell has {len(EDGE_PAIRS)} edges, got {len(edge_ops)} ops")
    nodes: list[list[str]] = [[] for _ in range(NODES - 1)]
    for (dst, src), op in zip(EDGE_PAIRS, edge_ops, strict=True):
        if op not in NB201_OPS:
            raise ValueError(f"edge {dst}<-{src}: unknown op {op!r}; NB201 ops: {', '.join(NB201_OPS)}")
        nodes[dst - 1].append(f"{op}~{src}")
    return "+".join("|" + "|".join(node) + "|" for node in nodes)


@lru_cache(maxsize=1)
def _archs() -> tuple[str, ...]:
    archs = [format_arch(ops) for ops in itertools.product(NB201_OPS, repeat=len(EDGE_PAIRS))]
    random.Random(SHUFFLE_SEED).shuffle(archs)  # same draws as random.seed(88); random.shuffle
    return tuple(archs)


@lru_cache(maxsize=1)
def _index() -> dict[str, int]:
    return {arch: i for i, arch in enumerate(_archs())}


def enumerate_archs() -> tuple[str, ...]:
    """All 15,625 cell strings in the benchmark's index order (see the module docstring)."""
    return _archs()


def arch_index(arch: str) -> int:
    """The benchmark index of a cell string (canonicalised first)."""
    return _index()[format_arch(parse_arch(arch))]


class Nb201Genotype(BaseModel):
    """A NAS-Bench-201 cell: ``arch`` is the benchmark's string, kept in canonical form."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    space: Literal["nb201"] = "nb201"
    arch: str

    @field_validator("arch")
    @classmethod
    def _canonical(cls, value: Any) -> str:
        return format_arch(parse_arch(value))

    @property
    def edge_ops(self) -> tuple[str, ...]:
        """The op of every edge, in alpha row order (``1<-0, 2<-0, 2<-1, 3<-0, 3<-1, 3<-2``)."""
        return parse_arch(self.arch)

    @property
    def nodes(self) -> list[list[tuple[str, int]]]:
        """Per node 1..3 its ``(op, input)`` pairs (AutoDL ``Structure.nodes``)."""
        out: list[list[tuple[str, int]]] = [[] for _ in range(NODES - 1)]
        for (dst, src), op in zip(EDGE_PAIRS, self.edge_ops, strict=True):
            out[dst - 1].append((op, src))
        return out

    @property
    def index(self) -> int:
        """The cell's index in NAS-Bench-201 / NATS-Bench (topology) order."""
        return _index()[self.arch]

    @classmethod
    def from_edge_ops(cls, edge_ops: tuple[str, ...] | list[str]) -> Nb201Genotype:
        return cls(arch=format_arch(edge_ops))

    def __str__(self) -> str:
        return self.arch

    def save(self, path: str | os.PathLike) -> None:
        from nasflow.io import write_json

        write_json(path, self.model_dump(mode="json"))

    @classmethod
    def from_json(cls, data: Any, source: str = "genotype") -> Nb201Genotype:
        """Validate parsed JSON (a bare genotype or a record embedding one under
        ``genotype``); one error naming ``source`` and the field."""
        if isinstance(data, dict) and "genotype" in data and "arch" not in data:
            data = data["genotype"]
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            err = exc.errors()[0]
            key = ".".join(str(p) for p in err["loc"]) or "genotype"
            msg = str(err["msg"]).removeprefix("Value error, ")
            raise NasflowError(f"{source}: {key}: {msg}") from None

    @classmethod
    def load(cls, path: str | os.PathLike) -> Nb201Genotype:
        from nasflow.io import read_json

        return cls.from_json(read_json(path), str(path))


__all__ = [
    "EDGE_PAIRS",
    "NB201_OPS",
    "NODES",
    "N_ARCHS",
    "Nb201Genotype",
    "arch_index",
    "enumerate_archs",
    "format_arch",
    "parse_arch",
]
