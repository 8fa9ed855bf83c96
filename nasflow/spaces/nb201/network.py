"""The standalone NAS-Bench-201 network of one cell (AutoDL ``cell_infers/tiny_network.py``
``TinyNetwork`` with ``cells.py`` ``InferCell``): the network every benchmark entry was
trained as.

Stem (conv 3x3 + BN), three stages of ``N`` copies of the cell at ``C``, ``2C``, ``4C``
channels with a :class:`~nasflow.spaces.nb201.ops.ResNetBasicblock` (stride 2) between
stages, BN-ReLU, global average pooling, linear. Ops use affine BN with running statistics and
bias-free convs. The benchmark's networks have ``C = 16``, ``N = 5``.

For the retraining loop the network follows the DARTS networks' contract: ``forward`` returns
``(logits, None)`` (no auxiliary head) and ``drop_path_prob`` is an attribute that nothing
reads (NB201 has no drop path).
"""

from __future__ import annotations

import torch
from torch import nn

from nasflow.spaces.nb201.genotype import Nb201Genotype
from nasflow.spaces.nb201.ops import ResNetBasicblock, build_op, head, stage_channels, stem
from nasflow.spaces.ops import LazyReLU, SharesReLU, run_op


class InferCell(SharesReLU, nn.Module):
    """One NB201 cell: node ``i`` sums its non-``none`` input ops, the cell outputs node 3 (a
    node without any is zero)."""

    def __init__(self, genotype: Nb201Genotype, C: int):
        super().__init__()
        self.layers = nn.ModuleList()
        self.node_inputs: list[list[tuple[int, int]]] = []  # per node: (layer index, input node)
        for node in genotype.nodes:
            entries = []
            for op, src in node:
                if op == "none":
                    continue
                entries.append((len(self.layers), src))
                self.layers.append(build_op(op, C, C, 1, affine=True, track_running_stats=True))
            self.node_inputs.append(entries)
        self.genotype = genotype.arch

    def extra_repr(self) -> str:
        return self.genotype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes = [x]
        relus = LazyReLU(nodes, self.share_relu)
        for entries in self.node_inputs:
            total = None
            for layer, src in entries:
                y = run_op(self.layers[layer], nodes[src], relus.get(src))
                total = y if total is None else total + y
            nodes.append(torch.zeros_like(x) if total is None else total)
        return nodes[-1]


class Nb201Network(nn.Module):
    """``TinyNetwork(C, N, cell, num_classes)``; ``in_channels`` for 1-channel data."""

    def __init__(self, genotype: Nb201Genotype, C: int = 16, N: int = 5, num_classes: int = 10,
                 in_channels: int = 3):
        super().__init__()
        if N < 1:
            raise ValueError(f"NB201: N (cells per stage) must be >= 1, got {N}")
        self.genotype, self.N = genotype, N
        self.drop_path_prob = 0.0  # set by the retraining loop; NB201 has no drop path
        self.stem = stem(in_channels, C)
        self.cells = nn.ModuleList()
        self.reductions = nn.ModuleList()
        C_prev = C
        for stage, C_curr in enumerate(stage_channels(C)):
            if stage:
                self.reductions.append(ResNetBasicblock(C_prev, C_curr, 2))
            self.cells.extend(InferCell(genotype, C_curr) for _ in range(N))
            C_prev = C_curr
        self.lastact, self.global_pooling, self.classifier = head(C_prev, num_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        s = self.stem(x)
        for i, cell in enumerate(self.cells):
            if i and i % self.N == 0:
                s = self.reductions[i // self.N - 1](s)
            s = cell(s)
        out = self.global_pooling(self.lastact(s))
        return self.classifier(torch.flatten(out, 1)), None
