"""The two-stage predictor: a face detector, then a crop classifier, answering like one YOLO detector."""

import json
import math
from pathlib import Path

import pytest
import torch
from ultralytics import YOLO
from ultralytics.utils import YAML

from ultra_fer_mamba.cli import entrypoint
from ultra_fer_mamba.compare import compare
from ultra_fer_mamba.data.crops import crop_face, crops
from ultra_fer_mamba.data.synth import synth
from ultra_fer_mamba.evaluate import evaluate, model_label
from ultra_fer_mamba.info import info
from ultra_fer_mamba.twostage import FACE_CONF, TwoStage

from conftest import NAMES

FAST = dict(epochs=1, batch=8, device="cpu", workers=0, plots=False, verbose=False, amp=False, exist_ok=True)


@pytest.fixture(scope="module")
def stages(tiny_data, tmp_path_factory):
    """A one-epoch single-class detector and a one-epoch stock crop classifier (crops of the same training set)."""
    tmp = tmp_path_factory.mktemp("twostage")
    crops(str(tiny_data), str(tmp / "crops"))
    YOLO("yolov8n.yaml").train(data=str(tiny_data), imgsz=64, single_cls=True, project=str(tmp), name="det", **FAST)
    YOLO("yolov8n-cls.yaml").train(data=str(tmp / "crops"), imgsz=32, project=str(tmp), name="cls", **FAST)
    return tmp / "det" / "weights" / "best.pt", tmp / "cls" / "weights" / "best.pt"


def test_results_are_classified_faces_scored_by_both_stages(stages, tiny_data):
    det, cls = stages
    order = NAMES[::-1]  # results in another class order than the classifier's (alphabetical) folders
    model = TwoStage(str(det), str(cls), names=order)
    # crops as the converter made them (crops.yaml: 112 px, margin 0.25, plain), classified at the training imgsz
    assert model.size == 112 and model.imgsz == 32 and model.margin == 0.25 and not model.align
    images = sorted((tiny_data.parent / "images" / "val").glob("*.jpg"))
    results = model.predict([str(p) for p in images], imgsz=64, conf=0.001, iou=0.65)
    assert len(results) == len(images) and model.images == len(images)
    detector, classifier = YOLO(str(det)), YOLO(str(cls))
    n = 0
    for r, path in zip(results, images):
        assert r.names == dict(enumerate(order)) and r.path == str(path)
        faces = detector.predict(str(path), imgsz=64, conf=0.001, iou=0.65, verbose=False)[0].boxes
        assert torch.equal(r.boxes.xyxy, faces.xyxy)  # the detector's boxes, unchanged
        for box, conf, got_cls, got_score in zip(faces.xyxy.tolist(), faces.conf, r.boxes.cls, r.boxes.conf):
            probs = classifier.predict(crop_face(r.orig_img, box, size=112), imgsz=32, verbose=False)[0].probs.data
            best = int(probs.argmax())
            assert order[int(got_cls)] == classifier.names[best]
            assert float(got_score) == pytest.approx(float(conf * probs[best]), rel=1e-5, abs=1e-7)
            n += 1
    assert n > 0


def test_evaluate_scores_a_two_stage_model_unchanged(stages, tiny_data, tmp_path):
    det, cls = stages
    m = evaluate(model=f"{det}+{cls}", data=str(tiny_data), imgsz=64, project=str(tmp_path), name="ev", plots=False)
    assert m["settings"]["model"] == f"{det}+{cls}"
    assert len(m["ap50"]) == 7 and 0 <= m["map50"] <= 1 and sum(m["n_gt"]) > 0
    assert (tmp_path / "ev" / "table.md").is_file()
    # the same from the command line, with the same numbers
    assert entrypoint(["eval", f"model={det}+{cls}", f"data={tiny_data}", "imgsz=64", f"project={tmp_path}",
                       "name=cli", "plots=False"]) == 0  # fmt: skip
    cli = json.loads((tmp_path / "cli" / "metrics.json").read_text())
    assert cli["map50"] == pytest.approx(m["map50"]) and cli["n_gt"] == m["n_gt"]
    assert model_label(f"{det}+{cls}") == "det+cls"
    with pytest.raises(ValueError, match="two-stage detector\\+classifier; this command takes one model"):
        info(f"{det}+{cls}")  # one-model commands say what the spec is


def test_classifier_must_be_a_classifier_and_know_the_names(stages):
    det, cls = stages
    with pytest.raises(ValueError, match="not 'classify'"):
        TwoStage(str(det), str(det))
    with pytest.raises(ValueError, match="not among the names"):
        TwoStage(str(det), str(cls), names=["Anger", "Happy"])


def test_two_stage_compare_on_the_synthetic_set(tmp_path):
    data = synth(str(tmp_path / "synth"), n_train=8, n_val=4, imgsz=64, seed=0, faces=1)
    trainer = dict(optimizer="SGD", lr0=0.0123, warmup_epochs=0, mosaic=0.0)
    report = compare(data=data["data"], models="yolov8n.yaml,yolov8n.yaml+lfnsb-cls.yaml", seeds="3", epochs=1,
                     imgsz=64, batch=8, device="cpu", workers=0, amp=False, plots=False, latency_runs=2,
                     project=str(tmp_path), name="cmp", **trainer)  # fmt: skip
    run = tmp_path / "cmp" / "runs" / "yolov8n+lfnsb-cls" / "seed3"

    # both stages trained with the comparison's arguments and seed; the detector single-class, the classifier on
    # crops of every face of the same splits, at the crops' size
    det, cls = YAML.load(run / "det" / "args.yaml"), YAML.load(run / "cls" / "args.yaml")
    for args in (det, cls):
        assert {k: args[k] for k in trainer} == trainer and args["seed"] == 3 and args["epochs"] == 1
    assert det["single_cls"] and det["imgsz"] == 64 and det["data"] == data["data"]
    assert not cls["single_cls"] and cls["imgsz"] == 112 and cls["data"] == str(run / "crops")
    assert cls["model"] == "lfnsb-cls.yaml" and cls["task"] == "classify"
    for split in ("train", "val"):
        assert sum(1 for _ in (run / "crops" / split).rglob("*.jpg")) == data["boxes"][split]

    # scored by the paper's protocol like the one-stage entry; Ultralytics' val cannot score it
    row = report["entries"]["yolov8n+lfnsb-cls"]["runs"]["3"]
    one = report["entries"]["yolov8n"]["runs"]["3"]
    assert math.isnan(row["metrics"]["map50"]) and math.isnan(row["metrics"]["map50_95"])
    assert not math.isnan(one["metrics"]["map50"]) and row["results_csv"] is None
    for key in ("voc_map50", "f1", "recall", "precision"):
        assert 0 <= row["metrics"][key] <= 1 or math.isnan(row["metrics"][key])
    metrics = json.loads((Path(row["eval_dir"]) / "metrics.json").read_text())
    assert metrics["settings"]["model"] == f"{run / 'det/weights/best.pt'}+{run / 'cls/weights/best.pt'}"
    assert len(row["per_class"]["voc_ap50"]) == 7 and sum(metrics["n_gt"]) == data["boxes"]["val"]

    # latency: the detector plus one classifier call per face it finds (conf >= FACE_CONF) on the scored split
    images = sorted((tmp_path / "synth" / "images" / "val").glob("*.jpg"))
    found = YOLO(str(run / "det" / "weights" / "best.pt")).predict([str(p) for p in images], imgsz=64, conf=FACE_CONF,
                                                                    iou=0.65, verbose=False)  # fmt: skip
    faces = sum(len(r.boxes) for r in found) / len(images)
    cost = report["entries"]["yolov8n+lfnsb-cls"]["cost"]
    assert cost["faces_per_image"] == pytest.approx(faces)
    assert cost["latency_ms"] == pytest.approx(cost["detector_ms"] + faces * cost["classifier_ms"])
    det_params = sum(p.numel() for p in YOLO(str(run / "det" / "weights" / "best.pt")).model.parameters())
    assert cost["params"] - det_params == pytest.approx(2.678e6, rel=0.01)  # lfnsb-cls.yaml at nc 7
    text = (tmp_path / "cmp" / "report.md").read_text()
    assert "Two-stage entries" in text and f"yolov8n+lfnsb-cls: {faces:.2f} faces per image" in text
