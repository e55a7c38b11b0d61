"""The stock `yolo` console script, in fresh processes with no network: train, predict, export, reload.

No `import ultra_fer_mamba` anywhere: the installed ultra_fer_mamba.pth hook registers our modules.
"""

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from conftest import PYTHON

YOLO = shutil.which("yolo")
NO_NET = ["unshare", "-n"] if shutil.which("unshare") and subprocess.run(["unshare", "-n", "true"]).returncode == 0 else []


def run(cmd, env, cwd, timeout=900):
    """Run a command with no network (network namespace) when possible; fail with its output."""
    r = subprocess.run(NO_NET + cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r.stdout + r.stderr


@pytest.fixture(scope="module")
def trained(tiny_data, tmp_path_factory):
    """`yolo detect train model=fer-yolo-mamba.yaml ...` once for the module; returns (run dir, env)."""
    import os

    tmp = tmp_path_factory.mktemp("cli")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(YOLO_OFFLINE="1", YOLO_AUTOINSTALL="false", YOLO_VERBOSE="true", YOLO_CONFIG_DIR=str(tmp / "cfg"))
    out = run([YOLO, "detect", "train", "model=fer-yolo-mamba.yaml", f"data={tiny_data}", "epochs=1", "imgsz=160",
               "batch=8", "device=cpu", "workers=0", f"project={tmp}", "name=train", "exist_ok=True"], env, tmp)
    return tmp / "train", env, out


@pytest.mark.skipif(YOLO is None, reason="the yolo console script is not installed")
def test_train_predict_export_reload(trained, tiny_data, tmp_path):
    run_dir, env, out = trained
    assert "FERYOLOVSS1" in out and "FERYOLOVSS2" in out  # our modules, from the stock script
    assert "WARNING" not in out.split("Starting training")[0]  # no warnings while building the model
    best = run_dir / "weights" / "best.pt"
    assert best.is_file() and (run_dir / "weights" / "last.pt").is_file()

    images = Path(tiny_data).parent / "images" / "val"
    run([YOLO, "predict", f"model={best}", f"source={images}", "imgsz=160", "device=cpu", f"project={tmp_path}",
         "name=pred", "save=True"], env, tmp_path)
    assert len(list((tmp_path / "pred").glob("*.jpg"))) == len(list(images.glob("*.jpg")))

    run([YOLO, "export", f"model={best}", "format=onnx", "imgsz=160", "opset=17"], env, tmp_path)
    onnx_file = best.with_suffix(".onnx")
    assert onnx_file.is_file()

    # fresh process: load best.pt with YOLO() (no plugin import) and compare with onnxruntime
    script = f"""
import json, numpy as np, torch, onnxruntime as ort
from ultralytics import YOLO
model = YOLO({str(best)!r}).model.float().eval()
x = torch.rand(1, 3, 160, 160, generator=torch.Generator().manual_seed(0))
with torch.no_grad():
    ref = model(x)[0].numpy()
sess = ort.InferenceSession({str(onnx_file)!r}, providers=["CPUExecutionProvider"])
got = sess.run(None, {{sess.get_inputs()[0].name: x.numpy()}})[0]
print(json.dumps({{"shape": list(got.shape), "ref_shape": list(ref.shape),
                  "err": float(np.abs(got - ref).max()), "scale": float(np.abs(ref).max()),
                  "types": sorted({{type(m).__name__ for m in model.modules()}})}}))
"""
    result = last_json(run([PYTHON, "-c", script], env, tmp_path))
    assert result["shape"] == result["ref_shape"] == [1, 4 + 7, 20 * 20 + 10 * 10 + 5 * 5]
    assert result["err"] <= 1e-3 * max(1.0, result["scale"]), result
    assert {"FERYOLOVSS1", "FERYOLOVSS2", "OSSM", "ABMLP"} <= set(result["types"])


PARITY = """
def parity(got, ref):
    \"\"\"Boxes (rows 0-3, pixels) as relative error (to |ref|, at least 1 px); class scores (rows 4-) as absolute.\"\"\"
    box = float((np.abs(got[:, :4] - ref[:, :4]) / np.maximum(np.abs(ref[:, :4]), 1.0)).max())
    return {"shape": list(got.shape), "ref_shape": list(ref.shape), "box_rel": box,
            "cls_abs": float(np.abs(got[:, 4:] - ref[:, 4:]).max())}
"""


def last_json(out: str):
    """The last line of a script's output that is a JSON object (libraries may log after it)."""
    return json.loads(next(line for line in reversed(out.splitlines()) if line.startswith("{")))


def assert_parity(rows, sizes):
    """Every size ran, with the head's output shape, boxes within 1e-3 relative and class scores within 1e-3."""
    assert [r["size"] for r in rows] == list(sizes)
    for r in rows:
        s = r["size"]
        assert r["shape"] == r["ref_shape"] == [1, 4 + 7, (s // 8) ** 2 + (s // 16) ** 2 + (s // 32) ** 2], r
        assert r["box_rel"] <= 1e-3 and r["cls_abs"] <= 1e-3, r


@pytest.mark.skipif(YOLO is None, reason="the yolo console script is not installed")
def test_dynamic_onnx_runs_at_other_sizes(trained, tmp_path):
    """`yolo export format=onnx dynamic=True` gives one graph (a Loop per scan, the cross-scan indices computed from
    the input size) that a default onnxruntime session runs at imgsz 256, 320 and 416 like PyTorch."""
    run_dir, env, _ = trained
    best = tmp_path / "dyn.pt"
    shutil.copy(run_dir / "weights" / "best.pt", best)
    run([YOLO, "export", f"model={best}", "format=onnx", "dynamic=True", "imgsz=256", "opset=17"], env, tmp_path)
    onnx_file = best.with_suffix(".onnx")
    assert onnx_file.is_file()
    script = PARITY + f"""
import json, numpy as np, onnx, torch, onnxruntime as ort
from ultralytics import YOLO
model = YOLO({str(best)!r}).model.float().eval()
sess = ort.InferenceSession({str(onnx_file)!r}, providers=["CPUExecutionProvider"])
loops = sum(n.op_type == "Loop" for n in onnx.load({str(onnx_file)!r}).graph.node)
out = []
for s in (256, 320, 416):
    x = torch.rand(1, 3, s, s, generator=torch.Generator().manual_seed(s))
    with torch.no_grad():
        ref = model(x)[0].numpy()
    out.append(dict(size=s, **parity(sess.run(None, {{sess.get_inputs()[0].name: x.numpy()}})[0], ref)))
print(json.dumps({{"loops": loops, "sizes": out}}))
"""
    result = last_json(run([PYTHON, "-c", script], env, tmp_path))
    assert result["loops"] == 4  # one scan Loop per OSSM layer (fer-yolo-mamba-s has one OSSM in each of 4 blocks)
    assert_parity(result["sizes"], (256, 320, 416))


@pytest.mark.skipif(YOLO is None, reason="the yolo console script is not installed")
def test_openvino_export_predicts_offline(trained, tiny_data, tmp_path):
    """`yolo export format=openvino dynamic=True`, then YOLO(".../ov_openvino_model") predicts offline, and its
    backend matches PyTorch at 256, 320 and 416 in float32. (On CPUs with native bf16, such as this AVX-512 one,
    OpenVINO's default precision is bf16 for every model; the layers around our float32 scan then round its
    inputs, and boxes move by up to about 1e-2 relative. Elsewhere the default is float32, the precision checked.)"""
    pytest.importorskip("openvino")
    run_dir, env, _ = trained
    best = tmp_path / "ov.pt"
    shutil.copy(run_dir / "weights" / "best.pt", best)
    run([YOLO, "export", f"model={best}", "format=openvino", "dynamic=True", "imgsz=256"], env, tmp_path)
    ov_dir = tmp_path / "ov_openvino_model"
    assert (ov_dir / "ov.xml").is_file() and (ov_dir / "metadata.yaml").is_file()
    images = Path(tiny_data).parent / "images" / "val"
    script = PARITY + f"""
import json, numpy as np, openvino as ov, torch
from ultralytics import YOLO
model = YOLO({str(best)!r}).model.float().eval()
ov_model = YOLO({str(ov_dir)!r})
results = ov_model.predict({str(images)!r}, imgsz=256, device="cpu", verbose=False)
backend = ov_model.predictor.model  # the AutoBackend YOLO() built
default = str(backend.backend.ov_compiled_model.get_property("INFERENCE_PRECISION_HINT"))
backend.backend.ov_compiled_model = backend.backend.compile_model(ov.Core().read_model({str(ov_dir / "ov.xml")!r}),
    config={{"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}})
out = []
for s in (256, 320, 416):
    x = torch.rand(1, 3, s, s, generator=torch.Generator().manual_seed(s))
    with torch.no_grad():
        ref = model(x)[0].numpy()
    out.append(dict(size=s, **parity(backend(x).numpy(), ref)))
print(json.dumps({{"n_results": len(results), "default_precision": default, "sizes": out}}))
"""
    result = last_json(run([PYTHON, "-c", script], env, tmp_path))
    assert result["n_results"] == len(list(images.glob("*.jpg")))
    assert_parity(result["sizes"], (256, 320, 416))


@pytest.mark.skipif(YOLO is None, reason="the yolo console script is not installed")
def test_torchscript_export_matches_pytorch(trained, tiny_data, tmp_path):
    """`yolo export format=torchscript` (a trace; the scan stays a prim::Loop) runs like PyTorch at its size, and
    YOLO("ts.torchscript") predicts."""
    run_dir, env, _ = trained
    best = tmp_path / "ts.pt"
    shutil.copy(run_dir / "weights" / "best.pt", best)
    run([YOLO, "export", f"model={best}", "format=torchscript", "imgsz=192"], env, tmp_path)
    ts_file = best.with_suffix(".torchscript")
    assert ts_file.is_file()
    images = Path(tiny_data).parent / "images" / "val"
    script = PARITY + f"""
import json, numpy as np, torch
from ultralytics import YOLO
model = YOLO({str(best)!r}).model.float().eval()
traced = torch.jit.load({str(ts_file)!r})
x = torch.rand(1, 3, 192, 192, generator=torch.Generator().manual_seed(0))
with torch.no_grad():
    ref, got = model(x)[0].numpy(), traced(x).numpy()  # the export traced the head's inference output alone
results = YOLO({str(ts_file)!r}).predict({str(images)!r}, imgsz=192, device="cpu", verbose=False)
print(json.dumps({{"n_results": len(results), "sizes": [dict(size=192, **parity(got, ref))]}}))
"""
    result = last_json(run([PYTHON, "-c", script], env, tmp_path))
    assert result["n_results"] == len(list(images.glob("*.jpg")))
    assert_parity(result["sizes"], (192,))


@pytest.mark.skipif(YOLO is None, reason="the yolo console script is not installed")
def test_track_video_offline(trained, tiny_data, tmp_path):
    """`yolo track source=video.mp4` with no network: Ultralytics' trackers import lap, a dependency of ours, so
    nothing needs installing at run time; every frame of the video is processed."""
    import cv2

    run_dir, env, _ = trained
    video = tmp_path / "faces.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 5, (160, 160))
    frames = sorted((Path(tiny_data).parent / "images" / "train").glob("*.jpg"))[:6]
    for f in frames:
        writer.write(cv2.resize(cv2.imread(str(f)), (160, 160)))
    writer.release()
    out = run([YOLO, "track", f"model={run_dir / 'weights' / 'best.pt'}", f"source={video}", "imgsz=160",
               "device=cpu", "conf=0.01", f"project={tmp_path}", "name=track", "save=False"], env, tmp_path)
    assert f"(frame {len(frames)}/{len(frames)})" in out, out[-2000:]
    assert "requirement" not in out.lower(), out[-2000:]  # no AutoUpdate attempt for lap


@pytest.mark.skipif(YOLO is None, reason="the yolo console script is not installed")
def test_safe_load_checkpoint(trained, tmp_path):
    """ULTRALYTICS_SAFE_LOAD=1 (weights_only unpickling) loads our checkpoint: our classes are safe globals."""
    run_dir, env, _ = trained
    env = dict(env, ULTRALYTICS_SAFE_LOAD="1")
    script = f"""
from ultralytics import YOLO
m = YOLO({str(run_dir / 'weights' / 'best.pt')!r})
print(sum(p.numel() for p in m.model.parameters()))
"""
    n = int(run([PYTHON, "-c", script], env, tmp_path).strip().splitlines()[-1])
    assert n > 1_000_000
