"""Readers of the annotation formats ``convert`` understands, each yielding ``Entry`` and ``Problem`` items.

A reader only parses: it names each source image, its split and its boxes (pixels, class ids already in
``FER_CLASSES`` order), and yields a ``Problem`` (where, what) for input it cannot use. Checking the image
itself, the boxes against its size, and writing are ``convert``'s job. Every reader refuses image paths that
resolve (through ``..`` or a symlink) outside the root they belong to.

Formats:
    rafdb: ``EmoLabel/list_patition_label.txt`` lines ``train_00001.jpg 5`` (RAF ids 1..7 = Surprise, Fear,
        Disgust, Happiness, Sadness, Anger, Neutral), images ``Image/original/<name>``, boxes
        ``Annotation/boundingbox/<stem>_boundingbox.txt`` holding ``x1 y1 x2 y2``. ``train_*`` -> train,
        ``test_*`` -> val.
    sfew: one folder per emotion (``Angry/``, ``Happy/``, ...) of frames; no boxes (a face detector or a list
        file gives them).
    txt: the original FER-YOLO-Mamba code's list files, one image a line:
        ``path x1,y1,x2,y2,cls [x1,y1,x2,y2,cls ...]``, ``cls`` indexing a classes file of one name a line.
    voc: Pascal VOC, ``Annotations/<id>.xml``, ``JPEGImages/``, ``ImageSets/Main/{train,val}.txt``.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Iterator, Union

from ultralytics.data.utils import IMG_FORMATS

from ultra_fer_mamba.data import class_index

RAF_LABELS = ("Surprise", "Fear", "Disgust", "Happiness", "Sadness", "Anger", "Neutral")  # RAF ids 1..7
RAF_SPLITS = {"train": "train", "test": "val"}


@dataclass
class Entry:
    """One source image to write: ``boxes`` are ``(cls, x1, y1, x2, y2)`` in pixels of the original image.

    ``face_class`` marks an image labelled by its expression only (SFEW): with no boxes given, the largest face a
    detector finds gets that class.
    """

    image: Path
    split: str
    origin: str  # "file:line" that described this entry, for reports
    boxes: list[tuple[int, float, float, float, float]] = field(default_factory=list)
    face_class: int | None = None


@dataclass
class Problem:
    """Input that was skipped: where (``file:line`` or ``file``) and why."""

    origin: str
    message: str

    def __str__(self) -> str:
        return f"{self.origin}: {self.message}"


Item = Union[Entry, Problem]


def inside(path: Path, root: Path) -> Path | None:
    """Return ``path`` if, resolved (``..`` and symlinks followed), it stays inside ``root``, else None."""
    resolved, root = path.resolve(), root.resolve()
    return path if resolved == root or root in resolved.parents else None


def read_lines(path: Path) -> list[str]:
    """Return a text file's lines (UTF-8, a BOM dropped, undecodable bytes replaced) or exit if it is missing."""
    if not path.is_file():
        raise SystemExit(f"convert: file not found: {path}")
    return path.read_text(encoding="utf-8-sig", errors="replace").splitlines()


def read_rafdb(source: Path) -> Iterator[Item]:
    """Yield RAF-DB basic's images with their one face box, train and val (RAF's test) splits.

    Args:
        source (Path): The RAF-DB ``basic`` folder (holding ``EmoLabel/``, ``Image/``, ``Annotation/``).

    Returns:
        (Iterator[Entry | Problem]): One entry per label line, or the problem that line has.
    """
    labels = source / "EmoLabel" / "list_patition_label.txt"
    for n, line in enumerate(read_lines(labels), 1):
        if not line.strip():
            continue
        where = f"{labels}:{n}"
        tokens = line.split()
        raf = int(tokens[1]) if len(tokens) == 2 and tokens[1].isdigit() else 0
        split = RAF_SPLITS.get(tokens[0].split("_")[0])
        if not 1 <= raf <= 7 or split is None:
            yield Problem(where, f"malformed line '{line.strip()}' (want '<train|test>_<n>.jpg <1..7>')")
            continue
        image = inside(source / "Image" / "original" / tokens[0], source)
        box_file = source / "Annotation" / "boundingbox" / f"{Path(tokens[0]).stem}_boundingbox.txt"
        if image is None:
            yield Problem(where, f"image path resolves outside {source}")
        elif not box_file.is_file():
            yield Problem(where, f"box file not found: {box_file}")
        else:
            box = _raf_box(box_file)
            cls = class_index(RAF_LABELS[raf - 1])
            yield Entry(image, split, where, [(cls, *box)]) if box else Problem(f"{box_file}:1", "malformed box")


def _raf_box(path: Path) -> tuple[float, float, float, float] | None:
    """Return the ``x1 y1 x2 y2`` of a RAF-DB box file, or None when it does not hold four numbers."""
    try:
        box = tuple(float(v) for v in path.read_text(encoding="utf-8", errors="replace").split())
    except ValueError:
        return None
    return box if len(box) == 4 else None


def parse_list_line(line: str) -> tuple[str, list[tuple[int, float, float, float, float]]]:
    """Split one list-file line into its image path and ``(cls, x1, y1, x2, y2)`` boxes.

    Boxes are the trailing space-separated tokens holding a comma; everything before them is the path, so paths
    with spaces work.

    Args:
        line (str): e.g. ``"/data/my img.jpg 10,20,110,140,3 5,5,20,20,0"``.

    Returns:
        (tuple[str, list]): The path as written and its boxes (class ids as in the list).

    Raises:
        ValueError: For a line with no path or a box that is not four numbers and an integer class.

    Examples:
        >>> parse_list_line("a b.jpg 1,2,30,40,3")
        ('a b.jpg', [(3, 1.0, 2.0, 30.0, 40.0)])
    """
    tokens = list(re.finditer(r"\S+", line))
    first = len(tokens)
    while first and "," in tokens[first - 1].group():
        first -= 1
    path = line[: tokens[first].start()].strip() if first < len(tokens) else line.strip()
    if not path:
        raise ValueError(f"malformed line '{line.strip()}' (want 'path x1,y1,x2,y2,cls ...')")
    boxes = []
    for token in tokens[first:]:
        values = token.group().split(",")
        try:
            if len(values) != 5:
                raise ValueError
            boxes.append((int(values[4]), *(float(v) for v in values[:4])))
        except ValueError:
            raise ValueError(f"malformed box '{token.group()}' (want x1,y1,x2,y2,cls)") from None
    return path, boxes


def reroot(path: str, images: Path) -> Path | None:
    """Map a list path to ``images``: absolute paths by file name, relative ones below it; None if it escapes."""
    if PurePosixPath(path).is_absolute() or PureWindowsPath(path).is_absolute():
        path = PureWindowsPath(path).name  # splits on both / and \
    return inside(images / path, images)


def read_list(source: Path, classes: Path, images: Path, split: str) -> Iterator[Item]:
    """Yield the images of an original-code list file, class ids mapped through the classes file by name.

    Args:
        source (Path): The list file.
        classes (Path): One class name a line, in the list's id order (trailing spaces allowed).
        images (Path): Folder the list's images are found in.
        split (str): Split every entry goes to.

    Returns:
        (Iterator[Entry | Problem]): One entry per non-empty line (lines with no box are backgrounds).
    """
    names = [name.strip() for name in read_lines(classes)]
    while names and not names[-1]:
        names.pop()
    for n, line in enumerate(read_lines(source), 1):
        if not line.strip():
            continue
        where = f"{source}:{n}"
        try:
            path, boxes = parse_list_line(line)
        except ValueError as e:
            yield Problem(where, str(e))
            continue
        image = reroot(path, images)
        unknown = [c for c, *_ in boxes if not 0 <= c < len(names) or class_index(names[c]) is None]
        if image is None:
            yield Problem(where, f"image '{path}' resolves outside images={images}")
        elif unknown:
            name = f" ('{names[unknown[0]]}', {classes}:{unknown[0] + 1})" if 0 <= unknown[0] < len(names) else ""
            yield Problem(where, f"unknown class {unknown[0]}{name}")
        else:
            yield Entry(image, split, where, [(class_index(names[c]), *xyxy) for c, *xyxy in boxes])


def read_box_list(path: Path) -> tuple[dict[str, tuple[str, list]], list[Problem]]:
    """Read a list file's boxes by image file name: ``{name: (file:line, [(cls, x1, y1, x2, y2), ...])}``.

    Returns:
        (tuple[dict, list[Problem]]): The boxes found and the lines that do not parse.
    """
    found, problems = {}, []
    for n, line in enumerate(read_lines(path), 1):
        if not line.strip():
            continue
        try:
            image, boxes = parse_list_line(line)
        except ValueError as e:
            problems.append(Problem(f"{path}:{n}", str(e)))
            continue
        found[PureWindowsPath(image).name] = (f"{path}:{n}", boxes)
    return found, problems


def read_sfew(source: Path, split: str, boxes: Path | None = None) -> Iterator[Item]:
    """Yield SFEW 2.0 frames labelled by their folder, boxes from ``boxes`` if given, else left to a detector.

    Args:
        source (Path): Folder holding one sub-folder per emotion (``Angry``, ``Disgust``, ...), e.g. SFEW's Train.
        split (str): Split every entry goes to.
        boxes (Path | None): Optional list file whose boxes (matched by image file name) replace detection;
            their class field is ignored, the folder gives the class.

    Returns:
        (Iterator[Entry | Problem]): One entry per image; an unknown folder name is one problem.
    """
    given, problems = read_box_list(boxes) if boxes else (None, [])
    yield from problems
    for folder in sorted(p for p in source.iterdir() if p.is_dir()):
        cls = class_index(folder.name)
        if cls is None:
            yield Problem(str(folder), f"folder '{folder.name}' is not one of the 7 expressions, skipped")
            continue
        for file in sorted(f for f in folder.iterdir() if f.suffix[1:].lower() in IMG_FORMATS):
            image = inside(file, source)
            if image is None:
                yield Problem(str(file), f"symlink points outside {source}")
                continue
            where, listed = given.get(file.name, (str(file), [])) if given is not None else (str(file), [])
            yield Entry(image, split, where, [(cls, *xyxy) for _, *xyxy in listed], face_class=cls)


def read_voc(source: Path) -> tuple[tuple[str, ...], Iterator[Item]]:
    """Return the splits of a Pascal VOC tree and an iterator over its images.

    Splits come from ``ImageSets/Main/{train,val}.txt`` when either exists, else every XML goes to train.

    Args:
        source (Path): VOC root holding ``Annotations/`` and ``JPEGImages/``.

    Returns:
        (tuple[tuple[str, ...], Iterator[Entry | Problem]]): Splits written and the entries.
    """
    sets = {s: source / "ImageSets" / "Main" / f"{s}.txt" for s in ("train", "val")}
    if not any(f.is_file() for f in sets.values()):
        xmls = sorted((source / "Annotations").glob("*.xml"))
        return ("train",), (_voc_entry(x, source, "train", str(x)) for x in xmls)
    splits = tuple(s for s, f in sets.items() if f.is_file())

    def items():
        for split in splits:
            for n, line in enumerate(read_lines(sets[split]), 1):
                if line.strip():
                    xml = source / "Annotations" / f"{line.split()[0]}.xml"
                    yield _voc_entry(xml, source, split, f"{sets[split]}:{n}")

    return splits, items()


def _voc_entry(xml: Path, source: Path, split: str, where: str) -> Item:
    """Parse one VOC XML into an entry (image from ``<filename>``, else ``<xml stem>.jpg``) or a problem."""
    if not xml.is_file():
        return Problem(where, f"annotation not found: {xml}")
    text = xml.read_text(encoding="utf-8", errors="replace")
    try:
        root = ET.fromstring(text)
    except ET.ParseError as e:
        return Problem(f"{xml}:{e.position[0]}", f"malformed XML ({e})")
    image = inside(source / "JPEGImages" / (root.findtext("filename") or f"{xml.stem}.jpg").strip(), source)
    if image is None:
        return Problem(str(xml), f"image path resolves outside {source}")
    lines = [text.count("\n", 0, m.start()) + 1 for m in re.finditer(r"<object[\s>]", text)]
    boxes = []
    for obj, line in zip(root.findall("object"), lines):
        name = (obj.findtext("name") or "").strip()
        if class_index(name) is None:
            return Problem(f"{xml}:{line}", f"unknown class '{name}'")
        try:
            xyxy = [float(obj.findtext(f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax")]
            boxes.append((class_index(name), *xyxy))
        except (TypeError, ValueError):
            return Problem(f"{xml}:{line}", "malformed <bndbox> (want numeric xmin, ymin, xmax, ymax)")
    return Entry(image, split, str(xml), boxes)
