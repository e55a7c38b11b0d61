"""OSSM: the omnidirectional selective-scan layer (SPEC section 3), VMamba's SS2D with 8 directions.

Shape letters: b batch, c channels of the layer, h, w grid, l = h*w, k directions, e d_inner (expanded
channels), n state size, r dt_rank.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..ops import DIRECTIONS, cross_selective_scan, resolve


def drop_path(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Stochastic depth: drop whole samples of a residual branch with probability p."""
    if p == 0.0 or not training:
        return x
    keep = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(1 - p)
    return x * keep / (1 - p)


class OSSM(nn.Module):
    """One omnidirectional selective-scan layer with its LayerNorm and residual: x + DropPath(SSM(LN(x))).

    The SSM: in_proj c -> 2e (x, z); x -> depthwise 3x3 conv + SiLU -> cross-scan into k directions ->
    per-direction x_proj (dt, B, C) and dt_proj -> selective scan (softplus, dt bias) -> cross-merge (sum)
    -> LayerNorm(e) -> * SiLU(z) -> out_proj e -> c. Channels-first in and out, channels-last inside.

    Args:
        c (int): Channels in and out.
        d_state (int): SSM state size N.
        ssm_ratio (float): Expansion, d_inner = ssm_ratio * c.
        directions (int): 8 (omnidirectional, the paper) or 4 (VMamba SS2D, the ablation baseline).
        dt_rank (int | str): Rank of the delta projection, an int >= 1 or "auto" (ceil(c / 16)).
        drop_path (float): Stochastic-depth rate of the residual branch.
        d_conv (int): Depthwise conv kernel size, odd (the padding keeps h and w).

    Examples:
        >>> m = OSSM(32)
        >>> m(torch.randn(2, 32, 5, 7)).shape
        torch.Size([2, 32, 5, 7])
    """

    def __init__(
        self,
        c: int,
        d_state: int = 16,
        ssm_ratio: float = 2.0,
        directions: int = 8,
        dt_rank: int | str = "auto",
        drop_path: float = 0.0,
        d_conv: int = 3,
    ):
        super().__init__()
        if directions not in DIRECTIONS:
            raise ValueError(f"OSSM directions={directions!r} is not supported; use one of {DIRECTIONS}")
        if c < 1 or d_state < 1 or ssm_ratio <= 0:
            raise ValueError(f"OSSM needs c >= 1, d_state >= 1, ssm_ratio > 0; got {c}, {d_state}, {ssm_ratio}")
        if isinstance(d_conv, bool) or not isinstance(d_conv, int) or d_conv < 1 or d_conv % 2 == 0:
            raise ValueError(f"OSSM d_conv={d_conv!r} is not supported; use an odd int (1, 3, 5, ...)")
        if dt_rank != "auto" and (isinstance(dt_rank, bool) or not isinstance(dt_rank, int) or dt_rank < 1):
            raise ValueError(f"OSSM dt_rank={dt_rank!r} is not supported; use an int >= 1 or 'auto'")
        e = int(ssm_ratio * c)
        r = math.ceil(c / 16) if dt_rank == "auto" else dt_rank
        k = directions
        self.c, self.e, self.n, self.r, self.k = c, e, d_state, r, k
        self.drop_path = drop_path

        self.norm = nn.LayerNorm(c)
        self.in_proj = nn.Linear(c, 2 * e, bias=False)
        self.conv2d = nn.Conv2d(e, e, d_conv, padding=d_conv // 2, groups=e, bias=True)
        self.x_proj_weight = nn.Parameter(torch.empty(k, r + 2 * d_state, e))  # per direction: e -> dt, B, C
        self.dt_projs_weight = nn.Parameter(torch.empty(k, e, r))  # per direction: r -> e
        self.dt_projs_bias = nn.Parameter(torch.empty(k, e))
        self.A_logs = nn.Parameter(torch.empty(k * e, d_state))
        self.Ds = nn.Parameter(torch.empty(k * e))
        self.out_norm = nn.LayerNorm(e)
        self.out_proj = nn.Linear(e, c, bias=False)
        self.reset_ssm_parameters()

    @torch.no_grad()
    def reset_ssm_parameters(self, dt_min: float = 1e-3, dt_max: float = 1e-1, dt_floor: float = 1e-4):
        """Mamba/VMamba initialisation of the SSM parameters (SPEC section 3)."""
        bound = self.e**-0.5
        self.x_proj_weight.uniform_(-bound, bound)  # nn.Linear's default for fan-in e
        self.dt_projs_weight.uniform_(-(self.r**-0.5), self.r**-0.5)
        dt = torch.exp(torch.rand(self.k, self.e) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        dt = dt.clamp(min=dt_floor)
        self.dt_projs_bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus
        self.A_logs.copy_(torch.log(torch.arange(1, self.n + 1, dtype=torch.float32)).expand(self.k * self.e, -1))
        self.Ds.fill_(1.0)

    def no_weight_decay_parameters(self) -> list[nn.Parameter]:
        """A_log and D, which Mamba trains without weight decay."""
        return [self.A_logs, self.Ds]

    def ssm(self, u: torch.Tensor) -> torch.Tensor:
        """Cross-scan, selective scan and cross-merge of u (b, h, w, e) channels-last -> (b, l, e).

        x_proj and dt_proj act on each position alone, so they run in spatial order for all directions at once
        and cross_selective_scan reads each direction's order itself (no permuted copies on the CPU). In CPU
        inference the fused kernel applies dt_proj itself, so the (k, b, l, e) step sizes are never stored."""
        b, h, w, e = u.shape
        l, k, n, r = h * w, self.k, self.n, self.r
        u = u.reshape(b, l, e)
        x_dbl = F.linear(u, self.x_proj_weight.view(k * (r + 2 * n), e)).view(b, l, k, r + 2 * n)
        dts, Bs, Cs = torch.split(x_dbl, [r, n, n], dim=3)
        return cross_selective_scan(
            u,
            dts,  # dt_proj (r -> e per direction) is applied by the scan: in its kernel when fused
            -torch.exp(self.A_logs.to(torch.promote_types(self.A_logs.dtype, torch.float32))).view(k, e, n),
            Bs,
            Cs,
            self.Ds.view(k, e),
            self.dt_projs_bias,
            h,
            w,
            dt_weight=self.dt_projs_weight,
        )  # (b, l, e)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (b, c, h, w) -> x + DropPath(SSM(LayerNorm(x))), same shape."""
        b, c, h, w = x.shape
        y = self.norm(x.permute(0, 2, 3, 1))  # (b, h, w, c)
        xz = self.in_proj(y)  # (b, h, w, 2e)
        u, z = xz.chunk(2, dim=-1)
        u = u.permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)  # conv output stays channels-last
        u = F.silu(self.conv2d(u)).permute(0, 2, 3, 1)  # (b, h, w, e)
        y = self.out_norm(self.ssm(u)).view(b, h, w, self.e) * F.silu(z)  # (b, h, w, e)
        y = self.out_proj(y).permute(0, 3, 1, 2)  # (b, c, h, w)
        return x + drop_path(y, self.drop_path, self.training)

    def scan_flops(self, h: int, w: int) -> float:
        """FLOPs (batch 1) of the selective scan and cross-merge at an h x w input, which thop does not count.

        thop (ultralytics-thop >= 2.2) counts the x_proj matmul, and dt_proj's where it runs in torch. Where the
        numba kernel applies dt_proj itself (the backend resolves to "numba"), its 2 k l r e FLOPs are out of thop's
        sight and counted here instead.
        """
        l, k, e, n, r = h * w, self.k, self.e, self.n, self.r
        scan = 9 * k * e * l * n + 2 * k * e * l  # Mamba's selective-scan count, plus the D skip and z gate
        merge = k * e * l  # summing the directions
        dt_proj = 2 * k * l * r * e if resolve("auto", self.dt_projs_weight) == "numba" else 0
        return float(scan + merge + dt_proj)

    def extra_repr(self) -> str:
        return f"c={self.c}, d_inner={self.e}, d_state={self.n}, dt_rank={self.r}, directions={self.k}"
