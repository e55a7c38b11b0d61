"""The synthetic set: same seed same bytes, valid labels, balanced classes, faces big enough, only its own files.

Render speed is measured by benchmarks/bench_demo.py.
"""

import hashlib

import cv2
import numpy as np
import pytest
import yaml

from ultra_fer_mamba.data import FER_CLASSES
from ultra_fer_mamba.data.synth import face_range, render, synth


def digest(root) -> dict:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != "data.yaml"}


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    return root, synth(str(root), n_train=70, n_val=21, imgsz=320, seed=0, faces=(1, 3))


def rows(root, split) -> dict:
    """Label rows per image stem."""
    return {f.stem: np.array([[float(v) for v in line.split()] for line in f.read_text().splitlines()])
            for f in sorted((root / "labels" / split).glob("*.txt"))}


def test_deterministic_given_seed(made, tmp_path):
    root, summary = made
    again = synth(str(tmp_path / "again"), n_train=70, n_val=21, imgsz=320, seed=0, faces=(1, 3))
    assert digest(tmp_path / "again") == digest(root) and again["per_class"] == summary["per_class"]
    other = synth(str(tmp_path / "other"), n_train=70, n_val=21, imgsz=320, seed=1, faces=(1, 3))
    assert digest(tmp_path / "other") != digest(root)
    assert other["images"] == summary["images"]


def test_layout_and_data_yaml(made):
    root, summary = made
    data = yaml.safe_load((root / "data.yaml").read_text())
    assert data["names"] == dict(enumerate(FER_CLASSES)) and data["nc"] == 7 and data["path"] == str(root.resolve())
    for split, n in (("train", 70), ("val", 21)):
        images = sorted(p.stem for p in (root / "images" / split).glob("*.jpg"))
        assert images == sorted(rows(root, split)) and len(images) == n
        assert cv2.imread(str(root / "images" / split / f"{images[0]}.jpg")).shape == (320, 320, 3)


def test_labels_valid_and_faces_large_enough(made):
    root, summary = made
    for split in ("train", "val"):
        labels = rows(root, split)
        assert sum(len(r) for r in labels.values()) == summary["boxes"][split]
        for r in labels.values():
            assert 1 <= len(r) <= 3
            cls, cx, cy, w, h = r.T
            assert set(cls) <= set(range(7))
            assert (cx - w / 2 >= 0).all() and (cx + w / 2 <= 1).all()
            assert (cy - h / 2 >= 0).all() and (cy + h / 2 <= 1).all()
            assert (w >= 0.16 - 1e-6).all()  # >= 51 px here, >= 40 px at the demo's imgsz 256
            assert (h > w * 0.9).all()  # heads are taller than wide (tilt aside)
            # faces do not overlap
            for i in range(len(r)):
                for j in range(i):
                    assert abs(cx[i] - cx[j]) >= (w[i] + w[j]) / 2 or abs(cy[i] - cy[j]) >= (h[i] + h[j]) / 2


def test_classes_balanced(made):
    root, summary = made
    for split in ("train", "val"):
        counts = np.bincount(np.concatenate([r[:, 0] for r in rows(root, split).values()]).astype(int), minlength=7)
        assert counts.tolist() == summary["per_class"][split]
        assert counts.max() - counts.min() <= 1


def test_one_face_per_class_is_drawn_differently():
    """The same face (same random draws) with each expression: every pair of expressions differs in pixels."""
    faces = [render(320, [c], np.random.default_rng(7))[0].astype(int) for c in range(7)]
    for i in range(7):
        for j in range(i):
            assert np.abs(faces[i] - faces[j]).sum(-1).__gt__(60).sum() > 30, (FER_CLASSES[i], FER_CLASSES[j])


def test_face_range_from_the_cli():
    assert face_range("1,3") == (1, 3) and face_range("(2, 4)") == (2, 4) and face_range(2) == (2, 2)
    with pytest.raises(ValueError):
        face_range((3, 1))


def test_rerun_removes_only_its_own_files(tmp_path):
    root = tmp_path / "set"
    mine = root / "images" / "train" / "mine.jpg"
    mine.parent.mkdir(parents=True)
    mine.write_bytes(b"the user's own image")
    synth(str(root), n_train=4, n_val=2, imgsz=64, seed=0, faces=1)
    synth(str(root), n_train=2, n_val=2, imgsz=64, seed=0, faces=1)
    assert sorted(p.name for p in (root / "images" / "train").iterdir()) == [
        "mine.jpg", "train_00000.jpg", "train_00001.jpg"]
    assert sorted(p.name for p in (root / "labels" / "train").iterdir()) == ["train_00000.txt", "train_00001.txt"]
    assert mine.read_bytes() == b"the user's own image"
    other = tmp_path / "other" / "images" / "val" / "val_00000.jpg"
    other.parent.mkdir(parents=True)
    other.write_bytes(b"x")
    with pytest.raises(SystemExit, match=r"would overwrite: images/val/val_00000\.jpg"):
        synth(str(tmp_path / "other"), n_train=1, n_val=1, imgsz=64, seed=0)
    assert other.read_bytes() == b"x"
