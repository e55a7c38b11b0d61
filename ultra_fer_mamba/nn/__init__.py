"""nn.Modules of FER-YOLO-Mamba (ABMLP, OSSM, FERYOLOVSS1, FERYOLOVSS2) and of LFNSB, the crop classifier."""

from .abmlp import ABMLP
from .lfnsb import CoordinateAttention, MixConv, MixDW, RepDW
from .ossm import OSSM
from .spatial_bias import SpatialBiasClassify
from .vss import FERYOLOVSS1, FERYOLOVSS2

__all__ = ("ABMLP", "FERYOLOVSS1", "FERYOLOVSS2", "OSSM", "CoordinateAttention", "MixConv", "MixDW", "RepDW",
           "SpatialBiasClassify")
