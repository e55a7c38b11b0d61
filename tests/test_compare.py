"""``compare``: any trainer argument for every model, several seeds, mean ± sd and paired differences, resuming.

Trains for real on conftest's tiny set at imgsz 64 on the CPU (a few seconds a run), with Ultralytics' bundled YAMLs:
nothing is downloaded. The statistics are checked on hand-made rows, where every expected number is worked out.
"""

import json
import math

import numpy as np
import pytest
from PIL import Image
from ultralytics.utils import YAML

from ultra_fer_mamba.cli import entrypoint
from ultra_fer_mamba.compare import YoloEntry, compare, find_report_dir, parse_models, save_state, training_status
from ultra_fer_mamba.compare.args import parse_seeds, settings_of, train_args
from ultra_fer_mamba.compare.report import write_docs, write_report

MODELS = "fer-yolo-mamba-n.yaml,yolov8n.yaml"
FAST = dict(imgsz=64, batch=8, device="cpu", workers=0, amp=False, plots=False, latency_runs=3)
PLOTS = ("learning_curve.png", "ap50_per_class.png", "pr_curves.png", "training_curves.png")


def png_ok(path) -> bool:
    """A readable, non-trivial PNG."""
    with Image.open(path) as im:
        return im.format == "PNG" and min(im.size) > 100


def test_parse_models_and_seeds():
    assert parse_models("a.yaml, b/c.pt") == {"a": "a.yaml", "c": "b/c.pt"}
    assert list(parse_models(["x.yaml", "x.yaml"])) == ["x", "x-2"]  # the same model twice gets two run names
    assert list(parse_models("det.yaml+cls.yaml")) == ["det+cls"]  # a two-part entry is named by both parts
    with pytest.raises(ValueError):
        parse_models(" , ")
    assert parse_seeds("2,0") == [2, 0] and parse_seeds([1]) == [1] and parse_seeds(seed=5) == [5]
    for bad in ("0,0", "a,b", ""):
        with pytest.raises(ValueError, match="seeds"):
            parse_seeds(bad)
    with pytest.raises(ValueError, match="not both"):
        parse_seeds("0,1", seed=0)


def test_train_args_checked_by_ultralytics():
    args = train_args({"lr0": 0.003, "optimizer": "AdamW", "amp": "FP32", "epochs": 1e1}, "d.yaml")
    assert args["lr0"] == 0.003 and args["optimizer"] == "AdamW" and args["imgsz"] == 320  # compare's default kept
    assert args["amp"] == "fp32" and args["epochs"] == 10 and isinstance(args["epochs"], int)  # Ultralytics' forms
    with pytest.raises(ValueError, match=r"'lr' is not a valid YOLO argument.*lr0"):
        train_args({"lr": 0.003}, "d.yaml")
    with pytest.raises(TypeError, match="mosaic"):
        train_args({"mosaic": "lots"}, "d.yaml")
    with pytest.raises(ValueError, match="hsv_h"):
        train_args({"hsv_h": 2.0}, "d.yaml")  # out of Ultralytics' range [0, 1]
    with pytest.raises(ValueError, match="compare sets resume"):
        train_args({"resume": True}, "d.yaml")


def test_report_dir_resumes_only_with_same_settings(tmp_path):
    a = settings_of("d.yaml", "val", train_args({"epochs": 1, "device": "cpu"}, "d.yaml"))
    b = settings_of("d.yaml", "val", train_args({"epochs": 1, "device": "0", "workers": 2}, "d.yaml"))
    c = settings_of("d.yaml", "val", train_args({"epochs": 1, "lr0": 0.02}, "d.yaml"))
    assert a == b  # where a run happens is not a setting: an interrupted comparison may continue elsewhere
    first = find_report_dir(str(tmp_path), "cmp", a)
    save_state(first, {"settings": a, "entries": {}})
    assert find_report_dir(str(tmp_path), "cmp", b) == first  # same settings: resume in place
    second = find_report_dir(str(tmp_path), "cmp", c)  # another trainer argument: a new, incremented folder
    assert second.name == "cmp-2"


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


def test_unknown_argument_refused_before_any_training(tiny_data, tmp_path, monkeypatch):
    from ultralytics import YOLO

    monkeypatch.setattr(YOLO, "train", lambda *a, **k: pytest.fail("trained despite a bad argument"))
    with pytest.raises(ValueError, match="'lr' is not a valid YOLO argument"):
        entrypoint(["compare", f"data={tiny_data}", "models=yolov8n.yaml", "seeds=0,1", "lr=0.01",
                    f"project={tmp_path}"])  # fmt: skip
    with pytest.raises(TypeError, match="optimizer"):
        compare(data=str(tiny_data), models="yolov8n.yaml", optimizer=3, project=str(tmp_path))
    with pytest.raises(ValueError, match="docs=.*compare-cmp:begin"):  # the doc block is checked up front too
        compare(data=str(tiny_data), models="yolov8n.yaml", project=str(tmp_path), name="cmp", docs=str(tiny_data))
    assert not any(tmp_path.iterdir())  # not even a report folder


def test_two_models_two_seeds(tiny_data, tmp_path, monkeypatch):
    trainer = dict(optimizer="SGD", lr0=0.0123, momentum=0.8, mosaic=0.0, warmup_epochs=0)
    costs = []
    cost = YoloEntry.cost
    monkeypatch.setattr(YoloEntry, "cost", lambda self, *a: (costs.append(self.name), cost(self, *a))[1])
    kw = dict(data=str(tiny_data), models=MODELS, seeds="0,1", epochs=1, project=str(tmp_path), name="cmp", **FAST)
    report = compare(**kw, **trainer)
    out = tmp_path / "cmp"

    # 2 models x 2 seeds = 4 runs, each trained with every trainer argument and its own seed
    runs = sorted(p.relative_to(out / "runs").as_posix() for p in (out / "runs").glob("*/seed*"))
    assert runs == ["fer-yolo-mamba-n/seed0", "fer-yolo-mamba-n/seed1", "yolov8n/seed0", "yolov8n/seed1"]
    for run in runs:
        args = YAML.load(out / "runs" / run / "args.yaml")
        assert {k: args[k] for k in trainer} == trainer and args["seed"] == int(run[-1]) and args["epochs"] == 1
    assert report["settings"]["train"]["lr0"] == 0.0123 and report["seeds"] == [0, 1]
    assert costs == ["fer-yolo-mamba-n", "yolov8n"]  # size and latency once per model, not per run

    # mean ± sd over the two seeds of each model, from the runs' own numbers
    ours, base = report["entries"]["fer-yolo-mamba-n"], report["entries"]["yolov8n"]
    assert ours["cost"]["params"] > 2e6 and base["cost"]["latency_ms"] > 0
    for name, e in report["entries"].items():
        s = report["summary"][name]
        for key in ("map50", "map50_95", "voc_map50", "f1", "recall", "precision"):
            v = [e["runs"][seed]["metrics"][key] for seed in ("0", "1")]
            assert 0 <= v[0] <= 1 and s["metrics"][key]["n"] == 2
            assert s["metrics"][key]["mean"] == pytest.approx(np.mean(v))
            assert s["metrics"][key]["sd"] == pytest.approx(np.std(v, ddof=1))
        assert len(s["per_class"]["voc_ap50"]) == len(s["per_class"]["ap50_95"]) == 7
    d = report["summary"]["yolov8n"]["differences"]["map50_95"]
    per_seed = [base["runs"][k]["metrics"]["map50_95"] - ours["runs"][k]["metrics"]["map50_95"] for k in ("0", "1")]
    assert d["n"] == 2 and d["mean"] == pytest.approx(np.mean(per_seed)) and d["lo"] <= d["mean"] <= d["hi"]
    md = (out / "report.md").read_text()
    assert "| fer-yolo-mamba-n (`fer-yolo-mamba-n.yaml`) |" in md and " ± " in md
    assert "## Paired differences against fer-yolo-mamba-n" in md and "| yolov8n | mAP50-95 (%) |" in md
    assert "lr0=0.0123" in md and "| AP50-95 (%, Ultralytics val) |" in md and "| Surprise |" in md
    assert json.loads((out / "report.json").read_text())["settings"]["train"]["optimizer"] == "SGD"
    assert all(png_ok(out / p) for p in PLOTS)

    # The same comparison again, on another device setting, trains and measures nothing: it rebuilds the report.
    from ultralytics import YOLO

    def refuse(*args, **kwargs):
        raise AssertionError("nothing should be re-done")

    monkeypatch.setattr(YOLO, "train", refuse)
    monkeypatch.setattr(YoloEntry, "measure", refuse)
    monkeypatch.setattr(YoloEntry, "cost", refuse)
    again = compare(**{**kw, "workers": 1}, **trainer)
    assert json.dumps(again["summary"], sort_keys=True) == json.dumps(report["summary"], sort_keys=True)
    assert not (tmp_path / "cmp-2").exists()


def test_interrupted_multi_seed_compare_resumes(tiny_data, tmp_path, monkeypatch):
    # Crash the second seed right after its epoch 1 of 2 is saved, then run the same command again: the finished
    # first seed is not trained again, and the second continues from its last.pt with Ultralytics' resume=True.
    from ultralytics import YOLO
    from ultralytics.utils.callbacks.base import default_callbacks

    def crash(trainer):
        if trainer.args.seed == 1 and trainer.epoch == 0:
            raise RuntimeError("simulated crash after epoch 1")

    monkeypatch.setitem(default_callbacks, "on_model_save", [crash])
    args = dict(data=str(tiny_data), models="yolov8n.yaml", seeds="0,1", epochs=2, project=str(tmp_path), name="cmp",
                **FAST)  # fmt: skip
    with pytest.raises(RuntimeError, match="simulated crash"):
        compare(**args)
    runs = tmp_path / "cmp" / "runs" / "yolov8n"
    assert training_status(runs / "seed0") == "done" and training_status(runs / "seed1") == "partial"
    state = json.loads((tmp_path / "cmp" / "state.json").read_text())
    assert state["entries"]["yolov8n"]["runs"]["0"]["row"] and not state["entries"]["yolov8n"]["runs"]["1"]["trained"]
    first = (runs / "seed0" / "weights" / "best.pt").stat().st_mtime_ns

    monkeypatch.setitem(default_callbacks, "on_model_save", [])
    calls, train = [], YOLO.train
    monkeypatch.setattr(YOLO, "train", lambda self, **kw: (calls.append(kw), train(self, **kw))[1])
    report = compare(**args)
    assert len(calls) == 1 and calls[0].get("resume") is True  # only the interrupted run, resumed
    assert (runs / "seed0" / "weights" / "best.pt").stat().st_mtime_ns == first
    assert [r["epochs_trained"] for r in report["entries"]["yolov8n"]["runs"].values()] == [2, 2]
    assert training_status(runs / "seed1") == "done"


def _row(metrics: dict, ap50: list, train_s: float, tmp_path, name: str) -> dict:
    """A hand-made measured row, with a results.csv whose mAP50-95 rises to the row's value."""
    csv = tmp_path / f"{name}.csv"
    m = metrics["map50_95"]
    csv.write_text("epoch,metrics/mAP50(B),metrics/mAP50-95(B)\n" + "".join(
        f"{e},{metrics['map50'] * e / 3:.4f},{m * e / 3:.4f}\n" for e in (1, 2, 3)))  # fmt: skip
    nan = [math.nan] * len(ap50)
    per_class = {"voc_ap50": ap50, "ap50_95": nan, "f1": nan, "recall": nan, "precision": nan}
    return {"run_dir": str(tmp_path), "eval_dir": None, "results_csv": str(csv), "epochs_trained": 3,
            "train_s": train_s, "metrics": metrics, "per_class": per_class}


def test_report_numbers_and_docs_block(tmp_path):
    # Model a: mAP50 0.80, 0.82, 0.84 -> 82.00 ± 2.00. Model b: 0.85, 0.86, 0.90, so b - a = 0.05, 0.04, 0.06:
    # mean 5.00, sd 1.00, t(0.975, 2) = 4.3027 -> 5.00 ± 4.3027 / sqrt(3) = [+2.52, +7.48], b higher.
    # mAP50-95: b - a = +0.02, -0.01, +0.02: mean 1.00, sd 1.732 -> 1.00 ± 4.30 -> the interval includes 0.
    a = [(0.80, 0.50), (0.82, 0.52), (0.84, 0.54)]
    b = [(0.85, 0.52), (0.86, 0.51), (0.90, 0.56)]
    names = ["Anger", "Disgust"]

    def entry(values, tag):
        runs = {str(s): _row({"map50": x, "map50_95": y, "voc_map50": x, "f1": 0.5, "recall": 0.6, "precision": 0.7},
                             [x, math.nan], 60.0 * (s + 1), tmp_path, f"{tag}{s}") for s, (x, y) in enumerate(values)}
        return {"model": f"{tag}.yaml", "runs": runs,
                "cost": {"params": 3.0e6, "gflops": 1.0, "gflops_with_scan": 1.2, "latency_ms": 9.0, "threads": 1}}

    report = {"settings": settings_of("d.yaml", "val", {"epochs": 3}), "runtime": {}, "seeds": [0, 1, 2],
              "names": names, "latency_runs": 5, "entries": {"a": entry(a, "a"), "b": entry(b, "b")}}  # fmt: skip
    report = write_report(tmp_path, report)
    md = (tmp_path / "report.md").read_text()
    assert "| a (`a.yaml`) | 3.00 | 1.00 | 1.20 | 9.0 | 82.00 ± 2.00 |" in md
    assert "| 0.50 ± 0.00 | 60.00 ± 0.00 | 70.00 ± 0.00 | 2.00 ± 1.00 | 3 | 3 |" in md  # F1 R P, train 1-3 min
    assert "| b | mAP50 (%) | +5.00 | [+2.52, +7.48] | 3 | b higher |" in md
    assert "| b | mAP50-95 (%) | +1.00 | [-3.30, +5.30] | 3 | **interval includes 0**: no clear difference |" in md
    assert "| Anger | 82.00 ± 2.00 | 87.00 ± 2.65 |" in md and "| Disgust | — | — |" in md
    assert all(png_ok(tmp_path / p) for p in ("learning_curve.png", "ap50_per_class.png", "training_curves.png"))

    doc = tmp_path / "doc.md"
    doc.write_text("intro\n<!-- compare-study:begin -->\nold\n<!-- compare-study:end -->\noutro\n")
    write_docs(doc, "study", report, tmp_path)
    text = doc.read_text()
    assert text.startswith("intro\n<!-- compare-study:begin -->\n")
    assert text.endswith("<!-- compare-study:end -->\noutro\n") and "old" not in text and "[+2.52, +7.48]" in text
    assert "![learning_curve](compare-study-learning_curve.png)" in text
    assert png_ok(tmp_path / "compare-study-learning_curve.png")
