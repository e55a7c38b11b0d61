"""The numba scans as torch functions with autograd: ``selective_scan_numba`` and ``cross_selective_scan_numba``.

The forward with autograd keeps the state only every ``CHUNK`` steps (checkpoints); the backward recomputes one
run of states from its checkpoint at a time (block.py). Memory is O(b d l) plus O(b d n l / CHUNK), never the
O(b d n l) of autograd through a loop. Without autograd (inference) nothing is saved. The math is float32 for
float16/bfloat16/float32 inputs and float64 for float64 inputs; y comes back in u's dtype. CPU tensors only.

Shape letters: b batch, d channels, g groups of B/C, n state size, l length; for the fused op l = h*w positions
(row-major), k directions, e channels, r dt rank.
"""

from __future__ import annotations

import functools

import torch
from torch.autograd.function import once_differentiable

from ..cross_scan import lowrank_delta, scan_indices
from . import kernels as K
from .math import coefficients

CHUNK = 32  # steps between saved states (the backward recomputes runs this long)
LANES = 256  # channels per block in the forwards (fewer when that would leave a thread idle)
BWD_LANES = 128  # channels per block in the backwards, whose scratch grows with CHUNK * n * lanes


@functools.lru_cache(maxsize=None)
def _coefficients(dtype: torch.dtype):
    return coefficients(torch.empty(0, dtype=dtype).numpy().dtype)


def _threads() -> int:
    """Numba threads = torch's. With the OpenMP layer numba shares torch's libgomp, and starting numba's pool (first
    call) resets the OpenMP thread count, i.e. torch's: it is put back, so a torch.set_num_threads(k) still holds."""
    n = torch.get_num_threads()
    K.set_threads(n)
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


def _lanes(tasks_per_block_width, width: int, lanes: int, threads: int) -> int:
    """The lane count: ``lanes``, at most ``width``, halved (down to 8) while there are fewer tasks than threads."""
    lanes = max(1, min(lanes, width))
    while lanes > 8 and tasks_per_block_width(lanes) < threads:
        lanes //= 2
    return lanes


def _np(t: torch.Tensor):
    return t.numpy()


# ----------------------------------------------------------------------------- plain selective scan
class _Scan:
    """Inputs in the compute dtype ct, contiguous; B and C time-major (b, g, l, n); absent D, bias as zeros."""

    def __init__(self, u, delta, A, B, C, D, z, delta_bias):
        self.ct = ct = torch.promote_types(u.dtype, torch.float32)
        f = lambda t: t.detach().to(ct).contiguous()  # noqa: E731
        self.b, self.d, self.l = u.shape
        self.g, self.n = B.shape[1], A.shape[1]
        self.u, self.delta, self.A = f(u), f(delta), f(A)
        self.Bt, self.Ct = f(B.transpose(2, 3)), f(C.transpose(2, 3))
        self.D = f(D) if D is not None else u.new_zeros(self.d, dtype=ct)
        self.bias = f(delta_bias) if delta_bias is not None else u.new_zeros(self.d, dtype=ct)
        self.z = f(z) if z is not None else self.empty(0, 0, 0)

    def empty(self, *shape):
        return torch.empty(shape, dtype=self.ct)

    def tensors(self):
        return self.u, self.delta, self.A, self.Bt, self.Ct, self.D, self.z, self.bias

    def forward(self, softplus: bool, save: bool):
        """y (b, d, l), h_L (b, d, n), checkpoints (b, c, n, d) and the pre-gate output (empty unless saved)."""
        threads = _threads()
        b, d, l, n, g = self.b, self.d, self.l, self.n, self.g
        nv = _lanes(lambda v: b * g * -(-(d // g) // v), d // g, LANES, threads)
        y, hlast = self.empty(b, d, l), self.empty(b, d, n)
        hck = self.empty(b, -(-l // CHUNK) if save else 0, n, d)
        ypre = self.empty(b, d, l) if save and self.z.numel() else self.empty(0, 0, 0)
        K.scan_fwd(*map(_np, self.tensors()), softplus, nv, CHUNK, _np(y), _np(hlast), _np(hck), _np(ypre),
                   _coefficients(self.ct))
        return y, hlast, hck, ypre

    def backward(self, softplus: bool, hck, ypre, dy, dhlast):
        """Gradients of u, delta, A, B, C (as (b, g, n, l)), D, z, delta_bias."""
        threads = _threads()
        b, d, l, n, g = self.b, self.d, self.l, self.n, self.g
        nparts = max(1, min(-(-(d // g) // 8), -(-2 * threads // (b * g))))  # enough (batch, group, part) tasks
        du, ddelta, dz = self.empty(b, d, l), self.empty(b, d, l), torch.empty_like(self.z)
        dA, dD, dbias = self.empty(b, n, d), self.empty(b, d), self.empty(b, d)
        dB, dC = (torch.zeros(b, g, nparts, l, n, dtype=self.ct) for _ in range(2))
        dhl = dhlast.to(self.ct).contiguous() if dhlast is not None else self.empty(0, 0, 0)
        K.scan_bwd(*map(_np, self.tensors()), softplus, BWD_LANES, CHUNK, _np(hck), _np(ypre),
                   _np(dy.to(self.ct).contiguous()), _np(dhl), nparts, _np(du), _np(ddelta), _np(dz), _np(dA),
                   _np(dB), _np(dC), _np(dD), _np(dbias), _coefficients(self.ct))
        return (du, ddelta, dA.sum(0).t(), dB.sum(2).transpose(2, 3), dC.sum(2).transpose(2, 3), dD.sum(0), dz,
                dbias.sum(0))


class _ScanFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, softplus):
        s = _Scan(u, delta, A, B, C, D, z, delta_bias)
        y, hlast, hck, ypre = s.forward(softplus, save=True)
        ctx.scan, ctx.softplus = s, softplus
        ctx.dtypes = [None if t is None else t.dtype for t in (u, delta, A, B, C, D, z, delta_bias)]
        ctx.save_for_backward(*s.tensors(), hck, ypre)  # through autograd: in-place changes to inputs are caught
        s.u = s.delta = s.A = s.Bt = s.Ct = s.D = s.z = s.bias = None
        ctx.set_materialize_grads(False)
        return y, hlast

    @staticmethod
    @once_differentiable
    def backward(ctx, dy, dhlast):
        s = ctx.scan
        s.u, s.delta, s.A, s.Bt, s.Ct, s.D, s.z, s.bias, hck, ypre = ctx.saved_tensors
        if dy is None:
            dy = s.empty(s.b, s.d, s.l).zero_()
        grads = s.backward(ctx.softplus, hck, ypre, dy, dhlast)
        grads = [None if gr is None or not need or dt is None else gr.to(dt)
                 for gr, dt, need in zip(grads, ctx.dtypes, ctx.needs_input_grad)]
        return (*grads, None)


def selective_scan_numba(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                         return_last_state=False):
    """ops.selective_scan by the numba kernels, CPU tensors: the same arguments and results, after its checks
    (B and C (b, g, n, l) with the same groups)."""
    inputs = (u, delta, A, B, C, D, z, delta_bias)
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in inputs):
        y, hlast = _ScanFn.apply(*inputs, bool(delta_softplus))
    else:
        y, hlast, _, _ = _Scan(*inputs).forward(bool(delta_softplus), save=False)
    y = y.to(u.dtype)
    return (y, hlast) if return_last_state else y


# ----------------------------------------------------------------------------- fused cross-scan op
def _xforward(u, delta, A, B, C, bias, order, softplus: bool, save: bool, dts=None, wdt=None, dskip=None):
    """Run xscan_fwd; return y (b, l, e) and the checkpoints (b, k, c, n, e) (c = 0 unless save).

    The step sizes are delta (k, b, l, e), or, given dts (b, l, k, r) and wdt (k, r, e), their low-rank product,
    formed inside the kernel (delta is then None). dskip (e,): u * dskip is added to y (None: 0)."""
    threads = _threads()
    b, l, e = u.shape
    k, n = A.shape[0], A.shape[1]
    nv = _lanes(lambda v: b * -(-e // v), e, LANES, threads)
    hck = u.new_empty(b, k, -(-l // CHUNK) if save else 0, n, e)
    y = u.new_empty(b, l, e)
    if dts is None:
        dts, wdt = u.new_empty(b, 0, k, 0), u.new_empty(k, 0, e)
    else:
        delta = u.new_empty(k, b, 0, 0)
    dskip = u.new_zeros(e) if dskip is None else dskip
    K.xscan_fwd(_np(u), _np(delta), _np(dts), _np(wdt), _np(A), _np(B), _np(C), _np(bias), _np(dskip), _np(order),
                softplus, CHUNK, nv, _np(y), _np(hck), _coefficients(u.dtype))
    return y, hck


class _CrossScanFn(torch.autograd.Function):
    """The fused kernels with their custom backward; D's skip is added outside, in torch."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, bias, order, softplus):
        y, hck = _xforward(u, delta, A, B, C, bias, order, softplus, save=True)
        ctx.save_for_backward(u, delta, A, B, C, bias, order, hck)
        ctx.softplus = softplus
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, dy):
        _threads()
        u, delta, A, B, C, bias, order, hck = ctx.saved_tensors
        b, l, e = u.shape
        k, n = A.shape[0], A.shape[1]
        dy = dy.to(u.dtype).contiguous()
        du = u.new_empty(k, b, l, e)  # written whole by the kernel (every direction visits every position)
        ddelta = u.new_empty(k, b, l, e)
        dA, dbias = u.new_zeros(b, k, n, e), u.new_zeros(b, k, e)
        dB, dC = u.new_zeros(b, k, l, n), u.new_zeros(b, k, l, n)
        K.xscan_bwd(_np(u), _np(delta), _np(A), _np(B), _np(C), _np(bias), _np(order), ctx.softplus, CHUNK, BWD_LANES,
                    _np(hck), _np(dy), _np(du), _np(ddelta), _np(dA), _np(dbias), _np(dB), _np(dC),
                    _coefficients(u.dtype))
        return du.sum(0), ddelta, dA.sum(0), dB, dC, dbias.sum(0), None, None


def cross_selective_scan_numba(u, delta, A, B, C, D, delta_bias, h, w, delta_softplus=True, dt_weight=None):
    """The fused cross-scan + selective scans + cross-merge (``cross_selective_scan`` semantics); CPU tensors.

    Everything stays in spatial order and channels-last: direction k reads position order[k, t] at step t, so no
    permuted copy is made. In inference the kernel forms the low-rank step sizes (dt_weight) a step at a time and
    adds D's skip itself; with autograd the step sizes come from one batched matmul and D's skip from torch.
    """
    dtype_in = u.dtype
    k = A.shape[0]
    ct = torch.promote_types(u.dtype, torch.float32)
    f = lambda t: t if t.dtype == ct and t.is_contiguous() else t.to(ct).contiguous()  # noqa: E731
    order, _ = scan_indices(h, w, k, u.device)
    inputs = (u, delta, A, B, C, D, delta_bias) + (() if dt_weight is None else (dt_weight,))
    if torch.is_grad_enabled() and any(t.requires_grad for t in inputs):
        if dt_weight is not None:  # one batched matmul, autograd does dt_proj's gradients
            delta = lowrank_delta(delta.to(ct), dt_weight.to(ct))
        y = _CrossScanFn.apply(f(u), f(delta), f(A.transpose(1, 2)), f(B.transpose(1, 2)), f(C.transpose(1, 2)),
                               f(delta_bias), order, bool(delta_softplus))
        y = y + u.to(ct) * D.to(ct).sum(0)
    else:  # inference: no autograd node, no checkpoints, D's skip inside the kernel
        lowrank = {} if dt_weight is None else {"dts": f(delta), "wdt": f(dt_weight.transpose(1, 2))}
        y, _ = _xforward(f(u), None if lowrank else f(delta), f(A.transpose(1, 2)), f(B.transpose(1, 2)),
                         f(C.transpose(1, 2)), f(delta_bias), order, bool(delta_softplus), save=False,
                         dskip=f(D.sum(0)), **lowrank)
    return y.to(dtype_in)
