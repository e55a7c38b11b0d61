"""Triton kernels for the selective scan: GPU training and inference with nothing to compile.

Triton ships inside PyTorch's CUDA wheels on Linux; its kernels compile at first use, on the user's
machine, without a CUDA toolchain. With ``TRITON_INTERPRET=1`` set before this package's kernels are
imported, the same kernels run on CPU tensors in Triton's interpreter (slowly: for tests).

- ``available(device)``: whether the kernels can run for tensors on a device, and why not;
- ``selective_scan_triton``: mamba_ssm's ``selective_scan_fn`` semantics;
- ``cross_selective_scan_triton``: ops/cross_selective_scan.py's fused op for OSSM.

Kernels in kernels.py, launches and the autograd Function in launch.py, the ops in scan.py, tunables in
config.py. Importing this package does not import triton; the two ops import it on first access.
"""

from __future__ import annotations

import torch

__all__ = ("available", "cross_selective_scan_triton", "selective_scan_triton")

MIN_CAPABILITY = (7, 0)  # the oldest NVIDIA GPUs PyTorch's own Triton use (inductor) accepts


def available(device: torch.device | str = "cuda") -> tuple[bool, str]:
    """Whether the Triton kernels can run for tensors on device, and the reason when they cannot.

    Args:
        device (torch.device | str): Where the tensors are.

    Returns:
        (tuple[bool, str]): (True, what runs) or (False, why not).

    Examples:
        >>> ok, why = available("cpu")  # True only under TRITON_INTERPRET=1
        >>> isinstance(why, str)
        True
    """
    device = torch.device(device)
    try:
        from .kernels import INTERPRETED
    except Exception as e:  # triton missing, or broken
        return False, f"triton did not import ({type(e).__name__}: {e})"
    if INTERPRETED:
        return (True, "Triton interpreter (TRITON_INTERPRET=1)") if device.type in ("cpu", "cuda") else (
            False, f"the Triton interpreter runs CPU or CUDA tensors, not {device.type}")
    if device.type != "cuda":
        return False, (f"Triton kernels need CUDA tensors, got {device.type} (CPU tensors run only in Triton's "
                       "interpreter: TRITON_INTERPRET=1 set before ultra_fer_mamba.ops.triton's kernels are imported)")
    if not torch.cuda.is_available():
        return False, "torch.cuda.is_available() is False"
    capability = torch.cuda.get_device_capability(device)
    if torch.version.hip is None and capability < MIN_CAPABILITY:
        return False, f"{torch.cuda.get_device_name(device)} has compute capability {capability}, Triton needs >= 7.0"
    return True, f"Triton kernels compiled for {torch.cuda.get_device_name(device)}"


def __getattr__(name: str):
    """The two ops, imported (with triton) on first access."""
    if name in ("selective_scan_triton", "cross_selective_scan_triton"):
        from . import scan

        return getattr(scan, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
