"""The mixed op of one supernet edge, shared by every space: ``sum_k w_k * op_k(x)`` over the
executed op columns (DARTS Eq. 2), with PC-DARTS' partial channel connections (Xu et al. 2020,
Eq. 2) and edge normalisation factor. A space's ``MixedOp`` only builds its op modules."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import nn

from nasflow.spaces.ops import run_op


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """ShuffleNet's channel shuffle (PC-DARTS ``channel_shuffle``): view the channels as
    (groups, C / groups), transpose to (C / groups, groups), flatten."""
    n, c, h, w = x.shape
    return x.view(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


def partial_width(C: int, partial_channels: int) -> int:
    """Channels that go through the ops with ``partial_channels = K`` (C / K)."""
    if C % partial_channels:
        raise ValueError(f"partial channels: C={C} is not divisible by K={partial_channels}")
    return C // partial_channels


class MixedOpBase(nn.Module):
    """All candidate ops of one edge (``ops[k]`` is alpha column ``k``; ``none`` a placeholder
    that never runs). ``partial_channels = K > 1``: only the first ``C / K`` channels go
    through the ops; the rest bypass them (through ``bypass_pool`` on a strided edge), are
    concatenated after the mixed channels, and the result is channel-shuffled with K groups."""

    def __init__(self, ops: Iterable[nn.Module], partial_channels: int = 1,
                 bypass_pool: nn.Module | None = None):
        super().__init__()
        self.k = partial_channels
        self.bypass_pool = bypass_pool  # a submodule (no class default: it would shadow it)
        self.ops = nn.ModuleList(ops)
        self.relu_cols = frozenset(k for k, op in enumerate(self.ops)
                                   if getattr(op, "opens_with_relu", False))

    def wants_relu(self, active: tuple[int, ...]) -> bool:
        """Whether an op that opens with a ReLU runs this step on the whole input (host-side, no
        sync); partial-channel ops read a channel slice and apply their own ReLU."""
        return self.k == 1 and not self.relu_cols.isdisjoint(active)

    def forward(self, x: torch.Tensor, weights: Sequence[torch.Tensor], active: tuple[int, ...],
                relu_x: torch.Tensor | None = None, into: torch.Tensor | None = None,
                fused: bool = False, edge_weight: torch.Tensor | None = None):
        """``relu_x``: ``relu(x)`` computed once by the cell for every op reading ``x``.

        ``fused`` (``runtime.fused_mixing``): add each ``w_k * op_k(x)`` in place to the running
        sum, starting from ``into`` (the node's sum over its earlier edges), one multiply-add
        per op. Autograd allows it: no backward needs the running sum itself, only the op
        outputs and weights, which it keeps.

        ``edge_weight`` (PC-DARTS edge normalisation): a scalar multiplying the whole edge
        output (with partial channels, the bypassed channels too). Returns None when no op ran
        and there is no running sum (the edge is zero)."""
        if self.k > 1:
            return self._partial(x, weights, active, into, fused, edge_weight)
        if edge_weight is not None:
            weights = [w * edge_weight for w in weights]
        out = into
        for k in active:
            y = run_op(self.ops[k], x, relu_x)
            if out is None:
                out = weights[k] * y
            elif fused:
                out = out.addcmul_(y, weights[k])
            else:
                out = out + weights[k] * y
        return out

    def _partial(self, x, weights, active, into, fused, edge_weight):
        c = x.shape[1] // self.k
        part, rest = x[:, :c], x[:, c:]
        mixed = None
        for k in active:
            y = self.ops[k](part)
            mixed = weights[k] * y if mixed is None else mixed + weights[k] * y
        if self.bypass_pool is not None:
            rest = self.bypass_pool(rest)
        if mixed is None:  # every executed op was 'none' or dropped: zero mixed channels
            mixed = rest.new_zeros(rest.shape[0], c, *rest.shape[2:])
        out = channel_shuffle(torch.cat([mixed, rest], dim=1), self.k)
        if edge_weight is not None:
            out = out * edge_weight
        if into is None:
            return out
        return into.add_(out) if fused else into + out
