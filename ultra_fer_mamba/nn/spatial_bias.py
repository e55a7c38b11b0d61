"""LFNSB's Spatial Bias classification head (SPEC section 8), with its Cosine-Harmony class centres."""

from __future__ import annotations

import torch
import torch.nn as nn
from ultralytics.nn.modules import Classify, Conv


def pool2x2(x: torch.Tensor) -> torch.Tensor:
    """Average pool (b, c, h, w) to (b, c, 4): the 2x2 cells of ``nn.AdaptiveAvgPool2d(2)``, row-major.

    Written with slices of fixed size so ONNX export works when h or w is odd (7x7 maps at imgsz 112), which the
    exporter's adaptive pooling rejects.

    Examples:
        >>> x = torch.randn(2, 3, 7, 5, generator=torch.Generator().manual_seed(0))
        >>> torch.allclose(pool2x2(x), nn.AdaptiveAvgPool2d(2)(x).flatten(2), atol=1e-6)
        True
    """
    h, w = x.shape[2], x.shape[3]
    rows, cols = ((0, (h + 1) // 2), (h // 2, h)), ((0, (w + 1) // 2), (w // 2, w))
    return torch.stack([x[:, :, r0:r1, c0:c1].mean((2, 3)) for r0, r1 in rows for c0, c1 in cols], 2)


class SpatialBiasClassify(Classify):
    """LFNSB's Spatial Bias head, a drop-in for Ultralytics' ``Classify`` (same outputs, ``linear`` and ``export``).

    1x1 conv c1 -> c_ + BN + ReLU, average pool to 2x2, the 4 cells as the channels of a Conv1d(4, 4, k=3) sliding
    along the c_ features (b, 4, c_ - 2), flatten, Linear(4 (c_ - 2), c2). Outputs follow ``Classify``: logits in
    training; in eval a (softmax, logits) tuple, or the softmax alone when ``export`` is set.

    With ``harmony > 0`` the head holds the (c2, c1) class ``centres`` of the Cosine-Harmony loss as parameters (the
    stock optimizer trains them, checkpoints keep them) and keeps the globally pooled input of its last forward in
    ``features`` for that loss to read; ``harmony`` is the loss weight beside cross-entropy, ``alpha`` its balance.
    ``features`` is never pickled or copied with the module.

    Args:
        c1 (int): Input channels (256 in LFNSB).
        c2 (int): Classes.
        c_ (int): Channels of the 1x1 conv (66 in LFNSB: 4 cells x 64 features = 256 into the Linear).
        harmony (float): Weight of the Cosine-Harmony loss; 0 turns it off (no centres, cross-entropy alone).
        alpha (float): Cosine-Harmony's balance of its intra-class and inter-class terms.

    Examples:
        >>> head = SpatialBiasClassify(256, 7)
        >>> head(torch.randn(1, 256, 7, 7)).shape  # training: logits, batch 1 included
        torch.Size([1, 7])
        >>> probs, logits = head.eval()(torch.randn(1, 256, 7, 7))
        >>> probs.shape, head.features.shape, head.centres.shape
        (torch.Size([1, 7]), torch.Size([1, 256]), torch.Size([7, 256]))
    """

    TRANSIENT = ("features",)  # state of one forward, kept out of pickles and deep copies

    def __init__(self, c1: int, c2: int, c_: int = 66, harmony: float = 1.0, alpha: float = 0.1):
        nn.Module.__init__(self)  # Classify's own layers (a 1280-channel conv) are not built
        if c_ < 3 or harmony < 0:
            raise ValueError(f"SpatialBiasClassify needs c_ >= 3 and harmony >= 0, got c_={c_}, harmony={harmony}")
        self.conv = Conv(c1, c_, 1, act=nn.ReLU())
        self.bias = nn.Conv1d(4, 4, 3)
        self.linear = nn.Linear(4 * (c_ - 2), c2)
        self.harmony, self.alpha = float(harmony), float(alpha)
        self.centres = nn.Parameter(torch.randn(c2, c1)) if harmony else None
        self.features = None

    def forward(self, x: list[torch.Tensor] | torch.Tensor) -> torch.Tensor | tuple:
        """x (b, c1, h, w) -> logits (b, c2) in training; (softmax, logits) in eval; softmax when exporting."""
        if isinstance(x, list):
            x = torch.cat(x, 1)
        if self.centres is not None and not self.export:
            self.features = x.mean((2, 3))  # (b, c1), read by the Cosine-Harmony criterion
        y = self.conv(x)  # (b, c_, h, w)
        y = self.bias(pool2x2(y).transpose(1, 2))  # (b, 4, c_) -> (b, 4, c_ - 2)
        y = self.linear(y.flatten(1))  # (b, c2)
        if self.training:
            return y
        p = y.softmax(1)
        return p if self.export else (p, y)

    def __setattr__(self, name: str, value) -> None:
        """Keep one centre per class: a new ``linear`` with another class count (Ultralytics' ``reshape_outputs``,
        when a checkpoint is trained on data with other classes) brings freshly initialised centres."""
        super().__setattr__(name, value)
        centres = self.__dict__["_parameters"].get("centres") if name == "linear" else None
        if centres is not None and centres.shape[0] != value.out_features:
            self.centres = nn.Parameter(torch.randn(value.out_features, centres.shape[1]).to(centres))

    def no_weight_decay_parameters(self) -> list[nn.Parameter]:
        """The centres: the loss sees only their direction, so weight decay would only shrink them (and grow their
        steps)."""
        return [] if self.centres is None else [self.centres]

    def __getstate__(self):
        state = self.__dict__.copy()
        for name in self.TRANSIENT:
            state[name] = None
        return state

    def extra_repr(self) -> str:
        return f"harmony={self.harmony}, alpha={self.alpha}" if self.harmony else "harmony=0"
