"""Helpers the command-line tools share: loading a model (or a two-stage pair), the run folder, and JSON with NaNs.

Examples:
    >>> from_json(to_json({"ap": [0.5, float("nan")]}))
    {'ap': [0.5, nan]}
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np


def load_yolo(model):
    """Return an Ultralytics ``YOLO`` for a weights file, a model YAML or an existing ``YOLO``.

    Args:
        model (str | Path | ultralytics.YOLO): ``*.pt`` weights, a model YAML (random weights) or a YOLO object.

    Returns:
        (ultralytics.YOLO): The model.

    Raises:
        ValueError: For a two-stage ``detector+classifier`` spec (``load_predictor`` takes those).

    Examples:
        >>> load_yolo("fer-yolo-mamba-n.yaml").task
        'detect'
    """
    from ultralytics import YOLO

    from ultra_fer_mamba.twostage import split_spec

    if isinstance(model, YOLO):
        return model
    if isinstance(model, (str, Path)) and not os.path.exists(model) and split_spec(str(model)):
        raise ValueError(f"model={model} is a two-stage detector+classifier; this command takes one model (eval and "
                         f"compare take both)")
    return YOLO(str(model))


def load_predictor(model, names=None):
    """What ``eval`` scores: a ``YOLO`` (:func:`load_yolo`), or a ``TwoStage`` for ``detector+classifier`` weights.

    Args:
        model (str | Path | ultralytics.YOLO | TwoStage): As for :func:`load_yolo`, or ``DET.pt+CLS.pt``: a face
            detector and a crop classifier (``ultra_fer_mamba.twostage``), or a ``TwoStage``.
        names (list[str] | None): A two-stage model's class order (the data's); one model keeps its own.

    Returns:
        (ultralytics.YOLO | TwoStage): Something with ``predict``, ``names`` and ``ckpt_path``.

    Examples:
        >>> load_predictor("runs/detect/faces/weights/best.pt+runs/classify/lfnsb/weights/best.pt")  # doctest: +SKIP
        <ultra_fer_mamba.twostage.TwoStage object at 0x...>
    """
    from ultra_fer_mamba.twostage import TwoStage, split_spec

    if isinstance(model, TwoStage):
        return model
    parts = split_spec(str(model)) if isinstance(model, (str, Path)) and not os.path.exists(model) else None
    return TwoStage(*parts, names=names) if parts else load_yolo(model)


def make_save_dir(project: str | Path | None, name: str | None, default: str, exist_ok: bool = False) -> Path:
    """Create ``project/name`` (default ``runs/fer/<default>``), incremented like Ultralytics unless ``exist_ok``.

    Examples:
        >>> import tempfile
        >>> root = tempfile.mkdtemp()
        >>> [make_save_dir(root, None, "eval").name for _ in range(2)]
        ['eval', 'eval-2']
    """
    from ultralytics.utils.files import increment_path

    save_dir = increment_path(Path(project or "runs/fer") / (name or default), exist_ok=exist_ok)
    save_dir.mkdir(parents=True, exist_ok=True)
    return save_dir


def to_json(obj):
    """Make a metrics structure strict-JSON friendly: NaN and infinities become None, numpy scalars plain numbers.

    Examples:
        >>> to_json({"map": np.float32(0.5), "ap": np.array([1.0, np.nan]), "dir": Path("runs")})
        {'map': 0.5, 'ap': [1.0, None], 'dir': 'runs'}
    """
    if isinstance(obj, dict):
        return {k: to_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_json(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_json(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return str(obj) if isinstance(obj, Path) else obj


def from_json(obj):
    """Undo :func:`to_json` for metrics: None inside number lists becomes NaN again."""
    if isinstance(obj, dict):
        return {k: from_json(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [math.nan if v is None else from_json(v) for v in obj]
    return obj
