"""Model table for the README: params and GFLOPs of each fer-yolo-mamba scale beside yolov8 of that scale.

GFLOPs are Ultralytics' own count (thop, as `model.info()` prints), at imgsz 320 and 640, nc=7; the
"+scan" columns add the selective scan and cross-merge, which thop does not see (OSSM.scan_flops).
Below the table, a note on fer-yolo-mamba-s (the paper's scale) against yolov8s at 320: what thop counts of
the neck's projections on each scan path, and how many parameters its OSSM layers hold directly.

Usage:
    python benchmarks/model_table.py                 # print the markdown table
    python benchmarks/model_table.py readme=True     # also rewrite the table in README.md
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

os.environ.setdefault("YOLO_OFFLINE", "1")

import torch  # noqa: E402
from ultralytics.nn.tasks import DetectionModel  # noqa: E402
from ultralytics.utils.torch_utils import get_flops  # noqa: E402

import ultra_fer_mamba  # noqa: E402,F401
from ultra_fer_mamba.nn import OSSM  # noqa: E402

README = Path(__file__).resolve().parents[1] / "README.md"
BEGIN, END = "<!-- model-table:begin -->", "<!-- model-table:end -->"


def ossm_sizes(model: torch.nn.Module, imgsz: int) -> list[tuple[OSSM, int, int]]:
    """Every OSSM of the model with the feature size (h, w) it receives in one forward at this input size."""
    sizes, hooks = [], []
    for m in model.modules():
        if isinstance(m, OSSM):
            hooks.append(m.register_forward_hook(lambda mod, inp, out: sizes.append((mod, *inp[0].shape[2:]))))
    with torch.no_grad():
        model.eval()(torch.zeros(1, 3, imgsz, imgsz))
    for h in hooks:
        h.remove()
    return sizes


def scan_gflops(model: torch.nn.Module, imgsz: int) -> float:
    """GFLOPs of every OSSM's scan at this input size, from the feature sizes seen in one forward."""
    return sum(m.scan_flops(h, w) for m, h, w in ossm_sizes(model, imgsz)) / 1e9


def neck_counts(name: str = "fer-yolo-mamba-s.yaml", imgsz: int = 320, nc: int = 7) -> dict:
    """What thop counts of the OSSM projections on the CPU (numba) and torch scan paths, and OSSM's own parameters.

    Returns:
        (dict): ``gflops`` / ``scan`` (thop's count and the scan added, with the default backend), ``gflops_torch`` /
            ``scan_torch`` (with the torch backend, where dt_proj runs as torch ops), ``x_proj`` and ``dt_proj``
            (2 k l (r + 2n) e and 2 k l r e FLOPs summed over the OSSM layers, in GFLOPs), ``n_ossm`` (OSSM layers),
            ``ossm_params`` (parameters they hold directly: x_proj, dt_proj, A_log, D).
    """
    from ultra_fer_mamba import ops

    model = DetectionModel(name, nc=nc, verbose=False)
    out = {"gflops": get_flops(model, imgsz), "scan": scan_gflops(model, imgsz)}
    previous = ops.get_scan_backend()
    ops.set_scan_backend("torch")
    try:
        out.update(gflops_torch=get_flops(model, imgsz), scan_torch=scan_gflops(model, imgsz))
    finally:
        ops.set_scan_backend(previous)
    sizes = ossm_sizes(model, imgsz)
    out["x_proj"] = sum(2 * h * w * m.k * (m.r + 2 * m.n) * m.e for m, h, w in sizes) / 1e9
    out["dt_proj"] = sum(2 * h * w * m.k * m.r * m.e for m, h, w in sizes) / 1e9
    out["n_ossm"] = len(sizes)
    out["ossm_params"] = sum(p.numel() for m, _, _ in sizes for p in m.parameters(recurse=False))
    return out


def rows(scales: str = "nsmlx", nc: int = 7) -> list[dict]:
    """Measure params and GFLOPs for each scale of both families."""
    out = []
    for s in scales:
        for name in (f"fer-yolo-mamba-{s}.yaml", f"yolov8{s}.yaml"):
            model = DetectionModel(name, nc=nc, verbose=False)
            row = {"model": name[:-5], "params": sum(p.numel() for p in model.parameters())}
            for imgsz in (320, 640):
                row[f"gflops{imgsz}"] = get_flops(model, imgsz)
                row[f"scan{imgsz}"] = scan_gflops(model, imgsz)
            out.append(row)
    return out


def markdown(table: list[dict]) -> str:
    """The rows as a markdown table, with ratios to the yolov8 model of the same scale."""
    lines = ["| model | params (M) | GFLOPs 320 | GFLOPs 640 | GFLOPs 320 +scan | GFLOPs 640 +scan | params / yolov8 | GFLOPs 320 / yolov8 |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for ours, base in zip(table[::2], table[1::2]):
        for r in (ours, base):
            ratio = (f"{r['params'] / base['params']:.2f}x", f"{r['gflops320'] / base['gflops320']:.2f}x")
            lines.append(f"| {r['model']} | {r['params'] / 1e6:.2f} | {r['gflops320']:.2f} | {r['gflops640']:.2f} | "
                         f"{r['gflops320'] + r['scan320']:.2f} | {r['gflops640'] + r['scan640']:.2f} | "
                         f"{ratio[0]} | {ratio[1]} |")
    return "\n".join(lines)


def note(ours: dict, base: dict, counts: dict) -> str:
    """The paragraph under the table: fer-yolo-mamba-s against yolov8s at 320, and what thop sees of the neck."""
    same = f"{counts['gflops'] + counts['scan']:.2f}" == f"{counts['gflops_torch'] + counts['scan_torch']:.2f}"
    return (
        f"At imgsz 320, {ours['model']} has {ours['params'] / 1e6:.2f}M parameters and {ours['gflops320']:.2f} GFLOPs "
        f"by Ultralytics' count, {base['model']} {base['params'] / 1e6:.2f}M and {base['gflops320']:.2f} "
        f"({ours['params'] / base['params']:.2f}x and {ours['gflops320'] / base['gflops320']:.2f}x): thop counts "
        f"the directions' x_proj projections ({counts['x_proj']:.2f} GFLOPs across the neck), not the scan. "
        f"Where dt_proj runs as torch ops (CUDA, training) thop counts it too ({counts['dt_proj']:.2f} GFLOPs: "
        f"{counts['gflops_torch']:.2f} with the torch backend); on the CPU the fused kernel applies it and the "
        f"\"+scan\" columns add it, so \"+scan\" is "
        + (f"the same on both paths ({counts['gflops'] + counts['scan']:.2f})." if same else
           f"{counts['gflops'] + counts['scan']:.2f} here and {counts['gflops_torch'] + counts['scan_torch']:.2f} on "
           "the torch path.")
        + f" Its {counts['n_ossm']} OSSM layers hold {counts['ossm_params']:,} parameters directly (x_proj, dt_proj, "
        "A_log and D, outside any Linear or Conv layer)."
    )


def write_readme_section(text: str, begin: str = BEGIN, end: str = END, readme: Path = README) -> None:
    """Replace what README.md holds between the begin and end markers with text."""
    doc = readme.read_text()
    if begin not in doc or end not in doc:
        raise SystemExit(f"{readme} has no {begin} ... {end} markers")
    doc = re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _: f"{begin}\n{text}\n{end}", doc, flags=re.S)
    readme.write_text(doc)
    print(f"updated {readme}")


def main(readme: bool = False, scales: str = "nsmlx"):
    table = rows(scales)
    text = markdown(table)
    if "s" in scales:  # the paper's scale
        i = 2 * scales.index("s")
        text += "\n\n" + note(table[i], table[i + 1], neck_counts())
    print(text)
    if readme:
        write_readme_section(text)


if __name__ == "__main__":
    from ultra_fer_mamba.cli import parse_args

    main(**parse_args(sys.argv[1:]))
