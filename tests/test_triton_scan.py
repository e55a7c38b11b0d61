"""The Triton kernels (ops/triton) against the reference recurrence, values and every input gradient.

Without a GPU they run in Triton's interpreter on CPU tensors (conftest sets TRITON_INTERPRET=1), so the
shapes are tiny and float32; with one, the same grid runs the compiled kernels on CUDA, and the `cuda`
tests add half precision under autocast, a bigger shape, determinism and mamba_ssm.
"""

import pytest
import torch

from ultra_fer_mamba.ops import cross_merge, cross_scan, scan_orders, selective_scan_ref
from ultra_fer_mamba.ops.triton import available, config, cross_selective_scan_triton, selective_scan_triton

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def assert_rel(actual, expected, rel, name=""):
    """Elementwise within rel, relative to the largest magnitude of expected."""
    scale = float(expected.detach().abs().max()) or 1.0
    torch.testing.assert_close(actual, expected, rtol=rel, atol=rel * scale, msg=lambda m: f"{name}: {m}")


def leaf(*shape, scale=1.0, shift=0.0, dtype=torch.float32, device=DEVICE):
    return (torch.randn(*shape, dtype=dtype, device=device) * scale + shift).requires_grad_()


def check_grads(out, ref, inputs, names, rel=1e-3):
    """Gradients of one random projection of out and of ref, input by input."""
    if isinstance(out, torch.Tensor):
        out, ref = (out,), (ref,)
    weights = [torch.randn_like(r, dtype=torch.float32) for r in ref]
    grads = torch.autograd.grad(sum((o.float() * w).sum() for o, w in zip(out, weights)), inputs)
    grads_ref = torch.autograd.grad(sum((r.float() * w).sum() for r, w in zip(ref, weights)), inputs)
    for g, gr, name in zip(grads, grads_ref, names):
        assert_rel(g.float(), gr.float(), rel, name)


@pytest.fixture
def small_chunk(monkeypatch):
    """Checkpoints every 4 steps, so that tiny sequences span several blocks (one of them partial)."""
    monkeypatch.setattr(config, "CHUNK", 4)


def test_available_reports_reasons():
    ok, why = available(DEVICE)
    assert ok, why
    ok, why = available("meta")
    assert not ok and "meta" in why


# b, d, g (groups of B / C), l, n, with D, z, delta_bias, softplus, return_last_state
PLAIN = [
    (2, 4, (1, 1), 1, 4, False, False, False, False, False),  # L = 1
    (2, 4, (1, 1), 13, 4, True, True, True, True, True),  # L prime, G = 1, everything
    (1, 4, (4, 4), 7, 3, True, False, True, False, True),  # G = D, n not a power of two
    (1, 6, (2, 2), 5, 4, False, True, False, True, False),
    (1, 4, (0, 2), 6, 2, True, False, False, False, False),  # B (b, n, l), C with 2 groups
]


@pytest.mark.parametrize("b, d, g, l, n, has_d, has_z, has_bias, softplus, last", PLAIN)
def test_selective_scan_matches_ref(small_chunk, monkeypatch, b, d, g, l, n, has_d, has_z, has_bias, softplus, last):
    monkeypatch.setattr(config, "BLOCK_D", 2)  # channel blocks: e = d / g = 4, 1 and 3 take 2, 1 and 2 (one partial)
    torch.manual_seed(0)
    u, delta = leaf(b, d, l), leaf(b, d, l, scale=0.5)
    A = leaf(d, n, scale=0.3, shift=-1.0)
    B = leaf(b, n, l) if g[0] == 0 else leaf(b, g[0], n, l)
    C = leaf(b, g[1], n, l)
    D, z, bias = leaf(d) if has_d else None, leaf(b, d, l) if has_z else None, leaf(d) if has_bias else None
    kw = dict(D=D, z=z, delta_bias=bias, delta_softplus=softplus, return_last_state=last)
    out = selective_scan_triton(u, delta, A, B, C, **kw)
    ref = selective_scan_ref(u, delta, A, B, C, **kw)
    with torch.no_grad():  # the inference launch: no checkpoints, no autograd node
        plain = selective_scan_triton(u, delta, A, B, C, **kw)
    for o, r, p in zip(*((t,) if isinstance(t, torch.Tensor) else t for t in (out, ref, plain))):
        assert o.shape == r.shape and o.dtype == r.dtype
        assert_rel(o, r, 1e-4, "values")
        assert_rel(p, r, 1e-4, "no-grad values")
    inputs = [t for t in (u, delta, A, B, C, D, z, bias) if t is not None]
    names = [s for s, t in zip(("u", "delta", "A", "B", "C", "D", "z", "delta_bias"), (u, delta, A, B, C, D, z, bias))
             if t is not None]
    check_grads(out, ref, inputs, names)


def test_selective_scan_default_chunk():
    """More steps than the configured CHUNK: the checkpoints as shipped."""
    torch.manual_seed(1)
    l = config.CHUNK + 5
    u, delta, A = leaf(1, 2, l), leaf(1, 2, l, scale=0.5), leaf(2, 4, scale=0.3, shift=-1.0)
    B, C = leaf(1, 1, 4, l), leaf(1, 1, 4, l)
    out = selective_scan_triton(u, delta, A, B, C, delta_softplus=True, return_last_state=True)
    ref = selective_scan_ref(u, delta, A, B, C, delta_softplus=True, return_last_state=True)
    assert_rel(out[0], ref[0], 1e-4)
    assert_rel(out[1], ref[1], 1e-4)
    check_grads(out, ref, (u, delta, A, B, C), "u delta A B C".split())


def test_selective_scan_strided_inputs():
    """Transposed views (u, delta channels-last underneath, A (n, d) transposed, a strided bias) read right."""
    torch.manual_seed(8)
    u, delta = leaf(2, 5, 4).transpose(1, 2), leaf(2, 5, 4, scale=0.5).transpose(1, 2)  # (b, d, l) views
    A, bias = leaf(3, 4, scale=0.3, shift=-1.0).t(), leaf(8)[::2]
    B, C = leaf(2, 1, 3, 5), leaf(2, 1, 3, 5)
    out = selective_scan_triton(u, delta, A, B, C, delta_bias=bias, delta_softplus=True)
    ref = selective_scan_ref(u, delta, A, B, C, delta_bias=bias, delta_softplus=True)
    assert_rel(out, ref, 1e-4)
    check_grads(out, ref, (u, delta, A, B, C, bias), "u delta A B C delta_bias".split())


def composed(u, delta, A, B, C, D, delta_bias, h, w, dt_weight=None):
    """cross_merge(selective_scan_ref(cross_scan(...))) + D's skip: the fused op by its definition."""
    b, l, e = u.shape
    k, n = A.shape[0], A.shape[2]
    if dt_weight is not None:
        delta = torch.einsum("blkr,ker->kble", delta, dt_weight)
    order = scan_orders(h, w, k).to(u.device)
    xs = cross_scan(u.transpose(1, 2).reshape(b, e, h, w), k).reshape(b, k * e, l)
    ds = torch.stack([delta[i][:, order[i]].transpose(1, 2) for i in range(k)], 1)  # (b, k, e, l)
    Bs = torch.stack([B[:, order[i], i].transpose(1, 2) for i in range(k)], 1)  # (b, k, n, l)
    Cs = torch.stack([C[:, order[i], i].transpose(1, 2) for i in range(k)], 1)
    ys = selective_scan_ref(xs, ds.reshape(b, k * e, l), A.reshape(k * e, n), Bs, Cs, D.reshape(k * e),
                            delta_bias=delta_bias.reshape(k * e), delta_softplus=True)
    return cross_merge(ys.view(b, k, e, l), h, w).transpose(1, 2)


def fused_inputs(b, h, w, k, e, n, r, dtype=torch.float32, device=DEVICE):
    """Inputs as OSSM makes them: B, C (and the low-rank dts) are views of one x_proj output."""
    l = h * w
    u = leaf(b, l, e, dtype=dtype, device=device)
    x_dbl = leaf(b, l, k, (r or 0) + 2 * n, dtype=dtype, device=device)
    dts, B, C = torch.split(x_dbl, [r or 0, n, n], dim=3)
    delta = dts if r else leaf(k, b, l, e, scale=0.5, dtype=dtype, device=device)
    dt_weight = leaf(k, e, r, scale=r**-0.5, dtype=dtype, device=device) if r else None
    A = leaf(k, e, n, scale=0.3, shift=-1.0, dtype=dtype, device=device)
    D, bias = leaf(k, e, dtype=dtype, device=device), leaf(k, e, scale=0.5, shift=-2.0, dtype=dtype, device=device)
    args = (u, delta, A, B, C, D, bias, h, w)
    leaves = [u, x_dbl, A, D, bias] + ([dt_weight] if r else [delta])
    return args, dt_weight, leaves


# h, w, directions, dt rank (0: full step sizes), directions per program (None: the heuristic), channels per
# program (None: as configured; 2 splits the 3 channels into a full and a partial block)
FUSED = [
    (1, 6, 4, 0, None, 2),  # 1 x W
    (1, 5, 8, 2, None, 2),
    (5, 7, 8, 2, None, None),
    (5, 7, 4, 0, 2, None),  # two directions summed in one program's slice
]


@pytest.mark.parametrize("h, w, k, r, kp, block", FUSED)
def test_cross_selective_scan_matches_composition(small_chunk, monkeypatch, h, w, k, r, kp, block):
    monkeypatch.setattr(config, "DIRECTIONS_PER_PROGRAM", kp)
    monkeypatch.setattr(config, "BLOCK_D", block or config.BLOCK_D)
    torch.manual_seed(2)
    args, dt_weight, leaves = fused_inputs(1, h, w, k, 3, 4, r)
    y = cross_selective_scan_triton(*args, dt_weight=dt_weight)
    ref = composed(*args, dt_weight=dt_weight)
    assert y.shape == ref.shape == args[0].shape and y.dtype == torch.float32
    assert_rel(y, ref, 1e-4, "values")
    with torch.no_grad():  # inference: dt_proj inside the kernel when r > 0
        assert_rel(cross_selective_scan_triton(*args, dt_weight=dt_weight), ref, 1e-4, "no-grad values")
    check_grads(y, ref, leaves, ["u", "x_dbl", "A", "D", "delta_bias", "dt_weight" if r else "delta"])


def test_cross_selective_scan_rejects_bad_shapes():
    args, _, _ = fused_inputs(1, 2, 3, 4, 3, 2, 0)
    with pytest.raises(ValueError, match="h=3, w=3"):
        cross_selective_scan_triton(*args[:7], 3, 3)


def ran_triton(fn) -> bool:
    """Whether fn() ran a Triton op, by its profiler label."""
    from ultra_fer_mamba.ops.triton.scan import PROFILE_LABEL

    with torch.profiler.profile() as prof:
        fn()
    return any(PROFILE_LABEL in e.name for e in prof.events())


def test_dispatcher_routes_triton():
    """backend="triton" (argument or set_scan_backend) reaches these ops, for the plain scan, the fused op and OSSM."""
    backend = pytest.importorskip("ultra_fer_mamba.ops.backend", reason="ops/backend.py is not on this branch yet")
    from ultra_fer_mamba.nn import OSSM
    from ultra_fer_mamba.ops import cross_selective_scan, selective_scan

    torch.manual_seed(9)
    args, dt_weight, _ = fused_inputs(1, 2, 3, 4, 3, 2, 2)
    assert ran_triton(lambda: cross_selective_scan(*args, backend="triton", dt_weight=dt_weight))
    y = cross_selective_scan(*args, backend="triton", dt_weight=dt_weight)
    assert_rel(y, composed(*args, dt_weight=dt_weight), 1e-4)
    u, delta, A, B, C = leaf(1, 4, 5), leaf(1, 4, 5), leaf(4, 2, shift=-1.0), leaf(1, 1, 2, 5), leaf(1, 1, 2, 5)
    assert ran_triton(lambda: selective_scan(u, delta, A, B, C, backend="triton"))
    m = OSSM(4).to(DEVICE)
    x = torch.randn(1, 4, 2, 3, device=DEVICE)
    ref = m(x)
    backend.set_scan_backend("triton")
    try:
        assert ran_triton(lambda: m(x))
        assert_rel(m(x), ref, 1e-4)
    finally:
        backend.set_scan_backend("auto")


# ----------------------------------------------------------------------------- compiled kernels (GPU)
@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_compiled_cross_selective_scan(dtype):
    """A bigger shape (several channel blocks, full state, 8 directions) in fp32 and under autocast."""
    torch.manual_seed(3)
    args, dt_weight, leaves = fused_inputs(2, 12, 10, 8, 80, 16, 4)
    rounded = [t.to(dtype) if torch.is_tensor(t) else t for t in args]  # what AMP's matmuls hand over
    ref = composed(*(t.float() if torch.is_tensor(t) else t for t in rounded), dt_weight=dt_weight)
    with torch.autocast("cuda", dtype=dtype, enabled=dtype != torch.float32):
        y = cross_selective_scan_triton(*rounded, dt_weight=dt_weight)
    assert y.dtype == dtype
    rel = 1e-4 if dtype == torch.float32 else 3e-2  # half: y, dy and the gradients are rounded to 8 or 11 bits
    assert_rel(y.float(), ref, rel, "values")
    check_grads(y, ref, leaves, ["u", "x_dbl", "A", "D", "delta_bias", "dt_weight"], rel=max(rel, 1e-3))


@pytest.mark.cuda
@pytest.mark.parametrize("stages", [1, 2])
def test_compiled_pipelining_depths(monkeypatch, stages):
    """Other software-pipelining depths of the step loops than the configured one give the same results."""
    monkeypatch.setattr(config, "NUM_STAGES", stages)
    torch.manual_seed(7)
    args, dt_weight, leaves = fused_inputs(2, 9, 11, 8, 40, 16, 3)
    y, ref = cross_selective_scan_triton(*args, dt_weight=dt_weight), composed(*args, dt_weight=dt_weight)
    assert_rel(y, ref, 1e-4, "values")
    check_grads(y, ref, leaves, ["u", "x_dbl", "A", "D", "delta_bias", "dt_weight"])


@pytest.mark.cuda
def test_compiled_backward_is_deterministic():
    """Two backward runs give bit-identical gradients (no atomics), for Ultralytics' deterministic=True."""
    torch.manual_seed(4)
    args, dt_weight, leaves = fused_inputs(4, 20, 20, 8, 64, 16, 4)
    w = torch.randn(args[0].shape, device="cuda")
    runs = [torch.autograd.grad((cross_selective_scan_triton(*args, dt_weight=dt_weight) * w).sum(), leaves)
            for _ in range(2)]
    for g0, g1 in zip(*runs):
        assert torch.equal(g0, g1)


@pytest.mark.cuda
def test_compiled_no_recompilation_per_size():
    """L and the batch are run-time values: new feature-map sizes reuse the compiled kernels."""
    from ultra_fer_mamba.ops.triton.kernels import scan_bwd, scan_fwd

    def compiled():
        return sum(len(cache[0]) for cache in scan_fwd.device_caches.values()) + sum(
            len(cache[0]) for cache in scan_bwd.device_caches.values())

    for b, h, w in ((1, 8, 8), (2, 9, 13)):
        args, dt_weight, leaves = fused_inputs(b, h, w, 8, 32, 16, 2)
        cross_selective_scan_triton(*args, dt_weight=dt_weight).sum().backward()
        if b == 1:
            before = compiled()
    assert compiled() == before


@pytest.mark.cuda
def test_compiled_selective_scan_fp32():
    torch.manual_seed(5)
    b, d, n, l = 2, 96, 16, 300
    u, delta, A = leaf(b, d, l), leaf(b, d, l, scale=0.5), leaf(d, n, scale=0.3, shift=-1.0)
    B, C, D, z, bias = leaf(b, 2, n, l), leaf(b, 2, n, l), leaf(d), leaf(b, d, l), leaf(d)
    kw = dict(D=D, z=z, delta_bias=bias, delta_softplus=True, return_last_state=True)
    out, ref = selective_scan_triton(u, delta, A, B, C, **kw), selective_scan_ref(u, delta, A, B, C, **kw)
    assert_rel(out[0], ref[0], 1e-4)
    check_grads(out, ref, (u, delta, A, B, C, D, z, bias), "u delta A B C D z delta_bias".split())


@pytest.mark.cuda
def test_mamba_ssm_matches_ref():
    pytest.importorskip("mamba_ssm", reason="mamba_ssm is not installed (pip install -e .[cuda])")
    from mamba_ssm.ops.selective_scan_interface import selective_scan_fn

    torch.manual_seed(6)
    b, d, n, l = 2, 64, 16, 200
    u, delta, A = leaf(b, d, l), leaf(b, d, l, scale=0.5), leaf(d, n, scale=0.3, shift=-1.0)
    B, C, D, bias = leaf(b, 1, n, l), leaf(b, 1, n, l), leaf(d), leaf(d)
    kw = dict(D=D, delta_bias=bias, delta_softplus=True)
    out, ref = selective_scan_fn(u, delta, A, B, C, **kw), selective_scan_ref(u, delta, A, B, C, **kw)
    assert_rel(out, ref, 1e-4)
    check_grads(out, ref, (u, delta, A, B, C, D, bias), "u delta A B C D delta_bias".split())
