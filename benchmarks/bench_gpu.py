"""GPU benchmark: fer-yolo-mamba-s against yolov8s (nc=7) for each selective-scan backend, and the P3 scan alone.

For every backend that can run (triton, cuda = mamba_ssm, torch; forced with ``ultra_fer_mamba.ops.
set_scan_backend``, as FER_MAMBA_SCAN_BACKEND would): inference latency under AMP (fp16 autocast) at batch 1
and 32, imgsz 320 and 640; the time of one training step (forward, loss, backward, SGD step with a
GradScaler) at batch 16, imgsz 320 under AMP; peak GPU memory of each. Then the scan of fer-yolo-mamba-s'
P3 layer alone (batch 16, 40 x 40, e 256, 8 directions, n 16, dt rank 8, fp16 inputs as AMP hands them
over), forward and forward+backward: the fused Triton op (also without its software pipelining, the tunable
ops/triton/config.py NUM_STAGES at 1) against the composition cross_merge(scan(cross_scan)) with mamba_ssm's
kernel and with torch ops. The "ran" column is what a profiler saw run, not what was asked:
triton (the Triton ops' profiler label), mamba_ssm (its CUDA kernel), else torch (numba/torch on the CPU).

Usage:
    python benchmarks/bench_gpu.py                 # one GPU, under 5 minutes
    python benchmarks/bench_gpu.py readme=True     # also rewrite README.md between the bench-gpu markers
    python benchmarks/bench_gpu.py tiny=True       # CPU, Triton's interpreter, tiny shapes (how it is tested)
"""

from __future__ import annotations

import math
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_AUTOINSTALL", "false")

import torch  # noqa: E402
from ultralytics.cfg import get_cfg  # noqa: E402
from ultralytics.nn.tasks import DetectionModel  # noqa: E402
from ultralytics.utils import DEFAULT_CFG, LOGGER  # noqa: E402

import ultra_fer_mamba  # noqa: E402,F401
from ultra_fer_mamba import ops  # noqa: E402
from ultra_fer_mamba.ops.cross_selective_scan import cross_selective_scan  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from model_table import write_readme_section  # noqa: E402

BEGIN, END = "<!-- bench-gpu:begin -->", "<!-- bench-gpu:end -->"
BACKENDS = ("triton", "cuda", "torch")
FULL = dict(models=("fer-yolo-mamba-s", "yolov8s"), sizes=(320, 640), batches=(1, 32), train=(16, 320), repeats=20,
            warmup=5, scan=dict(b=16, h=40, w=40, e=256, k=8, n=16))
TINY = dict(models=("fer-yolo-mamba-n", "yolov8n"), sizes=(32,), batches=(1, 2), train=(2, 32), repeats=1, warmup=0,
            scan=dict(b=1, h=3, w=4, e=8, k=8, n=4))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(fn, device: torch.device, repeats: int, warmup: int) -> dict:
    """Median seconds of fn() over repeats after warmup calls, and the peak memory (MB) of one call (CUDA)."""
    for _ in range(warmup):
        fn()
    sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    times = []
    for _ in range(max(1, repeats)):
        t = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t)
    peak = (torch.cuda.max_memory_allocated(device) - base) / 2**20 if device.type == "cuda" else float("nan")
    return {"ms": 1e3 * statistics.median(times), "peak_mb": peak}


def backend_ran(fn, device: torch.device) -> str:
    """Which scan backend one call of fn runs, from the profiler's events."""
    from ultra_fer_mamba.ops.triton.scan import PROFILE_LABEL

    acts = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with torch.profiler.profile(activities=acts) as prof:
        fn()
        sync(device)
    names = {e.name for e in prof.events()}
    if any(PROFILE_LABEL in s for s in names):
        return "triton"
    if any("selective_scan_fwd" in s for s in names):
        return "mamba_ssm"
    return "torch" if device.type == "cuda" else "numba/torch"


def latency_fn(model, imgsz: int, batch: int, device: torch.device, amp: bool):
    x = torch.rand(batch, 3, imgsz, imgsz, device=device)

    def call():
        with torch.inference_mode(), torch.autocast(device.type, enabled=amp):
            model(x)

    return call


def train_fn(name: str, imgsz: int, batch: int, device: torch.device, amp: bool):
    """One stock-loss training step of a fresh model on a random batch (two boxes an image), as a callable."""
    torch.manual_seed(0)
    model = DetectionModel(f"{name}.yaml", nc=7, verbose=False).to(device).train()
    model.args = get_cfg(DEFAULT_CFG)  # the loss' hyperparameters, as the trainer sets them
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    scaler = torch.amp.GradScaler(device.type, enabled=amp)
    boxes = 2 * batch
    data = {"img": torch.rand(batch, 3, imgsz, imgsz, device=device),
            "batch_idx": torch.arange(batch, device=device).repeat_interleave(2).float(),
            "cls": torch.randint(0, 7, (boxes, 1), device=device).float(),
            "bboxes": torch.rand(boxes, 4, device=device) * 0.4 + 0.3}  # normalised xywh

    def step():
        with torch.autocast(device.type, enabled=amp):
            loss, _ = model.loss(data)
        scaler.scale(loss.sum()).backward()
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)

    return step


def model_rows(cfg: dict, device: torch.device, amp: bool) -> list[dict]:
    """Latency and training rows: the fer model once per backend that runs, the yolov8 model once."""
    rows, default = [], ops.get_scan_backend()
    fer, base = cfg["models"]
    for name, backends in ((fer, BACKENDS), (base, ("-",))):
        model = DetectionModel(f"{name}.yaml", nc=7, verbose=False).fuse(verbose=False).eval().to(device)
        for backend in backends:
            row = {"model": name, "asked": backend}
            try:
                if backend != "-":
                    ops.set_scan_backend(backend)
                first = latency_fn(model, cfg["sizes"][0], 1, device, amp)
                row["ran"] = backend_ran(first, device) if name == fer else "-"
                for s in cfg["sizes"]:
                    for b in cfg["batches"]:
                        row[f"b{b}_{s}"] = measure(latency_fn(model, s, b, device, amp), device,
                                                   cfg["repeats"] // (1 if b == 1 else 2), cfg["warmup"])
                tb, ts = cfg["train"]
                row["train"] = measure(train_fn(name, ts, tb, device, amp), device, cfg["repeats"] // 2, cfg["warmup"])
            except (RuntimeError, ValueError) as e:  # an explicit backend that cannot run says why
                row["error"] = f"{type(e).__name__}: {e}"
            rows.append(row)
            LOGGER.info(f"bench_gpu {row}")
        del model
    ops.set_scan_backend(default)
    return rows


def scan_inputs(b, h, w, e, k, n, device, dtype):
    """The P3 layer's scan inputs as OSSM makes them (B, C, dts views of one x_proj output), requiring grads."""
    r, l = math.ceil(e / 2 / 16), h * w
    g = torch.Generator().manual_seed(0)
    rnd = lambda *s, scale=1.0, shift=0.0: (torch.randn(*s, generator=g) * scale + shift).to(device)  # noqa: E731
    u = rnd(b, l, e).to(dtype).requires_grad_()
    x_dbl = rnd(b, l, k, r + 2 * n).to(dtype).requires_grad_()
    dts, B, C = torch.split(x_dbl, [r, n, n], dim=3)
    params = [rnd(k, e, n, scale=0.3, shift=-1.0), rnd(k, e), rnd(k, e, scale=0.5, shift=-4.0),
              rnd(k, e, r, scale=r**-0.5)]  # A, D, delta_bias, dt_weight
    A, D, bias, wdt = (p.requires_grad_() for p in params)
    return (u, dts, A, B, C, D, bias, h, w), wdt


def scan_rows(cfg: dict, device: torch.device, amp: bool) -> list[dict]:
    """The P3 scan alone: forward (no grad) and forward+backward, Triton fused vs the compositions."""
    from ultra_fer_mamba.ops.triton import available, config, cross_selective_scan_triton

    args, wdt = scan_inputs(**cfg["scan"], device=device, dtype=torch.float16 if amp else torch.float32)

    def unpipelined():  # the tunable config.NUM_STAGES at 1: how much the software pipelining gives
        stages, config.NUM_STAGES = config.NUM_STAGES, 1
        try:
            return cross_selective_scan_triton(*args, dt_weight=wdt)
        finally:
            config.NUM_STAGES = stages

    paths = {"triton fused": lambda: cross_selective_scan_triton(*args, dt_weight=wdt),
             "triton fused, NUM_STAGES=1": unpipelined}
    for backend in ("cuda", "torch"):
        paths[f"composition, {backend}"] = lambda backend=backend: cross_selective_scan(*args, backend=backend,
                                                                                       dt_weight=wdt)
    grad = torch.randn(args[0].shape, device=device, dtype=args[0].dtype)
    rows = []
    for path, fn in paths.items():
        row = {"path": path}
        ok, why = available(device) if path.startswith("triton") else (True, "")
        try:
            if not ok:
                raise RuntimeError(why)

            def fwd(fn=fn):
                with torch.no_grad():
                    fn()

            def fwd_bwd(fn=fn):
                fn().backward(grad)

            row["ran"] = backend_ran(fwd, device)
            row["fwd"] = measure(fwd, device, cfg["repeats"], cfg["warmup"])
            row["fwd_bwd"] = measure(fwd_bwd, device, cfg["repeats"], cfg["warmup"])
        except (RuntimeError, ValueError) as e:
            row["error"] = f"{type(e).__name__}: {e}"
        rows.append(row)
        LOGGER.info(f"bench_gpu {row}")
    return rows


def fmt(cell: dict | None, key: str = "ms") -> str:
    return "-" if cell is None or math.isnan(cell[key]) else f"{cell[key]:.1f}"


def markdown(cfg: dict, mrows: list[dict], srows: list[dict], device: torch.device) -> str:
    """The model table with ratios to the yolov8 model, the targets, the scan table and what did not run."""
    sizes, batches = cfg["sizes"], cfg["batches"]
    keys = [f"b{b}_{s}" for s in sizes for b in batches]
    tb, ts = cfg["train"]
    head = ["model", "asked", "ran"] + [f"b{b} {s} (ms)" for s in sizes for b in batches] + [
        f"train b{tb} {ts} (ms)", "train peak (MB)", f"b{batches[-1]} {sizes[-1]} peak (MB)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    ok = [r for r in mrows if "error" not in r]
    for r in ok:
        lines.append("| " + " | ".join([r["model"], r["asked"], r["ran"]] + [fmt(r[k]) for k in keys] + [
            fmt(r["train"]), fmt(r["train"], "peak_mb"), fmt(r[keys[-1]], "peak_mb")]) + " |")
    base = next((r for r in ok if r["asked"] == "-"), None)
    if base:
        lines += ["", "| fer / yolov8 (target) | " + " | ".join(r["asked"] for r in ok if r["asked"] != "-") + " |",
                  "|---|" + "---|" * sum(r["asked"] != "-" for r in ok)]
        for key, label in [(f"b{batches[-1]}_{s}", f"latency b{batches[-1]} {s} (<= 1.3x)") for s in sizes] + [
                ("train", f"training step b{tb} {ts} (<= 1.5x)")]:
            lines.append(f"| {label} | " + " | ".join(f"{r[key]['ms'] / base[key]['ms']:.2f}x" for r in ok
                                                       if r["asked"] != "-") + " |")
    s = cfg["scan"]
    lines += ["", f"P3 scan alone: batch {s['b']}, {s['h']}x{s['w']}, e {s['e']}, k {s['k']}, n {s['n']}.", "",
              "| path | ran | fwd (ms) | fwd+bwd (ms) | fwd+bwd peak (MB) | fwd+bwd / triton |", "|---|---|---|---|---|---|"]
    tri = next((r for r in srows if r["path"] == "triton fused" and "error" not in r), None)
    for r in srows:
        if "error" not in r:
            ratio = f"{r['fwd_bwd']['ms'] / tri['fwd_bwd']['ms']:.2f}x" if tri else "-"
            lines.append(f"| {r['path']} | {r['ran']} | {fmt(r['fwd'])} | {fmt(r['fwd_bwd'])} | "
                         f"{fmt(r['fwd_bwd'], 'peak_mb')} | {ratio} |")
    missing = [f"- {r['model']}, backend {r['asked']}: {r['error']}" for r in mrows if "error" in r] + [
        f"- {r['path']}: {r['error']}" for r in srows if "error" in r]
    return "\n".join(lines + (["", "Not run:"] + missing if missing else []))


def main(tiny: bool = False, readme: bool = False):
    """Run the benchmark, print the tables; with readme=True write them into README.md. Returns (model rows,
    scan rows, text)."""
    if tiny and not torch.cuda.is_available():
        os.environ.setdefault("TRITON_INTERPRET", "1")  # read when the kernels are first imported, below
    elif not torch.cuda.is_available():
        raise SystemExit("bench_gpu needs a CUDA device (tiny=True runs on the CPU in Triton's interpreter)")
    cfg = TINY if tiny else FULL
    device = torch.device("cpu" if tiny else "cuda")
    amp = device.type == "cuda"
    t0 = time.perf_counter()
    mrows, srows = model_rows(cfg, device, amp), scan_rows(cfg, device, amp)
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU (Triton interpreter)"
    text = (f"Measured by `python benchmarks/bench_gpu.py{' tiny=True' if tiny else ''}` on {gpu}, torch "
            f"{torch.__version__}, {time.strftime('%Y-%m-%d')} ({time.perf_counter() - t0:.0f} s): medians in ms"
            f"{', AMP (fp16 autocast)' if amp else ''}; peak = GPU memory above what was allocated before.\n\n"
            + markdown(cfg, mrows, srows, device))
    print(text)
    if readme:
        write_readme_section(text, BEGIN, END)
    return mrows, srows, text


if __name__ == "__main__":
    from ultra_fer_mamba.cli import parse_args

    main(**parse_args(sys.argv[1:]))
