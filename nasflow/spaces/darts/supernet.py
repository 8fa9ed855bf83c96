"""The DARTS weight-sharing supernet (Liu et al. 2019, Sec. 2.2, Eq. 2), with PC-DARTS'
partial channel connections (Xu et al. 2020, Sec. 3.1) as an option.

The network holds only the operation weights ``w``; architecture parameters live in the
search method, which passes per-step op weights and the set of ops to execute. Ops that are
not active (DropNAS-dropped) and the ``none`` op are never executed: ``none`` contributes
exactly zero to the mixed output, so skipping it changes neither values nor gradients.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from nasflow.spaces.base import ActiveOps
from nasflow.spaces.mixing import MixedOpBase, channel_shuffle, partial_width
from nasflow.spaces.ops import (
    FactorizedReduce,
    FusesMixing,
    LazyReLU,
    ReLUConvBN,
    SharesReLU,
    build_op,
    run_op,
    set_fused_mixing,
)


class MixedOp(MixedOpBase):
    """The DARTS mixed op (:class:`~nasflow.spaces.mixing.MixedOpBase`): the space's ops at
    ``stride``, pools followed by BN(affine=False) as in DARTS; with partial channels the
    bypassed channels of a strided edge go through a 2x2 max pool (PC-DARTS)."""

    def __init__(self, C: int, stride: int, ops: Sequence[str], partial_channels: int = 1):
        C_op = partial_width(C, partial_channels)
        super().__init__((nn.Identity() if name == "none" else build_op(name, C_op, stride, affine=False)
                          for name in ops), partial_channels,
                         nn.MaxPool2d(2, 2) if partial_channels > 1 and stride > 1 else None)
        self.stride = stride


class SearchCell(SharesReLU, FusesMixing, nn.Module):
    """One DARTS search cell (``runtime.fused_mixing``: see :class:`FusesMixing`)."""

    def __init__(self, space, C_pp: int, C_p: int, C: int, reduction: bool,
                 reduction_prev: bool, partial_channels: int = 1):
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
            self.edges.append(MixedOp(C, stride, ops, partial_channels))

    def forward(self, s0, s1, weights: Sequence[Sequence[torch.Tensor]],
                active: list[tuple[int, ...]], r0: torch.Tensor | None = None,
                r1: torch.Tensor | None = None,
                edge_weights: Sequence[torch.Tensor] | None = None):
        """``r0``/``r1``: ``relu(s0)``/``relu(s1)`` when the network shares them;
        ``edge_weights``: one scalar per edge (PC-DARTS edge normalisation), or None."""
        states = [run_op(self.preprocess0, s0, r0), run_op(self.preprocess1, s1, r1)]
        relus = LazyReLU(states, self.share_relu)
        e = 0
        for _ in range(self.nodes):
            total = None
            for i, h in enumerate(states):
                edge: MixedOp = self.edges[e]  # type: ignore[assignment]
                relu_h = relus.get(i) if edge.wants_relu(active[e]) else None
                ew = None if edge_weights is None else edge_weights[e]
                if self.fused_mixing:
                    total = edge(h, weights[e], active[e], relu_h, into=total, fused=True,
                                 edge_weight=ew)
                else:
                    y = edge(h, weights[e], active[e], relu_h, edge_weight=ew)
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

    def __init__(self, space, C: int, num_classes: int, layers: int, in_channels: int = 3,
                 partial_channels: int = 1):
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
            cell = SearchCell(space, C_pp, C_p, C_curr, reduction, reduction_prev,
                              partial_channels)
            self.cells.append(cell)
            reduction_prev = reduction
            C_pp, C_p = C_p, space.nodes * C_curr
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(C_p, num_classes)

    def forward(self, x: torch.Tensor, weights: dict[str, torch.Tensor], active: ActiveOps,
                return_features: bool = False,
                edge_weights: dict[str, torch.Tensor] | None = None):
        """``weights[cell]`` is the (edges, K) op-weight matrix of that cell type;
        ``edge_weights[cell]`` an optional (edges,) vector scaling each edge's output."""
        # Unbind once per step, not once per cell: cells of a type share their op weights.
        rows = {c: [row.unbind(0) for row in w.unbind(0)] for c, w in weights.items()}
        edge_rows = ({c: w.unbind(0) for c, w in edge_weights.items()}
                     if edge_weights is not None else None)
        s0 = s1 = self.stem(x)
        r0 = r1 = torch.relu(s1) if self.share_relu else None
        features = []
        last = len(self.cells) - 1
        cell: SearchCell
        for i, cell in enumerate(self.cells):  # type: ignore[assignment]
            out = cell(s0, s1, rows[cell.cell_type], active[cell.cell_type], r0, r1,
                       None if edge_rows is None else edge_rows[cell.cell_type])
            s0, s1, r0 = s1, out, r1
            r1 = torch.relu(out) if self.share_relu and i < last else None
            if return_features:
                features.append(s1)
        logits = self.classifier(torch.flatten(self.global_pooling(s1), 1))
        return (logits, features) if return_features else logits


__all__ = ["MixedOp", "SearchCell", "SearchNetwork", "channel_shuffle", "set_fused_mixing"]
