"""``convert format=crops``: a detection set -> Ultralytics' classification layout, bad boxes reported and skipped."""

import math

import cv2
import numpy as np
import pytest
import yaml
from ultralytics.utils import ASSETS

from ultra_fer_mamba.cli import run as cli_run
from ultra_fer_mamba.data import FER_CLASSES
from ultra_fer_mamba.data.crops import TEMPLATE_112, crop_face, crops, similarity

W, H, VALUE = 120, 100, 60  # fixture image size and its flat grey level


def detection_set(root, labels: dict) -> str:
    """Write a detection set: ``labels`` maps "split/stem" to label text (flat images), or to None (a corrupt image)."""
    for key, text in labels.items():
        split, stem = key.split("/")
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
        image = root / "images" / split / f"{stem}.jpg"
        if text is None:
            image.write_bytes(b"not an image")
        else:
            cv2.imwrite(str(image), np.full((H, W, 3), VALUE, np.uint8))
            (root / "labels" / split / f"{stem}.txt").write_text(text)
    data = {"path": str(root), "train": "images/train", "val": "images/val", "names": dict(enumerate(FER_CLASSES))}
    (root / "data.yaml").write_text(yaml.safe_dump(data))
    return str(root / "data.yaml")


def yolo(cls, x1, y1, x2, y2) -> str:
    return f"{cls} {(x1 + x2) / 2 / W} {(y1 + y2) / 2 / H} {(x2 - x1) / W} {(y2 - y1) / H}\n"


def test_crops_layout_edge_tiny_and_bad_boxes(tmp_path):
    a = (yolo(3, 100, 40, 120, 60)  # 1: at the right edge: the square crop runs 3 px past it
         + yolo(5, 10, 10, 14, 14)  # 2: tiny, 4x4 px
         + "9 0.5 0.5 0.2 0.2\n"  # 3: class out of range
         + "2 0.5 0.5 0 0.2\n"  # 4: empty
         + "2 0.5 0.5\n"  # 5: malformed
         + "1 1.5 0.5 0.2 0.2\n"  # 6: outside the image
         + yolo(0, 20, 20, 60, 80))  # 7: plain
    data = detection_set(tmp_path / "det", {"train/a": a, "train/broken": None, "val/b": yolo(6, 30, 30, 70, 70)})
    out = tmp_path / "crops"
    summary = crops(data, str(out))

    assert sorted(p.name for p in (out / "train").iterdir()) == sorted(FER_CLASSES)  # every class has a folder
    assert sorted(p.name for p in (out / "val").iterdir()) == sorted(FER_CLASSES)
    assert summary["crops"]["train"] == {**dict.fromkeys(FER_CLASSES, 0), "Happy": 1, "Anger": 1}
    assert summary["crops"]["val"] == {**dict.fromkeys(FER_CLASSES, 0), "Surprise": 1}
    edge = cv2.imread(str(out / "train" / "Happy" / "a_1.jpg"))
    assert edge.shape == (112, 112, 3)
    # square side 20 * 1.25 = 25 px from x = 98: columns 120..122 lie outside -> the right 3/25 of 112 px are grey
    assert np.abs(edge[:, :95].astype(int) - VALUE).max() <= 3 and np.abs(edge[:, -6:].astype(int) - 114).max() <= 3
    assert (out / "train" / "Anger" / "a_7.jpg").is_file() and (out / "val" / "Surprise" / "b_1.jpg").is_file()

    report = (out / "report.txt").read_text().splitlines()
    label = tmp_path / "det" / "labels" / "train" / "a.txt"
    expected = {2: "smaller than min_size=8", 3: "class 9 is not in 0..6", 4: "is empty", 5: "malformed line",
                6: "lies outside the 120x100 image"}
    for line, why in expected.items():
        assert any(f"{label}:{line}:" in r and why in r for r in report), (line, why, report)
    assert any("broken.jpg" in r and "unreadable image" in r for r in report)
    assert summary["skipped"] == len(report) == 6
    assert yaml.safe_load((out / "crops.yaml").read_text()) == {"source": str(tmp_path / "det" / "data.yaml"),
                                                                "margin": 0.25, "size": 112, "align": False,
                                                                "names": list(FER_CLASSES)}
    with pytest.raises(SystemExit, match="a.txt:2"):
        crops(data, str(tmp_path / "strict"), strict=True)


def test_landmarks_warp_onto_the_template():
    # five dots at the template turned 30 degrees, doubled and moved: the aligned crop puts them back on it
    t = math.radians(30)
    rot = 2 * np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
    points = TEMPLATE_112 @ rot.T + [150, 40]
    image = np.zeros((400, 400, 3), np.uint8)
    for x, y in points:
        cv2.circle(image, (round(x), round(y)), 4, (255, 255, 255), -1)
    m = similarity(points, TEMPLATE_112)
    assert np.allclose(m[:, :2], np.linalg.inv(rot), atol=1e-9)
    crop = crop_face(image, None, landmarks=points)
    assert crop.shape == (112, 112, 3)
    for x, y in TEMPLATE_112:
        assert crop[round(y), round(x)].min() > 200  # a dot lands on every template point
    assert crop[5, 5].max() == 0 and crop[100, 56].max() == 0  # and nowhere else


def test_align_with_mtcnn_from_the_cli(tmp_path):
    # zidane.jpg's two faces, labelled by hand; MTCNN finds both and their landmarks
    root = tmp_path / "det"
    for split in ("train", "val"):
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        image = cv2.imread(str(ASSETS / "zidane.jpg"))
        cv2.imwrite(str(root / "images" / split / "zidane.jpg"), image)
        h, w = image.shape[:2]
        boxes = [(3, 907, 94, 1047, 285), (4, 545, 252, 664, 441)]
        lines = [f"{c} {(x1 + x2) / 2 / w} {(y1 + y2) / 2 / h} {(x2 - x1) / w} {(y2 - y1) / h}\n"
                 for c, x1, y1, x2, y2 in boxes]
        (root / "labels" / split / "zidane.txt").write_text("".join(lines))
    (root / "data.yaml").write_text(yaml.safe_dump({"path": str(root), "train": "images/train", "val": "images/val",
                                                    "names": dict(enumerate(FER_CLASSES))}))
    summary = cli_run("convert", format="crops", source=str(root / "data.yaml"), out=str(tmp_path / "c"), align=True)
    assert summary["unaligned"] == 0 and summary["skipped"] == 0
    assert summary["crops"]["train"]["Happy"] == summary["crops"]["train"]["Neutral"] == 1
    crop = cv2.imread(str(tmp_path / "c" / "train" / "Happy" / "zidane_1.jpg"))
    assert crop.shape == (112, 112, 3) and crop.std() > 20  # a face, not the grey fill


def test_crops_never_touch_files_they_did_not_write(tmp_path):
    data = detection_set(tmp_path / "det", {"train/a": yolo(3, 20, 20, 60, 80) + yolo(0, 70, 10, 110, 50),
                                            "val/b": yolo(6, 30, 30, 70, 70)})
    out = tmp_path / "crops"
    mine = out / "train" / "Happy" / "mine.jpg"  # the user's own image, in a class folder the converter fills
    mine.parent.mkdir(parents=True)
    mine.write_bytes(b"user's")
    crops(data, str(out))
    assert sorted(p.name for p in (out / "train").rglob("*.jpg")) == ["a_1.jpg", "a_2.jpg", "mine.jpg"]

    label = tmp_path / "det" / "labels" / "train" / "a.txt"
    label.write_text(yolo(3, 20, 20, 60, 80))  # the second face is gone: its crop is stale
    summary = crops(data, str(out))
    assert sorted(p.name for p in (out / "train").rglob("*.jpg")) == ["a_1.jpg", "mine.jpg"]
    assert mine.read_bytes() == b"user's" and summary["crops"]["train"]["Happy"] == 1

    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    (out / "train" / "Happy" / "mine.jpg").rename(out / "train" / "Happy" / "a_2.jpg")  # now in a crop's place
    label.write_text(yolo(3, 20, 20, 60, 80) + yolo(3, 70, 10, 110, 50))
    with pytest.raises(SystemExit, match=r"out=.*crops already holds 1 file crops did not write.*train/Happy/a_2.jpg"):
        crops(data, str(out))
    after = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == {(out / "train" / "Happy" / "a_2.jpg" if p == mine else p): v for p, v in before.items()}
