"""benchmarks/bench_models.py: its tables and targets from known rows, and a whole (tiny) run end to end."""

import importlib.util
import json
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_models.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_models", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def row(model, imgsz, b1, ort, ov, ips):
    return {"model": model, "imgsz": imgsz, "params": 1e7, "gflops": 7.0, "gflops_scan": 8.0, "torch_b1": b1,
            "ort_b1": ort, "ov_b1": ov, "train_ips": ips}


def test_tables_and_targets_compute_the_ratios(bench):
    rows = [row("fer-yolo-mamba-s", 320, 0.150, 0.400, 0.300, 1.2), row("fer-yolo-mamba-s", 640, 0.540, 1.2, 0.9, 0.3),
            row("yolov8s", 320, 0.100, 0.080, 0.100, 2.4), row("yolov8s", 640, 0.400, 0.3, 0.3, 0.6)]
    text = bench.tables(rows)
    assert "| OpenVINO b1 (ms) | ratio |" in text
    assert ("| fer-yolo-mamba-s | 320 | 10.00 | 7.00 | 8.00 | 150.0 | 1.50x | 400.0 | 5.00x | 300.0 | 3.00x | 1.2 | 0.50x |"
            in text)
    assert "| fer-yolo-mamba-s | 3.60x | 0.90 |" in text  # growth 540/150 against yolov8s' 400/100
    goals = bench.targets(rows)
    assert "| PyTorch CPU latency, batch 1, imgsz 320 | 1.50x | <= 1.3x |" in goals
    assert "| onnxruntime CPU latency, batch 1, imgsz 320 | 5.00x | <= 2.5x |" in goals
    assert "| OpenVINO CPU latency, batch 1, imgsz 320 | 3.00x | reported |" in goals
    assert "| training throughput, imgsz 320 | 0.50x | >= 0.6x |" in goals
    assert "| latency growth 320 -> 640, relative to yolov8s' | 0.90 | <= 1.2 |" in goals


def test_tiny_run_end_to_end(bench, tmp_path):
    """One size, one repeat, a 16-image training round per model: every number filled, files written."""
    rows = bench.main(models="fer-yolo-mamba-n,yolov8n", imgsz="64", repeats=1, warmup=0, batch16=False, onnx=False,
                      openvino=False, n_train=16, train_rounds=1, out=str(tmp_path / "bench"))
    assert [(r["model"], r["imgsz"]) for r in rows] == [("fer-yolo-mamba-n", 64), ("yolov8n", 64)]
    for r in rows:
        assert r["torch_b1"] > 0 and r["train_ips"] > 0 and r["gflops_scan"] >= r["gflops"] > 0
    saved = json.loads((tmp_path / "bench" / "bench_models.json").read_text())
    assert saved == rows
    assert "| fer-yolo-mamba-n | 64 |" in (tmp_path / "bench" / "bench_models.md").read_text()
    assert (tmp_path / "bench" / "latency_vs_pixels.png").stat().st_size > 10_000
