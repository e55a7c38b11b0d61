"""``eval``, ``info`` and ``heatmap``: files written, label geometry, scan FLOPs counting, heat-map geometry.

Models are built from ``yolov8n.yaml`` (random weights, nothing downloaded); the data is conftest's tiny set.
"""

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from ultra_fer_mamba import evaluate as evaluate_module
from ultra_fer_mamba.cli import run
from ultra_fer_mamba.evaluate import evaluate, format_table, predict_split, read_labels
from ultra_fer_mamba.heatmap import find_detect_head, head_scores, heatmap, score_map, to_original
from ultra_fer_mamba.info import info, scan_gflops
from ultra_fer_mamba.metrics import paper_metrics


@pytest.fixture(scope="module")
def yolo():
    """An untrained YOLOv8n (80 classes) built from Ultralytics' bundled YAML."""
    from ultralytics import YOLO

    return YOLO("yolov8n.yaml")


def png_ok(path) -> bool:
    """A readable, non-trivial PNG."""
    with Image.open(path) as im:
        return im.format == "PNG" and min(im.size) > 100


# ---------------------------------------------------------------- eval


def test_read_labels_to_pixels(tmp_path):
    # Image 200 wide x 100 high. Box "3 0.5 0.5 0.2 0.4": centre (100, 50), size 40 x 40 -> [80, 30, 120, 70].
    # Polygon "1 0.1 0.1 0.3 0.1 0.3 0.5": x in 0.1..0.3 (20..60 px), y in 0.1..0.5 (10..50 px) -> [20, 10, 60, 50].
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "a.txt").write_text("3 0.5 0.5 0.2 0.4\n1 0.1 0.1 0.3 0.1 0.3 0.5\n\n")
    boxes = read_labels(tmp_path / "images" / "a.jpg", (100, 200))
    np.testing.assert_allclose(boxes, [[80, 30, 120, 70, 3], [20, 10, 60, 50, 1]])
    assert read_labels(tmp_path / "images" / "missing.jpg", (100, 200)).shape == (0, 5)  # no label file: no face


def test_predict_split_formats(yolo, tiny_data):
    # Every image gives an (n, 6) array in pixels of the original image, and its ground truth from the label files.
    images = sorted(str(p) for p in (tiny_data.parent / "images" / "val").glob("*.jpg"))
    preds, gts = predict_split(yolo, images, imgsz=64, conf=0.001, iou=0.65, batch=4, device="cpu")
    assert len(preds) == len(gts) == len(images)
    for p, g, f in zip(preds, gts, images):
        assert p.ndim == 2 and p.shape[1] == 6 and (p[:, 4] >= 0.001).all()
        np.testing.assert_allclose(g, read_labels(f, (96, 96)))  # conftest's images are 96 x 96
        assert len(g) >= 1


def test_evaluate_with_oracle_predictions(tiny_data, tmp_path, monkeypatch):
    # Feed the ground truth back as detections (score 0.9): every class with boxes must score AP 1, F1 1.
    def oracle(yolo, images, *args, **kwargs):
        gts = [read_labels(f, (96, 96)) for f in images]
        return [np.c_[g[:, :4], np.full(len(g), 0.9), g[:, 4]] for g in gts], gts

    monkeypatch.setattr(evaluate_module, "predict_split", oracle)
    m = evaluate(model="yolov8n.yaml", data=str(tiny_data), imgsz=64, project=str(tmp_path), name="oracle")
    has = np.array(m["n_gt"]) > 0
    assert m["map50"] == 1.0 and m["mean_f1"] == 1.0 and sum(m["fn"]) == 0 and sum(m["fp"]) == 0
    assert all(math.isnan(v) for v in np.array(m["ap50"])[~has])
    assert np.trace(np.array(m["confusion_matrix"])) == sum(m["n_gt"])

    out = tmp_path / "oracle"
    saved = json.loads((out / "metrics.json").read_text())  # strict JSON: NaN written as null
    assert saved["map50"] == 1.0 and saved["names"][3] == "Happy" and None in saved["ap50"]
    table = (out / "table.md").read_text()
    assert "| **Average** | 1.00 | 100.00 | 100.00 | 100.00 |" in table
    assert png_ok(out / "pr_curves.png") and png_ok(out / "confusion_matrix.png")


def test_evaluate_real_model_and_increment(yolo, tiny_data, tmp_path):
    # An untrained 80-class model: runs end to end through the predictor; class indices >= 7 are dropped; a second
    # run with the same name goes to eval-2 like Ultralytics' increment_path.
    for _ in range(2):
        m = evaluate(yolo, str(tiny_data), imgsz=64, batch=4, project=str(tmp_path), name="eval", plots=False)
    assert m["save_dir"].endswith("eval-2") and (tmp_path / "eval" / "metrics.json").exists()
    assert 0.0 <= m["map50"] <= 1.0 and m["n_images"] == 4 and len(m["ap50"]) == 7


def test_table_layout_matches_paper():
    # Table IV: per class F1, Recall %, Precision %, AP50 %, then the averages row; NaN shown as an em dash.
    m = paper_metrics([np.array([[0, 0, 9, 9, 0.9, 0]])], [np.array([[0, 0, 9, 9, 0]])], nc=2)
    lines = format_table(m, ["Anger", "Disgust"]).splitlines()
    assert lines[0].startswith("| Class | F1 | Recall (%) | Precision (%) | AP50 (%) |")
    assert lines[3].startswith("| Disgust | — | — | — | — |") and lines[4].startswith("| **Average** | 1.00 | 100.00")


# ---------------------------------------------------------------- info


class ScanStub(nn.Module):
    """A stand-in for the OSSM: a 1x1 conv (thop counts it) plus scan work thop cannot see, 1000 FLOPs per pixel."""

    def __init__(self, c: int, inner: bool = False, channels_last: bool = False):
        super().__init__()
        self.proj = nn.Conv2d(c, c, 1)
        self.inner = ScanStub(c) if inner else None  # nested: must not be counted twice
        self.channels_last = channels_last

    def forward(self, x):
        if self.channels_last:
            return self.proj(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return self.proj(x if self.inner is None else self.inner(x))

    def scan_flops(self, h: int, w: int) -> float:
        return 1000.0 * h * w


class TinyModel(nn.Module):
    """Stride-2 stem -> scan (32x32 at imgsz 64) -> stride-2 conv -> nested scan used twice (16x16) -> channels-last."""

    def __init__(self):
        super().__init__()
        self.stem, self.scan1 = nn.Conv2d(3, 8, 3, 2, 1), ScanStub(8)
        self.down, self.scan2 = nn.Conv2d(8, 8, 3, 2, 1), ScanStub(8, inner=True)
        self.scan3 = ScanStub(8, channels_last=True)

    def forward(self, x):
        x = self.scan2(self.scan2(self.down(self.scan1(self.stem(x)))))  # (1, 8, 16, 16)
        return self.scan3(x.permute(0, 2, 3, 1))  # (1, 16, 16, 8) channels-last in


def test_scan_flops_are_added():
    # imgsz 64: scan1 sees 32x32 -> 1000 * 1024 = 1,024,000 FLOPs; scan2 sees 16x16 twice -> 2 * 256,000
    # (its inner stub is not counted again); scan3 reads h, w from a channels-last input -> 256,000.
    # Total 1,792,000 FLOPs = 0.001792 GFLOPs on top of what thop counts.
    model = TinyModel()
    assert scan_gflops(model, 64) == pytest.approx(1.792e-3)
    r = info(model, imgsz=64, verbose=False)
    assert r["gflops"] > 0 and r["gflops_with_scan"] - r["gflops"] == pytest.approx(1.792e-3)
    assert r["params"] == sum(p.numel() for p in model.parameters())
    assert model.training  # scan_gflops switches to eval for its forward pass and restores the mode


def test_info_stock_yolo_has_no_extra(yolo):
    # Stock YOLOv8n: no module exposes scan_flops -> the two GFLOPs agree; through the CLI dispatcher as well.
    r = run("info", model="yolov8n.yaml", imgsz=320, verbose=False)
    assert r["gflops_with_scan"] == r["gflops"] > 0 and r["params"] == sum(p.numel() for p in yolo.model.parameters())
    with pytest.raises(SystemExit, match="unknown argument"):
        run("info", model="yolov8n.yaml", imgsize=320)


def test_info_fer_yolo_mamba_counts_the_scan():
    from ultralytics import YOLO

    r = info(YOLO("fer-yolo-mamba-n.yaml"), imgsz=128, verbose=False)  # a build error fails the test
    assert r["gflops_with_scan"] > r["gflops"] > 0


# ---------------------------------------------------------------- heatmap


def test_score_map_and_letterbox_geometry():
    # Level 0 (stride 8) is a 4x8 grid on a 32x64 input; a 0.8 score at row 1, column 6 lands near pixel
    # (y, x) = (1.5 * 8, 6.5 * 8) = (12, 52). Level 1 (stride 16, 2x4) adds 0.3 everywhere.
    shapes, strides = [(4, 8), (2, 4)], [8.0, 16.0]
    scores = torch.zeros(7, 4 * 8 + 2 * 4)
    scores[2, 1 * 8 + 6] = 0.8
    scores[5, 32:] = 0.3
    heat = score_map(scores, shapes, strides)
    assert heat.shape == (32, 64) and heat.min() == pytest.approx(0.3) and heat.max() <= 0.8
    y, x = np.unravel_index(int(heat.argmax()), heat.shape)
    assert abs(y - 12) <= 4 and abs(x - 52) <= 4
    # Letterbox: a 100 x 100 image in a 32 x 64 input is scaled by min(32/100, 64/100) = 0.32 to 32 x 32 and centred,
    # with (64 - 32) / 2 = 16 columns of padding each side. Content marked 1, padding 0: only the 1s come back.
    # A 50 x 100 image fills the 32 x 64 input exactly (no padding).
    pad = torch.zeros(32, 64)
    pad[:, 16:48] = 1.0
    assert to_original(pad, (100, 100)).min() == pytest.approx(1.0)  # only content comes back
    assert to_original(heat, (50, 100)).shape == (50, 100)


def test_head_scores_match_decoded_output(yolo):
    # The tapped class probabilities are the same numbers the head decodes before NMS (its rows 4: of y).
    model = yolo.model.eval()
    head = find_detect_head(model)
    taps = []
    handle = head.register_forward_hook(lambda m, a, out: taps.append(head_scores(m, out)))
    try:
        with torch.no_grad():
            y = model(torch.rand(1, 3, 64, 96))[0]
    finally:
        handle.remove()
    scores, shapes = taps[0]
    assert shapes == [(8, 12), (4, 6), (2, 3)] and scores.shape == (1, 80, 96 + 24 + 6)
    torch.testing.assert_close(scores, y[:, 4:])


def test_heatmap_writes_one_png_per_image(yolo, tiny_data, tmp_path):
    files = heatmap(model=yolo, source=str(tiny_data.parent / "images" / "val"), imgsz=64, project=str(tmp_path))
    assert len(files) == 4 and all(png_ok(f) for f in files)
    assert files[0].parent == tmp_path / "heatmap"
