"""The two-stage predictor: a face detector, then a crop classifier, answering like one YOLO detector."""

import pytest
import torch
from ultralytics import YOLO

from ultra_fer_mamba.data.crops import crop_face, crops
from ultra_fer_mamba.evaluate import evaluate
from ultra_fer_mamba.twostage import TwoStage

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
    assert model.size == 32 and model.margin == 0.25 and not model.align  # from the classifier's crops.yaml and imgsz
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
            probs = classifier.predict(crop_face(r.orig_img, box, size=32), imgsz=32, verbose=False)[0].probs.data
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


def test_classifier_must_be_a_classifier_and_know_the_names(stages):
    det, cls = stages
    with pytest.raises(ValueError, match="not 'classify'"):
        TwoStage(str(det), str(det))
    with pytest.raises(ValueError, match="not among the names"):
        TwoStage(str(det), str(cls), names=["Anger", "Happy"])
