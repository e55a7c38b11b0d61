"""The fused cross-scan + selective scan + cross-merge (numba, CPU) against the composition it replaces."""

import pytest
import torch

from ultra_fer_mamba.nn import OSSM
from ultra_fer_mamba.ops import cross_merge, cross_scan, scan_orders, selective_scan_ref, set_scan_backend
from ultra_fer_mamba.ops import cross_selective_scan as xss

# (b, h, w, k, e, n): channels not a multiple of LANES, 4 directions, a 1-row grid, l > CHUNK and not a multiple
SHAPES = [(2, 5, 7, 8, 40, 4), (1, 3, 4, 4, 6, 3), (2, 1, 7, 8, 33, 16), (1, 9, 9, 8, 8, 2)]


def make_inputs(b, h, w, k, e, n, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s, scale=1.0: (torch.randn(*s, generator=g, dtype=dtype) * scale).requires_grad_()  # noqa: E731
    l = h * w
    A = (-0.1 - torch.rand(k, e, n, generator=g, dtype=dtype)).requires_grad_()
    return [r(b, l, e), r(k, b, l, e, scale=0.5), A, r(b, l, k, n), r(b, l, k, n), r(k, e), r(k, e, scale=0.3)]


def literal_reference(u, delta, A, B, C, D, bias, h, w, softplus=True):
    """Direction by direction with scan_orders and the plain recurrence: no code shared with the op."""
    b, l, e = u.shape
    k = A.shape[0]
    y = torch.zeros_like(u)
    for kk, order in enumerate(scan_orders(h, w, k)):
        ys = selective_scan_ref(
            u[:, order].transpose(1, 2), delta[kk][:, order].transpose(1, 2), A[kk],
            B[:, order, kk].transpose(1, 2), C[:, order, kk].transpose(1, 2), D[kk], delta_bias=bias[kk],
            delta_softplus=softplus)  # (b, e, l) in scan order
        y = y.index_add(1, order, ys.transpose(1, 2))
    return y


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "b{}h{}w{}k{}e{}n{}".format(*s))
@pytest.mark.parametrize("softplus", [True, False], ids=["softplus", "raw"])
def test_fused_matches_literal_reference_float64(shape, softplus):
    """Values and every input gradient agree with a direction-by-direction reference to 1e-7 (float64)."""
    inputs = make_inputs(*shape, torch.float64)
    if not softplus:
        inputs[1] = (inputs[1].detach().abs() + 0.05).requires_grad_()  # positive step sizes without softplus
    h, w = shape[1], shape[2]
    assert xss.fused_available(inputs[0])
    y = xss.cross_selective_scan(*inputs, h, w, delta_softplus=softplus)
    y_ref = literal_reference(*inputs, h, w, softplus=softplus)
    torch.testing.assert_close(y, y_ref, rtol=1e-7, atol=1e-9)
    gy = torch.randn_like(y)
    grads = torch.autograd.grad(y, inputs, gy)
    grads_ref = torch.autograd.grad(y_ref, inputs, gy)
    for name, g, g_ref in zip(("u", "delta", "A", "B", "C", "D", "bias"), grads, grads_ref):
        torch.testing.assert_close(g, g_ref, rtol=1e-7, atol=1e-9, msg=lambda m: f"d{name}: {m}")


@pytest.mark.parametrize("shape", SHAPES[:2], ids=lambda s: "b{}h{}w{}k{}e{}n{}".format(*s))
def test_fused_float32_and_no_grad_path(shape):
    """float32 stays within 1e-5 of float64, and the inference call (nothing saved) gives the same values."""
    h, w = shape[1], shape[2]
    x64 = make_inputs(*shape, torch.float64)
    x32 = [t.detach().float().requires_grad_() for t in x64]
    y64 = xss.cross_selective_scan(*x64, h, w)
    y32 = xss.cross_selective_scan(*x32, h, w)
    assert y32.dtype == torch.float32
    torch.testing.assert_close(y32.double(), y64, rtol=1e-5, atol=1e-5)
    with torch.inference_mode():
        y_inf = xss.cross_selective_scan(*x32, h, w)
    torch.testing.assert_close(y_inf, y32.detach(), rtol=1e-6, atol=1e-6)


def test_composition_path_is_the_same_function():
    """backend='ref' (and numba switched off) run cross_merge(scan(cross_scan)) and agree with the fused kernels."""
    shape = SHAPES[0]
    h, w = shape[1], shape[2]
    inputs = make_inputs(*shape, torch.float64)
    assert not xss.fused_available(inputs[0], backend="ref")
    y_fused = xss.cross_selective_scan(*inputs, h, w)
    y_comp = xss.cross_selective_scan(*inputs, h, w, backend="ref")
    torch.testing.assert_close(y_fused, y_comp, rtol=1e-7, atol=1e-9)
    # the composition itself, spelled out with the public ops
    u, delta, A, B, C, D, bias = inputs
    b, l, e = u.shape
    k, n = A.shape[0], A.shape[2]
    xs = cross_scan(u.transpose(1, 2).reshape(b, e, h, w), k)
    orders = scan_orders(h, w, k)
    dts = torch.stack([delta[kk][:, orders[kk]].transpose(1, 2) for kk in range(k)], 1)
    Bs = torch.stack([B[:, orders[kk], kk].transpose(1, 2) for kk in range(k)], 1)
    Cs = torch.stack([C[:, orders[kk], kk].transpose(1, 2) for kk in range(k)], 1)
    ys = selective_scan_ref(xs.reshape(b, k * e, l), dts.reshape(b, k * e, l), A.reshape(k * e, n), Bs, Cs,
                            D.reshape(-1), delta_bias=bias.reshape(-1), delta_softplus=True)
    torch.testing.assert_close(y_comp, cross_merge(ys.view(b, k, e, l), h, w).transpose(1, 2), rtol=1e-7, atol=1e-9)


def test_no_numba_env_uses_composition(monkeypatch):
    monkeypatch.setenv("FER_MAMBA_NO_NUMBA", "1")
    assert not xss.fused_available(torch.zeros(1, 4, 2))


def test_bad_shapes_name_the_arguments():
    inputs = make_inputs(1, 3, 4, 8, 6, 3, torch.float32)
    with pytest.raises(ValueError, match="do not fit h=4, w=4"):
        xss.cross_selective_scan(*inputs, 4, 4)


@pytest.mark.parametrize("directions", [8, 4])
def test_ossm_fused_equals_reference_backend(directions):
    """A whole OSSM layer (fused CPU path) against the same layer on the 'ref' backend: output and the SSM
    parameters' gradients (float64, with non-default parameters so a transposed A or D would show)."""
    torch.manual_seed(0)
    m = OSSM(16, d_state=4, directions=directions).double()
    with torch.no_grad():
        m.A_logs.add_(0.3 * torch.randn_like(m.A_logs))
        m.Ds.add_(0.5 * torch.randn_like(m.Ds))
    x = torch.randn(2, 16, 5, 6, dtype=torch.float64)
    outs = []
    for backend in ("auto", "ref"):
        set_scan_backend(backend)
        try:
            m.zero_grad()
            y = m(x)
            y.square().sum().backward()
            outs.append((y.detach(), [p.grad.clone() for p in (m.A_logs, m.Ds, m.x_proj_weight, m.dt_projs_weight,
                                                              m.dt_projs_bias, m.in_proj.weight)]))
        finally:
            set_scan_backend("auto")
    torch.testing.assert_close(outs[0][0], outs[1][0], rtol=1e-8, atol=1e-10)
    for g, g_ref in zip(outs[0][1], outs[1][1]):
        torch.testing.assert_close(g, g_ref, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "b{}h{}w{}k{}e{}n{}".format(*s))
def test_low_rank_step_sizes_on_every_path(shape):
    """dt_weight: the step sizes are dts @ dt_weight^T per direction. The inference kernel forms them a step at a
    time, the grad path and the composition by a batched matmul; all three equal the literal reference fed the
    product, and the gradients reach dts and dt_weight (float64)."""
    b, h, w, k, e, n = shape
    r = 3
    inputs = make_inputs(*shape, torch.float64)
    g = torch.Generator().manual_seed(1)
    dts = torch.randn(b, h * w, k, r, generator=g, dtype=torch.float64).requires_grad_()
    wdt = (0.5 * torch.randn(k, e, r, generator=g, dtype=torch.float64)).requires_grad_()
    delta = torch.einsum("blkr,ker->kble", dts, wdt)  # the (k, b, l, e) tensor the kernel never stores
    y_ref = literal_reference(inputs[0], delta, *inputs[2:], h, w)
    low = [inputs[0], dts] + inputs[2:]
    with torch.no_grad():
        y_inf = xss.cross_selective_scan(*low, h, w, dt_weight=wdt)
        y_comp = xss.cross_selective_scan(*low, h, w, dt_weight=wdt, backend="ref")
    torch.testing.assert_close(y_inf, y_ref.detach(), rtol=1e-7, atol=1e-9)
    torch.testing.assert_close(y_comp, y_ref.detach(), rtol=1e-7, atol=1e-9)
    y = xss.cross_selective_scan(*low, h, w, dt_weight=wdt)
    torch.testing.assert_close(y, y_ref, rtol=1e-7, atol=1e-9)
    gy = torch.randn_like(y)
    leaves = [dts, wdt, inputs[0], inputs[5]]  # dts, dt_weight, u, D (D's skip is inside the inference kernel)
    for name, gr, gr_ref in zip(("dts", "dt_weight", "u", "D"), torch.autograd.grad(y, leaves, gy),
                                torch.autograd.grad(y_ref, leaves, gy)):
        torch.testing.assert_close(gr, gr_ref, rtol=1e-7, atol=1e-9, msg=lambda m: f"d{name}: {m}")
    with torch.no_grad():  # float32 inference kernel within 1e-5 of float64
        y32 = xss.cross_selective_scan(*[t.float() for t in low], h, w, dt_weight=wdt.float())
    torch.testing.assert_close(y32.double(), y_ref.detach(), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="dt_weight"):
        xss.cross_selective_scan(*low, h, w, dt_weight=wdt[:, :, :2])


def test_float32_pow2_and_softplus_helpers():
    """The kernels' float32 exp (2**x with A pre-scaled by log2 e) and softplus against float64: within 2 ulp
    and 2e-6 relative over the ranges the scans meet, finite and positive below the clamp, exact in float64."""
    numba = pytest.importorskip("numba")
    import numpy as np

    from ultra_fer_mamba.ops import scan_kernels as K

    @numba.njit
    def run(x, pw, ps, p2, sp):
        cf = (pw[0], pw[1], pw[2], pw[3], pw[4], pw[5], pw[6], pw[7])
        sc = (ps[0], ps[1], ps[2], ps[3], ps[4], ps[5], ps[6], ps[7], ps[8], ps[9])
        for i in range(x.shape[0]):
            p2[i] = K._pow2(x[i], cf)
            sp[i] = K._softplus(x[i], cf, sc)

    def both(x):
        p2, sp = np.empty_like(x), np.empty_like(x)
        run(x, K.pow2_coefficients(x.dtype), K.softplus_coefficients(x.dtype), p2, sp)
        return p2, sp

    x = np.linspace(-125.0, 127.0, 1_000_003).astype(np.float32)
    p2, _ = both(x)
    assert np.abs(p2 / np.exp2(x.astype(np.float64)) - 1).max() < 2.4e-7  # 2 ulp
    xs = np.linspace(-30.0, 30.0, 600_001).astype(np.float32)
    _, sp = both(xs)
    assert np.abs(sp / np.logaddexp(0.0, xs.astype(np.float64)) - 1).max() < 2e-6
    p2, sp = both(np.array([-1e4, -300.0, 200.0], np.float32))
    assert p2[0] == p2[1] == np.float32(2.0**-125) and np.isfinite(p2[2])  # clamped, never subnormal or wrapped
    assert sp[2] == np.float32(200.0) and 0.0 < sp[1] < 1e-37
    x64 = np.linspace(-50.0, 50.0, 1001)
    p2, sp = both(x64)
    np.testing.assert_allclose(p2, np.exp2(x64), rtol=1e-14)
    np.testing.assert_allclose(sp, np.logaddexp(0.0, x64), rtol=1e-14)
