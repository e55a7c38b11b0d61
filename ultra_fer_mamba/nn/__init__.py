"""nn.Modules of FER-YOLO-Mamba: ABMLP, OSSM, FERYOLOVSS1, FERYOLOVSS2."""

from .abmlp import ABMLP
from .ossm import OSSM
from .vss import FERYOLOVSS1, FERYOLOVSS2

__all__ = ("ABMLP", "FERYOLOVSS1", "FERYOLOVSS2", "OSSM")
