"""The one home of the optional CUDA kernel (mamba_ssm's ``selective_scan_fn``).

Imported lazily, once, and only when a CUDA tensor asks for it: CPU-only use never imports mamba_ssm,
and a missing or broken install never prints anything. ``require_kernel`` raises with the install
command when someone explicitly asks for the kernel.
"""

from __future__ import annotations

import importlib

_KERNEL = None  # selective_scan_fn once loaded
_ERROR: str | None = None  # why it could not be loaded
_TRIED = False

INSTALL_HINT = "pip install 'ultra-fer-mamba[cuda]' (mamba-ssm and causal-conv1d; needs a CUDA toolchain)"


def _load():
    """Try the import once; remember the function or the reason it failed."""
    global _KERNEL, _ERROR, _TRIED
    if not _TRIED:
        _TRIED = True
        try:
            module = importlib.import_module("mamba_ssm.ops.selective_scan_interface")
            _KERNEL = module.selective_scan_fn
        except Exception as e:  # ImportError, or a broken build raising OSError/RuntimeError at import
            _ERROR = f"{type(e).__name__}: {e}"
    return _KERNEL


def has_mamba_ssm() -> bool:
    """True when mamba_ssm's selective-scan kernel imports (tries the import on first call)."""
    return _load() is not None


def require_kernel(*tensors):
    """Return mamba_ssm's ``selective_scan_fn`` or raise a RuntimeError saying why it cannot run."""
    if _load() is None:
        raise RuntimeError(f"selective_scan backend='cuda' needs mamba_ssm, which did not import ({_ERROR}). "
                           f"Install it with: {INSTALL_HINT}")
    cpu = [t for t in tensors if t is not None and not t.is_cuda]
    if cpu:
        raise RuntimeError(f"selective_scan backend='cuda' needs CUDA tensors, got a tensor on {cpu[0].device}; "
                           "use backend='torch' (or 'auto') for CPU tensors")
    return _KERNEL
