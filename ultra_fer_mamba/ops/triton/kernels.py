"""Triton kernels of the selective scan over k directions (or groups), forward and backward.

One kernel pair serves both ops (launch.py). The tensors are channels-last, e channels per direction:
u (b, l, e) shared by the directions (the fused cross-scan) or (k, b, l, e) one slice per direction
(U_PER_DIR: the plain scan, its groups as directions); delta (k, b, l, e); A (k, e, n); B, C rows of
(b, l, k, n) with run-time strides s_bl (per position) and s_bk (per direction), so the split views of
x_proj's output are read in place; bias (k, e); order (k, l): direction k visits position order[k, t] at
step t (ORDERED; else t). Both mirror the numba kernels of cross_scan_kernels.py:

- ``scan_fwd``: one program per (channel block, batch, group of KP directions) holds the state (BLOCK_D, n)
  in float32 and walks the positions in its directions' orders, adding each direction's C . h into its own
  output slice y (k / KP, b, l, e) (no two programs write one element; the caller sums the slices). With
  SAVE it stores the state before every CHUNK-th step, hck (k, b, c, e, n); with LAST the final state
  (k, b, e, n). LOWRANK forms the step sizes from Mamba's low-rank factors, dts (b, l, k, r) rows times
  wdt (k, e, r), a step at a time (inference: the (k, b, l, e) step sizes are never stored).
- ``scan_bwd``: one program per (channel block, batch, direction). From the last block of CHUNK steps to
  the first, it recomputes the block's states from its checkpoint into its own scratch rows of ``work``,
  then runs the adjoint recurrence g_t = C_t dy_t + exp(dt_{t+1} A) g_{t+1} backwards through the block.
  It writes du, ddelta (k, b, l, e), dA (k, b, e, n) and its channel block's share of dB, dC
  (blocks, b, l, k, n): partial sums that the caller reduces in torch (no atomics: deterministic).

L and the batch size are run-time values (``do_not_specialize``): one compilation serves every feature-map
size. The step loops are software-pipelined (``tl.range``'s num_stages = STAGES): the loads of the next steps,
which do not depend on the state, are issued while this step computes. exp(dt A) is exp2(dt A log2 e). Shape letters: b batch, k directions, l positions, e channels,
n state size, r dt rank, c checkpoints = ceil(l / CHUNK).
"""

from __future__ import annotations

import triton
import triton.language as tl

INTERPRETED = bool(triton.knobs.runtime.interpret)  # how the kernels below were decorated (TRITON_INTERPRET=1)

LOG2E = tl.constexpr(1.4426950408889634)  # a global a kernel reads must be a constexpr


@triton.jit
def _softplus(x):
    """log(1 + exp(x)) without overflow (torch's threshold 20 gives the same float32 value)."""
    return tl.maximum(x, 0.0) + tl.log(1.0 + tl.exp(-tl.abs(x)))


@triton.jit
def _position(order, kk, t, L, ORDERED: tl.constexpr):
    """The position direction kk visits at step t."""
    if ORDERED:
        p = tl.load(order + kk * L + t)
    else:
        p = t  # offsets add it to int64 row bases
    return p


@triton.jit
def _step_inputs(u, delta, B, bias_v, row_u, row_d, row_b, d, dm, n, nm, E: tl.constexpr, SOFTPLUS: tl.constexpr):
    """u, dt (after bias and softplus), d dt / d delta and B of one step, float32."""
    uv = tl.load(u + row_u * E + d, mask=dm, other=0.0).to(tl.float32)
    x = tl.load(delta + row_d * E + d, mask=dm, other=0.0).to(tl.float32) + bias_v
    if SOFTPLUS:
        dt = _softplus(x)
        sig = 1.0 / (1.0 + tl.exp(-x))
    else:
        dt = x
        sig = tl.full(x.shape, 1.0, tl.float32)
    bv = tl.load(B + row_b + n, mask=nm, other=0.0).to(tl.float32)
    return uv, dt, sig, bv


@triton.jit(do_not_specialize=["L", "NB"])
def scan_fwd(u, delta, dts, wdt, A, B, C, bias, order, y, hck, hlast, L, NB, s_bl, s_bk, s_rl, s_rk,
             K: tl.constexpr, E: tl.constexpr, N: tl.constexpr, R: tl.constexpr, KP: tl.constexpr,
             CHUNK: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_R: tl.constexpr,
             U_PER_DIR: tl.constexpr, ORDERED: tl.constexpr, LOWRANK: tl.constexpr, SOFTPLUS: tl.constexpr,
             SAVE: tl.constexpr, LAST: tl.constexpr, STAGES: tl.constexpr):
    """Forward over KP directions of one (channel block, batch); see the module docstring."""
    blk, bi, kp = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    d = blk * BLOCK_D + tl.arange(0, BLOCK_D)
    dm = d < E
    n = tl.arange(0, BLOCK_N)
    nm = n < N
    m2 = dm[:, None] & nm[None, :]
    dn = d[:, None] * N + n[None, :]  # offsets in an (e, n) matrix
    r = tl.arange(0, BLOCK_R)
    rm = r < R
    bl = bi.to(tl.int64) * L  # first row of this batch in (b, l, ...) tensors
    nck = tl.cdiv(L, CHUNK)
    yb = (kp * NB + bi).to(tl.int64) * L  # first row of this program's output slice
    for j in tl.static_range(KP):
        kk = kp * KP + j
        kb = (kk * NB + bi).to(tl.int64) * L  # first row of (direction, batch) in (k, b, l, ...) tensors
        if U_PER_DIR:
            ub = kb
        else:
            ub = bl
        a2 = tl.load(A + kk * E * N + dn, mask=m2, other=0.0).to(tl.float32) * LOG2E
        bias_v = tl.load(bias + kk * E + d, mask=dm, other=0.0).to(tl.float32)
        if LOWRANK:
            wt = tl.load(wdt + kk * E * R + d[:, None] * R + r[None, :], mask=dm[:, None] & rm[None, :],
                         other=0.0).to(tl.float32)  # (BLOCK_D, BLOCK_R)
        h = tl.zeros((BLOCK_D, BLOCK_N), tl.float32)
        for c in range(nck):
            if SAVE:
                tl.store(hck + ((kk * NB + bi).to(tl.int64) * nck + c) * (E * N) + dn, h, mask=m2)
            for t in tl.range(c * CHUNK, tl.minimum(c * CHUNK + CHUNK, L), num_stages=STAGES):
                p = _position(order, kk, t, L, ORDERED)
                row_b = (bl + p) * s_bl + kk * s_bk
                if LOWRANK:
                    uv = tl.load(u + (ub + p) * E + d, mask=dm, other=0.0).to(tl.float32)
                    s = tl.load(dts + (bl + p) * s_rl + kk * s_rk + r, mask=rm, other=0.0).to(tl.float32)
                    dt = tl.sum(wt * s[None, :], 1) + bias_v
                    if SOFTPLUS:
                        dt = _softplus(dt)
                    bv = tl.load(B + row_b + n, mask=nm, other=0.0).to(tl.float32)
                else:
                    uv, dt, _, bv = _step_inputs(u, delta, B, bias_v, ub + p, kb + p, row_b, d, dm, n, nm, E, SOFTPLUS)
                cv = tl.load(C + row_b + n, mask=nm, other=0.0).to(tl.float32)
                h = tl.exp2(dt[:, None] * a2) * h + (dt * uv)[:, None] * bv[None, :]
                yv = tl.sum(h * cv[None, :], 1)
                yp = y + (yb + p) * E + d
                if j > 0:  # the slice already holds this program's earlier directions
                    yv += tl.load(yp, mask=dm, other=0.0)
                tl.store(yp, yv, mask=dm)
        if LAST:
            tl.store(hlast + (kk * NB + bi).to(tl.int64) * (E * N) + dn, h, mask=m2)
        tl.debug_barrier()  # the next direction reads back what this one wrote


@triton.jit(do_not_specialize=["L", "NB"])
def scan_bwd(u, delta, A, B, C, bias, order, hck, dy, dhlast, work, du, ddelta, dA, dB, dC, L, NB, s_bl, s_bk,
             K: tl.constexpr, E: tl.constexpr, N: tl.constexpr, CHUNK: tl.constexpr, BLOCK_D: tl.constexpr,
             BLOCK_N: tl.constexpr, U_PER_DIR: tl.constexpr, ORDERED: tl.constexpr, SOFTPLUS: tl.constexpr,
             LAST: tl.constexpr, STAGES: tl.constexpr):
    """Backward of one (channel block, batch, direction) of scan_fwd; see the module docstring. dy has u's
    layout; dhlast (k, b, e, n) is the gradient at the final state when LAST."""
    blk, bi, kk = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    nblk = tl.num_programs(0)
    d = blk * BLOCK_D + tl.arange(0, BLOCK_D)
    dm = d < E
    n = tl.arange(0, BLOCK_N)
    nm = n < N
    m2 = dm[:, None] & nm[None, :]
    dn = d[:, None] * N + n[None, :]
    local = tl.arange(0, BLOCK_D)[:, None] * BLOCK_N + n[None, :]  # offsets in a scratch row
    bl = bi.to(tl.int64) * L
    kb = (kk * NB + bi).to(tl.int64) * L
    if U_PER_DIR:
        ub = kb
    else:
        ub = bl
    a = tl.load(A + kk * E * N + dn, mask=m2, other=0.0).to(tl.float32)
    a2 = a * LOG2E
    bias_v = tl.load(bias + kk * E + d, mask=dm, other=0.0).to(tl.float32)
    state = (kk * NB + bi).to(tl.int64) * (E * N)
    work_p = work + ((kk * NB + bi) * nblk + blk).to(tl.int64) * (CHUNK * BLOCK_D * BLOCK_N)
    if LAST:
        g = tl.load(dhlast + state + dn, mask=m2, other=0.0).to(tl.float32)  # d loss / d h, carried backwards
    else:
        g = tl.zeros((BLOCK_D, BLOCK_N), tl.float32)
    dacc = tl.zeros((BLOCK_D, BLOCK_N), tl.float32)
    nck = tl.cdiv(L, CHUNK)
    for cc in range(nck):  # blocks from the last one
        c = nck - 1 - cc
        t0 = c * CHUNK
        nt = tl.minimum(CHUNK, L - t0)
        h = tl.load(hck + ((kk * NB + bi).to(tl.int64) * nck + c) * (E * N) + dn, mask=m2, other=0.0)
        for i in tl.range(nt, num_stages=STAGES):  # recompute the block, keeping the state before each step
            tl.store(work_p + i * (BLOCK_D * BLOCK_N) + local, h)
            p = _position(order, kk, t0 + i, L, ORDERED)
            uv, dt, _, bv = _step_inputs(u, delta, B, bias_v, ub + p, kb + p, (bl + p) * s_bl + kk * s_bk, d, dm,
                                         n, nm, E, SOFTPLUS)
            h = tl.exp2(dt[:, None] * a2) * h + (dt * uv)[:, None] * bv[None, :]
        tl.debug_barrier()
        for jj in tl.range(nt, num_stages=STAGES):  # adjoint recurrence, backwards
            i = nt - 1 - jj
            p = _position(order, kk, t0 + i, L, ORDERED)
            row_b = (bl + p) * s_bl + kk * s_bk
            uv, dt, sig, bv = _step_inputs(u, delta, B, bias_v, ub + p, kb + p, row_b, d, dm, n, nm, E, SOFTPLUS)
            cv = tl.load(C + row_b + n, mask=nm, other=0.0).to(tl.float32)
            dyv = tl.load(dy + (ub + p) * E + d, mask=dm, other=0.0).to(tl.float32)
            hp = tl.load(work_p + i * (BLOCK_D * BLOCK_N) + local)  # h_{t-1}
            ea = tl.exp2(dt[:, None] * a2)
            x = dt * uv
            gk = g + dyv[:, None] * cv[None, :]  # d loss / d h_t
            part = (((blk * NB + bi).to(tl.int64) * L + p) * K + kk) * N
            tl.store(dB + part + n, tl.sum(gk * x[:, None], 0), mask=nm)
            tl.store(dC + part + n, tl.sum(dyv[:, None] * (ea * hp + x[:, None] * bv[None, :]), 0), mask=nm)
            sb = tl.sum(gk * bv[None, :], 1)  # sum_n g B
            w = gk * ea * hp
            dacc += w * dt[:, None]
            sa = tl.sum(w * a, 1)  # sum_n g exp(dt A) h_{t-1} A
            g = gk * ea  # carried to h_{t-1}
            tl.store(du + (kb + p) * E + d, sb * dt, mask=dm)
            tl.store(ddelta + (kb + p) * E + d, (sb * uv + sa) * sig, mask=dm)
        tl.debug_barrier()  # the next block overwrites the scratch rows
    tl.store(dA + state + dn, dacc, mask=m2)
