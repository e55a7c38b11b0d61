"""The numba kernels' one float32 math module (ops/numba/math.py) against float64: pow2, exp, softplus, sigmoid."""

import numpy as np
import pytest

numba = pytest.importorskip("numba")
M = pytest.importorskip("ultra_fer_mamba.ops.numba.math")


@numba.njit
def _run(x, coef, out):
    cf = M.unpack(coef)
    for i in range(x.shape[0]):
        out[0, i] = M.pow2(x[i], cf)
        out[1, i] = M.exp(x[i], cf)
        out[2, i] = M.softplus(x[i], cf)
        out[3, i] = M.sigmoid(x[i], cf)


def helpers(x):
    """pow2, exp, softplus, sigmoid of x, each as an array of x's dtype."""
    out = np.empty((4, x.shape[0]), x.dtype)
    _run(x, M.coefficients(x.dtype), out)
    return out


def test_float32_within_a_few_ulp_over_the_scans_ranges():
    """pow2 within 2 ulp on [-125, 127]; exp within 2 ulp plus the rounding of x log2(e); softplus and sigmoid within
    2e-6 relative on [-30, 30]."""
    x = np.linspace(-125.0, 127.0, 1_000_003).astype(np.float32)
    p2 = helpers(x)[0]
    assert np.abs(p2 / np.exp2(x.astype(np.float64)) - 1).max() < 2.4e-7  # 2 ulp
    x = np.linspace(-86.0, 88.0, 700_001).astype(np.float32)  # 2**-125 < exp(x) < 2**127
    x64 = x.astype(np.float64)
    e = helpers(x)[1]
    assert (np.abs(e / np.exp(x64) - 1) <= 2.4e-7 + 1.2e-7 * np.abs(x64)).all()  # + half an ulp of x log2(e)
    x = np.linspace(-30.0, 30.0, 600_001).astype(np.float32)
    x64 = x.astype(np.float64)
    _, _, sp, sg = helpers(x)
    assert np.abs(sp / np.logaddexp(0.0, x64) - 1).max() < 2e-6
    assert np.abs(sg / (1 / (1 + np.exp(-x64))) - 1).max() < 2e-6


def test_float32_clamps_instead_of_subnormals_or_wrapping():
    p2, e, sp, sg = helpers(np.array([-1e4, -300.0, 200.0], np.float32))
    assert p2[0] == p2[1] == np.float32(2.0**-125) and np.isfinite(p2[2])  # never subnormal or wrapped
    assert sp[2] == np.float32(200.0) and 0.0 < sp[1] < 1e-37
    assert sg[0] < 1e-37 and sg[2] == np.float32(1.0)


def test_float64_is_exact():
    x = np.linspace(-50.0, 50.0, 1001)
    p2, e, sp, sg = helpers(x)
    np.testing.assert_allclose(p2, np.exp2(x), rtol=1e-14)
    np.testing.assert_allclose(e, np.exp(x), rtol=1e-14)
    np.testing.assert_allclose(sp, np.logaddexp(0.0, x), rtol=1e-14)
    np.testing.assert_allclose(sg, 1 / (1 + np.exp(-x)), rtol=1e-14)
