"""Pure functions: the selective scan (reference, fast, CUDA kernel) and the cross-scan."""

from .cross_scan import DIRECTIONS, cross_merge, cross_scan, scan_orders
from .cuda_kernel import has_mamba_ssm
from .selective_scan import BACKENDS, get_scan_backend, selective_scan, set_scan_backend
from .selective_scan_ref import selective_scan_ref

__all__ = (
    "BACKENDS",
    "DIRECTIONS",
    "cross_merge",
    "cross_scan",
    "get_scan_backend",
    "has_mamba_ssm",
    "scan_orders",
    "selective_scan",
    "selective_scan_ref",
    "set_scan_backend",
)
