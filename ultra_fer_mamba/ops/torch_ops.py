"""The selective scan in chunked torch ops: any device, with a custom backward (the "torch" backend).

Same semantics as mamba_ssm's ``selective_scan_fn`` (and selective_scan_ref.py), the numba kernels' algorithm in
torch ops: per block of ``CHUNK`` steps the decays exp(dt A) and inputs dt u B are computed at once, and only
h = a * h + x is a per-step op. The forward keeps the state only every CHUNK steps (checkpoints, (b, g, d/g, c,
n)); the backward recomputes one block of states from its checkpoint and runs the adjoint recurrence
g_t = C_t dy_t + exp(dt_{t+1} A) g_{t+1} backwards through it: memory O(b d l) plus O(b d n l / CHUNK), never the
O(b d n l) of autograd through a loop. Without autograd (inference), nothing is saved. The math is float32 for
float16/bfloat16/float32 inputs and float64 for float64 inputs; y comes back in u's dtype.

Shape letters: b batch, d channels, g groups of B/C (d % g == 0), p = d/g channels per group, n state size,
l length, T steps of a block, c checkpoints = ceil(l / CHUNK).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

CHUNK = 32


class _Prepared:
    """Inputs converted once to the compute dtype ct, contiguous; B and C time-major (b, g, l, n)."""

    def __init__(self, u, delta, A, B, C, D, z, delta_bias, delta_softplus):
        self.ct = ct = torch.promote_types(u.dtype, torch.float32)
        self.b, self.d, self.l = (int(s) for s in u.shape)
        self.g, self.n = int(B.shape[1]), int(A.shape[1])
        f = lambda t: None if t is None else t.detach().to(ct).contiguous()  # noqa: E731
        self.u, self.delta, self.A, self.D, self.z, self.bias = f(u), f(delta), f(A), f(D), f(z), f(delta_bias)
        self.Bt, self.Ct = f(B.transpose(2, 3)), f(C.transpose(2, 3))  # (b, g, l, n)
        self.softplus = bool(delta_softplus)
        self.device = u.device

    def empty(self, *shape):
        return torch.empty(shape, dtype=self.ct, device=self.device)

    def zeros(self, *shape):
        return torch.zeros(shape, dtype=self.ct, device=self.device)

    def dt(self):
        """Step sizes after bias and softplus (b, d, l), and d dt / d delta (None when it is 1)."""
        x = self.delta if self.bias is None else self.delta + self.bias[:, None]
        return (F.softplus(x), torch.sigmoid(x)) if self.softplus else (x, None)


def _grouped(x, g):
    """(b, d, ...) -> (b, g, p, ...) view, so (b, g, 1, ...) B and C broadcast over each group."""
    return x.view(x.shape[0], g, x.shape[1] // g, *x.shape[2:])


def _block(p: _Prepared, dt, t0, t1):
    """Decays exp(dt A) and inputs dt u B for steps t0..t1-1, both (b, g, p, T, n)."""
    dtb = _grouped(dt[:, :, t0:t1], p.g)  # (b, g, p, T)
    ea = torch.exp(dtb[..., None] * _grouped(p.A[None], p.g)[:, :, :, None, :])  # A as (1, g, p, 1, n)
    x = (dtb * _grouped(p.u[:, :, t0:t1], p.g))[..., None] * p.Bt[:, :, None, t0:t1]
    return ea, x


def _states(ea, x, h0):
    """States after each step of a block: hs (b, g, p, T + 1, n) with hs[..., 0, :] = h0."""
    T = ea.shape[3]
    hs = torch.empty(*ea.shape[:3], T + 1, ea.shape[4], dtype=ea.dtype, device=ea.device)
    hs[:, :, :, 0] = h0
    for i in range(T):
        torch.addcmul(x[:, :, :, i], ea[:, :, :, i], hs[:, :, :, i], out=hs[:, :, :, i + 1])
    return hs


def _forward(p: _Prepared, save: bool):
    """y (b, d, l), h_L (b, d, n), checkpoints (b, g, p, c, n) and the pre-gate output (None unless saved)."""
    b, d, l, n, g = p.b, p.d, p.l, p.n, p.g
    dt, _ = p.dt()
    y = p.empty(b, d, l)
    h = p.zeros(b, g, d // g, n)
    hck = []
    for t0 in range(0, l, CHUNK):
        t1 = min(t0 + CHUNK, l)
        if save:
            hck.append(h)
        hs = _states(*_block(p, dt, t0, t1), h)
        h = hs[:, :, :, -1].clone()
        y[:, :, t0:t1] = (hs[:, :, :, 1:] * p.Ct[:, :, None, t0:t1]).sum(-1).reshape(b, d, t1 - t0)
    if p.D is not None:
        y = y + p.u * p.D[:, None]
    ypre = y if save and p.z is not None else None
    if p.z is not None:
        y = y * F.silu(p.z)
    hck = torch.stack(hck, 3) if save and hck else None
    return y, h.reshape(b, d, n), hck, ypre


def _backward(p: _Prepared, hck, ypre, dy, dhlast):
    """Gradients of u, delta, A, B and C (time-major (b, g, l, n)), D, z, delta_bias."""
    b, d, l, n, g = p.b, p.d, p.l, p.n, p.g
    dt, sig = p.dt()
    dy = dy.to(p.ct)
    dz = None
    if p.z is not None:
        s = torch.sigmoid(p.z)
        dz = dy * ypre * s * (1 + p.z * (1 - s))
        dy = dy * p.z * s  # gradient at the scan output before the gate
    dD = (dy * p.u).sum((0, 2)) if p.D is not None else None
    du = dy * p.D[:, None] if p.D is not None else torch.zeros_like(p.u)
    ddt = torch.empty_like(p.u)
    dA, dB, dC = p.zeros(g, d // g, n), p.empty(b, g, l, n), p.empty(b, g, l, n)
    carry = p.zeros(b, g, d // g, n) if dhlast is None else _grouped(dhlast.to(p.ct), g).clone()
    Ag = _grouped(p.A[None], g)[:, :, :, None, :]  # (1, g, p, 1, n)
    for c in range(-(-l // CHUNK) - 1, -1, -1):
        t0, t1 = c * CHUNK, min((c + 1) * CHUNK, l)
        ea, x = _block(p, dt, t0, t1)
        hs = _states(ea, x, hck[:, :, :, c])
        dyb = _grouped(dy[:, :, t0:t1], g)  # (b, g, p, T)
        gs = dyb[..., None] * p.Ct[:, :, None, t0:t1]  # dy C, then the adjoint states in place
        gs[:, :, :, -1] += carry
        for i in range(t1 - t0 - 2, -1, -1):
            gs[:, :, :, i].addcmul_(gs[:, :, :, i + 1], ea[:, :, :, i + 1])
        carry = gs[:, :, :, 0] * ea[:, :, :, 0]
        dtb, ub = _grouped(dt[:, :, t0:t1], g), _grouped(p.u[:, :, t0:t1], g)
        dC[:, :, t0:t1] = (dyb[..., None] * hs[:, :, :, 1:]).sum(2)
        dB[:, :, t0:t1] = (gs * (dtb * ub)[..., None]).sum(2)
        w = gs * hs[:, :, :, :-1] * ea  # d loss / d exp(dt A), times exp(dt A)
        dA += (w * dtb[..., None]).sum((0, 3))
        s_b = (gs * p.Bt[:, :, None, t0:t1]).sum(-1)  # (b, g, p, T)
        du[:, :, t0:t1] += (s_b * dtb).reshape(b, d, t1 - t0)
        ddt[:, :, t0:t1] = (s_b * ub + (w * Ag).sum(-1)).reshape(b, d, t1 - t0)
    ddelta = ddt * sig if sig is not None else ddt
    dbias = ddelta.sum((0, 2)) if p.bias is not None else None
    return du, ddelta, dA.reshape(d, n), dB, dC, dD, dz, dbias


class _ScanFn(torch.autograd.Function):
    _TENSORS = ("u", "delta", "A", "Bt", "Ct", "D", "z", "bias")

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, delta_softplus):
        p = _Prepared(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
        y, hlast, hck, ypre = _forward(p, save=True)
        ctx.prep = p
        ctx.dtypes = [None if t is None else t.dtype for t in (u, delta, A, B, C, D, z, delta_bias)]
        # saved through autograd (not only on ctx.prep) so in-place changes to the inputs are caught
        ctx.save_for_backward(*(getattr(p, k) for k in _ScanFn._TENSORS), hck, ypre)
        for k in _ScanFn._TENSORS:
            setattr(p, k, None)
        ctx.set_materialize_grads(False)
        return y, hlast

    @staticmethod
    @once_differentiable
    def backward(ctx, dy, dhlast):
        p = ctx.prep
        *tensors, hck, ypre = ctx.saved_tensors
        for k, t in zip(_ScanFn._TENSORS, tensors):
            setattr(p, k, t)
        if dy is None:
            dy = p.zeros(p.b, p.d, p.l)
        du, ddelta, dA, dB, dC, dD, dz, dbias = _backward(p, hck, ypre, dy, dhlast)
        grads = (du, ddelta, dA, dB.transpose(2, 3), dC.transpose(2, 3), dD, dz, dbias)
        grads = [None if gr is None or not need else gr.to(dt)
                 for gr, dt, need in zip(grads, ctx.dtypes, ctx.needs_input_grad)]
        return (*grads, None)


def scan_core_values(dt, u, A, B, C):
    """y = scan (b, d, l) and h_l (b, d, n) for step sizes dt already biased and softplus'ed, B, C (b, g, n, l),
    without autograd: the values behind scan_export's ONNX Loop while it is traced."""
    with torch.no_grad():
        y, hlast, _, _ = _forward(_Prepared(u, dt, A, B, C, None, None, None, False), save=False)
    return y, hlast


def selective_scan_torch(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                         return_last_state=False):
    """Selective scan, mamba_ssm ``selective_scan_fn`` semantics, in chunked torch ops; see the module docstring.

    Args:
        u (torch.Tensor): Input (b, d, l).
        delta (torch.Tensor): Step sizes (b, d, l), before bias and softplus.
        A (torch.Tensor): State matrix diagonal (d, n).
        B (torch.Tensor): Input projection (b, g, n, l), d divisible by g.
        C (torch.Tensor): Output projection (b, g, n, l), the same groups.
        D (torch.Tensor, optional): Skip weight (d,).
        z (torch.Tensor, optional): Gate (b, d, l), multiplied in as SiLU(z).
        delta_bias (torch.Tensor, optional): Added to delta (d,).
        delta_softplus (bool): Softplus on delta after the bias.
        return_last_state (bool): Also return h_L (b, d, n) in the compute dtype.

    Returns:
        (torch.Tensor | tuple): y (b, d, l) in u's dtype, and h_L when asked.

    Examples:
        >>> b, d, n, l = 2, 8, 4, 10
        >>> y = selective_scan_torch(torch.randn(b, d, l), torch.rand(b, d, l), -torch.rand(d, n),
        ...                          torch.randn(b, 2, n, l), torch.randn(b, 2, n, l))
        >>> y.shape
        torch.Size([2, 8, 10])
    """
    inputs = (u, delta, A, B, C, D, z, delta_bias)
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in inputs):
        y, hlast = _ScanFn.apply(*inputs, delta_softplus)
    else:
        y, hlast, _, _ = _forward(_Prepared(*inputs, delta_softplus), save=False)
    y = y.to(u.dtype)
    return (y, hlast) if return_last_state else y
