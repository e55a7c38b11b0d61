"""Numba CPU kernels for the fused cross-scan + selective scan + cross-merge of an OSSM layer.

Everything stays in spatial (row-major) order and channels-last: direction k reads position order[k, t] at
step t, so no permuted copy of the inputs or the outputs is ever made. Unlike scan_kernels.py (one
channel row per task, the state size n in the vectorised inner loop, a horizontal sum per step), the
inner loop here runs over a block of channels that share the step's B and C: the state is (n, channels),
the sums over n are vertical adds, and the vectorised loop has no horizontal reduction.

- ``xscan_fwd``: one task per (batch, channel block) runs the k directions one after another and sums
  them into y, so no two tasks write the same output. With a non-empty ``hck`` it also saves the state
  before every ``chunk``-th step (for the backward). It can form the step sizes itself from Mamba's
  low-rank dt_proj factors (8 multiply-adds per channel and step), so inference never writes the
  (k, b, l, e) step-size tensor and reads it back (13 MB at P3 of fer-yolo-mamba-s, imgsz 320).
- ``xscan_bwd``: one task per (batch, direction); it owns dB, dC of its direction and writes its own
  slice of du and ddelta (summed over directions by the caller). It recomputes each block of ``chunk``
  steps from its checkpoint, then runs the adjoint recurrence g_t = C_t dy_t + exp(dt_{t+1} A) g_{t+1}
  backwards through the block.

Channel blocks have ``nv`` channels; the inner loops take their trip count from an array shape, so LLVM
vectorises them instead of unrolling them into scalar code. exp(dt A) is _pow2(dt A log2 e) with A scaled
once per block, and the float32 constants of _pow2 and _softplus come in as run-time arguments: numba's
code model re-broadcasts literal constants from memory at every vectorised iteration, and with them kept in
registers the state update is 25 instructions per 8 lanes instead of 33 (about 30% faster). Compiled on
first use per dtype and cached.

Shape letters: b batch, k directions, l = h*w positions, e channels (d_inner), n state size,
c checkpoints = ceil(l / chunk).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .scan_kernels import _LOG2E, _exp, _pow2, _softplus
from .scan_kernels import pow2_coefficients, softplus_coefficients  # noqa: F401 (the callers pass them in)

_JIT = dict(fastmath=True, cache=True, nogil=True, error_model="numpy")


@njit(**_JIT)
def _step_delta(delta_row, bias, softplus, dt, sig, cf, sc):
    """dt[c] = softplus(delta + bias) (or delta + bias) for one position of a channel block (delta_row, bias
    sliced to the block); sig = d dt / d delta when sig is non-empty. softplus is _softplus, the forward's, for
    every x (no switch to x above 20 as in torch: there the two differ by < 2e-9 relative), so the loop has no
    branch and vectorises."""
    F = dt.dtype.type
    nv = dt.shape[0]
    if softplus:
        for c in range(nv):
            dt[c] = _softplus(delta_row[c] + bias[c], cf, sc)
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
def _constants(pw, ps):
    """pow2_coefficients and softplus_coefficients arrays as the tuples _pow2 and _softplus take."""
    return (pw[0], pw[1], pw[2], pw[3], pw[4], pw[5], pw[6], pw[7]), (ps[0], ps[1], ps[2], ps[3], ps[4], ps[5], ps[6],
                                                                      ps[7], ps[8], ps[9])


@njit(**_JIT)
def _columns(src, c0, out):
    """out (rows, w) = src[:, c0:c0 + w]: a channel block copied into a small contiguous buffer."""
    for p in range(out.shape[0]):
        for c in range(out.shape[1]):
            out[p, c] = src[p, c0 + c]


@njit(**_JIT)
def _block_delta(delta, bias, c0, softplus, dtb, sgb, cf, sc):
    """dtb (l, nv) = softplus(delta + bias) (or delta + bias) at channels c0.. of every position, in spatial
    order, and sgb = d dtb / d delta when sgb is non-empty. Copying the block's columns into a small
    contiguous buffer keeps the scan's scattered reads in L2."""
    nv = dtb.shape[1]
    bias_b = bias[c0:c0 + nv]
    for p in range(dtb.shape[0]):
        _step_delta(delta[p, c0:c0 + nv], bias_b, softplus, dtb[p], sgb[p] if sgb.shape[0] else sgb[0:0, 0], cf, sc)


@njit(**_JIT)
def _fwd_block(ub, delta, dts, wt, bias, softplus, a2, B, C, order, save, chunk, hck, c0, yo, cf, sc):
    """One direction over one channel block, adding its output to yo (l, nv) (spatial order).

    ub (l, nv) u of the block, spatial order. The step sizes come from delta (l, e), or, when wt (r, nv) is not
    empty, from the low-rank product dts (l, r) @ wt, formed here a step at a time (never stored); bias (nv,)
    the block's. a2 (n, nv) = A log2(e); B, C (l, n) spatial; order (l,); hck (c, n, e) written when save;
    cf, sc the _pow2 and _softplus constants (tuples). Scratch arrays are allocated here so LLVM knows they
    alias nothing."""
    nl, nn, nv, nr = ub.shape[0], a2.shape[0], yo.shape[1], wt.shape[0]
    F = ub.dtype.type
    h = np.zeros((nn, nv), ub.dtype)
    raw = np.empty(nv, ub.dtype)
    dt = np.empty(nv, ub.dtype)
    x = np.empty(nv, ub.dtype)
    acc = np.empty(nv, ub.dtype)
    for t in range(nl):
        if save and t % chunk == 0:
            ci = t // chunk
            for n in range(nn):
                for c in range(nv):
                    hck[ci, n, c0 + c] = h[n, c]
        p = order[t]
        if nr:
            for c in range(nv):
                raw[c] = F(0.0)
            for j in range(nr):
                s = dts[p, j]
                for c in range(nv):
                    raw[c] += s * wt[j, c]
        else:
            for c in range(nv):
                raw[c] = delta[p, c0 + c]
        if softplus:
            for c in range(nv):
                dt[c] = _softplus(raw[c] + bias[c], cf, sc)
        else:
            for c in range(nv):
                dt[c] = raw[c] + bias[c]
        for c in range(nv):
            x[c] = dt[c] * ub[p, c]
            acc[c] = F(0.0)
        for n in range(nn):
            bn = B[p, n]
            cn = C[p, n]
            for c in range(nv):
                hv = _pow2(dt[c] * a2[n, c], cf) * h[n, c] + x[c] * bn
                h[n, c] = hv
                acc[c] += hv * cn
        for c in range(nv):
            yo[p, c] += acc[c]


@njit(parallel=True, **_JIT)
def xscan_fwd(u, delta, dts, wdt, A, B, C, bias, dskip, order, softplus, chunk, nv, y, hck, pw, ps):
    """Sum over directions of the selective scans plus u * dskip, in spatial order, into y (b, l, e).

    u (b, l, e); step sizes before bias/softplus: delta (k, b, l, e), or, when wdt (k, r, e) is not empty,
    dts (b, l, k, r) @ wdt (then delta may be empty, (k, b, 0, 0)); A (k, n, e); B, C (b, k, l, n) spatial
    order; bias (k, e); dskip (e,) (the D skip summed over directions; zeros when the caller adds it);
    order (k, l) int64; hck (b, k, c, n, e) or empty (0, 0, 0, 0, 0); pw, ps pow2_coefficients(u.dtype),
    softplus_coefficients(u.dtype).
    """
    nb, nl, ne = u.shape
    nk, nn, nr = A.shape[0], A.shape[1], wdt.shape[1]
    nblk = (ne + nv - 1) // nv
    save = hck.shape[0] > 0
    none = np.empty((0, 0, 0), u.dtype)
    log2e = u.dtype.type(_LOG2E)
    cf, sc = _constants(pw, ps)
    for job in prange(nb * nblk):
        bi = job // nblk
        c0 = (job - bi * nblk) * nv
        w = min(nv, ne - c0)
        yo = np.zeros((nl, w), u.dtype)
        ub = np.empty((nl, w), u.dtype)
        a2 = np.empty((nn, w), u.dtype)
        wt = np.empty((nr, w), u.dtype)
        _columns(u[bi], c0, ub)
        for k in range(nk):
            _columns(A[k], c0, a2)
            for n in range(nn):
                for c in range(w):
                    a2[n, c] *= log2e
            _columns(wdt[k], c0, wt)
            _fwd_block(ub, delta[k, bi], dts[bi, :, k, :], wt, bias[k, c0:c0 + w], softplus, a2, B[bi, k], C[bi, k],
                       order[k], save, chunk, hck[bi, k] if save else none, c0, yo, cf, sc)
        for t in range(nl):
            for c in range(w):
                y[bi, t, c0 + c] = yo[t, c] + ub[t, c] * dskip[c0 + c]


@njit(**_JIT)
def _bwd_block(ub, dtb, sgb, dyb, a, a2, B, C, order, chunk, hck, c0, dub, ddb, dA, dbias, dB, dC, cf):
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
                    e = _pow2(dt[c] * a2[n, c], cf)  # as in the forward
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
def xscan_bwd(u, delta, A, B, C, bias, order, softplus, chunk, nv, hck, dy, du, ddelta, dA, dbias, dB, dC, pw, ps):
    """Backward of xscan_fwd (without its D skip, which the caller adds in torch).

    Inputs as xscan_fwd, hck (b, k, c, n, e) from it, dy (b, l, e). Outputs: du, ddelta (k, b, l, e), written
    whole (du summed over k by the caller); zero-filled by the caller and added into: dA (b, k, n, e), dbias
    (b, k, e) (summed over b by the caller), dB, dC (b, k, l, n).
    """
    nb, nl, ne = u.shape
    nk, nn = A.shape[0], A.shape[1]
    log2e = u.dtype.type(_LOG2E)
    cf, sc = _constants(pw, ps)
    for job in prange(nb * nk):
        bi = job // nk
        k = job - bi * nk
        for c0 in range(0, ne, nv):
            w = min(nv, ne - c0)
            a = np.empty((nn, w), u.dtype)
            a2 = np.empty((nn, w), u.dtype)
            ub = np.empty((nl, w), u.dtype)
            dyb = np.empty((nl, w), u.dtype)
            dtb = np.empty((nl, w), u.dtype)
            sgb = np.empty((nl, w), u.dtype)
            dub = np.empty((nl, w), u.dtype)
            ddb = np.empty((nl, w), u.dtype)
            _columns(A[k], c0, a)
            for n in range(nn):
                for c in range(w):
                    a2[n, c] = a[n, c] * log2e
            _columns(u[bi], c0, ub)
            _columns(dy[bi], c0, dyb)
            _block_delta(delta[k, bi], bias[k], c0, softplus, dtb, sgb, cf, sc)
            _bwd_block(ub, dtb, sgb, dyb, a, a2, B[bi, k], C[bi, k], order[k], chunk, hck[bi, k], c0, dub, ddb,
                       dA[bi, k], dbias[bi, k], dB[bi, k], dC[bi, k], cf)
            for p in range(nl):
                for c in range(w):
                    du[k, bi, p, c0 + c] = dub[p, c]
                    ddelta[k, bi, p, c0 + c] = ddb[p, c]
