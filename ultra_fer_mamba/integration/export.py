"""Export formats for models with a selective scan: the ones that hold its recurrence, checked before converting.

OSSM's selective scan is a recurrence over the h*w positions of a feature map, as long as the input size makes
it. TorchScript and OpenVINO keep it as a loop (``prim::Loop``, which OpenVINO's PyTorch frontend converts), ONNX
as a ``Scan`` (ops/scan_export.py), and TensorRT builds engines from that ONNX graph. The other converters have no
loops: ncnn and MNN have no control flow, TFLite/LiteRT, Edge TPU, TF.js and CoreML drop or unroll it (at a fixed
size, if at all), Paddle, IMX, RKNN and the NPU compilers reject it. For those, ``yolo export`` would fail minutes
later deep inside a converter; ``check_export_format`` fails at once instead, naming the formats that work.

It runs as an Ultralytics ``on_export_start`` callback (registered once for every exporter), before any converter,
and steps aside for every model without an OSSM layer: stock models, and our variants without the OSS branch
(fer-yolo-mamba-nooss), export exactly as they would without the plugin.
"""

from __future__ import annotations

LOOP_FORMATS = ("torchscript", "onnx", "openvino", "engine")  # engine: TensorRT parses the ONNX Scan (needs a GPU)


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


def register_export_check() -> None:
    """Add check_export_format to Ultralytics' default on_export_start callbacks (idempotent)."""
    from ultralytics.utils.callbacks.base import default_callbacks

    if check_export_format not in default_callbacks["on_export_start"]:
        default_callbacks["on_export_start"].append(check_export_format)
