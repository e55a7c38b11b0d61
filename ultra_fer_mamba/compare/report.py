"""The comparison report: ``report.md``, ``report.json``, its plots, and optionally a block of a Markdown doc.

Every number is a mean ± standard deviation over seeds; each model is also compared with the first one by the paired
difference over seeds with a Student t-interval (:mod:`ultra_fer_mamba.compare.stats`).
"""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

from ultra_fer_mamba.compare.entries import UVAL_CONF, UVAL_IOU
from ultra_fer_mamba.compare.stats import LEVEL, mean_sd
from ultra_fer_mamba.compare.summary import mean_pr, summarise
from ultra_fer_mamba.io import to_json
from ultra_fer_mamba.plots import plot_ap_bars, plot_pr_curves, plot_training_curves
from ultra_fer_mamba.twostage import FACE_CONF

# (key, column title, scale): the model-level metrics, then the per-class ones
METRICS = (("map50", "mAP50 (%)", 100), ("map50_95", "mAP50-95 (%)", 100), ("voc_map50", "VOC mAP50 (%)", 100),
           ("f1", "F1", 1), ("recall", "Recall (%)", 100), ("precision", "Precision (%)", 100))  # fmt: skip
PER_CLASS = (("voc_ap50", "AP50 (%, paper protocol)", 100), ("ap50_95", "AP50-95 (%, Ultralytics val)", 100),
             ("f1", "F1 at score 0.5", 1), ("recall", "Recall at score 0.5 (%)", 100),
             ("precision", "Precision at score 0.5 (%)", 100))  # fmt: skip
LEARNING_COLUMN = "metrics/mAP50-95(B)"
PLOTS = ("learning_curve.png", "ap50_per_class.png", "pr_curves.png", "training_curves.png")


def _num(v, fmt: str = ".2f", scale: float = 1.0, sign: bool = False) -> str:
    """A number for the report; NaN/None as an em dash."""
    return "—" if v is None or not math.isfinite(v) else f"{v * scale:{'+' if sign else ''}{fmt}}"


def _ms(s: dict, scale: float = 1.0) -> str:
    """``mean ± sd`` of a :func:`~ultra_fer_mamba.compare.stats.mean_sd` dict (the mean alone from one value)."""
    if s["n"] < 2:
        return _num(s["mean"], ".2f", scale)
    return f"{_num(s['mean'], '.2f', scale)} ± {_num(s['sd'], '.2f', scale)}"


def _reading(d: dict, name: str) -> str:
    """What a paired difference says, in words."""
    if d["includes_zero"] is None:
        return "fewer than 2 seeds: no interval"
    if d["includes_zero"]:
        return "**interval includes 0**: no clear difference"
    return f"{name} {'higher' if d['mean'] > 0 else 'lower'}"


def settings_text(report: dict) -> str:
    """The paragraph saying how every model was trained and scored."""
    s, seeds = report["settings"], report["seeds"]
    train = " ".join(f"{k}={v}" for k, v in {**s["train"], **report["runtime"]}.items())
    threads = next((e["cost"]["threads"] for e in report["entries"].values() if e.get("cost")), "?")
    return (
        f"Every model trained by Ultralytics' stock trainer once per seed ({', '.join(map(str, seeds))}) with "
        f"`{train}` (others at Ultralytics' defaults), and scored on `{s['split']}` at conf {UVAL_CONF}, NMS IoU "
        f"{UVAL_IOU}. Numbers are mean ± standard deviation over seeds (n - 1). mAP50 and mAP50-95: Ultralytics `val` "
        "(101-point AP). VOC mAP50, F1, recall, precision: the paper's protocol (VOC all-point AP at IoU 0.5; F1/R/P "
        "at score >= 0.5; means over classes with boxes). CPU latency: batch 1, fused float32, median of "
        f"{report['latency_runs']} runs after 10 warm-up, {threads} thread(s), measured once per model; GFLOPs at "
        f"imgsz {s['train'].get('imgsz')}. Train: wall time of one training run, validation after each epoch included."
        + two_stage_text(report)
    )


def two_stage_text(report: dict) -> str:
    """What the settings paragraph adds when a two-stage entry (``compare/twostage.py``) is in the report, else ""."""
    found = {n: e["cost"] for n, e in report["entries"].items() if "faces_per_image" in (e.get("cost") or {})}
    if not found:
        return ""
    each = "; ".join(f"{n}: {c['faces_per_image']:.2f} faces per image, detector {c['detector_ms']:.1f} ms + "
                     f"classifier {c['classifier_ms']:.1f} ms per face" for n, c in found.items())  # fmt: skip
    return (
        " Two-stage entries (detector+classifier): the detector trained with single_cls=True, the classifier on face "
        "crops of the same splits (imgsz = the crops' size), both with these arguments and seed; scored by the same "
        "paper protocol, one expression per face with score detector confidence x classifier probability. "
        "Ultralytics `val` cannot run them (—). Their params add both models; GFLOPs and latency add one classifier "
        f"call per face the detector finds at confidence >= {FACE_CONF} (mean per image on the scored split): {each}."
    )


def models_table(report: dict) -> list[str]:
    """One row per model: size, speed and every metric as mean ± sd."""
    head = "| Model | Params (M) | GFLOPs | GFLOPs + scan | CPU latency (ms) | " + " | ".join(t for _, t, _ in METRICS)
    lines = [head + " | Train (min) | Epochs | Seeds |", "|---|" + "---:|" * (len(METRICS) + 7)]
    for name, e in report["entries"].items():
        c, m = e.get("cost") or {}, report["summary"][name]["metrics"]
        epochs = sorted({r["epochs_trained"] for r in e["runs"].values()})
        lines.append(
            f"| {name} (`{e['model']}`) | {_num(c.get('params', math.nan), '.2f', 1e-6)} | "
            f"{_num(c.get('gflops', math.nan))} | {_num(c.get('gflops_with_scan', math.nan))} | "
            f"{_num(c.get('latency_ms', math.nan), '.1f')} | " + " | ".join(_ms(m[k], x) for k, _, x in METRICS)
            + f" | {_ms(mean_sd(r.get('train_s') for r in e['runs'].values()), 1 / 60)}"
            f" | {'/'.join(map(str, epochs))} | {len(e['runs'])} |"
        )
    return lines


def differences_table(report: dict, keys: tuple | None = None) -> list[str]:
    """Each model minus the first, per metric (``keys``, default all): mean difference, t-interval, what it says."""
    names = list(report["entries"])
    lines = [
        f"Per seed, model minus {names[0]} (both trained with that seed: same data order and augmentation); mean "
        f"and {LEVEL:.0%} Student t-interval over seeds: mean ± t(0.975, n - 1) · sd / √n.",
        "",
        f"| Model | Metric | Difference | {LEVEL:.0%} t-interval | Seeds | Reading |",
        "|---|---|---:|---:|---:|---|",
    ]
    for name in names[1:]:
        for key, title, x in (m for m in METRICS if keys is None or m[0] in keys):
            d = report["summary"][name]["differences"].get(key)
            if d and d["n"]:  # a metric the entry cannot produce has no row
                lo, hi = _num(d["lo"], ".2f", x, True), _num(d["hi"], ".2f", x, True)
                ci = "—" if d["includes_zero"] is None else f"[{lo}, {hi}]"
                lines.append(f"| {name} | {title} | {_num(d['mean'], '.2f', x, True)} | {ci} | {d['n']} | "
                             f"{_reading(d, name)} |")  # fmt: skip
    return lines


def per_class_table(report: dict, key: str, title: str, scale: float) -> list[str]:
    """Classes down, models across, mean ± sd over seeds of one per-class metric."""
    names = list(report["entries"])
    lines = [f"| {title} | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for c, cname in enumerate(report["names"]):
        cells = [report["summary"][n]["per_class"].get(key, []) for n in names]
        lines.append(f"| {cname} | " + " | ".join(_ms(v[c], scale) if v else "—" for v in cells) + " |")
    return lines


def runs_table(report: dict) -> list[str]:
    """Every run's own numbers."""
    lines = ["| Model | Seed | " + " | ".join(t for _, t, _ in METRICS) + " | Epochs | Run |",
             "|---|---:|" + "---:|" * (len(METRICS) + 1) + "---|"]  # fmt: skip
    for name, e in report["entries"].items():
        for seed, r in e["runs"].items():
            cells = " | ".join(_num(r["metrics"].get(k), ".2f", x) for k, _, x in METRICS)
            lines.append(f"| {name} | {seed} | {cells} | {r['epochs_trained']} | `{r['run_dir']}` |")
    return lines


def format_report(report: dict) -> str:
    """The whole ``report.md``."""
    names, first = list(report["entries"]), next(iter(report["entries"]))
    out = [f"# Model comparison on {report['settings']['data']} ({report['settings']['split']})", "",
           settings_text(report), "", "## Models", "", *models_table(report), ""]  # fmt: skip
    if len(names) > 1:
        out += [f"## Paired differences against {first}", "", *differences_table(report), ""]
    out += ["## Per class", ""]
    for key, title, scale in PER_CLASS:
        out += [*per_class_table(report, key, title, scale), ""]
    out += ["## Plots", "", *(f"![{p[:-4]}]({p})" for p in PLOTS), "", "## Runs", "", *runs_table(report), ""]
    return "\n".join(out)


def write_report(report_dir: Path, report: dict) -> dict:
    """Add the summary, write report.json, report.md and the plots; return the report.

    Args:
        report_dir (Path): The report folder.
        report (dict): ``settings``, ``runtime``, ``seeds``, ``names``, ``latency_runs`` and ``entries`` (name ->
            ``model``, ``cost``, ``runs``: seed -> row), with finished runs only.

    Returns:
        (dict): The report with ``summary`` added (what report.json holds).
    """
    report = {**report, "summary": summarise(report["entries"])}
    (report_dir / "report.json").write_text(json.dumps(to_json(report), indent=2))
    (report_dir / "report.md").write_text(format_report(report))
    names, summary = report["names"], report["summary"]
    per_class = {n: summary[n]["per_class"].get("voc_ap50") for n in report["entries"]}
    plot_ap_bars({n: [s["mean"] for s in v] for n, v in per_class.items() if v}, names,
                 report_dir / "ap50_per_class.png", err={n: [s["sd"] for s in v] for n, v in per_class.items() if v})
    prs = {n: mean_pr([r.get("eval_dir") for r in e["runs"].values()]) for n, e in report["entries"].items()}
    plot_pr_curves({n: m for n, m in prs.items() if m}, names, report_dir / "pr_curves.png")
    csvs = {n: [r["results_csv"] for r in e["runs"].values() if r.get("results_csv")]
            for n, e in report["entries"].items()}  # fmt: skip
    plot_training_curves(csvs, report_dir / "training_curves.png")
    plot_training_curves(csvs, report_dir / "learning_curve.png", (LEARNING_COLUMN,), "Learning curve (mAP50-95)")
    return report


def markers(key: str) -> tuple[str, str]:
    """The begin and end markers of a doc block written by ``compare docs=... name=key``."""
    return f"<!-- compare-{key}:begin -->", f"<!-- compare-{key}:end -->"


def check_docs(doc: str | Path, key: str) -> None:
    """Fail early (before hours of training) if ``doc`` lacks the block's markers."""
    begin, end = markers(key)
    text = Path(doc).read_text() if Path(doc).is_file() else ""
    if begin not in text or end not in text:
        raise ValueError(f"docs={doc} needs the lines {begin} and {end}, where compare writes its tables and plots")


def write_docs(doc: str | Path, key: str, report: dict, report_dir: Path) -> None:
    """Replace the doc's marker block with the report's settings, tables and plots (copied beside the doc)."""
    doc, (begin, end) = Path(doc), markers(key)
    check_docs(doc, key)
    images = []
    for plot in ("learning_curve.png", "ap50_per_class.png"):
        target = doc.parent / f"compare-{key}-{plot}"
        shutil.copyfile(report_dir / plot, target)
        images.append(f"![{plot[:-4]}]({target.name})")
    first = next(iter(report["entries"]))
    block = [settings_text(report), "", *models_table(report), ""]
    if len(report["entries"]) > 1:
        block += [f"Paired differences against {first} (`report.md` has F1, recall and precision too):", "",
                  *differences_table(report, ("map50", "map50_95", "voc_map50")), ""]
    block += [*per_class_table(report, *PER_CLASS[0]), "", *images]
    text = re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _: "\n".join([begin, *block, end]),
                  doc.read_text(), flags=re.S)  # fmt: skip
    doc.write_text(text)
