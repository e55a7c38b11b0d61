"""The things ``compare`` trains and scores: entries, one per item of ``models=``.

An entry is whatever turns a spec (``fer-yolo-mamba-n.yaml``, ``runs/x/best.pt``) into trained weights and numbers.
The run loop (:mod:`ultra_fer_mamba.compare.runner`) only calls these methods, so an entry made of several models (a
face detector plus a crop classifier: :mod:`ultra_fer_mamba.compare.twostage`) fits by adding a class to the runner's
``ENTRY_TYPES`` ahead of :class:`YoloEntry`:

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
        best = run_dir / "weights" / "best.pt"
        paper = evaluate_run(best, self.name, run_dir, report_dir, data, split, args)
        uval = load_yolo(best).val(data=data, split=split, imgsz=args["imgsz"], batch=scoring_batch(args),
                                   conf=UVAL_CONF, iou=UVAL_IOU, device=args.get("device"),
                                   project=str(report_dir / "val" / self.name), name=run_dir.name, exist_ok=True,
                                   plots=False, verbose=False)  # fmt: skip
        return make_row(run_dir, paper, uval, run_dir / "results.csv", *training_log(run_dir / "results.csv"))

    def cost(self, run_dir: Path, imgsz: int, latency_runs: int) -> dict:
        """Parameters, GFLOPs (with and without the scan) and batch-1 CPU latency of the run's ``best.pt``."""
        from ultralytics.utils import NUM_THREADS

        return {**model_cost(run_dir / "weights" / "best.pt", imgsz, latency_runs), "threads": NUM_THREADS}


def scoring_batch(args: dict) -> int:
    """The batch size a run is scored with: its training batch, or 16 where that is AutoBatch (-1, 0.7)."""
    batch = args["batch"]
    return batch if isinstance(batch, int) and batch > 0 else 16


def evaluate_run(model, name: str, run_dir: Path, report_dir: Path, data: str, split: str, args: dict) -> dict:
    """The paper-protocol evaluation (:func:`evaluate`) of one run's model, into ``report_dir/eval/<name>/<run>``."""
    return evaluate(model, data, split=split, imgsz=args["imgsz"], conf=UVAL_CONF, iou=UVAL_IOU,
                    batch=scoring_batch(args), device=args.get("device"), project=str(report_dir / "eval" / name),
                    name=run_dir.name, exist_ok=True)  # fmt: skip


def training_log(results: Path) -> tuple[int, float]:
    """Epochs trained and training wall time (:func:`train_seconds`) from an Ultralytics results.csv."""
    from ultra_fer_mamba.plots import read_results_csv

    columns = read_results_csv(results)
    return len(columns.get("epoch", [])), train_seconds(columns.get("time", []))


def make_row(run_dir: Path, paper: dict, uval=None, results_csv: Path | None = None, epochs: int = 0,
             train_s: float = math.nan) -> dict:
    """One run's row (see the module doc) from its paper-protocol metrics and Ultralytics' val metrics.

    Args:
        run_dir (Path): The run folder.
        paper (dict): What :func:`evaluate` returned.
        uval (ultralytics.utils.metrics.DetMetrics | None): Ultralytics' val metrics; None gives NaN for mAP50,
            mAP50-95 and the per-class AP50-95 (an entry val cannot score).
        results_csv (Path | None): Per-epoch Ultralytics columns for the learning curves, or None.
        epochs (int): Epochs trained.
        train_s (float): Training wall time in seconds.
    """
    nc = len(paper["names"])
    return {
        "run_dir": str(run_dir),
        "eval_dir": paper["save_dir"],
        "results_csv": str(results_csv) if results_csv else None,
        "epochs_trained": epochs,
        "train_s": train_s,
        "metrics": {
            "map50": float(uval.box.map50) if uval else math.nan,
            "map50_95": float(uval.box.map) if uval else math.nan,
            "voc_map50": paper["map50"],
            "f1": paper["mean_f1"],
            "recall": paper["mean_recall"],
            "precision": paper["mean_precision"],
        },
        "per_class": {
            "voc_ap50": paper["ap50"],
            "ap50_95": _per_class(uval.box.all_ap.mean(1), uval.box.ap_class_index, nc) if uval else [math.nan] * nc,
            **{k: paper[k] for k in ("f1", "recall", "precision")},
        },
    }


def model_cost(weights, imgsz: int, latency_runs: int) -> dict:
    """``params``, ``gflops``, ``gflops_with_scan`` (:func:`~ultra_fer_mamba.info.info`) and ``latency_ms``
    (:func:`~ultra_fer_mamba.info.cpu_latency`, batch 1) of one model's weights at one image size."""
    from ultra_fer_mamba.info import cpu_latency, info

    model = load_yolo(weights).model
    size = info(model, imgsz, verbose=False)
    return {**{k: size[k] for k in ("params", "gflops", "gflops_with_scan")},
            "latency_ms": cpu_latency(model, imgsz, runs=latency_runs)}  # fmt: skip
