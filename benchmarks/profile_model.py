"""Where the CPU time of a forward pass goes: per layer, against a baseline model, and inside every OSSM.

Usage (key=value, like ``yolo``)::

    python benchmarks/profile_model.py             # fer-yolo-mamba-s vs yolov8s, imgsz 320, batch 1, 2 threads
    python benchmarks/profile_model.py model=fer-yolo-mamba-n baseline=yolov8n imgsz=640 threads=1

Both models are built with nc=7 and fused (as ``YOLO.predict`` runs them) and called round-robin under
inference_mode, ``repeats`` times after ``warmup`` calls; times are medians. With threads=1 they are CPU times
(``time.process_time``), which a shared machine's other processes disturb far less than wall-clock times. Inside an
OSSM, forward hooks time its modules (LayerNorm, in_proj, the depthwise conv, out_norm, out_proj) and a wrapper the
scan op; "other" is the rest (x_proj, SiLU, the gate, permutes, the residual). The scan is also given in ns per state
update (directions x d_inner x positions x d_state) and core.
"""

from __future__ import annotations

import collections
import os
import statistics
import sys
import time

os.environ.setdefault("YOLO_OFFLINE", "1")

import torch  # noqa: E402
from ultralytics.nn.tasks import DetectionModel  # noqa: E402

import ultra_fer_mamba.nn.ossm as ossm_module  # noqa: E402
from ultra_fer_mamba.nn import OSSM  # noqa: E402

PARTS = ("norm", "in_proj", "conv2d", "out_norm", "out_proj")


def instrument(model, times: dict, clock) -> None:
    """Forward hooks timing every layer of model (key 'layer') and every OSSM's parts (keys 'layer.part')."""

    def timer(key):
        def pre(module, args):
            module._profile_start = clock()

        def post(module, args, out):
            times[key].append(clock() - module._profile_start)

        return pre, post

    for i, layer in enumerate(model.model):
        pre, post = timer(f"{i:2d} {type(layer).__name__}")
        layer.register_forward_pre_hook(pre)
        layer.register_forward_hook(post)
        for name, m in layer.named_modules():
            if isinstance(m, OSSM):
                m._profile_key = f"{i:2d} {type(layer).__name__}"
                for part in ("",) + PARTS:
                    sub = getattr(m, part) if part else m
                    pre, post = timer(f"{m._profile_key}.{part or 'OSSM'}")
                    sub.register_forward_pre_hook(pre)
                    sub.register_forward_hook(post)


def timed_scan(times: dict, updates: dict, clock):
    """A stand-in for OSSM's cross_selective_scan that records its time and state updates per layer."""
    scan = ossm_module.cross_selective_scan

    def wrapper(u, delta, A, B, C, D, delta_bias, h, w, **kw):
        start = clock()
        y = scan(u, delta, A, B, C, D, delta_bias, h, w, **kw)
        key = wrapper.key
        times[f"{key}.scan"].append(clock() - start)
        updates[key] = A.shape[0] * u.shape[0] * u.shape[1] * u.shape[2] * A.shape[2]
        return y

    wrapper.key = ""
    return wrapper


def profile(model: str = "fer-yolo-mamba-s", baseline: str = "yolov8s", imgsz: int = 320, batch: int = 1,
            threads: int = 2, repeats: int = 10, warmup: int = 3) -> str:
    torch.set_num_threads(int(threads))
    clock = time.process_time if int(threads) == 1 else time.perf_counter
    models = {n: DetectionModel(f"{n}.yaml", nc=7, verbose=False).fuse(verbose=False).eval() for n in (model, baseline)}
    times = {n: collections.defaultdict(list) for n in models}
    updates = {}
    scan = ossm_module.cross_selective_scan
    wrapper = timed_scan(times[model], updates, clock)
    ossm_module.cross_selective_scan = wrapper
    for m in models[model].modules():
        if isinstance(m, OSSM):
            m.register_forward_pre_hook(lambda mod, args: setattr(wrapper, "key", mod._profile_key))
    for n, m in models.items():
        instrument(m, times[n], clock)
    x = torch.rand(int(batch), 3, int(imgsz), int(imgsz))
    totals = {n: [] for n in models}
    try:
        with torch.inference_mode():
            for r in range(int(warmup) + int(repeats)):
                for n, m in models.items():
                    if r == int(warmup):
                        times[n].clear()
                    start = clock()
                    m(x)
                    if r >= int(warmup):
                        totals[n].append(clock() - start)
    finally:
        ossm_module.cross_selective_scan = scan
    med = {n: {k: statistics.median(v) * 1e3 for k, v in t.items()} for n, t in times.items()}
    total = {n: statistics.median(v) * 1e3 for n, v in totals.items()}
    unit = "CPU ms" if int(threads) == 1 else "ms"
    lines = [f"{model} vs {baseline}, imgsz {imgsz}, batch {batch}, {threads} thread(s), {unit} (medians of {repeats})",
             "", f"| layer | {model} | {baseline} layer | {baseline} |", "|---|---:|---|---:|"]
    ours = [k for k in med[model] if "." not in k]
    base = list(med[baseline])
    for i in range(max(len(ours), len(base))):
        a = (ours[i], f"{med[model][ours[i]]:.2f}") if i < len(ours) else ("", "")
        b = (base[i], f"{med[baseline][base[i]]:.2f}") if i < len(base) else ("", "")
        lines.append(f"| {a[0]} | {a[1]} | {b[0]} | {b[1]} |")
    ratio = total[model] / total[baseline]
    lines.append(f"| **total** | **{total[model]:.1f}** | | **{total[baseline]:.1f}** ({ratio:.2f}x) |")
    lines += ["", f"| OSSM of layer | total | scan | scan ns/update | {' | '.join(PARTS)} | other |",
              "|---|" + "---:|" * (4 + len(PARTS))]
    for key in sorted({k.split(".")[0] for k in med[model] if k.endswith(".OSSM")}):
        t = med[model]
        parts = [t.get(f"{key}.{p}", 0.0) for p in PARTS]
        other = t[f"{key}.OSSM"] - t[f"{key}.scan"] - sum(parts)
        ns = t[f"{key}.scan"] * 1e6 / updates[key] * (1 if clock is time.process_time else int(threads))  # per core
        lines.append(f"| {key} | {t[f'{key}.OSSM']:.2f} | {t[f'{key}.scan']:.2f} | {ns:.3f} | "
                     + " | ".join(f"{p:.2f}" for p in parts) + f" | {other:.2f} |")
    text = "\n".join(lines)
    print(text)
    return text


if __name__ == "__main__":
    from ultra_fer_mamba.cli import parse_args

    profile(**parse_args(sys.argv[1:]))
