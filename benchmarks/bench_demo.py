"""Time the demo (goal: under 10 minutes on a 2-core CPU, learning to mAP50 > 0.5) and the synthetic renderer.

Usage (key=value, like ``yolo``)::

    python benchmarks/bench_demo.py                       # both
    python benchmarks/bench_demo.py demo=False            # only the renderer (seconds)
    python benchmarks/bench_demo.py model=fer-yolo-mamba-n.yaml project=runs/bench-demo

Keys: ``demo`` (run ``fer-yolo-mamba demo`` with its defaults, default True), ``model`` (default
fer-yolo-mamba-n.yaml), ``renders`` (synthetic images timed, default 50; goal: under 50 ms an image at 320),
``project`` (where the demo writes, default a temporary folder). Wall-clock goals live here, not in the tests
(tests/test_demo.py and tests/test_synth.py check what the runs produce). Run on an otherwise idle machine.
"""

from __future__ import annotations

import sys
import tempfile
import time

import numpy as np

DEMO_GOAL_MIN, RENDER_GOAL_MS = 10.0, 50.0


def main(demo: bool = True, model: str = "fer-yolo-mamba-n.yaml", renders: int = 50, project: str | None = None):
    from ultra_fer_mamba.data.synth import render

    rng, t = np.random.default_rng(0), time.perf_counter()
    for _ in range(renders):
        render(320, [0, 1, 2], rng)
    ms = (time.perf_counter() - t) / renders * 1000
    print(f"synth render, 320 px, 3 faces: {ms:.1f} ms an image (goal < {RENDER_GOAL_MS:.0f}: "
          f"{'met' if ms < RENDER_GOAL_MS else 'MISSED'})")
    if demo:
        from ultra_fer_mamba.demo import demo as run_demo

        t = time.perf_counter()
        r = run_demo(model=model, project=project or tempfile.mkdtemp(prefix="bench-demo-"))
        minutes = (time.perf_counter() - t) / 60
        ok = minutes < DEMO_GOAL_MIN and r["map50"] > 0.5
        print(f"demo with {model}: {minutes:.1f} min, mAP50 {r['map50']:.3f}, mAP50-95 {r['map']:.3f} "
              f"(goal < {DEMO_GOAL_MIN:.0f} min and mAP50 > 0.5: {'met' if ok else 'MISSED'})")


if __name__ == "__main__":
    from ultra_fer_mamba.cli import parse_args

    main(**parse_args(sys.argv[1:]))
