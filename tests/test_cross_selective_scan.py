"""The fused cross-scan + selective scan + cross-merge (numba, CPU) against the composition it replaces, and one
OSSM layer with the same weights on every CPU backend."""

import pytest
import torch

from ultra_fer_mamba.nn import OSSM
from ultra_fer_mamba.ops import (cross_merge, cross_scan, cross_selective_scan, get_scan_backend, scan_orders,
                                 selective_scan_ref, set_scan_backend)

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
    y = cross_selective_scan(*inputs, h, w, delta_softplus=softplus, backend="numba")
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
    y64 = cross_selective_scan(*x64, h, w, backend="numba")
    y32 = cross_selective_scan(*x32, h, w, backend="numba")
    assert y32.dtype == torch.float32
    torch.testing.assert_close(y32.double(), y64, rtol=1e-5, atol=1e-5)
    with torch.inference_mode():
        y_inf = cross_selective_scan(*x32, h, w, backend="numba")
    torch.testing.assert_close(y_inf, y32.detach(), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("directions", [4, 8])
def test_composition_path_is_the_same_function(directions):
    """backend='ref' and 'torch' run cross_merge(scan(cross_scan)) and agree with the fused kernels ('numba')."""
    shape = (2, 5, 7, directions, 40, 4)
    h, w = shape[1], shape[2]
    inputs = make_inputs(*shape, torch.float64)
    y_fused = cross_selective_scan(*inputs, h, w, backend="numba")
    y_comp = cross_selective_scan(*inputs, h, w, backend="ref")
    torch.testing.assert_close(y_fused, y_comp, rtol=1e-7, atol=1e-9)
    torch.testing.assert_close(cross_selective_scan(*inputs, h, w, backend="torch"), y_comp, rtol=1e-7, atol=1e-9)
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


def test_bad_shapes_name_the_arguments():
    inputs = make_inputs(1, 3, 4, 8, 6, 3, torch.float32)
    with pytest.raises(ValueError, match="do not fit h=4, w=4"):
        cross_selective_scan(*inputs, 4, 4)


@pytest.mark.parametrize("directions", [8, 4])
def test_ossm_same_weights_flip_the_backend(directions):
    """One OSSM layer, the same weights, the default backend flipped between numba (fused kernels), torch (chunked
    torch ops) and ref (the recurrence): the same output and the same gradients of every parameter (float64, with
    non-default parameters so that a transposed A or D would show), in training and in inference."""
    torch.manual_seed(0)
    m = OSSM(16, d_state=4, directions=directions).double()
    with torch.no_grad():
        m.A_logs.add_(0.3 * torch.randn_like(m.A_logs))
        m.Ds.add_(0.5 * torch.randn_like(m.Ds))
    x = torch.randn(2, 16, 5, 6, dtype=torch.float64)
    before, outs = get_scan_backend(), {}
    for backend in ("numba", "torch", "ref"):
        set_scan_backend(backend)
        try:
            m.zero_grad()
            y = m(x)
            y.square().sum().backward()
            with torch.no_grad():
                y_inference = m(x)
            outs[backend] = [y.detach(), y_inference] + [p.grad.clone() for p in m.parameters()]
        finally:
            set_scan_backend(before)
    names = ["y", "y (no_grad)"] + [n for n, _ in m.named_parameters()]
    for backend in ("numba", "torch"):
        for name, a, e in zip(names, outs[backend], outs["ref"]):
            torch.testing.assert_close(a, e, rtol=1e-7, atol=1e-9, msg=lambda msg: f"{backend} {name}: {msg}")


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
        y_inf = cross_selective_scan(*low, h, w, dt_weight=wdt, backend="numba")
        y_comp = cross_selective_scan(*low, h, w, dt_weight=wdt, backend="ref")
    torch.testing.assert_close(y_inf, y_ref.detach(), rtol=1e-7, atol=1e-9)
    torch.testing.assert_close(y_comp, y_ref.detach(), rtol=1e-7, atol=1e-9)
    y = cross_selective_scan(*low, h, w, dt_weight=wdt, backend="numba")
    torch.testing.assert_close(y, y_ref, rtol=1e-7, atol=1e-9)
    gy = torch.randn_like(y)
    leaves = [dts, wdt, inputs[0], inputs[5]]  # dts, dt_weight, u, D (D's skip is inside the inference kernel)
    for name, gr, gr_ref in zip(("dts", "dt_weight", "u", "D"), torch.autograd.grad(y, leaves, gy),
                                torch.autograd.grad(y_ref, leaves, gy)):
        torch.testing.assert_close(gr, gr_ref, rtol=1e-7, atol=1e-9, msg=lambda m: f"d{name}: {m}")
    with torch.no_grad():  # float32 inference kernel within 1e-5 of float64
        y32 = cross_selective_scan(*[t.float() for t in low], h, w, dt_weight=wdt.float(), backend="numba")
    torch.testing.assert_close(y32.double(), y_ref.detach(), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="dt_weight"):
        cross_selective_scan(*low, h, w, dt_weight=wdt[:, :, :2])
