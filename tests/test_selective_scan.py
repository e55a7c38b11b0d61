"""Selective scan backends against the reference recurrence: values, last state and every input
gradient over a grid of awkward shapes and options, per-dtype tolerances, long strongly-decaying
sequences, autocast, CUDA (skipped without it), and the ONNX / TorchScript export path."""

import pytest
import torch
import torch.nn.functional as F

from ultra_fer_mamba.ops import cross_merge, cross_scan, has_mamba_ssm, selective_scan, selective_scan_ref
from ultra_fer_mamba.ops.numba import autograd as numba_autograd

# compared with the float64 reference: (rtol, atol relative to the reference's largest magnitude)
TOL = {torch.float64: (1e-6, 1e-9), torch.float32: (1e-4, 1e-5)}

# (b, d, n, l, g): L = 1, prime L, G = 1, G = D, (b, n, l) B and C, lengths across checkpoint blocks, channels per
# group not a multiple of the lane block
SHAPES = [
    (2, 4, 3, 1, 1),
    (2, 6, 4, 13, 3),
    (1, 8, 5, 37, 8),
    (2, 4, 16, 70, 1),
    (1, 6, 4, 131, 2),
    (2, 4, 2, 29, None),  # B, C as (b, n, l)
    (1, 26, 3, 41, 2),  # 13 channels per group: blocks of 8 + 5 with the lanes forced to 8 (lanes fixture)
]
# (D, z, delta_bias, delta_softplus, return_last_state)
OPTIONS = [
    (True, True, True, True, True),
    (False, False, False, False, False),
    (True, False, True, True, False),
    (False, True, False, True, True),
    (True, True, False, False, True),
]
CPU_BACKENDS = ["numba", "torch"]  # the two fast CPU implementations


@pytest.fixture(params=[None, 8], ids=["lanes-auto", "lanes-8"])
def lanes(request, monkeypatch):
    """The numba kernels' lane blocks as chosen for this machine, and forced to 8 (tail blocks in every group)."""
    if request.param:
        monkeypatch.setattr(numba_autograd, "LANES", request.param)
        monkeypatch.setattr(numba_autograd, "BWD_LANES", request.param)
    return request.param


def make_inputs(b, d, n, l, g, dtype, options, device="cpu", seed=0, decay=1.0):
    gen = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=gen, dtype=torch.float64)  # noqa: E731
    use_D, use_z, use_bias, softplus, _ = options
    bc = (b, n, l) if g is None else (b, g, n, l)
    t = {
        "u": r(b, d, l),
        "delta": 0.5 * r(b, d, l) + (0.0 if softplus else 1.5),  # positive steps without softplus
        "A": -decay * torch.exp(0.5 * r(d, n)),
        "B": r(*bc),
        "C": r(*bc),
        "D": r(d) if use_D else None,
        "z": r(b, d, l) if use_z else None,
        "delta_bias": 0.3 * r(d) if use_bias else None,
    }
    if not softplus:
        t["delta"] = t["delta"].abs()
    return {k: None if v is None else v.to(device, dtype).requires_grad_() for k, v in t.items()}


def run(fn, inputs, options, weights=None):
    """Outputs (y[, h]) and the gradients of a fixed random projection of them w.r.t. every input."""
    softplus, last = options[3], options[4]
    out = fn(**inputs, delta_softplus=softplus, return_last_state=last)
    y, h = out if last else (out, None)
    outs = [y] if h is None else [y, h]
    if weights is None:
        gen = torch.Generator().manual_seed(1)
        weights = [torch.randn(o.shape, generator=gen, dtype=torch.float64).to(o.device, o.dtype) for o in outs]
    loss = sum((o * w).sum() for o, w in zip(outs, weights))
    names = [k for k, v in inputs.items() if v is not None]
    grads = torch.autograd.grad(loss, [inputs[k] for k in names])
    return outs, dict(zip(names, grads)), weights


def assert_close_scaled(actual, expected, dtype, name):
    rtol, atol = TOL[dtype]
    scale = expected.abs().max().item() if expected.numel() else 1.0
    torch.testing.assert_close(actual.double(), expected.double(), rtol=rtol, atol=atol * max(scale, 1e-30),
                               msg=lambda m: f"{name}: {m}")


def compare_with_ref(b, d, n, l, g, options, dtype, backend):
    inputs = make_inputs(b, d, n, l, g, dtype, options)
    outs, grads, w = run(lambda **k: selective_scan(**k, backend=backend), inputs, options)
    ref_inputs = {k: None if v is None else v.detach().double().requires_grad_() for k, v in inputs.items()}
    ref_outs, ref_grads, _ = run(selective_scan_ref, ref_inputs, options, [x.double() for x in w])
    assert outs[0].dtype == dtype
    for name, a, e in zip(("y", "h_L"), outs, ref_outs):
        assert_close_scaled(a, e, dtype, name)
    assert grads.keys() == ref_grads.keys()
    for name in grads:
        assert grads[name].dtype == dtype and grads[name].shape == inputs[name].shape
        assert_close_scaled(grads[name], ref_grads[name], dtype, f"d{name}")


IDS = dict(ids=lambda s: "b{}d{}n{}l{}g{}".format(*s))
OPTION_IDS = dict(ids=lambda o: "".join("DzbSh"[i] if v else "-" for i, v in enumerate(o)))


@pytest.mark.parametrize("shape", SHAPES, **IDS)
@pytest.mark.parametrize("options", OPTIONS, **OPTION_IDS)
def test_numba_float64_matches_reference(lanes, shape, options):
    compare_with_ref(*shape, options, torch.float64, "numba")


@pytest.mark.parametrize("shape", SHAPES, **IDS)
@pytest.mark.parametrize("options", OPTIONS, **OPTION_IDS)
def test_torch_ops_float64_matches_reference(shape, options):
    compare_with_ref(*shape, options, torch.float64, "torch")


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("shape", SHAPES[1:5] + SHAPES[6:], **IDS)
@pytest.mark.parametrize("options", OPTIONS[:2], **OPTION_IDS)
def test_float32_matches_reference(backend, shape, options):
    compare_with_ref(*shape, options, torch.float32, backend)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("shape", SHAPES, **IDS)
@pytest.mark.parametrize("options", OPTIONS[:2], ids=["all", "none"])
def test_no_grad_path_matches_grad_path(backend, shape, options):
    """Inference (no autograd: nothing saved) gives the training forward's values to float32 rounding."""
    inputs = make_inputs(*shape, torch.float32, options)
    kw = dict(delta_softplus=options[3], return_last_state=True, backend=backend)
    y_grad, h_grad = selective_scan(**inputs, **kw)
    with torch.no_grad():
        y, h = selective_scan(**inputs, **kw)
    torch.testing.assert_close(y, y_grad.detach(), rtol=4e-6, atol=1e-6)
    torch.testing.assert_close(h, h_grad.detach(), rtol=4e-6, atol=1e-6)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_long_sequence_strong_decay_is_finite(backend):
    """L = 6400 with delta*A down to about -500 (exp underflows): finite where the reference is finite."""
    options = (True, False, True, True, True)
    b, d, n, l = 1, 4, 4, 6400
    inputs = make_inputs(b, d, n, l, 1, torch.float32, options, decay=20.0)
    with torch.no_grad():
        inputs["delta"].add_(3.0)  # softplus(delta) ~ 3, |A| ~ 20 * e^(0.5 N(0,1))
    assert (F.softplus(inputs["delta"] + inputs["delta_bias"][:, None]).max() * -inputs["A"].min()).item() > 100
    outs, grads, w = run(lambda **k: selective_scan(**k, backend=backend), inputs, options)
    for t in (*outs, *grads.values()):
        assert torch.isfinite(t).all()
    with torch.no_grad():
        y_ref, h_ref = selective_scan_ref(**inputs, delta_softplus=True, return_last_state=True)
    assert torch.isfinite(y_ref).all()
    torch.testing.assert_close(outs[0], y_ref, rtol=1e-4, atol=1e-4 * y_ref.abs().max().item())
    torch.testing.assert_close(outs[1], h_ref, rtol=1e-4, atol=1e-4 * h_ref.abs().max().item())


@pytest.mark.parametrize("backend", ["numba", "torch", "ref"])
def test_autocast_bfloat16_keeps_dtype_and_float32_math(backend):
    inputs = make_inputs(2, 4, 3, 20, 2, torch.bfloat16, OPTIONS[0])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y, h = selective_scan(**inputs, delta_softplus=True, return_last_state=True, backend=backend)
    assert y.dtype == torch.bfloat16 and h.dtype == torch.float32
    f32 = {k: None if v is None else v.detach().float() for k, v in inputs.items()}
    y32, h32 = selective_scan_ref(**f32, delta_softplus=True, return_last_state=True)
    torch.testing.assert_close(h, h32, rtol=1e-5, atol=1e-5 * h32.abs().max().item())  # float32 inside
    torch.testing.assert_close(y, y32.bfloat16(), rtol=1e-2, atol=1e-2 * y32.abs().max().item())
    y.float().sum().backward()
    assert inputs["u"].grad.dtype == torch.bfloat16 and torch.isfinite(inputs["u"].grad.float()).all()


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_inputs_changed_in_place_after_forward_are_caught(backend):
    inputs = make_inputs(1, 4, 3, 9, 2, torch.float32, OPTIONS[0])
    u = inputs["u"] * 1  # a non-leaf, so it may be modified in place
    y = selective_scan(**dict(inputs, u=u), delta_softplus=True, backend=backend)
    u.add_(1.0)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()


def test_thread_count_follows_torch():
    """The numba kernels use torch's thread count, and running them leaves torch's setting alone."""
    import numba

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        compare_with_ref(2, 6, 4, 13, 3, OPTIONS[0], torch.float32, "numba")
        assert torch.get_num_threads() == 1 and numba.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_bad_groups_raise():
    inputs = make_inputs(1, 6, 3, 5, 4, torch.float32, OPTIONS[1])  # 6 channels, 4 groups
    with pytest.raises(ValueError, match="divisible"):
        selective_scan(**inputs, backend="numba")


def test_different_groups_of_B_and_C():
    """B with 2 groups and C with 3: both are expanded to 6 (their least common multiple), gradients summed back."""
    inputs = make_inputs(1, 6, 3, 11, 2, torch.float64, OPTIONS[0])
    inputs["C"] = torch.randn(1, 3, 3, 11, dtype=torch.float64, requires_grad=True)
    outs, grads, w = run(lambda **k: selective_scan(**k, backend="numba"), inputs, OPTIONS[0])
    ref, ref_grads, _ = run(selective_scan_ref, inputs, OPTIONS[0], w)
    for a, e in zip(outs + list(grads.values()), ref + list(ref_grads.values())):
        assert_close_scaled(a, e, torch.float64, "y, h or a gradient")
    assert grads["B"].shape == (1, 2, 3, 11) and grads["C"].shape == (1, 3, 3, 11)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("backend", ["torch", "cuda"])
def test_cuda_matches_reference(backend):
    if backend == "cuda" and not has_mamba_ssm():
        pytest.skip("mamba_ssm is not installed")
    options = OPTIONS[0]
    for shape in SHAPES[1:5]:
        inputs = make_inputs(*shape, torch.float32, options, device="cuda")
        outs, grads, w = run(lambda **k: selective_scan(**k, backend=backend), inputs, options)
        ref_inputs = {k: None if v is None else v.detach().double().requires_grad_() for k, v in inputs.items()}
        ref_outs, ref_grads, _ = run(selective_scan_ref, ref_inputs, options, [x.double() for x in w])
        for name, a, e in zip(("y", "h_L"), outs, ref_outs):
            assert_close_scaled(a, e, torch.float32, name)
        for name in grads:
            assert_close_scaled(grads[name], ref_grads[name], torch.float32, f"d{name}")


def _bench_module():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_scan.py"
    spec = importlib.util.spec_from_file_location("bench_scan", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmark_baselines_solve_the_same_problem():
    """benchmarks/bench_scan.py: the loop baseline computes what the backends compute, and one interleaved case
    runs into a table (keeps the benchmark from rotting)."""
    bench = _bench_module()
    p = bench.make_problem(2, 3, 21, False)
    with torch.no_grad():
        y = bench.run_backend(p, "ref")
        for impl in ("loop", "numba", "torch"):
            torch.testing.assert_close(bench.IMPLS[impl](p), y, rtol=1e-4, atol=1e-4 * y.abs().max().item())
    text = bench.main(cases="1x2x9", repeats=1, threads=1)
    assert "| 1 x 16 (2 x 8) x 9 |" in text and text.count("x |") >= 1 and "loop / numba f+b" in text


class TinyScanBlock(torch.nn.Module):
    """cross_scan -> selective_scan -> cross_merge with scan parameters from a 1x1 conv (the real blocks
    come from nn/; this keeps the export test on the ops alone)."""

    def __init__(self, c=4, n=8, k=8):
        super().__init__()
        d = k * c
        self.k = k
        self.A_log = torch.nn.Parameter(torch.log(torch.arange(1, n + 1).float()).repeat(d, 1))
        self.D = torch.nn.Parameter(torch.ones(d))
        self.dt_bias = torch.nn.Parameter(0.1 * torch.randn(d))
        self.proj = torch.nn.Conv2d(c, 2 * n + c, 1)

    def forward(self, x):
        b, c, h, w = x.shape
        xs = cross_scan(x, self.k)  # (b, k, c, l)
        l = xs.shape[-1]
        n = self.A_log.shape[1]
        bcd = cross_scan(self.proj(x), self.k)  # (b, k, 2n + c, l)
        Bs, Cs, dts = bcd[:, :, :n], bcd[:, :, n:2 * n], bcd[:, :, 2 * n:]
        y = selective_scan(xs.reshape(b, -1, l), dts.reshape(b, -1, l), -torch.exp(self.A_log), Bs, Cs, self.D,
                           None, self.dt_bias, True)
        return cross_merge(y.view(b, self.k, c, l), h, w).view(b, c, h, w)


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning", "ignore::UserWarning", "ignore::DeprecationWarning")
def test_onnx_export_matches_and_is_length_generic(tmp_path):
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    model = TinyScanBlock().eval()
    x = torch.randn(1, 4, 20, 20)  # L = 400
    model(x)  # an eager call first: nothing size-specific may be cached into the graph
    path = str(tmp_path / "scan.onnx")
    torch.onnx.export(model, (x,), path, dynamo=False, opset_version=17, input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "b", 2: "h", 3: "w"}, "y": {0: "b", 2: "h", 3: "w"}})
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    for shape in [(1, 4, 20, 20), (2, 4, 12, 12), (1, 4, 7, 13)]:
        xx = torch.randn(*shape)
        with torch.no_grad():
            expected = model(xx).numpy()
        actual = session.run(None, {"x": xx.numpy()})[0]
        assert actual.shape == expected.shape
        torch.testing.assert_close(torch.from_numpy(actual), torch.from_numpy(expected), rtol=1e-4,
                                   atol=1e-4 * abs(expected).max())


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning", "ignore::FutureWarning")
def test_torchscript_trace_is_length_generic(tmp_path):
    torch.manual_seed(0)
    model = TinyScanBlock().eval()
    traced = torch.jit.trace(model, torch.randn(1, 4, 6, 5))
    path = str(tmp_path / "scan.pt")
    traced.save(path)
    loaded = torch.jit.load(path)
    for shape in [(1, 4, 6, 5), (2, 4, 4, 9)]:
        xx = torch.randn(*shape)
        with torch.no_grad():
            torch.testing.assert_close(loaded(xx), model(xx), rtol=1e-4, atol=1e-4)
