"""A synthetic 7-expression face-detection dataset: drawn faces on cluttered backgrounds, in the Ultralytics layout.

Each image holds ``faces`` drawn heads (ellipses of varied skin tone, size, position, tilt, with or without hair)
on a gradient, noise or random-shapes background, then blurred and noised by varied amounts. The expression shows
in brows, eyes and mouth, one recipe per class (see ``EXPRESSIONS``). The label box of a face is the bounding box
of its head ellipse. Classes are balanced within each split (counts differ by at most one) and the whole set is a
function of ``seed``: re-running writes the same bytes.

Output layout::

    out/
    ├── data.yaml            path: <absolute out>, train: images/train, val: images/val, nc: 7, names
    ├── images/{train,val}/  <split>_<nnnnn>.jpg, imgsz x imgsz
    ├── labels/{train,val}/  <split>_<nnnnn>.txt, "cls cx cy w h" normalised
    └── synth_manifest.json  every file synth wrote here: a re-run removes only its own (``data.outputs``)

Examples:
    $ fer-yolo-mamba synth out=datasets/fer-synth n_train=800 n_val=200 imgsz=320 seed=0 faces=1,3
    >>> from ultra_fer_mamba.data.synth import synth
    >>> summary = synth("datasets/fer-synth", n_train=16, n_val=8)  # doctest: +SKIP
"""

from __future__ import annotations

import ast
import math
from pathlib import Path

import cv2
import numpy as np
from ultralytics.utils import LOGGER, TQDM

from ultra_fer_mamba.data import FER_CLASSES
from ultra_fer_mamba.data.convert import write_data_yaml
from ultra_fer_mamba.data.outputs import Outputs

# Face coordinates: u across the head from -1 (left) to 1 (right), v down it from -1 (top) to 1 (chin).
# Per class: brows (inner v, outer v, arched), eyes (half-height in v), mouth recipe name.
EXPRESSIONS = {
    "Anger": {"brows": (-0.26, -0.55, False), "eye": 0.05, "mouth": "tight"},
    "Disgust": {"brows": (-0.32, -0.44, False), "eye": 0.06, "mouth": "wavy"},
    "Fear": {"brows": (-0.66, -0.54, False), "eye": 0.16, "mouth": "wide"},
    "Happy": {"brows": (-0.44, -0.44, True), "eye": 0.08, "mouth": "smile"},
    "Neutral": {"brows": (-0.42, -0.42, False), "eye": 0.09, "mouth": "straight"},
    "Sad": {"brows": (-0.58, -0.36, False), "eye": 0.08, "mouth": "frown"},
    "Surprise": {"brows": (-0.62, -0.62, True), "eye": 0.17, "mouth": "round"},
}
SKIN = np.array([[205, 228, 250], [160, 196, 236], [120, 160, 214], [80, 120, 176], [58, 88, 135]], float)  # BGR
HAIR = np.array([[20, 20, 25], [30, 45, 80], [60, 110, 170], [150, 150, 155], [40, 70, 160]], float)


def to_image(u, v, face: dict) -> np.ndarray:
    """Map face coordinates ``u, v`` (arrays) to image pixels ``(N, 2)`` through the face's centre, axes and tilt."""
    (cx, cy), (a, b), t = face["center"], face["axes"], face["tilt"]
    x, y = np.asarray(u, float) * a, np.asarray(v, float) * b
    return np.stack([cx + x * math.cos(t) - y * math.sin(t), cy + x * math.sin(t) + y * math.cos(t)], -1)


def _poly(img, u, v, face, color, thickness, closed=False, fill=False):
    """Draw a polyline (or filled polygon) given in face coordinates."""
    pts = np.round(to_image(u, v, face) * 16).astype(np.int32)  # 4 fractional bits for sub-pixel drawing
    if fill:
        cv2.fillPoly(img, [pts], color, cv2.LINE_AA, shift=4)
    else:
        cv2.polylines(img, [pts], closed, color, thickness, cv2.LINE_AA, shift=4)


def _ellipse_uv(cu, cv_, ru, rv, n=24):
    """Points of an ellipse in face coordinates."""
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return cu + ru * np.cos(t), cv_ + rv * np.sin(t)


def draw_head(img: np.ndarray, face: dict, rng: np.random.Generator) -> None:
    """Draw the head ellipse (skin, optional hair cap, darker outline)."""
    skin = tuple(float(c) for c in face["skin"])
    _poly(img, *_ellipse_uv(0, 0, 1, 1, 64), face, skin, 1, fill=True)
    if rng.random() < 0.6:  # hair: the part of the head above v = -h, inside the ellipse
        h = rng.uniform(0.72, 0.86)  # above the highest brows
        t = np.linspace(math.pi + math.asin(h), 2 * math.pi - math.asin(h), 32)
        _poly(img, np.cos(t), np.sin(t), face, tuple(float(c) for c in HAIR[rng.integers(len(HAIR))]), 1, fill=True)
    _poly(img, *_ellipse_uv(0, 0, 1, 1, 64), face, tuple(float(c) * 0.6 for c in skin), face["t"], closed=True)


def draw_expression(img: np.ndarray, face: dict, name: str, rng: np.random.Generator) -> None:
    """Draw brows, eyes, nose and mouth of expression ``name`` on a drawn head (bold strokes, cartoon-like)."""
    spec, t = EXPRESSIONS[name], face["t"]
    ink = tuple(float(c) for c in rng.uniform(10, 45, 3))
    dv = rng.uniform(-0.04, 0.04)  # features shift together a little
    inner, outer, arched = spec["brows"]
    for side in (-1, 1):
        u = side * np.linspace(0.12, 0.62, 9)
        v = np.linspace(inner, outer, 9) + dv - (0.12 * np.sin(np.linspace(0, np.pi, 9)) if arched else 0)
        _poly(img, u, v, face, ink, t + 1 + (name == "Anger"))
        rv = spec["eye"]
        _poly(img, *_ellipse_uv(side * 0.36, -0.14 + dv, 0.19 if rv > 0.1 else 0.17, rv), face, (245, 245, 245), 1,
              fill=True)
        pupil = min(0.07, rv * 0.9)
        _poly(img, *_ellipse_uv(side * 0.36, -0.14 + dv, pupil * face["axes"][1] / face["axes"][0], pupil, 12),
              face, ink, 1, fill=True)
    _poly(img, [0, -0.06, 0.05], [0.02 + dv, 0.24 + dv, 0.26 + dv], face, ink, max(1, t - 1))  # nose
    if name == "Disgust":  # wrinkled nose
        for k in (-0.02, 0.08):
            _poly(img, [-0.2, -0.07], [k + dv, k + 0.04 + dv], face, ink, t)
            _poly(img, [0.07, 0.2], [k + 0.04 + dv, k + dv], face, ink, t)
    draw_mouth(img, face, spec["mouth"], 0.52 + dv, ink, side=1 if rng.random() < 0.5 else -1)


def draw_mouth(img: np.ndarray, face: dict, kind: str, v0: float, ink: tuple, side: int = 1) -> None:
    """Draw one of the mouth recipes centred at height ``v0`` (``side``: which corner a wavy mouth raises)."""
    t, dark = face["t"], (30.0, 30.0, 130.0)
    u = np.linspace(-1, 1, 17)
    if kind == "straight":
        _poly(img, 0.36 * u, v0 + 0 * u, face, ink, t)
    elif kind == "tight":  # short, thick, pressed
        _poly(img, 0.2 * u, v0 + 0.04 + 0 * u, face, ink, t + 3)
    elif kind == "smile":  # open smile: flat top, round bottom, corners up
        uu = 0.44 * u
        top, bottom = v0 - 0.08 + 0 * u, v0 - 0.08 + 0.3 * (1 - u**2)
        _poly(img, np.r_[uu, uu[::-1]], np.r_[top, bottom], face, dark, 1, fill=True)
    elif kind == "frown":  # corners down
        _poly(img, 0.38 * u, v0 - 0.04 + 0.2 * u**2, face, ink, t + 1)
    elif kind == "round":
        _poly(img, *_ellipse_uv(0, v0 + 0.04, 0.16, 0.21), face, dark, 1, fill=True)
    elif kind == "wide":  # wide open, flat, teeth showing
        _poly(img, *_ellipse_uv(0, v0 + 0.02, 0.42, 0.1), face, dark, 1, fill=True)
        _poly(img, 0.34 * u, v0 - 0.03 + 0 * u, face, (235.0, 235.0, 235.0), t)
    elif kind == "wavy":  # asymmetric: one corner raised, wavy line
        _poly(img, 0.38 * u, v0 + 0.06 * np.sin(3 * np.pi * u) - 0.12 * side * u, face, ink, t + 1)


def background(size: int, rng: np.random.Generator) -> np.ndarray:
    """Return a ``size x size`` BGR background: a gradient, smooth colour noise, or random shapes."""
    kind = rng.integers(3)
    if kind == 0:  # linear gradient between two colours along a random direction
        ang = rng.uniform(0, 2 * np.pi)
        xy = np.arange(size, dtype=np.float32)
        ramp = np.cos(ang) * xy[None, :] + np.sin(ang) * xy[:, None]
        ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6)
        c0, c1 = rng.uniform(0, 255, (2, 3)).astype(np.float32)
        img = c0 + ramp[..., None] * (c1 - c0)
    elif kind == 1:  # smooth colour noise
        grid = rng.uniform(0, 255, (int(rng.integers(3, 12)),) * 2 + (3,)).astype(np.float32)
        img = cv2.resize(grid, (size, size), interpolation=cv2.INTER_CUBIC)
    else:
        img = np.empty((size, size, 3), np.float32)
        img[:] = rng.uniform(0, 255, 3)
    img = np.clip(img, 0, 255).astype(np.uint8)
    for _ in range(int(rng.integers(0 if kind < 2 else 6, 10))):  # clutter
        color, p = tuple(float(c) for c in rng.uniform(0, 255, 3)), rng.integers(0, size, 4).tolist()
        shape = rng.integers(3)
        if shape == 0:
            cv2.rectangle(img, p[:2], p[2:], color, -1 if rng.random() < 0.5 else int(rng.integers(1, 4)))
        elif shape == 1:
            cv2.circle(img, p[:2], int(rng.integers(4, size // 6)), color, -1, cv2.LINE_AA)
        else:
            cv2.line(img, p[:2], p[2:], color, int(rng.integers(1, 5)), cv2.LINE_AA)
    return img


def place_faces(n: int, size: int, rng: np.random.Generator) -> list[dict]:
    """Pick up to ``n`` non-overlapping heads inside the image (centre, axes, tilt, skin, line width, box)."""
    faces = []
    for _ in range(20 * n):
        if len(faces) == n:
            break
        a = rng.uniform(0.08, 0.2) * size  # half width: faces 0.16..0.40 of the image wide
        b, tilt = a * rng.uniform(1.12, 1.35), rng.uniform(-0.25, 0.25)
        ex = math.hypot(a * math.cos(tilt), b * math.sin(tilt))  # half extents of the tilted ellipse
        ey = math.hypot(a * math.sin(tilt), b * math.cos(tilt))
        cx, cy = rng.uniform(ex + 1, size - ex - 1), rng.uniform(ey + 1, size - ey - 1)
        box = (cx - ex, cy - ey, cx + ex, cy + ey)
        if any(box[0] < f["box"][2] + 2 and f["box"][0] < box[2] + 2 and box[1] < f["box"][3] + 2
               and f["box"][1] < box[3] + 2 for f in faces):
            continue
        k = rng.uniform(0, len(SKIN) - 1)  # skin tone: interpolate between neighbouring anchors
        skin = SKIN[int(k)] + (k - int(k)) * (SKIN[min(int(k) + 1, len(SKIN) - 1)] - SKIN[int(k)])
        faces.append({"center": (cx, cy), "axes": (a, b), "tilt": tilt, "box": box, "skin": skin,
                      "t": max(2, round(a * 0.09))})
    return faces


def render(size: int, classes: list[int], rng: np.random.Generator) -> tuple[np.ndarray, list[str]]:
    """Draw one image with faces of the given classes (fewer if they do not fit); return it and its label lines."""
    img = background(size, rng)
    lines = []
    for face, cls in zip(place_faces(len(classes), size, rng), classes):
        draw_head(img, face, rng)
        draw_expression(img, face, FER_CLASSES[cls], rng)
        x1, y1, x2, y2 = face["box"]
        lines.append(f"{cls} {(x1 + x2) / 2 / size:.6f} {(y1 + y2) / 2 / size:.6f} "
                     f"{(x2 - x1) / size:.6f} {(y2 - y1) / size:.6f}")
    if rng.random() < 0.5:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.3, 0.9))
    noisy = img.astype(np.float32) * rng.uniform(0.8, 1.15) + rng.uniform(-20, 20)  # contrast, brightness
    noisy += rng.standard_normal(img.shape, dtype=np.float32) * rng.uniform(0, 8)
    img = np.clip(noisy, 0, 255, out=noisy).astype(np.uint8)
    return img, lines


def face_range(faces) -> tuple[int, int]:
    """Parse ``faces`` (an int, a pair, or its text as the CLI passes it: ``"1,3"``, ``"(1, 3)"``) to (lo, hi).

    Examples:
        >>> face_range("(1, 3)"), face_range(2), face_range([2, 4])
        ((1, 3), (2, 2), (2, 4))
    """
    value = ast.literal_eval(faces) if isinstance(faces, str) else faces
    lo, hi = (value, value) if isinstance(value, int) else tuple(value)
    if not 1 <= lo <= hi:
        raise ValueError(f"faces={faces!r}: want 1 <= min <= max, e.g. faces=1,3")
    return int(lo), int(hi)


def synth(
    out: str = "datasets/fer-synth",
    n_train: int = 800,
    n_val: int = 200,
    imgsz: int = 320,
    seed: int = 0,
    faces: tuple[int, int] | int | str = (1, 3),
) -> dict:
    """Write the synthetic 7-expression face-detection set under ``out`` (layout in the module docstring).

    Args:
        out (str): Output folder.
        n_train (int): Training images.
        n_val (int): Validation images.
        imgsz (int): Image side in pixels (faces are 0.16..0.40 of it wide: >= 40 px at 256).
        seed (int): Seed; the same seed writes the same files.
        faces (tuple[int, int] | int | str): Faces per image, ``(min, max)`` or one number.

    Returns:
        (dict): ``data`` (the data.yaml path), ``images`` and ``boxes`` per split, ``per_class`` box counts.

    Examples:
        >>> import tempfile
        >>> s = synth(tempfile.mkdtemp(), n_train=14, n_val=7, faces=1)  # doctest: +SKIP
        >>> s["images"], s["per_class"]["train"]  # doctest: +SKIP
        ({'train': 14, 'val': 7}, [2, 2, 2, 2, 2, 2, 2])
    """
    lo, hi = face_range(faces)
    root = Path(out)
    summary = {"images": {}, "boxes": {}, "per_class": {}}
    splits = (("train", n_train), ("val", n_val))
    planned = {f"{d}/{split}/{split}_{i:05d}.{ext}" for split, n in splits for i in range(n)
               for d, ext in (("images", "jpg"), ("labels", "txt"))} | {"data.yaml"}
    outputs = Outputs(root, "synth")
    outputs.claim(planned)  # refuses before writing anything if it would overwrite a file synth did not write
    for k, (split, n) in enumerate(splits):
        rng = np.random.default_rng([seed, k])
        counts = rng.integers(lo, hi + 1, n)
        classes = rng.permutation(np.resize(np.arange(len(FER_CLASSES)), counts.sum())).tolist()  # balanced
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
        per_class, start = [0] * len(FER_CLASSES), 0
        for i in TQDM(range(n), desc=f"synth {split}"):
            img, lines = render(imgsz, classes[start : start + counts[i]], rng)
            start += counts[i]
            stem = f"{split}_{i:05d}"
            (root / "images" / split / f"{stem}.jpg").write_bytes(
                cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 92])[1].tobytes())
            (root / "labels" / split / f"{stem}.txt").write_text("".join(f"{x}\n" for x in lines))
            for line in lines:
                per_class[int(line.split()[0])] += 1
        summary["images"][split], summary["boxes"][split], summary["per_class"][split] = n, sum(per_class), per_class
    summary["data"] = str(write_data_yaml(root))
    outputs.finish(planned, scope=("images/", "labels/"))
    LOGGER.info(f"synth: {summary['images']} images, {summary['boxes']} faces -> {summary['data']}")
    return summary
