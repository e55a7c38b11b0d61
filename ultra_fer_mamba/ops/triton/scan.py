"""The two Triton ops: the plain selective scan and the fused cross-scan + scan + cross-merge of OSSM.

Both reduce to launch.py's layout. The plain scan's groups become its directions: u, delta (b, d, l)
-> (g, b, l, d/g) channels-last, B, C (b, g, n, l) -> (b, l, g, n); its D skip and SiLU(z) gate run in
torch around the kernels. The fused op needs no copy at all: u (b, l, e) is read by every direction
through the cached scan-order index, B and C are read in place from the views of x_proj's output.

State and sums are float32 whatever the input dtype (autocast is turned off inside); y comes back in u's
dtype. Shape letters: b batch, d channels, g groups, l = h*w positions, k directions, e channels (d_inner),
n state size, r dt rank.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..cross_scan import check_fused_shapes, scan_indices
from .launch import ScanFn, forward


PROFILE_LABEL = "fer_mamba::triton"  # what a profiler shows around each op: which backend really ran


def _needs_grad(*tensors) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


@torch.profiler.record_function(f"{PROFILE_LABEL}_selective_scan")
def selective_scan_triton(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                          return_last_state=False):
    """Selective scan with mamba_ssm's ``selective_scan_fn`` semantics, by the Triton kernels.

    Args:
        u (torch.Tensor): Input (b, d, l).
        delta (torch.Tensor): Step sizes (b, d, l), before bias and softplus.
        A (torch.Tensor): State matrix diagonal (d, n).
        B (torch.Tensor): Input projection (b, g, n, l) or (b, n, l), d divisible by g.
        C (torch.Tensor): Output projection (b, g, n, l) or (b, n, l).
        D (torch.Tensor, optional): Skip weight (d,).
        z (torch.Tensor, optional): Gate (b, d, l), multiplied in as SiLU(z).
        delta_bias (torch.Tensor, optional): Added to delta (d,).
        delta_softplus (bool): Softplus on delta after the bias.
        return_last_state (bool): Also return h_L (b, d, n), float32.

    Returns:
        (torch.Tensor | tuple): y (b, d, l) in u's dtype, and h_L when asked; differentiable in every input.

    Examples:
        On a GPU (or on CPU tensors with TRITON_INTERPRET=1 set before triton is imported):

        >>> x = torch.randn(1, 4, 5, device="cuda")  # doctest: +SKIP
        >>> y = selective_scan_triton(x, torch.rand_like(x), -torch.rand(4, 2, device="cuda"),  # doctest: +SKIP
        ...                           torch.randn(1, 1, 2, 5, device="cuda"), torch.randn(1, 1, 2, 5, device="cuda"))
        >>> y.shape  # doctest: +SKIP
        torch.Size([1, 4, 5])
    """
    b, d, l = u.shape
    n = A.shape[1]
    B4, C4 = (t.unsqueeze(1) if t.dim() == 3 else t for t in (B, C))  # (b, n, l) is one group
    gB, gC = B4.shape[1], C4.shape[1]
    if d % gB or d % gC or tuple(delta.shape) != (b, d, l) or A.shape[0] != d:
        raise ValueError(f"selective_scan_triton: shapes u {tuple(u.shape)}, delta {tuple(delta.shape)}, A "
                         f"{tuple(A.shape)}, B {tuple(B.shape)}, C {tuple(C.shape)} do not fit (d divisible by g)")
    g = gB * gC // math.gcd(gB, gC)  # B and C with different groups: both expanded to g
    e = d // g
    with torch.autocast(u.device.type, enabled=False):
        per_group = lambda t: t.reshape(b, g, e, l).permute(1, 0, 3, 2).contiguous()  # noqa: E731 (b,d,l)->(g,b,l,e)
        by_step = lambda t, gt: t.repeat_interleave(g // gt, 1).permute(0, 3, 1, 2).contiguous()  # noqa: E731 (b,l,g,n)
        bias = delta_bias.reshape(g, e).contiguous() if delta_bias is not None else u.new_zeros(g, e, dtype=torch.float32)
        args = (per_group(u), per_group(delta), A.reshape(g, e, n).contiguous(), by_step(B4, gB), by_step(C4, gC), bias, None,
                True, bool(delta_softplus), bool(return_last_state))
        if _needs_grad(u, delta, A, B, C, delta_bias):
            y, hlast = ScanFn.apply(*args)
        else:
            y, _, hlast = forward(*args[:-1], save=False, last=args[-1])
        y = y.permute(1, 0, 3, 2).reshape(b, d, l)  # (g, b, l, e) -> (b, d, l)
        if D is not None:
            y = y + u.float() * D.float()[:, None]
        if z is not None:
            y = y * F.silu(z.float())
    y = y.to(u.dtype)
    return (y, hlast.permute(1, 0, 2, 3).reshape(b, d, n)) if return_last_state else y


@torch.profiler.record_function(f"{PROFILE_LABEL}_cross_selective_scan")
def cross_selective_scan_triton(u, delta, A, B, C, D, delta_bias, h, w, delta_softplus=True, dt_weight=None):
    """Selective scans of u along every cross-scan direction, summed back in spatial order, by the Triton kernels.

    Same signature and semantics as ops/cross_selective_scan.py's ``cross_selective_scan`` (without its
    ``backend``): ``cross_merge(selective_scan(cross_scan(...)))`` plus D's skip, as one op.

    Args:
        u (torch.Tensor): Input (b, l, e), positions row-major over an h x w grid.
        delta (torch.Tensor): Step sizes (k, b, l, e) in spatial order, before bias and softplus; with
            dt_weight, their low-rank factor (b, l, k, r) instead.
        A (torch.Tensor): State matrix diagonals (k, e, n).
        B (torch.Tensor): Input projections (b, l, k, n), spatial order (a view of x_proj's output is read in place).
        C (torch.Tensor): Output projections (b, l, k, n), spatial order.
        D (torch.Tensor): Skip weights (k, e).
        delta_bias (torch.Tensor): Added to delta (k, e).
        h (int): Grid height.
        w (int): Grid width.
        delta_softplus (bool): Softplus on delta after the bias.
        dt_weight (torch.Tensor, optional): (k, e, r): the step sizes of direction k are delta[:, :, k] @
            dt_weight[k].T. Inference forms them inside the kernel a step at a time; with autograd, one einsum.

    Returns:
        (torch.Tensor): y (b, l, e) in u's dtype, summed over the k = 4 or 8 directions, D's skip included.
    """
    check_fused_shapes("cross_selective_scan_triton", u, delta, A, B, C, h, w, dt_weight)
    order, _ = scan_indices(h, w, A.shape[0], u.device)
    with torch.autocast(u.device.type, enabled=False):
        u_in = u if u.is_contiguous() else u.contiguous()
        if _needs_grad(u, delta, A, B, C, D, delta_bias, dt_weight):
            if dt_weight is not None:  # dt_proj in torch, so autograd gives its gradients
                ct = torch.promote_types(delta.dtype, torch.float32)
                delta = torch.einsum("blkr,ker->kble", delta.to(ct), dt_weight.to(ct))
            y, _ = ScanFn.apply(u_in, delta.contiguous(), A.contiguous(), B, C, delta_bias.contiguous(),
                                order, False, bool(delta_softplus), False)
        else:
            lowrank = {} if dt_weight is None else {"dts": delta, "wdt": dt_weight}
            y, _, _ = forward(u_in, None if lowrank else delta.contiguous(), A.contiguous(), B, C,
                              delta_bias.contiguous(), order, False, bool(delta_softplus), save=False, last=False,
                              **lowrank)
        y = y + u.float() * D.float().sum(0)
    return y.to(u.dtype)
