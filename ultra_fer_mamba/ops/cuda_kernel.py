"""mamba_ssm's CUDA selective-scan kernel behind this package's ``selective_scan`` signature (the "cuda" backend).

Importing this module imports mamba_ssm: ops/backend.py imports it lazily, once, and only when a CUDA tensor or
an explicit request asks for it, so CPU-only use never imports mamba_ssm and a missing or broken install never
prints anything. Install: ``pip install 'ultra-fer-mamba[cuda]'``.

Shape letters: b batch, d channels, g groups of B/C, n state size, l length.
"""

from __future__ import annotations

import torch
from mamba_ssm.ops.selective_scan_interface import selective_scan_fn


def selective_scan_cuda(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                        return_last_state=False):
    """selective_scan_fn on CUDA tensors: u, delta, z (b, d, l); A (d, n); B, C (b, g, n, l); D, delta_bias (d,).

    The kernel computes in float32 internally; y comes back in u's dtype, h_L (b, d, n) in float32."""
    cpu = [t for t in (u, delta, A, B, C, D, z, delta_bias) if t is not None and not t.is_cuda]
    if cpu:
        raise RuntimeError(f"selective-scan backend 'cuda' needs CUDA tensors, got a tensor on {cpu[0].device}")
    f = lambda t: None if t is None else t.contiguous()  # noqa: E731
    f32 = lambda t: None if t is None else t.float()  # noqa: E731
    out = selective_scan_fn(f(u), f(delta), f32(A), f(B), f(C), f32(D), f(z), f32(delta_bias), delta_softplus,
                            return_last_state)
    if return_last_state:
        return out[0].to(u.dtype), out[1]
    return out.to(u.dtype)
