"""Export formats for models with a selective scan: the ones that hold its recurrence, checked before converting.

OSSM's selective scan is a recurrence over the h*w positions of a feature map, as long as the input size makes
it. TorchScript and OpenVINO keep it as a loop (``prim::Loop``, which OpenVINO's PyTorch frontend converts), ONNX
as a ``Loop`` (ops/scan_export.py), and TensorRT builds engines from that ONNX graph. The other converters cannot
hold it: ncnn and MNN have no control flow, the TFLite/LiteRT, Edge TPU, TF.js and CoreML conversions drop or
unroll loops, and Paddle, IMX, RKNN, ExecuTorch and the NPU compilers do not take this graph. For those, ``yolo export`` would fail minutes
later deep inside a converter; ``check_export_format`` fails at once instead, naming the formats that work.

It runs as an ``on_export_start`` callback of each Ultralytics Exporter, before any converter, and steps aside for
every model without an OSSM layer: stock models, and our variants without the OSS branch (fer-yolo-mamba-nooss),
export exactly as they would without the plugin. Exporters get it through a wrapper of Ultralytics'
``callbacks.add_integration_callbacks`` (which every Exporter calls in ``__init__``; listed in ``PATCHES``), in a copy of their callbacks:
Ultralytics' default callbacks and a model's own (which DDP training pickles for its workers) stay untouched.
"""

from __future__ import annotations

import sys
from collections import defaultdict

LOOP_FORMATS = ("torchscript", "onnx", "openvino", "engine")  # engine: TensorRT parses the ONNX Loop (needs a GPU)


def has_scan(model) -> bool:
    """True when model (an nn.Module) contains an OSSM layer, i.e. a selective-scan recurrence."""
    from ..nn import OSSM

    return any(isinstance(m, OSSM) for m in model.modules())


def check_export_format(exporter) -> None:
    """Ultralytics ``on_export_start`` callback: raise for a format that cannot hold the scan's recurrence.

    Args:
        exporter (ultralytics.engine.exporter.Exporter): The running exporter; its ``args.format`` is already
            normalised (``tflite``/``tfjs`` read ``litert``) and ``model`` is the model being exported.

    Raises:
        ValueError: The model has an OSSM layer and the format is not one of LOOP_FORMATS.

    Examples:
        >>> from ultralytics import YOLO
        >>> YOLO("fer-yolo-mamba-n.yaml").export(format="ncnn")  # doctest: +SKIP
        ValueError: format='ncnn' cannot hold the selective scan's recurrence (...). Export this model with ...
    """
    fmt = str(exporter.args.format).lower()
    if fmt in LOOP_FORMATS or not has_scan(exporter.model):
        return
    raise ValueError(
        f"format='{fmt}' cannot hold the selective scan's recurrence (a loop over the h*w positions of each OSSM "
        f"layer). Export this model with format=torchscript, onnx or openvino (or engine: TensorRT builds it from "
        f"the ONNX graph)."
    )


def add_integration_callbacks(original, instance) -> None:
    """Ultralytics' ``callbacks.add_integration_callbacks``; an Exporter also gets check_export_format."""
    original(instance)
    exporter = sys.modules.get("ultralytics.engine.exporter")
    if exporter is not None and isinstance(instance, exporter.Exporter):
        own = defaultdict(list, {event: list(fns) for event, fns in instance.callbacks.items()})  # not the model's
        own["on_export_start"].append(check_export_format)
        instance.callbacks = own


PATCHES = (("ultralytics.utils.callbacks", "add_integration_callbacks", add_integration_callbacks),)
