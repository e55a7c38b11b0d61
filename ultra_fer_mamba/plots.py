"""PNG plots shared by ``eval``, ``compare`` and ``heatmap``.

Figures are built with ``matplotlib.figure.Figure`` and written by its Agg canvas, so nothing here touches pyplot's
global state or switches the backend of a user's interactive session.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

STYLES = ("-", "--", "-.", ":")  # line styles cycled over models, so overlapping curves stay visible
MARKERS = ("o", "s", "^", "D", "v", "P")

# results.csv columns drawn by plot_training_curves, in panel order (missing columns are skipped)
TRAIN_COLUMNS = (
    "train/box_loss",
    "train/cls_loss",
    "train/dfl_loss",
    "val/box_loss",
    "val/cls_loss",
    "metrics/precision(B)",
    "metrics/recall(B)",
    "metrics/mAP50(B)",
    "metrics/mAP50-95(B)",
)


def _save(fig: Figure, file: str | Path, dpi: int = 150) -> Path:
    """Write a figure as PNG, creating the folder, and return the path."""
    file = Path(file)
    file.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(file, dpi=dpi, bbox_inches="tight", pad_inches=0.1)  # never clip axis labels
    return file


def _grid(n: int, cols: int = 4) -> tuple[int, int]:
    """Rows and columns of a panel grid holding n panels."""
    cols = min(cols, n)
    return math.ceil(n / cols), cols


def _fmt(v: float, scale: float = 1.0, digits: int = 2) -> str:
    """Format a metric for a legend; NaN reads as n/a."""
    return "n/a" if v is None or not math.isfinite(v) else f"{v * scale:.{digits}f}"


def plot_pr_curves(runs: dict[str, dict], names: list[str], file: str | Path) -> Path:
    """Per-class precision-recall curves (one panel a class plus the class mean), one line per model.

    Args:
        runs (dict[str, dict]): Model label -> a ``paper_metrics`` dict (``pr_recall``, ``pr_curve``, ``ap50``,
            ``n_gt``, ``map50``).
        names (list[str]): Class names.
        file (str | Path): PNG to write.

    Returns:
        (Path): The PNG written.

    Examples:
        >>> from ultra_fer_mamba.metrics import paper_metrics
        >>> m = paper_metrics([np.array([[0, 0, 9, 9, 0.9, 0]])], [np.array([[0, 0, 9, 9, 0]])], nc=2)
        >>> plot_pr_curves({"model": m}, ["a", "b"], "/tmp/pr.png").name
        'pr.png'
    """
    rows, cols = _grid(len(names) + 1)
    fig = Figure(figsize=(3.2 * cols, 3.0 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for k, (label, m) in enumerate(runs.items()):
        style = STYLES[k % len(STYLES)]
        grid, curves, has_gt = np.asarray(m["pr_recall"]), np.asarray(m["pr_curve"]), np.asarray(m["n_gt"]) > 0
        for c, ax in enumerate(axes[: len(names)]):
            if has_gt[c]:
                ax.plot(grid, curves[c], style, lw=1.5, label=f"{label} AP50 {_fmt(m['ap50'][c], 100, 1)}")
        if has_gt.any():
            mean = curves[has_gt].mean(0)
            axes[len(names)].plot(grid, mean, style, lw=1.5, label=f"{label} mAP50 {_fmt(m['map50'], 100, 1)}")
    for i, ax in enumerate(axes):
        if i > len(names):
            ax.set_visible(False)
            continue
        ax.set(xlim=(-0.01, 1.01), ylim=(-0.02, 1.02), xlabel="Recall", ylabel="Precision")  # curves at 0 or 1 visible
        ax.set_title(names[i] if i < len(names) else "mean over classes with boxes", fontsize=10)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7, loc="best")
        else:
            ax.text(0.5, 0.5, "no boxes", ha="center", va="center", color="gray", transform=ax.transAxes)
    fig.suptitle("Precision-recall at IoU 0.5 (VOC all-point envelope)")
    return _save(fig, file)


def plot_confusion_matrix(cm: np.ndarray, names: list[str], file: str | Path, title: str = "") -> Path:
    """Detection confusion matrix: colour = share of the true class's row, text = counts.

    Args:
        cm (np.ndarray): Counts (nc + 1, nc + 1), rows true class, columns predicted, last row/column background.
        names (list[str]): Class names (nc).
        file (str | Path): PNG to write.
        title (str): Figure title.

    Returns:
        (Path): The PNG written.

    Examples:
        >>> plot_confusion_matrix(np.eye(3, dtype=int), ["a", "b"], "/tmp/cm.png").name
        'cm.png'
    """
    labels = [*names, "background"]
    rows = cm.sum(1, keepdims=True)
    share = np.divide(cm, rows, out=np.zeros(cm.shape), where=rows > 0)
    n = len(labels)
    fig = Figure(figsize=(1.0 + 0.75 * n, 0.6 + 0.7 * n), layout="constrained")
    ax = fig.subplots()
    im = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for (i, j), v in np.ndenumerate(cm):
        if v:
            ax.text(j, i, str(v), ha="center", va="center", fontsize=8, color="white" if share[i, j] > 0.5 else "black")
    ax.set_xticks(range(n), labels, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(n), labels, fontsize=8)
    ax.set(xlabel="Predicted", ylabel="True")
    ax.set_title(title or "Confusion matrix (row share; counts)", fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="share of true class")
    return _save(fig, file)


def plot_ap_bars(ap50: dict[str, list[float]], names: list[str], file: str | Path,
                 err: dict[str, list[float]] | None = None) -> Path:  # fmt: skip
    """Per-class AP50 bars, models side by side in each class group, with optional error bars.

    Args:
        ap50 (dict[str, list[float]]): Model label -> per-class AP50 fractions (NaN for classes without boxes).
        names (list[str]): Class names.
        file (str | Path): PNG to write.
        err (dict[str, list[float]] | None): Model label -> per-class error-bar half-lengths (fractions; NaN: none),
            e.g. the standard deviation over seeds.

    Returns:
        (Path): The PNG written.

    Examples:
        >>> plot_ap_bars({"m1": [0.5, float("nan")], "m2": [0.7, 0.2]}, ["a", "b"], "/tmp/ap.png").name
        'ap.png'
    """
    x, width, many = np.arange(len(names)), 0.8 / max(len(ap50), 1), len(ap50) > 3
    fig = Figure(figsize=(min(14.0, max(6.0, 1.1 * len(names) * max(1, len(ap50) / 2))), 4.0 + many),
                 layout="constrained")  # fmt: skip
    ax = fig.subplots()
    for k, (label, values) in enumerate(ap50.items()):
        v = np.asarray(values, dtype=float) * 100
        e = np.nan_to_num(np.asarray(err[label], dtype=float) * 100) if err and label in err else None
        bars = ax.bar(x + (k - (len(ap50) - 1) / 2) * width, np.nan_to_num(v), width, label=label, yerr=e,
                      error_kw={"elinewidth": 1, "capsize": 2, "ecolor": "0.25"})  # fmt: skip
        ax.bar_label(bars, labels=[_fmt(a, 1, 1) for a in v], fontsize=6 if many else 7, padding=1,
                     rotation=90 if many else 0)  # upright labels would overlap beside narrow bars
    ax.set_xticks(x, names)
    title = "Per-class AP50 (VOC, IoU 0.5)" + (": mean, bars ± 1 sd" if err else "")
    ax.set(ylabel="AP50 (%)", ylim=(0, 135 if many else 120), title=title)
    ax.set_yticks(range(0, 101, 20))
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", ncol=min(len(ap50), 4))  # in the headroom above 100, clear of the bars
    return _save(fig, file)


def read_results_csv(file: str | Path) -> dict[str, np.ndarray]:
    """Read an Ultralytics ``results.csv`` into column name -> float array (names stripped of padding).

    Args:
        file (str | Path): The results.csv of a training run.

    Returns:
        (dict[str, np.ndarray]): One array per column; empty dict if the file is missing or empty.
    """
    file = Path(file)
    if not file.exists():
        return {}
    with open(file, newline="") as f:
        rows = list(csv.reader(f))
    if len(rows) < 2:
        return {}
    head = [h.strip() for h in rows[0]]
    cols = {}
    for i, h in enumerate(head):
        try:
            cols[h] = np.array([float(r[i]) for r in rows[1:]])
        except (ValueError, IndexError):
            continue
    return cols


def mean_band(series: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and sample standard deviation at each epoch over several runs (runs may stop at different epochs).

    Args:
        series (list[tuple[np.ndarray, np.ndarray]]): One ``(epochs, values)`` pair per run.

    Returns:
        epochs (np.ndarray): Every epoch any run reached, sorted.
        mean (np.ndarray): Mean over the runs that reached it.
        sd (np.ndarray): Standard deviation (n - 1) over them; 0 where only one run did.

    Examples:
        >>> e, m, s = mean_band([(np.array([1, 2]), np.array([0.2, 0.4])), (np.array([1]), np.array([0.4]))])
        >>> e.tolist(), m.round(3).tolist(), s.round(3).tolist()
        ([1, 2], [0.3, 0.4], [0.141, 0.0])
    """
    by_epoch = {}
    for epochs, values in series:
        for e, v in zip(np.asarray(epochs).tolist(), np.asarray(values, dtype=float).tolist()):
            by_epoch.setdefault(e, []).append(v)
    epochs = np.array(sorted(by_epoch))
    mean = np.array([np.mean(by_epoch[e]) for e in epochs])
    sd = np.array([np.std(by_epoch[e], ddof=1) if len(by_epoch[e]) > 1 else 0.0 for e in epochs])
    return epochs, mean, sd


def plot_training_curves(results: dict[str, list[str | Path]], file: str | Path, columns: tuple = TRAIN_COLUMNS,
                         title: str = "Training curves") -> Path:  # fmt: skip
    """Training curves of several models, each the mean over its runs (seeds) with a ± 1 sd band.

    A panel per results.csv column (those present), a line per model.

    Args:
        results (dict[str, list[str | Path]]): Model label -> the results.csv of each of its runs.
        file (str | Path): PNG to write.
        columns (tuple): results.csv columns to draw, in panel order (missing ones are skipped).
        title (str): Figure title (the band's meaning is added).

    Returns:
        (Path): The PNG written.
    """
    data = {label: [read_results_csv(f) for f in files] for label, files in results.items()}
    columns = [c for c in columns if any(c in d for runs in data.values() for d in runs)]
    rows, cols = _grid(max(len(columns), 1), 3)
    fig = Figure(figsize=(4.0 * cols + (2.0 if len(columns) == 1 else 0), 2.8 * rows + 0.4), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    most = max((len(runs) for runs in data.values()), default=1)
    for ax, col in zip(axes, columns):
        for k, (label, runs) in enumerate(data.items()):
            series = [(d.get("epoch", np.arange(1, len(d[col]) + 1)), d[col]) for d in runs if col in d]
            if not series:
                continue
            epochs, mean, sd = mean_band(series)
            line = ax.plot(epochs, mean, STYLES[k % len(STYLES)], marker=MARKERS[k % len(MARKERS)], ms=3, lw=1.5,
                           label=label if len(series) == 1 else f"{label} (n={len(series)})")[0]  # fmt: skip
            ax.fill_between(epochs, mean - sd, mean + sd, color=line.get_color(), alpha=0.18, lw=0)
        ax.set_title(col, fontsize=10)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    for ax in axes[len(columns) :]:
        ax.set_visible(False)
    if columns:
        axes[0].legend(fontsize=8)
    fig.suptitle(title + (", mean over seeds, band ± 1 sd" if most > 1 else ""))
    return _save(fig, file)


def plot_heatmap(image: np.ndarray, drawn: np.ndarray, heat: np.ndarray, file: str | Path, alpha: float = 0.5,
                 peak: float | None = None) -> Path:  # fmt: skip
    """Two panels: the detections drawn, and the class-confidence heat map over the image.

    Args:
        image (np.ndarray): Original image, RGB uint8 (H, W, 3).
        drawn (np.ndarray): The same image with the detections drawn, RGB uint8 (H, W, 3).
        heat (np.ndarray): Max class score per pixel in [0, 1], (H, W).
        file (str | Path): PNG to write.
        alpha (float): Opacity of the heat map over the image.
        peak (float | None): Highest anchor score, for the title (upsampling smooths the map below it).

    Returns:
        (Path): The PNG written.
    """
    h, w = heat.shape
    peak = heat.max() if peak is None else peak
    panel = 4.0
    fig = Figure(figsize=(2 * panel * w / max(h, w) + 1.0, panel * h / max(h, w) + 0.5), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2)
    ax1.imshow(drawn)
    ax1.set_title("detections", fontsize=10)
    ax2.imshow(image)
    ax2.imshow(heat, cmap="jet", alpha=alpha, vmin=0, vmax=1)
    ax2.set_title(f"max class score per anchor (peak {peak:.2f})", fontsize=10)
    for ax in (ax1, ax2):
        ax.axis("off")
    fig.colorbar(ScalarMappable(Normalize(0, 1), "jet"), ax=ax2, fraction=0.046, pad=0.02)  # opaque colour key
    return _save(fig, file)
