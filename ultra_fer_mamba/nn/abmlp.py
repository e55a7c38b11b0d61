"""ABMLP: the attention bottleneck MLP of FER-YOLO-Mamba's feature-refinement branch (SPEC section 2)."""

from __future__ import annotations

import torch
import torch.nn as nn


class ABMLP(nn.Module):
    """Channel attention by a bottleneck MLP on the globally pooled feature (the paper's ABMLP).

    GAP -> Linear c->c/r, ReLU -> Linear c/r->c/r, ReLU -> Linear c/r->c, Sigmoid -> x * weights.
    No biases. The bottleneck keeps at least one unit, so tiny widths (c < r) still work.

    Args:
        c (int): Channels in and out.
        r (int): Reduction ratio.

    Examples:
        >>> m = ABMLP(32)
        >>> m(torch.randn(2, 32, 8, 8)).shape
        torch.Size([2, 32, 8, 8])
    """

    def __init__(self, c: int, r: int = 16):
        super().__init__()
        if c < 1 or r < 1:
            raise ValueError(f"ABMLP needs c >= 1 and r >= 1, got c={c}, r={r}")
        h = max(c // r, 1)
        self.mlp = nn.Sequential(
            nn.Linear(c, h, bias=False),
            nn.ReLU(inplace=True),
            nn.Linear(h, h, bias=False),
            nn.ReLU(inplace=True),
            nn.Linear(h, c, bias=False),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Scale each channel of x (b, c, h, w) by its attention weight."""
        w = self.mlp(x.mean(dim=(2, 3)))  # (b, c)
        return x * w[:, :, None, None]
