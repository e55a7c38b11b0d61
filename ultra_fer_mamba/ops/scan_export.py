"""Selective scan for tracing and ONNX export: pure torch ops, not locked to the sequence length.

selective_scan_torch switches here while tracing (``torch.jit.is_tracing()``) or exporting to ONNX
(``torch.onnx.is_in_onnx_export()``), since the numba kernels cannot be traced.

- ONNX (TorchScript exporter, ``torch.onnx.export(..., dynamo=False)``): the recurrence is an
  autograd.Function whose ``symbolic`` writes one ONNX ``Loop`` over the length, read from the input's
  shape at run time, so one file serves every image size. Each step is ten small ops on the state
  (b, g, n, d/g): Gather x4, exp(dt A), x B (as a MatMul outer product), h = exp(dt A) h + x B, and
  y = C @ h (a MatMul: the sum over n) as a Loop scan output. (A Python list in a scripted loop
  becomes an ONNX sequence that onnxruntime copies at every step, O(l^2); the scan output avoids
  that.) The layout keeps every broadcast a long contiguous span: onnxruntime is slow on broadcasts
  over a short innermost axis. Measured alternatives (blocks of 4-50 unrolled steps per iteration,
  n-major layouts) were slower: the cost is the ~10-20 us each small op takes, not the Loop itself.
- plain ``torch.jit.trace``: the same loop as a ``torch.jit.script`` function (prim::Loop with a
  dynamic trip count), so traced TorchScript models stay length-generic too.

Bias, softplus, D and the SiLU(z) gate are ordinary torch ops around the loop. The math is float32.

Shape letters: b batch, d channels, g groups of B/C, p = d/g channels per group, n state size, l length.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import List

import torch
import torch.nn.functional as F


def scan_loop(dt: torch.Tensor, u: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor):
    """h_t = exp(dt_t A) h_{t-1} + dt_t u_t B_t, y_t = C_t . h_t, step by step; dt, u (b, d, l), A (d, n),
    B, C (b, g, n, l). Returns y (b, d, l) and h_l (b, d, n)."""
    b, d, l = dt.shape[0], dt.shape[1], dt.shape[2]
    g, n = B.shape[1], B.shape[2]
    p = d // g
    dts = dt.reshape(b, g, 1, p, l).permute(4, 0, 1, 2, 3)  # (l, b, g, 1, p)
    xs = (dt * u).reshape(b, g, 1, p, l).permute(4, 0, 1, 2, 3)
    Bs = B.unsqueeze(3).permute(4, 0, 1, 2, 3)  # (l, b, g, n, 1)
    Cs = C.unsqueeze(2).permute(4, 0, 1, 2, 3)  # (l, b, g, 1, n)
    Ag = A.reshape(g, p, n).transpose(1, 2)  # (g, n, p)
    h = torch.zeros(b, g, n, p, dtype=dt.dtype, device=dt.device)
    ys: List[torch.Tensor] = []  # noqa: UP006 (typing.List: TorchScript in older torch)
    for t in range(l):
        h = torch.exp(dts[t] * Ag) * h + xs[t] * Bs[t]
        ys.append(torch.matmul(Cs[t], h))  # (b, g, 1, p)
    y = torch.stack(ys, -1).reshape(b, d, l) if l > 0 else dt.new_zeros(b, d, 0)
    return y, h.transpose(2, 3).reshape(b, d, n)


with warnings.catch_warnings():  # torch >= 2.9 flags torch.jit.script as deprecated; it is what
    warnings.simplefilter("ignore", FutureWarning)  # keeps plain-trace exports length-generic here
    scan_loop = torch.jit.script(scan_loop)


def _i64(g, values):
    return g.op("Constant", value_t=torch.tensor(values, dtype=torch.int64))


class _ScanLoopOnnx(torch.autograd.Function):
    """Forward computes the values (fast path); ``symbolic`` emits the ONNX Loop."""

    @staticmethod
    def forward(ctx, dt, u, A, B, C):
        from .torch_ops import scan_core_values

        return scan_core_values(dt, u, A, B, C)

    @staticmethod
    def symbolic(g, dt, u, A, B, C):
        shape_u = g.op("Shape", u)  # [b, d, l]
        b = g.op("Gather", shape_u, _i64(g, [0]), axis_i=0)
        d = g.op("Gather", shape_u, _i64(g, [1]), axis_i=0)
        l_ = g.op("Gather", shape_u, _i64(g, 2), axis_i=0)  # scalar: the trip count
        gr = g.op("Gather", g.op("Shape", B), _i64(g, [1]), axis_i=0)
        n = g.op("Gather", g.op("Shape", A), _i64(g, [1]), axis_i=0)
        p = g.op("Div", d, gr)
        minus1, one = _i64(g, [-1]), _i64(g, [1])
        # time-major inputs, gathered one step per iteration
        grouped = g.op("Concat", b, gr, one, p, minus1, axis_i=0)  # (b, g, 1, p, l)
        dts = g.op("Transpose", g.op("Reshape", dt, grouped), perm_i=[4, 0, 1, 2, 3])  # (l, b, g, 1, p)
        xs = g.op("Transpose", g.op("Reshape", g.op("Mul", dt, u), grouped), perm_i=[4, 0, 1, 2, 3])
        Bs = g.op("Transpose", g.op("Unsqueeze", B, _i64(g, [3])), perm_i=[4, 0, 1, 2, 3])  # (l, b, g, n, 1)
        Cs = g.op("Transpose", g.op("Unsqueeze", C, _i64(g, [2])), perm_i=[4, 0, 1, 2, 3])  # (l, b, g, 1, n)
        Ag = g.op("Transpose", g.op("Reshape", A, g.op("Concat", gr, p, minus1, axis_i=0)), perm_i=[0, 2, 1])  # (g,n,p)
        zero = g.op("Constant", value_t=torch.zeros(1, dtype=torch.float32))
        h0 = g.op("Expand", zero, g.op("Concat", b, gr, n, p, axis_i=0))  # (b, g, n, p)
        true = g.op("Constant", value_t=torch.tensor(True))

        h_last, ys = g.op("Loop", l_, true, h0, outputs=2)
        block = h_last.node().addBlock()
        bg = dataclasses.replace(g, block=block)  # builds ops inside the loop body
        it, cond, h = block.addInputToBlock(), block.addInputToBlock(), block.addInputToBlock()
        ea = bg.op("Exp", bg.op("Mul", bg.op("Gather", dts, it, axis_i=0), Ag))  # (b, g, n, p)
        xb = bg.op("MatMul", bg.op("Gather", Bs, it, axis_i=0), bg.op("Gather", xs, it, axis_i=0))  # B_t x_t^T
        h_new = bg.op("Add", bg.op("Mul", ea, h), xb)
        y_t = bg.op("MatMul", bg.op("Gather", Cs, it, axis_i=0), h_new)  # (b, g, 1, p)
        for value in (cond, h_new, y_t):
            block.registerOutput(value)

        y = g.op("Reshape", g.op("Transpose", ys, perm_i=[1, 2, 3, 4, 0]), g.op("Concat", b, d, minus1, axis_i=0))
        h_last = g.op("Reshape", g.op("Transpose", h_last, perm_i=[0, 1, 3, 2]), g.op("Concat", b, d, n, axis_i=0))
        return y, h_last


def selective_scan_export(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                          return_last_state=False):
    """selective_scan_fn semantics in traceable torch ops (float32); see the module docstring."""
    dtype_in = u.dtype
    f = lambda t: None if t is None else t.float()  # noqa: E731
    u, delta, A, B, C, D, z, delta_bias = map(f, (u, delta, A, B, C, D, z, delta_bias))
    B = B.unsqueeze(1) if B.dim() == 3 else B  # (b, n, l): one group
    C = C.unsqueeze(1) if C.dim() == 3 else C
    if B.shape[1] != C.shape[1]:  # different groups: expand both to one per channel
        B = B.repeat_interleave(u.shape[1] // B.shape[1], 1)
        C = C.repeat_interleave(u.shape[1] // C.shape[1], 1)
    dt = delta if delta_bias is None else delta + delta_bias[:, None]
    if delta_softplus and torch.onnx.is_in_onnx_export():  # onnxruntime's Softplus is scalar code, several
        dt = dt.clamp_min(0) + torch.log1p(torch.exp(-dt.abs()))  # times slower than these vectorised ops
    elif delta_softplus:
        dt = F.softplus(dt)
    if torch.onnx.is_in_onnx_export():
        y, h = _ScanLoopOnnx.apply(dt, u, A, B, C)
    else:
        y, h = scan_loop(dt, u, A, B, C)
    if D is not None:
        y = y + u * D[:, None]
    if z is not None:
        y = y * F.silu(z)
    y = y.to(dtype_in)
    return (y, h) if return_last_state else y
