"""Face crops for a crop classifier (LFNSB): a detection dataset -> Ultralytics' classification layout.

Input (``source=``): an Ultralytics detection data YAML (``path``, ``train``, ``val``, optional ``test``, ``names``),
its images and ``cls cx cy w h`` label files, e.g. what ``fer-yolo-mamba convert`` or ``synth`` write.

Output layout (``out=``), what ``yolo classify train data=<out>`` reads::

    out/
    ├── train/<class name>/<image stem>_<k>.jpg   one square crop per face box k, size x size (112)
    ├── val/<class name>/...                       (and test/ when the source has it); every class has a folder
    ├── crops.yaml                                 how the crops were made (source, margin, size, align) and the
    │                                              source's class order: the two-stage predictor reads both
    ├── report.txt                                 every skipped box or image of the last run, "file:line: why"
    ├── unaligned.txt                              align=True only: crops made without landmarks (plain crops)
    └── crops_manifest.json                        every file the converter wrote here (``data.outputs``)

A crop is the square of side ``max(w, h) * (1 + margin)`` centred on the box, parts outside the image filled with
grey (114), resized to ``size``. With ``align=True``, MTCNN's 5 landmarks of the face that best overlaps the box map
by a similarity transform onto LFNSB's 112x112 template (``TEMPLATE_112``, scaled to ``size``); a box with no
landmarked face found gets the plain crop. :func:`crop_face` makes both, for the converter and the two-stage predictor.

Bad input (unreadable image, malformed label line, class out of range, empty box, box outside the image, box
smaller than ``min_size`` px) is logged with its file and line, written to report.txt and skipped; ``strict=True``
stops at the first one. As ``convert``, the converter never deletes or changes a file it did not write: a re-run
removes only its own stale crops, and a run that would overwrite a file of the user's refuses before writing anything.

Examples:
    $ fer-yolo-mamba convert format=crops source=datasets/rafdb/data.yaml out=datasets/rafdb-crops
    $ yolo classify train model=lfnsb-cls.yaml data=datasets/rafdb-crops imgsz=112
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import yaml
from ultralytics.utils import LOGGER, TQDM

from ultra_fer_mamba.data.convert import BadInput, load_image
from ultra_fer_mamba.data.formats import Problem
from ultra_fer_mamba.data.outputs import Outputs

MARGIN = 0.25  # the crop's side is the box's longer side x (1 + MARGIN)
SIZE = 112
FILL = (114, 114, 114)  # Ultralytics' letterbox grey, for crop parts outside the image
# LFNSB's (and ArcFace's) 112x112 template: left eye, right eye, nose tip, left and right mouth corner (x, y)
TEMPLATE_112 = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655],
                         [70.7299, 92.2041]])  # fmt: skip


def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity transform (rotation, uniform scale, shift) taking points src to dst.

    Args:
        src (np.ndarray): Points (n, 2), n >= 2.
        dst (np.ndarray): Their targets (n, 2).

    Returns:
        (np.ndarray): The 2x3 matrix [[a, -b, tx], [b, a, ty]] for ``cv2.warpAffine``.

    Examples:
        >>> m = similarity(np.array([[0, 0], [1, 0]]), np.array([[1, 1], [1, 3]]))  # x2, turned 90 degrees, +(1, 1)
        >>> np.allclose(m, [[0, -2, 1], [2, 0, 1]])
        True
    """
    x, y = src[:, 0], src[:, 1]
    one, zero = np.ones_like(x), np.zeros_like(x)
    rows = np.concatenate([np.stack([x, -y, one, zero], 1), np.stack([y, x, zero, one], 1)])  # (2n, 4)
    (a, b, tx, ty), *_ = np.linalg.lstsq(rows, np.concatenate([dst[:, 0], dst[:, 1]]), rcond=None)
    return np.array([[a, -b, tx], [b, a, ty]])


def square(box, margin: float = MARGIN) -> tuple[float, float, float]:
    """The crop square of a box: top-left x, y and side, the longer side grown by ``margin``, same centre."""
    x1, y1, x2, y2 = box
    side = max(x2 - x1, y2 - y1) * (1 + margin)
    return (x1 + x2 - side) / 2, (y1 + y2 - side) / 2, side


def crop_face(image: np.ndarray, box, margin: float = MARGIN, size: int = SIZE, landmarks=None) -> np.ndarray:
    """Cut one face out of an image: the square crop of a box, or the landmark-aligned crop when landmarks are given.

    Args:
        image (np.ndarray): BGR image (h, w, 3).
        box (tuple[float, float, float, float]): Face box x1, y1, x2, y2 in pixels.
        margin (float): Growth of the box's longer side (plain crops).
        size (int): Side of the crop in pixels.
        landmarks (np.ndarray | None): (5, 2) eyes, nose, mouth corners: warp them onto ``TEMPLATE_112``.

    Returns:
        (np.ndarray): The crop (size, size, 3), grey where it lies outside the image.

    Examples:
        >>> crop = crop_face(np.zeros((50, 80, 3), np.uint8), (70, 10, 90, 30), size=32)  # half off the right edge
        >>> crop.shape, crop[16, 4].tolist(), crop[16, 28].tolist()
        ((32, 32, 3), [0, 0, 0], [114, 114, 114])
    """
    if landmarks is not None:
        m = similarity(np.asarray(landmarks, float), TEMPLATE_112 * size / 112)
        return cv2.warpAffine(image, m, (size, size), flags=cv2.INTER_LINEAR, borderValue=FILL)
    x0, y0, side = square(box, margin)
    x0, y0, side = round(x0), round(y0), max(round(side), 1)
    h, w = image.shape[:2]
    pad = max(0, -x0, -y0, x0 + side - w, y0 + side - h)
    if pad:
        image = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=FILL)
    crop = image[y0 + pad : y0 + pad + side, x0 + pad : x0 + pad + side]
    return cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA if side > size else cv2.INTER_LINEAR)


def best_landmarks(box, faces: list) -> np.ndarray | None:
    """The landmarks of the detected face overlapping ``box`` most (IoU >= 0.3), or None.

    Args:
        box (tuple[float, float, float, float]): The labelled box.
        faces (list[tuple[tuple, np.ndarray]]): Detected ``(box, landmarks)`` pairs (``faces.landmark_detector``).
    """

    def iou(a, b):
        w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
        h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
        return w * h / union if union > 0 else 0.0

    score, points = max(((iou(box, b), p) for b, p in faces), key=lambda t: t[0], default=(0.0, None))
    return points if score >= 0.3 else None


def read_boxes(label: Path, w: int, h: int, nc: int, min_size: float) -> tuple[list, list[Problem]]:
    """Read an image's label file as pixel boxes, checking each line.

    Args:
        label (Path): ``cls cx cy w h`` lines, normalised (a missing file: no faces).
        w, h (int): Image size in pixels.
        nc (int): Number of classes.
        min_size (float): Smallest box side (px) kept.

    Returns:
        (tuple[list, list[Problem]]): ``(line number, cls, (x1, y1, x2, y2))`` of the good boxes, and the bad lines.
    """
    boxes, problems = [], []
    lines = label.read_text(encoding="utf-8", errors="replace").splitlines() if label.is_file() else []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            values = line.split()
            if len(values) != 5:
                raise BadInput(f"malformed line '{line.strip()}' (want 'cls cx cy w h')")
            try:
                cls, (cx, cy, bw, bh) = int(values[0]), (float(v) for v in values[1:])
            except ValueError:
                raise BadInput(f"malformed line '{line.strip()}' (want 'cls cx cy w h')") from None
            if not 0 <= cls < nc:
                raise BadInput(f"class {cls} is not in 0..{nc - 1}")
            x1, y1, x2, y2 = (cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h
            if not all(map(math.isfinite, (x1, y1, x2, y2))) or bw <= 0 or bh <= 0:
                raise BadInput(f"box {line.strip()} is empty")
            if x2 <= 0 or y2 <= 0 or x1 >= w or y1 >= h:
                raise BadInput(f"box {line.strip()} lies outside the {w}x{h} image")
            if min(x2 - x1, y2 - y1) < min_size:
                raise BadInput(f"box {x2 - x1:.1f}x{y2 - y1:.1f} px is smaller than min_size={min_size}")
            boxes.append((n, cls, (x1, y1, x2, y2)))
        except BadInput as e:
            problems.append(Problem(f"{label}:{n}", str(e)))
    return boxes, problems


def crop_name(image: str, line: int, name: str) -> str:
    """The crop of label line ``line`` of an image, relative to its split folder: ``<class name>/<stem>_<line>.jpg``."""
    return f"{name}/{Path(image).stem}_{line}.jpg"


def planned_crops(images: list[str], names: list[str]) -> set[str]:
    """Every crop (``crop_name``) the label files of these images may give: one per line whose class id is valid."""
    from ultralytics.data.utils import img2label_paths

    planned = set()
    for image, label in zip(images, img2label_paths(images)):
        label = Path(label)
        lines = label.read_text(encoding="utf-8", errors="replace").splitlines() if label.is_file() else []
        for n, line in enumerate(lines, 1):
            try:
                cls = int(line.split()[0])
            except (IndexError, ValueError):
                continue
            if 0 <= cls < len(names):
                planned.add(crop_name(image, n, names[cls]))
    return planned


def crop_image(image: str, folder: Path, names: list[str], margin: float, size: int, min_size: float, detect=None):
    """Write the crops of one image's boxes to ``folder/<class name>/<stem>_<line>.jpg`` (``crop_name``).

    Args:
        image (str): Image path; its label file is found the Ultralytics way (``images/`` -> ``labels/``).
        folder (Path): The split's output folder.
        names (list[str]): Class names by id.
        margin, size, min_size: As in :func:`crops`.
        detect (Callable | None): ``faces.landmark_detector()`` to align, None for plain crops.

    Returns:
        (tuple[list[str], list[Problem], list[str]]): Crops written (``crop_name``), problems, boxes (file:line) left
            unaligned.
    """
    from ultralytics.data.utils import img2label_paths

    try:
        pixels = load_image(Path(image))
    except BadInput as e:
        return [], [Problem(image, str(e))], []
    h, w = pixels.shape[:2]
    label = Path(img2label_paths([image])[0])
    boxes, problems = read_boxes(label, w, h, len(names), min_size)
    faces = detect(pixels) if detect and boxes else []
    written, unaligned = [], []
    for n, cls, box in boxes:
        points = best_landmarks(box, faces) if detect else None
        if detect and points is None:
            unaligned.append(f"{label}:{n}")
        name = crop_name(image, n, names[cls])
        cv2.imwrite(str(folder / name), crop_face(pixels, box, margin, size, points))
        written.append(name)
    return written, problems, unaligned


def crops(
    source: str,
    out: str,
    align: bool = False,
    margin: float = MARGIN,
    size: int = SIZE,
    min_size: float = 8,
    strict: bool = False,
) -> dict:
    """Write square face crops of a detection dataset's boxes in Ultralytics' classification layout (module docstring).

    Args:
        source (str): Detection data YAML.
        out (str): Output folder (``yolo classify train data=<out>``).
        align (bool): Align each face by MTCNN's 5 landmarks (plain crop when none is found).
        margin (float): Growth of a box's longer side for its square crop.
        size (int): Crop side in pixels (LFNSB: 112).
        min_size (float): Boxes with a side under this many pixels are reported and skipped.
        strict (bool): Stop (SystemExit) at the first bad input instead of skipping it.

    Returns:
        (dict): ``crops`` per split and class name, ``skipped``, ``unaligned`` and the paths ``out``, ``report``.

    Examples:
        >>> from ultra_fer_mamba.data.crops import crops
        >>> summary = crops("datasets/rafdb/data.yaml", "datasets/rafdb-crops")  # doctest: +SKIP
    """
    from ultralytics.data.utils import check_det_dataset

    from ultra_fer_mamba.evaluate import list_images

    try:
        info = check_det_dataset(str(source), autodownload=False)
    except Exception as e:  # Ultralytics raises several types for a missing or malformed YAML
        raise SystemExit(f"convert: format=crops needs a detection data YAML as source: {source}: {e}") from None
    out = Path(out).resolve()
    names = [str(info["names"][i]) for i in range(len(info["names"]))]
    splits = [s for s in ("train", "val", "test") if info.get(s)]
    detect = None
    if align:
        from ultra_fer_mamba.data.faces import landmark_detector

        try:
            detect = landmark_detector()
        except ModuleNotFoundError as e:
            raise SystemExit(f"convert: align=True: {e}") from None

    images = {s: list_images(info[s]) for s in splits}
    files = {"crops.yaml", "report.txt", *(["unaligned.txt"] if align else [])}
    outputs = Outputs(out, "crops")  # refuses before writing anything if it would overwrite a file not ours
    outputs.claim(files | {f"{s}/{f}" for s in splits for f in planned_crops(images[s], names)})
    problems, unaligned = [], []
    counts = {s: dict.fromkeys(names, 0) for s in splits}
    for split in splits:
        for name in names:
            (out / split / name).mkdir(parents=True, exist_ok=True)
        for image in TQDM(images[split], desc=f"convert crops ({split})", unit=" images"):
            written, bad, missed = crop_image(image, out / split, names, margin, size, min_size, detect)
            for p in bad:
                if strict:
                    raise SystemExit(f"convert: {p}")
                LOGGER.warning(f"convert: {p}")
            for name in written:
                counts[split][name.partition("/")[0]] += 1
            files.update(f"{split}/{name}" for name in written)
            problems += bad
            unaligned += missed
    settings = {"source": str(Path(source).resolve()), "margin": margin, "size": size, "align": align, "names": names}
    (out / "crops.yaml").write_text(yaml.safe_dump(settings, sort_keys=False), encoding="utf-8")
    report = out / "report.txt"
    report.write_text("".join(f"{p}\n" for p in problems), encoding="utf-8")
    if align:
        (out / "unaligned.txt").write_text("".join(f"{u}\n" for u in unaligned), encoding="utf-8")
    removed = outputs.finish(files, scope=(*(f"{s}/" for s in splits), "unaligned.txt"))
    foreign = [f for s in splits for name in names for f in outputs.foreign(f"{s}/{name}")]
    if foreign:
        LOGGER.warning(f"convert: {out} also holds {len(foreign)} image(s) the crops converter did not write (e.g. "
                       f"{foreign[0]}); they were left as they are, and Ultralytics will train on them")
    summary = {"crops": counts, "skipped": len(problems), "unaligned": len(unaligned), "out": str(out),
               "report": str(report)}  # fmt: skip
    total = ", ".join(f"{s} {sum(c.values())} crops" for s, c in counts.items())
    LOGGER.info(f"convert crops: {total}; skipped {len(problems)} (see {report})"
                + (f", {len(unaligned)} without landmarks (plain crops)" if align else "")
                + (f", removed {removed} stale crops of an earlier run" if removed else "")
                + f"\nconvert crops: yolo classify train data={out} imgsz={size}")  # fmt: skip
    return summary
