"""Convert facial-expression datasets (RAF-DB, SFEW 2.0, the original code's lists, Pascal VOC) to Ultralytics YOLO.

Input layouts (``source=``)::

    format=rafdb  RAF-DB/basic/                      format=sfew  SFEW_2/Train/      (split=train)
                  ├── EmoLabel/list_patition_label.txt                ├── Angry/*.png
                  ├── Image/original/train_00001.jpg                  ├── Disgust/ ... Surprise/
                  └── Annotation/boundingbox/                         (boxes from a face detector, or from
                      train_00001_boundingbox.txt  (x1 y1 x2 y2)       boxes=<list file>)

    format=txt    list.txt  (path x1,y1,x2,y2,cls ...) + classes=classes.txt + images=<folder> + split=train|val
    format=voc    VOC/Annotations/*.xml, VOC/JPEGImages/, VOC/ImageSets/Main/{train,val}.txt (optional)

Output layout (``out=``)::

    out/
    ├── data.yaml              path: <absolute out>, train: images/train, val: images/val, nc: 7, names
    ├── images/{train,val}/    source images, copied byte for byte under their own file names
    ├── labels/{train,val}/    one .txt per image: "cls cx cy w h" normalised, 6 decimals (empty: background)
    ├── report.txt             every skipped input of the last run, "file:line: why"
    ├── no_face_<split>.txt    sfew only: images with no face found (kept out of the labels)
    └── convert_manifest.json  every file convert wrote here (``data.outputs``)

Class ids follow ``FER_CLASSES`` (Anger, Disgust, Fear, Happy, Neutral, Sad, Surprise) whatever the source calls
them. The source is only read, nothing is written outside ``out``, and convert never deletes or changes a file it
did not write: a re-run removes only its own stale outputs (listed in the manifest), the user's own files in
``out`` stay byte for byte, and a run that would overwrite one of them refuses before touching anything, naming
the folder. Re-running gives the same tree. Bad input (missing or unreadable image, box outside the image or
empty, unknown class, malformed line) skips that image, logs a warning naming file and line, and is counted;
``strict=True`` stops at the first one instead.

Examples:
    $ fer-yolo-mamba convert format=rafdb source=RAF-DB/basic out=datasets/rafdb
    $ fer-yolo-mamba convert format=sfew source=SFEW_2/Train out=datasets/sfew split=train
    $ fer-yolo-mamba convert format=txt source=train.txt classes=classes.txt images=JPEGImages out=data split=train
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import yaml
from ultralytics.utils import LOGGER, TQDM
from ultralytics.utils.patches import imread

from ultra_fer_mamba.data import FER_CLASSES
from ultra_fer_mamba.data.faces import face_detector, largest_face
from ultra_fer_mamba.data.formats import Entry, Problem, read_list, read_rafdb, read_sfew, read_voc
from ultra_fer_mamba.data.outputs import Outputs

FORMATS = ("rafdb", "sfew", "txt", "voc", "crops")  # crops: data/crops.py
SPLITS = ("train", "val")


class BadInput(Exception):
    """An entry that cannot be written; the message says why."""


def write_data_yaml(out: Path) -> Path:
    """Write ``out/data.yaml`` for the Ultralytics layout under ``out`` with the 7 classes; return its path.

    Examples:
        >>> import tempfile
        >>> write_data_yaml(Path(tempfile.mkdtemp())).name
        'data.yaml'
    """
    data = {"path": str(out.resolve()), "train": "images/train", "val": "images/val", "nc": len(FER_CLASSES),
            "names": dict(enumerate(FER_CLASSES))}
    file = out / "data.yaml"
    file.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return file


def yolo_line(cls: int, x1: float, y1: float, x2: float, y2: float, w: int, h: int, tol: float = 1.0) -> str:
    """Return the YOLO label line of a pixel box, clipping overhangs up to ``tol`` px.

    Args:
        cls (int): Class id.
        x1, y1, x2, y2 (float): Box corners in pixels.
        w, h (int): Image width and height.
        tol (float): Largest overhang (px) clipped instead of rejected.

    Returns:
        (str): ``"cls cx cy w h"`` normalised to the image, 6 decimals.

    Raises:
        BadInput: For a box with x2 <= x1 or y2 <= y1, or lying outside the image by more than ``tol``.

    Examples:
        >>> yolo_line(3, 10, 20, 50, 100, 200, 100)
        '3 0.150000 0.600000 0.200000 0.800000'
    """
    box = f"box {x1:g},{y1:g},{x2:g},{y2:g}"
    if not all(map(math.isfinite, (x1, y1, x2, y2))) or x2 <= x1 or y2 <= y1:
        raise BadInput(f"{box} is empty (needs x2 > x1 and y2 > y1)")
    if x1 < -tol or y1 < -tol or x2 > w + tol or y2 > h + tol:
        raise BadInput(f"{box} lies outside the {w}x{h} image")
    x1, y1, x2, y2 = max(x1, 0), max(y1, 0), min(x2, w), min(y2, h)
    if x2 <= x1 or y2 <= y1:
        raise BadInput(f"{box} is empty once clipped to the {w}x{h} image")
    return f"{cls} {(x1 + x2) / 2 / w:.6f} {(y1 + y2) / 2 / h:.6f} {(x2 - x1) / w:.6f} {(y2 - y1) / h:.6f}"


def load_image(path: Path) -> np.ndarray:
    """Decode an image the way the Ultralytics dataloader does (OpenCV, EXIF rotation applied, any path).

    Raises:
        BadInput: When the file is missing or is not a readable image.
    """
    if not path.is_file():
        raise BadInput(f"image not found: {path}")
    image = imread(str(path))
    if image is None:
        raise BadInput(f"unreadable image {path}")
    return image


def label_lines(entry: Entry, detect) -> list[str] | None:
    """Return the YOLO label lines of an entry, or None when it needs a face and none is found.

    Args:
        entry (Entry): The image and its pixel boxes (or ``face_class`` to label the largest detected face).
        detect (Callable | None): Face detector for entries without boxes, None to not detect.

    Returns:
        (list[str] | None): One line per box (empty: background image).

    Raises:
        BadInput: For an unreadable image or a bad box.
    """
    image = load_image(entry.image)
    h, w = image.shape[:2]
    boxes = entry.boxes
    if entry.face_class is not None and not boxes:
        face = largest_face(detect(image)) if detect else None
        if face is None:
            return None
        boxes = [(entry.face_class, *face)]
    return [yolo_line(cls, *xyxy, w, h) for cls, *xyxy in boxes]


def copy_if_changed(src: Path, dst: Path) -> None:
    """Copy ``src`` to ``dst`` with its timestamps unless ``dst`` already has the same size and mtime."""
    if dst.exists():
        a, b = src.stat(), dst.stat()
        if (a.st_size, a.st_mtime_ns) == (b.st_size, b.st_mtime_ns):
            return
    shutil.copy2(src, dst)


def _readers(format, source, split, classes, images, boxes):
    """Return ``(splits, items, root)`` for a format: splits it writes, its entries, the folder it reads."""
    need = {"rafdb": source, "sfew": source, "voc": source / "Annotations"}.get(format)
    if need is not None and not need.is_dir():
        raise SystemExit(f"convert: format={format} needs a folder: {need} not found")
    if format == "rafdb":
        return SPLITS, read_rafdb(source), source
    if format == "voc":
        return (*read_voc(source), source)
    if format == "sfew":
        return (split,), read_sfew(source, split, Path(boxes) if boxes else None), source
    if classes is None or images is None:
        raise SystemExit("convert: format=txt needs classes=<classes file> and images=<image folder>")
    return (split,), read_list(source, Path(classes), Path(images).resolve(), split), Path(images).resolve()


def convert(
    format: str,
    source: str,
    out: str,
    split: str = "train",
    classes: str | None = None,
    images: str | None = None,
    boxes: str | None = None,
    detector: str = "auto",
    strict: bool = False,
    align: bool = False,
    margin: float = 0.25,
    size: int = 112,
    min_size: float = 8,
) -> dict:
    """Convert a dataset to the Ultralytics layout under ``out`` (see the module docstring for layouts).

    Args:
        format (str): ``rafdb``, ``sfew``, ``txt`` or ``voc``.
        source (str): Dataset root (rafdb, sfew, voc) or list file (txt).
        out (str): Output folder; ``out/data.yaml`` is what Ultralytics trains on.
        split (str): ``train`` or ``val``, for sfew and txt (rafdb and voc bring their own splits).
        classes (str | None): txt only: classes file, one name a line.
        images (str | None): txt only: folder holding the listed images.
        boxes (str | None): sfew only: list file giving boxes instead of the face detector.
        detector (str): sfew only: face detector backend, ``auto``, ``haar`` or ``mtcnn``.
        strict (bool): Stop (SystemExit) at the first bad input instead of skipping it.
        align, margin, size, min_size: crops only (``source`` a detection data YAML), see ``data/crops.py``.

    Returns:
        (dict): ``images``, ``boxes`` and ``backgrounds`` per split, ``skipped``, ``no_face``, and the paths
            ``out``, ``data``, ``report``.

    Examples:
        >>> summary = convert("rafdb", "RAF-DB/basic", "datasets/rafdb")  # doctest: +SKIP
        >>> summary["images"]  # doctest: +SKIP
        {'train': 12271, 'val': 3068}
    """
    if format not in FORMATS:
        raise SystemExit(f"convert: format='{format}' is not one of {', '.join(FORMATS)}")
    if format == "crops":
        from ultra_fer_mamba.data.crops import crops  # imports this module's helpers

        return crops(source, out, align=align, margin=margin, size=size, min_size=min_size, strict=strict)
    if split not in SPLITS:
        raise SystemExit(f"convert: split='{split}' is not one of {', '.join(SPLITS)}")
    source, out = Path(source).resolve(), Path(out).resolve()
    if not source.exists():
        raise SystemExit(f"convert: source not found: {source}")
    splits, items, root = _readers(format, source, split, classes, images, boxes)
    if out == root or root in out.parents:
        raise SystemExit(f"convert: out={out} lies inside the source {root}; choose a folder outside it")
    try:
        backend, detect = face_detector(detector) if format == "sfew" and not boxes else (None, None)
    except (ModuleNotFoundError, ValueError) as e:
        raise SystemExit(f"convert: {e}") from None

    items = list(items)
    outputs = Outputs(out, "convert")  # refuses before writing anything if it would overwrite a file not ours
    outputs.claim({"data.yaml", "report.txt", *([f"no_face_{split}.txt"] if format == "sfew" else []),
                   *(f for e in items if isinstance(e, Entry)
                     for f in (f"images/{e.split}/{e.image.name}", f"labels/{e.split}/{e.image.stem}.txt"))})
    for s in splits:
        (out / "images" / s).mkdir(parents=True, exist_ok=True)
        (out / "labels" / s).mkdir(parents=True, exist_ok=True)
    problems, no_face, written = [], [], {s: {} for s in splits}  # written: split -> {label name: image name}
    n_boxes = {s: 0 for s in splits}
    n_background = {s: 0 for s in splits}
    for item in TQDM(items, desc=f"convert {format}" + (f" ({backend} faces)" if backend else ""), unit=" images"):
        try:
            if isinstance(item, Problem):
                raise BadInput(item.message)
            label = f"{item.image.stem}.txt"
            if label in written[item.split]:
                raise BadInput(f"duplicate image name {item.image.stem} in split {item.split}, skipped")
            lines = label_lines(item, detect)
        except BadInput as e:
            problem = Problem(item.origin, str(e))
            if strict:
                raise SystemExit(f"convert: {problem}") from None
            LOGGER.warning(f"convert: {problem}")
            problems.append(problem)
            continue
        if lines is None:
            no_face.append(item.image)
            continue
        copy_if_changed(item.image, out / "images" / item.split / item.image.name)
        (out / "labels" / item.split / label).write_text("".join(f"{x}\n" for x in lines), encoding="utf-8")
        written[item.split][label] = item.image.name
        n_boxes[item.split] += len(lines)
        n_background[item.split] += not lines

    report = out / "report.txt"
    report.write_text("".join(f"{p}\n" for p in problems), encoding="utf-8")
    files = {"data.yaml", "report.txt"}
    if format == "sfew":
        (out / f"no_face_{split}.txt").write_text("".join(f"{p}\n" for p in no_face), encoding="utf-8")
        files.add(f"no_face_{split}.txt")
    data = write_data_yaml(out)
    for s in splits:
        files.update(f for label, image in written[s].items() for f in (f"images/{s}/{image}", f"labels/{s}/{label}"))
    removed = outputs.finish(files, scope=tuple(f"{d}/{s}/" for s in splits for d in ("images", "labels")))
    for s in splits:
        foreign = outputs.foreign(f"images/{s}")
        if foreign:
            LOGGER.warning(f"convert: {out / 'images' / s} also holds {len(foreign)} image(s) convert did not write "
                           f"(e.g. {Path(foreign[0]).name}); they were left as they are, and Ultralytics will use them")
    summary = {
        "images": {s: len(written[s]) for s in splits},
        "boxes": n_boxes,
        "backgrounds": n_background,
        "skipped": len(problems),
        "no_face": len(no_face),
        "out": str(out),
        "data": str(data),
        "report": str(report),
    }
    counts = ", ".join(f"{s} {len(written[s])} images / {n_boxes[s]} boxes" for s in splits)
    LOGGER.info(
        f"convert {format}: {counts}; skipped {len(problems)} (see {report}), no face {len(no_face)}"
        + (f", removed {removed} stale files of an earlier run" if removed else "")
        + f"\nconvert {format}: data YAML {summary['data']}"
    )
    return summary
