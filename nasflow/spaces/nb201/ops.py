"""NAS-Bench-201 operations and the residual block between stages (after AutoDL
``xautodl/models/cell_operations.py``; layer order and conv biases as there, so that parameter
counts match the benchmark's).

* ``nor_conv_kxk``: ReLU - Conv(k x k, ``bias = not affine``) - BN(``affine``,
  ``track_running_stats``). The search cells use ``affine=False``, so their convs carry a bias;
  the standalone network uses ``affine=True`` and bias-free convs.
* ``avg_pool_3x3``: 3x3 average pooling, stride ``s``, padding 1, ``count_include_pad=False``,
  preceded by a 1x1 ``nor_conv`` only when ``C_in != C_out`` (never inside NB201 cells, whose
  edges keep the stage's channels). No BN after pooling (unlike the DARTS search cell).
* ``skip_connect``: identity (stride 1, ``C_in == C_out``); otherwise AutoDL's
  ``FactorizedReduce`` with stride 1 (1x1 conv + BN, no ReLU). A strided skip never occurs in
  NB201 cells and is refused.
* ``none``: never executed (it contributes zero); no module.

The ops that open with a ReLU are :class:`~nasflow.spaces.ops.ReLUFirst` modules, so cells can
share one ReLU per tensor (``runtime.share_relu``).
"""

from __future__ import annotations

import torch
from torch import nn

from nasflow.spaces.ops import ReLUFirst

KERNELS = {"nor_conv_1x1": 1, "nor_conv_3x3": 3}


class NorConv(ReLUFirst):
    """ReLU - Conv2d(``bias = not affine``) - BatchNorm2d (AutoDL ``ReLUConvBN``)."""

    def __init__(self, C_in: int, C_out: int, kernel: int, stride: int, affine: bool,
                 track_running_stats: bool = True):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(C_in, C_out, kernel, stride=stride, padding=(kernel - 1) // 2,
                      bias=not affine),
            nn.BatchNorm2d(C_out, affine=affine, track_running_stats=track_running_stats),
        )


class Pooling(nn.Module):
    """3x3 average pooling, with a 1x1 :class:`NorConv` first when the channels change."""

    def __init__(self, C_in: int, C_out: int, stride: int, affine: bool,
                 track_running_stats: bool = True):
        super().__init__()
        self.preprocess = (None if C_in == C_out
                           else NorConv(C_in, C_out, 1, 1, affine, track_running_stats))
        self.op = nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.preprocess is not None:
            x = self.preprocess(x)
        return self.op(x)


class ChannelSkip(nn.Module):
    """``skip_connect`` between different channel counts at stride 1 (AutoDL
    ``FactorizedReduce(stride=1)``): a 1x1 conv and BN, no ReLU."""

    def __init__(self, C_in: int, C_out: int, affine: bool, track_running_stats: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(C_in, C_out, 1, bias=not affine)
        self.bn = nn.BatchNorm2d(C_out, affine=affine, track_running_stats=track_running_stats)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


def build_op(name: str, C_in: int, C_out: int, stride: int, affine: bool,
             track_running_stats: bool = True) -> nn.Module:
    """Op ``name`` of the NB201 op set (``none`` has no module: callers skip it)."""
    if name in KERNELS:
        return NorConv(C_in, C_out, KERNELS[name], stride, affine, track_running_stats)
    if name == "avg_pool_3x3":
        return Pooling(C_in, C_out, stride, affine, track_running_stats)
    if name == "skip_connect":
        if stride != 1:
            raise ValueError("skip_connect: NB201 cells never stride (the residual blocks "
                             "between stages do)")
        return nn.Identity() if C_in == C_out else ChannelSkip(C_in, C_out, affine,
                                                               track_running_stats)
    if name == "none":
        raise ValueError("'none' is never built: it contributes zero and is skipped")
    raise KeyError(f"unknown NB201 op {name!r}")


class ResNetBasicblock(nn.Module):
    """The residual block between stages (AutoDL ``ResNetBasicblock``): two 3x3
    :class:`NorConv` (the first strided) plus a shortcut: 2x2 average pooling and a bias-free
    1x1 conv at stride 2, a 1x1 :class:`NorConv` when only the channels change, else identity.
    Always ``affine=True`` with running statistics, in the search network too (as released).

    The shortcut's pooling uses ``ceil_mode``: the same on even sizes, and odd sizes keep the
    shapes of both branches equal (where the released block would fail)."""

    def __init__(self, C_in: int, C_out: int, stride: int):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"ResNetBasicblock: stride {stride}, expected 1 or 2")
        self.conv_a = NorConv(C_in, C_out, 3, stride, affine=True)
        self.conv_b = NorConv(C_out, C_out, 3, 1, affine=True)
        self.downsample: nn.Module | None
        if stride == 2:
            self.downsample = nn.Sequential(
                nn.AvgPool2d(kernel_size=2, stride=2, padding=0, ceil_mode=True),
                nn.Conv2d(C_in, C_out, kernel_size=1, stride=1, padding=0, bias=False),
            )
        elif C_in != C_out:
            self.downsample = NorConv(C_in, C_out, 1, 1, affine=True)
        else:
            self.downsample = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv_b(self.conv_a(x))
        residual = x if self.downsample is None else self.downsample(x)
        return residual + out


def stem(in_channels: int, C: int) -> nn.Sequential:
    """conv 3x3 (no bias) + BN, at full resolution."""
    return nn.Sequential(nn.Conv2d(in_channels, C, 3, padding=1, bias=False), nn.BatchNorm2d(C))


def head(C: int, num_classes: int) -> tuple[nn.Module, nn.Module, nn.Module]:
    """BN-ReLU, global average pooling, linear classifier."""
    return (nn.Sequential(nn.BatchNorm2d(C), nn.ReLU(inplace=True)), nn.AdaptiveAvgPool2d(1),
            nn.Linear(C, num_classes))


def stage_channels(C: int) -> tuple[int, int, int]:
    """The channels of the three stages."""
    return (C, 2 * C, 4 * C)
