"""Selective scans for tracing and export: standard ops only, every size read at run time.

They run instead of the kernels while tracing (TorchScript, OpenVINO) or exporting to ONNX, for two callers:

- ``cross_selective_scan_export``: OSSM's whole op (cross-scan, the k scans, cross-merge), time-major from the
  start: one Gather each puts u, the step sizes (dt_proj applied first, one matmul per direction), B and C in scan
  order as (l, k, b, c) (step t of every direction is row t), and one Gather plus a sum over k merges the outputs
  back. No permuted (b, k, e, l) copies, no per-step slicing of full-length tensors.
- ``selective_scan_export``: ``selective_scan_fn`` semantics ((b, d, l) tensors), for the public op.

Both end in ``scan_steps``, the recurrence on time-major per-step tensors, with the state (g, b, n, p) keeping the
long channel axis innermost (onnxruntime broadcasts slowly over a short inner axis):

    dA = exp(dt_t * A^T);  h = dA * h + B_t x_t;  y_t = C_t . h      (x_t = dt_t * u_t)

- ONNX (TorchScript exporter, ``dynamo=False``, opset >= 17): an autograd.Function whose ``symbolic`` writes one
  ``Loop`` over the length read from the input's shape: four Gathers on dim 0 and six ops per step (Mul, Exp, Mul,
  the outer product B_t x_t and y_t as MatMuls, Add), y_t a Loop scan output (a Python list would become an ONNX
  sequence, copied at every step). Standard domain only, no session options needed. Measured and dropped: a Gemm
  folding the outer product and the add (K = directions, 8x the work: slower), state (n, k, e) (broadcasts over
  short spans: 2x slower), the dt_proj matmul on time-major rows (l*k small matmuls: 5x slower than k large ones).
- ``torch.jit.trace`` (TorchScript, and OpenVINO, whose PyTorch frontend converts the trace): the same loop as a
  ``torch.jit.script`` function (prim::Loop with a run-time trip count, the outputs stacked on dim 0), so traced
  models stay size-generic. Its outer product and y_t are a broadcast multiply and a sum, not matmuls: OpenVINO's
  CPU plugin runs matmuls in bf16 where that is its default precision, which made the loop 12x slower and
  inexact; without them the whole loop body stays float32.

Bias, softplus, D and the SiLU(z) gate are ordinary ops around the loop. The math is float32 (float64 stays).

Shape letters: b batch, d channels, g groups of B/C (k directions in OSSM), p = d/g channels per group (e in OSSM),
n state size, l length, r dt rank.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import List

import torch
import torch.nn.functional as F

from .cross_scan import scan_indices


def _steps(dts: torch.Tensor, xs: torch.Tensor, Bs: torch.Tensor, Cs: torch.Tensor, At: torch.Tensor):
    """The recurrence step by step (see scan_steps for shapes)."""
    h = torch.zeros(At.shape[0], dts.shape[2], At.shape[2], At.shape[3], dtype=dts.dtype, device=dts.device)
    ys: List[torch.Tensor] = []  # noqa: UP006 (typing.List: TorchScript in older torch)
    for t in range(dts.shape[0]):
        h = torch.exp(dts[t] * At) * h + Bs[t] * xs[t]
        ys.append((Cs[t] * h).sum(2, keepdim=True))  # (g, b, 1, p); no matmul: see the module docstring
    return torch.stack(ys, 0), h


with warnings.catch_warnings():  # torch >= 2.9 flags torch.jit.script as deprecated; it is what keeps
    warnings.simplefilter("ignore", FutureWarning)  # plain-trace exports length-generic here
    _steps_script = torch.jit.script(_steps)


def _i64(g, values):
    return g.op("Constant", value_t=torch.tensor(values, dtype=torch.int64))


class _StepsOnnx(torch.autograd.Function):
    """Forward computes the values (while the exporter traces); ``symbolic`` emits the ONNX Loop."""

    @staticmethod
    def forward(ctx, dts, xs, Bs, Cs, At):
        return _steps(dts, xs, Bs, Cs, At)

    @staticmethod
    def symbolic(g, dts, xs, Bs, Cs, At):
        dim = lambda t, i: g.op("Gather", g.op("Shape", t), _i64(g, [i]), axis_i=0)  # noqa: E731  (1-d)
        h0 = g.op("Expand", g.op("Constant", value_t=torch.zeros(1, dtype=torch.float32)),
                  g.op("Concat", dim(At, 0), dim(dts, 2), dim(At, 2), dim(At, 3), axis_i=0))  # (g, b, n, p)
        length = g.op("Gather", g.op("Shape", dts), _i64(g, 0), axis_i=0)  # scalar: the trip count
        C_rows = g.op("Transpose", Cs, perm_i=[0, 1, 2, 4, 3])  # (l, g, b, 1, n): y_t = C_t @ h, a MatMul
        h_last, ys = g.op("Loop", length, g.op("Constant", value_t=torch.tensor(True)), h0, outputs=2)
        block = h_last.node().addBlock()
        bg = dataclasses.replace(g, block=block)  # builds ops inside the loop body
        it, _, h = block.addInputToBlock(), block.addInputToBlock(), block.addInputToBlock()
        dt_t, x_t, B_t, C_t = (bg.op("Gather", t, it, axis_i=0) for t in (dts, xs, Bs, C_rows))
        dA = bg.op("Exp", bg.op("Mul", dt_t, At))  # (g, b, n, p)
        h_new = bg.op("Add", bg.op("Mul", dA, h), bg.op("MatMul", B_t, x_t))
        go_on = bg.op("Constant", value_t=torch.tensor(True))  # a constant costs nothing per step (an Identity would)
        for value in (go_on, h_new, bg.op("MatMul", C_t, h_new)):  # y_t (g, b, 1, p): a scan output
            block.registerOutput(value)
        return ys, h_last


def scan_steps(dts, xs, Bs, Cs, At):
    """h_t = exp(dt_t A^T) h_{t-1} + B_t x_t, y_t = C_t h_t on time-major tensors, from h_0 = 0.

    Args:
        dts (torch.Tensor): Step sizes (l, g, b, 1, p), bias and softplus applied.
        xs (torch.Tensor): Inputs times step sizes (l, g, b, 1, p).
        Bs (torch.Tensor): (l, g, b, n, 1).
        Cs (torch.Tensor): (l, g, b, n, 1).
        At (torch.Tensor): A transposed per group, (g, 1, n, p).

    Returns:
        (tuple): ys (l, g, b, 1, p) and the last state (g, b, n, p).
    """
    if torch.onnx.is_in_onnx_export():
        return _StepsOnnx.apply(dts, xs, Bs, Cs, At)
    return _steps_script(dts, xs, Bs, Cs, At)


def _softplus(x: torch.Tensor) -> torch.Tensor:
    """Softplus; in ONNX as five vectorised ops (onnxruntime's Softplus is scalar code, several times slower).

    max(x, log(1 + exp(min(x, 20)))) is softplus to float32 rounding: above 20 it is x (as torch's threshold)."""
    if not torch.onnx.is_in_onnx_export():
        return F.softplus(x)
    return torch.maximum(x, torch.log(torch.exp(x.clamp(max=20.0)) + 1.0))


def selective_scan_export(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                          return_last_state=False):
    """selective_scan_fn semantics in traceable ops (float32); u, delta (b, d, l), B, C (b, g, n, l) or (b, n, l)."""
    dtype_in = u.dtype
    f = lambda t: None if t is None else t.to(torch.promote_types(t.dtype, torch.float32))  # noqa: E731
    u, delta, A, B, C, D, z, delta_bias = map(f, (u, delta, A, B, C, D, z, delta_bias))
    B = B.unsqueeze(1) if B.dim() == 3 else B  # (b, n, l): one group
    C = C.unsqueeze(1) if C.dim() == 3 else C
    if B.shape[1] != C.shape[1]:  # different groups: expand both to one per channel
        B = B.repeat_interleave(u.shape[1] // B.shape[1], 1)
        C = C.repeat_interleave(u.shape[1] // C.shape[1], 1)
    b, d, l = u.shape
    g, n = B.shape[1], B.shape[2]
    dt = delta if delta_bias is None else delta + delta_bias[:, None]
    dt = _softplus(dt) if delta_softplus else dt
    time_major = lambda t: t.reshape(b, g, d // g, l).permute(3, 1, 0, 2).unsqueeze(3)  # noqa: E731  (l, g, b, 1, p)
    ys, h = scan_steps(time_major(dt), time_major(dt * u), B.permute(3, 1, 0, 2).unsqueeze(4),
                       C.permute(3, 1, 0, 2).unsqueeze(4), A.reshape(g, d // g, n).transpose(1, 2).unsqueeze(1))
    y = ys.squeeze(3).permute(2, 1, 3, 0).reshape(b, d, l)
    if D is not None:
        y = y + u * D[:, None]
    if z is not None:
        y = y * F.silu(z)
    y = y.to(dtype_in)
    return (y, h.permute(1, 0, 3, 2).reshape(b, d, n)) if return_last_state else y


def cross_selective_scan_export(u, delta, A, B, C, D, delta_bias, h, w, delta_softplus=True, dt_weight=None):
    """cross_selective_scan's result in traceable ops, time-major from the start (see the module docstring).

    Args and shapes as ops.cross_selective_scan.cross_selective_scan: u (b, l, e), delta (k, b, l, e) or, with
    dt_weight (k, e, r), (b, l, k, r); A (k, e, n); B, C (b, l, k, n); D, delta_bias (k, e).

    Returns:
        (torch.Tensor): y (b, l, e) in u's dtype.
    """
    dtype_in = u.dtype
    f = lambda t: None if t is None else t.to(torch.promote_types(t.dtype, torch.float32))  # noqa: E731
    u, delta, A, B, C, D, delta_bias, dt_weight = map(f, (u, delta, A, B, C, D, delta_bias, dt_weight))
    b, l, e = u.shape
    k = A.shape[0]
    order, inverse = scan_indices(h, w, k, u.device)  # (k, l) each, computed from h and w in the graph
    lanes = torch.arange(k, device=u.device)
    steps = (order.t() + lanes * l).reshape(-1)  # row of (direction, position) read at (step, direction), (l*k,)

    def time_major(t):  # (k, l, b, c) in spatial order -> (l, k, b, c): direction k's step t at [t, k]
        return t.reshape(k * l, b, -1).index_select(0, steps).view(l, k, b, -1)

    us = u.transpose(0, 1).index_select(0, order.t().reshape(-1)).view(l, k, b, e)
    if dt_weight is None:
        delta = delta.transpose(1, 2)  # (k, l, b, e)
    else:  # dt_proj, one matmul per direction: (k, l*b, r) @ (k, r, e); time-major, l*k small ones would be slower
        delta = torch.matmul(delta.permute(2, 1, 0, 3).reshape(k, l * b, -1), dt_weight.transpose(1, 2))
    dt = time_major(delta) + delta_bias.unsqueeze(1)  # (l, k, b, e)
    dt = _softplus(dt) if delta_softplus else dt
    B, C = (time_major(t.permute(2, 1, 0, 3)) for t in (B, C))  # (b, l, k, n) -> (l, k, b, n)
    ys, _ = scan_steps(dt.unsqueeze(3), (dt * us).unsqueeze(3), B.unsqueeze(4), C.unsqueeze(4),
                       A.transpose(1, 2).unsqueeze(1))  # ys (l, k, b, 1, e)
    merge = (inverse.t() * k + lanes).reshape(-1)  # row of (step, direction) holding (position, direction)
    y = ys.reshape(l * k, b, e).index_select(0, merge).view(l, k, b, e).sum(1)  # (l, b, e), summed over directions
    return (y.transpose(0, 1) + u * D.sum(0)).to(dtype_in)
