"""The things ``compare`` trains and scores: entries, one per item of ``models=``.

An entry is whatever turns a spec (``fer-yolo-mamba-n.yaml``, ``runs/x/best.pt``) into trained weights and numbers.
The run loop (:mod:`ultra_fer_mamba.compare.runner`) only calls these methods, so an entry made of several models (a
face detector plus a crop classifier, say) fits by adding a class to ``ENTRY_TYPES`` ahead of :class:`YoloEntry`:

- ``accepts(spec) -> bool`` (static): whether this type handles the spec;
- ``status(run_dir, recorded) -> "done" | "partial" | "new"``: where training of one seed stands;
- ``train(run_dir, args, data, recorded)``: train one seed into ``run_dir`` (or resume it, or skip it when done);
- ``measure(run_dir, report_dir, data, split, args) -> row``: score one seed's weights. A row holds ``run_dir``,
  ``eval_dir`` (a folder with the paper-protocol ``metrics.json``, for PR curves, or None), ``results_csv`` (per-epoch
  Ultralytics columns, for learning curves, or None), ``epochs_trained``, ``train_s`` (training wall time),
  ``metrics`` (``map50``, ``map50_95``, ``voc_map50``, ``f1``, ``recall``, ``precision``: fractions, NaN when an
  entry cannot produce one) and ``per_class`` (``voc_ap50``, ``ap50_95``, ``f1``, ``recall``, ``precision``: one
  value per class);
- ``cost(run_dir, imgsz, latency_runs) -> dict``: ``params``, ``gflops``, ``gflops_with_scan``, ``latency_ms``
  (batch 1, CPU, the whole pipeline) and ``threads``; measured once per entry.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ultra_fer_mamba.evaluate import evaluate
from ultra_fer_mamba.io import load_yolo

UVAL_CONF, UVAL_IOU = 0.001, 0.65  # every score at the paper's evaluation settings


def parse_models(models: str | list | tuple) -> dict[str, str]:
    """Turn ``a.yaml,b.pt`` (or a list) into run name -> spec, names unique (``yolov8n``, ``yolov8n-2``).

    A spec joined by ``+`` (``det.yaml+cls.yaml``) is named by its parts' stems (``det+cls``).

    Args:
        models (str | list | tuple): Comma-separated specs or a sequence of them.

    Returns:
        (dict[str, str]): Run name -> spec as given.

    Examples:
        >>> parse_models("fer-yolo-mamba-s.yaml, yolov8s.yaml,yolov8s.yaml")
        {'fer-yolo-mamba-s': 'fer-yolo-mamba-s.yaml', 'yolov8s': 'yolov8s.yaml', 'yolov8s-2': 'yolov8s.yaml'}
    """
    items = [m.strip() for m in models.split(",")] if isinstance(models, str) else [str(m).strip() for m in models]
    out = {}
    for m in filter(None, items):
        stem = "+".join(Path(p).stem for p in m.split("+"))
        name, n = stem, 1
        while name in out:
            n += 1
            name = f"{stem}-{n}"
        out[name] = m
    if not out:
        raise ValueError("compare needs models=a.yaml,b.yaml")
    return out


def _finished_checkpoint(last: Path) -> bool:
    """Whether Ultralytics marked a checkpoint as the end of training (optimizer stripped, epoch -1)."""
    from ultralytics.utils.patches import torch_load

    try:
        ckpt = torch_load(last, map_location="cpu", weights_only=False)
    except Exception:
        return False
    return ckpt.get("epoch", 0) == -1 and ckpt.get("optimizer") is None


def training_status(run_dir: Path, recorded: bool = False) -> str:
    """Where one Ultralytics training run stands: ``done``, ``partial`` (resumable last.pt) or ``new``.

    Args:
        run_dir (Path): The training run folder.
        recorded (bool): Whether ``state.json`` recorded this training as finished.

    Returns:
        (str): ``done`` (best.pt and results.csv, and recorded or last.pt stripped at the end), ``partial`` or ``new``.
    """
    best, last, results = run_dir / "weights" / "best.pt", run_dir / "weights" / "last.pt", run_dir / "results.csv"
    if best.exists() and results.exists() and (recorded or (last.exists() and _finished_checkpoint(last))):
        return "done"
    return "partial" if last.exists() else "new"


def use_all_cores_on_cpu(trainer) -> None:
    """Train with every core when training on the CPU (Ultralytics leaves one to the dataloader; see the demo)."""
    from ultra_fer_mamba.demo import use_all_cores

    if trainer.device.type == "cpu":
        use_all_cores(trainer)


def _per_class(values, classes, nc: int) -> list[float]:
    """Spread values given for some class indices over all nc classes, NaN elsewhere."""
    out = [math.nan] * nc
    for v, c in zip(np.asarray(values).tolist(), np.asarray(classes).tolist()):
        out[int(c)] = float(v)
    return out


def train_seconds(times) -> float:
    """Training wall time from results.csv's ``time`` column (seconds since the session started, per epoch).

    A resumed run restarts the clock, so a drop starts a new session: its first value is added whole.

    Examples:
        >>> train_seconds([10.0, 20.0, 30.0, 5.0, 15.0])  # 30 s, then 15 s after resuming
        45.0
    """
    total, last = 0.0, 0.0
    for t in times:
        total += t - last if t >= last else t
        last = t
    return total


class YoloEntry:
    """One Ultralytics model (YAML or weights), trained by the stock trainer and scored by ``eval`` and ``val``.

    Args:
        name (str): Run name (folder names and report rows).
        spec (str): Model YAML or weights, as passed to ``YOLO``.
    """

    def __init__(self, name: str, spec: str):
        self.name, self.spec = name, spec

    @staticmethod
    def accepts(spec: str) -> bool:
        """Any spec ``YOLO()`` can load; the fallback type."""
        return True

    def status(self, run_dir: Path, recorded: bool = False) -> str:
        """Where training of this run stands (:func:`training_status`)."""
        return training_status(run_dir, recorded)

    def train(self, run_dir: Path, args: dict, data: str, recorded: bool = False) -> None:
        """Train one run with the stock trainer, resume its unfinished ``last.pt``, or skip it when it finished.

        Args:
            run_dir (Path): Its folder; Ultralytics writes here (``project=run_dir.parent, name=run_dir.name``).
            args (dict): Trainer arguments, seed included.
            data (str): Data YAML.
            recorded (bool): Whether ``state.json`` recorded this run as finished.
        """
        from ultralytics import YOLO
        from ultralytics.utils import LOGGER

        status, label = self.status(run_dir, recorded), f"{self.name}/{run_dir.name}"
        if status == "done":
            LOGGER.info(f"compare: {label} already trained, skipping")
            return
        if status == "partial":
            LOGGER.info(f"compare: resuming {label} from {run_dir / 'weights' / 'last.pt'}")
            yolo = YOLO(str(run_dir / "weights" / "last.pt"))
            where = {k: args[k] for k in ("device", "workers") if k in args}  # may differ from the interrupted run's
            kwargs = dict(resume=True, save_dir=str(run_dir), **where)
        else:
            LOGGER.info(f"compare: training {label} ({self.spec})")
            yolo = YOLO(self.spec)
            kwargs = dict(**args, data=data, project=str(run_dir.parent), name=run_dir.name, exist_ok=True)
        yolo.add_callback("on_pretrain_routine_start", use_all_cores_on_cpu)  # after the trainer picked the device
        yolo.train(**kwargs)

    def measure(self, run_dir: Path, report_dir: Path, data: str, split: str, args: dict) -> dict:
        """Score a run's ``best.pt`` with the paper's protocol and with Ultralytics' ``val`` (see the module doc).

        Args:
            run_dir (Path): The training run folder.
            report_dir (Path): The report folder (``eval/<name>/<run>`` and ``val/<name>/<run>`` go here).
            data (str): Data YAML.
            split (str): Split to score.
            args (dict): Trainer arguments (``imgsz``, ``batch``, ``device`` are used).

        Returns:
            (dict): One row (see the module doc).
        """
        from ultra_fer_mamba.plots import read_results_csv

        best, sub = run_dir / "weights" / "best.pt", Path(self.name)
        imgsz, batch, device = args["imgsz"], args["batch"], args.get("device")
        batch = batch if isinstance(batch, int) and batch > 0 else 16  # AutoBatch (-1, 0.7) is for training only
        paper = evaluate(best, data, split=split, imgsz=imgsz, conf=UVAL_CONF, iou=UVAL_IOU, batch=batch,
                         device=device, project=str(report_dir / "eval" / sub), name=run_dir.name,
                         exist_ok=True)  # fmt: skip
        nc = len(paper["names"])
        uval = load_yolo(best).val(data=data, split=split, imgsz=imgsz, batch=batch, conf=UVAL_CONF, iou=UVAL_IOU,
                                   device=device, project=str(report_dir / "val" / sub), name=run_dir.name,
                                   exist_ok=True, plots=False, verbose=False)  # fmt: skip
        results = run_dir / "results.csv"
        columns = read_results_csv(results)
        return {
            "run_dir": str(run_dir),
            "eval_dir": paper["save_dir"],
            "results_csv": str(results),
            "epochs_trained": len(columns.get("epoch", [])),
            "train_s": train_seconds(columns.get("time", [])),
            "metrics": {
                "map50": float(uval.box.map50),
                "map50_95": float(uval.box.map),
                "voc_map50": paper["map50"],
                "f1": paper["mean_f1"],
                "recall": paper["mean_recall"],
                "precision": paper["mean_precision"],
            },
            "per_class": {
                "voc_ap50": paper["ap50"],
                "ap50_95": _per_class(uval.box.all_ap.mean(1), uval.box.ap_class_index, nc),
                **{k: paper[k] for k in ("f1", "recall", "precision")},
            },
        }

    def cost(self, run_dir: Path, imgsz: int, latency_runs: int) -> dict:
        """Parameters, GFLOPs (with and without the scan) and batch-1 CPU latency of the run's ``best.pt``."""
        from ultralytics.utils import NUM_THREADS

        from ultra_fer_mamba.info import cpu_latency, info

        model = load_yolo(run_dir / "weights" / "best.pt").model
        size = info(model, imgsz, verbose=False)
        latency = cpu_latency(model, imgsz, runs=latency_runs)
        return {**{k: size[k] for k in ("params", "gflops", "gflops_with_scan")}, "latency_ms": latency,
                "threads": NUM_THREADS}  # fmt: skip


ENTRY_TYPES = [YoloEntry]  # tried in order; the first whose accepts(spec) is true makes the entry


def make_entries(models: str | list | tuple) -> list:
    """The entries of ``models=``, in order (the first is the one the others are compared with).

    Examples:
        >>> [(e.name, type(e).__name__) for e in make_entries("fer-yolo-mamba-n.yaml,yolov8n.yaml")]
        [('fer-yolo-mamba-n', 'YoloEntry'), ('yolov8n', 'YoloEntry')]
    """
    return [next(t for t in ENTRY_TYPES if t.accepts(spec))(name, spec) for name, spec in parse_models(models).items()]
