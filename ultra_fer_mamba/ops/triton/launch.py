"""Launches of the Triton scan kernels and their autograd Function (the layout both ops reduce to).

Layout (kernels.py): u (b, l, e) shared by the k directions, or (k, b, l, e) with ``per_dir``; delta
(k, b, l, e); A (k, e, n); B, C (b, l, k, n), any strides with unit stride over n and rows of a batch
evenly spaced (the split views of x_proj's output qualify); bias (k, e); order (k, l) or None (every
direction in position order). Outputs and gradients are float32; the partial sums the kernels leave
(directions of one output, batches of dA, channel blocks of dB and dC) are reduced here, in torch.

Shape letters: b batch, k directions (the plain scan's groups), l positions, e channels per direction,
n state size, r dt rank, c checkpoints.
"""

from __future__ import annotations

import torch
import triton
from torch.autograd.function import once_differentiable

from . import config
from .kernels import scan_bwd, scan_fwd


def rows(t: torch.Tensor) -> tuple[torch.Tensor, int, int]:
    """t (b, l, k, m) as the kernels read it, with its strides per position and per direction: element (b, p, k, i)
    at (b l + p) s_l + k s_k + i. Views that fit are kept (the split views of x_proj's output); others copied."""
    for t in (t, t.contiguous()):
        b, l, k, m = t.shape
        s_l = t.stride(1) if l > 1 else t.stride(0)  # a size-1 dimension's stride is arbitrary
        s_k = t.stride(2) if k > 1 else 0
        if (m == 1 or t.stride(3) == 1) and (b == 1 or t.stride(0) == l * s_l):
            return t, s_l, s_k
    raise AssertionError("unreachable: a contiguous tensor fits")


def _pair(B, C):
    """B and C through ``rows``, with equal strides (the kernels take one pair for both)."""
    (B, *sb), (C, *sc) = rows(B), rows(C)
    if sb != sc:
        (B, *sb), (C, _, _) = rows(B.contiguous()), rows(C.contiguous())
    return B, C, sb


def _sizes(u, A):
    k, e, n = A.shape
    b, l = u.shape[-3], u.shape[-2]
    bd = config.block_d(e)
    return b, l, k, e, n, bd, triton.cdiv(e, bd), triton.next_power_of_2(n)


def forward(u, delta, A, B, C, bias, order, per_dir: bool, softplus: bool, save: bool, last: bool,
            dts=None, wdt=None):
    """Run scan_fwd. Returns y, (b, l, e) summed over directions or (k, b, l, e) with per_dir, the checkpoints
    (k, b, c, e, n) when save and the final states (k, b, e, n) when last (else None).

    With dts (b, l, k, r) and wdt (k, e, r) the step sizes are dts @ wdt.T per direction (delta is unused)."""
    b, l, k, e, n, bd, nblk, bn = _sizes(u, A)
    kp = 1 if per_dir else config.directions_per_program(k, nblk * b, u.device)
    f32 = dict(dtype=torch.float32, device=u.device)
    y = torch.empty(k // kp, b, l, e, **f32)
    hck = torch.empty(k, b, triton.cdiv(l, config.CHUNK), e, n, **f32) if save else y
    hlast = torch.empty(k, b, e, n, **f32) if last else y
    B, C, (s_bl, s_bk) = _pair(B, C)
    lowrank = dts is not None
    if lowrank:
        (dts, s_rl, s_rk), wdt, delta = rows(dts), wdt.contiguous(), u  # delta unused
    else:
        dts, wdt, s_rl, s_rk = u, u, 0, 0
    scan_fwd[(nblk, b, k // kp)](
        u, delta, dts, wdt, A, B, C, bias, order if order is not None else u, y, hck, hlast, l, b, s_bl, s_bk,
        s_rl, s_rk, K=k, E=e, N=n, R=wdt.shape[-1] if lowrank else 1, KP=kp,
        CHUNK=config.CHUNK, BLOCK_D=bd, BLOCK_N=bn, BLOCK_R=triton.next_power_of_2(wdt.shape[-1]) if lowrank else 1,
        U_PER_DIR=per_dir, ORDERED=order is not None, LOWRANK=lowrank, SOFTPLUS=softplus, SAVE=save, LAST=last,
        STAGES=config.NUM_STAGES, num_warps=config.NUM_WARPS)
    y = y if per_dir else (y[0] if kp == k else y.sum(0))
    return y, hck if save else None, hlast if last else None


def backward(u, delta, A, B, C, bias, order, hck, dy, dhlast, per_dir: bool, softplus: bool):
    """Run scan_bwd; return float32 du (u's shape), ddelta (k, b, l, e), dA (k, e, n), dB, dC (b, l, k, n) and
    dbias (k, e). dy has u's shape; dhlast (k, b, e, n) or None."""
    b, l, k, e, n, bd, nblk, bn = _sizes(u, A)
    f32 = dict(dtype=torch.float32, device=u.device)
    B, C, (s_bl, s_bk) = _pair(B, C)
    du, ddelta = torch.empty(k, b, l, e, **f32), torch.empty(k, b, l, e, **f32)
    dA = torch.empty(k, b, e, n, **f32)
    dB, dC = torch.empty(nblk, b, l, k, n, **f32), torch.empty(nblk, b, l, k, n, **f32)
    work = torch.empty(k * b * nblk, config.CHUNK, bd, bn, **f32)  # each program's recomputed states
    scan_bwd[(nblk, b, k)](
        u, delta, A, B, C, bias, order if order is not None else u, hck, dy.contiguous(),
        dhlast.contiguous() if dhlast is not None else hck, work, du, ddelta, dA, dB, dC, l, b, s_bl, s_bk,
        K=k, E=e, N=n, CHUNK=config.CHUNK, BLOCK_D=bd, BLOCK_N=bn, U_PER_DIR=per_dir,
        ORDERED=order is not None, SOFTPLUS=softplus, LAST=dhlast is not None, STAGES=config.NUM_STAGES,
        num_warps=config.NUM_WARPS)
    return (du if per_dir else du.sum(0)), ddelta, dA.sum(1), dB.sum(0), dC.sum(0), ddelta.sum((1, 2))


class ScanFn(torch.autograd.Function):
    """The kernels with their custom backward. Inputs in the layout above; returns y
    (float32, see ``forward``) and the final states (k, b, e, n) when ``last`` (else None)."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, bias, order, per_dir: bool, softplus: bool, last: bool):
        y, hck, hlast = forward(u, delta, A, B, C, bias, order, per_dir, softplus, save=True, last=last)
        ctx.save_for_backward(u, delta, A, B, C, bias, order, hck)
        ctx.per_dir, ctx.softplus = per_dir, softplus
        ctx.set_materialize_grads(False)
        return y, hlast

    @staticmethod
    @once_differentiable
    def backward(ctx, dy, dhlast):
        u, delta, A, B, C, bias, order, hck = ctx.saved_tensors
        if dy is None:
            dy = torch.zeros(u.shape, dtype=torch.float32, device=u.device)
        grads = backward(u, delta, A, B, C, bias, order, hck, dy, dhlast, ctx.per_dir, ctx.softplus)
        inputs = (u, delta, A, B, C, bias)
        grads = [g.to(t.dtype) if need else None for g, t, need in zip(grads, inputs, ctx.needs_input_grad)]
        return (*grads, None, None, None, None)
