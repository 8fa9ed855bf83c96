"""Model size and cost as the papers count them."""

from __future__ import annotations

import torch
from torch import nn


def count_parameters_m(model: nn.Module, exclude_auxiliary: bool = True) -> float:
    """Parameters in millions (/1e6) without the auxiliary head: the DARTS convention
    (DARTS_V2 at C=36, 20 cells: 3.35M)."""
    return sum(p.numel() for name, p in model.named_parameters()
               if not (exclude_auxiliary and "auxiliary" in name)) / 1e6


def count_parameters_dropnas_convention(model: nn.Module) -> float:
    """All parameters including the auxiliary head, divided by 1024**2: the convention behind
    the DropNAS paper's "4.1M" (its CIFAR-10 cell at C=36, 20 cells: 4.116)."""
    return sum(p.numel() for p in model.parameters()) / 1024**2


@torch.no_grad()
def count_macs(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Multiply-accumulates of one forward in eval mode (auxiliary head off), from PyTorch's
    FLOP counter (convolutions and matrix products; FLOPs / 2). BN, pooling and element-wise
    ops are not counted, as in the DARTS papers' mobile-setting MACs."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    param = next(model.parameters())
    x = torch.zeros(input_shape, device=param.device, dtype=param.dtype)
    counter = FlopCounterMode(display=False)
    with counter:
        model(x)
    model.train(was_training)
    return counter.get_total_flops() // 2
