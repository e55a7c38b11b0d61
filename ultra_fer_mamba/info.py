"""``fer-yolo-mamba info``: parameters and GFLOPs, with the selective scan counted.

thop (which Ultralytics' ``get_flops`` uses) counts convolutions, linear layers and norms, but not the work done in
plain tensor code: the selective scan of an SSM, its per-direction projections written as einsums, and the cross-scan
merge. Modules that do such work expose ``scan_flops(h, w) -> float``: the FLOPs of one batch-1 call on an input
feature map of height ``h`` and width ``w``. :func:`scan_gflops` runs one forward pass at the image size, records the
``h, w`` each such module actually receives, and adds up their ``scan_flops``. Stock YOLO models have none: 0 extra.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import torch
from torch import nn


def as_module(model) -> nn.Module:
    """Return the ``nn.Module`` of a weights file, model YAML, ``YOLO`` object or module.

    Args:
        model (str | Path | ultralytics.YOLO | nn.Module): What to unwrap or load.

    Returns:
        (nn.Module): The detection model (e.g. Ultralytics' ``DetectionModel``).
    """
    from ultralytics.engine.model import Model

    if isinstance(model, Model):  # a YOLO object is itself an nn.Module: unwrap it first
        return model.model
    if isinstance(model, nn.Module):
        return model
    from ultra_fer_mamba.io import load_yolo

    return load_yolo(model).model


def _imgsz(imgsz) -> tuple[int, int]:
    """An int or (h, w) image size as an (h, w) tuple."""
    return (int(imgsz), int(imgsz)) if isinstance(imgsz, (int, float)) else (int(imgsz[0]), int(imgsz[1]))


def _dummy_input(model: nn.Module, imgsz) -> torch.Tensor:
    """A zero image batch of 1 on the model's device and dtype, with its input channels (3 if unknown)."""
    p = next(model.parameters())
    ch = p.shape[1] if p.ndim == 4 else 3  # first parameter is the stem conv for Ultralytics models
    return torch.zeros(1, ch, *_imgsz(imgsz), device=p.device, dtype=p.dtype)


def scan_modules(model: nn.Module) -> list[nn.Module]:
    """Modules exposing ``scan_flops``, outermost only (a child of a counted module is not counted again)."""
    found = []
    for name, m in model.named_modules():
        if callable(getattr(m, "scan_flops", None)) and not any(name.startswith(f"{p}.") for p, _ in found):
            found.append((name, m))
    return [m for _, m in found]


def scan_gflops(model: nn.Module, imgsz=320) -> float:
    """GFLOPs of the selective scans and cross-scan merges of a model at one image size (batch 1).

    A forward hook on each module exposing ``scan_flops`` reads the height and width of its input during one forward
    pass: the last two dimensions of a (B, C, H, W) tensor, or dimensions 1 and 2 when the module sets
    ``channels_last = True`` (B, H, W, C). A module called twice is counted twice.

    Args:
        model (nn.Module): The model.
        imgsz (int | tuple[int, int]): Image size (h, w) or square side.

    Returns:
        (float): Sum of ``scan_flops(h, w)`` over all calls, in GFLOPs; 0.0 for models without such modules.

    Examples:
        >>> from ultralytics.nn.tasks import DetectionModel
        >>> scan_gflops(DetectionModel("yolov8n.yaml", verbose=False), 320)
        0.0
    """
    modules = scan_modules(model)
    if not modules:
        return 0.0
    total = []

    def hook(m, args, _output):
        x = args[0]
        h, w = (x.shape[1], x.shape[2]) if getattr(m, "channels_last", False) else (x.shape[-2], x.shape[-1])
        total.append(float(m.scan_flops(int(h), int(w))))

    handles = [m.register_forward_hook(hook) for m in modules]
    was_training = model.training
    try:
        model.eval()
        with torch.inference_mode():
            model(_dummy_input(model, imgsz))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return sum(total) / 1e9


def cpu_latency(model: nn.Module, imgsz=320, runs: int = 30, warmup: int = 10, threads: int | None = None) -> float:
    """Median CPU latency of one batch-1 forward pass, in milliseconds (a fused float32 copy of the model).

    Args:
        model (nn.Module): The model (left untouched; a copy is fused and timed).
        imgsz (int | tuple[int, int]): Image size.
        runs (int): Timed repeats.
        warmup (int): Untimed repeats first (oneDNN needs several to settle).
        threads (int | None): Torch threads while timing; None uses Ultralytics' CPU setting (``NUM_THREADS``, what
            its CPU predictor runs with). The previous setting is restored afterwards.

    Returns:
        (float): Median milliseconds per image.
    """
    import copy
    import inspect

    from ultralytics.utils import NUM_THREADS

    m = copy.deepcopy(model).float().cpu().eval()
    if callable(getattr(m, "fuse", None)):  # conv + BN fusion, as Ultralytics' predictor does
        m = m.fuse(**({"verbose": False} if "verbose" in inspect.signature(m.fuse).parameters else {}))
    x = _dummy_input(m, imgsz)
    before, times = torch.get_num_threads(), []
    torch.set_num_threads(threads or NUM_THREADS)
    try:
        with torch.inference_mode():
            for i in range(warmup + runs):
                t = time.perf_counter()
                m(x)
                if i >= warmup:
                    times.append(time.perf_counter() - t)
    finally:
        torch.set_num_threads(before)
    return 1000 * statistics.median(times)


def _label(module: nn.Module, model) -> str:
    """A short name for log lines: the model YAML's file name, else what was passed, else the class name."""
    cfg = getattr(module, "yaml", None)
    if isinstance(cfg, dict) and cfg.get("yaml_file"):
        return str(cfg["yaml_file"])
    return str(model) if isinstance(model, (str, Path)) else type(module).__name__


def info(model=None, imgsz: int = 320, verbose: bool = True) -> dict:
    """Parameters and GFLOPs of a model, as Ultralytics counts them and with the selective scan added.

    Args:
        model (str | ultralytics.YOLO | nn.Module): Model YAML, weights, YOLO object or module.
        imgsz (int): Image size (square) the FLOPs are counted at; the paper uses 320.
        verbose (bool): Log a one-line summary.

    Returns:
        (dict): ``params`` (int), ``gflops`` (Ultralytics' ``get_flops``, thop-based), ``gflops_with_scan``
            (``gflops`` plus :func:`scan_gflops`), ``imgsz``.

    Examples:
        >>> info("yolov8n.yaml", imgsz=320, verbose=False)["params"]  # doctest: +SKIP
        3157200

        $ fer-yolo-mamba info model=fer-yolo-mamba-n.yaml imgsz=320
    """
    from ultralytics.utils import LOGGER
    from ultralytics.utils.torch_utils import get_flops

    if model is None:
        raise ValueError("info needs model=path/to/model.yaml or weights.pt")
    module = as_module(model)
    params = sum(p.numel() for p in module.parameters())
    gflops = get_flops(module, imgsz)
    out = {"params": params, "gflops": gflops, "gflops_with_scan": gflops + scan_gflops(module, imgsz), "imgsz": imgsz}
    if verbose:
        LOGGER.info(
            f"{_label(module, model)}: {params:,} parameters, "
            f"{gflops:.2f} GFLOPs (Ultralytics/thop), {out['gflops_with_scan']:.2f} GFLOPs with the scan, at {imgsz}"
        )
    return out
