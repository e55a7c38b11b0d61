"""From per-seed rows to the report's numbers: mean ± sd per model and class, paired differences, mean PR curves."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ultra_fer_mamba.compare.stats import mean_sd, paired_difference
from ultra_fer_mamba.io import from_json


def summarise(entries: dict[str, dict]) -> dict[str, dict]:
    """Mean ± sd over seeds of every metric and per-class metric, and each entry's paired difference to the first.

    Args:
        entries (dict[str, dict]): Name -> ``{"runs": {seed: row}}`` (rows as ``YoloEntry.measure`` returns them), in
            report order; the first is the reference of the differences.

    Returns:
        (dict[str, dict]): Name -> ``metrics`` (key -> :func:`mean_sd`), ``per_class`` (key -> one :func:`mean_sd` a
            class) and, except for the first, ``differences`` (key -> :func:`paired_difference`, entry minus first).

    Examples:
        >>> runs = lambda *v: {"runs": {str(s): {"metrics": {"map50": x}, "per_class": {}} for s, x in enumerate(v)}}
        >>> s = summarise({"a": runs(0.5, 0.6), "b": runs(0.7, 0.9)})
        >>> round(s["b"]["metrics"]["map50"]["mean"], 3), round(s["b"]["differences"]["map50"]["mean"], 3)
        (0.8, 0.25)
    """
    values = {name: _by_metric(e["runs"]) for name, e in entries.items()}
    first = next(iter(values.values()), ({}, {}))
    out = {}
    for k, (name, (metrics, per_class)) in enumerate(values.items()):
        out[name] = {
            "metrics": {m: mean_sd(v.values()) for m, v in metrics.items()},
            "per_class": {m: [mean_sd(c) for c in np.array(v, dtype=float).T] for m, v in per_class.items()},
        }
        if k:
            out[name]["differences"] = {m: paired_difference(v, first[0].get(m, {})) for m, v in metrics.items()}
    return out


def _by_metric(runs: dict[str, dict]) -> tuple[dict, dict]:
    """Regroup per-seed rows: metric -> {seed: value}, and per-class metric -> [per-class list of each seed]."""
    metrics, per_class = {}, {}
    for seed, row in runs.items():
        for m, v in row["metrics"].items():
            metrics.setdefault(m, {})[seed] = np.nan if v is None else v
        for m, v in row["per_class"].items():
            per_class.setdefault(m, []).append([np.nan if x is None else x for x in v])
    return metrics, per_class


def mean_pr(eval_dirs: list[str | Path]) -> dict | None:
    """The seeds' PR envelopes averaged point by point, as one ``paper_metrics``-like dict for ``plot_pr_curves``.

    Args:
        eval_dirs (list): Folders holding an ``eval`` ``metrics.json`` (missing ones are skipped).

    Returns:
        (dict | None): ``pr_recall``, ``pr_curve`` (mean), ``ap50`` and ``map50`` (means), ``n_gt``; None if none found.
    """
    found = [Path(d) / "metrics.json" for d in eval_dirs if d and (Path(d) / "metrics.json").is_file()]
    runs = [from_json(json.loads(f.read_text())) for f in found]
    if not runs:
        return None
    return {
        "pr_recall": runs[0]["pr_recall"],
        "pr_curve": np.mean([r["pr_curve"] for r in runs], 0),
        "ap50": np.mean([r["ap50"] for r in runs], 0),
        "map50": float(np.mean([r["map50"] for r in runs])),
        "n_gt": runs[0]["n_gt"],
    }
