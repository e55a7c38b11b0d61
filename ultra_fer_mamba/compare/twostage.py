"""A two-stage ``compare`` entry: a face detector and a crop classifier (``DET.yaml+CLS.yaml``) trained, scored as one.

``models=fer-yolo-mamba-s.yaml,yolov8n.yaml+lfnsb-cls.yaml`` puts the classic pipeline (find faces, then classify each
crop) beside one-stage expression detectors, with the same data, seeds and trainer arguments. Per seed, its run folder
holds::

    det/         the detector, trained on the data with single_cls=True (every face box one class)
    crops/       face crops of the data's splits (``convert format=crops``), the classifier's dataset
    cls/         the classifier, trained on crops/ with imgsz = the crops' size (112) and single_cls off
    faces.json   faces per image found on the scored split (detector confidence >= twostage.FACE_CONF)

Scoring: the :class:`~ultra_fer_mamba.twostage.TwoStage` predictor of the two ``best.pt`` through the same
:func:`~ultra_fer_mamba.evaluate.evaluate` as one-stage entries (VOC mAP50, F1, recall, precision). Ultralytics' ``val``
cannot run two models, so mAP50, mAP50-95 and the per-class AP50-95 are NaN (the report's "—"), and the row has no
learning curve (the detector's single-class curve would not be comparable).

Cost: ``params`` adds both models. Latency is what one image costs at the faces per image a deployment finds: the
detector's batch-1 latency at the comparison's imgsz plus ``faces_per_image`` times the classifier's batch-1 latency at
its own imgsz (each :func:`~ultra_fer_mamba.info.cpu_latency`: fused float32 forward passes, as for one-stage entries;
cutting the crops is not timed). GFLOPs add up the same way. ``detector_ms``, ``classifier_ms`` and
``faces_per_image`` are kept beside them.
"""

from __future__ import annotations

import json
from pathlib import Path

from ultra_fer_mamba.compare.entries import YoloEntry, evaluate_run, make_row, model_cost, training_log
from ultra_fer_mamba.twostage import FACE_CONF, TwoStage, split_spec

STAGES = ("det", "cls")  # sub-folders of a run: the detector's and the classifier's training runs
FACES = "faces.json"


class TwoStageEntry:
    """A face detector plus a crop classifier, trained per seed on the same data and scored as one expression detector.

    Args:
        name (str): Run name (folder names and report rows), e.g. ``yolov8n+lfnsb-cls``.
        spec (str): ``detector+classifier`` (model YAMLs or weights), split by ``twostage.split_spec``.

    Examples:
        >>> e = TwoStageEntry("yolov8n+lfnsb-cls", "yolov8n.yaml+lfnsb-cls.yaml")
        >>> e.detector.spec, e.classifier.spec, TwoStageEntry.accepts("yolov8n.yaml")
        ('yolov8n.yaml', 'lfnsb-cls.yaml', False)
    """

    def __init__(self, name: str, spec: str):
        self.name, self.spec = name, spec
        self.detector, self.classifier = (YoloEntry(name, part) for part in split_spec(spec))

    @staticmethod
    def accepts(spec: str) -> bool:
        """A ``detector+classifier`` spec."""
        return split_spec(spec) is not None

    def status(self, run_dir: Path, recorded: bool = False) -> str:
        """``done`` or ``new`` when both stages are, else ``partial``."""
        states = {self.detector.status(run_dir / "det", recorded), self.classifier.status(run_dir / "cls", recorded)}
        return states.pop() if len(states) == 1 else "partial"

    def train(self, run_dir: Path, args: dict, data: str, recorded: bool = False) -> None:
        """Train (or resume, or skip) the detector, cut the crops once, then train the classifier on them.

        Args:
            run_dir (Path): The seed's folder (``det/``, ``crops/``, ``cls/`` go inside).
            args (dict): The comparison's trainer arguments, seed included.
            data (str): Detection data YAML.
            recorded (bool): Whether ``state.json`` recorded this run as finished.
        """
        from ultra_fer_mamba.data.crops import crops

        self.detector.train(run_dir / "det", {**args, "single_cls": True}, data, recorded)
        folder = run_dir / "crops"
        if not (folder / "crops.yaml").is_file():  # written last: a folder without it is incomplete
            crops(data, str(folder))
        self.classifier.train(run_dir / "cls", classify_args(args, folder), str(folder), recorded)

    def measure(self, run_dir: Path, report_dir: Path, data: str, split: str, args: dict) -> dict:
        """Score the two ``best.pt`` together with the paper's protocol; record the faces per image (``faces.json``).

        Returns:
            (dict): One row (``entries`` module doc), NaN where only Ultralytics' ``val`` gives a number.
        """
        model = TwoStage(*(run_dir / s / "weights" / "best.pt" for s in STAGES))
        paper = evaluate_run(model, self.name, run_dir, report_dir, data, split, args)
        faces = {"faces_per_image": model.faces / max(model.images, 1), "conf": FACE_CONF, "split": split}
        (run_dir / FACES).write_text(json.dumps(faces, indent=1))
        logs = [training_log(run_dir / s / "results.csv") for s in STAGES]
        return make_row(run_dir, paper, epochs=logs[0][0], train_s=sum(t for _, t in logs))

    def cost(self, run_dir: Path, imgsz: int, latency_runs: int) -> dict:
        """Both models' parameters; GFLOPs and batch-1 CPU latency per image with one classifier call per face."""
        from ultralytics.utils import NUM_THREADS

        det, cls = (run_dir / s / "weights" / "best.pt" for s in STAGES)
        found = run_dir / FACES
        if not found.is_file():
            raise FileNotFoundError(f"{found} (faces per image, written when the run is scored) is missing; delete "
                                    f"this run's row from state.json to score it again")
        faces = json.loads(found.read_text())["faces_per_image"]
        a = model_cost(det, imgsz, latency_runs)
        b = model_cost(cls, TwoStage(det, cls).imgsz, latency_runs)
        return {"params": a["params"] + b["params"],
                **{k: a[k] + faces * b[k] for k in ("gflops", "gflops_with_scan", "latency_ms")},
                "threads": NUM_THREADS, "detector_ms": a["latency_ms"], "classifier_ms": b["latency_ms"],
                "faces_per_image": faces}  # fmt: skip


def classify_args(args: dict, crops: Path) -> dict:
    """The classifier's trainer arguments: the comparison's, with imgsz the crops' size and single_cls off.

    Examples:
        >>> import tempfile, yaml
        >>> folder = Path(tempfile.mkdtemp())
        >>> _ = (folder / "crops.yaml").write_text(yaml.safe_dump({"size": 112}))
        >>> classify_args({"imgsz": 320, "epochs": 10, "single_cls": True}, folder)
        {'imgsz': 112, 'epochs': 10, 'single_cls': False}
    """
    import yaml

    size = yaml.safe_load((crops / "crops.yaml").read_text())["size"]
    return {**args, "imgsz": int(size), "single_cls": False}
