"""``convert`` on small fixtures laid out like the real datasets, each with one of every kind of bad input.

Fixture folders carry spaces and non-ASCII letters. Expected labels are worked out by hand from the pixel boxes
written into the fixtures: cx = (x1 + x2) / 2 / W, w = (x2 - x1) / W, likewise for y with H.
"""

import hashlib
import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from ultralytics.utils import ASSETS

from ultra_fer_mamba.data import FER_CLASSES, class_index
from ultra_fer_mamba.data.convert import convert, yolo_line
from ultra_fer_mamba.data.faces import available_detectors
from ultra_fer_mamba.data.formats import parse_list_line

W, H = 120, 100  # fixture image size


def write_image(path: Path, w: int = W, h: int = H, value: int | None = None) -> Path:
    """Write a small JPEG/PNG (random pixels, or flat ``value``) at ``path``, creating folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(path.name))
    img = np.full((h, w, 3), value, np.uint8) if value is not None else rng.integers(0, 255, (h, w, 3), np.uint8)
    path.write_bytes(cv2.imencode(path.suffix, img)[1].tobytes())
    return path


def tree(root: Path) -> dict:
    """Map every file below ``root`` to the SHA-256 of its bytes (symlinks by their target)."""
    return {
        str(p.relative_to(root)): str(p.readlink()) if p.is_symlink() else hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() or p.is_symlink()
    }


def labels(out: Path, split: str, stem: str) -> list[list[float]]:
    """Read one YOLO label file as rows of floats."""
    text = (out / "labels" / split / f"{stem}.txt").read_text()
    return [[float(v) for v in line.split()] for line in text.splitlines()]


def yolo(cls, x1, y1, x2, y2, w=W, h=H) -> list[float]:
    """The YOLO row of a pixel box, for comparison."""
    return [cls, (x1 + x2) / 2 / w, (y1 + y2) / 2 / h, (x2 - x1) / w, (y2 - y1) / h]


def assert_labels(out, split, stem, expected):
    rows = labels(out, split, stem)
    assert len(rows) == len(expected)
    for row, exp in zip(rows, expected):
        assert row[0] == exp[0]
        np.testing.assert_allclose(row[1:], exp[1:], atol=1e-6)


def report(out: Path) -> list[str]:
    return (out / "report.txt").read_text(encoding="utf-8").splitlines()


def assert_reported(lines: list[str], where: str, why: str):
    """One report line names ``where`` (file:line) and says ``why``."""
    assert any(where in line and why in line for line in lines), f"no '{where}' ... '{why}' in {lines}"


def test_class_names_and_aliases():
    assert FER_CLASSES == ("Anger", "Disgust", "Fear", "Happy", "Neutral", "Sad", "Surprise")
    names = ["Angry", "disgusted ", " FEARFUL", "Happiness", "neutral", "Sadness", "Surprised"]
    assert [class_index(n) for n in names] == list(range(7))
    assert class_index("Contempt") is None


def test_yolo_line_clips_one_pixel_and_rejects_more():
    assert yolo_line(2, -0.5, 0, 120.75, 100, W, H) == "2 0.500000 0.500000 1.000000 1.000000"
    for bad in [(-1.5, 0, 50, 50), (0, 0, 50, 101.5), (50, 10, 50, 20), (50, 30, 60, 20)]:
        with pytest.raises(Exception, match="outside|empty"):
            yolo_line(0, *bad, W, H)


def test_parse_list_line_paths_with_spaces():
    assert parse_list_line("/d/my pic ü.jpg 1,2,3,4,5 6.5,7,8,9,0") == (
        "/d/my pic ü.jpg", [(5, 1.0, 2.0, 3.0, 4.0), (0, 6.5, 7.0, 8.0, 9.0)])
    assert parse_list_line("a.jpg") == ("a.jpg", [])
    with pytest.raises(ValueError, match="malformed box"):
        parse_list_line("a.jpg 1,2,3,4")


# ---------------------------------------------------------------- RAF-DB
RAF = [  # label-file line, box file text (None: no box file), image (None: none, "bad": garbage bytes)
    ("train_00001.jpg 5", "10.5 20.25 90.75 95.0", "ok"),  # 1 Sadness -> Sad 5
    ("train_00002.jpg 1", "0 0 120 100", "ok"),  # 2 Surprise -> 6
    ("test_00001.jpg 4", "30 10 60 50", "ok"),  # 3 Happiness -> Happy 3, val
    ("test_00002.jpg 6", "5 5 25 45", "ok"),  # 4 Anger -> 0, val
    ("train_00003.jpg 9", "1 1 5 5", "ok"),  # 5 label out of 1..7
    ("train_00004.jpg 2", "1 1 5 5", None),  # 6 image missing
    ("train_00005.jpg 3", "10 10 130 50", "ok"),  # 7 box outside (x2 = 130 > 120 + 1)
    ("train_00006.jpg 7", "1 1 5 5", "bad"),  # 8 unreadable image
    ("train_00007.jpg 7", "50 10 40 60", "ok"),  # 9 x2 <= x1
    ("train_00008.jpg 7", None, "ok"),  # 10 box file missing
    ("train_00009.jpg 7", "-0.5 0 120.5 100.75", "ok"),  # 11 overhang <= 1 px, clipped; Neutral 4
    ("train_00010.jpg 7", "12 abc 3", "ok"),  # 12 malformed box file
    ("train_00011.jpg 2", "1 1 50 50", "link"),  # 13 symlink to an image outside the source
    ("train_00012.jpg", "1 1 50 50", "ok"),  # 14 malformed line (no label)
    ("train_00013.jpg 2", "1 1 50 50", "link in"),  # 15 symlink to another image inside the source: fine; Fear 2
]


def make_rafdb(root: Path) -> Path:
    """Write a RAF-DB 'basic' tree with the entries of ``RAF``; return its root."""
    outside = write_image(root.parent / "elsewhere.jpg")
    for line, box, image in RAF:
        name = line.split()[0]
        target = root / "Image" / "original" / name
        if image == "ok":
            write_image(target)
        elif image == "bad":
            target.write_bytes(b"this is not a JPEG")
        elif image == "link":
            target.symlink_to(outside)
        elif image == "link in":
            target.symlink_to("train_00001.jpg")
        if box is not None:
            file = root / "Annotation" / "boundingbox" / f"{Path(name).stem}_boundingbox.txt"
            file.parent.mkdir(parents=True, exist_ok=True)
            file.write_text(box + "\n")
    (root / "EmoLabel").mkdir()
    (root / "EmoLabel" / "list_patition_label.txt").write_text("\n".join(line for line, *_ in RAF) + "\n")
    return root


@pytest.fixture
def rafdb(tmp_path) -> Path:
    return make_rafdb(tmp_path / "RAF DB ü" / "basic")


def test_rafdb(rafdb, tmp_path):
    before = tree(rafdb.parent)
    out = tmp_path / "out dir é"
    s = convert("rafdb", str(rafdb), str(out))

    assert s["images"] == {"train": 4, "val": 2} and s["boxes"] == {"train": 4, "val": 2}
    assert s["skipped"] == 9 and s["no_face"] == 0
    assert_labels(out, "train", "train_00001", [yolo(5, 10.5, 20.25, 90.75, 95.0)])
    assert_labels(out, "train", "train_00002", [yolo(6, 0, 0, 120, 100)])
    assert_labels(out, "train", "train_00009", [yolo(4, 0, 0, 120, 100)])  # clipped
    assert_labels(out, "val", "test_00001", [yolo(3, 30, 10, 60, 50)])
    assert_labels(out, "val", "test_00002", [yolo(0, 5, 5, 25, 45)])
    assert_labels(out, "train", "train_00013", [yolo(2, 1, 1, 50, 50)])
    assert sorted(p.name for p in (out / "images" / "train").iterdir()) == [
        "train_00001.jpg", "train_00002.jpg", "train_00009.jpg", "train_00013.jpg"]  # the link's name, a real file
    assert not (out / "images" / "train" / "train_00013.jpg").is_symlink()
    src = rafdb / "Image" / "original" / "train_00001.jpg"
    assert (out / "images" / "train" / "train_00001.jpg").read_bytes() == src.read_bytes()

    lines = report(out)
    assert len(lines) == 9
    labels_file = "list_patition_label.txt"
    assert_reported(lines, f"{labels_file}:5", "malformed line")
    assert_reported(lines, f"{labels_file}:6", "image not found")
    assert_reported(lines, f"{labels_file}:7", "outside the 120x100 image")
    assert_reported(lines, f"{labels_file}:8", "unreadable image")
    assert_reported(lines, f"{labels_file}:9", "empty")
    assert_reported(lines, f"{labels_file}:10", "box file not found")
    assert_reported(lines, "train_00010_boundingbox.txt:1", "malformed box")
    assert_reported(lines, f"{labels_file}:13", "outside")
    assert_reported(lines, f"{labels_file}:14", "malformed line")

    data = yaml.safe_load((out / "data.yaml").read_text(encoding="utf-8"))
    assert data == {"path": str(out.resolve()), "train": "images/train", "val": "images/val", "nc": 7,
                    "names": dict(enumerate(FER_CLASSES))}
    assert tree(rafdb.parent) == before  # source untouched
    first = tree(out)
    assert convert("rafdb", str(rafdb), str(out)) == s
    assert tree(out) == first  # idempotent


def test_rerun_removes_only_its_own_stale_files(rafdb, tmp_path):
    """An image gone from the source: its outputs of the earlier run go; a user's file of the same kind stays."""
    out = tmp_path / "out"
    convert("rafdb", str(rafdb), str(out))
    mine = write_image(out / "images" / "train" / "old.jpg")
    (rafdb / "Image" / "original" / "train_00002.jpg").unlink()
    s = convert("rafdb", str(rafdb), str(out))
    assert s["images"] == {"train": 3, "val": 2}
    assert not (out / "images" / "train" / "train_00002.jpg").exists()
    assert not (out / "labels" / "train" / "train_00002.txt").exists()
    assert mine.is_file()


def test_users_files_in_out_survive_byte_for_byte(rafdb, tmp_path):
    out = tmp_path / "out"
    users = [write_image(out / "images" / "train" / "my_photo.jpg"), out / "labels" / "train" / "my_photo.txt",
             out / "notes.txt"]
    users[1].parent.mkdir(parents=True)
    users[1].write_text("3 0.5 0.5 0.2 0.2\n")
    users[2].write_text("where this data came from\n")
    before = {str(p): p.read_bytes() for p in users}
    first = convert("rafdb", str(rafdb), str(out))
    after_first = tree(out)
    assert convert("rafdb", str(rafdb), str(out)) == first
    assert tree(out) == after_first  # re-running gives identical output
    assert {str(p): p.read_bytes() for p in users} == before
    assert sorted(p.name for p in (out / "images" / "train").iterdir()) == [
        "my_photo.jpg", "train_00001.jpg", "train_00002.jpg", "train_00009.jpg", "train_00013.jpg"]


@pytest.mark.parametrize("taken", ["images/train/train_00001.jpg", "labels/val/test_00002.txt", "data.yaml"])
def test_refuses_before_touching_anything_when_it_would_overwrite_a_users_file(rafdb, tmp_path, taken):
    out = tmp_path / "out"
    (out / taken).parent.mkdir(parents=True, exist_ok=True)
    (out / taken).write_bytes(b"the user's own file")
    before = tree(out), sorted(out.rglob("*"))
    with pytest.raises(SystemExit, match=rf"convert: out={out} already holds 1 file convert did not write and "
                                         rf"would overwrite: {taken}\. Nothing was changed"):
        convert("rafdb", str(rafdb), str(out))
    assert (tree(out), sorted(out.rglob("*"))) == before  # no file or folder written
    assert {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()} == {taken}


def test_a_manifest_it_did_not_write_is_refused(rafdb, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "convert_manifest.json").write_text("{}")
    with pytest.raises(SystemExit, match=r"convert_manifest\.json was not written by fer-yolo-mamba convert"):
        convert("rafdb", str(rafdb), str(out))
    assert [p.name for p in out.iterdir()] == ["convert_manifest.json"]


def test_strict_stops_at_first_problem(rafdb, tmp_path):
    with pytest.raises(SystemExit, match="list_patition_label.txt:5: malformed line"):
        convert("rafdb", str(rafdb), str(tmp_path / "out"), strict=True)


def test_out_inside_source_is_refused(rafdb):
    with pytest.raises(SystemExit, match="inside the source"):
        convert("rafdb", str(rafdb), str(rafdb / "yolo"))


# ---------------------------------------------------------------- original-code list files
CLASSES = "happy \nsad \nangry \nsurprised \n neutral\nfear \ndisgust \ncontempt \n\n"  # list ids -> 3 5 0 6 4 2 1 ?
LIST = [
    "/home/someone/fer/JPEGImages/a.jpg 10,20,50,60,0",  # 1 absolute, re-rooted by name; happy -> 3
    "b c.jpg 5,5,30,40,1 40,10,90,80,2",  # 2 space in name, two boxes: sad -> 5, angry -> 0
    "ñ.jpg",  # 3 no box: background
    "d.jpg 10,20,50,60,7",  # 4 class 'contempt' is not an expression
    "d.jpg 10,20,50",  # 5 malformed box
    "../outside.jpg 1,1,5,5,0",  # 6 resolves outside images=
    "missing.jpg 1,1,5,5,0",  # 7 no such image
    "e.jpg 1,1,200,5,0",  # 8 box outside the image
    "a.jpg 1,1,5,5,0",  # 9 duplicate image name
    "C:\\Users\\x\\f.jpg 0,0,120.5,80,6",  # 10 Windows path re-rooted; overhang clipped; disgust -> 1
    "d.jpg 1,1,5,5,9",  # 11 class id beyond the classes file
    "",  # 12 blank: ignored
]


@pytest.fixture
def listed(tmp_path) -> Path:
    root = tmp_path / "list set ö"
    for name in ("a.jpg", "b c.jpg", "ñ.jpg", "d.jpg", "e.jpg", "f.jpg"):
        write_image(root / "JPEGImages" / name)
    write_image(root / "outside.jpg")
    (root / "classes.txt").write_text(CLASSES)
    (root / "train list.txt").write_text("\n".join(LIST) + "\n")
    return root


def test_txt(listed, tmp_path):
    before, out = tree(listed), tmp_path / "out"
    args = dict(format="txt", source=str(listed / "train list.txt"), classes=str(listed / "classes.txt"),
                images=str(listed / "JPEGImages"), out=str(out), split="train")
    s = convert(**args)
    assert s["images"] == {"train": 4} and s["boxes"] == {"train": 4} and s["backgrounds"] == {"train": 1}
    assert s["skipped"] == 7
    assert_labels(out, "train", "a", [yolo(3, 10, 20, 50, 60)])
    assert_labels(out, "train", "b c", [yolo(5, 5, 5, 30, 40), yolo(0, 40, 10, 90, 80)])
    assert_labels(out, "train", "f", [yolo(1, 0, 0, 120, 80)])
    assert (out / "labels" / "train" / "ñ.txt").read_text() == ""
    assert (out / "images" / "train" / "ñ.jpg").is_file()
    assert not (out / "images" / "val").exists()

    lines = report(out)
    assert len(lines) == 7
    assert_reported(lines, "train list.txt:4", "unknown class 7 ('contempt', ")
    assert_reported(lines, "train list.txt:5", "malformed box '10,20,50'")
    assert_reported(lines, "train list.txt:6", "outside images=")
    assert_reported(lines, "train list.txt:7", "image not found")
    assert_reported(lines, "train list.txt:8", "outside the 120x100 image")
    assert_reported(lines, "train list.txt:9", "duplicate image name a")
    assert_reported(lines, "train list.txt:11", "unknown class 9")
    assert tree(listed) == before
    first = tree(out)
    convert(**args)
    assert tree(out) == first


def test_txt_through_the_cli(listed, tmp_path, offline_env):
    out = tmp_path / "cli out"
    cmd = ["fer-yolo-mamba", "convert", "format=txt", f"source={listed / 'train list.txt'}",
           f"classes={listed / 'classes.txt'}", f"images={listed / 'JPEGImages'}", f"out={out}", "split=val"]
    if shutil.which("fer-yolo-mamba") is None:
        cmd[:1] = ["python", "-m", "ultra_fer_mamba.cli"]
    offline_env["YOLO_VERBOSE"] = "true"  # show the warnings
    run = subprocess.run(cmd, env=offline_env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert len(list((out / "labels" / "val").iterdir())) == 4
    assert "train list.txt:4" in run.stdout + run.stderr  # the warning names file and line
    strict = subprocess.run(cmd + ["strict=true"], env=offline_env, capture_output=True, text=True, timeout=120)
    assert strict.returncode != 0 and "train list.txt:4: unknown class 7" in strict.stderr


# ---------------------------------------------------------------- Pascal VOC
def voc_xml(filename: str, objects: list, extra: str = "") -> str:
    objs = "".join(
        f"  <object>\n    <name>{name}</name>\n    <difficult>0</difficult>\n    <bndbox>\n"
        + "".join(f"      <{k}>{v}</{k}>\n" for k, v in zip(("xmin", "ymin", "xmax", "ymax"), box) if v is not None)
        + "    </bndbox>\n  </object>\n"
        for name, box in objects
    )
    return (f"<annotation>\n  <folder>VOC</folder>\n  <filename>{filename}</filename>\n  <size><width>{W}</width>"
            f"<height>{H}</height><depth>3</depth></size>\n{objs}{extra}</annotation>\n")


@pytest.fixture
def voc(tmp_path) -> Path:
    root = tmp_path / "VOC 2007"
    xmls = {
        "000001": voc_xml("000001.jpg", [("Happy", (10, 20, 50, 60)), ("sadness ", (60, 10, 110, 90))]),
        "000002": voc_xml("000002.jpg", [("Happy", (10, 20, 50, 60)), ("Contempt", (60, 10, 110, 90))]),
        "000003": "<annotation><filename>000003.jpg</annotation>\n",
        "000004": voc_xml("000004.jpg", [("Fear", (10, 20, None, 60))]),
        "000006": voc_xml("000006.jpg", [("Surprise", (1, 2, 119, 99))]),
    }
    for stem, text in xmls.items():
        (root / "Annotations").mkdir(parents=True, exist_ok=True)
        (root / "Annotations" / f"{stem}.xml").write_text(text)
        write_image(root / "JPEGImages" / f"{stem}.jpg")
    (root / "ImageSets" / "Main").mkdir(parents=True)
    (root / "ImageSets" / "Main" / "train.txt").write_text("000001\n000002\n000003\n")
    (root / "ImageSets" / "Main" / "val.txt").write_text("000004\n000005\n000006\n")
    return root


def test_voc(voc, tmp_path):
    before, out = tree(voc), tmp_path / "out"
    s = convert("voc", str(voc), str(out))
    assert s["images"] == {"train": 1, "val": 1} and s["boxes"] == {"train": 2, "val": 1} and s["skipped"] == 4
    assert_labels(out, "train", "000001", [yolo(3, 10, 20, 50, 60), yolo(5, 60, 10, 110, 90)])
    assert_labels(out, "val", "000006", [yolo(6, 1, 2, 119, 99)])
    lines = report(out)
    # 000002.xml: the second <object> opens on line 15 (4 header lines, then 10 lines of the first object)
    assert_reported(lines, "000002.xml:15", "unknown class 'Contempt'")
    assert_reported(lines, "000003.xml:1", "malformed XML")
    assert_reported(lines, "000004.xml:5", "malformed <bndbox>")
    assert_reported(lines, "val.txt:2", "annotation not found")
    assert tree(voc) == before
    first = tree(out)
    convert("voc", str(voc), str(out))
    assert tree(out) == first


def test_voc_without_image_sets_goes_to_train(voc, tmp_path):
    shutil.rmtree(voc / "ImageSets")
    s = convert("voc", str(voc), str(tmp_path / "out"))
    assert s["images"] == {"train": 2} and s["skipped"] == 3


# ---------------------------------------------------------------- SFEW 2.0
@pytest.fixture
def sfew(tmp_path) -> Path:
    root = tmp_path / "SFEW_2 ä" / "Train"
    (root / "Happy").mkdir(parents=True)
    shutil.copy(ASSETS / "zidane.jpg", root / "Happy" / "zidane frame.jpg")  # two real faces
    write_image(root / "Neutral" / "grey.png", 720, 576, value=128)  # nothing to find
    (root / "Angry").mkdir()
    (root / "Angry" / "broken.png").write_bytes(b"\x89PNG not really")
    (root / "Angry" / "notes.txt").write_text("not an image, ignored")
    write_image(root / "Contempt" / "x.png")  # not one of the 7 classes
    return root


def iou(a, b) -> float:
    inter = max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


@pytest.mark.skipif(not available_detectors(), reason="no offline face detector installed")
def test_sfew_detects_the_largest_real_face(sfew, tmp_path):
    before, out = tree(sfew.parent), tmp_path / "out"
    s = convert("sfew", str(sfew), str(out))
    assert s["images"] == {"train": 1} and s["boxes"] == {"train": 1}
    assert s["no_face"] == 1 and s["skipped"] == 2
    (row,) = labels(out, "train", "zidane frame")
    assert row[0] == 3  # Happy, from the folder
    cx, cy, w, h = row[1] * 1280, row[2] * 720, row[3] * 1280, row[4] * 720
    # the larger of the two faces in zidane.jpg (the man on the right), measured by hand: x 915..1055, y 100..285
    assert iou((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), (915, 100, 1055, 285)) > 0.5
    assert (out / "no_face_train.txt").read_text().splitlines() == [str(sfew / "Neutral" / "grey.png")]
    lines = report(out)
    assert_reported(lines, "broken.png", "unreadable image")
    assert_reported(lines, "Contempt", "not one of the 7 expressions")
    assert not (out / "labels" / "train" / "grey.txt").exists()
    assert tree(sfew.parent) == before
    first = tree(out)
    convert("sfew", str(sfew), str(out))
    assert tree(out) == first


def test_sfew_with_given_boxes(sfew, tmp_path):
    box_list = tmp_path / "sfew boxes.txt"
    box_list.write_text("/somewhere/Happy/zidane frame.jpg 100,120,300,360,0\nbroken.png 1,1,5,5,0\ngrey.png 1,2\n")
    out = tmp_path / "out"
    s = convert("sfew", str(sfew), str(out), boxes=str(box_list), split="val")
    assert s["images"] == {"val": 1} and s["no_face"] == 1 and s["skipped"] == 3
    assert_reported(report(out), "sfew boxes.txt:3", "malformed box")
    assert_labels(out, "val", "zidane frame", [yolo(3, 100, 120, 300, 360, 1280, 720)])  # class from the folder
    assert (out / "no_face_val.txt").read_text().splitlines() == [str(sfew / "Neutral" / "grey.png")]


def test_converted_set_trains_with_the_stock_trainer(rafdb, tmp_path):
    from ultralytics import YOLO

    s = convert("rafdb", str(rafdb), str(tmp_path / "yolo set"))
    model = YOLO("fer-yolo-mamba-n.yaml")
    model.train(data=s["data"], epochs=1, imgsz=64, batch=4, device="cpu", workers=0, pretrained=False, amp=False,
                plots=False, project=str(tmp_path / "runs"), name="t", verbose=False)
    trainer = model.trainer
    assert (trainer.save_dir / "weights" / "last.pt").is_file()
    got = sorted(int(c) for lab in trainer.train_loader.dataset.labels for c in lab["cls"].ravel())
    assert got == [2, 4, 5, 6]  # Fear, Neutral, Sad, Surprise as converted
    assert trainer.data["names"] == dict(enumerate(FER_CLASSES))


@pytest.mark.parametrize("name", ["rafdb", "sfew"])
def test_repo_yamls_match_what_convert_writes(name, rafdb, tmp_path, monkeypatch):
    from ultralytics.data.utils import check_det_dataset

    repo_yaml = Path(__file__).parents[1] / "datasets" / f"{name}.yaml"
    out = tmp_path / name
    written = yaml.safe_load(Path(convert("rafdb", str(rafdb), str(out))["data"]).read_text(encoding="utf-8"))
    repo = yaml.safe_load(repo_yaml.read_text())
    assert repo["path"] == name
    keys = ("train", "val", "nc", "names")
    assert {k: repo[k] for k in keys} == {k: written[k] for k in keys}
    monkeypatch.chdir(tmp_path)  # 'path: <name>' resolves in the working directory (else in datasets_dir)
    data = check_det_dataset(str(repo_yaml))
    assert Path(data["train"]) == out / "images" / "train" and Path(data["val"]) == out / "images" / "val"
