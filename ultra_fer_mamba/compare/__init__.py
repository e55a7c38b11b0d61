"""``fer-yolo-mamba compare``: train several detectors identically over several seeds and report them side by side.

Every model is trained by Ultralytics' stock trainer once per seed with the same trainer arguments, then scored on the
same split twice: with the paper's protocol (:func:`ultra_fer_mamba.evaluate.evaluate`) and with Ultralytics' own
``val`` (mAP50, mAP50-95), both at conf 0.001 and NMS IoU 0.65. The report gives mean ± sd over seeds per model and per
class, each model's paired difference to the first with a t-interval, learning curves, and size and CPU latency.

Modules: ``args`` (trainer arguments, seeds, settings), ``entries`` (what is trained and scored), ``twostage`` (a face
detector plus a crop classifier as one entry), ``state`` (the report folder, resuming), ``stats`` and ``summary``
(numbers over seeds), ``report`` (Markdown, JSON, plots, doc blocks), ``runner`` (the run loop).
"""

from ultra_fer_mamba.compare.entries import YoloEntry, parse_models, training_status
from ultra_fer_mamba.compare.runner import ENTRY_TYPES, compare, make_entries
from ultra_fer_mamba.compare.state import find_report_dir, load_state, save_state
from ultra_fer_mamba.compare.twostage import TwoStageEntry

__all__ = ("ENTRY_TYPES", "TwoStageEntry", "YoloEntry", "compare", "find_report_dir", "load_state", "make_entries",
           "parse_models", "save_state", "training_status")
