"""The selective-scan dispatcher: one place that picks the backend.

Backends:
    "ref":   the plain sequential recurrence (selective_scan_ref.py), ground truth;
    "torch": the fast pure-PyTorch/CPU path (scan_torch.py), any device, with autograd;
    "cuda":  mamba_ssm's kernel (cuda_kernel.py), CUDA tensors only;
    "auto":  "cuda" when mamba_ssm imports and the tensors are on CUDA, else "torch".

The default comes from the environment variable ``FER_MAMBA_SCAN_BACKEND`` (default "auto") and can be
changed with ``set_scan_backend``; a ``backend=`` argument other than "auto" wins over both. An explicit
request that cannot be met is an error, never a silent fallback. The scan math runs in float32 even
under autocast; the output comes back in u's dtype.

Shape letters: b batch, d channels, n state size, g groups, l length.
"""

from __future__ import annotations

import os

import torch

from .cuda_kernel import has_mamba_ssm, require_kernel
from .scan_torch import selective_scan_torch
from .selective_scan_ref import selective_scan_ref

BACKENDS = ("auto", "ref", "torch", "cuda")
_default_backend = os.environ.get("FER_MAMBA_SCAN_BACKEND", "auto").lower()


def _check_backend(name: str) -> str:
    if name not in BACKENDS:
        raise ValueError(f"selective_scan backend '{name}' is not one of {BACKENDS}")
    return name


def set_scan_backend(name: str) -> None:
    """Set the process-wide default backend ("auto", "ref", "torch" or "cuda")."""
    global _default_backend
    _default_backend = _check_backend(name.lower())


def get_scan_backend() -> str:
    """The process-wide default backend."""
    return _check_backend(_default_backend)


def resolve_backend(backend: str, u: torch.Tensor) -> str:
    """The concrete backend ("ref", "torch" or "cuda") a call with these arguments runs."""
    backend = _check_backend(backend.lower())
    if backend == "auto":
        backend = get_scan_backend()
    if backend == "auto":
        return "cuda" if u.is_cuda and has_mamba_ssm() else "torch"
    return backend


def _check_shapes(u, delta, A, B, C, D, z, delta_bias):
    if u.dim() != 3 or delta.shape != u.shape:
        raise ValueError(f"selective_scan: u and delta must both be (b, d, l), got {tuple(u.shape)} and "
                         f"{tuple(delta.shape)}")
    b, d, l = u.shape
    if A.dim() != 2 or A.shape[0] != d:
        raise ValueError(f"selective_scan: A must be (d={d}, n), got {tuple(A.shape)}")
    for name, t in (("B", B), ("C", C)):
        if t.dim() not in (3, 4) or t.shape[0] != b or t.shape[-1] != l or t.shape[-2] != A.shape[1]:
            raise ValueError(f"selective_scan: {name} must be (b={b}, g, n={A.shape[1]}, l={l}), got {tuple(t.shape)}")
    for name, t, shape in (("D", D, (d,)), ("delta_bias", delta_bias, (d,)), ("z", z, (b, d, l))):
        if t is not None and tuple(t.shape) != shape:
            raise ValueError(f"selective_scan: {name} must be {shape}, got {tuple(t.shape)}")


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
        B (torch.Tensor): Input projection (b, g, n, l), d divisible by g.
        C (torch.Tensor): Output projection (b, g, n, l).
        D (torch.Tensor, optional): Skip weight (d,).
        z (torch.Tensor, optional): Gate (b, d, l).
        delta_bias (torch.Tensor, optional): Added to delta (d,).
        delta_softplus (bool): Softplus on delta after the bias.
        return_last_state (bool): Also return the final state h_L (b, d, n), float32.
        backend (str): "auto", "ref", "torch" or "cuda" (see module docstring).

    Returns:
        (torch.Tensor | tuple): y (b, d, l) in u's dtype, and h_L when asked.

    Examples:
        >>> b, d, n, l = 2, 8, 4, 10
        >>> y = selective_scan(torch.randn(b, d, l), torch.rand(b, d, l), -torch.rand(d, n),
        ...                    torch.randn(b, 1, n, l), torch.randn(b, 1, n, l), backend="torch")
        >>> y.shape
        torch.Size([2, 8, 10])
    """
    _check_shapes(u, delta, A, B, C, D, z, delta_bias)
    name = resolve_backend(backend, u)
    if name == "cuda":
        kernel = require_kernel(u, delta, A, B, C, D, z, delta_bias)
        dtype_in = u.dtype
        with torch.autocast("cuda", enabled=False):  # the kernel computes in float32 internally
            f = lambda t: None if t is None else t.contiguous()  # noqa: E731
            out = kernel(f(u), f(delta), A.float(), f(B), f(C), None if D is None else D.float(), f(z),
                         None if delta_bias is None else delta_bias.float(), delta_softplus, return_last_state)
        if return_last_state:
            return out[0].to(dtype_in), out[1]
        return out.to(dtype_in)
    fn = selective_scan_ref if name == "ref" else selective_scan_torch
    with torch.autocast(u.device.type, enabled=False):  # float32 math even under autocast
        return fn(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state)
