"""Export of the selective scan: the ONNX graph's shape, OpenVINO for every YAML, formats that cannot hold it.

The CLI round trips (yolo export / predict / track on a trained model) are in test_yolo_cli.py.
"""

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import ultra_fer_mamba  # noqa: F401  (registers)
from ultra_fer_mamba.integration.export import LOOP_FORMATS, check_export_format
from ultra_fer_mamba.nn import OSSM

LOOP_BODY_OPS = {"Gather", "Mul", "Exp", "Add", "MatMul", "Constant"}  # four step inputs, the six-op update, "go on"


@pytest.fixture(scope="module")
def ossm_onnx(tmp_path_factory):
    """One OSSM layer exported once with dynamic batch, height and width; returns (module, file)."""
    pytest.importorskip("onnx")
    torch.manual_seed(0)
    m = OSSM(16).eval()
    file = str(tmp_path_factory.mktemp("onnx") / "ossm.onnx")
    dims = {0: "b", 2: "h", 3: "w"}
    torch.onnx.export(m, (torch.randn(1, 16, 6, 7),), file, dynamo=False, opset_version=17, input_names=["x"],
                      output_names=["y"], dynamic_axes={"x": dims, "y": dims})
    return m, file


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning", "ignore::UserWarning", "ignore::DeprecationWarning")
def test_onnx_graph_has_one_tight_loop_and_no_per_step_slicing(ossm_onnx):
    """One Loop per OSSM whose body only Gathers its step (dim 0, the iteration number) and updates the state: no
    Slice in the body, no ScatterND or sequence op anywhere, so no step copies a full-length tensor (O(l^2) in all).
    (Outside the loop, a few Slices run once: the in_proj chunk, shape arithmetic, the reversed scan orders.)"""
    import onnx

    graph = onnx.load(ossm_onnx[1]).graph
    loops = [n for n in graph.node if n.op_type == "Loop"]
    assert len(loops) == 1
    body = next(a.g for a in loops[0].attribute if a.name == "body")
    assert {n.op_type for n in body.node} <= LOOP_BODY_OPS, [n.op_type for n in body.node]
    gathers = [n for n in body.node if n.op_type == "Gather"]
    assert len(gathers) == 4
    step = body.input[0].name  # the iteration number
    for n in gathers:
        assert n.input[1] == step and all(a.i == 0 for a in n.attribute if a.name == "axis"), n
    sequences = {"SequenceInsert", "SequenceConstruct", "SequenceAt", "ConcatFromSequence"}
    assert not ({"ScatterND"} | sequences) & {n.op_type for n in graph.node}
    assert {i.domain for i in onnx.load(ossm_onnx[1]).opset_import} <= {"", "ai.onnx"}  # standard ops only


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_onnx_ossm_matches_torch_at_other_sizes(ossm_onnx):
    """The one export runs at other batch sizes and grids (odd, one-row) like the PyTorch layer."""
    ort = pytest.importorskip("onnxruntime")
    m, file = ossm_onnx
    session = ort.InferenceSession(file, providers=["CPUExecutionProvider"])
    for shape in [(1, 16, 6, 7), (2, 16, 9, 5), (1, 16, 1, 11)]:
        x = torch.randn(*shape)
        with torch.no_grad():
            expected = m(x).numpy()
        actual = session.run(None, {"x": x.numpy()})[0]
        np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


SLOW = pytest.mark.slow  # the default run converts the 4-direction variant here and fer-yolo-mamba(-s) in test_yolo_cli


@pytest.mark.parametrize("yaml", ["fer-yolo-mamba-ss2d-n.yaml", pytest.param("fer-yolo-mamba-n.yaml", marks=SLOW),
                                  pytest.param("fer-yolo-mamba-nofrm-n.yaml", marks=SLOW),
                                  pytest.param("fer-yolo-mamba-nooss-n.yaml", marks=SLOW)])
def test_openvino_export_of_every_yaml(yaml, tmp_path, monkeypatch):
    """Ultralytics' OpenVINO export (torch.jit.trace, then OpenVINO's PyTorch frontend) converts every model YAML;
    the model runs like PyTorch at float32 (OpenVINO's default where the CPU has no native bf16)."""
    ov = pytest.importorskip("openvino")
    from ultralytics import YOLO

    monkeypatch.chdir(tmp_path)  # a YAML-built model exports beside its name, in the working directory
    torch.manual_seed(0)
    model = YOLO(yaml)
    out = Path(model.export(format="openvino", imgsz=64, dynamic=True))
    net = model.model.float().eval()
    compiled = ov.Core().compile_model(next(out.glob("*.xml")), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    for s in (64, 96):
        x = torch.rand(1, 3, s, s, generator=torch.Generator().manual_seed(s))
        with torch.no_grad():
            expected = net(x)[0].numpy()
        np.testing.assert_allclose(compiled(x.numpy())[0], expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def exporter(fmt, model):
    return SimpleNamespace(args=SimpleNamespace(format=fmt), model=model)


def test_formats_without_loops_fail_at_once_for_scan_models_only():
    """ncnn, LiteRT (tflite/tfjs), CoreML ...: one error naming the formats that work, raised by every exporter's
    on_export_start callback before any converter runs; models without an OSSM layer (stock, or -nooss) pass."""
    from ultralytics.engine.exporter import Exporter
    from ultralytics.nn.tasks import DetectionModel
    from ultralytics.utils.callbacks import get_default_callbacks

    model_callbacks = get_default_callbacks()
    assert check_export_format in Exporter(_callbacks=model_callbacks).callbacks["on_export_start"]
    assert check_export_format not in model_callbacks["on_export_start"]  # a model's callbacks (pickled for DDP) stay
    assert check_export_format not in get_default_callbacks()["on_export_start"]
    ours = DetectionModel("fer-yolo-mamba-n.yaml", verbose=False)
    for fmt in ("ncnn", "litert", "edgetpu", "coreml", "paddle", "mnn", "imx", "rknn", "executorch"):
        with pytest.raises(ValueError, match=f"format='{fmt}' cannot hold the selective scan's recurrence.*"
                                             "torchscript, onnx or openvino"):
            check_export_format(exporter(fmt, ours))
    for fmt in LOOP_FORMATS:
        check_export_format(exporter(fmt, ours))
    for yaml in ("yolov8n.yaml", "fer-yolo-mamba-nooss-n.yaml"):
        check_export_format(exporter("ncnn", DetectionModel(yaml, verbose=False)))


def test_ncnn_export_stops_before_converting(tmp_path, monkeypatch):
    """Through YOLO.export: the error comes from our check, not from a converter (nothing is written)."""
    from ultralytics import YOLO

    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="format='ncnn' cannot hold"):
        YOLO("fer-yolo-mamba-n.yaml").export(format="ncnn", imgsz=64)
    assert not list(tmp_path.iterdir())


def test_profile_script_reports_every_loop_node():
    """benchmarks/profile_onnx_scan.py at tiny sizes: the ten Loop-body nodes, a time per step at each length."""
    pytest.importorskip("onnxruntime")
    import importlib.util

    spec = importlib.util.spec_from_file_location("profile_onnx_scan", Path(__file__).parents[1] / "benchmarks" /
                                                  "profile_onnx_scan.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    times = bench.main(c=8, grids="3,6")
    assert sorted(times) == [9, 36]
    for t in times.values():
        assert sorted(k.split()[0] for k in t) == sorted(["Gather"] * 4 + ["Mul", "Mul", "Exp", "Add", "MatMul", "MatMul"])
        assert all(v > 0 for v in t.values())
    assert "| growth |" in bench.table(times)
