"""examples/: each script runs end to end on tiny data (a few images, 1 epoch, small imgsz) and writes only under
the run folder it is given.

predict and export need weights whose detections vary from image to image. One training epoch on a handful of
images does not give that (every anchor keeps the head's prior score), so they use an untrained fer-yolo-mamba-n
whose last head convolutions are scaled up: scores and boxes then spread like a trained head's.
"""

import doctest
import importlib.util
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
FAST = dict(device="cpu", workers=0, plots=False)


def load(name: str):
    """Import examples/<name>.py as a module."""
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def written(root: Path) -> set[str]:
    """Top-level entries of a folder."""
    return {p.name for p in root.iterdir()}


@pytest.fixture(scope="module")
def spread_weights(tmp_path_factory) -> Path:
    """best.pt of an untrained fer-yolo-mamba-n whose class and box convolutions are scaled x1000 (class bias -4.5)."""
    from ultralytics import YOLO

    torch.manual_seed(0)
    yolo = YOLO("fer-yolo-mamba-n.yaml")
    head = yolo.model.model[-1]
    for cls_conv, box_conv in zip(head.cv3, head.cv2):
        cls_conv[-1].weight.data *= 1000
        cls_conv[-1].bias.data.fill_(-4.5)
        box_conv[-1].weight.data *= 1000
    file = tmp_path_factory.mktemp("weights") / "spread.pt"
    yolo.save(file)
    return file


@pytest.fixture(scope="module")
def faces(tmp_path_factory) -> Path:
    """A folder of 6 synthetic face images (96 px)."""
    from ultra_fer_mamba.data.synth import synth

    root = tmp_path_factory.mktemp("faces")
    synth(str(root / "set"), n_train=1, n_val=6, imgsz=96, faces=(1, 2))
    return root / "set" / "images" / "val"


def test_every_example_has_a_usage_docstring_and_a_readme_line():
    readme = (EXAMPLES / "README.md").read_text()
    scripts = sorted(p.name for p in EXAMPLES.glob("*.py"))
    assert scripts == ["compare_models.py", "export.py", "predict.py", "train_rafdb.py"]
    for name in scripts:
        module = load(name[:-3])
        assert f"python examples/{name}" in module.__doc__ and f"`{name}`" in readme
        assert doctest.testmod(module).failed == 0


def test_train_rafdb_converts_trains_and_evaluates(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = load("train_rafdb").main(n_train=14, n_val=7, epochs=1, imgsz=64, batch=8, **FAST)
    run = tmp_path / "runs" / "examples" / "train-rafdb"
    assert written(tmp_path) == {"runs"} and written(run) == {"RAF-DB", "rafdb", "train", "eval"}

    # the stand-in is RAF-DB's layout, and converting it gives back the drawn set's classes and boxes
    labels = (run / "RAF-DB" / "basic" / "EmoLabel" / "list_patition_label.txt").read_text().split("\n")[:-1]
    assert [line.split()[0] for line in labels] == [f"train_{i:05d}.jpg" for i in range(1, 15)] + [
        f"test_{i:05d}.jpg" for i in range(1, 8)]
    for split, prefix, n in (("train", "train", 14), ("val", "test", 7)):
        for i in range(n):
            drawn = np.loadtxt(run / "RAF-DB" / "synth" / "labels" / split / f"{split}_{i:05d}.txt")
            converted = np.loadtxt(run / "rafdb" / "labels" / split / f"{prefix}_{i + 1:05d}.txt")
            assert converted[0] == drawn[0]
            np.testing.assert_allclose(converted[1:], drawn[1:], atol=0.011 / 64)  # via pixels with 2 decimals

    assert r["data"] == str(run / "rafdb" / "data.yaml") and Path(r["weights"]).is_file()
    saved = json.loads((run / "eval" / "metrics.json").read_text())
    assert saved["map50"] == r["map50"] and saved["settings"]["imgsz"] == 64 and saved["settings"]["split"] == "val"
    assert sum(saved["n_gt"]) == 7 and (run / "eval" / "table.md").is_file()
    args = yaml.safe_load((run / "train" / "args.yaml").read_text())
    assert args["epochs"] == 1 and args["imgsz"] == 64 and args["plots"] is False


def test_compare_models_trains_each_model_with_the_same_arguments(tmp_path, monkeypatch):
    """One seed keeps this short; tests/test_compare.py trains two models over two seeds."""
    monkeypatch.chdir(tmp_path)
    report = load("compare_models").main(seeds="0", epochs=1, imgsz=32, batch=4, n_train=4, n_val=4, lr0=0.0123,
                                         latency_runs=1, **FAST)
    run = tmp_path / "runs" / "examples" / "compare"
    assert written(tmp_path) == {"runs"} and written(run) == {"synth", "compare"}
    assert list(report["entries"]) == ["fer-yolo-mamba-n", "yolov8n"] and report["seeds"] == [0]
    for model in report["entries"]:
        args = yaml.safe_load((run / "compare" / "runs" / model / "seed0" / "args.yaml").read_text())
        assert (args["lr0"], args["seed"], args["epochs"], args["imgsz"], args["batch"]) == (0.0123, 0, 1, 32, 4)
    diff = report["summary"]["yolov8n"]["differences"]["voc_map50"]
    rows = {m: e["runs"]["0"]["metrics"]["voc_map50"] for m, e in report["entries"].items()}
    assert diff["n"] == 1 and diff["mean"] == pytest.approx(rows["yolov8n"] - rows["fer-yolo-mamba-n"])
    assert json.loads((run / "compare" / "report.json").read_text())["seeds"] == [0]


def test_predict_annotates_images_and_a_video(spread_weights, faces, tmp_path, monkeypatch):
    from ultralytics import YOLO

    monkeypatch.chdir(tmp_path)
    predict = load("predict").main
    with pytest.raises(SystemExit, match="examples/train_rafdb.py"):
        predict()  # the defaults need the training example's run

    r = predict(model=str(spread_weights), source=str(faces), imgsz=96, device="cpu")
    out = tmp_path / "runs" / "examples" / "predict"
    images = sorted(faces.glob("*.jpg"))
    assert sorted(p.name for p in out.glob("*.jpg")) == [p.name for p in images] and r["frames"] == 6
    assert all(cv2.imread(str(out / p.name)).shape == cv2.imread(str(p)).shape for p in images)
    expected = [x.boxes.data.numpy() for x in YOLO(spread_weights).predict(images, imgsz=96, device="cpu")]
    assert sum(map(len, expected)) > 6  # the scaled head finds something in every image
    for det, exp in zip(r["detections"], expected):  # the boxes of a direct predict, [x1, y1, x2, y2, score, class]
        np.testing.assert_allclose(det["boxes"], exp, rtol=1e-5, atol=1e-4)
    names = YOLO(spread_weights).names
    assert r["counts"] == {n: int(sum((e[:, 5] == c).sum() for e in expected)) for c, n in names.items()}
    assert json.loads((out / "detections.json").read_text()) == {"counts": r["counts"], "detections": r["detections"]}

    video = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 5, (96, 96))
    for p in images[:4]:
        writer.write(cv2.imread(str(p)))
    writer.release()
    v = predict(model=str(spread_weights), source=str(video), imgsz=96, device="cpu", name="video")
    clip = cv2.VideoCapture(str(tmp_path / "runs" / "examples" / "video" / "clip.avi"))
    assert int(clip.get(cv2.CAP_PROP_FRAME_COUNT)) == 4 and int(clip.get(cv2.CAP_PROP_FRAME_WIDTH)) == 96
    assert [d["frame"] for d in v["detections"]] == [1, 2, 3, 4] and sum(v["counts"].values()) > 0
    assert written(tmp_path) == {"runs", "clip.mp4"}


def test_export_onnx_and_openvino_agree_with_the_weights(spread_weights, faces, tmp_path, monkeypatch):
    from ultralytics import YOLO

    monkeypatch.chdir(tmp_path)
    openvino = importlib.util.find_spec("openvino") is not None
    export = load("export")
    results = export.main(model=str(spread_weights), source=str(faces), imgsz=96, formats="onnx,openvino")
    out = tmp_path / "runs" / "examples" / "export"
    assert written(tmp_path) == {"runs"} and (out / "best.onnx").is_file()
    assert list(results) == ["onnx", "openvino"] if openvino else ["onnx"]
    onnx = results["onnx"]
    assert onnx["checked"] and onnx["ok"] and onnx["unmatched"] == 0
    assert onnx["matched"] == onnx["detections"] > 6 and onnx["box_rel"] <= 1e-3 and onnx["score_abs"] <= 1e-3
    assert YOLO(onnx["file"]).predict(str(faces), imgsz=96)[0].boxes.data.shape[1] == 6
    assert json.loads((out / "agreement.json").read_text()) == results
    if openvino:  # checked where OpenVINO computes in float32; in bf16 the differences are only reported
        ov = results["openvino"]
        assert Path(ov["file"]).is_dir() and ov["checked"] == (export.openvino_precision() == "f32")
        assert ov["matched"] >= 0.9 * ov["detections"] and (ov["ok"] or not ov["checked"])
