"""The one place that decides which selective scan runs (timm's ``layers/config.py`` pattern).

Backends:
    "auto":   CPU tensors: "numba" when it imports, else "torch". CUDA tensors: "cuda" when mamba_ssm imports,
              else "triton" when it imports and the GPU can run it, else "torch". Other devices: "torch".
    "ref":    the plain recurrence (selective_scan_ref.py), ground truth, any device, slow;
    "numba":  the numba CPU kernels (numba/), CPU tensors;
    "torch":  the chunked pure-torch path (torch_ops.py), any device;
    "triton": the Triton kernels (triton/), CUDA tensors, or CPU tensors under TRITON_INTERPRET=1;
    "cuda":   mamba_ssm's kernel (cuda_kernel.py), CUDA tensors; the fused op composes it with the cross-scan.
While tracing or exporting (``exporting()``), ``resolve`` answers "export" whatever the device or backend: the
export formulation (scan_export.py) runs and no kernel is ever traced.

The default is "auto", or the environment variable ``FER_MAMBA_SCAN_BACKEND``, or what ``set_scan_backend``
set (which wins over the variable); a ``backend=`` argument other than "auto" wins over both. An explicit request
that cannot be met raises a RuntimeError with the reason. The optional modules (numba/, triton/ and
cuda_kernel.py, which import numba, triton and mamba_ssm) are imported on first need, once each; a failure is
logged once (LOGGER) with its cause, never printed or warned at import.
"""

from __future__ import annotations

import importlib
import os

import torch
from ultralytics.utils import LOGGER

NAMES = ("auto", "ref", "numba", "torch", "triton", "cuda")
ENV = "FER_MAMBA_SCAN_BACKEND"
_OPTIONAL = {  # backend: (module under ops/, what it needs, how to get it)
    "numba": ("numba", "numba", "pip install numba"),
    "triton": ("triton", "triton", "it ships with PyTorch's CUDA wheels on Linux (pip install triton)"),
    "cuda": ("cuda_kernel", "mamba_ssm", "pip install 'ultra-fer-mamba[cuda]' (mamba-ssm and causal-conv1d; needs a "
                                         "CUDA toolchain)"),
}
_default: str | None = None  # set by set_scan_backend; None: the environment variable, else "auto"
_loaded: dict = {}  # backend -> its module, or the reason it did not import (str)


def _check(name, source: str = "backend") -> str:
    if not isinstance(name, str) or name.lower() not in NAMES:
        raise ValueError(f"selective-scan {source} {name!r} is not one of {NAMES}")
    return name.lower()


def set_scan_backend(name: str) -> None:
    """Set the process-wide default backend (one of NAMES); it wins over FER_MAMBA_SCAN_BACKEND.

    Examples:
        >>> set_scan_backend("torch")
        >>> get_scan_backend()
        'torch'
        >>> set_scan_backend("auto")
    """
    global _default
    _default = _check(name, "backend (set_scan_backend)")


def get_scan_backend() -> str:
    """The process-wide default backend: set_scan_backend's, else FER_MAMBA_SCAN_BACKEND's, else "auto"."""
    if _default is not None:
        return _default
    return _check(os.environ.get(ENV) or "auto", f"backend (environment variable {ENV})")


def exporting() -> bool:
    """True while tracing (torch.jit.trace) or exporting to ONNX: the export formulation must run then."""
    return torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()


def module(name: str):
    """The module behind an optional backend ("numba", "triton", "cuda"), or None when it does not import.

    Imported on the first call, once; the cause of a failure is logged once and kept for error messages."""
    if name not in _loaded:
        path, needs, hint = _OPTIONAL[name]
        try:
            _loaded[name] = importlib.import_module(f"{__package__}.{path}")
        except Exception as e:  # ImportError, or a broken build raising OSError/RuntimeError at import
            _loaded[name] = f"{needs} did not import ({type(e).__name__}: {e}); {hint}"
            log = LOGGER.warning if name == "numba" else LOGGER.info
            log(f"ultra-fer-mamba: the '{name}' scan backend is unavailable: {_loaded[name]}"
                + ("; CPU scans run the slower torch ops" if name == "numba" else ""))
    found = _loaded[name]
    return None if isinstance(found, str) else found


def has_mamba_ssm() -> bool:
    """True when mamba_ssm's selective-scan kernel imports (tries the import on the first call)."""
    return module("cuda") is not None


def _auto(device: torch.device) -> str:
    if device.type == "cpu":
        return "numba" if module("numba") else "torch"
    if device.type == "cuda":
        if module("cuda"):
            return "cuda"
        if module("triton") and module("triton").available(device)[0]:
            return "triton"
    return "torch"


def _unmet(name: str, device: torch.device) -> str | None:
    """Why backend ``name`` cannot run tensors on ``device`` (None: it can)."""
    if name in ("ref", "torch"):
        return None
    m = module(name)
    if m is None:
        return _loaded[name]
    if name == "numba" and device.type != "cpu":
        return f"the numba kernels run CPU tensors only, got tensors on {device}"
    if name == "cuda" and device.type != "cuda":
        return f"mamba_ssm's kernel runs CUDA tensors only, got tensors on {device}; use 'auto' or 'numba' on the CPU"
    if name == "triton":
        ok, why = m.available(device)
        return None if ok else why
    return None


def resolve(backend: str, u: torch.Tensor) -> str:
    """The implementation a call with this backend argument runs on tensors like u.

    Args:
        backend (str): One of NAMES; "auto" defers to get_scan_backend().
        u (torch.Tensor): The scan input (its device decides).

    Returns:
        (str): "export", "ref", "numba", "torch", "triton" or "cuda".

    Raises:
        ValueError: an unknown name. RuntimeError: an explicit backend that cannot run here, with the reason.

    Examples:
        >>> resolve("ref", torch.zeros(1))
        'ref'
    """
    name = _check(backend)
    if name == "auto":
        name = get_scan_backend()
    if exporting():
        return "export"
    if name == "auto":
        return _auto(u.device)
    reason = _unmet(name, u.device)
    if reason:
        raise RuntimeError(f"selective-scan backend '{name}' cannot run here: {reason}")
    return name
