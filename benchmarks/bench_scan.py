"""Benchmark the selective scan on FER-YOLO-Mamba's neck shapes (issue 3).

Usage (key=value, like ``yolo``)::

    python benchmarks/bench_scan.py                                   # everything below, defaults
    python benchmarks/bench_scan.py batches=1,16 repeats=5 out=scan.md
    python benchmarks/bench_scan.py impls=torch,loop shapes=256x1600 batches=2,16
    python benchmarks/bench_scan.py ort=0                              # skip the onnxruntime table

Keys: ``batches`` (default 1,16; batch 2 is added for 256x1600, the shape of the speed claim),
``shapes`` (d_inner x L, default 512x400,256x1600,256x400,512x100: the four neck scans at imgsz 320),
``impls`` (default torch,loop,mambapy,ref), ``repeats`` (default 5), ``threads`` (default: torch's
default, i.e. the CPU count), ``ort`` (1: also time the ONNX export of the scan in onnxruntime at batch
1), ``out`` (also write the markdown there).

Problem: 8 scan directions folded into the channels (D = 8 * d_inner), N = 16, B and C with one group
per direction (b, 8, 16, L), delta_bias and softplus, D skip, float32, torch's default thread count.
Implementations:
    torch    the "torch" backend (numba kernels on CPU, custom backward);
    ref      the "ref" backend (selective_scan_ref, ground truth); skipped where the estimate from a
             short calibration run says it would take over 30 s or most of the free memory;
    loop     a plain time-major loop: permute once, unbind, per step exp + addcmul, (h * C).sum(-1),
             autograd through the steps;
    mambapy  mambapy's Blelloch parallel scan (``from mambapy.pscan import pscan``) on the same problem:
             A = exp(dt A) and X = dt u B as (b, L, D, N), then y = (H * C).sum(-1).
Each (implementation, shape, batch) runs in a fresh subprocess: a small warm-up loads kernels and the
inputs are made; then one warm-up run (excluded) and ``repeats`` timed runs of the forward under
no_grad, then the same of forward + backward (sum of y), with fewer runs where ``repeats`` of them
would pass two minutes (the table says so). Times are medians. Peak memory is the peak RSS (VmHWM,
reset through /proc/self/clear_refs before each mode) minus the RSS at that point: what the forward,
or the forward + backward, adds on top of its inputs. Cases whose memory estimate exceeds the
available RAM less 2 GB are skipped and say so.

Run it on an otherwise idle machine: when another process holds a core, every parallel torch op waits
for its preempted OpenMP thread, and a run of thousands of small ops (the loop; yolov8s itself) slows
down 10-30x, far more than one long numba region does. The table prints the load average.
"""

from __future__ import annotations

import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

K, N = 8, 16  # directions, state size
DEFAULT_SHAPES = "512x400,256x1600,256x400,512x100"
EXTRA_BATCH = {(256, 1600): 2}  # the speed claim is made at batch 2 too
REF_LIMIT_S = 30.0


# ----------------------------------------------------------------------------- implementations
def make_problem(batch, d_inner, length, requires_grad, seed=0):
    """Inputs of one neck scan: u, delta (b, D, L), A (D, N), B, C (b, K, N, L), D, delta_bias (D,)."""
    gen = torch.Generator().manual_seed(seed)
    d = K * d_inner
    r = lambda *s: torch.randn(*s, generator=gen)  # noqa: E731
    t = dict(u=r(batch, d, length), delta=0.5 * r(batch, d, length) - 2.0,
             A=-torch.exp(0.5 * r(d, N)), B=r(batch, K, N, length), C=r(batch, K, N, length), D=r(d),
             delta_bias=0.1 * r(d))
    return {k: v.requires_grad_(requires_grad) for k, v in t.items()}


def run_torch(p):
    from ultra_fer_mamba.ops import selective_scan

    return selective_scan(p["u"], p["delta"], p["A"], p["B"], p["C"], p["D"], None, p["delta_bias"], True,
                          backend="torch")


def run_ref(p):
    from ultra_fer_mamba.ops import selective_scan

    return selective_scan(p["u"], p["delta"], p["A"], p["B"], p["C"], p["D"], None, p["delta_bias"], True,
                          backend="ref")


def run_loop(p):
    """The plain time-major loop everyone writes first."""
    u, A, B, C = p["u"], p["A"], p["B"], p["C"]
    b, d, l = u.shape
    g = B.shape[1]
    dt = F.softplus(p["delta"] + p["delta_bias"][:, None])
    time_major = lambda x: x.permute(-1, *range(x.dim() - 1)).contiguous()  # noqa: E731  (l, ...) once
    dts = time_major(dt.view(b, g, d // g, l)).unsqueeze(-1).unbind(0)  # l x (b, g, d/g, 1)
    xs = time_major((dt * u).view(b, g, d // g, l)).unsqueeze(-1).unbind(0)
    Bs = time_major(B).unsqueeze(3).unbind(0)  # l x (b, g, 1, n)
    Cs = time_major(C).unsqueeze(3).unbind(0)
    Ag = A.view(g, d // g, N)
    h = u.new_zeros(b, g, d // g, N)
    ys = []
    for t in range(l):
        h = torch.addcmul(xs[t] * Bs[t], torch.exp(dts[t] * Ag), h)
        ys.append((h * Cs[t]).sum(-1))
    return torch.stack(ys, -1).view(b, d, l) + u * p["D"][:, None]


def run_mambapy(p):
    """mambapy's pscan fed the same recurrence h_t = exp(dt_t A) h_{t-1} + dt_t u_t B_t."""
    from mambapy.pscan import pscan

    u, A, B, C = p["u"], p["A"], p["B"], p["C"]
    b, d, l = u.shape
    g = B.shape[1]
    dt = F.softplus(p["delta"] + p["delta_bias"][:, None]).transpose(1, 2)  # (b, l, d)
    dA = torch.exp(dt.unsqueeze(-1) * A)  # (b, l, d, n)
    Bx = B.permute(0, 3, 1, 2).repeat_interleave(d // g, dim=2)  # (b, l, d, n)
    Cx = C.permute(0, 3, 1, 2).repeat_interleave(d // g, dim=2)
    X = (dt * u.transpose(1, 2)).unsqueeze(-1) * Bx
    H = pscan(dA, X)  # (b, l, d, n)
    return (H * Cx).sum(-1).transpose(1, 2) + u * p["D"][:, None]


IMPLS = {"torch": run_torch, "ref": run_ref, "loop": run_loop, "mambapy": run_mambapy}


def mem_estimate_gb(impl, batch, d_inner, length):
    """Rough peak of a forward + backward in GB (from the tensors each implementation keeps)."""
    unit = batch * K * d_inner * N * 4 / 1e9  # one (b, D, N) float32 per step, times L below
    return {"torch": 0.0, "ref": 12 * unit * length, "loop": 4.5 * unit * length,
            "mambapy": 10 * unit * 2 ** math.ceil(math.log2(length))}[impl]


# ----------------------------------------------------------------------------- one case (subprocess)
def rss_mb(field="VmHWM"):
    """Peak (VmHWM) or current (VmRSS) resident memory of this process in MB (Linux /proc)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def reset_peak():
    """Start a new peak-RSS window (Linux >= 4.0: writing 5 to clear_refs resets VmHWM)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def timed(fn, repeats, budget_s=120.0):
    """Median of ``repeats`` timed calls after one untimed warm-up; fewer calls when one takes so long
    that ``repeats`` of them would exceed ``budget_s``. Returns (median seconds, number of calls)."""
    t = time.perf_counter()
    fn()  # warm-up, excluded
    first = time.perf_counter() - t
    repeats = max(1, min(repeats, int(budget_s / max(first, 1e-9))))
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), repeats


def worker(impl, batch, d_inner, length, repeats, modes):
    fn = IMPLS[impl]
    small = make_problem(1, 2, min(length, 8), True)  # load kernels and autograd machinery first
    fn(small).sum().backward()
    with torch.no_grad():
        fn(small)
    p = make_problem(batch, d_inner, length, True)
    out = {}
    if "fwd" in modes:
        reset_peak()
        base = rss_mb("VmRSS")
        with torch.no_grad():
            out["fwd_s"], out["fwd_runs"] = timed(lambda: fn(p), repeats)
        out["fwd_peak_mb"] = rss_mb() - base

    def fwd_bwd():
        for v in p.values():
            v.grad = None
        fn(p).sum().backward()

    if "fb" in modes:
        reset_peak()
        base = rss_mb("VmRSS")
        out["fb_s"], out["fb_runs"] = timed(fwd_bwd, repeats)
        out["fb_peak_mb"] = rss_mb() - base
    return out


def run_case(impl, batch, d_inner, length, repeats, modes="fwd,fb", timeout=1800):
    cmd = [sys.executable, __file__, "worker=1", f"impl={impl}", f"batch={batch}", f"d_inner={d_inner}",
           f"length={length}", f"repeats={repeats}", f"modes={modes}", f"threads={torch.get_num_threads()}"]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).resolve().parents[1]),
                                                       os.environ.get("PYTHONPATH", "")]))
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"skip": f"timed out after {timeout} s"}
    lines = [x for x in res.stdout.splitlines() if x.startswith("{")]
    if res.returncode or not lines:
        return {"skip": f"failed (rc {res.returncode}): {res.stderr.strip().splitlines()[-1:]}"}
    return json.loads(lines[-1])


def machine():
    """One line: CPU model and flags, threads, library versions."""
    cpu = platform.processor() or platform.machine()
    flags = set()
    try:
        info = Path("/proc/cpuinfo").read_text()
        cpu = next(x.split(":", 1)[1].strip() for x in info.splitlines() if x.startswith("model name"))
        flags = set(next(x for x in info.splitlines() if x.startswith("flags")).split())
    except (OSError, StopIteration):
        pass
    simd = "avx512f" if "avx512f" in flags else "avx2" if "avx2" in flags else "no avx2"
    try:
        import numba

        nb = f"numba {numba.__version__}"
    except ImportError:
        nb = "no numba"
    return (f"{cpu} ({simd}), {os.cpu_count()} CPUs, torch {torch.__version__} with {torch.get_num_threads()} "
            f"threads, {nb}")


def available_gb():
    with open("/proc/meminfo") as f:
        info = dict(line.split(":", 1) for line in f)
    return int(info["MemAvailable"].split()[0]) / 1024**2


# ----------------------------------------------------------------------------- onnxruntime
def ort_worker(shapes, repeats):
    """Export the scan once (dynamic b, D, L) and time it in onnxruntime at batch 1 for each shape."""
    import tempfile
    import warnings

    import onnxruntime as ort

    from ultra_fer_mamba.ops import selective_scan

    warnings.filterwarnings("ignore")

    class Scan(torch.nn.Module):
        def forward(self, u, delta, A, B, C, D, delta_bias):
            return selective_scan(u, delta, A, B, C, D, None, delta_bias, True)

    names = ["u", "delta", "A", "B", "C", "D", "delta_bias"]
    axes = {"u": {0: "b", 1: "d", 2: "l"}, "delta": {0: "b", 1: "d", 2: "l"}, "A": {0: "d"}, "B": {0: "b", 3: "l"},
            "C": {0: "b", 3: "l"}, "D": {0: "d"}, "delta_bias": {0: "d"}, "y": {0: "b", 1: "d", 2: "l"}}
    path = os.path.join(tempfile.mkdtemp(), "scan.onnx")
    small = make_problem(1, 4, 10, False)
    torch.onnx.export(Scan(), tuple(small[k] for k in names), path, dynamo=False, opset_version=17,
                      input_names=names, output_names=["y"], dynamic_axes=axes)
    sessions = {}
    for nt in sorted({1, torch.get_num_threads()}):
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = nt
        sessions[nt] = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    rows = []
    for d_inner, length in shapes:
        p = make_problem(1, d_inner, length, False)
        feed = {k: p[k].numpy() for k in names}
        with torch.no_grad():
            t_torch = timed(lambda: run_torch(p), repeats)[0]
            y = run_torch(p).numpy()
        t_ort = {nt: timed(lambda s=s: s.run(None, feed), repeats)[0] for nt, s in sessions.items()}
        err = float(abs(sessions[1].run(None, feed)[0] - y).max() / abs(y).max())
        rows.append({"d_inner": d_inner, "length": length, "ort_s": t_ort, "torch_s": t_torch, "rel_err": err})
    return rows


# ----------------------------------------------------------------------------- table
def fmt_ms(seconds):
    return "-" if seconds is None else f"{seconds * 1e3:.1f}" if seconds < 10 else f"{seconds * 1e3:.0f}"


def ratio(a, b):
    return "-" if a is None or b is None else f"{a / b:.1f}x"


def main(batches="1,16", shapes=DEFAULT_SHAPES, impls="torch,loop,mambapy,ref", repeats="5", threads="", ort="1",
         out=""):
    if threads:
        torch.set_num_threads(int(threads))
    repeats = int(repeats)
    impls = [x for x in impls.split(",") if x]
    shape_list = [tuple(int(v) for v in s.split("x")) for s in shapes.split(",") if s]
    batch_list = [int(b) for b in batches.split(",") if b]
    cases = []
    for shape in shape_list:
        bs = sorted(set(batch_list) | ({EXTRA_BATCH[shape]} if shape in EXTRA_BATCH else set()))
        cases += [(shape, b) for b in bs]

    load0 = os.getloadavg()
    busy = load0[0] > (os.cpu_count() or 1) - 0.5
    lines = ["# Selective-scan benchmark", "", f"{machine()}; load average at start {load0[0]:.2f}"
             + (" (busy machine: the timings are not representative)" if busy else ""), "",
             "Problem: D = 8 directions x d_inner channels, N = 16, B/C (b, 8, 16, L), softplus + bias, D skip, "
             "float32. fwd = forward under no_grad; f+b = forward + backward; peak = peak RSS a forward + backward "
             "adds on top of its inputs (MB). Medians of the timed runs (warm-up excluded); each case in its "
             "own process.", ""]
    head = ["d_inner / L (D)", "batch"]
    for impl in impls:
        head += [f"{impl} fwd ms", f"{impl} f+b ms", f"{impl} peak MB"]
    if "torch" in impls and "loop" in impls:
        head += ["loop/torch fwd", "loop/torch f+b"]
    if "torch" in impls and "mambapy" in impls:
        head += ["mambapy/torch fwd", "mambapy/torch f+b"]
    rows, notes = [], []
    for (d_inner, length), batch in cases:
        res = {}
        for impl in impls:
            est = mem_estimate_gb(impl, batch, d_inner, length)
            if est > available_gb() - 2.0:
                res[impl] = {"skip": f"skipped: needs ~{est:.0f} GB, {available_gb():.0f} GB free"}
            elif impl == "ref":
                cal_len = min(length, 16)
                cal = run_case("ref", batch, d_inner, cal_len, 1)
                est_s = (cal.get("fwd_s", 1e9) + cal.get("fb_s", 1e9)) * length / cal_len * (repeats + 1)
                res[impl] = (run_case("ref", batch, d_inner, length, repeats) if est_s <= REF_LIMIT_S
                             else {"skip": f"skipped: estimated {est_s:.0f} s > {REF_LIMIT_S:.0f} s"})
            else:
                res[impl] = run_case(impl, batch, d_inner, length, repeats)
            print(f"{impl:8s} {d_inner}x{length} b{batch}: {res[impl]}", file=sys.stderr, flush=True)
        row = [f"{d_inner} / {length} ({K * d_inner})", str(batch)]
        for impl in impls:
            r = res[impl]
            if "skip" in r:
                row += ["-", "-", "-"]
                notes.append(f"- {impl} at {d_inner} / {length}, batch {batch}: {r['skip']}")
            else:
                row += [fmt_ms(r.get("fwd_s")), fmt_ms(r.get("fb_s")), f"{r.get('fb_peak_mb', 0):.0f}"]
                runs = {r.get("fwd_runs", repeats), r.get("fb_runs", repeats)}
                if min(runs) < repeats:
                    notes.append(f"- {impl} at {d_inner} / {length}, batch {batch}: {r.get('fwd_runs')} forward "
                                 f"and {r.get('fb_runs')} forward + backward timed runs (time budget)")
        get = lambda impl, key: res.get(impl, {}).get(key)  # noqa: E731
        if "torch" in impls and "loop" in impls:
            row += [ratio(get("loop", "fwd_s"), get("torch", "fwd_s")),
                    ratio(get("loop", "fb_s"), get("torch", "fb_s"))]
        if "torch" in impls and "mambapy" in impls:
            row += [ratio(get("mambapy", "fwd_s"), get("torch", "fwd_s")),
                    ratio(get("mambapy", "fb_s"), get("torch", "fb_s"))]
        rows.append(row)
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    if notes:
        lines += ["", *notes]

    if ort == "1":
        cmd = [sys.executable, __file__, "worker=ort", f"shapes={shapes}", f"repeats={repeats}",
               f"threads={torch.get_num_threads()}"]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).resolve().parents[1]),
                                                           os.environ.get("PYTHONPATH", "")]))
        res = subprocess.run(cmd, capture_output=True, text=True, env=env)
        got = [x for x in res.stdout.splitlines() if x.startswith("[")]
        lines += ["", "## onnxruntime (batch 1, the exported scan alone)", ""]
        if got:
            rows = json.loads(got[-1])
            nts = sorted(rows[0]["ort_s"], key=int)
            lines += ["Exported once with dynamic b, D, L (TorchScript exporter, opset 17, one ONNX Loop over "
                      "L); onnxruntime CPU execution provider.", "",
                      "| d_inner / L (D) | " + " | ".join(f"onnxruntime {nt} thread(s) ms" for nt in nts)
                      + f" | torch backend ({torch.get_num_threads()} threads, no_grad) ms | best ort/torch "
                      "| max rel. diff |", "|---|" + "---|" * (len(nts) + 3)]
            tot = {nt: 0.0 for nt in nts}
            tot_torch = 0.0
            for r in rows:
                best = min(r["ort_s"].values())
                tot_torch += r["torch_s"]
                for nt in nts:
                    tot[nt] += r["ort_s"][nt]
                lines.append(f"| {r['d_inner']} / {r['length']} ({K * r['d_inner']}) | "
                             + " | ".join(fmt_ms(r["ort_s"][nt]) for nt in nts)
                             + f" | {fmt_ms(r['torch_s'])} | {ratio(best, r['torch_s'])} | {r['rel_err']:.1e} |")
            lines.append("| all four | " + " | ".join(fmt_ms(tot[nt]) for nt in nts)
                         + f" | {fmt_ms(tot_torch)} | {ratio(min(tot.values()), tot_torch)} | |")
        else:
            lines.append(f"onnxruntime run failed: {res.stderr.strip().splitlines()[-3:]}")
    load1 = os.getloadavg()
    lines += ["", f"Load average at the end: {load1[0]:.2f} (the machine is shared: times are noisy)."]
    text = "\n".join(lines)
    print(text)
    if out:
        Path(out).write_text(text + "\n")
    return text


if __name__ == "__main__":
    kwargs = dict(a.split("=", 1) for a in sys.argv[1:])
    if kwargs.get("worker") and kwargs.get("threads"):
        torch.set_num_threads(int(kwargs["threads"]))
    if kwargs.get("worker") == "1":
        result = worker(kwargs["impl"], int(kwargs["batch"]), int(kwargs["d_inner"]), int(kwargs["length"]),
                        int(kwargs["repeats"]), kwargs.get("modes", "fwd,fb").split(","))
        print(json.dumps(result))
    elif kwargs.get("worker") == "ort":
        shapes = [tuple(int(v) for v in s.split("x")) for s in kwargs["shapes"].split(",") if s]
        print(json.dumps(ort_worker(shapes, int(kwargs["repeats"]))))
    else:
        main(**kwargs)
