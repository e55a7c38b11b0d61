"""The costs and errors docs/robustness.md quotes, measured: checkpoint checks, finite checks, scan and bf16 errors.

- load: ``tasks.torch_safe_load`` of a fer-yolo-mamba-n checkpoint with the plugin's checks and without them (the
  original function, kept as ``__wrapped__``), interleaved, medians;
- finite: forward + backward of fer-yolo-mamba-n in training mode (batch 4, imgsz 320), and what the checks of
  ``FER_MAMBA_CHECK_FINITE=1`` cost on that pass (``torch.isfinite(x).all()`` on each block's input, as the blocks
  do it), medians;
- numerics: the fast scan and the float32 reference against float64 at L = 25,600 (P3 at imgsz 1280) for the slow
  decay (the state sums over the whole sequence), and FERYOLOVSS2 under bf16 autocast against float32: its output
  and its residual branch alone (relative, in norm), the quantities tests/test_numerics.py bounds;
- threads: how many of yolov8n's parameter gradients differ in their bits between 1 and 2 torch threads.

Usage (key=value, like ``yolo``)::

    python benchmarks/bench_robustness.py                # print the four paragraphs (a minute on 2 cores)
    python benchmarks/bench_robustness.py docs=True      # also write them into docs/robustness.md's marker blocks
    python benchmarks/bench_robustness.py tiny=True      # small sizes (how it is tested)
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_AUTOINSTALL", "false")

import torch  # noqa: E402
from ultralytics.nn.tasks import DetectionModel  # noqa: E402

import ultra_fer_mamba  # noqa: E402,F401
from ultra_fer_mamba.nn import FERYOLOVSS1, FERYOLOVSS2  # noqa: E402
from ultra_fer_mamba.ops import selective_scan  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from model_table import write_readme_section  # noqa: E402

DOC = Path(__file__).resolve().parents[1] / "docs" / "robustness.md"
FULL = dict(repeats=5, batch=4, imgsz=320, length=160 * 160, threads_imgsz=160)
TINY = dict(repeats=1, batch=1, imgsz=64, length=400, threads_imgsz=64)


def median_ms(fn, repeats: int) -> float:
    """Median wall time of fn() in ms over repeats calls, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


def total(out) -> torch.Tensor:
    """The sum of every tensor in a model's training output (a tensor, or lists and dicts of them)."""
    if torch.is_tensor(out):
        return out.float().sum()
    return sum(total(v) for v in (out.values() if isinstance(out, dict) else out))


def load_costs(repeats: int) -> dict:
    """ms per ``torch_safe_load`` of a fer-yolo-mamba-n checkpoint, with the plugin's checks and without."""
    from ultralytics import YOLO
    from ultralytics.nn import tasks

    with tempfile.TemporaryDirectory() as tmp:
        file = Path(tmp) / "fer-yolo-mamba-n.pt"
        YOLO("fer-yolo-mamba-n.yaml").save(file)
        wrapped, original = tasks.torch_safe_load, tasks.torch_safe_load.__wrapped__
        times = {"checked": [], "original": []}
        for _ in range(repeats * 2):  # interleaved, so drifting machine speed hits both alike
            for key, fn in (("checked", wrapped), ("original", original)):
                t = time.perf_counter()
                fn(str(file))
                times[key].append(time.perf_counter() - t)
    return {k: statistics.median(v) * 1e3 for k, v in times.items()}


def finite_costs(batch: int, imgsz: int, repeats: int) -> dict:
    """ms of a training forward + backward of fer-yolo-mamba-n, and of the finite checks on its blocks' inputs."""
    torch.manual_seed(0)
    model = DetectionModel("fer-yolo-mamba-n.yaml", nc=7, verbose=False).train()
    x = torch.rand(batch, 3, imgsz, imgsz)
    inputs = []
    for m in model.modules():
        if isinstance(m, (FERYOLOVSS1, FERYOLOVSS2)):
            m.register_forward_pre_hook(lambda mod, args: inputs.append(args[0].detach()))

    def step():
        inputs.clear()
        model.zero_grad()
        total(model(x)).backward()

    step_ms = median_ms(step, repeats)
    check_ms = median_ms(lambda: [bool(torch.isfinite(t).all()) for t in inputs], 10 * repeats)
    return {"step": step_ms, "checks": check_ms, "blocks": len(inputs)}


def scan_errors(length: int) -> dict:
    """Largest error, relative to the largest output, of the fast scan and of the float32 reference against float64,
    slow decay (|A| in [1e-5, 1e-2], step ~ 2.5e-3), d = 16 channels, n = 16."""
    g = torch.Generator().manual_seed(0)
    d, n = 16, 16
    u, delta, z = (torch.randn(1, d, length, generator=g, dtype=torch.float64) for _ in range(3))
    B, C = (torch.randn(1, 1, n, length, generator=g, dtype=torch.float64) for _ in range(2))
    A = -torch.logspace(-5, -2, n, dtype=torch.float64).expand(d, n).contiguous()
    D, bias = torch.ones(d, dtype=torch.float64), torch.full((d,), -6.0, dtype=torch.float64)

    def run(dtype, backend):
        args = [t.to(dtype) for t in (u, 0.5 * delta, A, B, C, D)]
        return selective_scan(*args, z=z.to(dtype), delta_bias=bias.to(dtype), delta_softplus=True,
                              backend=backend).double()

    exact = run(torch.float64, "ref")
    scale = exact.abs().max()
    return {k: ((run(torch.float32, backend) - exact).abs().max() / scale).item()
            for k, backend in (("fast", "auto"), ("ref", "ref"))}


def bf16_errors() -> dict:
    """Relative (norm) difference of FERYOLOVSS2(64, 64) under bf16 autocast from float32, eval mode, on a 2 x 64 x 20
    x 20 input: the block output and its residual branch alone (output minus input)."""
    torch.manual_seed(0)
    m = FERYOLOVSS2(64, 64).eval()
    x = torch.randn(2, 64, 20, 20)
    with torch.no_grad():
        y32 = m(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            ylo = m(x).float()
    rel = lambda a, b: ((a - b).norm() / b.norm()).item()  # noqa: E731
    return {"output": rel(ylo, y32), "residual": rel(ylo - x, y32 - x)}


def thread_differences(imgsz: int) -> dict:
    """How many of yolov8n's parameter gradients differ in any bit between 1 and 2 torch threads."""
    torch.manual_seed(0)
    model = DetectionModel("yolov8n.yaml", nc=7, verbose=False).train()
    x = torch.rand(2, 3, imgsz, imgsz)
    grads, before = [], torch.get_num_threads()
    for threads in (1, 2):
        torch.set_num_threads(threads)
        model.zero_grad()
        total(model(x)).backward()
        grads.append([p.grad.clone() for p in model.parameters() if p.grad is not None])
    torch.set_num_threads(before)
    return {"differ": sum(not torch.equal(a, b) for a, b in zip(*grads)), "total": len(grads[0])}


def paragraphs(cfg: dict, r: dict, tiny: bool) -> dict[str, str]:
    """The text of each docs/robustness.md block, by marker name."""
    from ultralytics.utils.torch_utils import get_cpu_info

    by = (f"Measured by `python benchmarks/bench_robustness.py{' tiny=True' if tiny else ''}` on {get_cpu_info()}, "
          f"{torch.get_num_threads()} torch threads, load average {os.getloadavg()[0]:.1f}, torch {torch.__version__}, "
          f"{time.strftime('%Y-%m-%d')}")
    load, fin, scan, low, thr = r["load"], r["finite"], r["scan"], r["bf16"], r["threads"]
    return {
        "robustness-load": f"{by}: a fer-yolo-mamba-n checkpoint loads in {load['checked']:.1f} ms with these checks "
                           f"and {load['original']:.1f} ms without them (medians).",
        "robustness-finite": f"{by}: a training forward + backward of fer-yolo-mamba-n (batch {cfg['batch']}, imgsz "
                             f"{cfg['imgsz']}) takes {fin['step']:.0f} ms; the {fin['blocks']} checks take "
                             f"{fin['checks']:.2f} ms of it ({fin['checks'] / fin['step']:.2%}), medians.",
        "robustness-numerics": f"{by}: at L = {cfg['length']:,} with the slow decay, the fast scan's largest error "
                               f"against float64 is {scan['fast']:.1e} of the largest output, the float32 reference's "
                               f"{scan['ref']:.1e}. FERYOLOVSS2 under bf16 autocast differs from float32 by "
                               f"{low['output']:.1e} (output) and {low['residual']:.1e} (residual branch), in norm.",
        "robustness-threads": f"{by}: {thr['differ']} of yolov8n's {thr['total']} parameter gradients differ between "
                              f"1 and 2 threads (batch 2, imgsz {cfg['threads_imgsz']}).",
    }


def main(tiny: bool = False, docs: bool = False, doc: str | Path = DOC) -> dict[str, str]:
    """Measure everything, print the paragraphs, and with ``docs=True`` write them into ``doc``'s marker blocks."""
    cfg = TINY if tiny else FULL
    r = {"load": load_costs(cfg["repeats"]), "finite": finite_costs(cfg["batch"], cfg["imgsz"], cfg["repeats"]),
         "scan": scan_errors(cfg["length"]), "bf16": bf16_errors(), "threads": thread_differences(cfg["threads_imgsz"])}
    texts = paragraphs(cfg, r, tiny)
    for name, text in texts.items():
        print(f"{name}: {text}")
        if docs:
            write_readme_section(text, f"<!-- {name}:begin -->", f"<!-- {name}:end -->", Path(doc))
    return texts


if __name__ == "__main__":
    from ultra_fer_mamba.cli import parse_args

    main(**parse_args(sys.argv[1:]))
