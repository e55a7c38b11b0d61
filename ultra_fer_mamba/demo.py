"""The README's first command: synthetic faces -> train on CPU with the stock trainer -> validate -> predict.

With no arguments it writes the synthetic 7-expression set once (cached under the project folder and reused),
trains ``fer-yolo-mamba-n.yaml`` from scratch on the CPU with ``YOLO(model).train(...)``, validates the best weights,
predicts on a real photo shipped with Ultralytics (``zidane.jpg``) and a few synthetic validation images, and prints
where everything went with mAP50 and mAP50-95. Nothing is downloaded.

Output layout (``project=`` defaults to ``<Ultralytics runs_dir>/fer-demo``)::

    <project>/
    ├── synth-<n_train>-<n_val>-<imgsz>-<seed>/   the cached synthetic set (data.yaml, images/, labels/)
    └── <name>/                                   the training run: weights/best.pt, results.csv, results.png, ...
        ├── val/                                  validation plots: confusion_matrix.png, BoxPR_curve.png, ...
        └── predict/                              annotated zidane.jpg and synthetic validation images

Examples:
    $ fer-yolo-mamba demo
    $ fer-yolo-mamba demo model=yolov8n.yaml epochs=5 name=baseline
    >>> from ultra_fer_mamba.demo import demo
    >>> result = demo(epochs=1, n_train=16, n_val=8)  # doctest: +SKIP
"""

from __future__ import annotations

import os
from pathlib import Path

from ultralytics.utils import ASSETS, LOGGER, SETTINGS

from ultra_fer_mamba.data.synth import synth

# Short from-scratch training on the synthetic set: mosaic off and little scale jitter (mosaic crops cut faces and
# shrunken faces hide their expression: with both on, yolov8n needed over twice the epochs), a doubled cls gain and
# AdamW at 3e-3 with one warmup epoch (5e-3 helped yolov8n but cost fer-yolo-mamba-n half its mAP50).
TRAIN_DEFAULTS = {"optimizer": "AdamW", "lr0": 0.003, "warmup_epochs": 1, "cls": 1.0, "mosaic": 0.0, "scale": 0.25,
                  "cache": "ram"}


def use_all_cores(trainer) -> None:
    """Train on every core. Ultralytics leaves one core to the dataloader workers (torch threads = cores - 1, set
    when it selects the device), which on a 2-core machine halves the speed of a model whose data is cached in
    RAM and augmented lightly (no mosaic)."""
    import torch

    torch.set_num_threads(os.cpu_count() or 1)


def synthetic_set(project: Path, n_train: int, n_val: int, imgsz: int, seed: int) -> Path:
    """Return the data.yaml of the cached synthetic set for these settings, writing the set if it is not there."""
    root = project / f"synth-{n_train}-{n_val}-{imgsz}-{seed}"
    if (root / "data.yaml").is_file():  # synth writes data.yaml last, so its presence means a complete set
        LOGGER.info(f"demo: reusing the synthetic set in {root}")
        return root / "data.yaml"
    return Path(synth(str(root), n_train=n_train, n_val=n_val, imgsz=imgsz, seed=seed)["data"])


def demo(
    data: str | None = None,
    model: str = "fer-yolo-mamba-n.yaml",
    epochs: int = 9,
    imgsz: int = 224,
    batch: int = 8,
    project: str | None = None,
    name: str = "demo",
    n_train: int = 500,
    n_val: int = 100,
    workers: int = 2,
    seed: int = 0,
) -> dict:
    """Train, validate and predict with ``model`` on the CPU, on ``data`` or the synthetic set, and report.

    Args:
        data (str | None): A data YAML; None builds (or reuses) the synthetic set.
        model (str): Model YAML (built from scratch) or ``.pt`` weights.
        epochs (int): Training epochs.
        imgsz (int): Image size for the synthetic set, training, validation and prediction.
        batch (int): Batch size.
        project (str | None): Folder for the synthetic set and the runs; default ``<runs_dir>/fer-demo``.
        name (str): Run name (Ultralytics adds a number when it is taken).
        n_train (int): Synthetic training images.
        n_val (int): Synthetic validation images.
        workers (int): Dataloader workers.
        seed (int): Seed of the synthetic set and of training.

    Returns:
        (dict): ``save_dir``, ``weights``, ``val_dir``, ``predict_dir``, ``plots`` (paths), ``map50``, ``map``.

    Examples:
        >>> r = demo(model="yolov8n.yaml", epochs=1, n_train=16, n_val=8, imgsz=96)  # doctest: +SKIP
        >>> Path(r["weights"]).is_file()  # doctest: +SKIP
        True
    """
    import ultra_fer_mamba  # noqa: F401  (registers the FER-YOLO-Mamba modules with Ultralytics)
    from ultralytics import YOLO

    project = Path(project or Path(SETTINGS["runs_dir"]) / "fer-demo").resolve()
    data = str(data or synthetic_set(project, n_train, n_val, imgsz, seed))
    yolo = YOLO(model)
    yolo.add_callback("on_pretrain_routine_start", use_all_cores)  # runs after the trainer's select_device
    yolo.train(data=data, epochs=epochs, imgsz=imgsz, batch=batch, device="cpu", workers=workers, plots=True,
               project=str(project), name=name, pretrained=False, amp=False, seed=seed, **TRAIN_DEFAULTS)
    save_dir = Path(yolo.trainer.save_dir)
    metrics = yolo.val(data=data, imgsz=imgsz, batch=batch, device="cpu", workers=workers, plots=True,
                       project=str(save_dir), name="val", exist_ok=True)
    val_images = sorted((Path(yolo.trainer.data["val"])).glob("*.jpg"))[:4]
    yolo.predict([str(ASSETS / "zidane.jpg"), *map(str, val_images)], imgsz=imgsz, device="cpu", save=True,
                 project=str(save_dir), name="predict", exist_ok=True, verbose=False)
    val_dir = Path(metrics.save_dir)
    result = {
        "save_dir": str(save_dir),
        "weights": str(save_dir / "weights" / "best.pt"),
        "val_dir": str(val_dir),
        "predict_dir": str(save_dir / "predict"),
        "plots": [str(p) for p in (save_dir / "results.png", val_dir / "confusion_matrix.png",
                                   val_dir / "BoxPR_curve.png") if p.is_file()],
        "map50": float(metrics.box.map50),
        "map": float(metrics.box.map),
    }
    LOGGER.info(
        f"\ndemo: results    {result['save_dir']}  (weights/best.pt, results.csv)"
        f"\ndemo: plots      {', '.join(result['plots'])}"
        f"\ndemo: predicted  {result['predict_dir']}  ({len(val_images)} validation images, and zidane.jpg:"
        " a real photo, where a model that has only seen drawn faces may find none)"
        f"\ndemo: mAP50 {result['map50']:.3f}  mAP50-95 {result['map']:.3f}  ({model}, {epochs} epochs, {data})"
    )
    return result
