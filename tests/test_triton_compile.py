"""The Triton kernels compile for NVIDIA GPUs (sm_80, sm_90) here, without a GPU.

The interpreter runs Python semantics and misses what only the compiler rejects (a global a kernel reads that
is not a constexpr, a type that does not unify across a loop); Triton compiles ahead of time for a named target
with the ptxas it ships. The kernels must be decorated without TRITON_INTERPRET, so this runs in a subprocess.
"""

import os
import subprocess
import sys

import pytest

SCRIPT = r'''
import sys
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from ultra_fer_mamba.ops.triton import config, kernels

assert not kernels.INTERPRETED
FWD_PTRS = ("u", "delta", "dts", "wdt", "A", "B", "C", "bias", "order", "y", "hck", "hlast")
BWD_PTRS = ("u", "delta", "A", "B", "C", "bias", "order", "hck", "dy", "dhlast", "work", "du", "ddelta", "dA", "dB", "dC")
INPUTS = ("u", "dts", "B", "C")  # what AMP hands over in half precision; the rest is float32

def build(fn, ptrs, ints, consts, dtype, arch):
    sig = {p: "*i64" if p == "order" else "*" + (dtype if p in INPUTS else "fp32") for p in ptrs}
    sig.update({i: "i32" for i in ints})
    sig.update({k: "constexpr" for k in consts})
    common = dict(CHUNK=config.CHUNK, BLOCK_N=16, STAGES=config.NUM_STAGES)
    kernel = triton.compile(ASTSource(fn, sig, {**common, **consts}), target=GPUTarget("cuda", arch, 32),
                            options={"num_warps": config.NUM_WARPS})
    assert kernel.asm["cubin"]

FWD_INTS, BWD_INTS = ("L", "NB", "s_bl", "s_bk", "s_rl", "s_rk"), ("L", "NB", "s_bl", "s_bk")
FUSED = dict(K=8, E=256, N=16, BLOCK_D=32, ORDERED=True, SOFTPLUS=True)  # OSSM's P3 layer
PLAIN = dict(K=2, E=3, N=16, BLOCK_D=4, U_PER_DIR=True, ORDERED=False, SOFTPLUS=False)
for arch, dtype, consts in (
        (90, "fp16", dict(FUSED, R=8, KP=8, BLOCK_R=8, U_PER_DIR=False, LOWRANK=True, SAVE=False, LAST=False)),
        (90, "bf16", dict(FUSED, R=1, KP=2, BLOCK_R=1, U_PER_DIR=False, LOWRANK=False, SAVE=True, LAST=False)),
        (90, "fp32", dict(PLAIN, R=1, KP=1, BLOCK_R=1, LOWRANK=False, SAVE=True, LAST=True))):
    build(kernels.scan_fwd, FWD_PTRS, FWD_INTS, consts, dtype, arch)
for arch, dtype, consts in ((90, "bf16", dict(FUSED, U_PER_DIR=False, LAST=False)),
                            (80, "fp16", dict(FUSED, U_PER_DIR=False, LAST=False)), (90, "fp32", dict(PLAIN, LAST=True))):
    build(kernels.scan_bwd, BWD_PTRS, BWD_INTS, consts, dtype, arch)
print("compiled")
'''


def test_kernels_compile_for_nvidia_targets():
    pytest.importorskip("triton.backends.nvidia", reason="this triton has no NVIDIA backend")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    run = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0 and "compiled" in run.stdout, run.stderr[-3000:]
