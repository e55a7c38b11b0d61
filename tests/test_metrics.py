"""Hand-worked checks of ``ultra_fer_mamba.metrics`` (the paper's VOC AP50 and F1/P/R at score 0.5).

Every expected number below is worked out by hand in the comments; no number comes from running the code.
Boxes are ``x1, y1, x2, y2`` in pixels; detections add ``score, cls``, ground truth adds ``cls``.
"""

import math

import numpy as np
import pytest
import torch

from ultra_fer_mamba.metrics import box_iou, confusion_matrix, paper_metrics, voc_ap

NC = 7
BOX = [0, 0, 10, 10]  # area 100


def det(box, score, cls):
    """One detection row."""
    return [*box, score, cls]


def gt(box, cls):
    """One ground-truth row."""
    return [*box, cls]


def arr(*rows, width):
    """Rows as an (n, width) float array, (0, width) when empty."""
    return np.array(rows, dtype=float).reshape(-1, width)


def test_iou_is_continuous_and_threshold_inclusive():
    # [0,0,10,10] vs [5,0,15,10]: intersection 5*10 = 50, union 100 + 100 - 50 = 150 -> 1/3.
    # (The +1-pixel convention of the original code would give 6*11 / (121 + 121 - 66) = 0.375.)
    assert box_iou(np.array([BOX]), np.array([[5, 0, 15, 10]]))[0, 0] == pytest.approx(1 / 3)
    # [0,0,10,5] inside [0,0,10,10]: 50 / 100 = 0.5 exactly, which must count as a match (IoU >= 0.5).
    m = paper_metrics([arr(det([0, 0, 10, 5], 0.9, 0), width=6)], [arr(gt(BOX, 0), width=5)], NC)
    assert m["tp"][0] == 1 and m["ap50"][0] == 1.0


def test_perfect_detections():
    # Two images, every box found exactly with one detection: each class has recall 1 at precision 1 -> AP 1,
    # and at score >= 0.5 P = R = F1 = 1. Classes 0 (2 boxes) and 3 (1 box) have ground truth; the other five don't.
    gts = [arr(gt(BOX, 0), gt([20, 20, 40, 50], 3), width=5), arr(gt([5, 5, 30, 30], 0), width=5)]
    preds = [arr(det(BOX, 0.9, 0), det([20, 20, 40, 50], 0.8, 3), width=6), arr(det([5, 5, 30, 30], 0.7, 0), width=6)]
    m = paper_metrics(preds, gts, NC)
    for c in (0, 3):
        assert (m["ap50"][c], m["precision"][c], m["recall"][c], m["f1"][c]) == (1.0, 1.0, 1.0, 1.0)
    assert m["tp"][0] == 2 and m["tp"][3] == 1 and sum(m["fp"]) == 0 and sum(m["fn"]) == 0
    assert m["map50"] == 1.0 and m["mean_f1"] == 1.0 and m["mean_recall"] == 1.0 and m["mean_precision"] == 1.0
    assert m["n_gt"] == [2, 0, 0, 1, 0, 0, 0]


def test_duplicate_detection_is_false_positive():
    # One box of class 0, found twice: 0.9 (IoU 1) is the TP, 0.8 (IoU 90/100 = 0.9) hits the same box -> FP.
    # Ranked: TP, FP -> recall [1, 1], precision [1, 1/2]; the envelope at recall 1 is max(1, 1/2) = 1 -> AP = 1.
    # At score >= 0.5: TP 1, FP 1, FN 0 -> P = 1/2, R = 1, F1 = 2 * (1/2) * 1 / (3/2) = 2/3.
    preds = [arr(det(BOX, 0.9, 0), det([0, 0, 10, 9], 0.8, 0), width=6)]
    m = paper_metrics(preds, [arr(gt(BOX, 0), width=5)], NC)
    assert m["ap50"][0] == pytest.approx(1.0)
    assert (m["tp"][0], m["fp"][0], m["fn"][0]) == (1, 1, 0)
    assert m["precision"][0] == pytest.approx(0.5) and m["recall"][0] == 1.0 and m["f1"][0] == pytest.approx(2 / 3)


def test_duplicate_of_taken_box_stays_false_positive_even_near_a_free_box():
    # VOC rule: a detection takes the box it overlaps most; if that box is taken, it is a FP even if another free box
    # overlaps it >= 0.5. Boxes A = [0,0,10,10] and B = [2,0,12,10] (class 0). Detection 2 = A again:
    # IoU with A = 1 (taken by detection 1), with B = 8*10 / (100 + 100 - 80) = 2/3 >= 0.5, still FP.
    # Ranked: TP, FP, n_gt = 2 -> recall [1/2, 1/2], precision [1, 1/2] -> AP = 1/2 * 1 = 0.5.
    # At score >= 0.5: TP 1, FP 1, FN 1 -> P = 1/2, R = 1/2, F1 = 1/2.
    preds = [arr(det(BOX, 0.9, 0), det(BOX, 0.8, 0), width=6)]
    m = paper_metrics(preds, [arr(gt(BOX, 0), gt([2, 0, 12, 10], 0), width=5)], NC)
    assert m["ap50"][0] == pytest.approx(0.5)
    assert (m["tp"][0], m["fp"][0], m["fn"][0]) == (1, 1, 1)
    assert m["precision"][0] == m["recall"][0] == m["f1"][0] == pytest.approx(0.5)


def test_wrong_class_detection_and_classes_without_ground_truth():
    # A Fear (2) face detected as Neutral (4) on the right box.
    # Class 2: 1 box, no detection of its class -> AP 0, TP 0, FP 0, FN 1 -> P = 0 (0/0 taken as 0), R = 0, F1 = 0.
    # Class 4: no ground truth -> AP, P, R, F1 are NaN, but its FP is still counted (1).
    # Classes 0, 1, 3, 5, 6: no ground truth, no detection -> NaN and zero counts.
    # mAP50 is the mean over classes with ground truth = class 2 only = 0; the other means are 0 too.
    m = paper_metrics([arr(det(BOX, 0.9, 4), width=6)], [arr(gt(BOX, 2), width=5)], NC)
    assert (m["ap50"][2], m["precision"][2], m["recall"][2], m["f1"][2]) == (0.0, 0.0, 0.0, 0.0)
    assert (m["tp"][2], m["fp"][2], m["fn"][2]) == (0, 0, 1)
    assert (m["tp"][4], m["fp"][4], m["fn"][4]) == (0, 1, 0)
    for c in (0, 1, 3, 4, 5, 6):
        assert all(math.isnan(m[k][c]) for k in ("ap50", "precision", "recall", "f1"))
    assert m["map50"] == 0.0 and m["mean_f1"] == 0.0 and m["mean_precision"] == 0.0


def test_missed_face():
    # Two Disgust (1) boxes, only the first detected (0.9, exact).
    # Ranked: TP; n_gt = 2 -> recall [1/2], precision [1] -> AP = 1/2 * 1 = 0.5.
    # At score >= 0.5: TP 1, FP 0, FN 1 -> P = 1, R = 1/2, F1 = 2 * 1 * (1/2) / (3/2) = 2/3.
    gts = [arr(gt(BOX, 1), gt([50, 50, 80, 90], 1), width=5)]
    m = paper_metrics([arr(det(BOX, 0.9, 1), width=6)], gts, NC)
    assert m["ap50"][1] == pytest.approx(0.5)
    assert (m["tp"][1], m["fp"][1], m["fn"][1]) == (1, 0, 1)
    assert m["precision"][1] == 1.0 and m["recall"][1] == 0.5 and m["f1"][1] == pytest.approx(2 / 3)


def test_two_images_with_interleaved_scores():
    # Class 0. Image A: box a. Image B: boxes b1, b2. Detections (score, outcome):
    #   A: 0.95 on a -> TP, 0.70 on nothing -> FP;  B: 0.90 on b1 -> TP, 0.60 on b2 -> TP, 0.40 on nothing -> FP.
    # Ranked over both images: 0.95 TP, 0.90 TP, 0.70 FP, 0.60 TP, 0.40 FP; n_gt = 3.
    #   cumulative TP 1 2 2 3 3, FP 0 0 1 1 2
    #   recall    1/3  2/3  2/3  1    1
    #   precision 1    1    2/3  3/4  3/5
    #   envelope  1    1    3/4  3/4  3/5   (best precision at any later rank)
    # AP = (1/3 - 0) * 1 + (2/3 - 1/3) * 1 + (1 - 2/3) * 3/4 = 1/3 + 1/3 + 1/4 = 11/12.
    # At score >= 0.5: 0.95, 0.90, 0.70, 0.60 -> TP 3, FP 1, FN 0 -> P = 3/4, R = 1, F1 = 2 * 3/4 / (7/4) = 6/7.
    gts = [arr(gt(BOX, 0), width=5), arr(gt([0, 0, 20, 20], 0), gt([40, 40, 60, 60], 0), width=5)]
    preds = [
        arr(det(BOX, 0.95, 0), det([100, 100, 120, 120], 0.70, 0), width=6),
        arr(det([0, 0, 20, 20], 0.90, 0), det([40, 40, 60, 60], 0.60, 0), det([90, 0, 99, 9], 0.40, 0), width=6),
    ]
    m = paper_metrics(preds, gts, NC)
    assert m["ap50"][0] == pytest.approx(11 / 12)
    assert (m["tp"][0], m["fp"][0], m["fn"][0], m["n_det"][0]) == (3, 1, 0, 5)
    assert m["precision"][0] == pytest.approx(0.75) and m["recall"][0] == 1.0 and m["f1"][0] == pytest.approx(6 / 7)
    assert m["map50"] == pytest.approx(11 / 12)  # class 0 is the only class with ground truth


def test_low_scores_count_for_ap_but_not_for_f1_precision_recall():
    # Happy (3): one box found exactly but at score 0.3, plus a 0.2 false alarm elsewhere.
    # AP ranks every detection: TP then FP -> recall [1, 1], precision [1, 1/2] -> AP = 1.
    # At score >= 0.5 nothing is left: TP 0, FP 0, FN 1 -> P = 0 (0/0 as 0), R = 0, F1 = 0.
    preds = [arr(det(BOX, 0.3, 3), det([50, 50, 60, 60], 0.2, 3), width=6)]
    m = paper_metrics(preds, [arr(gt(BOX, 3), width=5)], NC)
    assert m["ap50"][3] == 1.0
    assert (m["tp"][3], m["fp"][3], m["fn"][3], m["n_det"][3]) == (0, 0, 1, 2)
    assert (m["precision"][3], m["recall"][3], m["f1"][3]) == (0.0, 0.0, 0.0)
    # the score threshold is a parameter: at 0.25 the 0.3 detection is in -> P = R = F1 = 1
    m = paper_metrics(preds, [arr(gt(BOX, 3), width=5)], NC, score=0.25)
    assert (m["precision"][3], m["recall"][3], m["f1"][3]) == (1.0, 1.0, 1.0)


def test_map_averages_only_classes_with_ground_truth():
    # Class 0: AP 1 (exact hit). Class 5: AP 0 (missed). Class 6: no ground truth, one false alarm -> NaN, excluded.
    # mAP50 = (1 + 0) / 2 = 0.5, not (1 + 0 + 0) / 3. Mean F1 = (1 + 0) / 2 = 0.5.
    preds = [arr(det(BOX, 0.9, 0), det([50, 50, 60, 60], 0.9, 6), width=6)]
    gts = [arr(gt(BOX, 0), gt([20, 20, 30, 30], 5), width=5)]
    m = paper_metrics(preds, gts, NC)
    assert m["map50"] == pytest.approx(0.5) and m["mean_f1"] == pytest.approx(0.5)
    assert math.isnan(m["ap50"][6]) and m["fp"][6] == 1


def test_empty_inputs_and_tensors():
    # No ground truth anywhere: every per-class value and every mean is NaN; images without detections are fine.
    m = paper_metrics([np.zeros((0, 6)), None], [np.zeros((0, 5)), np.zeros((0, 5))], NC)
    assert math.isnan(m["map50"]) and all(math.isnan(v) for v in m["ap50"]) and m["n_images"] == 2
    # torch tensors are accepted as well as numpy arrays
    m = paper_metrics([torch.tensor([det(BOX, 0.9, 0)])], [torch.tensor([gt(BOX, 0)])], NC)
    assert m["map50"] == 1.0


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match="class indices"):
        paper_metrics([arr(det(BOX, 0.9, 7), width=6)], [arr(gt(BOX, 0), width=5)], NC)
    with pytest.raises(ValueError, match="images"):
        paper_metrics([arr(det(BOX, 0.9, 0), width=6)], [], NC)


def test_voc_ap_all_point_interpolation():
    # recall [0.5, 0.5, 1], precision [1, 0.5, 2/3] -> envelope [1, 2/3, 2/3] -> AP = 0.5 * 1 + 0.5 * 2/3 = 5/6.
    # (An 11-point or 101-point sample would give other values; VOC 2010+ uses the exact area.)
    assert voc_ap(np.array([0.5, 0.5, 1.0]), np.array([1.0, 0.5, 2 / 3])) == pytest.approx(5 / 6)
    assert voc_ap(np.zeros(0), np.zeros(0)) == 0.0


def test_pr_curve_sampled_envelope_matches_ap():
    # For the interleaved example the envelope is 1 up to recall 2/3, then 3/4 up to recall 1.
    gts = [arr(gt(BOX, 0), gt([0, 0, 20, 20], 0), gt([40, 40, 60, 60], 0), width=5)]
    preds = [arr(det(BOX, 0.95, 0), det([0, 0, 20, 20], 0.9, 0), det([90, 90, 99, 99], 0.7, 0),
                 det([40, 40, 60, 60], 0.6, 0), width=6)]  # fmt: skip
    m = paper_metrics(preds, gts, NC)
    grid, curve = np.array(m["pr_recall"]), np.array(m["pr_curve"][0])
    assert curve[grid <= 2 / 3 - 1e-9].min() == 1.0 and curve[grid > 2 / 3 + 1e-9].max() == 0.75
    assert not any(m["pr_curve"][1])  # a class without ground truth has an all-zero curve


def test_confusion_matrix():
    # Image 1: Anger box found as Anger (diagonal), Sad box found as Happy (off-diagonal),
    #          a Fear box not found (-> background column), a 0.9 Neutral false alarm (-> background row),
    #          and a 0.3 Surprise false alarm ignored (below score 0.5).
    gts = [arr(gt(BOX, 0), gt([20, 20, 40, 40], 5), gt([60, 60, 80, 80], 2), width=5)]
    preds = [arr(det(BOX, 0.9, 0), det([20, 20, 40, 39], 0.8, 3), det([100, 0, 120, 20], 0.9, 4),
                 det([0, 60, 20, 80], 0.3, 6), width=6)]  # fmt: skip
    cm = confusion_matrix(preds, gts, NC)
    assert cm.shape == (8, 8) and cm.sum() == 4
    assert cm[0, 0] == 1 and cm[5, 3] == 1 and cm[2, 7] == 1 and cm[7, 4] == 1
