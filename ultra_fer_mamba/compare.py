"""``fer-yolo-mamba compare``: train several detectors identically and report them side by side.

Every model is trained by Ultralytics' stock trainer (``YOLO(model).train``) with the same data, epochs, image size,
batch, seed and defaults, then scored twice on the same split: with the paper's protocol
(:func:`ultra_fer_mamba.evaluate.evaluate`) and with Ultralytics' own ``val`` (mAP50, mAP50-95), both at conf 0.001 and
NMS IoU 0.65. Size and speed come from :func:`ultra_fer_mamba.info.info` and :func:`ultra_fer_mamba.info.cpu_latency`.

Report folder (``runs/fer/compare``; a re-run with the same settings resumes in it, other settings get
``compare-2``, ...)::

    state.json              settings and per-model progress (trained? measured?), rewritten after every step
    runs/<model>/           each training run (weights/best.pt, weights/last.pt, results.csv, Ultralytics plots)
    eval/<model>/           the paper-protocol evaluation (metrics.json, table.md, pr_curves.png, confusion_matrix.png)
    val/<model>/            Ultralytics' val output
    report.md, report.json  one row per model, then per-class AP50 side by side
    ap50_per_class.png      per-class AP50 bars, all models
    pr_curves.png           per-class PR curves, all models
    training_curves.png     every run's results.csv on one chart

Resuming: a model whose training finished (``weights/best.pt`` and ``results.csv`` present, and either recorded as
finished in ``state.json`` or its ``last.pt`` stripped by Ultralytics at the end) is not trained again; a model with
an unfinished ``weights/last.pt`` continues with Ultralytics' ``resume=True``; measurements already in ``state.json``
are reused.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
from ultralytics.utils import NUM_THREADS

from ultra_fer_mamba.evaluate import evaluate, from_json, load_yolo, to_json
from ultra_fer_mamba.info import cpu_latency, info
from ultra_fer_mamba.plots import plot_ap_bars, plot_pr_curves, plot_training_curves, read_results_csv

UVAL_CONF, UVAL_IOU = 0.001, 0.65  # Ultralytics val at the paper's evaluation settings


def parse_models(models: str | list | tuple) -> dict[str, str]:
    """Turn ``a.yaml,b.pt`` (or a list) into run name -> model, names unique (``yolov8n``, ``yolov8n-2``).

    Args:
        models (str | list | tuple): Comma-separated models or a sequence of them.

    Returns:
        (dict[str, str]): Run name (file stem) -> model as given.

    Examples:
        >>> parse_models("fer-yolo-mamba-s.yaml, yolov8s.yaml,yolov8s.yaml")
        {'fer-yolo-mamba-s': 'fer-yolo-mamba-s.yaml', 'yolov8s': 'yolov8s.yaml', 'yolov8s-2': 'yolov8s.yaml'}
    """
    items = [m.strip() for m in models.split(",")] if isinstance(models, str) else [str(m).strip() for m in models]
    out = {}
    for m in filter(None, items):
        stem, name, n = Path(m).stem, Path(m).stem, 1
        while name in out:
            n += 1
            name = f"{stem}-{n}"
        out[name] = m
    if not out:
        raise ValueError("compare needs models=a.yaml,b.yaml")
    return out


def _same(a: dict, b: dict) -> bool:
    """Whether two settings dicts are equal once both went through JSON."""
    return json.dumps(to_json(a), sort_keys=True) == json.dumps(to_json(b), sort_keys=True)


def load_state(report_dir: Path) -> dict | None:
    """Read ``state.json`` of a report folder, None if absent or unreadable."""
    try:
        return json.loads((Path(report_dir) / "state.json").read_text())
    except (OSError, ValueError):
        return None


def save_state(report_dir: Path, state: dict) -> None:
    """Write ``state.json`` atomically (a crash mid-write never leaves half a file)."""
    tmp = Path(report_dir) / "state.json.tmp"
    tmp.write_text(json.dumps(to_json(state), indent=2))
    os.replace(tmp, Path(report_dir) / "state.json")


def find_report_dir(project: str | None, name: str | None, settings: dict) -> Path:
    """The report folder: an existing one with the same settings (resume), else a new one, Ultralytics-incremented.

    Args:
        project (str | None): Parent folder (default ``runs/fer``).
        name (str | None): Folder name (default ``compare``).
        settings (dict): Training settings that must match for a folder to be resumed.

    Returns:
        (Path): The folder, created.
    """
    from ultralytics.utils import LOGGER
    from ultralytics.utils.files import increment_path

    base = Path(project or "runs/fer") / (name or "compare")
    candidate, n = base, 1
    while candidate.exists():
        state = load_state(candidate)
        if state and _same(state.get("settings", {}), settings):
            LOGGER.info(f"compare: resuming in {candidate}")
            return candidate
        n += 1
        candidate = Path(f"{base}-{n}")
    report_dir = increment_path(base, mkdir=True)
    report_dir.mkdir(parents=True, exist_ok=True)
    return report_dir


def _finished_checkpoint(last: Path) -> bool:
    """Whether Ultralytics marked a checkpoint as the end of training (optimizer stripped, epoch -1)."""
    from ultralytics.utils.patches import torch_load

    try:
        ckpt = torch_load(last, map_location="cpu", weights_only=False)
    except Exception:
        return False
    return ckpt.get("epoch", 0) == -1 and ckpt.get("optimizer") is None


def training_status(run_dir: Path, recorded: bool = False) -> str:
    """Where a model's training stands: ``done``, ``partial`` (resumable last.pt) or ``new``.

    Args:
        run_dir (Path): The training run folder (``.../runs/<model>``).
        recorded (bool): Whether ``state.json`` recorded this training as finished.

    Returns:
        (str): ``done``, ``partial`` or ``new``.
    """
    best, last, results = run_dir / "weights" / "best.pt", run_dir / "weights" / "last.pt", run_dir / "results.csv"
    if best.exists() and results.exists() and (recorded or (last.exists() and _finished_checkpoint(last))):
        return "done"
    return "partial" if last.exists() else "new"


def train_model(model: str, run_dir: Path, recorded: bool, train_args: dict) -> None:
    """Train one model, resume its unfinished run, or do nothing if it already finished.

    Args:
        model (str): Model YAML or weights, as passed to ``YOLO``.
        run_dir (Path): Its run folder; Ultralytics writes here (``project=run_dir.parent, name=run_dir.name``).
        recorded (bool): Whether ``state.json`` recorded this training as finished.
        train_args (dict): Identical training arguments for every model.
    """
    from ultralytics import YOLO
    from ultralytics.utils import LOGGER

    status = training_status(run_dir, recorded)
    if status == "done":
        LOGGER.info(f"compare: {run_dir.name} already trained, skipping")
    elif status == "partial":
        LOGGER.info(f"compare: resuming {run_dir.name} from {run_dir / 'weights' / 'last.pt'}")
        keep = {k: train_args[k] for k in ("device", "workers") if train_args.get(k) is not None}
        YOLO(str(run_dir / "weights" / "last.pt")).train(resume=True, save_dir=str(run_dir), **keep)
    else:
        LOGGER.info(f"compare: training {run_dir.name} ({model})")
        YOLO(model).train(**train_args, project=str(run_dir.parent), name=run_dir.name, exist_ok=True)


def _per_class(values, classes, nc: int) -> list[float]:
    """Spread values given for some class indices over all nc classes, NaN elsewhere."""
    out = [math.nan] * nc
    for v, c in zip(np.asarray(values).tolist(), np.asarray(classes).tolist()):
        out[int(c)] = float(v)
    return out


def measure_model(run_dir: Path, report_dir: Path, data: str, split: str, imgsz: int, batch: int, device,
                  latency_runs: int) -> dict:  # fmt: skip
    """Score a trained model both ways and measure its size and CPU speed.

    Args:
        run_dir (Path): The training run folder (weights/best.pt is used).
        report_dir (Path): The report folder (``eval/<name>`` and ``val/<name>`` go here).
        data (str): Data YAML.
        split (str): Split to score.
        imgsz (int): Image size.
        batch (int): Evaluation batch size.
        device (str | None): Evaluation device.
        latency_runs (int): Timed forward passes for the latency median.

    Returns:
        (dict): One report row (see ``report.json``).
    """
    best, name = run_dir / "weights" / "best.pt", run_dir.name
    paper = evaluate(best, data, split=split, imgsz=imgsz, conf=UVAL_CONF, iou=UVAL_IOU, batch=batch, device=device,
                     project=str(report_dir / "eval"), name=name, exist_ok=True)  # fmt: skip
    nc = len(paper["names"])
    yolo = load_yolo(best)
    size = info(yolo.model, imgsz, verbose=False)  # before val, which fuses the module in place
    latency = cpu_latency(yolo.model, imgsz, runs=latency_runs)
    uval = yolo.val(data=data, split=split, imgsz=imgsz, batch=batch, conf=UVAL_CONF, iou=UVAL_IOU, device=device,
                    project=str(report_dir / "val"), name=name, exist_ok=True, plots=False, verbose=False)  # fmt: skip
    keys = ("map50", "mean_f1", "mean_recall", "mean_precision", "ap50")
    return {
        "name": name,
        "run_dir": str(run_dir),
        "eval_dir": paper["save_dir"],
        "params": size["params"],
        "gflops": size["gflops"],
        "gflops_with_scan": size["gflops_with_scan"],
        "latency_ms": latency,
        "threads": NUM_THREADS,
        "epochs_trained": len(read_results_csv(run_dir / "results.csv").get("epoch", [])),
        "ultralytics": {
            "map50": float(uval.box.map50),
            "map50_95": float(uval.box.map),
            "ap50": _per_class(uval.box.ap50, uval.box.ap_class_index, nc),
        },
        "paper": {k: paper[k] for k in keys},
    }


def _num(v, fmt: str = ".2f", scale: float = 1.0) -> str:
    """Format a number for the report; NaN/None as an em dash."""
    return "—" if v is None or not math.isfinite(v) else f"{v * scale:{fmt}}"


def format_report(rows: list[dict], names: list[str], settings: dict, latency_runs: int) -> str:
    """The Markdown report: settings, one row per model, then per-class AP50 side by side.

    Args:
        rows (list[dict]): Report rows from :func:`measure_model`, with ``model`` added.
        names (list[str]): Class names.
        settings (dict): The shared training settings.
        latency_runs (int): Timed repeats behind each latency median.

    Returns:
        (str): Markdown.
    """
    s = settings
    threads = rows[0]["threads"] if rows else NUM_THREADS
    lines = [
        f"# Model comparison on {s['data']} ({s['split']})",
        "",
        "Identical training for every model with Ultralytics' stock trainer: "
        f"epochs={s['epochs']}, imgsz={s['imgsz']}, batch={s['batch']}, seed={s['seed']}, "
        f"pretrained={s['pretrained']}, amp={s['amp']}, other settings at Ultralytics' defaults. "
        f"Evaluation at conf {UVAL_CONF}, NMS IoU {UVAL_IOU}, imgsz {s['imgsz']}. "
        "mAP50 and mAP50-95: Ultralytics `val` (101-point COCO-style AP). VOC mAP50, F1, recall, precision: the paper's "
        "protocol (VOC all-point AP at IoU 0.5; F1/R/P at score >= 0.5; means over classes with boxes). CPU latency: "
        f"batch 1, fused float32, median of {latency_runs} runs after 10 warm-up, {threads} thread(s).",
        "",
        "| Model | Params (M) | GFLOPs | GFLOPs + scan | CPU latency (ms) | mAP50 (%) | mAP50-95 (%) | VOC mAP50 (%) "
        "| F1 | Recall (%) | Precision (%) | Epochs |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        u, p = r["ultralytics"], r["paper"]
        lines.append(
            f"| {r['name']} (`{r['model']}`) | {r['params'] / 1e6:.2f} | {_num(r['gflops'])} | "
            f"{_num(r['gflops_with_scan'])} | {_num(r['latency_ms'], '.1f')} | {_num(u['map50'], '.2f', 100)} | "
            f"{_num(u['map50_95'], '.2f', 100)} | {_num(p['map50'], '.2f', 100)} | {_num(p['mean_f1'])} | "
            f"{_num(p['mean_recall'], '.2f', 100)} | {_num(p['mean_precision'], '.2f', 100)} | {r['epochs_trained']} |"
        )
    lines += [
        "",
        "## Per-class AP50 (%, paper protocol)",
        "",
        "| Class | " + " | ".join(r["name"] for r in rows) + " |",
        "|---|" + "---:|" * len(rows),
    ]
    for c, cname in enumerate(names):
        lines.append(f"| {cname} | " + " | ".join(_num(r["paper"]["ap50"][c], ".2f", 100) for r in rows) + " |")
    lines.append("| **mean** | " + " | ".join(_num(r["paper"]["map50"], ".2f", 100) for r in rows) + " |")
    lines += [
        "",
        "![per-class AP50](ap50_per_class.png)",
        "![PR curves](pr_curves.png)",
        "![training curves](training_curves.png)",
        "",
    ]
    return "\n".join(lines)


def write_report(report_dir: Path, rows: list[dict], settings: dict, latency_runs: int) -> dict:
    """Write report.md, report.json and the three comparison plots; return the report dict."""
    metrics = {r["name"]: from_json(json.loads((Path(r["eval_dir"]) / "metrics.json").read_text())) for r in rows}
    names = next(iter(metrics.values()))["names"]
    report = {"settings": settings, "names": names, "latency_runs": latency_runs, "models": rows}
    (report_dir / "report.json").write_text(json.dumps(to_json(report), indent=2))
    (report_dir / "report.md").write_text(format_report(rows, names, settings, latency_runs))
    plot_ap_bars({r["name"]: r["paper"]["ap50"] for r in rows}, names, report_dir / "ap50_per_class.png")
    plot_pr_curves(metrics, names, report_dir / "pr_curves.png")
    csvs = {r["name"]: Path(r["run_dir"]) / "results.csv" for r in rows}
    plot_training_curves(csvs, report_dir / "training_curves.png")
    return report


def compare(
    data: str | None = None,
    models: str = "fer-yolo-mamba-s.yaml,yolov8s.yaml",
    epochs: int = 300,
    imgsz: int = 320,
    seed: int = 0,
    batch: int = 16,
    pretrained: bool | str = False,
    device: str | None = None,
    workers: int = 8,
    amp: bool = True,
    split: str = "val",
    project: str | None = None,
    name: str | None = None,
    latency_runs: int = 30,
) -> dict:
    """Train each model with identical settings and seed, evaluate each two ways, and write one report.

    Args:
        data (str): Data YAML (Ultralytics format).
        models (str | list): Comma-separated model YAMLs or weights, e.g. ``fer-yolo-mamba-s.yaml,yolov8s.yaml``.
        epochs (int): Training epochs (the paper: 300 on RAF-DB, 500 on SFEW).
        imgsz (int): Training and evaluation size (the paper: 320).
        seed (int): Seed shared by every run (Ultralytics' deterministic mode stays on).
        batch (int): Training and evaluation batch size (the paper: 16).
        pretrained (bool | str): Passed to the trainer; a weights path initialises matching layers from it.
        device (str | None): Training/evaluation device (latency is always measured on CPU).
        workers (int): Dataloader workers.
        amp (bool): Mixed precision on CUDA.
        split (str): Split that is scored.
        project (str | None): Parent folder (default ``runs/fer``).
        name (str | None): Report folder name (default ``compare``).
        latency_runs (int): Timed forward passes for each latency median.

    Returns:
        (dict): The report (what report.json holds): ``settings``, ``names``, ``models`` (one row each).

    Examples:
        $ fer-yolo-mamba compare data=datasets/rafdb/data.yaml models=fer-yolo-mamba-s.yaml,yolov8s.yaml epochs=300
        >>> compare(data="synth/data.yaml", models="yolov8n.yaml,yolov8s.yaml", epochs=1, imgsz=64)  # doctest: +SKIP
    """
    from ultralytics.data.utils import check_det_dataset
    from ultralytics.utils import LOGGER

    if not data:
        raise ValueError("compare needs data=path/to/data.yaml")
    check_det_dataset(data, autodownload=False)  # fail before any training if the data YAML is broken
    specs = parse_models(models)
    data_key = str(Path(data).resolve()) if Path(data).exists() else str(data)
    settings = dict(data=data_key, split=split, epochs=epochs, imgsz=imgsz, batch=batch, seed=seed,
                    pretrained=pretrained, amp=amp)  # fmt: skip
    report_dir = find_report_dir(project, name, settings)
    state = load_state(report_dir) or {"settings": settings, "models": {}}
    save_state(report_dir, state)  # before any training, so an interrupted run is found and resumed
    train_args = dict(data=data, epochs=epochs, imgsz=imgsz, batch=batch, seed=seed, deterministic=True,
                      pretrained=pretrained, amp=amp, device=device, workers=workers)  # fmt: skip

    rows = []
    for run_name, model in specs.items():
        entry = state["models"].setdefault(run_name, {"model": model, "trained": False})
        save_state(report_dir, state)
        run_dir = (report_dir / "runs" / run_name).resolve()
        train_model(model, run_dir, entry["trained"], train_args)
        entry["trained"] = True
        save_state(report_dir, state)
        if not entry.get("row") or not (Path(entry["row"]["eval_dir"]) / "metrics.json").exists():
            entry["row"] = measure_model(run_dir, report_dir, data, split, imgsz, batch, device, latency_runs)
            save_state(report_dir, state)
        rows.append({"model": model, **from_json(entry["row"])})

    report = write_report(report_dir, rows, settings, latency_runs)
    LOGGER.info(f"\n{(report_dir / 'report.md').read_text()}\ncompare: report saved to {report_dir}")
    return report
