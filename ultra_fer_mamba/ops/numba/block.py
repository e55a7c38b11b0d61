"""The scan of one tile, forward and backward: the loops every numba scan kernel runs.

A tile is up to ``chunk`` consecutive steps of the scan over a block of ``nv`` channels that share each step's B and
C (channels of one B/C group). Its inputs come in as step-major buffers: a plain scan's kernel transposes a slice of
the inputs into them (row i = step t0 + i); the fused op's reads the rows of channels-last buffers at the positions
a cross-scan direction visits (row order[t0 + i]), so one set of loops serves both. The state is (n, nv): the
vectorised inner loops run over the channels, the sums over n are vertical adds, and no step needs a horizontal
reduction.

Forward: h_t = exp(dt_t A) h_{t-1} + dt_t u_t B_t, y_t = C_t . h_t, with exp(dt A) = pow2(dt A log2 e). Backward of
a tile: recompute its states from the state before it (the forward's checkpoint), then run the adjoint recurrence
g_t = C_t dy_t + exp(dt_{t+1} A) g_{t+1} backwards through it.

Shape letters: T tile steps (rows of the buffers, >= nt used), n state size, nv channels of the block.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .math import JIT, pow2, sigmoid, softplus


@njit(**JIT)
def tile_dt(nt, raw, bias, do_softplus, dtb, sgb, cf):
    """dtb (T, nv) = softplus(raw + bias) (or raw + bias), and, when sgb has rows, sgb = d dtb / d raw."""
    F = dtb.dtype.type
    nv = raw.shape[1]
    for i in range(nt):
        for c in range(nv):
            dtb[i, c] = softplus(raw[i, c] + bias[c], cf) if do_softplus else raw[i, c] + bias[c]
    if sgb.shape[0]:
        for i in range(nt):
            for c in range(nv):
                sgb[i, c] = sigmoid(raw[i, c] + bias[c], cf) if do_softplus else F(1.0)


@njit(**JIT)
def fwd_tile(nt, rows, ub, dtb, B, C, a2, h, yo, cf):
    """nt steps from state h (n, nv), updated in place, adding the y of step i into row rows[i] of yo (., nv).

    ub (., nv), B, C (., n): u and the projections, read at row rows[i] for step i; dtb (T, nv): the step sizes
    (after bias and softplus) of the tile's steps; a2 (n, nv) = A log2(e).
    """
    nn, nv = a2.shape
    F = ub.dtype.type
    x = np.empty(nv, ub.dtype)
    acc = np.empty(nv, ub.dtype)
    for i in range(nt):
        p = rows[i]
        for c in range(nv):
            x[c] = dtb[i, c] * ub[p, c]
            acc[c] = F(0.0)
        for n in range(nn):
            bn = B[p, n]
            cn = C[p, n]
            for c in range(nv):
                hv = pow2(dtb[i, c] * a2[n, c], cf) * h[n, c] + x[c] * bn
                h[n, c] = hv
                acc[c] += hv * cn
        for c in range(nv):
            yo[p, c] += acc[c]


@njit(**JIT)
def bwd_tile(nt, ub, dtb, sgb, dyb, a, a2, B, C, h, g, ea, he, xb, dub, ddb, dacc, dbias, dBt, dCt, cf):
    """Backward of fwd_tile (without the D skip and the gate, which the kernels handle).

    ub, dtb, sgb (d dt / d delta), dyb (T, nv): u, step sizes and the gradient at y; a, a2 (n, nv) = A, A log2(e);
    B, C (T, n); h (n, nv): the state before the tile (overwritten); g (n, nv): the gradient at the state after
    the tile on entry, before it on return. Scratch: ea, he (T, n, nv), xb (T, nv). Writes dub, ddb (T, nv) (du,
    ddelta) and dBt, dCt (T, n); adds into dacc (n, nv) (dA) and dbias (nv,).
    """
    nn, nv = a.shape
    F = ub.dtype.type
    sb = np.empty(nv, ub.dtype)
    sa = np.empty(nv, ub.dtype)
    for i in range(nt):  # recompute the tile's states; dC needs h_t
        for c in range(nv):
            xb[i, c] = dtb[i, c] * ub[i, c]
        for n in range(nn):
            bn = B[i, n]
            s = F(0.0)
            for c in range(nv):
                e = pow2(dtb[i, c] * a2[n, c], cf)  # as in the forward
                ea[i, n, c] = e
                eh = e * h[n, c]
                he[i, n, c] = eh
                hv = eh + xb[i, c] * bn
                h[n, c] = hv
                s += dyb[i, c] * hv
            dCt[i, n] = s
    for j in range(nt):  # adjoint recurrence, backwards
        i = nt - 1 - j
        for c in range(nv):
            sb[c] = F(0.0)  # sum_n g B
            sa[c] = F(0.0)  # sum_n g exp(dt A) h_{t-1} A
        for n in range(nn):
            bn = B[i, n]
            cn = C[i, n]
            s = F(0.0)
            for c in range(nv):
                gk = g[n, c] + dyb[i, c] * cn  # d loss / d h_t
                s += gk * xb[i, c]
                sb[c] += gk * bn
                wv = gk * he[i, n, c]
                dacc[n, c] += wv * dtb[i, c]
                sa[c] += wv * a[n, c]
                g[n, c] = gk * ea[i, n, c]  # carried to h_{t-1}
            dBt[i, n] = s
        for c in range(nv):
            dub[i, c] = sb[c] * dtb[i, c]
            gd = (sb[c] * ub[i, c] + sa[c]) * sgb[i, c]
            ddb[i, c] = gd
            dbias[c] += gd
