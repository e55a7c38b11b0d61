"""Numba CPU kernels for the fused cross-scan + selective scan + cross-merge of an OSSM layer.

Everything stays in spatial (row-major) order and channels-last: direction k reads position order[k, t] at
step t, so no permuted copy of the inputs or the outputs is ever made. Unlike scan_kernels.py (one
channel row per task, the state size n in the vectorised inner loop, a horizontal sum per step), the
inner loop here runs over a block of channels that share the step's B and C: the state is (n, channels),
the sums over n are vertical adds, and the vectorised loop has no horizontal reduction.

- ``xscan_fwd``: one task per (batch, channel block) runs the k directions one after another and sums
  them into y, so no two tasks write the same output. With a non-empty ``hck`` it also saves the state
  before every ``chunk``-th step (for the backward).
- ``xscan_bwd``: one task per (batch, direction); it owns dB, dC of its direction and writes its own
  slice of du and ddelta (summed over directions by the caller). It recomputes each block of ``chunk``
  steps from its checkpoint, then runs the adjoint recurrence g_t = C_t dy_t + exp(dt_{t+1} A) g_{t+1}
  backwards through the block.

Channel blocks have ``nv`` channels; the inner loops take their trip count from an array shape, so LLVM
vectorises them instead of unrolling them into scalar code. Compiled on first use per dtype and cached.

Shape letters: b batch, k directions, l = h*w positions, e channels (d_inner), n state size,
c checkpoints = ceil(l / chunk).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .scan_kernels import _exp, _log1p

_JIT = dict(fastmath=True, cache=True, nogil=True, error_model="numpy")


@njit(**_JIT)
def _step_delta(delta_row, bias, softplus, dt, sig):
    """dt[c] = softplus(delta + bias) (or delta + bias) for one position of a channel block (delta_row, bias
    sliced to the block); sig = d dt / d delta when sig is non-empty. softplus is max(x, 0) + log1p(exp(-|x|))
    for every x, without torch's switch to x above 20 (there the two differ by < 2e-9 relative), so the loop
    has no branch and vectorises."""
    F = dt.dtype.type
    nv = dt.shape[0]
    if softplus:
        for c in range(nv):
            x = delta_row[c] + bias[c]
            dt[c] = max(x, F(0.0)) + _log1p(_exp(-abs(x)))
        if sig.shape[0]:
            for c in range(nv):
                sig[c] = F(1.0) / (F(1.0) + _exp(-(delta_row[c] + bias[c])))
    else:
        for c in range(nv):
            dt[c] = delta_row[c] + bias[c]
        if sig.shape[0]:
            for c in range(nv):
                sig[c] = F(1.0)


@njit(**_JIT)
def _columns(src, c0, out):
    """out (rows, w) = src[:, c0:c0 + w]: a channel block copied into a small contiguous buffer."""
    for p in range(out.shape[0]):
        for c in range(out.shape[1]):
            out[p, c] = src[p, c0 + c]


@njit(**_JIT)
def _block_delta(delta, bias, c0, softplus, dtb, sgb):
    """dtb (l, nv) = softplus(delta + bias) (or delta + bias) at channels c0.. of every position, in spatial
    order, and sgb = d dtb / d delta when sgb is non-empty. Copying the block's columns into a small
    contiguous buffer keeps the scan's scattered reads in L2."""
    nv = dtb.shape[1]
    bias_b = bias[c0:c0 + nv]
    for p in range(dtb.shape[0]):
        _step_delta(delta[p, c0:c0 + nv], bias_b, softplus, dtb[p], sgb[p] if sgb.shape[0] else sgb[0:0, 0])


@njit(**_JIT)
def _fwd_block(ub, dtb, a, B, C, order, save, chunk, hck, c0, yo):
    """One direction over one channel block, adding its output to yo (l, nv) (spatial order).

    ub (l, nv) u and dtb (l, nv) step sizes of the block, spatial order; a (n, nv); B, C (l, n) spatial;
    order (l,); hck (c, n, e) written when save. Scratch arrays are allocated here so LLVM knows they
    alias nothing."""
    nl, nn, nv = ub.shape[0], a.shape[0], yo.shape[1]
    F = ub.dtype.type
    h = np.zeros((nn, nv), ub.dtype)
    x = np.empty(nv, ub.dtype)
    acc = np.empty(nv, ub.dtype)
    for t in range(nl):
        if save and t % chunk == 0:
            ci = t // chunk
            for n in range(nn):
                for c in range(nv):
                    hck[ci, n, c0 + c] = h[n, c]
        p = order[t]
        dt = dtb[p]
        for c in range(nv):
            x[c] = dt[c] * ub[p, c]
            acc[c] = F(0.0)
        for n in range(nn):
            bn = B[p, n]
            cn = C[p, n]
            for c in range(nv):
                hv = _exp(dt[c] * a[n, c]) * h[n, c] + x[c] * bn
                h[n, c] = hv
                acc[c] += hv * cn
        for c in range(nv):
            yo[p, c] += acc[c]


@njit(parallel=True, **_JIT)
def xscan_fwd(u, delta, A, B, C, bias, order, softplus, chunk, nv, y, hck):
    """Sum over directions of the selective scans, in spatial order, into y (b, l, e).

    u (b, l, e); delta (k, b, l, e) before bias/softplus; A (k, n, e); B, C (b, k, l, n) spatial order;
    bias (k, e); order (k, l) int64; hck (b, k, c, n, e) or empty (0, 0, 0, 0, 0).
    """
    nb, nl, ne = u.shape
    nk, nn = A.shape[0], A.shape[1]
    nblk = (ne + nv - 1) // nv
    save = hck.shape[0] > 0
    none = np.empty((0, 0, 0), u.dtype)
    nosg = np.empty((0, 0), u.dtype)
    for job in prange(nb * nblk):
        bi = job // nblk
        c0 = (job - bi * nblk) * nv
        w = min(nv, ne - c0)
        yo = np.zeros((nl, w), u.dtype)
        ub = np.empty((nl, w), u.dtype)
        dtb = np.empty((nl, w), u.dtype)
        a = np.empty((nn, w), u.dtype)
        _columns(u[bi], c0, ub)
        for k in range(nk):
            _columns(A[k], c0, a)
            _block_delta(delta[k, bi], bias[k], c0, softplus, dtb, nosg)
            _fwd_block(ub, dtb, a, B[bi, k], C[bi, k], order[k], save, chunk, hck[bi, k] if save else none, c0, yo)
        for t in range(nl):
            for c in range(w):
                y[bi, t, c0 + c] = yo[t, c]


@njit(**_JIT)
def _bwd_block(ub, dtb, sgb, dyb, a, B, C, order, chunk, hck, c0, dub, ddb, dA, dbias, dB, dC):
    """Backward of one direction over one channel block (nv = a.shape[1] channels from c0).

    ub, dtb, sgb (d dt / d delta), dyb (l, nv): the block's u, step sizes and output gradient, spatial order;
    B, C (l, n); hck (c, n, e). Writes dub, ddb (l, nv) (du and ddelta of the block), adds into dA (n, e),
    dbias (e,) at the block's channels, and into dB, dC (l, n)."""
    nl, nn, nv = ub.shape[0], a.shape[0], a.shape[1]
    F = ub.dtype.type
    h = np.empty((nn, nv), ub.dtype)
    g = np.zeros((nn, nv), ub.dtype)  # d loss / d h, carried backwards
    dacc = np.zeros((nn, nv), ub.dtype)
    ea = np.empty((chunk, nn, nv), ub.dtype)  # exp(dt A) of each step of the block
    he = np.empty((chunk, nn, nv), ub.dtype)  # exp(dt A) h_{t-1}
    xb = np.empty((chunk, nv), ub.dtype)
    sb = np.empty(nv, ub.dtype)
    sa = np.empty(nv, ub.dtype)
    bias_acc = np.zeros(nv, ub.dtype)
    nck = (nl + chunk - 1) // chunk
    for cc in range(nck):
        t0 = (nck - 1 - cc) * chunk  # blocks from the last one
        nt = min(chunk, nl - t0)
        hc = hck[t0 // chunk]
        for n in range(nn):
            hrow = hc[n, c0:c0 + nv]
            for c in range(nv):
                h[n, c] = hrow[c]
        for i in range(nt):  # recompute the block's states; dC needs h_t
            p = order[t0 + i]
            dt, dy = dtb[p], dyb[p]
            for c in range(nv):
                xb[i, c] = dt[c] * ub[p, c]
            for n in range(nn):
                bn = B[p, n]
                s = F(0.0)
                for c in range(nv):
                    e = _exp(dt[c] * a[n, c])
                    ea[i, n, c] = e
                    eh = e * h[n, c]
                    he[i, n, c] = eh
                    hv = eh + xb[i, c] * bn
                    h[n, c] = hv
                    s += dy[c] * hv
                dC[p, n] += s
        for j in range(nt):  # adjoint recurrence, backwards
            i = nt - 1 - j
            p = order[t0 + i]
            dt, dy = dtb[p], dyb[p]
            for c in range(nv):
                sb[c] = F(0.0)  # sum_n g B
                sa[c] = F(0.0)  # sum_n g exp(dt A) h_{t-1} A
            for n in range(nn):
                bn = B[p, n]
                cn = C[p, n]
                s = F(0.0)
                for c in range(nv):
                    gk = g[n, c] + dy[c] * cn  # d loss / d h_t
                    s += gk * xb[i, c]
                    sb[c] += gk * bn
                    wv = gk * he[i, n, c]
                    dacc[n, c] += wv * dt[c]
                    sa[c] += wv * a[n, c]
                    g[n, c] = gk * ea[i, n, c]  # carried to h_{t-1}
                dB[p, n] += s
            sg = sgb[p]
            for c in range(nv):
                dub[p, c] = sb[c] * dt[c]
                gd = (sb[c] * ub[p, c] + sa[c]) * sg[c]
                ddb[p, c] = gd
                bias_acc[c] += gd
    for n in range(nn):
        for c in range(nv):
            dA[n, c0 + c] += dacc[n, c]
    for c in range(nv):
        dbias[c0 + c] += bias_acc[c]


@njit(parallel=True, **_JIT)
def xscan_bwd(u, delta, A, B, C, bias, order, softplus, chunk, nv, hck, dy, du, ddelta, dA, dbias, dB, dC):
    """Backward of xscan_fwd (without its D skip, which the caller adds in torch).

    Inputs as xscan_fwd, hck (b, k, c, n, e) from it, dy (b, l, e). Outputs: du, ddelta (k, b, l, e), written
    whole (du summed over k by the caller); zero-filled by the caller and added into: dA (b, k, n, e), dbias
    (b, k, e) (summed over b by the caller), dB, dC (b, k, l, n).
    """
    nb, nl, ne = u.shape
    nk, nn = A.shape[0], A.shape[1]
    for job in prange(nb * nk):
        bi = job // nk
        k = job - bi * nk
        for c0 in range(0, ne, nv):
            w = min(nv, ne - c0)
            a = np.empty((nn, w), u.dtype)
            ub = np.empty((nl, w), u.dtype)
            dyb = np.empty((nl, w), u.dtype)
            dtb = np.empty((nl, w), u.dtype)
            sgb = np.empty((nl, w), u.dtype)
            dub = np.empty((nl, w), u.dtype)
            ddb = np.empty((nl, w), u.dtype)
            _columns(A[k], c0, a)
            _columns(u[bi], c0, ub)
            _columns(dy[bi], c0, dyb)
            _block_delta(delta[k, bi], bias[k], c0, softplus, dtb, sgb)
            _bwd_block(ub, dtb, sgb, dyb, a, B[bi, k], C[bi, k], order[k], chunk, hck[bi, k], c0, dub, ddb, dA[bi, k],
                       dbias[bi, k], dB[bi, k], dC[bi, k])
            for p in range(nl):
                for c in range(w):
                    du[k, bi, p, c0 + c] = dub[p, c]
                    ddelta[k, bi, p, c0 + c] = ddb[p, c]
