"""The NAS-Bench-201 weight-sharing supernet (AutoDL ``search_model_darts.py``
``TinyNetworkDarts`` with ``search_cells.py`` ``NAS201SearchCell``).

Stem, three stages of ``layers`` search cells at ``C``, ``2C``, ``4C`` channels with a
:class:`~nasflow.spaces.nb201.ops.ResNetBasicblock` (stride 2) between stages, then BN-ReLU,
global average pooling and a linear classifier. Every search cell shares one ``(6, 5)``
op-weight matrix. The cells' ops use BN without affine parameters and with the space's
``track_running_stats`` switch; stem, residual blocks and head are as released (affine BN,
running statistics).

Like the DARTS supernet, the network holds only the operation weights; the method passes the
op weights and the op columns to execute per edge. ``none`` and ops the method dropped never
run. Options: ``partial_channels`` (PC-DARTS channel sampling, as in the DARTS supernet);
``runtime.share_relu`` (one ReLU per tensor for all ``nor_conv`` ops reading it) and a
``fused_mixing`` switch (in-place multiply-add chains, :func:`nasflow.spaces.ops.set_fused_mixing`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from nasflow.spaces.base import ActiveOps
from nasflow.spaces.mixing import MixedOpBase, partial_width
from nasflow.spaces.nb201.ops import ResNetBasicblock, build_op, head, stage_channels, stem
from nasflow.spaces.ops import FusesMixing, LazyReLU, SharesReLU

CELL = "cell"


class MixedOp(MixedOpBase):
    """The NB201 mixed op (:class:`~nasflow.spaces.mixing.MixedOpBase`): the 5 ops at stride 1
    with BN(affine=False) and the ``track_running_stats`` switch; with partial channels the
    first ``C / K`` channels go through the ops (PC-DARTS Eq. 2)."""

    def __init__(self, C: int, ops: Sequence[str], track_running_stats: bool,
                 partial_channels: int = 1):
        C_op = partial_width(C, partial_channels)
        super().__init__((nn.Identity() if name == "none" else build_op(
            name, C_op, C_op, 1, affine=False, track_running_stats=track_running_stats)
            for name in ops), partial_channels)


class SearchCell(SharesReLU, FusesMixing, nn.Module):
    """Node ``i`` (1..3) sums the mixed ops of its edges from nodes ``0..i-1``; the cell
    outputs node 3."""

    cell_type = CELL

    def __init__(self, space, C: int, track_running_stats: bool, partial_channels: int = 1):
        super().__init__()
        self.node_edges = space.node_edges()
        self.inputs = space.edge_inputs()
        self.edges = nn.ModuleList(MixedOp(C, ops, track_running_stats, partial_channels)
                                   for ops in space.edge_ops[CELL])

    def forward(self, x: torch.Tensor, weights: Sequence[Sequence[torch.Tensor]],
                active: list[tuple[int, ...]],
                edge_weights: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
        nodes = [x]
        relus = LazyReLU(nodes, self.share_relu)
        for rows in self.node_edges:
            total = None
            for e in rows:
                edge, src = self.edges[e], self.inputs[e]
                relu_h = relus.get(src) if edge.wants_relu(active[e]) else None
                ew = None if edge_weights is None else edge_weights[e]
                if self.fused_mixing:
                    total = edge(nodes[src], weights[e], active[e], relu_h, into=total, fused=True,
                                 edge_weight=ew)
                else:
                    y = edge(nodes[src], weights[e], active[e], relu_h, edge_weight=ew)
                    if y is not None:
                        total = y if total is None else total + y
            nodes.append(torch.zeros_like(x) if total is None else total)  # all inputs zero
        return nodes[-1]


class SearchNetwork(nn.Module):
    """The NB201 supernet; ``layers`` is N, the number of search cells per stage."""

    def __init__(self, space, C: int, num_classes: int, layers: int, in_channels: int = 3,
                 partial_channels: int = 1, track_running_stats: bool = False):
        super().__init__()
        if layers < 1:
            raise ValueError(f"NB201: layers (cells per stage) must be >= 1, got {layers}")
        self.space = space
        self.layers = layers
        self.stem = stem(in_channels, C)
        self.cells = nn.ModuleList()
        self.reductions = nn.ModuleList()
        C_prev = C
        for stage, C_curr in enumerate(stage_channels(C)):
            if stage:
                self.reductions.append(ResNetBasicblock(C_prev, C_curr, 2))
            self.cells.extend(SearchCell(space, C_curr, track_running_stats, partial_channels)
                              for _ in range(layers))
            C_prev = C_curr
        self.lastact, self.global_pooling, self.classifier = head(C_prev, num_classes)

    def forward(self, x: torch.Tensor, weights: dict[str, torch.Tensor], active: ActiveOps,
                return_features: bool = False,
                edge_weights: dict[str, torch.Tensor] | None = None):
        """``weights["cell"]``: the (6, 5) op weights shared by every cell; ``active["cell"]``
        the op columns to run per edge; ``edge_weights["cell"]`` an optional (6,) factor per
        edge. ``return_features``: also the output of every search cell."""
        rows = [row.unbind(0) for row in weights[CELL].unbind(0)]
        edge_rows = None if edge_weights is None else edge_weights[CELL].unbind(0)
        cell_active = active[CELL]
        s = self.stem(x)
        features = []
        for i, cell in enumerate(self.cells):
            if i and i % self.layers == 0:
                s = self.reductions[i // self.layers - 1](s)
            s = cell(s, rows, cell_active, edge_rows)
            if return_features:
                features.append(s)
        out = self.global_pooling(self.lastact(s))
        logits = self.classifier(torch.flatten(out, 1))
        return (logits, features) if return_features else logits
