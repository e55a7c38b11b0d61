"""The public selective scan: shape checks, then backend.resolve -> one call.

Same semantics and shapes as mamba_ssm's ``selective_scan_fn``; which implementation runs is backend.py's
decision (names, environment variable, setter, export). The scan math runs in float32 even under autocast (float64
for float64 inputs); y comes back in u's dtype.

Shape letters: b batch, d channels, n state size, g groups of B/C (d % g == 0), l length.
"""

from __future__ import annotations

import math

import torch

from . import backend as _backend
from .scan_export import selective_scan_export
from .selective_scan_ref import selective_scan_ref
from .torch_ops import selective_scan_torch


def _implementation(name: str):
    """The function behind a resolved backend name."""
    if name in ("numba", "triton", "cuda"):
        fn = {"numba": "selective_scan_numba", "triton": "selective_scan_triton", "cuda": "selective_scan_cuda"}[name]
        return getattr(_backend.module(name), fn)
    return {"export": selective_scan_export, "ref": selective_scan_ref, "torch": selective_scan_torch}[name]


def _checked(u, delta, A, B, C, D, z, delta_bias):
    """Check the shapes; return B and C as (b, g, n, l) with the same groups (autograd carries the expansion)."""
    if u.dim() != 3 or delta.shape != u.shape:
        raise ValueError(f"selective_scan: u and delta must both be (b, d, l), got {tuple(u.shape)} and "
                         f"{tuple(delta.shape)}")
    b, d, l = u.shape
    if A.dim() != 2 or A.shape[0] != d:
        raise ValueError(f"selective_scan: A must be (d={d}, n), got {tuple(A.shape)}")
    for name, t in (("B", B), ("C", C)):
        if t.dim() not in (3, 4) or t.shape[0] != b or t.shape[-1] != l or t.shape[-2] != A.shape[1]:
            raise ValueError(f"selective_scan: {name} must be (b={b}, g, n={A.shape[1]}, l={l}), got {tuple(t.shape)}")
        if t.dim() == 4 and d % t.shape[1]:
            raise ValueError(f"selective_scan: channels d={d} must be divisible by the groups of {name} "
                             f"(g={t.shape[1]})")
    for name, t, shape in (("D", D, (d,)), ("delta_bias", delta_bias, (d,)), ("z", z, (b, d, l))):
        if t is not None and tuple(t.shape) != shape:
            raise ValueError(f"selective_scan: {name} must be {shape}, got {tuple(t.shape)}")
    B = B.unsqueeze(1) if B.dim() == 3 else B  # (b, n, l) is one group
    C = C.unsqueeze(1) if C.dim() == 3 else C
    gB, gC = B.shape[1], C.shape[1]
    if gB != gC:  # different groups: both expanded to their least common multiple
        g = gB * gC // math.gcd(gB, gC)
        B, C = B.repeat_interleave(g // gB, 1), C.repeat_interleave(g // gC, 1)
    return B, C


def selective_scan(
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
    backend: str = "auto",
):
    """Selective scan with mamba_ssm's ``selective_scan_fn`` semantics and shapes.

    h_t = exp(delta_t A) h_{t-1} + delta_t B_t u_t;  y_t = C_t . h_t + D u_t;  y *= SiLU(z).

    Args:
        u (torch.Tensor): Input (b, d, l).
        delta (torch.Tensor): Step sizes (b, d, l), before bias and softplus.
        A (torch.Tensor): State matrix diagonal (d, n).
        B (torch.Tensor): Input projection (b, g, n, l) or (b, n, l), d divisible by g.
        C (torch.Tensor): Output projection (b, g, n, l) or (b, n, l).
        D (torch.Tensor, optional): Skip weight (d,).
        z (torch.Tensor, optional): Gate (b, d, l).
        delta_bias (torch.Tensor, optional): Added to delta (d,).
        delta_softplus (bool): Softplus on delta after the bias.
        return_last_state (bool): Also return the final state h_L (b, d, n), float32 (float64 for float64 inputs).
        backend (str): One of backend.NAMES; "auto" follows get_scan_backend() (see ops/backend.py).

    Returns:
        (torch.Tensor | tuple): y (b, d, l) in u's dtype, and h_L when asked.

    Examples:
        >>> b, d, n, l = 2, 8, 4, 10
        >>> y = selective_scan(torch.randn(b, d, l), torch.rand(b, d, l), -torch.rand(d, n),
        ...                    torch.randn(b, 1, n, l), torch.randn(b, 1, n, l), backend="torch")
        >>> y.shape
        torch.Size([2, 8, 10])
    """
    B, C = _checked(u, delta, A, B, C, D, z, delta_bias)
    fn = _implementation(_backend.resolve(backend, u))
    with torch.autocast(u.device.type, enabled=False):  # float32 math even under autocast
        return fn(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state)
