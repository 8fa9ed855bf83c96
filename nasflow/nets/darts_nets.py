"""NetworkCIFAR / NetworkImageNet (Liu et al. 2019, Sec. 3.2 and 3.3): a stack of the derived
normal and reduction cells, reductions at 1/3 and 2/3 of depth, an auxiliary head after
the 2/3 cell, drop path on every non-identity op.

Module order, shapes, ``bias=False`` / affine BN choices follow the DARTS reference
implementation (quark0/darts ``cnn/model.py``) exactly, so parameter counts match the papers
(DARTS_V2, C=36, 20 cells: 3.349342M; ImageNet, C=48, 14 cells: 4.718752M). The only
departures are for inputs the reference cannot take (and do not change any count):

* the auxiliary heads pool adaptively to 2x2 when the map they see is not the size DARTS
  designed them for (8x8 CIFAR, 7x7 ImageNet), so tiny images (8x8 digits, 28x28 MNIST-like)
  work; on the designed size they are DARTS' ``AvgPool2d(5, stride)``;
* ImageNet's final ``AvgPool2d(7)`` is an adaptive average pool (identical on 7x7 maps);
* the ReLU that opens the auxiliary head / ``stem1`` is not in-place (DARTS' in-place ReLU
  silently rectifies the cell output it reads; every later consumer starts with a ReLU, so
  the results are the same, except when the auxiliary cell is the last one);
* ``drop_path`` is out of place (DARTS multiplies the op output in place).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nasflow.genotype import Genotype
from nasflow.spaces.ops import (
    FactorizedReduce,
    Identity,
    LazyReLU,
    ReLUConvBN,
    ReLUFirst,
    SharesReLU,
    build_op,
    run_op,
)

__all__ = [
    "AuxiliaryHeadCIFAR",
    "AuxiliaryHeadImageNet",
    "Cell",
    "NetworkCIFAR",
    "NetworkImageNet",
    "drop_path",
]


def drop_path(x: torch.Tensor, drop_prob: float) -> torch.Tensor:
    """DARTS' drop path: zero each sample's tensor with probability ``drop_prob`` (one
    Bernoulli draw per sample) and divide the kept ones by the keep probability. The per-sample
    factor ``mask / keep`` is formed first, so the full-size tensor is touched once (DARTS
    divides, then multiplies: the same values up to one rounding)."""
    if drop_prob <= 0.0:
        return x
    keep = 1.0 - drop_prob
    mask = torch.empty(x.shape[0], 1, 1, 1, device=x.device, dtype=x.dtype).bernoulli_(keep)
    return x * mask.div_(keep)


class Cell(SharesReLU, nn.Module):
    """A discrete cell (DARTS ``model.Cell``).

    ``s0``/``s1`` (outputs of the cells two and one back) are brought to ``C`` channels by
    ``preprocess0`` (a :class:`FactorizedReduce` if the previous cell halved the resolution,
    so both inputs agree in size) and ``preprocess1`` (ReLU-conv1x1-BN). Each intermediate node
    sums its ``edges_per_node`` op outputs; ops reading input 0 or 1 of a reduction cell use
    stride 2. The output concatenates the ``concat`` states (``multiplier * C`` channels).
    """

    def __init__(self, genotype: Genotype, C_prev_prev: int, C_prev: int, C: int, reduction: bool,
                 reduction_prev: bool):
        super().__init__()
        self.reduction = reduction
        if reduction_prev:
            self.preprocess0 = FactorizedReduce(C_prev_prev, C, affine=True)
        else:
            self.preprocess0 = ReLUConvBN(C_prev_prev, C, 1, 1, 0, affine=True)
        self.preprocess1 = ReLUConvBN(C_prev, C, 1, 1, 0, affine=True)
        genes = genotype.reduce if reduction else genotype.normal
        self.concat = list(genotype.reduce_concat if reduction else genotype.normal_concat)
        self.edges_per_node = genotype.edges_per_node
        self.nodes = len(genes) // self.edges_per_node
        self.multiplier = len(self.concat)
        self.indices = [src for _, src in genes]
        self.ops = nn.ModuleList(
            build_op(name, C, 2 if reduction and src < 2 else 1, affine=True) for name, src in genes
        )

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, drop_prob: float = 0.0,
                r0: torch.Tensor | None = None, r1: torch.Tensor | None = None) -> torch.Tensor:
        """``r0``/``r1``: ``relu(s0)``/``relu(s1)`` when the network shares them
        (``runtime.share_relu``); within the cell each state's ReLU is then computed once for
        all the ops that read it."""
        states = [run_op(self.preprocess0, s0, r0), run_op(self.preprocess1, s1, r1)]
        relus = LazyReLU(states, self.share_relu)
        k = self.edges_per_node
        for node in range(self.nodes):
            total = None
            for j in range(node * k, (node + 1) * k):
                op, src = self.ops[j], self.indices[j]
                relu_x = relus.get(src) if getattr(op, "opens_with_relu", False) else None
                h = run_op(op, states[src], relu_x)
                if self.training and drop_prob > 0 and not isinstance(op, Identity):
                    h = drop_path(h, drop_prob)
                total = h if total is None else total + h
            states.append(total)
        return torch.cat([states[i] for i in self.concat], dim=1)


class _AuxPool(nn.Module):
    """DARTS' ``AvgPool2d(5, stride, padding=0, count_include_pad=False)`` on the map size the
    head was designed for (it gives 2x2 there), an adaptive average pool to 2x2 on any other
    size, so that the following 2x2 conv always yields a 1x1 map."""

    def __init__(self, stride: int, designed_for: int):
        super().__init__()
        self.pool = nn.AvgPool2d(5, stride=stride, padding=0, count_include_pad=False)
        self.designed_for = designed_for

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2] == self.designed_for and x.shape[-1] == self.designed_for:
            return self.pool(x)
        return F.adaptive_avg_pool2d(x, 2)

    def extra_repr(self) -> str:
        return f"designed_for={self.designed_for}x{self.designed_for}, otherwise adaptive to 2x2"


class AuxiliaryHeadCIFAR(nn.Module):
    """DARTS' CIFAR auxiliary head (designed for 8x8 input: pool 5/3 -> 2x2, conv2x2 -> 1x1)."""

    def __init__(self, C: int, num_classes: int):
        super().__init__()
        self.features = ReLUFirst(
            nn.ReLU(inplace=False),
            _AuxPool(stride=3, designed_for=8),
            nn.Conv2d(C, 128, 1, bias=False),
            nn.BatchNorm2d(128),
            nn.ReLU(inplace=True),
            nn.Conv2d(128, 768, 2, bias=False),
            nn.BatchNorm2d(768),
            nn.ReLU(inplace=True),
        )
        self.classifier = nn.Linear(768, num_classes)

    opens_with_relu = True

    def forward(self, x: torch.Tensor, relu_done: bool = False) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x, relu_done), 1))


class AuxiliaryHeadImageNet(nn.Module):
    """DARTS' ImageNet auxiliary head. It sees the 7x7 output of the second reduction cell at
    224x224 (DARTS' docstring says 14x14, but 7x7 is what reaches it): pool 5/2 -> 2x2,
    conv2x2 -> 1x1. As in DARTS there is no BN after the 2x2 conv (the reference omitted it
    "due to a typo" and kept it out for consistency with the paper's numbers)."""

    def __init__(self, C: int, num_classes: int):
        super().__init__()
        self.features = ReLUFirst(
            nn.ReLU(inplace=False),
            _AuxPool(stride=2, designed_for=7),
            nn.Conv2d(C, 128, 1, bias=False),
            nn.BatchNorm2d(128),
            nn.ReLU(inplace=True),
            nn.Conv2d(128, 768, 2, bias=False),
            nn.ReLU(inplace=True),
        )
        self.classifier = nn.Linear(768, num_classes)

    opens_with_relu = True

    def forward(self, x: torch.Tensor, relu_done: bool = False) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x, relu_done), 1))


class _Network(SharesReLU, nn.Module):
    """Cell stacking shared by both networks; subclasses define the stem and ``forward``.

    With ``share_relu`` (``runtime.share_relu``), each cell output's ReLU (read by the next
    two cells' preprocessing and by the auxiliary head) and each state's ReLU inside a cell is
    computed once: the same values as DARTS' per-op ReLUs, fewer activations kept."""

    drop_path_prob: float

    def _stack(self, genotype: Genotype, C_prev_prev: int, C_prev: int, C: int, layers: int,
               num_classes: int, auxiliary: bool, reduction_prev: bool, aux_cls) -> None:
        if layers < 1:
            raise ValueError(f"layers must be >= 1, got {layers}")
        self._layers, self._auxiliary = layers, auxiliary
        self.drop_path_prob = 0.0  # set by the training loop each epoch (linear ramp)
        self.cells = nn.ModuleList()
        C_curr, C_aux = C, None
        for i in range(layers):
            reduction = i in (layers // 3, 2 * layers // 3)
            if reduction:
                C_curr *= 2
            cell = Cell(genotype, C_prev_prev, C_prev, C_curr, reduction, reduction_prev)
            reduction_prev = reduction
            self.cells.append(cell)
            C_prev_prev, C_prev = C_prev, cell.multiplier * C_curr
            if i == 2 * layers // 3:
                C_aux = C_prev
        if auxiliary:
            self.auxiliary_head = aux_cls(C_aux, num_classes)
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(C_prev, num_classes)

    def _run_cells(self, s0: torch.Tensor, s1: torch.Tensor):
        logits_aux = None
        aux_at = 2 * self._layers // 3
        share = self.share_relu
        r0 = torch.relu(s0) if share else None
        r1 = (r0 if s1 is s0 else torch.relu(s1)) if share else None
        last = len(self.cells) - 1
        for i, cell in enumerate(self.cells):
            out = cell(s0, s1, self.drop_path_prob, r0, r1)
            s0, s1, r0 = s1, out, r1
            aux = i == aux_at and self._auxiliary and self.training
            r1 = torch.relu(out) if share and (i < last or aux) else None
            if aux:
                logits_aux = run_op(self.auxiliary_head, s1, r1)
        out = self.global_pooling(s1)
        logits = self.classifier(torch.flatten(out, 1))
        return logits, logits_aux


class NetworkCIFAR(_Network):
    """DARTS' CIFAR network: stem conv3x3 + BN to ``stem_multiplier * C`` channels, ``layers``
    cells (reductions at ``layers // 3`` and ``2 * layers // 3``, doubling the channels), the
    auxiliary head after cell ``2 * layers // 3``, global average pooling and a linear layer.

    ``forward(x)`` returns ``(logits, logits_aux)``; ``logits_aux`` is None unless the model is
    training and was built with ``auxiliary=True``. ``drop_path_prob`` is read in ``forward``.
    """

    def __init__(self, C: int, num_classes: int, layers: int, auxiliary: bool, genotype: Genotype,
                 in_channels: int = 3, stem_multiplier: int = 3):
        super().__init__()
        C_stem = stem_multiplier * C
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, C_stem, 3, padding=1, bias=False),
            nn.BatchNorm2d(C_stem),
        )
        self._stack(genotype, C_stem, C_stem, C, layers, num_classes, auxiliary,
                    reduction_prev=False, aux_cls=AuxiliaryHeadCIFAR)

    def forward(self, x: torch.Tensor):
        s = self.stem(x)
        return self._run_cells(s, s)


class NetworkImageNet(_Network):
    """DARTS' ImageNet network (mobile setting): two stems down to 1/8 resolution, then
    ``layers`` cells (the first one's ``preprocess0`` is a FactorizedReduce, since ``stem1``
    halved the resolution), reductions at ``layers // 3`` and ``2 * layers // 3``, the ImageNet
    auxiliary head, global average pooling (DARTS' ``AvgPool2d(7)``, adaptive here) and a
    linear layer. ``C`` must be even."""

    def __init__(self, C: int, num_classes: int, layers: int, auxiliary: bool, genotype: Genotype,
                 in_channels: int = 3):
        super().__init__()
        self.stem0 = nn.Sequential(
            nn.Conv2d(in_channels, C // 2, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(C // 2),
            nn.ReLU(inplace=True),
            nn.Conv2d(C // 2, C, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(C),
        )
        self.stem1 = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(C, C, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(C),
        )
        self._stack(genotype, C, C, C, layers, num_classes, auxiliary,
                    reduction_prev=True, aux_cls=AuxiliaryHeadImageNet)

    def forward(self, x: torch.Tensor):
        s0 = self.stem0(x)
        s1 = self.stem1(s0)
        return self._run_cells(s0, s1)
