"""``fer-yolo-mamba eval``: score a detector on a data split with the paper's metrics (its Table IV).

The model runs through Ultralytics' own predictor (letterbox, NMS at ``iou``, every detection down to ``conf``); the
ground truth is read from the Ultralytics label files of the split named in the data YAML. Scoring is
:func:`ultra_fer_mamba.metrics.paper_metrics`: VOC all-point AP at IoU 0.5 and F1/recall/precision at score 0.5.
A two-stage model (``model=DET.pt+CLS.pt``: :mod:`ultra_fer_mamba.twostage`) is scored the same way: its face
detector runs through that predictor, and each face it finds through the crop classifier.

Output folder (``runs/fer/eval``, then ``eval-2``, ... like Ultralytics)::

    metrics.json            every number of paper_metrics, class names and the settings (NaN written as null)
    table.md                the paper's Table IV layout: per class F1, Recall %, Precision %, AP50 %, then averages
    pr_curves.png           per-class precision-recall curves
    confusion_matrix.png    detection confusion matrix at score 0.5, IoU 0.5
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path

import numpy as np

from ultra_fer_mamba.io import load_predictor, make_save_dir, to_json
from ultra_fer_mamba.metrics import confusion_matrix, paper_metrics
from ultra_fer_mamba.plots import plot_confusion_matrix, plot_pr_curves


def model_label(model: str | Path) -> str:
    """A short name for a model: the run folder of ``.../<run>/weights/best.pt``, else the file stem.

    A two-stage ``detector+classifier`` is labelled by both parts.

    Examples:
        >>> model_label("runs/detect/fer-s/weights/best.pt"), model_label("yolov8n.yaml")
        ('fer-s', 'yolov8n')
        >>> model_label("runs/detect/faces/weights/best.pt+runs/classify/lfnsb/weights/best.pt")
        'faces+lfnsb'
    """
    from ultra_fer_mamba.twostage import split_spec

    parts = split_spec(str(model))
    if parts:
        return "+".join(model_label(m) for m in parts)
    p = Path(str(model))
    return p.parent.parent.name if p.suffix == ".pt" and p.parent.name == "weights" and p.parent.parent.name else p.stem


def list_images(source: str | Path | list) -> list[str]:
    """List a split's images the way Ultralytics' datasets do: folders (recursive), ``*.txt`` lists, or lists of both.

    Args:
        source (str | Path | list): A folder, an image file, a text file with one image path a line (``./`` relative
            to the text file), or a list of these.

    Returns:
        (list[str]): Sorted image paths.

    Raises:
        FileNotFoundError: If a path does not exist or no image is found.
    """
    from ultralytics.data.utils import IMG_FORMATS

    files = []
    for p in source if isinstance(source, (list, tuple)) else [source]:
        p = Path(p)
        if p.is_dir():
            files += [str(f) for f in p.rglob("*.*")]
        elif p.suffix.lower() == ".txt" and p.is_file():
            lines = p.read_text(encoding="utf-8-sig").splitlines()
            files += [str(p.parent / x[2:]) if x.startswith("./") else x for x in (s.strip() for s in lines) if x]
        elif p.is_file():
            files.append(str(p))
        else:
            raise FileNotFoundError(f"{p} does not exist")
    images = sorted(f for f in files if f.rpartition(".")[-1].lower() in IMG_FORMATS)
    if not images:
        raise FileNotFoundError(f"no images found in {source}")
    return images


def read_labels(image: str | Path, shape: tuple[int, int]) -> np.ndarray:
    """Read an image's Ultralytics label file as pixel boxes.

    Lines are ``cls cx cy w h`` normalised to the image; polygon lines (``cls x1 y1 x2 y2 ...``) become their bounding
    box, as in Ultralytics. A missing file means no face.

    Args:
        image (str | Path): The image path (``.../images/...`` is mapped to ``.../labels/....txt``).
        shape (tuple[int, int]): Image height and width in pixels.

    Returns:
        (np.ndarray): Boxes (m, 5) ``x1, y1, x2, y2, cls`` in pixels.
    """
    from ultralytics.data.utils import img2label_paths

    file = Path(img2label_paths([str(image)])[0])
    rows = [r.split() for r in file.read_text().splitlines() if r.strip()] if file.is_file() else []
    h, w = shape
    out = np.zeros((len(rows), 5))
    for i, r in enumerate(rows):
        v = np.asarray(r[1:], dtype=float)
        if len(v) == 4:
            cx, cy, bw, bh = v
            out[i, :4] = cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2
        else:  # polygon
            xy = v[: len(v) // 2 * 2].reshape(-1, 2)
            out[i, :4] = *xy.min(0), *xy.max(0)
        out[i, 4] = int(r[0])
    out[:, [0, 2]] *= w
    out[:, [1, 3]] *= h
    return out


def predict_split(
    yolo,
    images: list[str],
    imgsz: int = 320,
    conf: float = 0.001,
    iou: float = 0.65,
    batch: int = 16,
    device=None,
    max_det: int = 300,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Run the Ultralytics predictor over images and collect detections with their ground truth.

    Args:
        yolo (ultralytics.YOLO): The model.
        images (list[str]): Image paths.
        imgsz (int): Inference size.
        conf (float): Lowest score kept (the paper evaluates at 0.001).
        iou (float): NMS IoU (the paper uses 0.65).
        batch (int): Images per forward pass.
        device (str | None): Device, e.g. ``cpu`` or ``0``.
        max_det (int): Most detections kept per image.

    Returns:
        preds (list[np.ndarray]): One (n, 6) array per image, ``x1, y1, x2, y2, score, cls`` in pixels.
        gts (list[np.ndarray]): One (m, 5) array per image, ``x1, y1, x2, y2, cls`` in pixels.
    """
    from ultralytics.utils import TQDM

    preds, gts = [], []
    with tempfile.TemporaryDirectory() as tmp:  # a manifest keeps the predictor from loading every image up front
        manifest = Path(tmp) / "images.txt"
        manifest.write_text("\n".join(os.path.abspath(f) for f in images) + "\n")
        stream = yolo.predict(source=str(manifest), stream=True, imgsz=imgsz, conf=conf, iou=iou, batch=batch,
                              device=device, max_det=max_det, verbose=False)  # fmt: skip
        for r in TQDM(stream, total=len(images), desc="eval"):
            b = r.boxes
            preds.append(np.concatenate([b.xyxy.cpu().numpy(), b.conf.cpu().numpy()[:, None],
                                         b.cls.cpu().numpy()[:, None]], 1).astype(np.float64))  # fmt: skip
            gts.append(read_labels(r.path, r.orig_shape))
    return preds, gts


def _pct(v: float) -> str:
    """A fraction as a percentage with two decimals; NaN as an em dash."""
    return "—" if not math.isfinite(v) else f"{100 * v:.2f}"


def _f1(v: float) -> str:
    """An F1 value with two decimals, as the paper prints it; NaN as an em dash."""
    return "—" if not math.isfinite(v) else f"{v:.2f}"


def format_table(metrics: dict, names: list[str]) -> str:
    """Format the paper's Table IV: per class F1, Recall %, Precision %, AP50 %, then the averages.

    Counts (boxes, TP, FP, FN at score >= 0.5) follow in extra columns.

    Args:
        metrics (dict): A ``paper_metrics`` dict.
        names (list[str]): Class names.

    Returns:
        (str): A Markdown table.

    Examples:
        >>> from ultra_fer_mamba.metrics import paper_metrics
        >>> m = paper_metrics([np.array([[0, 0, 9, 9, 0.9, 0]])], [np.array([[0, 0, 9, 9, 0]])], nc=2)
        >>> print(format_table(m, ["Anger", "Disgust"]).splitlines()[2])
        | Anger | 1.00 | 100.00 | 100.00 | 100.00 | 1 | 1 | 0 | 0 |
    """
    m = metrics
    lines = [
        "| Class | F1 | Recall (%) | Precision (%) | AP50 (%) | Boxes | TP | FP | FN |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c, name in enumerate(names):
        lines.append(
            f"| {name} | {_f1(m['f1'][c])} | {_pct(m['recall'][c])} | {_pct(m['precision'][c])} | "
            f"{_pct(m['ap50'][c])} | {m['n_gt'][c]} | {m['tp'][c]} | {m['fp'][c]} | {m['fn'][c]} |"
        )
    lines.append(
        f"| **Average** | {_f1(m['mean_f1'])} | {_pct(m['mean_recall'])} | {_pct(m['mean_precision'])} | "
        f"{_pct(m['map50'])} | {sum(m['n_gt'])} | {sum(m['tp'])} | {sum(m['fp'])} | {sum(m['fn'])} |"
    )
    return "\n".join(lines)


def evaluate(
    model: str | None = None,
    data: str | None = None,
    split: str = "val",
    imgsz: int = 320,
    conf: float = 0.001,
    iou: float = 0.65,
    batch: int = 16,
    device: str | None = "cpu",
    project: str | None = None,
    name: str | None = None,
    match_iou: float = 0.5,
    score: float = 0.5,
    max_det: int = 300,
    plots: bool = True,
    exist_ok: bool = False,
) -> dict:
    """Evaluate a detector with the paper's protocol and write metrics.json, table.md and plots.

    Args:
        model (str | ultralytics.YOLO): Trained weights (``best.pt``), a model YAML, or a YOLO object; or a two-stage
            ``DET.pt+CLS.pt`` (a face detector, then a crop classifier per face: ``ultra_fer_mamba.twostage``).
        data (str): Data YAML in Ultralytics format (``path``, ``train``, ``val``, ``names``).
        split (str): Split to score (``val``, ``test``, ``train``).
        imgsz (int): Inference size (the paper uses 320).
        conf (float): Lowest detection score kept; the paper ranks everything down to 0.001.
        iou (float): NMS IoU (the paper's 0.65).
        batch (int): Images per forward pass.
        device (str | None): Inference device (``cpu``, ``0``, ...).
        project (str | None): Parent folder of the run (default ``runs/fer``).
        name (str | None): Run folder name (default ``eval``, incremented if taken).
        match_iou (float): IoU a detection needs to match a face (0.5: AP50).
        score (float): Score at which F1, recall and precision are read (the paper's 0.5).
        max_det (int): Most detections per image.
        plots (bool): Write the PR-curve and confusion-matrix PNGs.
        exist_ok (bool): Reuse ``project/name`` instead of incrementing it.

    Returns:
        (dict): The ``paper_metrics`` dict plus ``names``, ``confusion_matrix``, ``save_dir`` and ``settings``.

    Examples:
        >>> from ultra_fer_mamba.evaluate import evaluate
        >>> m = evaluate(model="runs/detect/train/weights/best.pt", data="datasets/rafdb/data.yaml")  # doctest: +SKIP
        >>> m["map50"], m["mean_f1"]  # doctest: +SKIP

        $ fer-yolo-mamba eval model=runs/detect/train/weights/best.pt data=datasets/rafdb/data.yaml split=test
        $ fer-yolo-mamba eval model=runs/detect/faces/weights/best.pt+runs/classify/lfnsb/weights/best.pt data=d.yaml
    """
    from ultralytics.data.utils import check_det_dataset
    from ultralytics.utils import LOGGER

    if not model or not data:
        raise ValueError("eval needs model=path/to/best.pt and data=path/to/data.yaml")
    info = check_det_dataset(data, autodownload=False)
    if not info.get(split):
        have = [k for k in ("train", "val", "test") if info.get(k)]
        raise ValueError(f"split '{split}' is not in {data}; it has {have}")
    names = [info["names"][i] for i in range(len(info["names"]))]
    nc = len(names)
    yolo = load_predictor(model, names)
    if len(yolo.names) != nc:
        LOGGER.warning(f"model has {len(yolo.names)} classes but {data} has {nc}; detections of class >= {nc} dropped")

    images = list_images(info[split])
    LOGGER.info(f"eval: {len(images)} {split} images, imgsz={imgsz} conf={conf} NMS iou={iou}")
    preds, gts = predict_split(yolo, images, imgsz, conf, iou, batch, device, max_det)
    preds = [p[p[:, 5] < nc] for p in preds]

    metrics = paper_metrics(preds, gts, nc, iou=match_iou, score=score)
    cm = confusion_matrix(preds, gts, nc, iou=match_iou, score=score)
    save_dir = make_save_dir(project, name, "eval", exist_ok)
    source = getattr(yolo, "ckpt_path", None) or getattr(yolo, "model_name", None) or model
    settings = dict(model=str(source), data=str(data), split=split, imgsz=imgsz, conf=conf, iou=iou,
                    match_iou=match_iou, score=score, max_det=max_det)  # fmt: skip
    metrics.update(names=names, confusion_matrix=cm.tolist(), save_dir=str(save_dir), settings=settings)

    table = format_table(metrics, names)
    (save_dir / "table.md").write_text(
        f"Paper protocol (VOC AP at IoU {match_iou}; F1/R/P at score >= {score}) on {split} of {data}, "
        f"model {settings['model']}, {len(images)} images.\n\n{table}\n"
    )
    (save_dir / "metrics.json").write_text(json.dumps(to_json(metrics), indent=2))
    if plots:
        label = model_label(settings["model"])
        plot_pr_curves({label: metrics}, names, save_dir / "pr_curves.png")
        plot_confusion_matrix(cm, names, save_dir / "confusion_matrix.png",
                              f"{label}: detections at score >= {score}, IoU >= {match_iou}")  # fmt: skip
    LOGGER.info(f"\n{table}\nResults saved to {save_dir}")
    return metrics
