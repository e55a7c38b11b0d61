"""The paper's detection metrics: VOC all-point AP50, and per-class F1, recall and precision at score 0.5.

FER-YOLO-Mamba (Ma et al., 2024) reports, per expression class, the VOC AP at IoU 0.5 and the F1, recall and
precision of the detections scoring at least 0.5 (its Table IV). This module computes exactly those numbers from plain
numpy arrays, so it can score any detector, not only an Ultralytics one.

Conventions (see ``docs/evaluation.md``):
    - Boxes are ``x1, y1, x2, y2`` in pixels; IoU is continuous (``w = x2 - x1``, no ``+1`` pixel).
    - Detections of one class are ranked by score over the whole data set; each one is matched to the ground-truth box
      of the same class and image that it overlaps most. It is a true positive when that IoU is ``>= iou`` and the box
      is still free, otherwise a false positive: a second detection of an already matched box is a false positive even
      when it overlaps another free box less (the VOC devkit rule).
    - AP is the VOC 2010+ all-point interpolated area under the precision envelope.
    - A class without ground truth gets ``NaN`` for AP, precision, recall and F1 and is left out of every mean.

Glossary of shapes: n = detections of an image, m = ground-truth boxes of an image, k = classes (``nc``).

Examples:
    >>> import numpy as np
    >>> preds = [np.array([[10, 10, 50, 50, 0.9, 3]])]
    >>> gts = [np.array([[10, 10, 50, 50, 3]])]
    >>> m = paper_metrics(preds, gts, nc=7)
    >>> m["ap50"][3], m["map50"]
    (1.0, 1.0)
"""

from __future__ import annotations

import math

import numpy as np

# recall grid on which the precision envelope is sampled for plots and reports (like VOC's 11 points, but 101)
RECALL_GRID = np.linspace(0.0, 1.0, 101)


def _as_rows(a, width: int) -> np.ndarray:
    """Return ``a`` as a float64 array of shape (rows, width); ``None`` or empty becomes (0, width)."""
    if a is None:
        return np.zeros((0, width))
    a = np.asarray(a.cpu() if hasattr(a, "cpu") else a, dtype=np.float64)
    if a.size == 0:
        return np.zeros((0, width))
    if a.ndim != 2 or a.shape[1] < width:
        raise ValueError(f"expected an array of shape (n, {width}), got {a.shape}")
    return a[:, :width]


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Continuous IoU between two sets of ``x1, y1, x2, y2`` boxes (no ``+1`` pixel convention).

    Args:
        a (np.ndarray): Boxes of shape (n, 4).
        b (np.ndarray): Boxes of shape (m, 4).

    Returns:
        (np.ndarray): IoU matrix of shape (n, m); 0 where the union is empty.

    Examples:
        >>> box_iou(np.array([[0, 0, 10, 10]]), np.array([[5, 0, 15, 10]])).round(4).tolist()
        [[0.3333]]
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])  # (n, m, 2) top-left of the intersection
    rb = np.minimum(a[:, None, 2:4], b[None, :, 2:4])  # (n, m, 2) bottom-right
    inter = np.clip(rb - lt, 0, None).prod(-1)  # (n, m)
    area_a = np.clip(a[:, 2:4] - a[:, :2], 0, None).prod(-1)  # (n,)
    area_b = np.clip(b[:, 2:4] - b[:, :2], 0, None).prod(-1)  # (m,)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def match_image(pred: np.ndarray, gt: np.ndarray, iou: float = 0.5) -> np.ndarray:
    """Mark each detection of one image as a true positive (VOC rule, all classes at once).

    A detection looks only at ground-truth boxes of its own class and takes the one it overlaps most. Among the
    detections whose best box is the same and whose IoU reaches ``iou``, only the highest scoring one is a true
    positive; the rest are duplicates (false positives). Ties in score keep the input order.

    Args:
        pred (np.ndarray): Detections (n, 6) ``x1, y1, x2, y2, score, cls``.
        gt (np.ndarray): Ground truth (m, 5) ``x1, y1, x2, y2, cls``.
        iou (float): IoU a match needs (``>=``).

    Returns:
        (np.ndarray): Boolean (n,) true-positive flags, in the input order of ``pred``.

    Examples:
        >>> gt = np.array([[0, 0, 10, 10, 0]])
        >>> match_image(np.array([[0, 0, 10, 10, 0.9, 0], [0, 0, 10, 9, 0.8, 0]]), gt).tolist()
        [True, False]
    """
    tp = np.zeros(len(pred), dtype=bool)
    if len(pred) == 0 or len(gt) == 0:
        return tp
    ious = box_iou(pred[:, :4], gt[:, :4])  # (n, m)
    ious = np.where(pred[:, 5:6] == gt[None, :, 4], ious, -1.0)  # other classes can never match
    best = ious.argmax(1)  # (n,) best box of each detection, taken or not
    hit = ious[np.arange(len(pred)), best] >= iou  # (n,)
    order = np.argsort(-pred[:, 4], kind="stable")  # detections by score
    cand = order[hit[order]]  # hits, best score first
    _, first = np.unique(best[cand], return_index=True)  # first (highest scoring) hit of each box
    tp[cand[first]] = True
    return tp


def match_detections(preds: list, gts: list, nc: int, iou: float = 0.5) -> dict:
    """Match every image's detections and pool them over the data set.

    Args:
        preds (list[np.ndarray]): One (n, 6) array per image, ``x1, y1, x2, y2, score, cls``.
        gts (list[np.ndarray]): One (m, 5) array per image, ``x1, y1, x2, y2, cls``.
        nc (int): Number of classes.
        iou (float): IoU a match needs.

    Returns:
        (dict): ``score`` (N,), ``cls`` (N,) int, ``tp`` (N,) bool for all N detections, and ``n_gt`` (k,) int.

    Examples:
        >>> d = match_detections([np.array([[0, 0, 9, 9, 0.7, 1]])], [np.array([[0, 0, 9, 9, 1]])], nc=2)
        >>> d["tp"].tolist(), d["n_gt"].tolist()
        ([True], [0, 1])
    """
    if len(preds) != len(gts):
        raise ValueError(f"preds has {len(preds)} images but gts has {len(gts)}")
    preds = [_as_rows(p, 6) for p in preds]
    gts = [_as_rows(g, 5) for g in gts]
    for name, arrays, col in (("preds", preds, 5), ("gts", gts, 4)):
        cls = np.concatenate([a[:, col] for a in arrays]) if arrays else np.zeros(0)
        if cls.size and ((cls < 0) | (cls >= nc) | (cls != np.round(cls))).any():
            raise ValueError(f"{name} holds class indices outside 0..{nc - 1}")
    tp = [match_image(p, g, iou) for p, g in zip(preds, gts)]
    cat = np.concatenate(preds) if preds else np.zeros((0, 6))
    gt_cls = np.concatenate([g[:, 4] for g in gts]).astype(int) if gts else np.zeros(0, int)
    return {
        "score": cat[:, 4],
        "cls": cat[:, 5].astype(int),
        "tp": np.concatenate(tp) if tp else np.zeros(0, bool),
        "n_gt": np.bincount(gt_cls, minlength=nc),
    }


def pr_curve(tp: np.ndarray, n_gt: int) -> tuple[np.ndarray, np.ndarray]:
    """Recall and precision after each detection, for one class ranked by score.

    Args:
        tp (np.ndarray): Boolean true-positive flags of the class's detections, best score first.
        n_gt (int): Number of ground-truth boxes of the class (> 0).

    Returns:
        recall (np.ndarray): Cumulative recall, same length as ``tp``.
        precision (np.ndarray): Cumulative precision, same length as ``tp``.

    Examples:
        >>> recall, precision = pr_curve(np.array([True, False, True]), 2)
        >>> recall.tolist(), precision.round(4).tolist()
        ([0.5, 0.5, 1.0], [1.0, 0.5, 0.6667])
    """
    ctp = np.cumsum(tp)
    return ctp / n_gt, ctp / np.arange(1, len(tp) + 1)


def voc_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """VOC all-point interpolated average precision: the area under the precision envelope.

    The envelope at recall r is the best precision reached at any recall >= r; the area is summed over the recall
    steps (no 11-point or 101-point sampling, no trapezoids).

    Args:
        recall (np.ndarray): Cumulative recall of the ranked detections.
        precision (np.ndarray): Cumulative precision of the ranked detections.

    Returns:
        (float): AP in [0, 1].

    Examples:
        >>> voc_ap(np.array([0.5, 0.5, 1.0]), np.array([1.0, 0.5, 2 / 3]))
        0.8333333333333333
    """
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = np.concatenate(([0.0], precision, [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]  # precision envelope
    step = np.flatnonzero(mrec[1:] != mrec[:-1])  # where recall changes
    return float(np.sum((mrec[step + 1] - mrec[step]) * mpre[step + 1]))


def sample_envelope(recall: np.ndarray, precision: np.ndarray, grid: np.ndarray = RECALL_GRID) -> np.ndarray:
    """Sample the precision envelope at fixed recall points (for plots and side-by-side reports).

    Args:
        recall (np.ndarray): Cumulative recall of the ranked detections.
        precision (np.ndarray): Cumulative precision of the ranked detections.
        grid (np.ndarray): Recall points, increasing.

    Returns:
        (np.ndarray): Best precision at recall >= each grid point; 0 beyond the highest recall reached.

    Examples:
        >>> sample_envelope(np.array([0.5, 1.0]), np.array([1.0, 0.5]), np.array([0.0, 0.5, 0.75, 1.0])).tolist()
        [1.0, 1.0, 0.5, 0.5]
    """
    env = np.concatenate((np.maximum.accumulate(precision[::-1])[::-1], [0.0]))
    return env[np.searchsorted(recall, grid, side="left")]


def _safe_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Element-wise a / b with 0 where b is 0."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return np.divide(a, b, out=np.zeros_like(a), where=b > 0)


def _nanmean(values: np.ndarray) -> float:
    """Mean of the finite values, NaN when there are none (without numpy's empty-slice warning)."""
    values = values[np.isfinite(values)]
    return float(values.mean()) if values.size else math.nan


def paper_metrics(preds: list, gts: list, nc: int, iou: float = 0.5, score: float = 0.5) -> dict:
    """Score detections the way the FER-YOLO-Mamba paper does (VOC AP50; F1, recall, precision at score 0.5).

    Every detection counts for AP, whatever its score; only detections scoring ``>= score`` count for the TP/FP/FN
    counts and the precision, recall and F1 read from them.

    Args:
        preds (list[np.ndarray]): One (n, 6) array per image, ``x1, y1, x2, y2, score, cls`` in pixels.
        gts (list[np.ndarray]): One (m, 5) array per image, ``x1, y1, x2, y2, cls`` in pixels.
        nc (int): Number of classes.
        iou (float): IoU a detection needs to match a box (``>=``).
        score (float): Score threshold for precision, recall, F1 and the counts (``>=``).

    Returns:
        (dict): Per-class lists (length ``nc``) ``ap50``, ``precision``, ``recall``, ``f1`` (fractions in [0, 1], NaN
            for classes without ground truth), ``tp``, ``fp``, ``fn``, ``n_gt``, ``n_det`` (ints; ``n_det`` counts all
            detections, the others only those at ``>= score``) and ``pr_curve`` (precision envelope sampled at
            ``pr_recall``); scalars ``map50``, ``mean_precision``, ``mean_recall``, ``mean_f1`` (means over classes
            with ground truth, NaN if none has any); and ``nc``, ``iou``, ``score``, ``n_images``.

    Examples:
        >>> import numpy as np
        >>> preds = [np.array([[0, 0, 10, 10, 0.9, 0], [20, 20, 30, 30, 0.3, 1]])]
        >>> gts = [np.array([[0, 0, 10, 10, 0], [20, 20, 30, 30, 1]])]
        >>> m = paper_metrics(preds, gts, nc=2)
        >>> m["ap50"], m["recall"], m["map50"]
        ([1.0, 1.0], [1.0, 0.0], 1.0)
    """
    d = match_detections(preds, gts, nc, iou)
    kept = d["score"] >= score
    tp_at = np.bincount(d["cls"][kept & d["tp"]], minlength=nc)  # (k,)
    det_at = np.bincount(d["cls"][kept], minlength=nc)  # (k,)
    n_gt = d["n_gt"]
    has_gt = n_gt > 0

    ap, curves = np.full(nc, math.nan), np.zeros((nc, len(RECALL_GRID)))
    for c in np.flatnonzero(has_gt):
        mine = np.flatnonzero(d["cls"] == c)
        mine = mine[np.argsort(-d["score"][mine], kind="stable")]  # ranked over all images
        recall, precision = pr_curve(d["tp"][mine], n_gt[c])
        ap[c] = voc_ap(recall, precision)
        curves[c] = sample_envelope(recall, precision)

    p = np.where(has_gt, _safe_div(tp_at, det_at), math.nan)
    r = np.where(has_gt, _safe_div(tp_at, n_gt), math.nan)
    f1 = np.where(has_gt, _safe_div(2 * p * r, np.nan_to_num(p + r)), math.nan)
    return {
        "nc": nc,
        "iou": iou,
        "score": score,
        "n_images": len(preds),
        "ap50": ap.tolist(),
        "precision": p.tolist(),
        "recall": r.tolist(),
        "f1": f1.tolist(),
        "tp": tp_at.tolist(),
        "fp": (det_at - tp_at).tolist(),
        "fn": (n_gt - tp_at).tolist(),
        "n_gt": n_gt.tolist(),
        "n_det": np.bincount(d["cls"], minlength=nc).tolist(),
        "map50": _nanmean(ap),
        "mean_precision": _nanmean(p),
        "mean_recall": _nanmean(r),
        "mean_f1": _nanmean(f1),
        "pr_recall": RECALL_GRID.tolist(),
        "pr_curve": curves.tolist(),
    }


def confusion_matrix(preds: list, gts: list, nc: int, iou: float = 0.5, score: float = 0.5) -> np.ndarray:
    """Detection confusion matrix at the paper's operating point (detections scoring ``>= score``).

    In each image, detections and boxes are paired regardless of class, highest IoU first, each at most once, if the
    IoU reaches ``iou``. A pair adds one to ``[true class, predicted class]``; a box left alone adds to
    ``[true class, nc]`` (missed, "background" column); a detection left alone adds to ``[nc, predicted class]``
    (false alarm, "background" row).

    Args:
        preds (list[np.ndarray]): One (n, 6) array per image, ``x1, y1, x2, y2, score, cls``.
        gts (list[np.ndarray]): One (m, 5) array per image, ``x1, y1, x2, y2, cls``.
        nc (int): Number of classes.
        iou (float): IoU a pair needs.
        score (float): Lowest score of a detection taken into account.

    Returns:
        (np.ndarray): Integer counts of shape (nc + 1, nc + 1), rows true class, columns predicted class.

    Examples:
        >>> cm = confusion_matrix([np.array([[0, 0, 10, 10, 0.9, 1]])], [np.array([[0, 0, 10, 10, 0]])], nc=2)
        >>> cm.tolist()
        [[0, 1, 0], [0, 0, 0], [0, 0, 0]]
    """
    cm = np.zeros((nc + 1, nc + 1), dtype=np.int64)
    for pred, gt in zip(preds, gts):
        pred, gt = _as_rows(pred, 6), _as_rows(gt, 5)
        pred = pred[pred[:, 4] >= score]
        pc, gc = pred[:, 5].astype(int), gt[:, 4].astype(int)
        ious = box_iou(pred[:, :4], gt[:, :4])  # (n, m)
        di, gi = _greedy_pairs(ious, iou)
        np.add.at(cm, (gc[gi], pc[di]), 1)
        np.add.at(cm, (np.delete(gc, gi), nc), 1)  # missed boxes
        np.add.at(cm, (nc, np.delete(pc, di)), 1)  # unmatched detections
    return cm


def _greedy_pairs(ious: np.ndarray, iou: float) -> tuple[np.ndarray, np.ndarray]:
    """Pair rows and columns of an IoU matrix greedily, highest IoU first, each at most once, IoU >= ``iou``."""
    di, gi = np.nonzero(ious >= iou)  # candidate pairs
    order = np.argsort(-ious[di, gi], kind="stable")
    used_d, used_g, keep = set(), set(), []
    for k in order:  # few candidates per image: a plain loop keeps the greedy rule exact
        if di[k] not in used_d and gi[k] not in used_g:
            used_d.add(di[k])
            used_g.add(gi[k])
            keep.append(k)
    keep = np.asarray(keep, dtype=int)
    return di[keep], gi[keep]
