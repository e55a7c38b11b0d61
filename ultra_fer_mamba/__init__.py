"""ultra-fer-mamba: FER-YOLO-Mamba (facial expression detection with selective-scan blocks) for Ultralytics.

Importing the package registers its modules with Ultralytics, so stock YAML parsing, training, validation,
prediction and export understand FERYOLOVSS1, FERYOLOVSS2, OSSM and ABMLP.

Examples:
    >>> import ultra_fer_mamba
    >>> from ultralytics import YOLO
    >>> model = YOLO("fer-yolo-mamba-n.yaml")
"""

__version__ = "0.1.0"

from .integration import register
from .nn import ABMLP, OSSM, FERYOLOVSS1, FERYOLOVSS2

register()
registered = True  # read by ultra_fer_mamba_hook

__all__ = ("ABMLP", "FERYOLOVSS1", "FERYOLOVSS2", "OSSM", "__version__", "register")
