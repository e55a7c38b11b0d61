"""The fused op OSSM runs: cross-scan, selective scan and cross-merge as one call, in spatial order, channels-last.

``cross_selective_scan`` computes, for an OSSM layer,

    y = sum_k merge_k(scan_k(...)) + u * sum_k D_k

where direction k reads the h*w positions in cross_scan's order k. All inputs come in spatial order, as the
per-position projections produce them. Shape checks, then backend.resolve -> one call: "numba" runs the fused CPU
kernels (numba/: no permuted copies, no (b, k, e, l) tensors), "triton" the fused Triton kernels, "export" (while tracing or
exporting) scan_export.py's time-major formulation; every other backend ("ref", "torch", "cuda") runs the composition
``cross_merge(selective_scan(cross_scan(...)))`` with that backend, which is also the reference the tests hold
the fused kernels to.

Shape letters: b batch, l = h*w positions (row-major), k directions, e channels (d_inner), n state size,
r dt rank.
"""

from __future__ import annotations

import torch

from . import backend as _backend
from .cross_scan import check_fused_shapes, cross_merge, cross_scan, lowrank_delta, scan_indices
from .scan_export import cross_selective_scan_export
from .selective_scan import selective_scan


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
        backend (str): One of backend.NAMES; "numba" and "triton" run fused kernels, the others the composition.
        dt_weight (torch.Tensor, optional): (k, e, r): the step sizes are delta[:, :, k] @ dt_weight[k].T for
            direction k (Mamba's dt_proj). numba's inference kernel forms them a step at a time, so the
            (k, b, l, e) tensor is never written and read back; elsewhere one batched matmul.

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
    check_fused_shapes("cross_selective_scan", u, delta, A, B, C, h, w, dt_weight)
    name = _backend.resolve(backend, u)
    if name == "export":  # one traceable call: no kernel, no permuted copies
        return cross_selective_scan_export(u, delta, A, B, C, D, delta_bias, h, w, delta_softplus, dt_weight)
    if name in ("numba", "triton"):
        fused = getattr(_backend.module(name), f"cross_selective_scan_{name}")
        with torch.autocast(u.device.type, enabled=False):  # float32 math even under autocast
            return fused(u, delta, A, B, C, D, delta_bias, h, w, delta_softplus=delta_softplus, dt_weight=dt_weight)
    delta = delta if dt_weight is None else lowrank_delta(delta, dt_weight)
    return _composed(u, delta, A, B, C, D, delta_bias, h, w, delta_softplus, backend)


def _scan_order(x: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """Per-direction data (b, l, k, c) in spatial order -> (b, k, c, l), direction k in its scan order."""
    b, l, k, c = x.shape
    index = order.view(1, k, l, 1).expand(b, k, l, c)
    return x.transpose(1, 2).gather(2, index).transpose(2, 3)


def _composed(u, delta, A, B, C, D, delta_bias, h, w, delta_softplus, backend):
    """cross_merge(selective_scan(cross_scan(...))): the reference formulation, any device, exportable."""
    b, l, e = u.shape
    k, n = A.shape[0], A.shape[2]
    order, _ = scan_indices(h, w, k, u.device)
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
