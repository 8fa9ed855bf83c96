"""The DARTS operation set (Liu et al. 2019, Sec. 3.1) as a registry.

Each entry builds ``op(C, stride, affine)``; ``parametric`` marks the ops with learnable
weights, which DropNAS groups apart from the parameter-free ones (Hong et al. 2020, Sec. 4.1).
Shapes and layer order follow the DARTS reference implementation exactly, so that parameter
counts match the papers (DARTS_V2 at C=36, 20 cells: 3.35M).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


class ReLUFirst(nn.Sequential):
    """A sequential op whose first layer is a ReLU. ``op(relu(x), relu_done=True) == op(x)``,
    so a cell whose state feeds several such ops computes ``relu(state)`` once for all of
    them (``runtime.share_relu``): the same values, one activation in memory instead of one
    per op. Calling the module (not a helper) keeps forward hooks firing once per execution;
    with ``relu_done`` a hook's input is the rectified tensor."""

    opens_with_relu = True

    def forward(self, x: torch.Tensor, relu_done: bool = False) -> torch.Tensor:
        layers = iter(self)
        if relu_done:
            next(layers)
        for layer in layers:
            x = layer(x)
        return x


class ReLUConvBN(ReLUFirst):
    def __init__(self, C_in: int, C_out: int, kernel: int, stride: int, padding: int, affine=True):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(C_in, C_out, kernel, stride=stride, padding=padding, bias=False),
            nn.BatchNorm2d(C_out, affine=affine),
        )


def _memory_format(x: torch.Tensor) -> torch.memory_format:
    if x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


def _zeros(shape, like: torch.Tensor, fmt: torch.memory_format) -> torch.Tensor:
    """Zeros allocated in ``fmt`` directly (``new_zeros(...).contiguous(fmt)`` would write a
    full NCHW tensor, then copy it)."""
    return torch.empty(shape, dtype=like.dtype, device=like.device, memory_format=fmt).zero_()


class _PixelPhases(torch.autograd.Function):
    """``x[:, :, i::step, j::step]`` for each phase ``(i, j)``, as dense tensors in ``x``'s
    memory format, zero-padded at the bottom/right to the size of phase (0, 0) (odd sizes).

    The values are those of plain slicing. The backward differs in cost only: it writes the
    input gradient once (zero it, copy each phase in), where autograd's slicing zero-fills a
    full-size gradient for every sliced dimension of every phase and then adds them up."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, step: int, phases: tuple[tuple[int, int], ...]):
        fmt = _memory_format(x)
        H, W = x.shape[-2:]
        h, w = -(-H // step), -(-W // step)
        outs = []
        for i, j in phases:
            part = x[:, :, i::step, j::step]
            if part.shape[-2:] == (h, w):
                outs.append(part.contiguous(memory_format=fmt))
            else:
                out = _zeros((*x.shape[:2], h, w), x, fmt)
                out[:, :, : part.shape[-2], : part.shape[-1]] = part
                outs.append(out)
        ctx.shape, ctx.fmt, ctx.step, ctx.phases = x.shape, fmt, step, phases
        return tuple(outs)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, *grads):
        step = ctx.step
        grad = _zeros(ctx.shape, grads[0], ctx.fmt)
        for (i, j), g in zip(ctx.phases, grads, strict=True):
            if g is not None:
                target = grad[:, :, i::step, j::step]
                target.copy_(g[:, :, : target.shape[-2], : target.shape[-1]])
        return grad, None, None


def pixel_phases(x: torch.Tensor, step: int, phases: tuple[tuple[int, int], ...]) -> tuple[torch.Tensor, ...]:
    """The subsampled grids ``x[:, :, i::step, j::step]`` of ``phases``, each padded with zeros
    to ``ceil(H / step) x ceil(W / step)`` (see :class:`_PixelPhases`)."""
    return _PixelPhases.apply(x, step, tuple(phases))


class SubsamplesPhases:
    """Mixin for ops that read a pixel phase of their input (``runtime.phase_subsample``):
    through :func:`pixel_phases` when set, by slicing otherwise (the reference's way)."""

    phase_subsample: bool = False


def set_phase_subsample(model: nn.Module, enabled: bool) -> int:
    """Switch phase subsampling on or off in every op of ``model``; returns how many ops read
    a pixel phase."""
    return set_switch(model, SubsamplesPhases, "phase_subsample", enabled)


class DilatedDepthwiseConv2d(SubsamplesPhases, nn.Conv2d):
    """A depthwise conv with dilation > 1 and 'same' padding, computed without PyTorch's
    dilated kernels when ``rewrite`` is set (``runtime.dilated_conv``).

    On the CPU the backward of a dilated depthwise conv falls to a slow generic path (measured
    4-9x slower than these rewrites on 32x32 and 16x16 maps). Two exact rewrites avoid it:
    with ``stride == dilation`` the conv reads only every ``dilation``-th pixel, so it equals an
    undilated conv of the subsampled input; with stride 1 it equals an undilated conv whose
    kernel has zeros between the taps. The parameter is the same (C, 1, k, k) tensor either
    way, so weights, state dicts and parameter counts do not change; gradients reach only the
    real taps.
    """

    rewrite: bool = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.rewrite:
            return super().forward(x)
        d, s, k = self.dilation[0], self.stride[0], self.kernel_size[0]
        if s == d:
            sub = pixel_phases(x, d, ((0, 0),))[0] if self.phase_subsample else x[:, :, ::d, ::d]
            return F.conv2d(sub, self.weight, None, 1, (k - 1) // 2, 1, self.groups)
        if s != 1:
            return super().forward(x)
        size = d * (k - 1) + 1
        kernel = self.weight.new_zeros(self.weight.shape[0], 1, size, size)
        kernel[:, :, ::d, ::d] = self.weight
        return F.conv2d(x, kernel, None, s, self.padding, 1, self.groups)


def set_switch(model: nn.Module, kind: type, attr: str, enabled: bool) -> int:
    """Set a speed switch on every ``kind`` module of ``model``; returns how many there are."""
    mods = [m for m in model.modules() if isinstance(m, kind)]
    for m in mods:
        setattr(m, attr, enabled)
    return len(mods)


def set_dilated_rewrite(model: nn.Module, enabled: bool) -> int:
    """Switch the dilated-conv rewrite on or off in every op of ``model``; returns how many
    convs it applies to."""
    return set_switch(model, DilatedDepthwiseConv2d, "rewrite", enabled)


class DilConv(ReLUFirst):
    """ReLU - depthwise dilated conv - pointwise conv - BN."""

    def __init__(self, C_in, C_out, kernel, stride, padding, dilation, affine=True):
        if dilation > 1 and padding != dilation * (kernel - 1) // 2:
            raise ValueError("DilConv: dilated ops need 'same' padding, dilation * (kernel - 1) / 2")
        conv = DilatedDepthwiseConv2d if dilation > 1 else nn.Conv2d
        super().__init__(
            nn.ReLU(inplace=False),
            conv(C_in, C_in, kernel, stride, padding, dilation=dilation, groups=C_in, bias=False),
            nn.Conv2d(C_in, C_out, 1, padding=0, bias=False),
            nn.BatchNorm2d(C_out, affine=affine),
        )


class SepConv(nn.Sequential):
    """Two stacked DilConv(dilation=1) blocks; only the first one strides (DARTS)."""

    opens_with_relu = True

    def __init__(self, C_in, C_out, kernel, stride, padding, affine=True):
        super().__init__(
            DilConv(C_in, C_in, kernel, stride, padding, 1, affine),
            DilConv(C_in, C_out, kernel, 1, padding, 1, affine),
        )

    def forward(self, x: torch.Tensor, relu_done: bool = False) -> torch.Tensor:
        return self[1](self[0](x, relu_done))


def run_op(op: nn.Module, x: torch.Tensor, relu_x: torch.Tensor | None) -> torch.Tensor:
    """``op(x)``, reusing ``relu_x == relu(x)`` when given and the op opens with a ReLU."""
    if relu_x is not None and getattr(op, "opens_with_relu", False):
        return op(relu_x, True)
    return op(x)


class LazyReLU:
    """``relu(states[i])`` computed on first use and kept for the other ops reading state i.
    Disabled (``enabled=False``), ``get`` returns None and ops apply their own ReLU."""

    __slots__ = ("cache", "enabled", "states")

    def __init__(self, states: list[torch.Tensor], enabled: bool):
        self.states, self.enabled = states, enabled
        self.cache: dict[int, torch.Tensor] = {}

    def get(self, i: int) -> torch.Tensor | None:
        if not self.enabled:
            return None
        r = self.cache.get(i)
        if r is None:
            r = self.cache[i] = F.relu(self.states[i])
        return r


class SharesReLU:
    """Mixin for cells and networks that honour ``runtime.share_relu``."""

    share_relu: bool = False


def set_share_relu(model: nn.Module, enabled: bool) -> int:
    """Switch ReLU sharing on or off in every cell / network of ``model``; returns how many
    modules it applies to."""
    return set_switch(model, SharesReLU, "share_relu", enabled)


class FusesMixing:
    """Mixin for supernet cells that honour ``runtime.fused_mixing``: each node's sum over its
    edges and ops is one chain of in-place multiply-adds (one tensor written per op) instead
    of a product and a sum tensor per op."""

    fused_mixing: bool = False


def set_fused_mixing(model: nn.Module, enabled: bool) -> int:
    """Switch fused mixing on or off in every supernet cell of ``model`` (any space); returns
    how many cells it applies to."""
    return set_switch(model, FusesMixing, "fused_mixing", enabled)


class Identity(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class Zero(nn.Module):
    """The ``none`` op. Mixed ops skip it (its output is 0); this is for discrete nets."""

    def __init__(self, stride: int):
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            return x.mul(0.0)
        return x[:, :, :: self.stride, :: self.stride].mul(0.0)


class Noise(nn.Module):
    """RobustDARTS' ``noise`` op (S4; ``NoiseOp(stride, 0, 1)`` in ``src/operations.py``):
    N(mean, std) samples of the shape of its input subsampled by ``x[:, :, ::s, ::s]``, drawn
    from the global torch generator, independent of the input's values (no gradient reaches
    the input)."""

    def __init__(self, stride: int, mean: float = 0.0, std: float = 1.0):
        super().__init__()
        self.stride, self.mean, self.std = stride, mean, std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride != 1:
            x = x[:, :, :: self.stride, :: self.stride]
        return torch.empty_like(x, memory_format=_memory_format(x)).normal_(self.mean, self.std)


class FactorizedReduce(SubsamplesPhases, nn.Module):
    """Halve the resolution with two offset stride-2 1x1 convs, concatenated (DARTS).

    The convs read pixel phases (0, 0) and (1, 1) of the input. With ``phase_subsample``
    (``runtime.phase_subsample``) both phases are taken in one op and the convs run at stride 1
    on them: the same products and outputs, and a backward that writes the input gradient once
    instead of zero-filling it three times and adding the branches' gradients (measured on a
    144-channel 32x32 map at batch 96: forward + backward 155 -> 50 ms, CPU)."""

    opens_with_relu = True

    def __init__(self, C_in: int, C_out: int, affine: bool = True):
        super().__init__()
        if C_out % 2:
            raise ValueError(f"FactorizedReduce needs an even C_out, got {C_out}")
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = nn.Conv2d(C_in, C_out // 2, 1, stride=2, padding=0, bias=False)
        self.conv_2 = nn.Conv2d(C_in, C_out // 2, 1, stride=2, padding=0, bias=False)
        self.bn = nn.BatchNorm2d(C_out, affine=affine)

    def forward(self, x: torch.Tensor, relu_done: bool = False) -> torch.Tensor:
        if not relu_done:
            x = self.relu(x)
        if self.phase_subsample:
            even, odd = pixel_phases(x, 2, ((0, 0), (1, 1)))
            return self.bn(torch.cat([F.conv2d(even, self.conv_1.weight),
                                      F.conv2d(odd, self.conv_2.weight)], dim=1))
        # Odd sizes: the offset branch sees one pixel less; pad so both halves agree.
        y = x[:, :, 1:, 1:]
        if x.shape[-1] % 2 or x.shape[-2] % 2:
            y = nn.functional.pad(y, (0, x.shape[-1] % 2, 0, x.shape[-2] % 2))
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(y)], dim=1))


@dataclass(frozen=True)
class OpSpec:
    build: Callable[[int, int, bool], nn.Module]
    parametric: bool
    pooling: bool = False


OPS: dict[str, OpSpec] = {
    "none": OpSpec(lambda C, s, a: Zero(s), parametric=False),
    "noise": OpSpec(lambda C, s, a: Noise(s), parametric=False),
    "avg_pool_3x3": OpSpec(
        lambda C, s, a: nn.AvgPool2d(3, stride=s, padding=1, count_include_pad=False),
        parametric=False, pooling=True,
    ),
    "max_pool_3x3": OpSpec(lambda C, s, a: nn.MaxPool2d(3, stride=s, padding=1),
                           parametric=False, pooling=True),
    "skip_connect": OpSpec(
        lambda C, s, a: Identity() if s == 1 else FactorizedReduce(C, C, affine=a),
        parametric=False,
    ),
    "sep_conv_3x3": OpSpec(lambda C, s, a: SepConv(C, C, 3, s, 1, affine=a), parametric=True),
    "sep_conv_5x5": OpSpec(lambda C, s, a: SepConv(C, C, 5, s, 2, affine=a), parametric=True),
    "sep_conv_7x7": OpSpec(lambda C, s, a: SepConv(C, C, 7, s, 3, affine=a), parametric=True),
    "dil_conv_3x3": OpSpec(lambda C, s, a: DilConv(C, C, 3, s, 2, 2, affine=a), parametric=True),
    "dil_conv_5x5": OpSpec(lambda C, s, a: DilConv(C, C, 5, s, 4, 2, affine=a), parametric=True),
    "conv_7x1_1x7": OpSpec(
        lambda C, s, a: ReLUFirst(
            nn.ReLU(inplace=False),
            nn.Conv2d(C, C, (1, 7), stride=(1, s), padding=(0, 3), bias=False),
            nn.Conv2d(C, C, (7, 1), stride=(s, 1), padding=(3, 0), bias=False),
            nn.BatchNorm2d(C, affine=a),
        ),
        parametric=True,
    ),
}

# DARTS' PRIMITIVES order; alphas' columns follow the op list of the space.
DARTS_OPS: tuple[str, ...] = (
    "none", "max_pool_3x3", "avg_pool_3x3", "skip_connect",
    "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5",
)


def build_op(name: str, C: int, stride: int, affine: bool) -> nn.Module:
    """Build op ``name``. In the search net (affine=False) pooling is followed by a
    BN(affine=False), as in DARTS' ``MixedOp``, so its scale matches the conv ops'."""
    spec = OPS[name]
    op = spec.build(C, stride, affine)
    if spec.pooling and not affine:
        op = nn.Sequential(op, nn.BatchNorm2d(C, affine=False))
    return op
