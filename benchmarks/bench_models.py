"""Whole-model benchmark: fer-yolo-mamba-{n,s} against yolov8{n,s} (nc=7), measured in one run.

For each model and imgsz: params, GFLOPs (Ultralytics' count and with the selective scan counted), PyTorch
CPU latency at batch 1 and 16, onnxruntime and OpenVINO CPU latency at batch 1 (each with its default settings, as
YOLO("model.onnx") / YOLO("model_openvino_model") run them), and training throughput of the stock
trainer on a synthetic set (images/s: the batch over the median iteration time, from `train_rounds` short
epochs per model, the models alternating). Prints markdown tables with ratios to the
yolov8 model of the same scale, and the cost growth from 320 to 640, and saves a PNG of latency against
pixel count. Latencies are medians over `repeats` after `warmup` runs, the models timed round-robin (one
call of each per round) so that the shared machine's slow and fast spells fall on all of them alike;
onnxruntime sessions and OpenVINO models too, with a pause before each call: an idle runtime's thread pool spins for
a while after its call, and the pause lets it sleep before the next model runs (without it, yolov8s' onnxruntime
call at 320 took twice as long beside three idle sessions).

Usage:
    python benchmarks/bench_models.py                                   # everything (long: ~30+ min)
    python benchmarks/bench_models.py imgsz=320,640 onnx=False openvino=False train=False
    python benchmarks/bench_models.py models=fer-yolo-mamba-s,yolov8s imgsz=320 out=runs/bench
    python benchmarks/bench_models.py readme=True                       # also rewrite the README's table

Training throughput is the stock trainer's, which on the CPU runs torch with (cores - 1) threads; latencies
use torch's default thread count (all cores) for both families, and onnxruntime the same number.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_AUTOINSTALL", "false")

import torch  # noqa: E402
from ultralytics.nn.tasks import DetectionModel  # noqa: E402
from ultralytics.utils import LOGGER  # noqa: E402
from ultralytics.utils.torch_utils import get_flops  # noqa: E402

import ultra_fer_mamba  # noqa: E402,F401

sys.path.insert(0, str(Path(__file__).parent))
from model_table import scan_gflops, write_readme_section  # noqa: E402


RUNTIME_PAUSE = 0.1  # seconds before each onnxruntime / OpenVINO call: longer than their pools spin when idle


def interleaved_medians(fns: dict, repeats: int, warmup: int, pause: float = 0.0) -> dict:
    """Median seconds of each fn() over repeats, after warmup calls, timed round-robin (one call of each fn per
    round) so that a slower or faster spell of a shared machine falls on every model alike; ``pause`` seconds of
    sleep (not timed) before each call let the previous call's spinning threads go idle."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            time.sleep(pause)
            t = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def torch_call(model, imgsz: int, batch: int):
    """A no-grad forward of model on a random batch, as a callable."""
    x = torch.rand(batch, 3, imgsz, imgsz)

    def call():
        with torch.inference_mode():
            model(x)

    return call


def export(model, imgsz: int, workdir: Path, threads: int, fmt: str, **options) -> str:
    """Export through Ultralytics' exporter (the `yolo export` path, batch 1); return the file or folder."""
    import copy

    from ultralytics.engine.exporter import Exporter

    args = {"format": fmt, "imgsz": imgsz, "batch": 1, "device": "cpu", "verbose": False, "mode": "export",
            "project": str(workdir), "name": "export", **options}
    model = copy.deepcopy(model)
    model.task = "detect"  # what YOLO() sets on the models it wraps
    model.pt_path = str(workdir / f"{model.yaml_file_stem}_{imgsz}.pt")
    f = Exporter(overrides=args)(model=model)
    torch.set_num_threads(threads)  # the exporter's select_device sets cores - 1
    return f


def onnx_call(model, imgsz: int, workdir: Path, threads: int):
    """An onnxruntime batch-1 call of the exported model, with as many threads as torch (YOLO() leaves ORT's default,
    which is the same on a machine with one thread per core)."""
    import numpy as np
    import onnxruntime as ort

    f = export(model, imgsz, workdir, threads, "onnx", opset=17, simplify=True)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(f, opts, providers=["CPUExecutionProvider"])
    x = {sess.get_inputs()[0].name: np.random.rand(1, 3, imgsz, imgsz).astype(np.float32)}
    return lambda: sess.run(None, x)


def openvino_call(model, imgsz: int, workdir: Path, threads: int):
    """An OpenVINO batch-1 call of the exported model, compiled as YOLO("..._openvino_model") compiles it for the CPU
    (PERFORMANCE_HINT LATENCY, the default precision: bf16 on CPUs with native bf16, else float32)."""
    import numpy as np
    import openvino as ov

    folder = Path(export(model, imgsz, workdir, threads, "openvino"))
    compiled = ov.Core().compile_model(next(folder.glob("*.xml")), "CPU", {"PERFORMANCE_HINT": "LATENCY"})
    x = np.random.rand(1, 3, imgsz, imgsz).astype(np.float32)
    return lambda: compiled(x)


def openvino_precision() -> str:
    """A sentence naming the precision OpenVINO's CPU plugin computes in by default on this machine."""
    import openvino as ov

    precision = ov.Core().get_property("CPU", "INFERENCE_PRECISION_HINT")
    return f" OpenVINO computes in {precision.get_type_name()}, its default on this CPU."


TRAIN_BATCH = 8


def train_iterations(name: str, imgsz: int, data: str, workdir: Path) -> list[float]:
    """Seconds of each iteration (data, forward, backward, optimizer step) of one epoch of the stock trainer
    (no validation), the first excluded: the gaps between consecutive batch ends."""
    from ultralytics import YOLO

    marks = []
    model = YOLO(f"{name}.yaml")
    model.add_callback("on_train_batch_end", lambda t: marks.append(time.perf_counter()))
    model.train(data=data, epochs=1, imgsz=imgsz, batch=TRAIN_BATCH, device="cpu", workers=0, val=False,
                plots=False, amp=False, project=str(workdir), name=f"{name}_{imgsz}", exist_ok=True, verbose=False,
                warmup_epochs=0, mosaic=0.0)
    return [b - a for a, b in zip(marks, marks[1:])]


def make_data(workdir: Path, n_images: int) -> str:
    """A synthetic training set (ultra_fer_mamba's generator) for the throughput runs."""
    from ultra_fer_mamba.data.synth import synth

    out = workdir / "synth"
    synth(out=str(out), n_train=n_images, n_val=4, imgsz=320, seed=0)
    return str(out / "data.yaml")


def measure(models, sizes, repeats, warmup, batch16, onnx, openvino, train, n_train, train_rounds, workdir):
    threads = torch.get_num_threads()  # every latency runs with this many threads (torch's default: all cores)
    data = make_data(workdir, n_train) if train else None
    built = {}
    for name in models:
        built[name] = DetectionModel(f"{name}.yaml", nc=7, verbose=False).fuse(verbose=False).eval()
        built[name].yaml_file_stem = name
    rows = []
    for s in sizes:
        LOGGER.info(f"bench imgsz={s}: {', '.join(models)}")
        rs = {}
        for name, m in built.items():
            gflops = get_flops(m, s)
            rs[name] = {"model": name, "imgsz": s, "params": sum(p.numel() for p in m.parameters()), "gflops": gflops,
                        "gflops_scan": gflops + scan_gflops(m, s)}
        for name, t in interleaved_medians({n: torch_call(m, s, 1) for n, m in built.items()}, repeats, warmup).items():
            rs[name]["torch_b1"] = t
        if batch16:
            calls = {n: torch_call(m, s, 16) for n, m in built.items()}
            for name, t in interleaved_medians(calls, max(1, repeats // 3), 1).items():
                rs[name]["torch_b16"] = t
        for key, on, make in (("ort_b1", onnx, onnx_call), ("ov_b1", openvino, openvino_call)):
            if on:  # round-robin like torch, pausing before each call so an idle runtime's spinning pool sleeps
                calls = {name: make(m, s, workdir, threads) for name, m in built.items()}
                for name, t in interleaved_medians(calls, repeats, warmup, pause=RUNTIME_PAUSE).items():
                    rs[name][key] = t
                del calls  # sessions and compiled models freed before the next runtime
        if train:  # rounds of one epoch per model, alternating, so slow spells fall on every model
            its = {name: [] for name in models}
            for _ in range(train_rounds):
                for name in models:
                    its[name] += train_iterations(name, s, data, workdir)
                    torch.set_num_threads(threads)
            for name in models:
                rs[name]["train_ips"] = TRAIN_BATCH / statistics.median(its[name])
        for name in models:
            rows.append(rs[name])
            LOGGER.info(json.dumps(rs[name]))
    return sorted(rows, key=lambda r: (models.index(r["model"]), r["imgsz"]))


def baseline_of(name: str) -> str:
    return "yolov8" + name[-1] if name.startswith("fer-yolo-mamba") else name


def tables(rows: list[dict]) -> str:
    """Markdown: absolute numbers with ratios to the same-scale yolov8, and the 320 -> 640 growth."""
    by = {(r["model"], r["imgsz"]): r for r in rows}
    keys = [k for k in ("torch_b1", "torch_b16", "ort_b1", "ov_b1", "train_ips") if k in rows[0]]
    head = "| model | imgsz | params (M) | GFLOPs | GFLOPs +scan | " + " | ".join(
        {"torch_b1": "torch b1 (ms)", "torch_b16": "torch b16 (ms)", "ort_b1": "ORT b1 (ms)",
         "ov_b1": "OpenVINO b1 (ms)", "train_ips": "train (img/s)"}[k] + " | ratio" for k in keys) + " |"
    lines = [head, "|" + "---|" * (5 + 2 * len(keys))]
    for r in rows:
        base = by.get((baseline_of(r["model"]), r["imgsz"]), r)
        cells = [r["model"], str(r["imgsz"]), f"{r['params'] / 1e6:.2f}", f"{r['gflops']:.2f}", f"{r['gflops_scan']:.2f}"]
        for k in keys:
            v = r[k] * (1 if k == "train_ips" else 1000)
            cells += [f"{v:.1f}", f"{r[k] / base[k]:.2f}x"]
        lines.append("| " + " | ".join(cells) + " |")
    growth = ["", "| model | latency growth 320 -> 640 (torch b1) | / yolov8 growth |", "|---|---:|---:|"]
    for name in dict.fromkeys(r["model"] for r in rows):
        if (name, 320) in by and (name, 640) in by:
            g = by[(name, 640)]["torch_b1"] / by[(name, 320)]["torch_b1"]
            b = baseline_of(name)
            gb = by[(b, 640)]["torch_b1"] / by[(b, 320)]["torch_b1"] if (b, 640) in by and (b, 320) in by else g
            growth.append(f"| {name} | {g:.2f}x | {g / gb:.2f} |")
    return "\n".join(lines + (growth if len(growth) > 3 else []))


def targets(rows: list[dict]) -> str:
    """The ratio targets for fer-yolo-mamba-s vs yolov8s (issue 15), as measured in these rows."""
    by = {(r["model"], r["imgsz"]): r for r in rows}
    ours, base = by.get(("fer-yolo-mamba-s", 320)), by.get(("yolov8s", 320))
    if not ours or not base:
        return ""
    lines = ["", "", "| target (fer-yolo-mamba-s / yolov8s) | measured | goal |", "|---|---:|---|"]
    lines.append(f"| PyTorch CPU latency, batch 1, imgsz 320 | {ours['torch_b1'] / base['torch_b1']:.2f}x | <= 1.3x |")
    if "ort_b1" in ours:
        lines.append(f"| onnxruntime CPU latency, batch 1, imgsz 320 | {ours['ort_b1'] / base['ort_b1']:.2f}x | <= 2.5x |")
    if "ov_b1" in ours:
        lines.append(f"| OpenVINO CPU latency, batch 1, imgsz 320 | {ours['ov_b1'] / base['ov_b1']:.2f}x | reported |")
    if "train_ips" in ours:
        lines.append(f"| training throughput, imgsz 320 | {ours['train_ips'] / base['train_ips']:.2f}x | >= 0.6x |")
    o640, b640 = by.get(("fer-yolo-mamba-s", 640)), by.get(("yolov8s", 640))
    if o640 and b640:
        g = (o640["torch_b1"] / ours["torch_b1"]) / (b640["torch_b1"] / base["torch_b1"])
        lines.append(f"| latency growth 320 -> 640, relative to yolov8s' | {g:.2f} | <= 1.2 |")
    return "\n".join(lines)


def plot(rows: list[dict], file: Path):
    """Latency against pixel count for every model (torch b1 solid, ORT b1 dashed, OpenVINO b1 dotted)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5))
    for name in dict.fromkeys(r["model"] for r in rows):
        rs = sorted((r for r in rows if r["model"] == name), key=lambda r: r["imgsz"])
        px = [r["imgsz"] ** 2 / 1e3 for r in rs]
        line, = ax.plot(px, [r["torch_b1"] * 1e3 for r in rs], "o-", label=f"{name} torch")
        for key, style, runtime in (("ort_b1", "s--", "ORT"), ("ov_b1", "^:", "OpenVINO")):
            if key in rs[0]:
                ax.plot(px, [r[key] * 1e3 for r in rs], style, color=line.get_color(), label=f"{name} {runtime}")
    ax.set_xlabel("pixels per image (thousands)")
    ax.set_ylabel("CPU latency, batch 1 (ms)")
    ax.set_title(f"Cost growth with input size ({torch.get_num_threads()} CPU threads)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(file, dpi=120)
    plt.close(fig)


def main(models="fer-yolo-mamba-n,yolov8n,fer-yolo-mamba-s,yolov8s", imgsz="160,320,480,640", repeats=20,
         warmup=3, batch16=True, onnx=True, openvino=True, train=True, n_train=40, train_rounds=2, out="runs/bench",
         readme=False):
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    models = [m for m in str(models).split(",") if m]
    sizes = [int(s) for s in str(imgsz).split(",") if s]
    with tempfile.TemporaryDirectory() as tmp:
        rows = measure(models, sizes, repeats, warmup, batch16, onnx, openvino, train, n_train, train_rounds, Path(tmp))
    from ultralytics.utils.torch_utils import get_cpu_info

    text = (f"Measured by `python benchmarks/bench_models.py` on {get_cpu_info()} ({os.cpu_count()} cores, "
            f"{torch.get_num_threads()} torch threads), torch {torch.__version__}, {time.strftime('%Y-%m-%d')}; "
            f"latency in ms (median of {repeats}), training in images/s (batch {TRAIN_BATCH} / median iteration time, "
            f"{train_rounds} alternating epochs of {n_train} images per model), ratios to the yolov8 model of the "
            f"same scale.{openvino_precision() if openvino else ''}\n\n" + tables(rows) + targets(rows))
    print(text)
    (out / "bench_models.md").write_text(text + "\n")
    (out / "bench_models.json").write_text(json.dumps(rows, indent=2))
    plot(rows, out / "latency_vs_pixels.png")
    if readme:
        write_readme_section(text, "<!-- bench-models:begin -->", "<!-- bench-models:end -->")
        shutil.copy(out / "latency_vs_pixels.png", Path(__file__).resolve().parents[1] / "docs" / "latency_vs_pixels.png")
    print(f"\nsaved {out / 'bench_models.md'}, {out / 'bench_models.json'}, {out / 'latency_vs_pixels.png'}")
    return rows


if __name__ == "__main__":
    from ultra_fer_mamba.cli import parse_args

    main(**parse_args(sys.argv[1:]))
