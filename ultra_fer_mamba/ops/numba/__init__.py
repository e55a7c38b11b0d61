"""The numba CPU kernels (one family on one float32 math module) and their torch functions.

Importing this package imports numba; ops/backend.py imports it lazily, once, and logs why when it fails.
"""

from .autograd import cross_selective_scan_numba, selective_scan_numba

__all__ = ("cross_selective_scan_numba", "selective_scan_numba")
