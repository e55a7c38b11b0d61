"""Time the demo over seeds (goal: under 10 minutes on a 2-core CPU, learning to mAP50 > 0.5) and the synthetic
renderer.

``fer-yolo-mamba demo`` runs with its defaults once per seed (the seed of the synthetic set and of training), each
in its own project folder; the spread over seeds of its wall time, mAP50 and mAP50-95 is printed as a table and, with
``readme=True``, written into README.md between the bench-demo markers.

Usage (key=value, like ``yolo``)::

    python benchmarks/bench_demo.py seeds=0,1,2 readme=True   # what README.md shows (about half an hour)
    python benchmarks/bench_demo.py demo=False                # only the renderer (seconds)
    python benchmarks/bench_demo.py tiny=True                 # a 1-epoch demo at 64 px on 8 images (how it is tested)

Keys: ``demo`` (run the demo, default True), ``seeds`` (comma-separated, default 0), ``model`` (default
fer-yolo-mamba-n.yaml), ``renders`` (synthetic images timed, default 50; goal: under 50 ms an image at 320),
``project`` (where the demo runs write, default a temporary folder), ``tiny`` (the demo on tiny settings),
``readme`` (write the table into README.md). Wall-clock goals live here, not in the tests (tests/test_demo.py and
tests/test_synth.py check what the runs produce). Run on an otherwise idle machine.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from model_table import write_readme_section  # noqa: E402

BEGIN, END = "<!-- bench-demo:begin -->", "<!-- bench-demo:end -->"
DEMO_GOAL_MIN, RENDER_GOAL_MS = 10.0, 50.0
TINY = dict(epochs=1, imgsz=64, batch=8, n_train=8, n_val=4, workers=0)


def spread(values: list[float], fmt: str) -> list[str]:
    """Cells for one quantity over seeds: mean ± sd (sd only with 2 or more seeds), min, max.

    Examples:
        >>> spread([8.0, 9.0, 10.0], ".1f")
        ['9.0 ± 1.0', '8.0', '10.0']
        >>> spread([0.7], ".3f")
        ['0.700', '0.700', '0.700']
    """
    mean = f"{statistics.mean(values):{fmt}}" + (f" ± {statistics.stdev(values):{fmt}}" if len(values) > 1 else "")
    return [mean, f"{min(values):{fmt}}", f"{max(values):{fmt}}"]


def markdown(runs: list[dict], model: str, tiny: bool) -> str:
    """The demo runs (``seed``, ``minutes``, ``map50``, ``map``) as a sentence and a table of their spread."""
    from ultralytics.utils.torch_utils import get_cpu_info

    seeds = ",".join(str(r["seed"]) for r in runs)
    met = all(r["minutes"] < DEMO_GOAL_MIN and r["map50"] > 0.5 for r in runs)
    lines = [f"Measured by `python benchmarks/bench_demo.py seeds={seeds}{' tiny=True' if tiny else ''}` on "
             f"{get_cpu_info()} ({os.cpu_count()} cores), load average {os.getloadavg()[0]:.1f} at the end, "
             f"{time.strftime('%Y-%m-%d')}: `fer-yolo-mamba demo model={model}`"
             f"{' on tiny settings' if tiny else ' with its defaults'}, once per seed. Goal: under "
             f"{DEMO_GOAL_MIN:.0f} minutes and mAP50 > 0.5 with every seed: {'met' if met else 'MISSED'}.", "",
             "| | mean ± sd | min | max | per seed (" + seeds + ") |", "|---|---:|---:|---:|---:|"]
    for label, key, fmt in (("minutes", "minutes", ".1f"), ("mAP50", "map50", ".3f"), ("mAP50-95", "map", ".3f")):
        values = [r[key] for r in runs]
        lines.append(f"| {label} | " + " | ".join(spread(values, fmt)) + " | "
                     + ", ".join(f"{v:{fmt}}" for v in values) + " |")
    return "\n".join(lines)


def main(demo: bool = True, model: str = "fer-yolo-mamba-n.yaml", renders: int = 50, project: str | None = None,
         seeds: str | int = 0, tiny: bool = False, readme: bool = False) -> list[dict]:
    """Time the renderer, then (``demo``) the demo once per seed; print the spread, and with ``readme`` write it.

    Returns:
        (list[dict]): Per seed: ``seed``, ``minutes``, ``map50``, ``map`` (empty without ``demo``).
    """
    from ultra_fer_mamba.data.synth import render

    rng, t = np.random.default_rng(0), time.perf_counter()
    for _ in range(renders):
        render(320, [0, 1, 2], rng)
    ms = (time.perf_counter() - t) / max(renders, 1) * 1000
    print(f"synth render, 320 px, 3 faces: {ms:.1f} ms an image (goal < {RENDER_GOAL_MS:.0f}: "
          f"{'met' if ms < RENDER_GOAL_MS else 'MISSED'})")
    if not demo:
        return []
    from ultra_fer_mamba.demo import demo as run_demo

    runs, root = [], Path(project or tempfile.mkdtemp(prefix="bench-demo-"))
    for seed in (int(s) for s in str(seeds).split(",") if s != ""):
        t = time.perf_counter()
        r = run_demo(model=model, project=str(root / f"seed{seed}"), seed=seed, **(TINY if tiny else {}))
        runs.append({"seed": seed, "minutes": (time.perf_counter() - t) / 60, "map50": r["map50"], "map": r["map"]})
        print(f"demo with {model}, seed {seed}: {runs[-1]['minutes']:.1f} min, mAP50 {r['map50']:.3f}, "
              f"mAP50-95 {r['map']:.3f}")
    text = markdown(runs, model, tiny)
    print(text)
    if readme:
        write_readme_section(text, BEGIN, END)
    return runs


if __name__ == "__main__":
    from ultra_fer_mamba.cli import parse_args

    main(**parse_args(sys.argv[1:]))
