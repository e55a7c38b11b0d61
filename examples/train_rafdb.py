"""Train FER-YOLO-Mamba on RAF-DB-style data: convert -> train -> evaluate with the paper's metrics.

Shows the three public steps a RAF-DB user runs: ``ultra_fer_mamba.data.convert.convert`` turns the RAF-DB ``basic``
folder into an Ultralytics dataset, ``YOLO(model).train`` trains on it with the stock trainer, and
``ultra_fer_mamba.evaluate.evaluate`` scores the best weights with the paper's protocol (VOC AP50; F1, recall and
precision at score 0.5) and writes its Table IV layout.

RAF-DB itself cannot be shipped (see docs/datasets.md). Without ``source=``, the example writes a small stand-in laid
out exactly like RAF-DB's ``basic`` folder (one drawn face an image, from the synthetic set) and runs on that, so it
works offline from the repository root; point ``source=`` at the real folder for the real run.

Usage (key=value, like ``yolo``; any other key is an Ultralytics train argument)::

    python examples/train_rafdb.py                                   # stand-in data, a few minutes on a CPU
    python examples/train_rafdb.py source=/data/RAF-DB/basic epochs=300 imgsz=320 batch=16 \
        optimizer=Adam lr0=0.001 device=0

Everything goes under ``<project>/<name>`` (default ``runs/examples/train-rafdb``; a re-run writes over it)::

    RAF-DB/         the stand-in (only without source=): basic/ laid out like RAF-DB, synth/ the drawn set behind it
    rafdb/          the converted dataset (data.yaml, images/, labels/, report.txt)
    train/          the training run (weights/best.pt, results.csv, plots)
    eval/           the paper-protocol evaluation (metrics.json, table.md, pr_curves.png, confusion_matrix.png)
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

os.environ.setdefault("YOLO_OFFLINE", "1")  # before Ultralytics is imported: no network probes
os.environ.setdefault("YOLO_AUTOINSTALL", "false")


def rafdb_standin(root: Path, n_train: int, n_val: int, imgsz: int, seed: int = 0) -> Path:
    """Write a RAF-DB ``basic`` folder of synthetic one-face images under ``root``; return ``root``.

    The layout is RAF-DB's: ``Image/original/{train,test}_<n>.jpg``, ``EmoLabel/list_patition_label.txt`` (RAF ids
    1..7) and ``Annotation/boundingbox/<stem>_boundingbox.txt`` (``x1 y1 x2 y2`` in pixels).
    """
    from ultra_fer_mamba.data import class_index
    from ultra_fer_mamba.data.formats import RAF_LABELS
    from ultra_fer_mamba.data.synth import synth

    raf_id = {class_index(name): i + 1 for i, name in enumerate(RAF_LABELS)}  # our class id -> RAF's 1..7
    drawn = synth(str(root.parent / "synth"), n_train=n_train, n_val=n_val, imgsz=imgsz, seed=seed, faces=1)
    drawn = Path(drawn["data"]).parent
    (root / "Image" / "original").mkdir(parents=True, exist_ok=True)
    (root / "Annotation" / "boundingbox").mkdir(parents=True, exist_ok=True)
    lines = []
    for split, raf_split in (("train", "train"), ("val", "test")):
        for i, image in enumerate(sorted((drawn / "images" / split).glob("*.jpg")), 1):
            stem = f"{raf_split}_{i:05d}"
            shutil.copyfile(image, root / "Image" / "original" / f"{stem}.jpg")
            cls, cx, cy, w, h = (float(v) for v in (drawn / "labels" / split / f"{image.stem}.txt").read_text().split())
            box = ((cx - w / 2) * imgsz, (cy - h / 2) * imgsz, (cx + w / 2) * imgsz, (cy + h / 2) * imgsz)
            box_file = root / "Annotation" / "boundingbox" / f"{stem}_boundingbox.txt"
            box_file.write_text(" ".join(f"{v:.2f}" for v in box))
            lines.append(f"{stem}.jpg {raf_id[int(cls)]}")
    (root / "EmoLabel").mkdir(exist_ok=True)
    (root / "EmoLabel" / "list_patition_label.txt").write_text("\n".join(lines) + "\n")
    return root


def main(
    source: str | None = None,
    model: str = "fer-yolo-mamba-n.yaml",
    epochs: int = 10,
    imgsz: int = 160,
    batch: int = 8,
    project: str = "runs/examples",
    name: str = "train-rafdb",
    n_train: int = 300,
    n_val: int = 60,
    **train,
) -> dict:
    """Convert RAF-DB (or the stand-in), train ``model`` on it and evaluate the best weights the paper's way.

    Args:
        source (str | None): The RAF-DB ``basic`` folder; None writes a synthetic stand-in laid out the same way.
        model (str): Model YAML (from scratch) or ``.pt`` weights.
        epochs (int): Training epochs.
        imgsz (int): Training and evaluation size (the paper's is 320).
        batch (int): Batch size.
        project (str): Parent folder of the run.
        name (str): Run folder under ``project``.
        n_train (int): Stand-in training images (without ``source``).
        n_val (int): Stand-in test images (without ``source``).
        **train: Any other Ultralytics train argument (``device``, ``optimizer``, ``lr0``, ``workers``, ...).

    Returns:
        (dict): ``run_dir``, ``data`` (the converted data.yaml), ``weights`` (best.pt), ``eval_dir`` and the paper's
            ``map50``, ``mean_f1``, ``mean_recall``, ``mean_precision``.
    """
    from ultralytics import YOLO
    from ultralytics.utils import LOGGER

    from ultra_fer_mamba.data.convert import convert
    from ultra_fer_mamba.evaluate import evaluate

    run_dir = Path(project).resolve() / name  # absolute: Ultralytics puts relative projects under its runs_dir
    if source is None:
        source = rafdb_standin(run_dir / "RAF-DB" / "basic", n_train, n_val, imgsz)
    data = convert("rafdb", str(source), str(run_dir / "rafdb"))["data"]

    yolo = YOLO(model)
    yolo.train(data=data, epochs=epochs, imgsz=imgsz, batch=batch, project=str(run_dir), name="train", exist_ok=True,
               **train)
    weights = Path(yolo.trainer.save_dir) / "weights" / "best.pt"
    metrics = evaluate(model=str(weights), data=data, imgsz=imgsz, batch=batch, device=train.get("device", "cpu"),
                       project=str(run_dir), name="eval", exist_ok=True)
    result = {"run_dir": str(run_dir), "data": data, "weights": str(weights), "eval_dir": metrics["save_dir"],
              **{k: metrics[k] for k in ("map50", "mean_f1", "mean_recall", "mean_precision")}}
    LOGGER.info(f"train_rafdb: paper-protocol mAP50 {result['map50']:.3f}, F1 {result['mean_f1']:.3f} "
                f"(table: {Path(result['eval_dir']) / 'table.md'}; weights: {weights})")
    return result


if __name__ == "__main__":
    from ultra_fer_mamba.cli import parse_args

    main(**parse_args(sys.argv[1:]))
