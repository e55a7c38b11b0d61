"""LFNSB's Cosine-Harmony loss (SPEC section 8) and the classification criterion that adds it to cross-entropy.

Shape letters: b batch, d features, k classes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def cosine_harmony(features: torch.Tensor, labels: torch.Tensor, centres: torch.Tensor, alpha: float = 0.1
                   ) -> torch.Tensor:
    """LFNSB's Cosine-Harmony loss of pooled features against their class centres, computed in float32.

    With the adjusted cosine distance d(f, c) = 1 - cos(f - mean(f), c - mean(c)) (means over the d features) and
    S = sum_i d(f_i, c_{y_i}): intra = S / b, inter = S / (b (k - 1)) (LFNSB's code: the same own-class sum, not a
    distance to the other classes), var = sum over features of the unbiased batch variance of f, and
    loss = alpha * intra / var + (1 - alpha) * inter. A batch of one sample has no variance: its loss is the inter
    term alone.

    Args:
        features (torch.Tensor): Pooled features (b, d).
        labels (torch.Tensor): Class ids (b,).
        centres (torch.Tensor): Class centres (k, d), k >= 2.
        alpha (float): Balance of the intra (variance-scaled) and inter terms.

    Returns:
        (torch.Tensor): The scalar loss.

    Examples:
        >>> f, c = torch.tensor([[1.0, 2.0, 3.0], [2.0, 2.0, 5.0]]), torch.tensor([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]])
        >>> cosine_harmony(f, torch.tensor([0, 0]), c)  # S = 0 + (1 - 3 / sqrt(12)); var = 0.5 + 0 + 2
        tensor(0.0630)
    """
    k = centres.shape[0]
    if k < 2:
        raise ValueError(f"cosine_harmony needs at least 2 classes, got centres of shape {tuple(centres.shape)}")
    f, c = features.float(), centres.float()[labels.long()]  # (b, d), each sample's own centre
    b = f.shape[0]
    d = 1 - F.cosine_similarity(f - f.mean(1, keepdim=True), c - c.mean(1, keepdim=True), dim=1)  # (b,)
    s = d.sum()
    inter = s / (b * (k - 1))
    if b < 2:
        return (1 - alpha) * inter
    intra = s / b
    return alpha * intra / f.var(0).sum() + (1 - alpha) * inter


class CosineHarmonyCriterion:
    """Cross-entropy plus ``harmony`` x Cosine-Harmony, for a model ending in ``SpatialBiasClassify``.

    Called like Ultralytics' ``v8ClassificationLoss`` (predictions, batch), whose cross-entropy it adds to; the features
    and centres come from the head, which keeps the pooled input of its last forward. Loss items: ``ce`` and ``ch``
    (the unweighted term) where Ultralytics names its loss items (8.4), else the one total like Ultralytics' own.

    Args:
        head (SpatialBiasClassify): The model's head (with ``centres``, ``features``, ``harmony`` and ``alpha``).
    """

    def __init__(self, head):
        from ultralytics.utils.loss import v8ClassificationLoss

        self.head, self.cross_entropy = head, v8ClassificationLoss()

    def __call__(self, preds, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor] | torch.Tensor]:
        """Return the total loss and its items for logits (training) or a (probs, logits) tuple (eval)."""
        features, self.head.features = self.head.features, None
        logits = preds[1] if isinstance(preds, (list, tuple)) else preds
        if features is None or features.shape[0] != logits.shape[0]:
            raise RuntimeError("CosineHarmonyCriterion needs the features of the forward that made these predictions")
        ce, items = self.cross_entropy(preds, batch)
        ch = cosine_harmony(features, batch["cls"], self.head.centres, self.head.alpha)
        total = ce + self.head.harmony * ch
        return total, {"ce": ce.detach(), "ch": ch.detach()} if isinstance(items, dict) else total.detach()
