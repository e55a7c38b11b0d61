"""Two-stage facial-expression detection: a single-class face detector, then a crop classifier (LFNSB) per face.

``TwoStage`` answers ``predict`` like an Ultralytics ``YOLO`` detector, with the same ``Results`` (boxes ``x1, y1,
x2, y2, score, cls``), so :func:`ultra_fer_mamba.evaluate.evaluate` scores it with the paper's metrics unchanged.
Each detected face is cut out as the crop classifier was trained (``data/crops.py``: the ``margin``, ``size`` and
``align`` recorded in the crops folder's ``crops.yaml``), classified, and reported once, as its most probable
expression with

    score = detector confidence x classifier probability of that expression,

so a face ranks high only when it is surely a face and surely that expression (the counterpart of a one-stage
detector's class score). Class ids follow ``names`` (the data's order), whatever order the classifier's folders had.

Examples:
    >>> from ultra_fer_mamba.twostage import TwoStage
    >>> model = TwoStage("runs/detect/faces/weights/best.pt", "runs/classify/lfnsb/weights/best.pt")  # doctest: +SKIP
    >>> for r in model.predict("photos/", conf=0.25):  # doctest: +SKIP
    ...     print(r.boxes.cls, r.boxes.conf)

    $ fer-yolo-mamba eval model=runs/detect/faces/weights/best.pt+runs/classify/lfnsb/weights/best.pt data=data.yaml
"""

from __future__ import annotations

from pathlib import Path

import torch

from ultra_fer_mamba.data.crops import MARGIN, SIZE, best_landmarks, crop_face

FACE_CONF = 0.25  # detector confidence at which a face counts towards the classifier calls of the latency
MODEL_SUFFIXES = (".pt", ".yaml", ".yml", ".onnx", ".torchscript", ".engine")


def split_spec(spec: str) -> tuple[str, str] | None:
    """Split ``detector+classifier`` at the first ``+`` that ends a model file name; None if there is none.

    Folder names may hold ``+`` too (compare names a two-stage run ``det+cls``), so only a ``+`` right after a model
    file suffix separates the two.

    Examples:
        >>> split_spec("runs/d+c/det/weights/best.pt+runs/d+c/cls/weights/best.pt")
        ('runs/d+c/det/weights/best.pt', 'runs/d+c/cls/weights/best.pt')
        >>> split_spec("yolov8n.yaml+lfnsb-cls.yaml"), split_spec("runs/a+b/best.pt")
        (('yolov8n.yaml', 'lfnsb-cls.yaml'), None)
    """
    for i, c in enumerate(spec):
        if c == "+" and spec[:i].lower().endswith(MODEL_SUFFIXES) and spec[i + 1 :].strip():
            return spec[:i].strip(), spec[i + 1 :].strip()
    return None


def crop_settings(classifier) -> dict:
    """How a classifier's training crops were made: ``crops.yaml`` of its data folder (``data/crops.py``).

    Returns:
        (dict): ``margin``, ``size`` (of the crops), ``align``, ``names`` (the detection data's class order, or None)
            and ``imgsz`` (the classifier's training size); the converter's defaults where there is no crops.yaml.
    """
    import yaml

    args = getattr(classifier, "overrides", {}) or {}
    imgsz = int(args.get("imgsz") or SIZE)
    found = Path(str(args.get("data", ""))) / "crops.yaml"
    made = yaml.safe_load(found.read_text()) if args.get("data") and found.is_file() else {}
    return {"margin": float(made.get("margin", MARGIN)), "size": int(made.get("size", imgsz)),
            "align": bool(made.get("align", False)), "names": made.get("names"), "imgsz": imgsz}  # fmt: skip


class TwoStage:
    """A face detector and a crop classifier that predict together like one ``YOLO`` expression detector.

    Args:
        detector (str | Path | ultralytics.YOLO): Face detector weights (any classes: every box is a face candidate).
        classifier (str | Path | ultralytics.YOLO): Crop classifier weights (``yolo classify``, e.g. lfnsb-cls).
        names (list[str] | dict[int, str] | None): Class names in the order the results should use (a data YAML's);
            None takes the order of the data the crops came from (``crops.yaml``), else the classifier's own. Every
            classifier class must be among them.
        margin (float | None): Crop margin; None reads it from the classifier's crops folder (``crop_settings``).
        align (bool | None): Align crops by MTCNN landmarks; None reads it likewise.

    Attributes:
        faces, images (int): Faces (detector confidence >= ``FACE_CONF``) and images seen by ``predict``: the mean
            number of classifier calls per image that a deployment at that threshold makes.
    """

    task = "detect"

    def __init__(self, detector, classifier, names=None, margin: float | None = None, align: bool | None = None):
        from ultralytics import YOLO

        self.detector = detector if isinstance(detector, YOLO) else YOLO(str(detector))
        self.classifier = classifier if isinstance(classifier, YOLO) else YOLO(str(classifier))
        if self.classifier.task != "classify":
            raise ValueError(f"TwoStage classifier {classifier} is a '{self.classifier.task}' model, not 'classify'")
        settings = crop_settings(self.classifier)
        self.margin = settings["margin"] if margin is None else float(margin)
        self.align = settings["align"] if align is None else bool(align)
        self.size, self.imgsz = settings["size"], settings["imgsz"]
        own = [self.classifier.names[i] for i in range(len(self.classifier.names))]
        names = settings["names"] if names is None else names
        order = list(names.values() if isinstance(names, dict) else names) if names is not None else own
        missing = [n for n in own if n not in order]
        if missing:
            raise ValueError(f"TwoStage: classifier classes {missing} are not among the names {order}")
        self.names = dict(enumerate(order))
        self.index = torch.tensor([order.index(n) for n in own])  # classifier class -> result class
        given = ((self.detector, detector), (self.classifier, classifier))  # ckpt_path: what evaluate records
        self.ckpt_path = "+".join(str(getattr(m, "ckpt_path", None) or spec) for m, spec in given)
        self.faces = self.images = 0
        self._landmarks = None

    def _classify(self, image, boxes: torch.Tensor, device) -> torch.Tensor:
        """Class probabilities (n, nc) of the faces in one image (boxes (n, 4) xyxy), columns in result order."""
        points = [None] * len(boxes)
        if self.align:
            from ultra_fer_mamba.data.faces import landmark_detector

            self._landmarks = self._landmarks or landmark_detector()
            faces = self._landmarks(image)
            points = [best_landmarks(b, faces) for b in boxes.tolist()]
        crops = [crop_face(image, b, self.margin, self.size, p) for b, p in zip(boxes.tolist(), points)]
        results = self.classifier.predict(crops, imgsz=self.imgsz, device=device, verbose=False)
        probs = torch.stack([r.probs.data.float().cpu() for r in results])  # (n, classifier classes)
        out = torch.zeros(len(boxes), len(self.names))
        out[:, self.index] = probs
        return out

    def _stream(self, source, **kwargs):
        """Yield one Results per image: the detector's boxes, classified."""
        device = kwargs.get("device")
        for r in self.detector.predict(source, stream=True, **kwargs):
            b = r.boxes.data.cpu().float()  # (n, 6): x1, y1, x2, y2, conf, cls
            self.images += 1
            self.faces += int((b[:, 4] >= FACE_CONF).sum())
            if len(b):
                probs = self._classify(r.orig_img, b[:, :4], device)
                p, cls = probs.max(1)
                b = torch.cat([b[:, :4], (b[:, 4] * p)[:, None], cls[:, None].float()], 1)
            r.names = self.names
            r.update(boxes=b)
            yield r

    def predict(self, source=None, stream: bool = False, **kwargs):
        """Detect faces and classify each, like ``YOLO.predict`` (same arguments, passed to the detector).

        Returns:
            (list[Results] | Generator[Results]): One ``Results`` per image; boxes carry the expression class and the
                score defined in the module docstring.
        """
        gen = self._stream(source, **kwargs)
        return gen if stream else list(gen)

    __call__ = predict
