"""``compare``: identical training of several models, one report, and resuming an interrupted comparison.

Trains for real on conftest's tiny set at imgsz 64 on the CPU (a few seconds an epoch), with Ultralytics' bundled
YAMLs: nothing is downloaded.
"""

import json

import pytest
from PIL import Image

from ultra_fer_mamba import compare as compare_module
from ultra_fer_mamba.compare import compare, find_report_dir, parse_models, save_state, training_status

MODELS = "fer-yolo-mamba-n.yaml,yolov8n.yaml"
FAST = dict(imgsz=64, batch=8, seed=0, device="cpu", workers=0, amp=False, pretrained=False, latency_runs=3)
PLOTS = ("ap50_per_class.png", "pr_curves.png", "training_curves.png")


def png_ok(path) -> bool:
    """A readable, non-trivial PNG."""
    with Image.open(path) as im:
        return im.format == "PNG" and min(im.size) > 100


def test_parse_models():
    assert parse_models("a.yaml, b/c.pt") == {"a": "a.yaml", "c": "b/c.pt"}
    assert list(parse_models(["x.yaml", "x.yaml"])) == ["x", "x-2"]  # the same model twice gets two run names
    with pytest.raises(ValueError):
        parse_models(" , ")


def test_report_dir_resumes_only_with_same_settings(tmp_path):
    a, b = {"epochs": 1, "data": "d.yaml"}, {"epochs": 2, "data": "d.yaml"}
    first = find_report_dir(str(tmp_path), "cmp", a)
    save_state(first, {"settings": a, "models": {}})
    assert find_report_dir(str(tmp_path), "cmp", a) == first  # same settings: resume in place
    second = find_report_dir(str(tmp_path), "cmp", b)  # other settings: a new, incremented folder
    assert second.name == "cmp-2"
    save_state(second, {"settings": b, "models": {}})
    assert find_report_dir(str(tmp_path), "cmp", b) == second


def test_training_status(tmp_path):
    run = tmp_path / "run"
    assert training_status(run) == "new"
    (run / "weights").mkdir(parents=True)
    (run / "weights" / "last.pt").write_bytes(b"not a checkpoint")
    assert training_status(run) == "partial"  # last.pt without a finished record: resume it
    (run / "weights" / "best.pt").write_bytes(b"")
    (run / "results.csv").write_text("epoch\n1\n")
    assert training_status(run) == "partial"  # best.pt + results exist mid-training too: not enough on their own
    assert training_status(run, recorded=True) == "done"


def test_compare_two_models_report_and_rerun(tiny_data, tmp_path, monkeypatch):
    report = compare(data=str(tiny_data), models=MODELS, epochs=1, project=str(tmp_path), name="cmp", **FAST)
    out = tmp_path / "cmp"
    # one row per model, with every number filled in
    assert [r["name"] for r in report["models"]] == ["fer-yolo-mamba-n", "yolov8n"]
    ours, base = report["models"]
    assert 2e6 < ours["params"] < 4e6 and 2e6 < base["params"] < 4e6
    assert ours["latency_ms"] > 0 and base["latency_ms"] > 0
    assert ours["gflops_with_scan"] > ours["gflops"] > 0  # the scan is counted on top of thop's count
    assert base["gflops_with_scan"] == base["gflops"]  # stock YOLO: no scan to add
    for r in report["models"]:
        assert r["epochs_trained"] == 1 and len(r["paper"]["ap50"]) == len(r["ultralytics"]["ap50"]) == 7
        assert 0 <= r["ultralytics"]["map50"] <= 1 and 0 <= r["paper"]["map50"] <= 1
        assert (out / "runs" / r["name"] / "weights" / "best.pt").exists()
        assert (out / "eval" / r["name"] / "metrics.json").exists()
    md = (out / "report.md").read_text()
    assert "| fer-yolo-mamba-n (`fer-yolo-mamba-n.yaml`) |" in md and "| yolov8n (`yolov8n.yaml`) |" in md
    assert "## Per-class AP50" in md and "| Surprise |" in md
    assert json.loads((out / "report.json").read_text())["settings"]["epochs"] == 1
    assert all(png_ok(out / p) for p in PLOTS)

    # Re-running the same comparison trains and measures nothing again: it rewrites the report from state.json.
    def refuse(*args, **kwargs):
        raise AssertionError("nothing should be re-done")

    from ultralytics import YOLO

    monkeypatch.setattr(YOLO, "train", refuse)
    monkeypatch.setattr(compare_module, "measure_model", refuse)
    again = compare(data=str(tiny_data), models=MODELS, epochs=1, project=str(tmp_path), name="cmp", **FAST)
    key = [(r["name"], r["params"], r["paper"]["map50"], r["latency_ms"]) for r in report["models"]]
    assert [(r["name"], r["params"], r["paper"]["map50"], r["latency_ms"]) for r in again["models"]] == key
    assert not (tmp_path / "cmp-2").exists()


def test_compare_resumes_an_interrupted_training(tiny_data, tmp_path, monkeypatch):
    # Stop training right after epoch 1 of 2 is saved (as a crash would), then run compare again: it must continue
    # from weights/last.pt with Ultralytics' resume=True rather than start over.
    from ultralytics import YOLO
    from ultralytics.utils.callbacks.base import default_callbacks

    def crash(trainer):
        if trainer.epoch == 0:
            raise RuntimeError("simulated crash after epoch 1")

    monkeypatch.setitem(default_callbacks, "on_model_save", [crash])
    args = dict(data=str(tiny_data), models="yolov8n.yaml", epochs=2, project=str(tmp_path), name="cmp", **FAST)
    with pytest.raises(RuntimeError, match="simulated crash"):
        compare(**args)
    run = tmp_path / "cmp" / "runs" / "yolov8n"
    assert training_status(run) == "partial"
    state = json.loads((tmp_path / "cmp" / "state.json").read_text())
    assert not state["models"]["yolov8n"].get("trained")

    monkeypatch.setitem(default_callbacks, "on_model_save", [])
    calls, train = [], YOLO.train
    monkeypatch.setattr(YOLO, "train", lambda self, **kw: (calls.append(kw), train(self, **kw))[1])
    report = compare(**args)
    assert calls and calls[0].get("resume") is True and len(calls) == 1
    assert report["models"][0]["epochs_trained"] == 2 and training_status(run) == "done"
    assert all(png_ok(tmp_path / "cmp" / p) for p in PLOTS)
