"""The DARTS weight-sharing supernet (Liu et al. 2019, Sec. 2.2, Eq. 2).

The network holds only the operation weights ``w``; architecture parameters live in the
search method, which passes per-step op weights and the set of ops to execute. Ops that are
not active (DropNAS-dropped) and the ``none`` op are never executed: ``none`` contributes
exactly zero to the mixed output, so skipping it changes neither values nor gradients.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from nasflow.spaces.cell_space import CellSpace
from nasflow.spaces.ops import (
    FactorizedReduce,
    LazyReLU,
    ReLUConvBN,
    SharesReLU,
    build_op,
    run_op,
    set_switch,
)

# Per cell type: for each edge, the tuple of op columns to execute this step.
ActiveOps = dict[str, list[tuple[int, ...]]]


def active_from_mask(mask: np.ndarray, edge_ops: Sequence[Sequence[str]]) -> list[tuple[int, ...]]:
    """Host-side (no device sync) list of executable op columns per edge."""
    return [
        tuple(int(k) for k in np.flatnonzero(row[: len(ops)]) if ops[k] != "none")
        for row, ops in zip(mask, edge_ops, strict=True)
    ]


class MixedOp(nn.Module):
    """All candidate ops of one edge; ``forward`` sums ``w_k * op_k(x)`` over active ``k``."""

    def __init__(self, C: int, stride: int, ops: Sequence[str]):
        super().__init__()
        self.stride = stride
        # 'none' gets a placeholder so column indices line up with the alpha columns.
        self.ops = nn.ModuleList(
            nn.Identity() if name == "none" else build_op(name, C, stride, affine=False)
            for name in ops
        )
        self.relu_cols = frozenset(k for k, op in enumerate(self.ops)
                                   if getattr(op, "opens_with_relu", False))

    def wants_relu(self, active: tuple[int, ...]) -> bool:
        """Whether an op that opens with a ReLU runs this step (host-side, no sync)."""
        return not self.relu_cols.isdisjoint(active)

    def forward(self, x: torch.Tensor, weights: Sequence[torch.Tensor], active: tuple[int, ...],
                relu_x: torch.Tensor | None = None, into: torch.Tensor | None = None,
                fused: bool = False):
        """``relu_x``: ``relu(x)`` computed once by the cell for every op reading ``x``.

        ``fused`` (``runtime.fused_mixing``): add each ``w_k * op_k(x)`` in place to the running
        sum, starting from ``into`` (the node's sum over its earlier edges), one multiply-add
        per op. Autograd allows it: no backward needs the running sum itself, only the op
        outputs and weights, which it keeps."""
        out = into
        for k in active:
            y = run_op(self.ops[k], x, relu_x)
            if out is None:
                out = weights[k] * y
            elif fused:
                out = out.addcmul_(y, weights[k])
            else:
                out = out + weights[k] * y
        return out  # None: every executed op was 'none' or dropped (the edge is zero)


class SearchCell(SharesReLU, nn.Module):
    #: ``runtime.fused_mixing``: each node's sum over its edges and ops is one chain of in-place
    #: multiply-adds (one tensor written per op) instead of a product and a sum per op.
    fused_mixing: bool = False

    def __init__(self, space: CellSpace, C_pp: int, C_p: int, C: int, reduction: bool,
                 reduction_prev: bool):
        super().__init__()
        self.reduction = reduction
        self.cell_type = "reduce" if reduction else "normal"
        self.nodes = space.nodes
        self.preprocess0 = (FactorizedReduce(C_pp, C, affine=False) if reduction_prev
                            else ReLUConvBN(C_pp, C, 1, 1, 0, affine=False))
        self.preprocess1 = ReLUConvBN(C_p, C, 1, 1, 0, affine=False)
        self.edges = nn.ModuleList()
        inputs = space.edge_inputs()
        for e, ops in enumerate(space.edge_ops[self.cell_type]):
            stride = 2 if reduction and inputs[e] < 2 else 1
            self.edges.append(MixedOp(C, stride, ops))

    def forward(self, s0, s1, weights: Sequence[Sequence[torch.Tensor]],
                active: list[tuple[int, ...]], r0: torch.Tensor | None = None,
                r1: torch.Tensor | None = None):
        """``r0``/``r1``: ``relu(s0)``/``relu(s1)`` when the network shares them."""
        states = [run_op(self.preprocess0, s0, r0), run_op(self.preprocess1, s1, r1)]
        relus = LazyReLU(states, self.share_relu)
        e = 0
        for _ in range(self.nodes):
            total = None
            for i, h in enumerate(states):
                edge = self.edges[e]
                relu_h = relus.get(i) if edge.wants_relu(active[e]) else None
                if self.fused_mixing:
                    total = edge(h, weights[e], active[e], relu_h, into=total, fused=True)
                else:
                    y = edge(h, weights[e], active[e], relu_h)
                    if y is not None:
                        total = y if total is None else total + y
                e += 1
            if total is None:  # every incoming edge is zero this step
                ref = states[1]
                stride = 2 if self.reduction else 1
                total = ref[:, :, ::stride, ::stride].mul(0.0)
            states.append(total)
        return torch.cat(states[2:], dim=1)


class SearchNetwork(SharesReLU, nn.Module):
    """Stem, ``layers`` search cells (reductions at 1/3 and 2/3 of depth), classifier.

    With ``share_relu`` (``runtime.share_relu``) every ReLU that DARTS applies separately in
    each op reading a tensor (a cell state, a cell output read by the next two cells'
    preprocessing) is computed once and shared: identical values, gradients equal up to the
    order of summation, and fewer activations kept for backward."""

    def __init__(self, space: CellSpace, C: int, num_classes: int, layers: int,
                 in_channels: int = 3):
        super().__init__()
        self.space = space
        C_curr = space.stem_multiplier * C
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, C_curr, 3, padding=1, bias=False), nn.BatchNorm2d(C_curr)
        )
        C_pp, C_p, C_curr = C_curr, C_curr, C
        self.cells = nn.ModuleList()
        reduction_prev = False
        self.reduction_layers = (layers // 3, 2 * layers // 3)
        for i in range(layers):
            reduction = i in self.reduction_layers
            if reduction:
                C_curr *= 2
            cell = SearchCell(space, C_pp, C_p, C_curr, reduction, reduction_prev)
            self.cells.append(cell)
            reduction_prev = reduction
            C_pp, C_p = C_p, space.nodes * C_curr
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(C_p, num_classes)

    def forward(self, x: torch.Tensor, weights: dict[str, torch.Tensor], active: ActiveOps,
                return_features: bool = False):
        """``weights[cell]`` is the (edges, K) op-weight matrix of that cell type."""
        # Unbind once per step, not once per cell: cells of a type share their op weights.
        rows = {c: [row.unbind(0) for row in w.unbind(0)] for c, w in weights.items()}
        s0 = s1 = self.stem(x)
        r0 = r1 = torch.relu(s1) if self.share_relu else None
        features = []
        last = len(self.cells) - 1
        for i, cell in enumerate(self.cells):
            out = cell(s0, s1, rows[cell.cell_type], active[cell.cell_type], r0, r1)
            s0, s1, r0 = s1, out, r1
            r1 = torch.relu(out) if self.share_relu and i < last else None
            if return_features:
                features.append(s1)
        logits = self.classifier(torch.flatten(self.global_pooling(s1), 1))
        return (logits, features) if return_features else logits


def set_fused_mixing(model: nn.Module, enabled: bool) -> int:
    """Switch ``runtime.fused_mixing`` on or off in every search cell of ``model``; returns how
    many cells it applies to."""
    return set_switch(model, SearchCell, "fused_mixing", enabled)
