"""Cross-scan, selective scan and cross-merge as one op, in spatial order and channels-last.

``cross_selective_scan`` computes, for an OSSM layer,

    y = sum_k merge_k(scan_k(...)) + u * sum_k D_k

where direction k reads the h*w positions in cross_scan's order k. It equals
``cross_merge(selective_scan(cross_scan(...)))`` (the composition, kept as the reference and used on
every other device and backend), but on the CPU with numba it runs the fused kernels
of cross_scan_kernels.py: no permuted copies, no (b, k, e, l) tensors, and a scan whose vectorised loop
runs over channels. While tracing or exporting, scan_export.py's time-major formulation runs instead. All
inputs come in spatial order, as the per-position projections produce them.

Shape letters: b batch, l = h*w positions (row-major), k directions, e channels (d_inner), n state size,
r dt rank.
"""

from __future__ import annotations

import functools

import torch
from torch.autograd.function import once_differentiable

from .cross_scan import _indices, cross_merge, cross_scan
from .scan_export import cross_selective_scan_export
from .scan_torch import _exporting, _kernels, _set_threads, numba_enabled
from .selective_scan import resolve_backend, selective_scan

CHUNK = 32  # steps between saved states in the fused forward (the backward recomputes blocks this long)
LANES = 256  # channels per block of the forward's vectorised loop (fewer when that leaves a thread idle)
BWD_LANES = 128  # channels per block in the backward, whose per-block scratch grows with CHUNK * n * lanes

_XKERNELS = None


def _xkernels():
    global _XKERNELS
    if _XKERNELS is None:
        from . import cross_scan_kernels

        _XKERNELS = cross_scan_kernels
    return _XKERNELS


def fused_available(u: torch.Tensor, backend: str = "auto") -> bool:
    """True when cross_selective_scan runs the fused numba kernels for u (CPU, numba, torch backend, no export)."""
    return (u.device.type == "cpu" and not _exporting() and u.dtype in (torch.float32, torch.float64)
            and resolve_backend(backend, u) == "torch" and numba_enabled())


def _forward(u, delta, A, B, C, bias, order, softplus: bool, save: bool, dts=None, wdt=None, dskip=None):
    """Run xscan_fwd; return y (b, l, e) and the checkpoints (b, k, c, n, e), empty unless save.

    The step sizes are delta (k, b, l, e), or, given dts (b, l, k, r) and wdt (k, r, e), their low-rank
    product, formed inside the kernel (delta is then None). dskip (e,): u * dskip is added to y (None: 0)."""
    threads = _set_threads(_kernels())
    b, l, e = u.shape
    k, n = A.shape[0], A.shape[1]
    lanes = LANES
    while lanes > 8 and b * -(-e // lanes) < threads:  # one (batch, block) task per thread at least
        lanes //= 2
    hck = u.new_empty((b, k, -(-l // CHUNK), n, e) if save else (0, 0, 0, 0, 0))
    y = u.new_empty(b, l, e)
    if dts is None:
        dts, wdt = u.new_empty(b, 0, k, 0), u.new_empty(k, 0, e)
    else:
        delta = u.new_empty(k, b, 0, 0)
    dskip = u.new_zeros(e) if dskip is None else dskip
    _xkernels().xscan_fwd(u.numpy(), delta.numpy(), dts.numpy(), wdt.numpy(), A.numpy(), B.numpy(), C.numpy(),
                          bias.numpy(), dskip.numpy(), order.numpy(), softplus, CHUNK, lanes, y.numpy(), hck.numpy(),
                          *_coefficients(u.dtype))
    return y, hck


@functools.lru_cache(maxsize=None)
def _coefficients(dtype: torch.dtype):
    """The kernels' _pow2 and _softplus constants for a dtype (numpy arrays, made once)."""
    K, np_dtype = _xkernels(), torch.empty(0, dtype=dtype).numpy().dtype
    return K.pow2_coefficients(np_dtype), K.softplus_coefficients(np_dtype)


def _lowrank_delta(dts: torch.Tensor, dt_weight: torch.Tensor) -> torch.Tensor:
    """Step sizes (k, b, l, e) = dts (b, l, k, r) @ dt_weight (k, e, r) per direction, by one batched matmul."""
    b, l, k, r = dts.shape
    return torch.bmm(dts.reshape(b * l, k, r).transpose(0, 1), dt_weight.transpose(1, 2)).view(k, b, l, -1)


class _CrossScanFn(torch.autograd.Function):
    """The fused kernels with their custom backward; D's skip is added outside, in torch."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, bias, order, softplus):
        y, hck = _forward(u, delta, A, B, C, bias, order, softplus, save=True)
        ctx.save_for_backward(u, delta, A, B, C, bias, order, hck)
        ctx.softplus = softplus
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, dy):
        K = _xkernels()
        _set_threads(_kernels())
        u, delta, A, B, C, bias, order, hck = ctx.saved_tensors
        b, l, e = u.shape
        k, n = A.shape[0], A.shape[1]
        dy = dy.to(u.dtype).contiguous()
        du = u.new_empty(k, b, l, e)  # written whole by the kernel (every direction visits every position)
        ddelta = u.new_empty(k, b, l, e)
        dA, dbias = u.new_zeros(b, k, n, e), u.new_zeros(b, k, e)
        dB, dC = u.new_zeros(b, k, l, n), u.new_zeros(b, k, l, n)
        K.xscan_bwd(u.numpy(), delta.numpy(), A.numpy(), B.numpy(), C.numpy(), bias.numpy(), order.numpy(),
                    ctx.softplus, CHUNK, BWD_LANES, hck.numpy(), dy.numpy(), du.numpy(), ddelta.numpy(), dA.numpy(),
                    dbias.numpy(), dB.numpy(), dC.numpy(), *_coefficients(u.dtype))
        return du.sum(0), ddelta, dA.sum(0), dB, dC, dbias.sum(0), None, None


def cross_selective_scan(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor,
    delta_bias: torch.Tensor,
    h: int,
    w: int,
    delta_softplus: bool = True,
    backend: str = "auto",
    dt_weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """Selective scans of u along every cross-scan direction, merged (summed) back to spatial order.

    Args:
        u (torch.Tensor): Input (b, l, e), positions row-major over an h x w grid.
        delta (torch.Tensor): Step sizes (k, b, l, e) in spatial order, before bias and softplus; with
            dt_weight, their low-rank factor (b, l, k, r) instead.
        A (torch.Tensor): State matrix diagonals (k, e, n).
        B (torch.Tensor): Input projections (b, l, k, n), spatial order.
        C (torch.Tensor): Output projections (b, l, k, n), spatial order.
        D (torch.Tensor): Skip weights (k, e).
        delta_bias (torch.Tensor): Added to delta (k, e).
        h (int): Grid height.
        w (int): Grid width.
        delta_softplus (bool): Softplus on delta after the bias.
        backend (str): Selective-scan backend ("auto", "ref", "torch", "cuda"); the fused CPU kernels run
            for "auto"/"torch" on CPU tensors with numba, the composition otherwise.
        dt_weight (torch.Tensor, optional): (k, e, r): the step sizes are delta[:, :, k] @ dt_weight[k].T for
            direction k (Mamba's dt_proj). Inference on the fused path forms them a step at a time inside the
            kernel, so the (k, b, l, e) tensor is never written and read back; elsewhere one batched matmul.

    Returns:
        (torch.Tensor): y (b, l, e) in u's dtype, the sum over the k directions (D's skip included).

    Examples:
        >>> b, h, w, k, e, n = 1, 3, 4, 8, 6, 2
        >>> y = cross_selective_scan(torch.randn(b, h * w, e), torch.randn(k, b, h * w, e), -torch.rand(k, e, n),
        ...                          torch.randn(b, h * w, k, n), torch.randn(b, h * w, k, n), torch.ones(k, e),
        ...                          torch.zeros(k, e), h, w)
        >>> y.shape
        torch.Size([1, 12, 6])
    """
    b, l, e = u.shape
    k, n = A.shape[0], A.shape[2]
    want = (b, l, k, dt_weight.shape[2]) if dt_weight is not None else (k, b, l, e)
    if (l != h * w or tuple(delta.shape) != want or tuple(B.shape) != (b, l, k, n) or B.shape != C.shape
            or (dt_weight is not None and tuple(dt_weight.shape[:2]) != (k, e))):
        raise ValueError(f"cross_selective_scan: shapes u {tuple(u.shape)}, delta {tuple(delta.shape)}, A "
                         f"{tuple(A.shape)}, B {tuple(B.shape)}, C {tuple(C.shape)}, dt_weight "
                         f"{None if dt_weight is None else tuple(dt_weight.shape)} do not fit h={h}, w={w}")
    if _exporting():  # the time-major formulation of scan_export.py, one call
        return cross_selective_scan_export(u, delta, A, B, C, D, delta_bias, h, w, delta_softplus, dt_weight)
    if not fused_available(u, backend):
        delta = delta if dt_weight is None else _lowrank_delta(delta, dt_weight)
        return _composed(u, delta, A, B, C, D, delta_bias, h, w, delta_softplus, backend)
    dtype_in = u.dtype
    with torch.autocast("cpu", enabled=False):
        ct = torch.promote_types(u.dtype, torch.float32)
        f = lambda t: t if t.dtype == ct and t.is_contiguous() else t.to(ct).contiguous()  # noqa: E731
        order, _ = _indices(h, w, k, u.device)
        inputs = (u, delta, A, B, C, D, delta_bias) + (() if dt_weight is None else (dt_weight,))
        if torch.is_grad_enabled() and any(t.requires_grad for t in inputs):
            delta = delta if dt_weight is None else _lowrank_delta(delta, dt_weight)  # autograd does dt_proj's grads
            y = _CrossScanFn.apply(f(u), f(delta), f(A.transpose(1, 2)), f(B.transpose(1, 2)), f(C.transpose(1, 2)),
                                   f(delta_bias), order, bool(delta_softplus))
            y = y + u.to(ct) * D.to(ct).sum(0)
        else:  # inference: no autograd node, no checkpoints, D's skip inside the kernel
            lowrank = {} if dt_weight is None else {"dts": f(delta), "wdt": f(dt_weight.transpose(1, 2))}
            y, _ = _forward(f(u), None if lowrank else f(delta), f(A.transpose(1, 2)), f(B.transpose(1, 2)),
                            f(C.transpose(1, 2)), f(delta_bias), order, bool(delta_softplus), save=False,
                            dskip=f(D.sum(0)), **lowrank)
    return y.to(dtype_in)


def _scan_order(x: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """Per-direction data (b, l, k, c) in spatial order -> (b, k, c, l), direction k in its scan order."""
    b, l, k, c = x.shape
    index = order.view(1, k, l, 1).expand(b, k, l, c)
    return x.transpose(1, 2).gather(2, index).transpose(2, 3)


def _composed(u, delta, A, B, C, D, delta_bias, h, w, delta_softplus, backend):
    """cross_merge(selective_scan(cross_scan(...))): the reference formulation, any device, exportable."""
    b, l, e = u.shape
    k, n = A.shape[0], A.shape[2]
    order, _ = _indices(h, w, k, u.device)
    xs = cross_scan(u.transpose(1, 2).reshape(b, e, h, w), k)  # (b, k, e, l)
    f32 = lambda t: t.to(torch.promote_types(t.dtype, torch.float32))  # noqa: E731  (float64 stays float64)
    ys = selective_scan(
        xs.reshape(b, k * e, l),
        _scan_order(delta.permute(1, 2, 0, 3), order).reshape(b, k * e, l),
        f32(A.reshape(k * e, n)),
        _scan_order(B, order).contiguous(),  # (b, k, n, l): one group per direction
        _scan_order(C, order).contiguous(),
        f32(D.reshape(k * e)),
        delta_bias=f32(delta_bias.reshape(k * e)),
        delta_softplus=delta_softplus,
        backend=backend,
    )  # (b, k*e, l)
    return cross_merge(ys.view(b, k, e, l), h, w).transpose(1, 2)  # (b, l, e)
