"""Reference selective scan (Mamba's S6 recurrence): the plain sequential loop, ground truth for tests.

Imports only torch. Fast paths and kernels may call it, never the reverse.

Shape letters: b batch, d channels (d_inner, directions folded in), n state size, g groups of B/C,
l sequence length.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def expand_groups(x: torch.Tensor, d: int) -> torch.Tensor:
    """Broadcast grouped B or C (b, g, n, l) or (b, n, l) to (b, d, n, l)."""
    if x.dim() == 3:  # (b, n, l): one group
        x = x.unsqueeze(1)
    g = x.shape[1]
    if d % g:
        raise ValueError(f"selective_scan: channels d={d} must be divisible by the groups of B/C g={g}")
    return x.repeat_interleave(d // g, dim=1) if g != d else x


def selective_scan_ref(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
):
    """Selective scan by the plain recurrence, in float32 (or float64 for float64 inputs).

    h_t = exp(delta_t A) h_{t-1} + delta_t B_t u_t;  y_t = C_t . h_t + D u_t;  y *= SiLU(z).

    Args:
        u (torch.Tensor): Input (b, d, l).
        delta (torch.Tensor): Step sizes (b, d, l), before bias and softplus.
        A (torch.Tensor): State matrix diagonal (d, n), real and normally negative.
        B (torch.Tensor): Input projection (b, g, n, l) or (b, n, l).
        C (torch.Tensor): Output projection (b, g, n, l) or (b, n, l).
        D (torch.Tensor, optional): Skip weight (d,).
        z (torch.Tensor, optional): Gate (b, d, l), multiplied in as SiLU(z).
        delta_bias (torch.Tensor, optional): Added to delta (d,).
        delta_softplus (bool): Apply softplus to delta (after the bias).
        return_last_state (bool): Also return h_L (b, d, n) in the compute dtype.

    Returns:
        (torch.Tensor | tuple): y (b, d, l) in u's dtype, and h_L if asked.

    Examples:
        >>> u = torch.randn(1, 4, 5)
        >>> y = selective_scan_ref(u, torch.rand(1, 4, 5), -torch.rand(4, 3), torch.randn(1, 1, 3, 5), torch.randn(1, 1, 3, 5))
        >>> y.shape
        torch.Size([1, 4, 5])
    """
    dtype_in = u.dtype
    ct = torch.promote_types(u.dtype, torch.float32)  # compute type: float32, or float64 for float64 inputs
    u, delta, A = u.to(ct), delta.to(ct), A.to(ct)
    b, d, l = u.shape
    if delta_bias is not None:
        delta = delta + delta_bias.to(ct)[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    Bx = expand_groups(B.to(ct), d)  # (b, d, n, l)
    Cx = expand_groups(C.to(ct), d)
    h = u.new_zeros(b, d, A.shape[1])  # (b, d, n)
    ys = []
    # per-step views made once: indexing the full tensors inside the loop makes backward O(l^2)
    for dt, Bt, Ct, ut in zip(delta.unbind(-1), Bx.unbind(-1), Cx.unbind(-1), u.unbind(-1)):
        dt = dt[..., None]  # (b, d, 1)
        h = torch.exp(dt * A) * h + dt * Bt * ut[..., None]
        ys.append((h * Ct).sum(-1))  # (b, d)
    y = torch.stack(ys, dim=-1) if ys else u.new_zeros(b, d, 0)
    if D is not None:
        y = y + u * D.to(ct)[:, None]
    if z is not None:
        y = y * F.silu(z.to(ct))
    y = y.to(dtype_in)
    return (y, h) if return_last_state else y
