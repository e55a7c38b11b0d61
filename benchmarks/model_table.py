"""Model table for the README: params and GFLOPs of each fer-yolo-mamba scale beside yolov8 of that scale.

GFLOPs are Ultralytics' own count (thop, as `model.info()` prints), at imgsz 320 and 640, nc=7; the
"+scan" columns add the selective scan and cross-merge, which thop does not see (OSSM.scan_flops).

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


def scan_gflops(model: torch.nn.Module, imgsz: int) -> float:
    """GFLOPs of every OSSM's scan at this input size, from the feature sizes seen in one forward."""
    sizes, hooks = [], []
    for m in model.modules():
        if isinstance(m, OSSM):
            hooks.append(m.register_forward_hook(lambda mod, inp, out: sizes.append((mod, *inp[0].shape[2:]))))
    with torch.no_grad():
        model.eval()(torch.zeros(1, 3, imgsz, imgsz))
    for h in hooks:
        h.remove()
    return sum(m.scan_flops(h, w) for m, h, w in sizes) / 1e9


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


def write_readme_section(text: str, begin: str = BEGIN, end: str = END, readme: Path = README) -> None:
    """Replace what README.md holds between the begin and end markers with text."""
    doc = readme.read_text()
    if begin not in doc or end not in doc:
        raise SystemExit(f"{readme} has no {begin} ... {end} markers")
    doc = re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _: f"{begin}\n{text}\n{end}", doc, flags=re.S)
    readme.write_text(doc)
    print(f"updated {readme}")


def main(readme: bool = False, scales: str = "nsmlx"):
    text = markdown(rows(scales))
    print(text)
    if readme:
        write_readme_section(text)


if __name__ == "__main__":
    from ultra_fer_mamba.cli import parse_args

    main(**parse_args(sys.argv[1:]))
