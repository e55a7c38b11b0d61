"""Fast selective scan in plain PyTorch tensors: numba kernels on the CPU, chunked torch ops elsewhere.

Same semantics as mamba_ssm's ``selective_scan_fn`` (and selective_scan_ref.py), with a custom backward:

- forward keeps the state only every ``CHUNK`` steps (checkpoints, (b, d, l / CHUNK, n)); backward
  recomputes one block of states from its checkpoint and runs the adjoint recurrence
  g_t = C_t dy_t + exp(dt_{t+1} A) g_{t+1} backwards through it. Memory is O(b d l) plus
  O(b d n l / CHUNK), never the O(b d n l) of autograd through a loop;
- CPU tensors run the numba kernels of scan_kernels.py (one task per (batch, channel) row, the state in
  the inner, vectorised loop), unless numba is missing or ``FER_MAMBA_NO_NUMBA=1`` (read at every call);
- other devices, or CPU without numba, run the same algorithm with torch ops: per block of steps, the
  decays and inputs are computed at once and only h = a * h + x is a per-step op;
- while tracing or exporting (ONNX), scan_export.py's pure-torch formulation runs instead.

Without autograd (inference), the forward saves nothing. The math is float32 for float16/bfloat16/
float32 inputs and float64 for float64 inputs; y comes back in u's dtype, the last state in the compute
dtype.

Shape letters: b batch, d channels, g groups of B/C (d % g == 0), n state size, l length,
c checkpoints = ceil(l / CHUNK).
"""

from __future__ import annotations

import math
import os

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

CHUNK = 64  # steps between saved states (numba path); the torch-ops path uses blocks of TORCH_CHUNK
TORCH_CHUNK = 32

_KERNELS = None
_KERNELS_TRIED = False


def _kernels():
    """scan_kernels (imports numba) or None; imported once, on first use."""
    global _KERNELS, _KERNELS_TRIED
    if not _KERNELS_TRIED:
        _KERNELS_TRIED = True
        try:
            from . import scan_kernels

            _KERNELS = scan_kernels
        except Exception:  # numba missing or broken: the torch-ops path still works
            _KERNELS = None
    return _KERNELS


def numba_enabled() -> bool:
    """True when the numba kernels will serve CPU tensors (numba imports, FER_MAMBA_NO_NUMBA unset)."""
    return os.environ.get("FER_MAMBA_NO_NUMBA", "0").lower() in ("", "0", "false") and _kernels() is not None


def _exporting() -> bool:
    return torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()


class _Prepared:
    """Inputs converted once to the compute dtype ct, contiguous, B and C as (b, g, l, n)."""

    def __init__(self, u, delta, A, B, C, D, z, delta_bias, delta_softplus):
        self.ct = ct = torch.promote_types(u.dtype, torch.float32)
        self.b, self.d, self.l = (int(s) for s in u.shape)  # ints even while tracing (ONNX values pass)
        self.n = int(A.shape[1])
        self.B_shape, self.C_shape = B.shape, C.shape
        B4 = B.unsqueeze(1) if B.dim() == 3 else B  # (b, n, l) is one group
        C4 = C.unsqueeze(1) if C.dim() == 3 else C
        gB, gC = int(B4.shape[1]), int(C4.shape[1])
        if self.d % gB or self.d % gC:
            raise ValueError(f"selective_scan: channels d={self.d} must be divisible by the groups of B and C "
                             f"(g={gB}, {gC})")
        self.g = g = gB * gC // math.gcd(gB, gC)  # B and C with different groups: both expanded to g
        f = lambda t: None if t is None else t.detach().to(ct).contiguous()  # noqa: E731
        self.u, self.delta, self.A, self.D, self.z, self.bias = f(u), f(delta), f(A), f(D), f(z), f(delta_bias)
        self.Bt = B4.detach().to(ct).repeat_interleave(g // gB, 1).transpose(2, 3).contiguous()  # (b, g, l, n)
        self.Ct = C4.detach().to(ct).repeat_interleave(g // gC, 1).transpose(2, 3).contiguous()
        self.softplus = bool(delta_softplus)

        self.device = u.device

    def empty(self, *shape):
        return torch.empty(shape, dtype=self.ct, device=self.device)


def _ungroup(grad, shape):
    """Gradient (b, g, l, n) of the expanded B or C back to its input shape (b, g', n, l) or (b, n, l)."""
    b, g, l, n = grad.shape
    g0 = shape[1] if len(shape) == 4 else 1
    grad = grad.view(b, g0, g // g0, l, n).sum(2).transpose(2, 3)
    return grad.reshape(shape)


def _np(t):
    return t.numpy()


def _none_np(p: _Prepared, t, ndim):
    return (t if t is not None else p.empty(*([0] * ndim))).numpy()


# ----------------------------------------------------------------------------- numba (CPU) path
def _set_threads(K) -> int:
    """Numba threads = torch's. With the OpenMP layer numba shares torch's libgomp, and starting numba's
    pool (first call) resets the OpenMP thread count, i.e. torch's: it is put back, so a
    torch.set_num_threads(k) made by the user still holds."""
    n = torch.get_num_threads()
    K.set_threads(n)
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


def _numba_forward(p: _Prepared, save: bool):
    K = _kernels()
    _set_threads(K)
    b, d, l, n = p.b, p.d, p.l, p.n
    y, hlast = p.empty(b, d, l), p.empty(b, d, n)
    if not save and (d // p.g) % 2 == 0:  # inference: two channels per task, nothing saved
        K.scan_infer(_np(p.u), _np(p.delta), _np(p.A), _np(p.Bt), _np(p.Ct), _none_np(p, p.D, 1),
                     _none_np(p, p.z, 3), _none_np(p, p.bias, 1), p.softplus, _np(y), _np(hlast))
        return y, hlast, None, None
    nck = -(-l // CHUNK)
    hck = p.empty(b, d, nck, n) if save else p.empty(0, 0, 0, 0)
    ypre = p.empty(b, d, l) if save and p.z is not None else p.empty(0, 0, 0)
    K.scan_fwd(_np(p.u), _np(p.delta), _np(p.A), _np(p.Bt), _np(p.Ct), _none_np(p, p.D, 1), _none_np(p, p.z, 3),
               _none_np(p, p.bias, 1), p.softplus, CHUNK, _np(y), _np(hlast), _np(hck), _np(ypre))
    return y, hlast, hck, ypre


def _numba_backward(p: _Prepared, hck, ypre, dy, dhlast):
    K = _kernels()
    threads = _set_threads(K)
    b, d, l, n, g = p.b, p.d, p.l, p.n, p.g
    nparts = max(1, min(d // g, -(-4 * threads // (b * g))))  # enough (batch, group, part) tasks
    du, ddelta = p.empty(b, d, l), p.empty(b, d, l)
    dz = p.empty(b, d, l) if p.z is not None else p.empty(0, 0, 0)
    dA_rows, dD_rows, dbias_rows = p.empty(b, d, n), p.empty(b, d), p.empty(b, d)
    dB_parts = p.empty(b, g, nparts, l, n)  # every part is written whole by the kernel
    dC_parts = p.empty(b, g, nparts, l, n)
    dhl = dhlast.to(p.ct).contiguous() if dhlast is not None else p.empty(0, 0, 0)
    K.scan_bwd(_np(p.u), _np(p.delta), _np(p.A), _np(p.Bt), _np(p.Ct), _none_np(p, p.D, 1), _none_np(p, p.z, 3),
               _none_np(p, p.bias, 1), p.softplus, CHUNK, _np(hck), _np(ypre), _np(dy.to(p.ct).contiguous()),
               _np(dhl), nparts, _np(du), _np(ddelta), _np(dz), _np(dA_rows), _np(dB_parts), _np(dC_parts),
               _np(dD_rows), _np(dbias_rows))
    return (du, ddelta, dA_rows.sum(0), dB_parts.sum(2), dC_parts.sum(2), dD_rows.sum(0),
            dz if p.z is not None else None, dbias_rows.sum(0))


# ----------------------------------------------------------------------------- torch-ops path
def _torch_dt(p: _Prepared):
    """Step sizes after bias and softplus (b, d, l), and d dt / d delta (None when it is 1)."""
    x = p.delta if p.bias is None else p.delta + p.bias[:, None]
    if p.softplus:
        return F.softplus(x), torch.sigmoid(x)
    return x, None


def _grouped(x, g):
    """(b, d, ...) -> (b, g, d/g, ...) view, so (b, g, 1, ...) B and C broadcast over each group."""
    return x.view(x.shape[0], g, x.shape[1] // g, *x.shape[2:])


def _torch_block(p: _Prepared, dt, t0, t1):
    """Decays exp(dt A) and inputs dt u B for steps t0..t1-1, both (b, g, d/g, T, n)."""
    g = p.g
    dtb = _grouped(dt[:, :, t0:t1], g)  # (b, g, dpg, T)
    ea = torch.exp(dtb[..., None] * _grouped(p.A[None], g)[:, :, :, None, :])  # A (1, g, dpg, 1, n)
    x = (dtb * _grouped(p.u[:, :, t0:t1], g))[..., None] * p.Bt[:, :, None, t0:t1]
    return ea, x


def _torch_states(ea, x, h0):
    """States after each step of a block: hs (b, g, dpg, T + 1, n) with hs[..., 0, :] = h0."""
    T = ea.shape[3]
    hs = torch.empty(*ea.shape[:3], T + 1, ea.shape[4], dtype=ea.dtype, device=ea.device)
    hs[:, :, :, 0] = h0
    for i in range(T):
        torch.addcmul(x[:, :, :, i], ea[:, :, :, i], hs[:, :, :, i], out=hs[:, :, :, i + 1])
    return hs


def _torch_forward(p: _Prepared, save: bool):
    b, d, l, n, g = p.b, p.d, p.l, p.n, p.g
    dt, _ = _torch_dt(p)
    y = p.empty(b, d, l)
    h = torch.zeros(b, g, d // g, n, dtype=p.ct, device=p.u.device)
    hck = []
    for t0 in range(0, l, TORCH_CHUNK):
        t1 = min(t0 + TORCH_CHUNK, l)
        if save:
            hck.append(h)
        ea, x = _torch_block(p, dt, t0, t1)
        hs = _torch_states(ea, x, h)
        h = hs[:, :, :, -1].clone()
        yb = (hs[:, :, :, 1:] * p.Ct[:, :, None, t0:t1]).sum(-1)  # (b, g, dpg, T)
        y[:, :, t0:t1] = yb.reshape(b, d, t1 - t0)
    if p.D is not None:
        y = y + p.u * p.D[:, None]
    ypre = y if save and p.z is not None else None
    if p.z is not None:
        y = y * F.silu(p.z)
    hck = torch.stack(hck, 3) if save and hck else None  # (b, g, dpg, c, n)
    return y, h.reshape(b, d, n), hck, ypre


def _torch_backward(p: _Prepared, hck, ypre, dy, dhlast):
    b, d, l, n, g = p.b, p.d, p.l, p.n, p.g
    dpg = d // g
    dt, sig = _torch_dt(p)
    dy = dy.to(p.ct)
    dz = None
    if p.z is not None:
        s = torch.sigmoid(p.z)
        dz = dy * ypre * s * (1 + p.z * (1 - s))
        dy = dy * p.z * s  # gradient at the scan output before the gate
    dD = (dy * p.u).sum((0, 2)) if p.D is not None else None
    du = dy * p.D[:, None] if p.D is not None else torch.zeros_like(p.u)
    ddt = torch.empty_like(p.u)
    dA = torch.zeros(g, dpg, n, dtype=p.ct, device=p.u.device)
    dB = torch.empty(b, g, l, n, dtype=p.ct, device=p.u.device)
    dC = torch.empty(b, g, l, n, dtype=p.ct, device=p.u.device)
    carry = torch.zeros(b, g, dpg, n, dtype=p.ct, device=p.u.device) if dhlast is None \
        else _grouped(dhlast.to(p.ct), g).clone()
    Ag = _grouped(p.A[None], g)[:, :, :, None, :]  # (1, g, dpg, 1, n)
    for c in range((l + TORCH_CHUNK - 1) // TORCH_CHUNK - 1, -1, -1):
        t0, t1 = c * TORCH_CHUNK, min((c + 1) * TORCH_CHUNK, l)
        ea, x = _torch_block(p, dt, t0, t1)
        hs = _torch_states(ea, x, hck[:, :, :, c])
        dyb = _grouped(dy[:, :, t0:t1], g)  # (b, g, dpg, T)
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
        s_b = (gs * p.Bt[:, :, None, t0:t1]).sum(-1)  # (b, g, dpg, T)
        du[:, :, t0:t1] += (s_b * dtb).reshape(b, d, t1 - t0)
        ddt[:, :, t0:t1] = (s_b * ub + (w * Ag).sum(-1)).reshape(b, d, t1 - t0)
    ddelta = ddt * sig if sig is not None else ddt
    dbias = ddelta.sum((0, 2)) if p.bias is not None else None
    return du, ddelta, dA.reshape(d, n), dB, dC, dD, dz, dbias


# ----------------------------------------------------------------------------- autograd
def _use_numba(p: _Prepared) -> bool:
    return p.u.device.type == "cpu" and numba_enabled()


class _SelectiveScanFn(torch.autograd.Function):
    _TENSORS = ("u", "delta", "A", "Bt", "Ct", "D", "z", "bias")

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, delta_softplus):
        p = _Prepared(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
        numba_path = _use_numba(p)
        y, hlast, hck, ypre = (_numba_forward if numba_path else _torch_forward)(p, save=True)
        ctx.prep, ctx.numba_path = p, numba_path
        ctx.dtypes = [None if t is None else t.dtype for t in (u, delta, A, B, C, D, z, delta_bias)]
        # saved through autograd (not only on ctx.prep) so in-place changes to the inputs are caught
        ctx.save_for_backward(*(getattr(p, k) for k in _SelectiveScanFn._TENSORS), hck, ypre)
        for k in _SelectiveScanFn._TENSORS:
            setattr(p, k, None)
        ctx.set_materialize_grads(False)
        return y, hlast

    @staticmethod
    @once_differentiable
    def backward(ctx, dy, dhlast):
        p = ctx.prep
        *tensors, hck, ypre = ctx.saved_tensors
        for k, t in zip(_SelectiveScanFn._TENSORS, tensors):
            setattr(p, k, t)
        if dy is None:
            dy = torch.zeros(p.b, p.d, p.l, dtype=p.ct, device=p.device)
        grads = (_numba_backward if ctx.numba_path else _torch_backward)(p, hck, ypre, dy, dhlast)
        du, ddelta, dA, dB, dC, dD, dz, dbias = grads
        grads = (du, ddelta, dA, _ungroup(dB, p.B_shape), _ungroup(dC, p.C_shape), dD, dz, dbias)
        grads = [None if gr is None or not need else gr.to(dt)
                 for gr, dt, need in zip(grads, ctx.dtypes, ctx.needs_input_grad)]
        return (*grads, None)


def scan_core_values(dt, u, A, B, C):
    """y = scan (b, d, l) and h_l (b, d, n) for step sizes dt already biased and softplus'ed, without
    autograd: the values behind scan_export's ONNX Loop while it is traced."""
    with torch.no_grad():
        p = _Prepared(u, dt, A, B, C, None, None, None, False)
        y, hlast, _, _ = (_numba_forward if _use_numba(p) else _torch_forward)(p, save=False)
    return y, hlast


def selective_scan_torch(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                         return_last_state=False):
    """Selective scan, mamba_ssm ``selective_scan_fn`` semantics; see the module docstring.

    Args:
        u (torch.Tensor): Input (b, d, l).
        delta (torch.Tensor): Step sizes (b, d, l), before bias and softplus.
        A (torch.Tensor): State matrix diagonal (d, n).
        B (torch.Tensor): Input projection (b, g, n, l) or (b, n, l).
        C (torch.Tensor): Output projection (b, g, n, l) or (b, n, l).
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
    if _exporting():
        from .scan_export import selective_scan_export

        return selective_scan_export(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state)
    dtype_in = u.dtype
    inputs = (u, delta, A, B, C, D, z, delta_bias)
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in inputs):
        y, hlast = _SelectiveScanFn.apply(*inputs, delta_softplus)
    else:
        p = _Prepared(*inputs, delta_softplus)
        y, hlast, _, _ = (_numba_forward if _use_numba(p) else _torch_forward)(p, save=False)
    y = y.to(dtype_in)
    return (y, hlast) if return_last_state else y
