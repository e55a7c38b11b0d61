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
    result = json.loads(run([PYTHON, "-c", script], env, tmp_path).strip().splitlines()[-1])
    assert result["shape"] == result["ref_shape"] == [1, 4 + 7, 20 * 20 + 10 * 10 + 5 * 5]
    assert result["err"] <= 1e-3 * max(1.0, result["scale"]), result
    assert {"FERYOLOVSS1", "FERYOLOVSS2", "OSSM", "ABMLP"} <= set(result["types"])


@pytest.mark.skipif(YOLO is None, reason="the yolo console script is not installed")
def test_dynamic_onnx_runs_at_other_sizes(trained, tmp_path):
    """`yolo export format=onnx dynamic=True` gives one graph (the scans are ONNX Loops, the cross-scan indices
    are computed from the input size) that onnxruntime runs at imgsz 256, 320 and 416 like PyTorch (1e-3)."""
    run_dir, env, _ = trained
    best = tmp_path / "dyn.pt"
    shutil.copy(run_dir / "weights" / "best.pt", best)
    run([YOLO, "export", f"model={best}", "format=onnx", "dynamic=True", "imgsz=256", "opset=17"], env, tmp_path)
    onnx_file = best.with_suffix(".onnx")
    assert onnx_file.is_file()
    script = f"""
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
    got = sess.run(None, {{sess.get_inputs()[0].name: x.numpy()}})[0]
    out.append({{"size": s, "shape": list(got.shape), "ref_shape": list(ref.shape),
                "err": float(np.abs(got - ref).max()), "scale": float(np.abs(ref).max())}})
print(json.dumps({{"loops": loops, "sizes": out}}))
"""
    result = json.loads(run([PYTHON, "-c", script], env, tmp_path).strip().splitlines()[-1])
    assert result["loops"] == 4  # one scan Loop per OSSM layer (fer-yolo-mamba-s has one OSSM in each of 4 blocks)
    for r in result["sizes"]:
        s = r["size"]
        assert r["shape"] == r["ref_shape"] == [1, 4 + 7, (s // 8) ** 2 + (s // 16) ** 2 + (s // 32) ** 2], r
        assert r["err"] <= 1e-3 * max(1.0, r["scale"]), r


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
