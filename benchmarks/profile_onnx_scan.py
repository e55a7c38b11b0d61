"""Per-step cost of the ONNX scan Loop at several sequence lengths, from onnxruntime's profiler.

Exports one OSSM layer (dynamic height and width) and runs it in onnxruntime with profiling on, at grids of
growing size. For every node inside the Loop body it reports the mean kernel time per iteration at each length
l = h*w, and the ratio between the longest and the shortest: a node that copied or sliced a full-length tensor at
every step (O(l) per step, O(l^2) in all) would grow with l; a tight body stays flat. One intra-op thread and the
fastest of a few runs, so that thread hand-offs and other processes blur it less; profiling adds its own overhead
per node, so read the ratios more than the microseconds.

Usage:
    python benchmarks/profile_onnx_scan.py                      # OSSM(128) at 10x10, 20x20, 40x40
    python benchmarks/profile_onnx_scan.py c=64 grids=8,16,32,64
"""

from __future__ import annotations

import json
import sys
import tempfile
import warnings
from collections import defaultdict
from pathlib import Path

import torch


def export_ossm(c: int, file: Path, grid: int = 8) -> Path:
    """One OSSM(c) layer as ONNX with dynamic batch, height and width (the exporter path OSSM uses)."""
    from ultra_fer_mamba.nn import OSSM

    torch.manual_seed(0)
    dims = {0: "b", 2: "h", 3: "w"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(OSSM(c).eval(), (torch.randn(1, c, grid, grid),), str(file), dynamo=False, opset_version=17,
                          input_names=["x"], output_names=["y"], dynamic_axes={"x": dims, "y": dims})
    return file


def loop_node_times(file: Path, c: int, grid: int, runs: int = 5) -> dict[str, float]:
    """Microseconds per iteration of each Loop-body node (by op type and name) at a grid x grid input: the mean over
    the iterations of a run, the fastest of runs."""
    import numpy as np
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.enable_profiling = True
    opts.profile_file_prefix = str(file.with_suffix(""))
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(file), opts, providers=["CPUExecutionProvider"])
    x = {"x": np.random.rand(1, c, grid, grid).astype(np.float32)}
    for _ in range(runs + 1):
        sess.run(None, x)
    events = json.loads(Path(sess.end_profiling()).read_text())
    last = [e for e in events if e.get("name") == "model_run"][1:]  # the first run warms up
    steps = grid * grid
    per_run = defaultdict(list)
    for run in last:
        total = defaultdict(float)
        for e in events:
            if (e.get("cat") == "Node" and e["name"].endswith("_kernel_time")
                    and run["ts"] <= e["ts"] <= run["ts"] + run["dur"]):
                total[(e["args"].get("op_name"), e["name"].removesuffix("_kernel_time"))] += e["dur"]
                total[("count", e["name"])] += 1
        for (op, name), us in total.items():
            if op != "count" and total[("count", name + "_kernel_time")] == steps:  # runs once per step: in the body
                per_run[f"{op} {name}"].append(us / steps)
    return {k: min(v) for k, v in per_run.items()}


def table(times: dict[int, dict[str, float]]) -> str:
    """Markdown: per-iteration microseconds of each Loop-body node at every length, and last / first."""
    lengths = sorted(times)
    nodes = sorted(set.intersection(*(set(t) for t in times.values())))
    lines = ["| Loop-body node | " + " | ".join(f"us/step at l={n}" for n in lengths) + " | growth |",
             "|---|" + "---:|" * (len(lengths) + 1)]
    for node in nodes:
        cells = [f"{times[n][node]:.2f}" for n in lengths]
        lines.append(f"| {node} | " + " | ".join(cells) + f" | {times[lengths[-1]][node] / times[lengths[0]][node]:.2f}x |")
    return "\n".join(lines)


def main(c: int = 128, grids: str = "10,20,40"):
    sizes = [int(g) for g in str(grids).split(",") if g]
    with tempfile.TemporaryDirectory() as tmp:
        file = export_ossm(int(c), Path(tmp) / "ossm.onnx")
        times = {g * g: loop_node_times(file, int(c), g) for g in sizes}
    text = f"onnxruntime profile of one OSSM({c}) layer's scan Loop (1 thread, fastest of 5 runs):\n\n" + table(times)
    print(text)
    return times


if __name__ == "__main__":
    from ultra_fer_mamba.cli import parse_args

    main(**parse_args(sys.argv[1:]))
