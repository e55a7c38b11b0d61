"""Export trained weights to ONNX (and OpenVINO when installed), run the exported files, check they agree.

Shows deployment with Ultralytics' own exporter and loader: ``YOLO("best.pt").export(format="onnx")`` writes
``best.onnx`` (each OSSM's selective scan becomes one standard ONNX ``Loop``, no custom ops), and
``YOLO("best.onnx")`` predicts with onnxruntime exactly as ``best.pt`` does with PyTorch. The example predicts the
same images with both and matches their detections: same expression, boxes within ``tol`` relative, scores within
``tol`` absolute. OpenVINO (``best_openvino_model/``) goes the same way when the ``openvino`` package is installed;
it computes in bf16 on CPUs with native bf16, where its boxes move by up to about 1e-2 (see README's Deploy), so it
is held to ``tol_openvino``.

The defaults read what ``examples/train_rafdb.py`` writes (its best weights and its converted test images), so run
that first, or pass ``model=`` and ``source=``. Offline, on the CPU.

Usage (key=value, like ``yolo``)::

    python examples/export.py                                         # after examples/train_rafdb.py
    python examples/export.py model=runs/detect/train/weights/best.pt source=faces/ imgsz=320 formats=onnx

Everything goes under ``<project>/<name>`` (default ``runs/examples/export``; a re-run writes over it): a copy of the
weights (``best.pt``; Ultralytics writes exports beside their weights), ``best.onnx``, ``best_openvino_model/`` and
``agreement.json`` (per format: detections matched, largest box and score differences).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np

os.environ.setdefault("YOLO_OFFLINE", "1")  # before Ultralytics is imported: no network probes
os.environ.setdefault("YOLO_AUTOINSTALL", "false")

TRAINED = "runs/examples/train-rafdb"  # examples/train_rafdb.py's default run folder


def detections(yolo, images: list[str], imgsz: int | None, conf: float) -> list[np.ndarray]:
    """Per image, every box one model scores above ``conf``: (n, 6) ``x1, y1, x2, y2, score, class`` in pixels.

    NMS is switched off (``iou=1.0``, no cap on the count), so what is compared is the model's output itself, not
    which of two near-equal overlapping boxes NMS happens to keep.
    """
    return [r.boxes.data.cpu().numpy().astype(np.float64)
            for r in yolo.predict(images, imgsz=imgsz, conf=conf, iou=1.0, max_det=100_000, device="cpu", stream=True,
                                  verbose=False)]


def agreement(ref: list[np.ndarray], got: list[np.ndarray], conf: float, tol: float, same: float = 0.1) -> dict:
    """Pair each reference detection with the exported model's detection of the same class nearest to it.

    Two detections are the same when every box coordinate differs by at most ``same`` relative (to the coordinate,
    at least 1 px). A detection without its pair is allowed only when its score lies within ``tol`` of ``conf`` (it
    crossed the threshold). The exported model agrees when nothing else is unpaired and every pair's boxes are within
    ``tol`` relative and its scores within ``tol`` absolute.

    Returns:
        (dict): ``detections`` (of the reference), ``matched`` (pairs), ``unmatched`` (unpaired beyond the threshold
            band, both sides), ``box_rel`` and ``score_abs`` (largest differences over the pairs), ``ok``.

    Examples:
        >>> ref = [np.array([[10.0, 10.0, 50.0, 60.0, 0.9, 3.0]])]
        >>> agreement(ref, [ref[0] + [0.01, 0, 0, 0, 1e-4, 0]], conf=0.25, tol=1e-3)["ok"]
        True
        >>> agreement(ref, [ref[0] + [0, 0, 0, 0, 0, 1.0]], conf=0.25, tol=1e-3)["unmatched"]  # another class
        2
    """
    matched, unmatched, box_rel, score_abs = 0, 0, 0.0, 0.0
    for a, b in zip(ref, got):
        used = np.zeros(len(b), bool)
        for det in a:
            cand = np.flatnonzero((b[:, 5] == det[5]) & ~used)
            err = (np.abs(b[cand, :4] - det[:4]) / np.maximum(np.abs(det[:4]), 1.0)).max(1)
            if len(cand) and err.min() <= same:
                j = cand[int(np.argmin(err))]
                used[j], matched = True, matched + 1
                box_rel, score_abs = max(box_rel, float(err.min())), max(score_abs, abs(float(b[j, 4] - det[4])))
            elif det[4] > conf + tol:
                unmatched += 1
        unmatched += int((b[~used, 4] > conf + tol).sum())
    return {"detections": sum(len(a) for a in ref), "matched": matched, "unmatched": unmatched, "box_rel": box_rel,
            "score_abs": score_abs, "ok": unmatched == 0 and box_rel <= tol and score_abs <= tol}


def main(
    model: str = f"{TRAINED}/train/weights/best.pt",
    source: str = f"{TRAINED}/rafdb/images/val",
    formats: str = "onnx,openvino",
    imgsz: int | None = None,
    conf: float = 0.25,
    tol: float = 1e-3,
    project: str = "runs/examples",
    name: str = "export",
) -> dict:
    """Export ``model`` to each format, predict ``source`` with the export and with ``model``, and compare.

    Args:
        model (str): Trained weights (``best.pt``).
        source (str): A folder of images (or one image) to compare the predictions on.
        formats (str): Comma-separated export formats: ``onnx``, ``openvino`` (skipped with a note when the package
            is missing), ``torchscript``.
        imgsz (int | None): Export and inference size; None: the size the weights were trained at.
        conf (float): Lowest score predicted and compared.
        tol (float): Largest box (relative) and score (absolute) difference allowed.
        project (str): Parent folder of the output.
        name (str): Output folder under ``project``.

    Returns:
        (dict): Format -> ``file`` (the export), ``checked`` (False for OpenVINO computing in bf16) and its
            :func:`agreement` with ``model``.

    Raises:
        SystemExit: When an export disagrees with the weights beyond its tolerance.
    """
    from ultralytics import YOLO
    from ultralytics.utils import LOGGER

    from ultra_fer_mamba.evaluate import list_images

    given = {"model": model, "source": source}
    missing = [f"{k}={v}" for k, v in given.items() if str(v).startswith(TRAINED) and not Path(v).exists()]
    if missing:
        raise SystemExit(f"export: {' and '.join(missing)} not found: run `python examples/train_rafdb.py` first, "
                         "or pass model= and source=")
    save_dir = Path(project).resolve() / name
    save_dir.mkdir(parents=True, exist_ok=True)
    weights = save_dir / "best.pt"  # exports land beside their weights: keep them inside the run folder
    if Path(model).resolve() != weights:
        shutil.copyfile(model, weights)
    images = list_images(source)
    imgsz = imgsz or YOLO(str(weights)).overrides["imgsz"]
    ref = detections(YOLO(str(weights)), images, imgsz, conf)
    results = {}
    for fmt in formats.split(","):
        if fmt == "openvino" and importlib.util.find_spec("openvino") is None:
            LOGGER.warning("export: openvino is not installed (pip install openvino), skipping that format")
            continue
        file = YOLO(str(weights)).export(format=fmt, imgsz=imgsz, device="cpu")
        precision = openvino_precision() if fmt == "openvino" else "f32"
        r = results[fmt] = {"file": str(file), "checked": precision == "f32",
                            **agreement(ref, detections(YOLO(file), images, imgsz, conf), conf, tol)}
        verdict = "agrees" if r["ok"] else "DISAGREES"
        verdict = verdict if r["checked"] else f"not checked: OpenVINO runs in {precision}"
        LOGGER.info(f"export: {fmt} {file}: {r['matched']} of {r['detections']} detections matched on {len(images)} "
                    f"images, boxes within {r['box_rel']:.1e} relative, scores within {r['score_abs']:.1e} "
                    f"(tolerance {tol:g}): {verdict}")
    (save_dir / "agreement.json").write_text(json.dumps(results, indent=1))
    bad = [fmt for fmt, r in results.items() if r["checked"] and not r["ok"]]
    if bad:
        raise SystemExit(f"export: {', '.join(bad)} disagree(s) with {model}; see {save_dir / 'agreement.json'}")
    return results


def openvino_precision() -> str:
    """The precision OpenVINO's CPU plugin computes in by default here: ``f32``, or ``bf16`` where the CPU has it."""
    import openvino as ov

    return ov.Core().get_property("CPU", "INFERENCE_PRECISION_HINT").to_string()


if __name__ == "__main__":
    from ultra_fer_mamba.cli import parse_args

    main(**parse_args(sys.argv[1:]))
