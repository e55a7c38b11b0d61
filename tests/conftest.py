"""Shared test set-up: no network, a tiny generated detection dataset, the `cuda` marker."""

import logging
import os
import sys
from contextlib import contextmanager
from pathlib import Path

os.environ.setdefault("YOLO_OFFLINE", "1")  # before ultralytics is imported anywhere
os.environ.setdefault("YOLO_AUTOINSTALL", "false")
os.environ.setdefault("YOLO_VERBOSE", "false")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

if not torch.cuda.is_available():  # the Triton kernels run in Triton's interpreter (read when they are decorated)
    os.environ.setdefault("TRITON_INTERPRET", "1")

NAMES = ["Anger", "Disgust", "Fear", "Happy", "Neutral", "Sad", "Surprise"]


def pytest_collection_modifyitems(config, items):
    """Skip `cuda`-marked tests when no CUDA device is present (they never count as passing)."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


def make_tiny_dataset(root: Path, n_train: int = 8, n_val: int = 4, size: int = 96, seed: int = 0) -> Path:
    """Write a tiny Ultralytics detection set (coloured boxes on noise, 7 names); return its data.yaml."""
    import cv2

    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("val", n_val)):
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            img = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
            lines = []
            for _ in range(int(rng.integers(1, 3))):
                c = int(rng.integers(0, 7))
                w, h = (int(v) for v in rng.integers(size // 5, size // 2, 2))
                x, y = int(rng.integers(0, size - w)), int(rng.integers(0, size - h))
                color = [int(v) for v in (np.array([c * 36, 255 - c * 30, 80 + c * 25]) % 256)]
                cv2.rectangle(img, (x, y), (x + w, y + h), color, -1)
                lines.append(f"{c} {(x + w / 2) / size:.6f} {(y + h / 2) / size:.6f} {w / size:.6f} {h / size:.6f}")
            cv2.imwrite(str(root / "images" / split / f"{split}_{i:03d}.jpg"), img)
            (root / "labels" / split / f"{split}_{i:03d}.txt").write_text("\n".join(lines) + "\n")
    yaml = root / "data.yaml"
    yaml.write_text(f"path: {root}\ntrain: images/train\nval: images/val\nnames:\n"
                    + "".join(f"  {i}: {n}\n" for i, n in enumerate(NAMES)))
    return yaml


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """data.yaml of a tiny generated dataset, shared by the tests of a session."""
    return make_tiny_dataset(tmp_path_factory.mktemp("tiny"))


@pytest.fixture
def offline_env(tmp_path) -> dict:
    """Environment for subprocesses: offline, Ultralytics settings and runs in tmp_path."""
    env = dict(os.environ)
    env.update(YOLO_OFFLINE="1", YOLO_AUTOINSTALL="false", PYTHONUNBUFFERED="1")
    env.pop("PYTHONPATH", None)  # the installed package, as a user has it
    return env


PYTHON = sys.executable


@contextmanager
def logged(level: int = logging.WARNING):
    """Collect what Ultralytics' LOGGER emits at ``level`` and above, as (level, message) pairs.

    LOGGER's own level is lowered for the duration (YOLO_VERBOSE=false in tests hides warnings otherwise).
    """
    from ultralytics.utils import LOGGER

    records = []
    handler = logging.Handler(level)
    handler.emit = lambda record: records.append((record.levelno, record.getMessage()))
    old = LOGGER.level
    LOGGER.addHandler(handler)
    LOGGER.setLevel(level)
    try:
        yield records
    finally:
        LOGGER.removeHandler(handler)
        LOGGER.setLevel(old)
