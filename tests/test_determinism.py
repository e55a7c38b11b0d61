"""Determinism: same seed + deterministic=True gives bit-identical weights on CPU.

What is and is not promised (checked here and in docs/robustness.md): on one machine with one thread count, two
trainings are bit-identical, numba's parallel scan kernels included (every task writes its own rows; the caller sums
the per-part dB/dC in a fixed order). Across thread counts results differ in the last bits: the backward splits dB/dC
into a number of parts that depends on the thread count, and stock PyTorch CPU convolutions already differ the same
way (docs/robustness.md's threads block counts the yolov8n gradients that differ, written by
benchmarks/bench_robustness.py).
"""

import os
import subprocess
import sys

import pytest
import torch

from ultra_fer_mamba.ops import selective_scan

TRAIN = """
import sys, torch
from ultralytics import YOLO
data, out = sys.argv[1], sys.argv[2]
model = YOLO("fer-yolo-mamba-n.yaml")
model.add_callback("on_train_end", lambda t: torch.save(
    {k: v.detach().clone() for k, v in t.model.state_dict().items()}, out + "/fp32.pt"))
model.train(data=data, epochs=1, imgsz=64, batch=4, nbs=4, device="cpu", workers=0, seed=0, deterministic=True,
            project=out, name="run", plots=False, val=False, verbose=False)
print("threads", torch.get_num_threads())
"""


def _train(data, out):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(YOLO_OFFLINE="1", YOLO_CONFIG_DIR=str(out / "cfg"))
    out.mkdir()
    r = subprocess.run([sys.executable, "-c", TRAIN, str(data), str(out)], env=env, cwd=out, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    ema = torch.load(out / "run" / "weights" / "last.pt", map_location="cpu", weights_only=False)["model"]
    return ema.state_dict(), torch.load(out / "fp32.pt"), r.stdout


def test_two_cpu_trainings_with_the_same_seed_are_identical(tiny_data, tmp_path):
    """Fresh interpreters, 1 epoch (nbs=batch: an optimizer step every batch): every tensor equal, exactly."""
    (ema_a, fp32_a, out_a), (ema_b, fp32_b, out_b) = (_train(tiny_data, tmp_path / x) for x in "ab")
    assert out_a.split("threads")[-1] == out_b.split("threads")[-1]
    for name, (a, b) in {"last.pt": (ema_a, ema_b), "fp32 model": (fp32_a, fp32_b)}.items():
        assert a.keys() == b.keys() and len(a) > 300
        different = [k for k in a if not torch.equal(a[k], b[k])]
        assert not different, f"{name}: {len(different)} tensors differ, e.g. {different[:5]}"
    a_logs = [v for k, v in fp32_a.items() if k.endswith("A_logs")]  # trained through the scan's backward
    init = torch.log(torch.arange(1, a_logs[0].shape[1] + 1, dtype=torch.float32))
    assert a_logs and all(not torch.equal(v, init.expand_as(v)) for v in a_logs)


@pytest.mark.parametrize("b, g, d", [(1, 1, 64), (1, 8, 64), (2, 8, 128)])  # (1, *): several parts per (batch, group)
def test_scan_backward_is_bitwise_repeatable(b, g, d):
    """The parallel numba backward (tasks race for threads) gives the same bits every time."""
    gen = torch.Generator().manual_seed(0)
    n, l = 16, 333
    mk = lambda *shape: torch.randn(*shape, generator=gen)  # noqa: E731
    inputs = [mk(b, d, l), mk(b, d, l), -torch.rand(d, n, generator=gen) - 0.5, mk(b, g, n, l), mk(b, g, n, l),
              torch.ones(d), mk(b, d, l), torch.zeros(d)]
    results = []
    for _ in range(3):
        leaves = [t.clone().requires_grad_() for t in inputs]
        y = selective_scan(*leaves[:6], z=leaves[6], delta_bias=leaves[7], delta_softplus=True, backend="numba")
        (y * torch.linspace(-1, 1, l)).sum().backward()
        results.append([y.detach()] + [t.grad for t in leaves])
    for other in results[1:]:
        assert all(torch.equal(x, y) for x, y in zip(results[0], other))
