"""FER-YOLO-VSS blocks (SPEC section 2): FERYOLOVSS1 changes channels, FERYOLOVSS2 keeps them and adds x."""

from __future__ import annotations

import os

import torch
import torch.nn as nn
from ultralytics.nn.modules import Conv

from .abmlp import ABMLP
from .ossm import OSSM

# Opt-in debugging aid (docs/robustness.md): in training mode, raise at the first block fed NaN/Inf. Off by default:
# Ultralytics already rolls a run back to last.pt on a non-finite loss, and on CUDA the check costs a device sync.
CHECK_FINITE = os.environ.get("FER_MAMBA_CHECK_FINITE", "0").lower() not in ("", "0", "false")


class FERYOLOVSS1(nn.Module):
    """The paper's FER-YOLO-VSS block without outer shortcut ("VSS1"), used top-down in the neck.

    x is split into halves a (first c1/2 channels) and b (second). FRM branch on a: Conv1x1 c1/2->c1/4
    + BN + ReLU -> ABMLP -> Conv1x1 c1/4->c1/2 + BN. OSS branch on b: n stacked OSSM layers (each
    b + DropPath(OSSM(LayerNorm(b)))). Then concat and a 1x1 conv c1 -> c2 with bias, no BN, no act.

    Args:
        c1 (int): Input channels (divisible by 4).
        c2 (int): Output channels.
        n (int): OSSM layers stacked in the OSS branch.
        d_state (int): SSM state size.
        ssm_ratio (float): OSSM expansion ratio.
        directions (int): 8 (OSSM) or 4 (VMamba SS2D ablation).
        frm (bool): Keep the FRM branch; False passes a through unchanged (ablation).
        oss (bool): Keep the OSS branch; False passes b through unchanged (ablation).
        r (int): ABMLP reduction ratio.
        drop_path (float): Stochastic depth of the OSSM layers.

    Examples:
        >>> m = FERYOLOVSS1(64, 32)
        >>> m(torch.randn(1, 64, 10, 10)).shape
        torch.Size([1, 32, 10, 10])
    """

    residual = False

    def __init__(
        self,
        c1: int,
        c2: int,
        n: int = 1,
        d_state: int = 16,
        ssm_ratio: float = 2.0,
        directions: int = 8,
        frm: bool = True,
        oss: bool = True,
        r: int = 16,
        drop_path: float = 0.0,
    ):
        super().__init__()
        if c1 % 4:
            raise ValueError(f"{type(self).__name__} needs input channels divisible by 4, got c1={c1}")
        h = c1 // 2
        self.frm = (
            nn.Sequential(Conv(h, h // 2, 1, act=nn.ReLU()), ABMLP(h // 2, r), Conv(h // 2, h, 1, act=False))
            if frm
            else nn.Identity()
        )
        self.oss = (
            nn.Sequential(*(OSSM(h, d_state, ssm_ratio, directions, drop_path=drop_path) for _ in range(n)))
            if oss
            else nn.Identity()
        )
        self.proj = nn.Conv2d(c1, c2, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (b, c1, h, w) -> (b, c2, h, w)."""
        if CHECK_FINITE and self.training and not torch.isfinite(x).all():
            layer = f"layer {self.i} " if hasattr(self, "i") else ""
            raise FloatingPointError(
                f"{layer}{type(self).__name__} got {int((~torch.isfinite(x)).sum())} NaN/Inf input values of "
                f"{x.numel()} while training (FER_MAMBA_CHECK_FINITE=1): they come from upstream (data, backbone, "
                f"learning rate or fp16 overflow), see docs/robustness.md"
            )
        a, b = x.chunk(2, dim=1)
        y = self.proj(torch.cat((self.frm(a), self.oss(b)), dim=1))
        return x + y if self.residual else y


class FERYOLOVSS2(FERYOLOVSS1):
    """The paper's FER-YOLO-VSS block with outer shortcut ("VSS2"), used bottom-up: VSS1(x) + x, c2 == c1.

    Args:
        c1 (int): Input channels (divisible by 4).
        c2 (int): Output channels; must equal c1.
        n (int): OSSM layers stacked in the OSS branch.
        **kwargs: As FERYOLOVSS1.

    Examples:
        >>> m = FERYOLOVSS2(64, 64)
        >>> m(torch.randn(1, 64, 10, 10)).shape
        torch.Size([1, 64, 10, 10])
    """

    residual = True

    def __init__(self, c1: int, c2: int, n: int = 1, **kwargs):
        if c1 != c2:
            raise ValueError(f"FERYOLOVSS2 keeps channels (outer residual) but got c1={c1} != c2={c2}; "
                             "use FERYOLOVSS1 where channels change")
        super().__init__(c1, c2, n, **kwargs)
