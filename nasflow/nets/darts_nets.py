"""NetworkCIFAR / NetworkImageNet (Liu et al. 2019, Sec. 3.2 and 3.3): a stack of the derived
normal and reduction cells, reductions at 1/3 and 2/3 of depth, an auxiliary head after
the 2/3 cell, drop path on every non-identity op. Layer order and shapes follow the DARTS
reference, so parameter counts match the papers (DARTS_V2, C=36, 20 cells: 3.35M)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nasflow.genotype import Genotype
from nasflow.spaces.ops import FactorizedReduce, Identity, ReLUConvBN, build_op


def drop_path(x: torch.Tensor, drop_prob: float) -> torch.Tensor:
    """Zero whole samples' op outputs with probability ``drop_prob``; rescale the rest."""
    if drop_prob <= 0.0:
        return x
    keep = 1.0 - drop_prob
    mask = torch.empty(x.shape[0], 1, 1, 1, device=x.device, dtype=x.dtype).bernoulli_(keep)
    return x / keep * mask


class Cell(nn.Module):
    def __init__(self, genotype: Genotype, C_pp: int, C_p: int, C: int, reduction: bool,
                 reduction_prev: bool):
        super().__init__()
        self.preprocess0 = FactorizedReduce(C_pp, C) if reduction_prev else ReLUConvBN(C_pp, C, 1, 1, 0)
        self.preprocess1 = ReLUConvBN(C_p, C, 1, 1, 0)
        genes = genotype.reduce if reduction else genotype.normal
        self.concat = list(genotype.reduce_concat if reduction else genotype.normal_concat)
        self.k = genotype.edges_per_node
        self.nodes = len(genes) // self.k
        self.multiplier = len(self.concat)
        self.indices = [src for _, src in genes]
        self.ops = nn.ModuleList(
            build_op(name, C, 2 if reduction and src < 2 else 1, affine=True) for name, src in genes
        )

    def forward(self, s0, s1, drop_prob: float):
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        for node in range(self.nodes):
            total = None
            for j in range(node * self.k, (node + 1) * self.k):
                op = self.ops[j]
                h = op(states[self.indices[j]])
                if self.training and drop_prob > 0 and not isinstance(op, Identity):
                    h = drop_path(h, drop_prob)
                total = h if total is None else total + h
            states.append(total)
        return torch.cat([states[i] for i in self.concat], dim=1)


class _AuxPool(nn.Module):
    """DARTS' AvgPool2d(5, stride) on the map size it was designed for (8x8 for CIFAR,
    14x14 for ImageNet) and an adaptive pool to 2x2 on any other size (tiny images)."""

    def __init__(self, stride: int, designed_for: int):
        super().__init__()
        self.pool = nn.AvgPool2d(5, stride=stride, padding=0, count_include_pad=False)
        self.designed_for = designed_for

    def forward(self, x):
        if x.shape[-1] == self.designed_for and x.shape[-2] == self.designed_for:
            return self.pool(x)
        return F.adaptive_avg_pool2d(x, 2)


class AuxiliaryHeadCIFAR(nn.Module):
    def __init__(self, C: int, num_classes: int):
        super().__init__()
        self.features = nn.Sequential(
            nn.ReLU(inplace=True), _AuxPool(3, 8),  # 8x8 -> 2x2
            nn.Conv2d(C, 128, 1, bias=False), nn.BatchNorm2d(128), nn.ReLU(inplace=True),
            nn.Conv2d(128, 768, 2, bias=False), nn.BatchNorm2d(768), nn.ReLU(inplace=True),
        )
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x):
        return self.classifier(torch.flatten(self.features(x), 1))


class AuxiliaryHeadImageNet(nn.Module):
    def __init__(self, C: int, num_classes: int):
        super().__init__()
        self.features = nn.Sequential(
            nn.ReLU(inplace=True), _AuxPool(2, 14),  # 14x14 -> 5x5
            nn.Conv2d(C, 128, 1, bias=False), nn.BatchNorm2d(128), nn.ReLU(inplace=True),
            nn.Conv2d(128, 768, 2, bias=False),
            # DARTS' ImageNet head has no BN here (a typo kept for consistency with its paper)
            nn.ReLU(inplace=True),
        )
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x):
        x = self.features(x)
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class _Network(nn.Module):
    """Shared cell stacking; subclasses define the stem."""

    def _stack(self, genotype, C_pp, C_p, C, layers, num_classes, auxiliary, reduction_prev,
               aux_cls):
        self.layers, self.auxiliary = layers, auxiliary
        self.drop_path_prob = 0.0
        self.cells = nn.ModuleList()
        C_aux = None
        for i in range(layers):
            reduction = i in (layers // 3, 2 * layers // 3)
            if reduction:
                C *= 2
            cell = Cell(genotype, C_pp, C_p, C, reduction, reduction_prev)
            self.cells.append(cell)
            reduction_prev = reduction
            C_pp, C_p = C_p, cell.multiplier * C
            if i == 2 * layers // 3:
                C_aux = C_p
        if auxiliary:
            self.auxiliary_head = aux_cls(C_aux, num_classes)
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(C_p, num_classes)

    def _cells(self, s0, s1):
        logits_aux = None
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1, self.drop_path_prob)
            if i == 2 * self.layers // 3 and self.auxiliary and self.training:
                logits_aux = self.auxiliary_head(s1)
        logits = self.classifier(torch.flatten(self.global_pooling(s1), 1))
        return logits, logits_aux


class NetworkCIFAR(_Network):
    def __init__(self, C: int, num_classes: int, layers: int, auxiliary: bool, genotype: Genotype,
                 in_channels: int = 3, stem_multiplier: int = 3):
        super().__init__()
        C_stem = stem_multiplier * C
        self.stem = nn.Sequential(nn.Conv2d(in_channels, C_stem, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(C_stem))
        self._stack(genotype, C_stem, C_stem, C, layers, num_classes, auxiliary, False,
                    AuxiliaryHeadCIFAR)

    def forward(self, x):
        s = self.stem(x)
        return self._cells(s, s)


class NetworkImageNet(_Network):
    def __init__(self, C: int, num_classes: int, layers: int, auxiliary: bool, genotype: Genotype,
                 in_channels: int = 3):
        super().__init__()
        self.stem0 = nn.Sequential(
            nn.Conv2d(in_channels, C // 2, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(C // 2),
            nn.ReLU(inplace=True),
            nn.Conv2d(C // 2, C, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(C),
        )
        self.stem1 = nn.Sequential(nn.ReLU(inplace=True),
                                   nn.Conv2d(C, C, 3, stride=2, padding=1, bias=False),
                                   nn.BatchNorm2d(C))
        self._stack(genotype, C, C, C, layers, num_classes, auxiliary, True, AuxiliaryHeadImageNet)

    def forward(self, x):
        s0 = self.stem0(x)
        s1 = self.stem1(s0)
        return self._cells(s0, s1)
