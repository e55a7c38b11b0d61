"""The parallel numba kernels: the plain selective scan and the fused cross-scan + scan + cross-merge.

Both walk the sequence in tiles of ``chunk`` steps and run block.py's loops on each, with math.py's float32
helpers, so both give the same numbers for the same scan. A plain-scan tile is a transposed slice of the (b, d, l)
inputs; a fused tile gathers the positions one cross-scan direction visits (channels-last rows, no permuted copy).
Tasks (``prange``) never write the same memory: a plain-scan task owns a (batch, group, channel block) and a fused
forward task a (batch, channel block) across all directions; backward tasks own a (batch, group, part of the
group's channels) or a (batch, direction) and sum dB, dC into their own slice, which the caller sums. The forwards
save the state before every tile (checkpoints) when asked; the backwards go through the tiles from the last,
recomputing each from its checkpoint. Compiled on first use per dtype (a few seconds each) and cached on disk.

Shape letters: b batch, d channels (plain scan), g groups of B/C, e channels (fused op), k directions, l length
(= h*w positions for the fused op), n state size, r dt rank, c checkpoints = ceil(l / chunk), T = chunk, nv lanes
(channels of a block), p parts.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .block import bwd_tile, fwd_tile, tile_dt
from .math import JIT, LOG2E, sigmoid, unpack


@njit(**JIT)
def _load_T(src, c0, t0, nt, out):
    """out[i, c] = src[c0 + c, t0 + i] for i < nt: a tile of a (channels, length) matrix, step-major. (Rows of out
    in the outer loop: writing them whole is 2-3x faster than reading src's rows whole.)"""
    for i in range(nt):
        for c in range(out.shape[1]):
            out[i, c] = src[c0 + c, t0 + i]


@njit(**JIT)
def _a_block(A, c0, w, transpose, scale, out):
    """out (n, w) = A's channels c0..c0+w-1, times scale; A is (d, n) (transpose) or (n, e)."""
    for n in range(out.shape[0]):
        for c in range(w):
            out[n, c] = (A[c0 + c, n] if transpose else A[n, c0 + c]) * scale


@njit(parallel=True, **JIT)
def scan_fwd(u, delta, A, B, C, D, z, bias, do_softplus, nv, chunk, y, hlast, hck, ypre, coef):
    """Plain selective scan into y (b, d, l) and hlast (b, d, n).

    u, delta (b, d, l); A (d, n); B, C (b, g, l, n), time-major; D, bias (d,) (zeros when absent); z (b, d, l) or
    empty (0, 0, 0). hck (b, c, n, d) gets the state before every tile (c = 0: nothing saved) and ypre (b, d, l),
    unless empty, the output before the gate (both for the backward). Blocks hold at most nv channels of one group.
    """
    nb, nd, nl = u.shape
    ng, nn = B.shape[1], A.shape[1]
    dpg = nd // ng
    nblk = (dpg + nv - 1) // nv
    save, save_pre, has_z = hck.shape[1] > 0, ypre.shape[0] > 0, z.shape[0] > 0
    cf = unpack(coef)
    nosig = np.empty((0, 0), u.dtype)
    for job in prange(nb * ng * nblk):
        bi = job // (ng * nblk)
        gi = (job // nblk) % ng
        c0 = gi * dpg + (job % nblk) * nv
        w = min(nv, (gi + 1) * dpg - c0)
        a2 = np.empty((nn, w), u.dtype)
        _a_block(A, c0, w, True, u.dtype.type(LOG2E), a2)
        h = np.zeros((nn, w), u.dtype)
        ub = np.empty((chunk, w), u.dtype)
        raw = np.empty((chunk, w), u.dtype)
        dtb = np.empty((chunk, w), u.dtype)
        yt = np.empty((chunk, w), u.dtype)
        rows = np.arange(chunk)
        for ci in range((nl + chunk - 1) // chunk):
            t0 = ci * chunk
            nt = min(chunk, nl - t0)
            if save:
                for n in range(nn):
                    for c in range(w):
                        hck[bi, ci, n, c0 + c] = h[n, c]
            _load_T(u[bi], c0, t0, nt, ub)
            _load_T(delta[bi], c0, t0, nt, raw)
            tile_dt(nt, raw, bias[c0:c0 + w], do_softplus, dtb, nosig, cf)
            yt[:] = 0.0
            fwd_tile(nt, rows, ub, dtb, B[bi, gi, t0:t0 + nt], C[bi, gi, t0:t0 + nt], a2, h, yt, cf)
            for i in range(nt):  # (step-major, like _load_T)
                for c in range(w):
                    v = yt[i, c] + D[c0 + c] * ub[i, c]
                    if save_pre:
                        ypre[bi, c0 + c, t0 + i] = v
                    if has_z:
                        zt = z[bi, c0 + c, t0 + i]
                        v = v * zt * sigmoid(zt, cf)
                    y[bi, c0 + c, t0 + i] = v
        for c in range(w):
            for n in range(nn):
                hlast[bi, c0 + c, n] = h[n, c]


@njit(**JIT)
def _bwd_buffers(A, c0, w, transpose, chunk):
    """A backward block's arrays: nine (chunk, w) tiles, ea and he (chunk, n, w), four (chunk, n) tiles; the block's A
    and A log2(e) (n, w) (A is (d, n) when transpose, else (n, e)); the state h, its gradient g and dA's accumulator
    (n, w), and dbias's (w,) (the last three zero)."""
    nn, dtype = A.shape[1] if transpose else A.shape[0], A.dtype
    t9 = [np.empty((chunk, w), dtype) for _ in range(9)]
    t4 = [np.empty((chunk, nn), dtype) for _ in range(4)]
    a, a2 = np.empty((nn, w), dtype), np.empty((nn, w), dtype)
    _a_block(A, c0, w, transpose, dtype.type(1.0), a)
    _a_block(A, c0, w, transpose, dtype.type(LOG2E), a2)
    return (t9[0], t9[1], t9[2], t9[3], t9[4], t9[5], t9[6], t9[7], t9[8], np.empty((chunk, nn, w), dtype),
            np.empty((chunk, nn, w), dtype), t4[0], t4[1], t4[2], t4[3], a, a2, np.empty((nn, w), dtype),
            np.zeros((nn, w), dtype), np.zeros((nn, w), dtype), np.zeros(w, dtype))


@njit(parallel=True, **JIT)
def scan_bwd(u, delta, A, B, C, D, z, bias, do_softplus, nv, chunk, hck, ypre, dy, dhlast, nparts,
             du, ddelta, dz, dA, dB, dC, dD, dbias, coef):
    """Backward of scan_fwd.

    Inputs as scan_fwd, hck and ypre from it, dy (b, d, l), dhlast (b, d, n) or empty (0, 0, 0): the gradient at the
    last state. Writes du, ddelta, dz (b, d, l), dA (b, n, d), dD and dbias (b, d) (the caller sums over b); adds
    into dB, dC (b, g, p, l, n), zero-filled by the caller, which sums over parts.
    """
    nb, nd, nl = u.shape
    ng, nn = B.shape[1], A.shape[1]
    dpg = nd // ng
    per_part = (dpg + nparts - 1) // nparts
    has_z, has_dh = z.shape[0] > 0, dhlast.shape[0] > 0
    cf = unpack(coef)
    F = u.dtype.type
    for job in prange(nb * ng * nparts):
        bi = job // (ng * nparts)
        gi = (job // nparts) % ng
        part = job % nparts
        r1 = min((gi + 1) * dpg, gi * dpg + (part + 1) * per_part)
        for c0 in range(gi * dpg + part * per_part, r1, nv):
            w = min(nv, r1 - c0)
            buffers = _bwd_buffers(A, c0, w, True, chunk)
            ub, raw, dtb, sgb, dyb, dub, ddb, xb, zt, ea, he, _, _, dBt, dCt, a, a2, h, g, dacc, bias_acc = buffers
            if has_dh:
                for n in range(nn):
                    for c in range(w):
                        g[n, c] = dhlast[bi, c0 + c, n]
            d_acc = np.zeros(w, u.dtype)
            nck = (nl + chunk - 1) // chunk
            for cc in range(nck):
                ci = nck - 1 - cc  # tiles from the last one
                t0 = ci * chunk
                nt = min(chunk, nl - t0)
                _load_T(u[bi], c0, t0, nt, ub)
                _load_T(delta[bi], c0, t0, nt, raw)
                _load_T(dy[bi], c0, t0, nt, dyb)
                tile_dt(nt, raw, bias[c0:c0 + w], do_softplus, dtb, sgb, cf)
                if has_z:  # y = ypre * silu(z): dyb becomes the gradient before the gate
                    _load_T(z[bi], c0, t0, nt, zt)
                    for i in range(nt):
                        for c in range(w):
                            s = sigmoid(zt[i, c], cf)
                            dz[bi, c0 + c, t0 + i] = dyb[i, c] * ypre[bi, c0 + c, t0 + i] * s * (F(1.0) + zt[i, c] * (
                                F(1.0) - s))
                            dyb[i, c] = dyb[i, c] * zt[i, c] * s
                for n in range(nn):
                    for c in range(w):
                        h[n, c] = hck[bi, ci, n, c0 + c]
                bwd_tile(nt, ub, dtb, sgb, dyb, a, a2, B[bi, gi, t0:t0 + nt], C[bi, gi, t0:t0 + nt], h, g, ea, he, xb,
                         dub, ddb, dacc, bias_acc, dBt, dCt, cf)
                for i in range(nt):
                    for n in range(nn):
                        dB[bi, gi, part, t0 + i, n] += dBt[i, n]
                        dC[bi, gi, part, t0 + i, n] += dCt[i, n]
                for i in range(nt):
                    for c in range(w):
                        du[bi, c0 + c, t0 + i] = dub[i, c] + dyb[i, c] * D[c0 + c]
                        ddelta[bi, c0 + c, t0 + i] = ddb[i, c]
                        d_acc[c] += dyb[i, c] * ub[i, c]
            for c in range(w):
                for n in range(nn):
                    dA[bi, n, c0 + c] = dacc[n, c]
                dbias[bi, c0 + c] = bias_acc[c]
                dD[bi, c0 + c] = d_acc[c]


@njit(**JIT)
def _gather(u, delta, dts, wt, B, C, order, t0, nt, c0, ub, raw, Bt, Ct):
    """A fused tile: rows i < nt of ub, raw (T, nv) and Bt, Ct (T, n) at the positions order[t0 + i] visits (ub, Bt,
    Ct only when they have rows). The step sizes before bias are delta's, or, when wt (r, nv) is not empty, the
    low-rank dts @ wt."""
    nv, nr = raw.shape[1], wt.shape[0]
    for i in range(nt):
        p = order[t0 + i]
        if ub.shape[0]:
            for c in range(nv):
                ub[i, c] = u[p, c0 + c]
        if nr:
            for c in range(nv):
                raw[i, c] = 0.0
            for j in range(nr):
                s = dts[p, j]
                for c in range(nv):
                    raw[i, c] += s * wt[j, c]
        else:
            for c in range(nv):
                raw[i, c] = delta[p, c0 + c]
        for n in range(Bt.shape[1] if Bt.shape[0] else 0):
            Bt[i, n] = B[p, n]
            Ct[i, n] = C[p, n]


@njit(parallel=True, **JIT)
def xscan_fwd(u, delta, dts, wdt, A, B, C, bias, dskip, order, do_softplus, chunk, nv, y, hck, coef):
    """Sum over directions of the selective scans plus u * dskip, in spatial order, into y (b, l, e).

    u (b, l, e); step sizes before bias/softplus: delta (k, b, l, e), or, when wdt (k, r, e) is not empty,
    dts (b, l, k, r) @ wdt (then delta may be empty, (k, b, 0, 0)); A (k, n, e); B, C (b, k, l, n) spatial
    order; bias (k, e); dskip (e,) (the D skip summed over directions; zeros when the caller adds it);
    order (k, l) int64; hck (b, k, c, n, e) (c = 0: nothing saved). A task copies its block of u once and sums the
    directions in a block of its own, both (l, nv) and read by position.
    """
    nb, nl, ne = u.shape
    nk, nn, nr = A.shape[0], A.shape[1], wdt.shape[1]
    nblk = (ne + nv - 1) // nv
    save = hck.shape[2] > 0
    cf = unpack(coef)
    nosig = np.empty((0, 0), u.dtype)
    for job in prange(nb * nblk):
        bi = job // nblk
        c0 = (job - bi * nblk) * nv
        w = min(nv, ne - c0)
        ub = np.empty((nl, w), u.dtype)
        yo = np.zeros((nl, w), u.dtype)
        for p in range(nl):
            for c in range(w):
                ub[p, c] = u[bi, p, c0 + c]
        a2 = np.empty((nn, w), u.dtype)
        wt = np.empty((nr, w), u.dtype)
        h = np.empty((nn, w), u.dtype)
        raw = np.empty((chunk, w), u.dtype)
        dtb = np.empty((chunk, w), u.dtype)
        for k in range(nk):
            _a_block(A[k], c0, w, False, u.dtype.type(LOG2E), a2)
            _a_block(wdt[k], c0, w, False, u.dtype.type(1.0), wt)
            h[:] = 0.0
            for ci in range((nl + chunk - 1) // chunk):
                t0 = ci * chunk
                nt = min(chunk, nl - t0)
                if save:
                    for n in range(nn):
                        for c in range(w):
                            hck[bi, k, ci, n, c0 + c] = h[n, c]
                _gather(u[bi], delta[k, bi], dts[bi, :, k, :], wt, B[bi, k], C[bi, k], order[k], t0, nt, c0, nosig,
                        raw, nosig, nosig)
                tile_dt(nt, raw, bias[k, c0:c0 + w], do_softplus, dtb, nosig, cf)
                fwd_tile(nt, order[k, t0:t0 + nt], ub, dtb, B[bi, k], C[bi, k], a2, h, yo, cf)
        for p in range(nl):
            for c in range(w):
                y[bi, p, c0 + c] = yo[p, c] + ub[p, c] * dskip[c0 + c]


@njit(parallel=True, **JIT)
def xscan_bwd(u, delta, A, B, C, bias, order, do_softplus, chunk, nv, hck, dy, du, ddelta, dA, dbias, dB, dC, coef):
    """Backward of xscan_fwd (without its D skip, which the caller adds in torch).

    Inputs as xscan_fwd, hck (b, k, c, n, e) from it, dy (b, l, e). Writes du, ddelta (k, b, l, e) (du summed over k
    by the caller), dA (b, k, n, e) and dbias (b, k, e) (summed over b by the caller); adds into dB, dC (b, k, l, n),
    zero-filled by the caller.
    """
    nb, nl, ne = u.shape
    nk, nn = A.shape[0], A.shape[1]
    cf = unpack(coef)
    none = np.empty((0, 0), u.dtype)
    for job in prange(nb * nk):
        bi = job // nk
        k = job - bi * nk
        nck = (nl + chunk - 1) // chunk
        for c0 in range(0, ne, nv):
            w = min(nv, ne - c0)
            buffers = _bwd_buffers(A[k], c0, w, False, chunk)
            ub, raw, dtb, sgb, dyb, dub, ddb, xb, _, ea, he, Bt, Ct, dBt, dCt, a, a2, h, g, dacc, bias_acc = buffers
            for cc in range(nck):
                ci = nck - 1 - cc  # tiles from the last one
                t0 = ci * chunk
                nt = min(chunk, nl - t0)
                _gather(u[bi], delta[k, bi], none, none, B[bi, k], C[bi, k], order[k], t0, nt, c0, ub, raw, Bt, Ct)
                for i in range(nt):
                    p = order[k, t0 + i]
                    for c in range(w):
                        dyb[i, c] = dy[bi, p, c0 + c]
                tile_dt(nt, raw, bias[k, c0:c0 + w], do_softplus, dtb, sgb, cf)
                for n in range(nn):
                    for c in range(w):
                        h[n, c] = hck[bi, k, ci, n, c0 + c]
                bwd_tile(nt, ub, dtb, sgb, dyb, a, a2, Bt, Ct, h, g, ea, he, xb, dub, ddb, dacc, bias_acc, dBt, dCt, cf)
                for i in range(nt):
                    p = order[k, t0 + i]
                    for c in range(w):
                        du[k, bi, p, c0 + c] = dub[i, c]
                        ddelta[k, bi, p, c0 + c] = ddb[i, c]
                    for n in range(nn):
                        dB[bi, k, p, n] += dBt[i, n]
                        dC[bi, k, p, n] += dCt[i, n]
            for n in range(nn):
                for c in range(w):
                    dA[bi, k, n, c0 + c] = dacc[n, c]
            for c in range(w):
                dbias[bi, k, c0 + c] = bias_acc[c]


def set_threads(n: int) -> None:
    """Use n numba threads (clipped to numba's pool), e.g. torch.get_num_threads()."""
    import numba

    numba.set_num_threads(max(1, min(int(n), numba.config.NUMBA_NUM_THREADS)))
