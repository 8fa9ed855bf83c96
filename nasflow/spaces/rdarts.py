"""The RobustDARTS spaces S1-S4 (Zela et al., ICLR 2020, Sec. 3; automl/RobustDARTS
``src/spaces.py``): the DARTS cell and macro network with reduced per-edge op lists, built to
make DARTS fail (parameter-free ops and ``noise`` win).

* S1: two ops per edge, the op pairs the paper found by iteratively dropping the least
  important op of every edge of the full DARTS space (per edge and cell type, as released);
* S2: ``{skip_connect, sep_conv_3x3}`` on every edge;
* S3: ``{none, skip_connect, sep_conv_3x3}``;
* S4: ``{noise, sep_conv_3x3}``, where ``noise`` outputs N(0, 1) of its (stride-subsampled)
  input's shape (:class:`nasflow.spaces.ops.Noise`).

The op order of each list is the alpha column order of the released code.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from nasflow.spaces.base import SpaceParamsBase, register_space
from nasflow.spaces.darts import DartsLikeSpace

# S1 per edge e0..e13 (node0 {c_k-2, c_k-1}, node1 {0, 1, 2}, node2 {0..3}, node3 {0..4}).
S1_EDGE_OPS: dict[str, list[list[str]]] = {
    "normal": [
        ["skip_connect", "dil_conv_3x3"], ["skip_connect", "dil_conv_5x5"],
        ["skip_connect", "dil_conv_5x5"], ["skip_connect", "sep_conv_3x3"],
        ["skip_connect", "dil_conv_3x3"], ["max_pool_3x3", "skip_connect"],
        ["skip_connect", "sep_conv_3x3"], ["skip_connect", "sep_conv_3x3"],
        ["skip_connect", "dil_conv_3x3"], ["skip_connect", "sep_conv_3x3"],
        ["max_pool_3x3", "skip_connect"], ["skip_connect", "dil_conv_3x3"],
        ["dil_conv_3x3", "dil_conv_5x5"], ["dil_conv_3x3", "dil_conv_5x5"],
    ],
    "reduce": [
        ["max_pool_3x3", "avg_pool_3x3"], ["max_pool_3x3", "dil_conv_3x3"],
        ["max_pool_3x3", "avg_pool_3x3"], ["max_pool_3x3", "avg_pool_3x3"],
        ["skip_connect", "dil_conv_5x5"], ["max_pool_3x3", "avg_pool_3x3"],
        ["max_pool_3x3", "sep_conv_3x3"], ["skip_connect", "dil_conv_3x3"],
        ["skip_connect", "dil_conv_5x5"], ["max_pool_3x3", "avg_pool_3x3"],
        ["max_pool_3x3", "avg_pool_3x3"], ["skip_connect", "dil_conv_5x5"],
        ["skip_connect", "dil_conv_5x5"], ["skip_connect", "dil_conv_5x5"],
    ],
}
UNIFORM_OPS: dict[str, list[str]] = {
    "rdarts_s2": ["skip_connect", "sep_conv_3x3"],
    "rdarts_s3": ["none", "skip_connect", "sep_conv_3x3"],
    "rdarts_s4": ["noise", "sep_conv_3x3"],
}
NODES = 4  # the spaces are defined for the 4-node DARTS cell (14 edges)
N_EDGES = 14


def _edge_ops(name: str) -> dict[str, list[list[str]]]:
    if name == "rdarts_s1":
        return {c: [list(e) for e in lists] for c, lists in S1_EDGE_OPS.items()}
    return {c: [list(UNIFORM_OPS[name]) for _ in range(N_EDGES)] for c in ("normal", "reduce")}


class _RDartsSpace(DartsLikeSpace):
    def __init__(self, params):
        super().__init__(params, NODES, _edge_ops(params.name), params.stem_multiplier)


def _params(space: str) -> type[SpaceParamsBase]:
    doc = f"RobustDARTS {space[-2:].upper()}: the DARTS cell with fixed per-edge op lists."
    return type(f"RDarts{space[-2:].upper()}Params", (SpaceParamsBase,), {
        "__doc__": doc,
        "__annotations__": {"name": Literal[space], "stem_multiplier": int},  # type: ignore[valid-type]
        "name": space,
        "stem_multiplier": Field(3, ge=1, le=8),
    })


@register_space
class RDartsS1(_RDartsSpace):
    Params = _params("rdarts_s1")


@register_space
class RDartsS2(_RDartsSpace):
    Params = _params("rdarts_s2")


@register_space
class RDartsS3(_RDartsSpace):
    Params = _params("rdarts_s3")


@register_space
class RDartsS4(_RDartsSpace):
    Params = _params("rdarts_s4")
