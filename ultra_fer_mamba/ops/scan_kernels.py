"""Numba CPU kernels for the selective scan: inference forward, forward with checkpoints, backward.

Used by scan_torch.py for CPU tensors; importing this module imports numba, so callers import it inside
a try. Tasks (``prange``) are channel rows: scan_infer takes two channels of one group per task,
scan_fwd one, scan_bwd a slice of one group's channels. Each walks the sequence in the outer loop and
the state in the inner loop, so h[n] stays in L1 and the inner loop vectorises over n; B and C come in
transposed to (b, g, l, n), contiguous per step. The number of threads follows torch's (set_threads).
Compiled on first use per dtype (a few seconds each) and cached on disk (``cache=True``).

float32 uses hand-written exp/log1p below (LLVM cannot vectorise ``math.exp`` without SVML, and the
exp in the inner loop is the bottleneck); float64 uses ``math.exp``/``math.log1p`` (accuracy first).
The fused kernels (cross_scan_kernels.py) use the cheaper _pow2 and _softplus, whose constants the caller
passes in (pow2_coefficients, softplus_coefficients).

Shape letters: b batch, d channels, g groups of B/C, n state size, l length, c checkpoints (ceil(l/T)).
"""

from __future__ import annotations

import math

import numba
import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.extending import intrinsic, overload

# fastmath for the kernels, minus "reassoc" inside the exp/log helpers, whose range reduction
# (x - n*ln2_hi - n*ln2_lo, log1p's rounding correction) must be evaluated exactly as written
_HELPER_MATH = {"nnan", "ninf", "nsz", "contract", "afn"}
_JIT = dict(fastmath=True, cache=True, nogil=True, error_model="numpy")  # numpy: no ZeroDivisionError branches

_LOG2E = 1.4426950408889634
_LN2_HI = 0.693359375  # 355/512: n * _LN2_HI is exact for |n| < 2**15
_LN2_LO = -2.1219444005469057e-04  # ln 2 - _LN2_HI
# exp(r) ~ 1 + r + r^2 P(r) on |r| <= ln2/2: near-minimax coefficients fitted for this file (relative
# error by Lawson-reweighted least squares on Chebyshev nodes); with the reduction above the float32
# result is within 1.0 ulp of the true exp over [-87.3, 88.3] (checked against float64 on 2.2e6 points).
# Below -88 the result is 0 (true value < 1e-38, subnormal) and above 88.37 it saturates at 2.4e38: no
# selects, and no slow subnormal arithmetic in the recurrence.
_E2, _E3, _E4 = 0.4999999403953552, 0.1666652113199234, 0.04166838899254799
_E5, _E6 = 0.008368710055947304, 0.001381461275741458
# 2**r ~ 1 + r (P1 + r (P2 + ... + r P5)) on |r| <= 1/2 (same fit; float32 Horner within 1.6 ulp)
_P1, _P2, _P3 = 0.6931469775965878, 0.24022242081842451, 0.05550733745646322
_P4, _P5 = 0.009671512862233816, 0.001326472708008647
_LN2 = 0.6931471805599453
# log1p(z) ~ z P(z) on [0, 1], P of degree 8 (same fit; float32 Horner within 2e-7 relative)
_L1P = (0.9999999698809, -0.4999949314555559, 0.3331909686204845, -0.2484298246210637, 0.191060072993899,
        -0.13663246301091253, 0.07822595210807443, -0.029505236058234727, 0.005232692979207629)
_MAGIC = 12582912.0  # 1.5 * 2**23: adding it rounds a float32 of magnitude < 2**22 to an integer
_EXP_LO, _EXP_HI = -88.0, 88.37  # clamp: exp(-88) -> exponent field 0 -> exactly 0; exp(88.37+) saturates


@intrinsic
def _exp2_from_magic(typingctx, t):
    """2**k as float32, where t = x + _MAGIC holds the integer k in its low mantissa bits (|k| <= 127)."""
    if t != types.float32:
        return None

    def codegen(context, builder, signature, args):
        i32 = ir.IntType(32)
        bits = builder.bitcast(args[0], i32)  # = bits(_MAGIC) + k
        exponent = builder.add(bits, ir.Constant(i32, 127 - 0x4B400000))  # k + 127 (0 for k = -127: result 0)
        return builder.bitcast(builder.shl(exponent, ir.Constant(i32, 23)), ir.FloatType())

    return types.float32(types.float32), codegen


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


def _exp(x):  # typed by the overload below
    raise NotImplementedError


def _log1p(x):  # typed by the overload below
    raise NotImplementedError


@overload(_exp, jit_options={"fastmath": _HELPER_MATH, "error_model": "numpy"})
def _exp_impl(x):
    if x == types.float32:
        f = np.float32

        def exp_f32(x):
            xc = min(max(x, f(_EXP_LO)), f(_EXP_HI))
            t = xc * f(_LOG2E) + f(_MAGIC)  # one rounding (fma): t - _MAGIC = round(x / ln 2)
            k = t - f(_MAGIC)
            r = (xc - k * f(_LN2_HI)) - k * f(_LN2_LO)  # |r| <= ln2/2 (Cody-Waite)
            p = f(_E6)
            p = p * r + f(_E5)
            p = p * r + f(_E4)
            p = p * r + f(_E3)
            p = p * r + f(_E2)
            p = (p * r + f(1.0)) * r + f(1.0)
            return p * _exp2_from_magic(t)

        return exp_f32
    if isinstance(x, types.Float):
        return lambda x: math.exp(x)
    return None


def _pow2(x, cf):  # typed by the overload below
    raise NotImplementedError


def pow2_coefficients(dtype) -> np.ndarray:
    """The constants of _pow2 as an array for the kernels' callers to pass in: as run-time values LLVM keeps
    them in registers across a vectorised loop, where literal constants are re-broadcast from memory at
    every iteration (numba's code model), about a third of the loop's instructions."""
    return np.array([-125.0, 127.0, _MAGIC, _P1, _P2, _P3, _P4, _P5], dtype)


@overload(_pow2, jit_options={"fastmath": _HELPER_MATH, "error_model": "numpy"})
def _pow2_impl(x, cf):
    """2**x, cf = pow2_coefficients(x's dtype) unpacked into a tuple. float32: 13 vector ops, the scans'
    inner loop, with A pre-scaled by log2(e) so that exp(dt A) = 2**(dt A log2 e). 2**r on |r| <= 1/2 by a
    degree-5 near-minimax polynomial (fitted for this file like _exp's), the integer part added to the
    exponent field: within 1.6 ulp over [-125, 127]. x is clamped to that range: below it the result is
    2**-125 (~2e-38) instead of a subnormal, which the recurrence's products treat as 0."""
    if x == types.float32:

        def pow2_f32(x, cf):
            lo, hi, magic, p1, p2, p3, p4, p5 = cf
            xc = min(max(x, lo), hi)
            t = xc + magic
            r = xc - (t - magic)  # |r| <= 1/2, exact
            p = (((p5 * r + p4) * r + p3) * r + p2) * r + p1
            return _scale_by_magic(p * r + np.float32(1.0), t)

        return pow2_f32
    if isinstance(x, types.Float):
        return lambda x, cf: math.exp(x * _LN2)
    return None


def _softplus(x, cf, sc):  # typed by the overload below
    raise NotImplementedError


def softplus_coefficients(dtype) -> np.ndarray:
    """The constants of _softplus (log2(e), then log1p(z) / z's polynomial), passed in like _pow2's."""
    return np.array((_LOG2E,) + _L1P, dtype)


@overload(_softplus, jit_options={"fastmath": _HELPER_MATH, "error_model": "numpy"})
def _softplus_impl(x, cf, sc):
    """softplus(x) = max(x, 0) + log1p(z), z = exp(-|x|) in (0, 1]; cf = pow2_coefficients, sc =
    softplus_coefficients, as tuples. float32: z by _pow2 and log1p(z) = z P(z) (degree 8, near-minimax,
    within 2e-7 relative on [0, 1]): no division and no branch, so the loop vectorises; within 2e-6
    relative of the exact value for |x| <= 30 (the rounding of x log2(e) in the exponent). float64: exact."""
    if x == types.float32:

        def softplus_f32(x, cf, sc):
            log2e, q0, q1, q2, q3, q4, q5, q6, q7, q8 = sc
            z = _pow2(-abs(x) * log2e, cf)
            p = (((((((q8 * z + q7) * z + q6) * z + q5) * z + q4) * z + q3) * z + q2) * z + q1) * z + q0
            return max(x, np.float32(0.0)) + p * z

        return softplus_f32
    if isinstance(x, types.Float):
        return lambda x, cf, sc: max(x, 0.0) + math.log1p(math.exp(-abs(x)))
    return None


@overload(_log1p, jit_options={"fastmath": _HELPER_MATH, "error_model": "numpy"})
def _log1p_impl(x):
    if x == types.float32:
        f = np.float32

        def log1p_f32(x):  # for x in [0, 1] (what softplus needs); 1.3 ulp
            y = x + f(1.0)
            c = x - (y - f(1.0))  # exact rounding error of 1 + x
            big = y > f(1.4142135)
            m = y * f(0.5) if big else y  # m in [0.71, 1.42], log(y) = log(m) + k ln 2
            k = f(1.0) if big else f(0.0)
            fm = m - f(1.0)
            s = fm / (fm + f(2.0))  # log(1 + fm) = 2 atanh(s) = fm - s (fm - s^2 P(s^2))
            s2 = s * s
            p = ((f(2.0 / 9.0) * s2 + f(2.0 / 7.0)) * s2 + f(2.0 / 5.0)) * s2 + f(2.0 / 3.0)
            lm = fm - s * (fm - s2 * p)
            return k * f(_LN2_HI) + (lm + (c / y + k * f(_LN2_LO)))

        return log1p_f32
    if isinstance(x, types.Float):
        return lambda x: math.log1p(x)
    return None


@njit(**_JIT)
def _prep_delta(delta_row, bias, softplus, dt, sig):
    """dt = softplus(delta + bias) (or delta + bias), and sig = d dt / d delta when sig is non-empty."""
    nl = dt.shape[0]
    F = dt.dtype.type
    if softplus:  # torch's softplus: beta 1, threshold 20
        for t in range(nl):
            x = delta_row[t] + bias
            sp = max(x, F(0.0)) + _log1p(_exp(-abs(x)))
            dt[t] = x if x > F(20.0) else sp
        if sig.shape[0]:
            for t in range(nl):
                sig[t] = F(1.0) / (F(1.0) + _exp(-(delta_row[t] + bias)))
    else:
        for t in range(nl):
            dt[t] = delta_row[t] + bias
        if sig.shape[0]:
            sig[:] = F(1.0)


@njit(**_JIT)
def _fwd_row(ur, delta_r, bias, softplus, a, Br, Cr, dskip, zr, yr, hlast_r, hck_r, ypre_r, chunk):
    """One row: y (l,), last state (n,), checkpoints (c, n) when hck_r is non-empty, pre-gate y when
    ypre_r is non-empty. The scratch (dt, h) is allocated here, next to the hot loop, so LLVM knows it
    aliases nothing and vectorises the state loop without runtime checks."""
    nl, nn = ur.shape[0], a.shape[0]
    F = ur.dtype.type
    dt = np.empty(nl, ur.dtype)
    _prep_delta(delta_r, bias, softplus, dt, np.empty(0, ur.dtype))
    h = np.zeros(nn, ur.dtype)
    next_ck = 0 if hck_r.shape[0] > 0 else nl  # one loop over t (nested block loops vectorise worse)
    for t in range(nl):
        if t == next_ck:
            c = t // chunk
            for k in range(nn):
                hck_r[c, k] = h[k]
            next_ck += chunk
        dtt = dt[t]
        x = dtt * ur[t]
        acc = F(0.0)
        for k in range(nn):
            hk = _exp(dtt * a[k]) * h[k] + x * Br[t, k]
            h[k] = hk
            acc += hk * Cr[t, k]
        yr[t] = acc + dskip * ur[t]
    if ypre_r.shape[0] > 0:
        ypre_r[:] = yr
    if zr.shape[0] > 0:
        for t in range(nl):
            yr[t] = yr[t] * (zr[t] / (F(1.0) + _exp(-zr[t])))
    for k in range(nn):
        hlast_r[k] = h[k]


@njit(parallel=True, **_JIT)
def scan_fwd(u, delta, A, B, C, D, z, bias, softplus, chunk, y, hlast, hck, ypre):
    """Forward scan into y (b, d, l) and hlast (b, d, n).

    u, delta (b, d, l); A (d, n); B, C (b, g, l, n); D, bias (d,) or empty; z (b, d, l) or empty.
    With a non-empty hck (b, d, c, n), the state before every ``chunk``-th step is saved, and with a
    non-empty ypre (b, d, l) the output before the SiLU(z) gate (both for the backward).
    """
    nb, nd, nl = u.shape
    ng = B.shape[1]
    dpg = nd // ng
    F = u.dtype.type
    has_d, has_z, has_bias = D.shape[0] > 0, z.shape[0] > 0, bias.shape[0] > 0
    save, save_pre = hck.shape[0] > 0, ypre.shape[0] > 0
    none1, none2 = np.empty(0, u.dtype), np.empty((0, A.shape[1]), u.dtype)  # stand-ins for absent rows
    for r in prange(nb * nd):
        bi = r // nd
        di = r - bi * nd
        gi = di // dpg
        _fwd_row(u[bi, di], delta[bi, di], bias[di] if has_bias else F(0.0), softplus, A[di], B[bi, gi], C[bi, gi],
                 D[di] if has_d else F(0.0), z[bi, di] if has_z else none1, y[bi, di], hlast[bi, di],
                 hck[bi, di] if save else none2, ypre[bi, di] if save_pre else none1, chunk)


@njit(**_JIT)
def _infer_pair(u0, u1, delta0, delta1, bias0, bias1, softplus, a0, a1, Br, Cr, dskip0, dskip1, z0, z1, y0, y1,
                hlast0, hlast1):
    """_fwd_row for two rows of one group at once, without checkpoints (inference). The two
    independent recurrences share the loads of B and C and the loop overhead and give the core two
    dependency chains to overlap: about 12% faster per row than one at a time."""
    nl, nn = u0.shape[0], a0.shape[0]
    F = u0.dtype.type
    dt0 = np.empty(nl, u0.dtype)
    dt1 = np.empty(nl, u0.dtype)
    nosig = np.empty(0, u0.dtype)
    _prep_delta(delta0, bias0, softplus, dt0, nosig)
    _prep_delta(delta1, bias1, softplus, dt1, nosig)
    h0 = np.zeros(nn, u0.dtype)
    h1 = np.zeros(nn, u0.dtype)
    for t in range(nl):
        e0, e1 = dt0[t], dt1[t]
        x0, x1 = e0 * u0[t], e1 * u1[t]
        acc0 = F(0.0)
        acc1 = F(0.0)
        for k in range(nn):
            bk, ck = Br[t, k], Cr[t, k]
            hk = _exp(e0 * a0[k]) * h0[k] + x0 * bk
            h0[k] = hk
            acc0 += hk * ck
            hk = _exp(e1 * a1[k]) * h1[k] + x1 * bk
            h1[k] = hk
            acc1 += hk * ck
        y0[t] = acc0 + dskip0 * u0[t]
        y1[t] = acc1 + dskip1 * u1[t]
    if z0.shape[0] > 0:
        for t in range(nl):
            y0[t] = y0[t] * (z0[t] / (F(1.0) + _exp(-z0[t])))
            y1[t] = y1[t] * (z1[t] / (F(1.0) + _exp(-z1[t])))
    for k in range(nn):
        hlast0[k] = h0[k]
        hlast1[k] = h1[k]


@njit(parallel=True, **_JIT)
def scan_infer(u, delta, A, B, C, D, z, bias, softplus, y, hlast):
    """scan_fwd without checkpoints, two channels per task; needs an even number of channels per group."""
    nb, nd, nl = u.shape
    ng = B.shape[1]
    dpg = nd // ng
    F = u.dtype.type
    has_d, has_z, has_bias = D.shape[0] > 0, z.shape[0] > 0, bias.shape[0] > 0
    none1 = np.empty(0, u.dtype)
    for r in prange(nb * nd // 2):
        bi = (2 * r) // nd
        di = 2 * r - bi * nd  # even, and di + 1 is in the same group since dpg is even
        gi = di // dpg
        _infer_pair(u[bi, di], u[bi, di + 1], delta[bi, di], delta[bi, di + 1],
                    bias[di] if has_bias else F(0.0), bias[di + 1] if has_bias else F(0.0), softplus, A[di],
                    A[di + 1], B[bi, gi], C[bi, gi], D[di] if has_d else F(0.0), D[di + 1] if has_d else F(0.0),
                    z[bi, di] if has_z else none1, z[bi, di + 1] if has_z else none1, y[bi, di], y[bi, di + 1],
                    hlast[bi, di], hlast[bi, di + 1])


@njit(**_JIT)
def _bwd_rows(u, delta, A, B, C, D, z, bias, softplus, chunk, hck, ypre, dy, dhlast, bi, gi, r0, r1,
              du, ddelta, dz, dA_rows, dB_out, dC_out, dD_rows, dbias_rows):
    """Backward of rows r0..r1-1 of batch bi (all in group gi); dB, dC of these rows summed into
    dB_out, dC_out (l, n). Every array written in the hot loops is allocated here, so LLVM knows they
    alias nothing and vectorises the state loops without runtime checks (see _fwd_row)."""
    nl, nn = u.shape[2], A.shape[1]
    F = u.dtype.type
    has_d, has_z, has_bias, has_dh = D.shape[0] > 0, z.shape[0] > 0, bias.shape[0] > 0, dhlast.shape[0] > 0
    Br, Cr = B[bi, gi], C[bi, gi]
    dBl = np.zeros((nl, nn), u.dtype)
    dCl = np.zeros((nl, nn), u.dtype)
    dt = np.empty(nl, u.dtype)
    sig = np.empty(nl, u.dtype)
    dys = np.empty(nl, u.dtype)  # gradient at the scan output, before the gate
    he = np.empty((chunk, nn), u.dtype)  # exp(dt A) h_{t-1} of each step of the block
    ea = np.empty((chunk, nn), u.dtype)  # exp(dt A) of each step of the block
    h = np.empty(nn, u.dtype)
    g = np.empty(nn, u.dtype)  # d loss / d h, carried backwards
    dacc = np.empty(nn, u.dtype)
    for di in range(r0, r1):
        ur, a, dur, ddr, dyr = u[bi, di], A[di], du[bi, di], ddelta[bi, di], dy[bi, di]
        _prep_delta(delta[bi, di], bias[di] if has_bias else F(0.0), softplus, dt, sig)
        dskip = D[di] if has_d else F(0.0)
        if has_z:  # y = ypre * silu(z)
            zr, dzr, yp = z[bi, di], dz[bi, di], ypre[bi, di]
            for t in range(nl):
                s = F(1.0) / (F(1.0) + _exp(-zr[t]))
                dys[t] = dyr[t] * zr[t] * s
                dzr[t] = dyr[t] * yp[t] * s * (F(1.0) + zr[t] * (F(1.0) - s))
        else:
            for t in range(nl):
                dys[t] = dyr[t]
        for k in range(nn):
            g[k] = dhlast[bi, di, k] if has_dh else F(0.0)
            dacc[k] = F(0.0)
        dskip_acc = F(0.0)
        bias_acc = F(0.0)
        for cc in range((nl + chunk - 1) // chunk):
            t0 = ((nl + chunk - 1) // chunk - 1 - cc) * chunk  # blocks from the last one
            nt = min(chunk, nl - t0)
            for k in range(nn):
                h[k] = hck[bi, di, t0 // chunk, k]
            for i in range(nt):  # recompute the block's states; dC needs only h_t
                t = t0 + i
                dtt, dyt = dt[t], dys[t]
                x = dtt * ur[t]
                for k in range(nn):
                    e = _exp(dtt * a[k])
                    ea[i, k] = e
                    eh = e * h[k]
                    he[i, k] = eh
                    hk = eh + x * Br[t, k]
                    h[k] = hk
                    dCl[t, k] += dyt * hk
            for j in range(nt):  # adjoint recurrence, backwards (i = nt-1 .. 0)
                i = nt - 1 - j
                t = t0 + i
                dtt, ut, dyt = dt[t], ur[t], dys[t]
                x = dtt * ut
                s_b = F(0.0)  # sum_n g B
                s_a = F(0.0)  # sum_n g exp(dt A) h_{t-1} A
                for k in range(nn):
                    gk = g[k] + dyt * Cr[t, k]  # d loss / d h_t
                    dBl[t, k] += gk * x
                    s_b += gk * Br[t, k]
                    w = gk * he[i, k]
                    dacc[k] += w * dtt
                    s_a += w * a[k]
                    g[k] = gk * ea[i, k]  # carried to h_{t-1}
                dur[t] = dyt * dskip + s_b * dtt
                gd = (s_b * ut + s_a) * sig[t]
                ddr[t] = gd
                bias_acc += gd
                dskip_acc += dyt * ut
        for k in range(nn):
            dA_rows[bi, di, k] = dacc[k]
        dD_rows[bi, di] = dskip_acc
        dbias_rows[bi, di] = bias_acc
    dB_out[:, :] = dBl
    dC_out[:, :] = dCl


@njit(parallel=True, **_JIT)
def scan_bwd(u, delta, A, B, C, D, z, bias, softplus, chunk, hck, ypre, dy, dhlast, nparts,
             du, ddelta, dz, dA_rows, dB_parts, dC_parts, dD_rows, dbias_rows):
    """Backward of scan_fwd: recompute each block's states from its checkpoint, then run the adjoint
    recurrence g_t = dy_t C_t + exp(dt_{t+1} A) g_{t+1} backwards through the block.

    Tasks are (batch, group, part): each owns a slice of the group's channels and sums dB, dC for them
    into dB_parts[b, g, part] (l, n) (no write races); the caller sums over parts. Per-row outputs: du,
    ddelta, dz (b, d, l); dA_rows (b, d, n); dD_rows, dbias_rows (b, d) (summed over b by the caller).
    dhlast (b, d, n) or empty: gradient arriving at the last state.
    """
    nb, nd = u.shape[0], u.shape[1]
    ng = B.shape[1]
    dpg = nd // ng
    per_part = (dpg + nparts - 1) // nparts
    for job in prange(nb * ng * nparts):
        bi = job // (ng * nparts)
        gi = (job // nparts) % ng
        p = job % nparts
        r0 = min(gi * dpg + p * per_part, (gi + 1) * dpg)
        r1 = min(r0 + per_part, (gi + 1) * dpg)
        _bwd_rows(u, delta, A, B, C, D, z, bias, softplus, chunk, hck, ypre, dy, dhlast, bi, gi, r0, r1,
                  du, ddelta, dz, dA_rows, dB_parts[bi, gi, p], dC_parts[bi, gi, p], dD_rows, dbias_rows)


def set_threads(n: int) -> None:
    """Use n numba threads (clipped to numba's pool), e.g. torch.get_num_threads()."""
    numba.set_num_threads(max(1, min(int(n), numba.config.NUMBA_NUM_THREADS)))
