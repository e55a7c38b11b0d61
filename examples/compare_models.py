"""Compare FER-YOLO-Mamba with stock YOLOv8: identical training over several seeds, one report.

Shows ``ultra_fer_mamba.compare.compare``: every model is trained once per seed with the same Ultralytics trainer
arguments (any ``key=value`` you add goes to every run alike, checked by Ultralytics before anything trains), each run
is scored with Ultralytics' ``val`` and with the paper's protocol, and the report gives each model's mean ± sd over
the seeds and, per seed, its paired difference to the first model with a 95% interval.

Without ``data=``, the example draws the synthetic 7-expression face set into the run folder and compares on that, so
it works offline from the repository root; pass a converted RAF-DB or SFEW ``data.yaml`` for the real comparison.

Usage (key=value, like ``yolo``; any other key is an Ultralytics train argument)::

    python examples/compare_models.py                                       # synthetic set, 2 seeds, a CPU's minutes
    python examples/compare_models.py seeds=0,1,2 epochs=20 optimizer=AdamW lr0=0.003 mosaic=0
    python examples/compare_models.py data=datasets/rafdb/data.yaml models=fer-yolo-mamba-s.yaml,yolov8s.yaml \\
        seeds=0,1,2 epochs=300 imgsz=320 batch=16 optimizer=Adam lr0=0.001 device=0

Everything goes under ``<project>/<name>`` (default ``runs/examples/compare``)::

    synth/      the synthetic set (only without data=)
    compare/    compare's report folder: report.md, report.json, learning_curve.png, ..., runs/<model>/seed<k>/
                (a re-run with the same settings resumes there; other trainer arguments start compare-2)
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("YOLO_OFFLINE", "1")  # before Ultralytics is imported: no network probes
os.environ.setdefault("YOLO_AUTOINSTALL", "false")


def main(
    data: str | None = None,
    models: str = "fer-yolo-mamba-n.yaml,yolov8n.yaml",
    seeds: str = "0,1",
    epochs: int = 5,
    imgsz: int = 160,
    batch: int = 8,
    project: str = "runs/examples",
    name: str = "compare",
    n_train: int = 200,
    n_val: int = 50,
    **train,
) -> dict:
    """Train every model of ``models`` once per seed on ``data`` (or the synthetic set) and report side by side.

    Args:
        data (str | None): A data YAML; None draws the synthetic set into the run folder.
        models (str): Comma-separated model YAMLs or weights; the first is what the others are compared with.
        seeds (str): Comma-separated seeds: each model is trained once per seed.
        epochs (int): Training epochs of every run.
        imgsz (int): Training and evaluation size.
        batch (int): Batch size.
        project (str): Parent folder of the run.
        name (str): Run folder under ``project``.
        n_train (int): Synthetic training images (without ``data``).
        n_val (int): Synthetic validation images (without ``data``).
        **train: Any other Ultralytics train argument, the same for every run (``device``, ``optimizer``, ``lr0``,
            ``mosaic``, ...), and compare's own ``latency_runs`` and ``docs``.

    Returns:
        (dict): compare's report (``settings``, ``seeds``, ``entries``, ``summary``), as ``report.json`` holds it.
    """
    from ultralytics.utils import LOGGER

    from ultra_fer_mamba.compare import compare
    from ultra_fer_mamba.data.synth import synth

    run_dir = Path(project).resolve() / name  # absolute: Ultralytics puts relative projects under its runs_dir
    if data is None:
        data = synth(str(run_dir / "synth"), n_train=n_train, n_val=n_val, imgsz=imgsz)["data"]
    report = compare(data=data, models=models, seeds=seeds, epochs=epochs, imgsz=imgsz, batch=batch,
                     project=str(run_dir), name="compare", **train)
    first, *others = report["entries"]
    for other in others:  # what the comparison is for: the per-seed difference in the paper's mAP50
        d = report["summary"][other]["differences"]["voc_map50"]
        interval = f", 95% interval {d['lo'] * 100:+.2f} .. {d['hi'] * 100:+.2f}" if d["n"] > 1 else ""
        LOGGER.info(f"compare_models: {other} - {first}, paper mAP50 over seeds {report['seeds']}: "
                    f"{d['mean'] * 100:+.2f} points{interval}")
    return report

if __name__ == "__main__":
    from ultra_fer_mamba.cli import parse_args

    main(**parse_args(sys.argv[1:]))
