"""Find faces and their expressions in a folder of images or in a video, and write annotated copies.

Shows prediction with trained weights through Ultralytics' own predictor: ``YOLO("best.pt").predict(source,
save=True, stream=True)`` draws each detection (box, expression, score) onto every image, or onto every frame of a
video, which it writes back as a video. The example also counts the detections per expression and writes them with
every box to ``detections.json``.

The defaults read what ``examples/train_rafdb.py`` writes (its best weights and its converted test images), so run
that first, or pass ``model=`` and ``source=``. Offline.

Usage (key=value, like ``yolo``; any other key is an Ultralytics predict argument)::

    python examples/predict.py                                        # after examples/train_rafdb.py
    python examples/predict.py model=runs/detect/train/weights/best.pt source=photos/ conf=0.4
    python examples/predict.py model=best.pt source=clip.mp4 vid_stride=2 # annotated clip.avi, every 2nd frame

Everything goes under ``<project>/<name>`` (default ``runs/examples/predict``; a re-run writes over it): the annotated
images (``<stem>.jpg``) or videos (``<stem>.avi``) and ``detections.json``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("YOLO_OFFLINE", "1")  # before Ultralytics is imported: no network probes
os.environ.setdefault("YOLO_AUTOINSTALL", "false")

TRAINED = "runs/examples/train-rafdb"  # examples/train_rafdb.py's default run folder


def main(
    model: str = f"{TRAINED}/train/weights/best.pt",
    source: str = f"{TRAINED}/rafdb/images/val",
    project: str = "runs/examples",
    name: str = "predict",
    **predict,
) -> dict:
    """Predict on every image or video frame of ``source`` and write annotated copies and ``detections.json``.

    Args:
        model (str): Trained weights (``best.pt``) or an exported model (``best.onnx``, ``best_openvino_model/``).
        source (str): An image, a folder of images, a video file, or anything else Ultralytics accepts as a source.
        project (str): Parent folder of the output.
        name (str): Output folder under ``project``.
        **predict: Any Ultralytics predict argument (``conf``, ``imgsz``, ``device``, ``vid_stride``, ...); the
            size defaults to the one the weights were trained at.

    Returns:
        (dict): ``save_dir``, ``frames`` (images or video frames seen), ``counts`` (expression -> detections) and
            ``detections`` (per image or frame: its path, frame number and boxes ``[x1, y1, x2, y2, score, class]``).
    """
    from ultralytics import YOLO
    from ultralytics.utils import LOGGER

    given = {"model": model, "source": source}
    missing = [f"{k}={v}" for k, v in given.items() if str(v).startswith(TRAINED) and not Path(v).exists()]
    if missing:
        raise SystemExit(f"predict: {' and '.join(missing)} not found: run `python examples/train_rafdb.py` first, "
                         "or pass model= and source=")
    yolo = YOLO(model)
    save_dir = Path(project).resolve() / name  # absolute: Ultralytics puts relative projects under its runs_dir
    detections, counts = [], {n: 0 for n in yolo.names.values()}
    for r in yolo.predict(source, stream=True, save=True, project=str(save_dir.parent), name=save_dir.name,
                          exist_ok=True, verbose=False, **predict):
        boxes = [[*map(float, xyxy), float(s), int(c)] for xyxy, s, c in
                 zip(r.boxes.xyxy.tolist(), r.boxes.conf.tolist(), r.boxes.cls.tolist())]
        for *_, c in boxes:
            counts[yolo.names[c]] += 1
        frame = getattr(yolo.predictor.dataset, "frame", 0) if yolo.predictor.dataset.mode == "video" else None
        detections.append({"path": r.path, "frame": frame, "boxes": boxes})
    (save_dir / "detections.json").write_text(json.dumps({"counts": counts, "detections": detections}, indent=1))
    found = ", ".join(f"{n} {k}" for k, n in counts.items() if n) or "none"
    LOGGER.info(f"predict: {len(detections)} images or frames, detections: {found}; annotated copies in {save_dir}")
    return {"save_dir": str(save_dir), "frames": len(detections), "counts": counts, "detections": detections}


if __name__ == "__main__":
    from ultra_fer_mamba.cli import parse_args

    main(**parse_args(sys.argv[1:]))
