"""Spread over seeds: mean and standard deviation, and the paired difference of two models with a t-interval.

NaN values (a class without boxes, a metric an entry cannot produce) are left out; the count says how many remain.
"""

from __future__ import annotations

import math

import numpy as np

LEVEL = 0.95  # confidence level of the paired-difference interval


def mean_sd(values) -> dict:
    """Mean and sample standard deviation (n - 1) of the finite values.

    Args:
        values (Iterable[float]): One value per seed; NaN and None are skipped.

    Returns:
        (dict): ``mean``, ``sd`` (NaN with fewer than 2 values), ``n``.

    Examples:
        >>> mean_sd([0.5, 0.7, float("nan")])  # sd = 0.1 * sqrt(2)
        {'mean': 0.6, 'sd': 0.14142135623730948, 'n': 2}
    """
    v = np.array([x for x in values if x is not None and math.isfinite(x)], dtype=float)
    mean = float(v.mean()) if len(v) else math.nan
    sd = float(v.std(ddof=1)) if len(v) > 1 else math.nan
    return {"mean": mean, "sd": sd, "n": len(v)}


def paired_difference(model: dict, base: dict, level: float = LEVEL) -> dict:
    """The per-seed difference ``model - base`` over the seeds both have, with a Student t-interval of its mean.

    The interval is ``mean ± t(1 - (1 - level) / 2, n - 1) * sd / sqrt(n)``: it treats the seeds as independent
    draws, each giving both models the same seed (same data order and augmentation).

    Args:
        model (dict): Seed -> value of the model.
        base (dict): Seed -> value of the model it is compared with.
        level (float): Confidence level of the interval.

    Returns:
        (dict): ``mean``, ``sd``, ``n`` (seeds with both values), ``lo``, ``hi`` (NaN with fewer than 2 seeds),
            ``includes_zero`` (None without an interval).

    Examples:
        >>> d = paired_difference({0: 3.0, 1: 5.0, 2: 4.0}, {0: 1.0, 1: 2.0, 2: 3.0})
        >>> d["mean"], d["n"], round(d["lo"], 3), round(d["hi"], 3), d["includes_zero"]
        (2.0, 3, -0.484, 4.484, True)
    """
    from scipy.stats import t

    seeds = [s for s in model if s in base and _finite(model[s]) and _finite(base[s])]
    d = mean_sd([model[s] - base[s] for s in seeds])
    if d["n"] < 2:
        return {**d, "lo": math.nan, "hi": math.nan, "includes_zero": None}
    half = float(t.ppf(1 - (1 - level) / 2, d["n"] - 1)) * d["sd"] / math.sqrt(d["n"])
    lo, hi = d["mean"] - half, d["mean"] + half
    return {**d, "lo": lo, "hi": hi, "includes_zero": bool(lo <= 0 <= hi)}


def _finite(x) -> bool:
    """Whether x is a finite number."""
    return x is not None and math.isfinite(x)
