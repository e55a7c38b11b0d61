"""Pure functions: the selective scan (reference, numba, torch ops, Triton, mamba_ssm), the cross-scan, and the
one place that picks the backend (backend.py)."""

from .backend import NAMES as BACKENDS
from .backend import get_scan_backend, has_mamba_ssm, resolve, set_scan_backend
from .cross_scan import DIRECTIONS, cross_merge, cross_scan, scan_orders
from .cross_selective_scan import cross_selective_scan
from .selective_scan import selective_scan
from .selective_scan_ref import selective_scan_ref

__all__ = (
    "BACKENDS",
    "DIRECTIONS",
    "cross_merge",
    "cross_scan",
    "cross_selective_scan",
    "get_scan_backend",
    "has_mamba_ssm",
    "resolve",
    "scan_orders",
    "selective_scan",
    "selective_scan_ref",
    "set_scan_backend",
)
