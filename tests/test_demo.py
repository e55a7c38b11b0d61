"""``demo``: a tiny run checks every printed path exists; the real run (``-m slow``) checks that it learns.

Its wall time (goal: under 10 minutes) is measured by benchmarks/bench_demo.py, not asserted here.
"""

from pathlib import Path

import pytest

from ultra_fer_mamba.demo import demo, synthetic_set

MODEL = "fer-yolo-mamba-n.yaml"


def check_outputs(r: dict):
    assert Path(r["weights"]).is_file()
    assert (Path(r["save_dir"]) / "results.csv").is_file()
    assert [Path(p).name for p in r["plots"]] == ["results.png", "confusion_matrix.png", "BoxPR_curve.png"]
    assert all(Path(p).is_file() for p in r["plots"])
    predicted = sorted(p.name for p in Path(r["predict_dir"]).iterdir())
    assert "zidane.jpg" in predicted and len(predicted) == 5  # the photo and 4 synthetic validation images
    assert 0 <= r["map50"] <= 1 and 0 <= r["map"] <= r["map50"]


def test_tiny_demo(tmp_path):
    r = demo(model=MODEL, epochs=1, imgsz=96, batch=8, n_train=16, n_val=8, workers=0, project=str(tmp_path))
    check_outputs(r)
    assert Path(r["save_dir"]).parent == tmp_path and Path(r["val_dir"]).parent == Path(r["save_dir"])
    cached = tmp_path / "synth-16-8-96-0"
    assert (cached / "data.yaml").is_file() and len(list((cached / "images" / "train").iterdir())) == 16
    stamp = (cached / "images" / "train" / "train_00000.jpg").stat().st_mtime_ns
    assert synthetic_set(tmp_path, 16, 8, 96, 0) == cached / "data.yaml"  # reused, not rewritten
    assert (cached / "images" / "train" / "train_00000.jpg").stat().st_mtime_ns == stamp


@pytest.mark.slow
def test_real_demo_learns(tmp_path):
    r = demo(model=MODEL, project=str(tmp_path))
    check_outputs(r)
    print(f"demo with {MODEL}: mAP50 {r['map50']:.3f}, mAP50-95 {r['map']:.3f}")
    assert r["map50"] > 0.5
