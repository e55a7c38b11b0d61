"""LFNSB's backbone blocks (SPEC section 8): MixDW (MixConv + coordinate attention bottleneck) and RepDW.

LFNSB (Lightweight Facial Network with Spatial Bias) classifies 112x112 face crops. Its names for the plain layers map
to Ultralytics' ``Conv``: ``Conv2d_BN`` and ``Linear_block`` are ``Conv(..., act=False)`` (conv without bias + BN),
``Conv_block`` is ``Conv(..., act=nn.PReLU(c2))``. Shape letters: b batch, c channels, h, w grid.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from ultralytics.nn.modules import Conv


class MixConv(nn.Module):
    """Depthwise convolutions of several kernel sizes, one per channel group, concatenated (no BN, no activation).

    Args:
        c (int): Channels in and out; ``sum(splits)`` must equal c.
        kernels (list[int]): Odd kernel size of each group (padding k // 2 keeps the grid at stride 1).
        splits (list[int] | None): Channels of each group, in order; None for one group of all c channels.
        s (int): Stride of every group.

    Examples:
        >>> m = MixConv(96, [3, 5], [64, 32], s=2)
        >>> m(torch.randn(1, 96, 56, 56)).shape
        torch.Size([1, 96, 28, 28])
    """

    def __init__(self, c: int, kernels: list[int] = (3,), splits: list[int] | None = None, s: int = 1):
        super().__init__()
        splits = [c] if splits is None else list(splits)
        if len(kernels) != len(splits) or sum(splits) != c or min(splits, default=0) < 1:
            raise ValueError(f"MixConv splits {splits} must be positive, one per kernel {kernels}, and sum to c={c}")
        if any(k % 2 == 0 for k in kernels):
            raise ValueError(f"MixConv kernels must be odd, got {kernels}")
        self.splits = splits
        self.convs = nn.ModuleList(nn.Conv2d(g, g, k, s, k // 2, groups=g, bias=False) for k, g in zip(kernels, splits))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (b, c, h, w) -> (b, c, h / s, w / s)."""
        if len(self.convs) == 1:
            return self.convs[0](x)
        return torch.cat([conv(part) for conv, part in zip(self.convs, x.split(self.splits, 1))], 1)


class CoordinateAttention(nn.Module):
    """Coordinate attention (Hou et al., 2021): channel weights that vary along H and along W.

    Pool along W (-> b, c, h, 1) and along H (-> b, c, w, 1), concatenate along the grid, 1x1 conv to
    ``max(8, c // 32)`` channels + BN + h-swish, split back, one 1x1 conv + sigmoid per axis, multiply x by both.

    Args:
        c (int): Channels in and out.
        r (int): Reduction ratio of the shared 1x1 conv.
        min_mid (int): Fewest channels of the shared 1x1 conv.

    Examples:
        >>> m = CoordinateAttention(96)
        >>> m(torch.randn(2, 96, 7, 5)).shape
        torch.Size([2, 96, 7, 5])
    """

    def __init__(self, c: int, r: int = 32, min_mid: int = 8):
        super().__init__()
        mid = max(min_mid, c // r)
        self.reduce = Conv(c, mid, 1, act=nn.Hardswish())
        self.conv_h = nn.Conv2d(mid, c, 1)
        self.conv_w = nn.Conv2d(mid, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (b, c, h, w) -> x * a_h * a_w, same shape."""
        h = x.shape[2]
        along_h = x.mean(3, keepdim=True)  # (b, c, h, 1)
        along_w = x.mean(2, keepdim=True).transpose(2, 3)  # (b, c, w, 1)
        y = self.reduce(torch.cat((along_h, along_w), 2))  # (b, mid, h + w, 1)
        y_h, y_w = y[:, :, :h], y[:, :, h:]
        return x * self.conv_h(y_h).sigmoid() * self.conv_w(y_w.transpose(2, 3)).sigmoid()


class MixDW(nn.Module):
    """LFNSB's MixDW block: 1x1 expand + PReLU, MixConv, coordinate attention, 1x1 project (+ x when residual).

    1x1 Conv_block c1 -> hidden (conv + BN + PReLU); MixConv (depthwise k x k per channel group, stride s);
    CoordinateAttention(hidden); 1x1 Linear_block hidden -> c2 (conv + BN); the residual adds x.

    Args:
        c1 (int): Input channels.
        c2 (int): Output channels.
        hidden (int | None): Expanded channels; None keeps c2 (no expansion).
        kernels (list[int]): Depthwise kernel size of each channel group.
        splits (list[int] | None): Channels of each group (summing to hidden); None for one group.
        s (int): Stride.
        residual (bool): Add the input (stride 1 and c1 == c2 only).

    Examples:
        >>> m = MixDW(64, 128, 192, [3, 5], [128, 64], s=2)
        >>> m(torch.randn(1, 64, 28, 28)).shape
        torch.Size([1, 128, 14, 14])
        >>> MixDW(64, 64, 96, [3], [96], residual=True)(torch.randn(1, 64, 28, 28)).shape
        torch.Size([1, 64, 28, 28])
    """

    def __init__(
        self,
        c1: int,
        c2: int,
        hidden: int | None = None,
        kernels: list[int] = (3,),
        splits: list[int] | None = None,
        s: int = 1,
        residual: bool = False,
    ):
        super().__init__()
        if residual and (s != 1 or c1 != c2):
            raise ValueError(f"MixDW residual=True needs s=1 and c1 == c2, got s={s}, c1={c1}, c2={c2}")
        hidden = hidden or c2
        self.expand = Conv(c1, hidden, 1, act=nn.PReLU(hidden))
        self.mix = MixConv(hidden, kernels, splits, s)
        self.attention = CoordinateAttention(hidden)
        self.project = Conv(hidden, c2, 1, act=False)
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (b, c1, h, w) -> (b, c2, h / s, w / s)."""
        y = self.project(self.attention(self.mix(self.expand(x))))
        return x + y if self.residual else y


class RepDW(nn.Module):
    """LFNSB's RepVGG-style depthwise block: BN(BN(dw3x3(x)) + dw1x1(x) + x), channels kept.

    Three branches summed, then one BatchNorm: a depthwise 3x3 conv with BN (Conv2d_BN), a depthwise 1x1 conv with
    bias, and the identity. (Ultralytics' ``RepVGGDW`` is a different block: 7x7 + 3x3 branches and SiLU.)

    Args:
        c1 (int): Channels in and out.

    Examples:
        >>> m = RepDW(256)
        >>> m(torch.randn(1, 256, 7, 7)).shape
        torch.Size([1, 256, 7, 7])
    """

    def __init__(self, c1: int):
        super().__init__()
        self.conv3 = Conv(c1, c1, 3, g=c1, act=False)
        self.conv1 = nn.Conv2d(c1, c1, 1, groups=c1, bias=True)
        self.bn = nn.BatchNorm2d(c1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (b, c, h, w) -> same shape."""
        return self.bn(self.conv3(x) + self.conv1(x) + x)
