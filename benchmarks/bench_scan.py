"""Benchmark the selective scan alone: a plain time-major loop against the numba and torch backends.

Usage (key=value, like ``yolo``)::

    python benchmarks/bench_scan.py                        # the default cases, 2 threads, 5 repeats
    python benchmarks/bench_scan.py readme=True            # also write the table into README.md (between markers)
    python benchmarks/bench_scan.py cases=2x256x1600 impls=loop,numba repeats=3 threads=1

Keys: ``cases`` (batch x d_inner x L, comma-separated; default: the speed claim's 2x256x1600, then the four neck
scans of fer-yolo-mamba-s at imgsz 320 at batch 1), ``impls`` (default loop,numba,torch; also ref),
``repeats`` (timed rounds, default 5), ``threads`` (torch's and numba's, default 2), ``readme`` (write the table
between ``<!-- bench-scan:begin -->`` and ``<!-- bench-scan:end -->`` in README.md).

Problem (OSSM's, with the mamba_ssm signature): 8 directions folded into the channels, d = 8 * d_inner; B and C
with one group per direction, (b, 8, 16, L); N = 16; delta_bias and softplus; D skip; float32. Implementations:
    loop   the plain time-major loop everyone writes first: permute once, unbind, per step exp + addcmul and
           (h * C).sum(-1), autograd through the steps;
    numba  selective_scan(backend="numba"): the numba kernels (channels of a group as vector lanes), custom backward;
    torch  selective_scan(backend="torch"): the chunked torch-ops path (what CUDA runs without a kernel);
    ref    selective_scan(backend="ref"): the reference recurrence (slow; not in the default set).
fwd = forward under no_grad; f+b = forward + backward of y.sum(). All implementations of a case are timed in one
process, interleaved (one call of each per round, after one warm-up round), so a shared machine's slow and fast
spells fall on all of them alike; times are medians. Ratios are loop / implementation.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

K, N = 8, 16  # directions, state size
DEFAULT_CASES = "2x256x1600,1x512x400,1x256x1600,1x256x400,1x512x100"
README = Path(__file__).resolve().parents[1] / "README.md"


def make_problem(batch: int, d_inner: int, length: int, requires_grad: bool, seed: int = 0) -> dict:
    """Inputs of one neck scan: u, delta (b, d, L), A (d, N), B, C (b, K, N, L), D, delta_bias (d,)."""
    gen = torch.Generator().manual_seed(seed)
    d = K * d_inner
    r = lambda *s: torch.randn(*s, generator=gen)  # noqa: E731
    t = dict(u=r(batch, d, length), delta=0.5 * r(batch, d, length) - 2.0, A=-torch.exp(0.5 * r(d, N)),
             B=r(batch, K, N, length), C=r(batch, K, N, length), D=r(d), delta_bias=0.1 * r(d))
    return {k: v.requires_grad_(requires_grad) for k, v in t.items()}


def run_backend(p: dict, backend: str) -> torch.Tensor:
    from ultra_fer_mamba.ops import selective_scan

    return selective_scan(p["u"], p["delta"], p["A"], p["B"], p["C"], p["D"], None, p["delta_bias"], True,
                          backend=backend)


def run_loop(p: dict) -> torch.Tensor:
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
        ys.append((h * Cs[t]).sum(-1))  # (b, g, d/g)
    return torch.stack(ys, -1).view(b, d, l) + u * p["D"][:, None]


IMPLS = {"loop": run_loop, "numba": lambda p: run_backend(p, "numba"), "torch": lambda p: run_backend(p, "torch"),
         "ref": lambda p: run_backend(p, "ref")}


def calls(impl: str, p: dict) -> dict:
    """The forward (no_grad) and forward + backward calls of one implementation on one problem."""
    fn = IMPLS[impl]

    def fwd():
        with torch.no_grad():
            fn(p)

    def fb():
        for v in p.values():
            v.grad = None
        fn(p).sum().backward()

    return {(impl, "fwd"): fwd, (impl, "f+b"): fb}


def interleaved_medians(fns: dict, repeats: int) -> dict:
    """Median seconds of each call over ``repeats`` rounds of one call each, after one warm-up round."""
    times = {k: [] for k in fns}
    for r in range(repeats + 1):
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()
            if r:
                times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def machine(threads: int) -> str:
    """One line: CPU model and vector width, threads, versions."""
    cpu, flags = "unknown CPU", set()
    try:
        info = Path("/proc/cpuinfo").read_text().splitlines()
        cpu = next(x.split(":", 1)[1].strip() for x in info if x.startswith("model name"))
        flags = set(next(x for x in info if x.startswith("flags")).split())
    except (OSError, StopIteration):
        pass
    simd = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2"
    import numba

    return f"{cpu} ({simd}), {threads} threads, torch {torch.__version__}, numba {numba.__version__}"


def markdown(rows: list[dict], impls: list[str], threads: int) -> str:
    """The timings (ms) and loop / implementation ratios as a markdown table."""
    others = [i for i in impls if i != "loop"]
    head = ["batch x d (d_inner x 8) x L"] + [f"{i} {m} ms" for m in ("fwd", "f+b") for i in impls]
    if "loop" in impls:
        head += [f"loop / {i} {m}" for i in others for m in ("fwd", "f+b")]
    load = os.getloadavg()[0]
    busy = " (a busy machine: the loop, thousands of small parallel ops, suffers most)" if load > threads - 0.5 else ""
    lines = [f"`python benchmarks/bench_scan.py` on {machine(threads)}; N = 16, B/C one group per direction, softplus "
             f"+ bias, D skip, float32; medians of interleaved rounds; load average {load:.1f}{busy}.", "",
             "| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for r in rows:
        t = r["times"]
        cells = [f"{r['batch']} x {K * r['d_inner']} ({r['d_inner']} x 8) x {r['length']}"]
        cells += [f"{t[i, m] * 1e3:.1f}" for m in ("fwd", "f+b") for i in impls]
        if "loop" in impls:
            cells += [f"{t['loop', m] / t[i, m]:.1f}x" for i in others for m in ("fwd", "f+b")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(cases: str = DEFAULT_CASES, impls: str = "loop,numba,torch", repeats: int = 5, threads: int = 2,
         readme: bool = False) -> str:
    torch.set_num_threads(int(threads))
    names = [i for i in str(impls).split(",") if i]
    rows = []
    for case in str(cases).split(","):
        batch, d_inner, length = (int(v) for v in case.split("x"))
        p = make_problem(batch, d_inner, length, requires_grad=True)
        fns = {k: f for impl in names for k, f in calls(impl, p).items()}
        rows.append({"batch": batch, "d_inner": d_inner, "length": length,
                     "times": interleaved_medians(fns, int(repeats))})
        print(f"{case}: " + ", ".join(f"{i} {m} {t * 1e3:.1f} ms" for (i, m), t in rows[-1]["times"].items()),
              file=sys.stderr, flush=True)
    text = markdown(rows, names, int(threads))
    print(text)
    if readme:
        sys.path.insert(0, str(Path(__file__).parent))
        from model_table import write_readme_section

        write_readme_section(text, "<!-- bench-scan:begin -->", "<!-- bench-scan:end -->", README)
    return text


if __name__ == "__main__":
    os.environ.setdefault("YOLO_OFFLINE", "1")
    from ultra_fer_mamba.cli import parse_args

    main(**parse_args(sys.argv[1:]))
