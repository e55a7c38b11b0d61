"""Numerics at the lengths imgsz 1280 gives (L = 160 * 160 = 25,600 at P3, 6,400 at P4), under autocast, and with NaN.

- the fast scan ("numba" backend) against the sequential reference ("ref") at full length, for the
  initial (fast) decay and a slow decay whose state integrates over the whole sequence, both also against float64;
- gradients at long length against a plain O(L) recurrence written here (the "ref" backend's autograd is O(L^2):
  about 230 s at L = 6,400, so it cannot serve);
- FERYOLOVSS2 under autocast (bf16 on CPU, fp16 on CUDA) within 1e-2 relative of fp32;
- non-finite values: the fast kernel (fastmath) propagates NaN/Inf exactly where the reference does, never masking
  them; a block fed NaN while training raises when FER_MAMBA_CHECK_FINITE=1, and by default Ultralytics' trainer
  rolls the run back to last.pt (docs/robustness.md).
"""

import logging
import math

import pytest
import torch
import torch.nn.functional as F

import ultra_fer_mamba.nn.vss as vss
from ultra_fer_mamba.nn import FERYOLOVSS2
from ultra_fer_mamba.ops import selective_scan, set_scan_backend, get_scan_backend

P3_1280, P4_1280 = 160 * 160, 80 * 80


def _inputs(l, decay, b=1, d=16, n=16, seed=0, dtype=torch.float32):
    """Scan inputs (u, delta, A, B, C, D, z, delta_bias) of length l; decay "init" (A = -(1..n), dt ~ 0.02, as
    OSSM starts) or "slow" (|A| in [1e-5, 1e-2], dt ~ 2.5e-3: h_t sums over the whole sequence)."""
    g = torch.Generator().manual_seed(seed)
    mk = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)  # noqa: E731
    u, delta, B, C, z = mk(b, d, l), 0.5 * mk(b, d, l), mk(b, 1, n, l), mk(b, 1, n, l), mk(b, d, l)
    if decay == "init":
        A, bias = -torch.arange(1, n + 1, dtype=torch.float64).expand(d, n), torch.full((d,), -4.0, dtype=torch.float64)
    else:
        A = -torch.logspace(-5, -2, n, dtype=torch.float64).expand(d, n)
        bias = torch.full((d,), -6.0, dtype=torch.float64)
    return [t.contiguous().to(dtype) for t in (u, delta, A, B, C, torch.ones(d, dtype=torch.float64), z, bias)]


def _scan(args, backend, last_state=True):
    u, delta, A, B, C, D, z, bias = args
    return selective_scan(u, delta, A, B, C, D, z=z, delta_bias=bias, delta_softplus=True,
                          return_last_state=last_state, backend=backend)


@pytest.mark.parametrize("decay", ["init", "slow"])
def test_scan_matches_reference_at_imgsz_1280(decay, backend="numba"):
    """L = 25,600, d = 16 (the P3 length at imgsz 1280, few channels so the reference loop takes ~1 s)."""
    args = _inputs(P3_1280, decay)
    y, h = _scan(args, backend)
    y_ref, h_ref = _scan(args, "ref")
    y64, h64 = _scan([t.double() for t in args], "ref")  # ground truth for both
    assert torch.isfinite(y).all() and torch.isfinite(h).all()
    scale = y64.abs().max().item()
    for got, ref, exact in ((y, y_ref, y64), (h, h_ref, h64)):
        err, ref_err = (got.double() - exact).abs().max().item(), (ref.double() - exact).abs().max().item()
        assert (got - ref).abs().max().item() <= 1e-3 * scale  # fast vs reference scan
        assert err <= 2 * ref_err + 1e-6 * scale, (err, ref_err)  # no worse than fp32 accumulation itself


def _loop_scan(u, delta, A, B, C, D, z, bias):
    """The recurrence of SPEC section 5, one group, with O(L) autograd (per-step slices by unbind)."""
    dt = F.softplus(delta + bias[:, None])  # (b, d, l)
    us, dts, Bs, Cs = u.unbind(-1), dt.unbind(-1), B[:, 0].unbind(-1), C[:, 0].unbind(-1)  # (b, d), (b, n)
    h, ys = u.new_zeros(u.shape[0], u.shape[1], A.shape[1]), []  # (b, d, n)
    for t in range(u.shape[-1]):
        h = torch.exp(dts[t][..., None] * A) * h + (dts[t] * us[t])[..., None] * Bs[t][:, None, :]
        ys.append((h * Cs[t][:, None, :]).sum(-1))
    return (torch.stack(ys, -1) + u * D[:, None]) * F.silu(z)


def _check_gradients(l, decay):
    """Gradients of the fast scan against the fp32 loop (same math), both judged against float64."""
    args = _inputs(l, decay)
    w = torch.linspace(-1, 1, l, dtype=torch.float64)
    grads = []
    fast, loop = (lambda a: _scan(a, "numba", last_state=False)), (lambda a: _loop_scan(*a))
    for fn, dtype in ((fast, torch.float32), (loop, torch.float32), (fast, torch.float64)):
        leaves = [t.to(dtype).clone().requires_grad_() for t in args]
        (fn(leaves) * w.to(dtype)).sum().backward()
        grads.append([t.grad.double() for t in leaves])
    for name, got, loop, exact in zip(("u", "delta", "A", "B", "C", "D", "z", "delta_bias"), *grads):
        scale = exact.abs().max()
        assert torch.isfinite(got).all(), name
        assert (got - loop).abs().max() <= 1e-3 * scale, name  # fast vs the plain recurrence
        # fp32 rounding only: the kernel sums dA, dD, d(delta_bias) over l sequentially, autograd pairwise, hence
        # the 1e-5 floor (sequential sums over 25,600 steps)
        assert (got - exact).abs().max() <= 2 * (loop - exact).abs().max() + 1e-5 * scale, name


@pytest.mark.parametrize("decay", ["init", "slow"])
def test_scan_gradients_at_imgsz_1280_p4(decay):
    _check_gradients(P4_1280, decay)


@pytest.mark.slow
@pytest.mark.parametrize("decay", ["init", "slow"])
def test_scan_gradients_at_imgsz_1280_p3(decay):
    _check_gradients(P3_1280, decay)  # ~25 s each: the loop's autograd over 25,600 steps


@pytest.mark.slow
def test_scan_torch_ops_path_at_imgsz_1280():
    """The chunked torch-ops path (what runs on a device without a kernel) at full length."""
    test_scan_matches_reference_at_imgsz_1280("slow", backend="torch")


def _with_backend(name, fn):
    before = get_scan_backend()
    set_scan_backend(name)
    try:
        return fn()
    finally:
        set_scan_backend(before)


def test_block_matches_reference_at_imgsz_1280():
    """FERYOLOVSS2 at P3 of imgsz 1280 (160 x 160), fast scan vs reference scan, same weights."""
    torch.manual_seed(0)
    m = FERYOLOVSS2(16, 16).eval()
    x = torch.randn(1, 16, 160, 160)
    with torch.no_grad():
        y = _with_backend("numba", lambda: m(x))
        y_ref = _with_backend("ref", lambda: m(x))
    assert torch.isfinite(y).all()
    torch.testing.assert_close(y, y_ref, rtol=1e-4, atol=1e-4 * y_ref.abs().max().item())


@pytest.mark.slow
def test_model_at_imgsz_1280_stays_finite():
    """The whole n model at 1280: eval output and a training forward/backward (every gradient) are finite."""
    from ultralytics.nn.tasks import DetectionModel

    torch.manual_seed(0)
    model = DetectionModel("fer-yolo-mamba-n.yaml", nc=7, verbose=False)
    x = torch.rand(1, 3, 1280, 1280)
    with torch.no_grad():
        assert torch.isfinite(model.eval()(x)[0]).all()
    out = model.train()(x)
    sum(t.float().sum() for t in _tensors(out)).backward()
    bad = [n for n, p in model.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
    assert not bad, bad


def _tensors(o):
    if torch.is_tensor(o):
        return [o]
    if isinstance(o, dict):
        o = list(o.values())
    return [t for v in (o if isinstance(o, (list, tuple)) else []) for t in _tensors(v)]


# ---------------------------------------------------------------- autocast
def _rel(a, b):
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


def _autocast_check(device, dtype):
    torch.manual_seed(0)
    m = FERYOLOVSS2(64, 64).to(device)
    x = torch.randn(2, 64, 20, 20, device=device)
    w = torch.linspace(-1, 1, x.numel(), device=device).view_as(x)
    results = {}
    for mode in ("eval", "train"):
        getattr(m, mode)()
        for low in (False, True):
            m.zero_grad()
            xx = x.clone().requires_grad_()
            with torch.autocast(device, dtype=dtype, enabled=low):
                y = m(xx)
            (y.float() * w).sum().backward()
            results[mode, low] = y.detach().float(), xx.grad, [p.grad for p in m.parameters()]
        (y32, gx32, _), (ylo, gxlo, gps) = results[mode, False], results[mode, True]
        assert torch.isfinite(ylo).all() and all(torch.isfinite(g).all() for g in gps), mode
        assert _rel(ylo, y32) <= 1e-2, (mode, _rel(ylo, y32))  # the block output
        assert _rel(ylo - x, y32 - x) <= 1e-2, mode  # its residual branch alone, the harder test
        assert _rel(gxlo, gx32) <= 5e-2, (mode, _rel(gxlo, gx32))  # gradients: finite, half-precision close
    return results


def test_block_under_bf16_autocast_on_cpu():
    _autocast_check("cpu", torch.bfloat16)


@pytest.mark.cuda
def test_block_under_fp16_autocast_on_cuda():
    _autocast_check("cuda", torch.float16)


# ---------------------------------------------------------------- non-finite values
@pytest.mark.parametrize("name", ["u", "delta", "B", "C"])
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_fast_scan_propagates_non_finite_like_the_reference(name, value):
    """fastmath in the numba kernel must not turn NaN/Inf into finite numbers: same non-finite pattern as "ref"."""
    args = _inputs(300, "init")
    i = {"u": 0, "delta": 1, "B": 3, "C": 4}[name]
    args[i][(0, 0, 2, 100) if args[i].dim() == 4 else (0, 3, 100)] = value
    y = _scan(args, "numba", last_state=False)
    y_ref = _scan(args, "ref", last_state=False)
    assert torch.equal(torch.isfinite(y), torch.isfinite(y_ref))
    assert (~torch.isfinite(y)).any() or (name, value) == ("delta", -math.inf)  # softplus(-inf) = 0: a no-op step
    if math.isnan(value):  # (with an Inf, NaN or +-Inf in a given output depends on the order of a sum)
        assert torch.equal(torch.isnan(y), torch.isnan(y_ref))


def test_block_fed_nan_by_default_spreads_it_visibly():
    """Default: no check in forward; a NaN comes out as NaN (never silently finite) for the loss to show."""
    m = FERYOLOVSS2(32, 32).train()
    x = torch.randn(2, 32, 8, 8)
    x[0, 20, 3, 3] = math.nan  # one value in the OSS half
    y = m(x)
    assert torch.isnan(y[0]).any()


def test_block_fed_nan_raises_with_check_finite(monkeypatch):
    from ultralytics.nn.tasks import DetectionModel

    monkeypatch.setattr(vss, "CHECK_FINITE", True)
    model = DetectionModel("fer-yolo-mamba-n.yaml", nc=7, verbose=False)
    block = model.model[13]

    x = torch.randn(2, block.proj.in_channels, 4, 4)
    x[1, 0, 2, 2] = math.nan
    with pytest.raises(FloatingPointError, match=rf"^layer 13 FERYOLOVSS1 got 1 NaN/Inf input values of {x.numel()} "
                                                 r"while training \(FER_MAMBA_CHECK_FINITE=1\)"):
        block.train()(x)
    assert torch.isnan(block.eval()(x)).any()  # inference is never interrupted
    block.train()(torch.randn_like(x))  # finite input: no error


def test_nan_during_training_is_rolled_back_by_ultralytics(tiny_data, tmp_path):
    """A NaN fed to a block in epoch 2: the optimizer step spreads it to the weights, Ultralytics sees the
    non-finite loss at the epoch's end, warns, reloads last.pt and redoes the epoch; the run ends with 3 epochs and
    finite weights. (In epoch 1 there is no last.pt to go back to: Ultralytics warns and continues; and with gradient
    accumulation a NaN gradient waits in .grad for the next step; see docs/robustness.md.)"""
    from ultralytics import YOLO
    from ultralytics.utils import LOGGER

    state = {"armed": False, "fired": 0}

    def poison(module, args):
        if state["armed"] and module.training:
            state["armed"], state["fired"] = False, state["fired"] + 1
            x = args[0].clone()
            x[0, 0, 0, 0] = math.nan
            return (x,)

    def on_train_start(trainer):
        state["hook"] = trainer.model.model[13].register_forward_pre_hook(poison)

    def on_train_epoch_start(trainer):
        state["armed"] = trainer.epoch == 1 and not state["fired"]

    def on_train_epoch_end(trainer):  # before the checks, saves and EMA copies of the epoch's end
        if state["fired"]:
            state["hook"].remove()

    warnings = []
    model = YOLO("fer-yolo-mamba-n.yaml")
    model.add_callback("on_train_start", on_train_start)
    model.add_callback("on_train_epoch_start", on_train_epoch_start)
    model.add_callback("on_train_epoch_end", on_train_epoch_end)
    handler, level = _Collect(warnings), LOGGER.level
    LOGGER.addHandler(handler)
    LOGGER.setLevel(logging.WARNING)  # YOLO_VERBOSE=false in tests hides warnings
    try:
        model.train(data=str(tiny_data), epochs=3, imgsz=64, batch=4, device="cpu", workers=0, project=str(tmp_path),
                    name="nan", plots=False, amp=False, verbose=False, nbs=4)  # nbs=batch: a step every batch
    finally:
        LOGGER.removeHandler(handler)
        LOGGER.setLevel(level)
    assert state["fired"] == 1
    assert any("Loss NaN/Inf detected (attempt 1/3), recovering from last.pt" in w for w in warnings), warnings
    trainer = model.trainer
    assert trainer.epoch == 2 and len(trainer.read_results_csv()["epoch"]) == 3
    ckpt = torch.load(trainer.last, weights_only=False)
    final = ckpt.get("ema") or ckpt["model"]  # the final last.pt is stripped: the EMA became "model"
    assert all(torch.isfinite(v).all() for v in final.state_dict().values() if v.is_floating_point())


class _Collect(logging.Handler):
    """Collects WARNING messages."""

    def __init__(self, sink):
        super().__init__(logging.WARNING)
        self.sink = sink

    def emit(self, record):
        self.sink.append(record.getMessage())
