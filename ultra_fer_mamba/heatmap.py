"""``fer-yolo-mamba heatmap``: detections and a class-confidence heat map per image, as in the paper's Figures 4-5.

The heat map is read from the Detect head's raw output before NMS: for every anchor point of every stride level the
highest class probability (sigmoid of the class logits), so it shows where the detector "sees" an expression and how
sure it is. Each level's (h, w) grid is upsampled bilinearly to the letterboxed input, the levels are combined with a
pixel-wise maximum, the letterbox padding is cut off, and the result is resized to the original image and drawn over
it with the ``jet`` colormap (fixed range 0..1, so images can be compared).

The head is tapped with a forward hook during Ultralytics' own prediction, so the detections drawn and the heat map
come from the same forward pass. Works with any Ultralytics model whose last head is a ``Detect`` (or subclass).

Output: ``runs/fer/heatmap/<image stem>.png`` (two panels: detections, heat map).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ultra_fer_mamba.io import load_yolo, make_save_dir
from ultra_fer_mamba.plots import plot_heatmap


def find_detect_head(model: nn.Module) -> nn.Module:
    """Return the last Ultralytics ``Detect`` head (or subclass) inside a model.

    Args:
        model (nn.Module): A detection model.

    Returns:
        (nn.Module): The head.

    Raises:
        TypeError: If the model has no Detect head.
    """
    from ultralytics.nn.modules.head import Detect

    heads = [m for m in model.modules() if isinstance(m, Detect)]
    if not heads:
        raise TypeError(f"{type(model).__name__} has no Ultralytics Detect head")
    return heads[-1]


def head_scores(head: nn.Module, output) -> tuple[torch.Tensor, list[tuple[int, int]]]:
    """Class probabilities per anchor and the grid size of each level, from a Detect head's forward output.

    Args:
        head (nn.Module): The Detect head the output came from.
        output: Its forward output: ``(decoded, raw)`` in eval mode, the raw dict alone in training or export
            mode; end-to-end heads nest ``one2many`` / ``one2one`` dicts.

    Returns:
        scores (torch.Tensor): Class probabilities (B, nc, A), A = sum of h * w over levels.
        shapes (list[tuple[int, int]]): (h, w) of each level, in the order of A.
    """
    raw = output[1] if isinstance(output, (tuple, list)) else output
    if "one2one" in raw:
        raw = raw["one2one" if head.end2end else "one2many"]
    return raw["scores"].sigmoid(), [tuple(f.shape[-2:]) for f in raw["feats"]]


def score_map(scores: torch.Tensor, shapes: list[tuple[int, int]], strides: list[float]) -> torch.Tensor:
    """Max class score per anchor point, each level upsampled to the input size and max-combined.

    Args:
        scores (torch.Tensor): Class probabilities of one image (nc, A).
        shapes (list[tuple[int, int]]): (h, w) of each level.
        strides (list[float]): Stride of each level.

    Returns:
        (torch.Tensor): Heat map (H, W) at the network input size (H = h * stride of any level).

    Examples:
        >>> s = torch.zeros(2, 4 * 4 + 2 * 2)
        >>> s[1, 5] = 0.9  # class 1, level 0, row 1, column 1: centre pixel (12, 12) at stride 8
        >>> m = score_map(s, [(4, 4), (2, 2)], [8, 16])
        >>> m.shape, divmod(int(m.argmax()), 32)  # bilinear upsampling peaks next to the anchor centre
        (torch.Size([32, 32]), (11, 11))
    """
    best = scores.float().amax(0)  # (A,)
    size = (int(shapes[0][0] * strides[0]), int(shapes[0][1] * strides[0]))
    levels = best.split([h * w for h, w in shapes])
    maps = [F.interpolate(v.view(1, 1, h, w), size=size, mode="bilinear", align_corners=False)
            for v, (h, w) in zip(levels, shapes)]  # fmt: skip
    return torch.cat(maps).amax(0)[0]  # (H, W)


def to_original(heat: torch.Tensor, shape: tuple[int, int]) -> np.ndarray:
    """Cut the letterbox padding off an input-size map and resize it to the original image (Ultralytics' rule).

    Args:
        heat (torch.Tensor): Map at the letterboxed input size (H, W).
        shape (tuple[int, int]): Original image height and width.

    Returns:
        (np.ndarray): Map (h0, w0) clipped to [0, 1].
    """
    from ultralytics.utils.ops import scale_masks

    return scale_masks(heat[None, None], shape)[0, 0].clamp(0, 1).cpu().numpy()


def heatmap(
    model: str | None = None,
    source: str | None = None,
    imgsz: int = 320,
    conf: float = 0.25,
    iou: float = 0.7,
    device: str | None = "cpu",
    project: str | None = None,
    name: str | None = None,
    alpha: float = 0.5,
    max_det: int = 300,
) -> list[Path]:
    """Draw each image's detections and its class-confidence heat map side by side, saved as PNG.

    Args:
        model (str | ultralytics.YOLO): Trained weights, a model YAML or a YOLO object.
        source (str): Image, folder, glob or anything else Ultralytics' predictor accepts.
        imgsz (int): Inference size (the paper uses 320).
        conf (float): Lowest score of a drawn detection (the heat map shows every anchor).
        iou (float): NMS IoU.
        device (str | None): Inference device.
        project (str | None): Parent folder (default ``runs/fer``).
        name (str | None): Run folder (default ``heatmap``, incremented if taken).
        alpha (float): Opacity of the heat map.
        max_det (int): Most detections drawn per image.

    Returns:
        (list[Path]): The PNGs written, one per image.

    Examples:
        $ fer-yolo-mamba heatmap model=runs/detect/train/weights/best.pt source=datasets/rafdb/images/test
    """
    from ultralytics.utils import LOGGER, TQDM

    if not model or not source:
        raise ValueError("heatmap needs model=path/to/best.pt and source=image, folder or glob")
    yolo = load_yolo(model)
    save_dir, files, seen, taps = make_save_dir(project, name, "heatmap"), [], {}, []
    stream = yolo.predict(source=source, stream=True, imgsz=imgsz, conf=conf, iou=iou, device=device, batch=1,
                          max_det=max_det, verbose=False)  # fmt: skip
    # the predictor runs its own (deep-copied, fused) model, set up by the call above: tap the head of that copy
    backend = yolo.predictor.model  # AutoBackend: the PyTorch module sits behind its .model
    head = find_detect_head(getattr(backend, "model", backend))
    handle = head.register_forward_hook(lambda m, args, out: taps.append(head_scores(m, out)))
    try:
        for r in TQDM(stream, desc="heatmap"):
            scores, shapes = taps[-1]  # batch 1: the forward pass that produced r
            taps.clear()
            heat = to_original(score_map(scores[0], shapes, [float(s) for s in head.stride]), r.orig_shape)
            stem = Path(r.path).stem
            seen[stem] = seen.get(stem, 0) + 1
            file = save_dir / (f"{stem}.png" if seen[stem] == 1 else f"{stem}_{seen[stem]}.png")
            peak = float(scores[0].max())
            files.append(plot_heatmap(r.orig_img[..., ::-1], r.plot()[..., ::-1], heat, file, alpha, peak))
    finally:
        handle.remove()
    LOGGER.info(f"heatmap: {len(files)} PNGs saved to {save_dir}")
    return files
