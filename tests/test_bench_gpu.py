"""benchmarks/bench_gpu.py: its tables from known rows, the P3-scan part on tiny shapes, and (slow) a whole tiny run.

Without a GPU it runs on the CPU, the Triton kernels in Triton's interpreter (conftest sets TRITON_INTERPRET=1).
"""

import importlib.util
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_gpu.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_gpu", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def cell(ms, mb=float("nan")):
    return {"ms": ms, "peak_mb": mb}


def test_markdown_ratios_and_what_did_not_run(bench):
    cfg = dict(bench.FULL)
    times = {"b1_320": 5.0, "b32_320": 40.0, "b1_640": 6.0, "b32_640": 150.0}
    fer = {"model": "fer-yolo-mamba-s", "asked": "triton", "ran": "triton", "train": cell(90.0, 2048.0),
           **{k: cell(v * 1.2, 100.0) for k, v in times.items()}}
    base = {"model": "yolov8s", "asked": "-", "ran": "-", "train": cell(60.0, 1024.0),
            **{k: cell(v, 50.0) for k, v in times.items()}}
    missing = {"model": "fer-yolo-mamba-s", "asked": "cuda", "error": "RuntimeError: no mamba_ssm"}
    scans = [{"path": "triton fused", "ran": "triton", "fwd": cell(1.0), "fwd_bwd": cell(4.0, 300.0)},
             {"path": "composition, torch", "ran": "torch", "fwd": cell(9.0), "fwd_bwd": cell(30.0, 900.0)}]
    text = bench.markdown(cfg, [fer, missing, base], scans, torch.device("cuda"))
    assert "| fer-yolo-mamba-s | triton | triton | 6.0 | 48.0 | 7.2 | 180.0 | 90.0 | 2048.0 | 100.0 |" in text
    assert "| latency b32 320 (<= 1.3x) | 1.20x |" in text
    assert "| training step b16 320 (<= 1.5x) | 1.50x |" in text
    assert "| composition, torch | torch | 9.0 | 30.0 | 900.0 | 7.50x |" in text
    assert "- fer-yolo-mamba-s, backend cuda: RuntimeError: no mamba_ssm" in text


def test_scan_rows_run_and_say_what_ran(bench):
    """The P3-scan part on tiny shapes: the Triton op runs (and is seen running), the torch composition too."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cfg = dict(repeats=1, warmup=0, scan=dict(b=1, h=2, w=3, e=4, k=4, n=2))
    rows = {r["path"]: r for r in bench.scan_rows(cfg, device, amp=False)}
    assert rows["triton fused"]["ran"] == "triton"
    assert rows["composition, torch"]["ran"] in ("torch", "numba/torch")
    for r in (rows["triton fused"], rows["composition, torch"]):
        assert r["fwd"]["ms"] > 0 and r["fwd_bwd"]["ms"] > 0
    cuda = rows["composition, cuda"]
    assert cuda.get("ran") == "mamba_ssm" or "mamba_ssm" in cuda["error"]


@pytest.mark.slow
def test_tiny_run_end_to_end(bench):
    """The whole benchmark on tiny shapes (fer-yolo-mamba-n / yolov8n at 32 px): every row that runs has numbers."""
    mrows, srows, text = bench.main(tiny=True)
    ran = [r for r in mrows if "error" not in r]
    assert {r["model"] for r in ran} == {"fer-yolo-mamba-n", "yolov8n"}
    for r in ran:
        assert r["b1_32"]["ms"] > 0 and r["b2_32"]["ms"] > 0 and r["train"]["ms"] > 0
    assert "| fer / yolov8 (target) |" in text and "P3 scan alone" in text
