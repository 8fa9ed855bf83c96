"""Model size and cost as the papers count them."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

AUXILIARY_HEAD = "auxiliary_head"


def _auxiliary_param_ids(model: nn.Module) -> set[int]:
    """Ids of the parameters that live under a submodule named ``auxiliary_head``."""
    ids: set[int] = set()
    for name, module in model.named_modules():
        if name.rsplit(".", 1)[-1] == AUXILIARY_HEAD:
            ids.update(id(p) for p in module.parameters())
    return ids


def _count(model: nn.Module, exclude_auxiliary: bool) -> int:
    skip = _auxiliary_param_ids(model) if exclude_auxiliary else set()
    seen: set[int] = set()
    total = 0
    for p in model.parameters():
        if id(p) in skip or id(p) in seen:
            continue
        seen.add(id(p))
        total += p.numel()
    return total


def count_parameters_m(model: nn.Module, exclude_auxiliary: bool = True) -> float:
    """Parameters in millions (/1e6), by default without any submodule named
    ``auxiliary_head``: the DARTS papers' convention (DARTS ``utils.count_parameters_in_MB``),
    e.g. DARTS_V2 at C=36, 20 cells, 10 classes: 3.349342 (the paper's "3.3M").

    The auxiliary head is a training-only aid that is dropped at test time, so it is not part
    of the reported model size. Shared parameters are counted once.
    """
    return _count(model, exclude_auxiliary) / 1e6


def count_parameters_dropnas_convention(model: nn.Module) -> float:
    """All parameters *including* the auxiliary head, divided by 1024**2: the convention that
    reproduces the DropNAS paper's "4.1M" for its CIFAR-10 cell (here: C=36, 20 cells,
    10 classes -> 4.116; the same net is 3.839230M in the DARTS convention).

    DropNAS's own retraining model (built on the pt.darts code base) also puts an affine
    BatchNorm after every pooling op of the discrete cell, which the DARTS reference model
    used here does not have (2*C parameters per pooling op; 432 for DropNAS_C10 at C=36), so
    this count differs slightly from what the DropNAS code itself would report.
    """
    return _count(model, exclude_auxiliary=False) / 1024**2


class _MacCounter(TorchFunctionMode):
    """Multiply-accumulates of convolutions and matrix products, read off each call's
    operands and result at the ``torch.*`` / ``F.*`` level."""

    _CONVS = frozenset({F.conv1d, F.conv2d, F.conv3d, torch.conv1d, torch.conv2d, torch.conv3d})
    _MATMULS = frozenset({torch.matmul, torch.mm, torch.bmm, torch.Tensor.matmul,
                          torch.Tensor.__matmul__, torch.Tensor.mm, torch.Tensor.bmm})

    def __init__(self) -> None:
        super().__init__()
        self.macs = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func in self._CONVS:
            # every output element: C_in/groups * k*k products (weight (C_out, C_in/g, k, k))
            self.macs += out.numel() * args[1][0].numel()
        elif func is F.linear:
            self.macs += out.numel() * args[1].shape[-1]
        elif func in self._MATMULS:
            self.macs += out.numel() * args[0].shape[-1]
        return out


@torch.no_grad()
def count_macs(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Multiply-accumulates per image of one forward pass in eval mode (so the auxiliary head
    and drop path are off).

    Counted: convolutions (incl. depthwise / dilated / grouped: out_numel * C_in/groups * k*k)
    and matrix products (``Linear``: in * out). Not counted: biases, BatchNorm, activations,
    pooling, additions and concatenation, which is the usual convention of the DARTS-family
    papers' "multi-adds" (DARTS_V2 on CIFAR-10 at C=36, 20 cells: ~528M). The same total as
    PyTorch's ``FlopCounterMode`` / 2 (tested), counted at the ``torch.*`` function level: that
    mode imports TorchDynamo, ~3 s of every ``evaluate`` start-up.

    ``input_shape`` is ``(N, C, H, W)``; the total is divided by ``N``. The model's training
    mode is restored afterwards; BN running statistics are not touched (eval mode).
    """
    param = next(iter(model.parameters()), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    x = torch.zeros(input_shape, device=device, dtype=dtype)
    was_training = model.training
    model.eval()
    try:
        with _MacCounter() as counter:
            model(x)
    finally:
        model.train(was_training)
    return counter.macs // max(int(input_shape[0]), 1)
