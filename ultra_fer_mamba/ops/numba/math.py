"""The float32 math of every numba scan kernel: pow2, exp, softplus, sigmoid, and their constants.

One implementation serves all kernels, so a model gets the same numerics whichever scan runs it. float32 uses
the polynomials below (LLVM cannot vectorise ``math.exp`` without SVML, and exp is the scans' inner loop);
float64 uses ``math.exp``/``math.log1p`` (accuracy first).

The float32 constants reach the kernels as run-time values: the caller passes ``coefficients(dtype)`` and a
kernel unpacks it once (``unpack``) into a tuple. Kept in registers that way, they are not re-broadcast from
memory at every vectorised iteration as numba's literal constants are (about a third of the inner loop's
instructions otherwise).

Importing this module imports numba; ops/backend.py imports the package inside a try.
"""

from __future__ import annotations

import math

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic, overload

# fastmath for the kernels, minus "reassoc" inside the helpers, whose range reductions must be evaluated as written
HELPER_MATH = {"nnan", "ninf", "nsz", "contract", "afn"}
JIT = dict(fastmath=True, cache=True, nogil=True, error_model="numpy")  # numpy: no ZeroDivisionError branches
_HELPER_JIT = {"fastmath": HELPER_MATH, "error_model": "numpy"}

LOG2E = 1.4426950408889634
_MAGIC = 12582912.0  # 1.5 * 2**23: adding it rounds a float32 of magnitude < 2**22 to an integer
# 2**r ~ 1 + r (P1 + r (P2 + ... + r P5)) on |r| <= 1/2: near-minimax coefficients (relative error by
# Lawson-reweighted least squares on Chebyshev nodes); float32 Horner within 1.6 ulp
_POW2 = (0.6931469775965878, 0.24022242081842451, 0.05550733745646322, 0.009671512862233816, 0.001326472708008647)
# log1p(z) ~ z Q(z) on [0, 1], Q of degree 8 (same fit; float32 Horner within 2e-7 relative)
_LOG1P = (0.9999999698809, -0.4999949314555559, 0.3331909686204845, -0.2484298246210637, 0.191060072993899,
          -0.13663246301091253, 0.07822595210807443, -0.029505236058234727, 0.005232692979207629)
COEFFICIENTS = (-125.0, 127.0, _MAGIC, LOG2E) + _POW2 + _LOG1P  # the layout unpack() returns


def coefficients(dtype) -> np.ndarray:
    """The constants of pow2, exp, softplus and sigmoid as an array of ``dtype``, for a kernel's caller to pass in."""
    return np.array(COEFFICIENTS, dtype)


@njit(**JIT)
def unpack(c):
    """coefficients() as the tuple the helpers take (its length is fixed, so numba types it as a UniTuple)."""
    return (c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7], c[8], c[9], c[10], c[11], c[12], c[13], c[14], c[15],
            c[16], c[17])


@intrinsic
def _scale_by_magic(typingctx, p, t):
    """p * 2**k for float32 p in [0.5, 2) and t = y + _MAGIC holding the integer k (-125 <= k <= 127) in its low
    mantissa bits: k is added to p's exponent field (bits(t) << 23 leaves exactly k << 23, mod 2**32)."""
    if p != types.float32 or t != types.float32:
        return None

    def codegen(context, builder, signature, args):
        i32 = ir.IntType(32)
        k23 = builder.shl(builder.bitcast(args[1], i32), ir.Constant(i32, 23))
        return builder.bitcast(builder.add(builder.bitcast(args[0], i32), k23), ir.FloatType())

    return types.float32(types.float32, types.float32), codegen


def pow2(x, cf):  # typed by the overloads below
    """2**x; cf = unpack(coefficients(dtype))."""
    raise NotImplementedError


def exp(x, cf):
    """e**x = pow2(x log2 e)."""
    raise NotImplementedError


def softplus(x, cf):
    """log(1 + e**x)."""
    raise NotImplementedError


def sigmoid(x, cf):
    """1 / (1 + e**-x)."""
    raise NotImplementedError


@overload(pow2, jit_options=_HELPER_JIT)
def _pow2_impl(x, cf):
    """float32: 13 vector ops. 2**r on |r| <= 1/2 by the degree-5 polynomial, the integer part added to the exponent
    field: within 1.6 ulp over [-125, 127]. x is clamped to that range: below it the result is 2**-125 (~2e-38)
    instead of a subnormal, which the recurrence's products treat as 0; above it, 2**127 (finite)."""
    if x == types.float32:

        def pow2_f32(x, cf):
            lo, hi, magic, p1, p2, p3, p4, p5 = cf[0], cf[1], cf[2], cf[4], cf[5], cf[6], cf[7], cf[8]
            xc = min(max(x, lo), hi)
            t = xc + magic
            r = xc - (t - magic)  # |r| <= 1/2, exact
            p = (((p5 * r + p4) * r + p3) * r + p2) * r + p1
            return _scale_by_magic(p * r + np.float32(1.0), t)

        return pow2_f32
    if isinstance(x, types.Float):
        return lambda x, cf: 2.0**x
    return None


@overload(exp, jit_options=_HELPER_JIT)
def _exp_impl(x, cf):
    """float32: within 2 ulp plus the rounding of x log2(e) (relative 1.2e-7 |x|); float64: math.exp."""
    if x == types.float32:
        return lambda x, cf: pow2(x * cf[3], cf)
    if isinstance(x, types.Float):
        return lambda x, cf: math.exp(x)
    return None


@overload(softplus, jit_options=_HELPER_JIT)
def _softplus_impl(x, cf):
    """softplus(x) = max(x, 0) + log1p(z), z = e**-|x| in (0, 1]. float32: z by pow2 and log1p(z) = z Q(z): no
    division and no branch, so a loop over it vectorises; within 2e-6 relative of the exact value for |x| <= 30
    (the rounding of x log2(e)). No switch to x above 20 as in torch: there the two differ by < 2e-9 relative."""
    if x == types.float32:

        def softplus_f32(x, cf):
            q0, q1, q2, q3, q4, q5, q6, q7, q8 = cf[9], cf[10], cf[11], cf[12], cf[13], cf[14], cf[15], cf[16], cf[17]
            z = pow2(-abs(x) * cf[3], cf)
            p = (((((((q8 * z + q7) * z + q6) * z + q5) * z + q4) * z + q3) * z + q2) * z + q1) * z + q0
            return max(x, np.float32(0.0)) + p * z

        return softplus_f32
    if isinstance(x, types.Float):
        return lambda x, cf: max(x, 0.0) + math.log1p(math.exp(-abs(x)))
    return None


@overload(sigmoid, jit_options=_HELPER_JIT)
def _sigmoid_impl(x, cf):
    """1 / (1 + exp(-x)) with this module's exp (float32) or math.exp (float64)."""
    if x == types.float32:
        one = np.float32(1.0)
        return lambda x, cf: one / (one + exp(-x, cf))
    if isinstance(x, types.Float):
        return lambda x, cf: 1.0 / (1.0 + math.exp(-x))
    return None
