"""The one backend decision (ops/backend.py): names, environment variable, setter and getter, what "auto" picks,
every unmet explicit request raising with its reason, a numba import failure logged once, and the export path."""

import logging
import os
import re
import subprocess
import sys
import types

import pytest
import torch
from ultralytics.utils import LOGGER

from ultra_fer_mamba.ops import backend, get_scan_backend, resolve, selective_scan, selective_scan_ref, set_scan_backend


def _scan_inputs(b=1, d=4, n=3, l=9, seed=0):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    return r(b, d, l), r(b, d, l), -torch.rand(d, n, generator=g) - 0.5, r(b, 1, n, l), r(b, 1, n, l)


@pytest.fixture
def default_backend():
    """Restores the process-wide default after a test that sets it."""
    before = backend._default
    yield
    backend._default = before


@pytest.fixture
def logged():
    """The records LOGGER emits during a test (at INFO and above: the tests run with YOLO_VERBOSE=false)."""
    records, level = [], LOGGER.level
    handler = logging.Handler()
    handler.emit = records.append
    LOGGER.addHandler(handler)
    LOGGER.setLevel(logging.INFO)
    yield records
    LOGGER.setLevel(level)
    LOGGER.removeHandler(handler)


def test_environment_variable_sets_the_default():
    """FER_MAMBA_SCAN_BACKEND in a fresh process: the default and what "auto" runs; a bad value names the variable."""
    code = ("import torch; from ultra_fer_mamba.ops import get_scan_backend, resolve; "
            "print(get_scan_backend(), resolve('auto', torch.zeros(1)), resolve('numba', torch.zeros(1)))")
    env = dict(os.environ, FER_MAMBA_SCAN_BACKEND="torch")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["torch", "torch", "numba"]  # the argument still wins over the default
    env["FER_MAMBA_SCAN_BACKEND"] = "fastest"
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert res.returncode and "environment variable FER_MAMBA_SCAN_BACKEND" in res.stderr and "'fastest'" in res.stderr


def test_setter_getter_and_precedence(default_backend, monkeypatch):
    x = torch.zeros(1)
    monkeypatch.setenv(backend.ENV, "torch")
    backend._default = None
    assert get_scan_backend() == "torch" and resolve("auto", x) == "torch"
    set_scan_backend("REF")  # case-insensitive; the setter wins over the environment
    assert get_scan_backend() == "ref" and resolve("auto", x) == "ref"
    assert resolve("numba", x) == "numba"  # an explicit argument wins over both
    with pytest.raises(ValueError, match=r"set_scan_backend.*'fastest' is not one of"):
        set_scan_backend("fastest")
    with pytest.raises(ValueError, match="'mamba' is not one of"):
        selective_scan(*_scan_inputs(), backend="mamba")


def test_auto_on_cpu_is_numba_and_on_other_devices_torch(default_backend):
    set_scan_backend("auto")
    assert resolve("auto", torch.zeros(1)) == "numba"
    assert resolve("auto", torch.zeros(1, device="meta")) == "torch"  # neither CPU nor CUDA


def test_numba_request_on_another_device_raises_with_its_reason():
    with pytest.raises(RuntimeError, match="backend 'numba' cannot run here: the numba kernels run CPU tensors only, "
                                           "got tensors on meta"):
        resolve("numba", torch.zeros(1, device="meta"))


def test_triton_request_on_cpu_follows_the_package():
    """Without a GPU: the Triton package either does not import (the cause is the reason), or says whether its
    interpreter can run CPU tensors (TRITON_INTERPRET=1): resolve agrees with it, and raises with its reason."""
    x = torch.zeros(1)
    m = backend.module("triton")
    ok, why = m.available(x.device) if m is not None else (False, backend._loaded["triton"])
    if ok:
        assert resolve("triton", x) == "triton"
    else:
        with pytest.raises(RuntimeError, match=f"backend 'triton' cannot run here: {re.escape(why)}"):
            resolve("triton", x)


def test_cuda_request_without_mamba_ssm_or_on_cpu_tensors_raises(monkeypatch):
    x = torch.zeros(1)
    monkeypatch.setitem(backend._loaded, "cuda", "mamba_ssm did not import (ModuleNotFoundError: no mamba_ssm); pip")
    with pytest.raises(RuntimeError, match=r"backend 'cuda' cannot run here: mamba_ssm did not import \(Module"):
        selective_scan(*_scan_inputs(), backend="cuda")
    monkeypatch.setitem(backend._loaded, "cuda", types.SimpleNamespace())  # mamba_ssm "installed"
    with pytest.raises(RuntimeError, match="mamba_ssm's kernel runs CUDA tensors only, got tensors on cpu"):
        resolve("cuda", x)


def test_triton_request_raises_with_the_packages_own_reason(monkeypatch):
    fake = types.SimpleNamespace(available=lambda device: (False, f"no GPU for {device} and TRITON_INTERPRET unset"))
    monkeypatch.setitem(backend._loaded, "triton", fake)
    with pytest.raises(RuntimeError, match="backend 'triton' cannot run here: no GPU for cpu and TRITON_INTERPRET"):
        resolve("triton", torch.zeros(1))
    fake.available = lambda device: (True, "")
    assert resolve("triton", torch.zeros(1)) == "triton"


def test_numba_import_failure_is_logged_once_and_auto_falls_back(monkeypatch, logged, default_backend):
    """numba failing to import: one warning with the cause, "auto" runs the torch ops (still correct), an explicit
    "numba" raises with the same cause."""
    monkeypatch.setitem(sys.modules, "numba", None)  # `import numba` now raises ImportError
    for name in [m for m in sys.modules if m.startswith("ultra_fer_mamba.ops.numba")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(backend, "_loaded", {})
    set_scan_backend("auto")
    x = torch.zeros(1)
    assert resolve("auto", x) == "torch" and resolve("auto", x) == "torch"
    messages = [r.getMessage() for r in logged if "numba" in r.getMessage()]
    assert len(messages) == 1 and "numba did not import (ModuleNotFoundError" in messages[0]
    assert [r.levelname for r in logged if "numba" in r.getMessage()] == ["WARNING"]
    with pytest.raises(RuntimeError, match=r"backend 'numba' cannot run here: numba did not import \(ModuleNotFound"):
        resolve("numba", x)
    u, delta, A, B, C = _scan_inputs()
    torch.testing.assert_close(selective_scan(u, delta, A, B, C), selective_scan_ref(u, delta, A, B, C))


def test_nothing_is_logged_or_imported_at_import():
    """Importing the package imports none of the optional modules and prints nothing."""
    code = ("import sys, ultra_fer_mamba.ops; "
            "print([m for m in ('ultra_fer_mamba.ops.numba', 'ultra_fer_mamba.ops.triton', 'mamba_ssm') "
            "if m in sys.modules])")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert res.stdout.strip() == "[]" and res.stderr == ""


class _Scan(torch.nn.Module):
    def __init__(self, name):
        super().__init__()
        self.name = name

    def forward(self, u, delta, A, B, C):
        assert resolve(self.name, u) == "export"  # while tracing, whatever was asked
        return selective_scan(u, delta, A, B, C, delta_softplus=True, backend=self.name)


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning", "ignore::FutureWarning")
@pytest.mark.parametrize("name", backend.NAMES, ids=lambda n: f"asked-{n}")  # (an id "cuda" would mark it)
def test_tracing_runs_the_export_formulation_whatever_the_backend(name, default_backend):
    """torch.jit.trace with any backend asked for (even one that cannot run here: cuda on CPU tensors) traces the
    export formulation: no kernel (an autograd Function, prim::PythonOp) in the graph, and the values agree."""
    set_scan_backend("cuda")  # the default too: nothing may consult it while tracing
    inputs = _scan_inputs(l=12)
    traced = torch.jit.trace(_Scan(name), inputs, check_trace=False)
    assert "PythonOp" not in str(traced.graph)
    longer = _scan_inputs(l=17, seed=1)  # the traced loop is not locked to the length
    torch.testing.assert_close(traced(*longer), selective_scan_ref(*longer, delta_softplus=True), rtol=1e-4, atol=1e-5)
