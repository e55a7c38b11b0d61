"""The oldest Ultralytics pyproject.toml allows is tested: registration, training, prediction and ONNX export on it.

``pip install --target`` puts that version into a temporary folder (from PyPI, without dependencies: torch and the
rest are this environment's), which goes first on PYTHONPATH of fresh interpreters. The plugin comes in as users
get it: through the installed ``.pth`` hook, with no ``import ultra_fer_mamba``. Run with ``pytest -m slow
tests/test_floor_version.py`` (needs PyPI, a few minutes).
"""

import json
import os
import subprocess
import sys

import pytest

from ultra_fer_mamba.integration import SUPPORTED

FLOOR = SUPPORTED[0]

SCRIPT = """
import json, sys
import numpy as np
import ultralytics
from ultralytics import YOLO
from ultralytics.nn import tasks

data, out = sys.argv[1], sys.argv[2]
r = {"ultralytics": ultralytics.__version__, "registered": hasattr(tasks.parse_model, "__wrapped__")}
model = YOLO("fer-yolo-mamba-n.yaml")
r["types"] = sorted({type(m).__name__ for m in model.model.modules()} & {"FERYOLOVSS1", "FERYOLOVSS2", "OSSM", "ABMLP"})

def on_train_start(trainer):  # where the trainer put A_log and D
    from ultra_fer_mamba.integration.trainer import no_weight_decay_parameters
    ids = {id(p) for p in no_weight_decay_parameters(trainer.model)}
    r["ssm_decay"] = sorted({g["weight_decay"] for g in trainer.optimizer.param_groups for p in g["params"]
                             if id(p) in ids})

model.add_callback("on_train_start", on_train_start)
model.train(data=data, epochs=1, imgsz=64, batch=4, device="cpu", workers=0, project=out, name="floor",
            plots=False, verbose=False)
best = f"{out}/floor/weights/best.pt"
image = np.zeros((64, 64, 3), np.uint8)
r["predicted"] = len(YOLO(best).predict(image, imgsz=64, device="cpu", verbose=False))
onnx = YOLO(best).export(format="onnx", imgsz=64, device="cpu")
r["onnx_predicted"] = len(YOLO(onnx, task="detect").predict(image, imgsz=64, device="cpu", verbose=False))
r["plugin"] = "ultra_fer_mamba" in sys.modules
print("RESULT " + json.dumps(r))
"""


@pytest.mark.slow
def test_floor_version_registers_trains_predicts_and_exports(tiny_data, tmp_path):
    target = tmp_path / f"ultralytics-{FLOOR}"
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target),
                          f"ultralytics=={FLOOR}"], capture_output=True, text=True, timeout=600)
    assert pip.returncode == 0, pip.stderr[-3000:]
    env = {k: v for k, v in os.environ.items() if k not in ("ULTRA_FER_MAMBA_NO_HOOK",)}
    env.update(PYTHONPATH=str(target), YOLO_OFFLINE="1", YOLO_AUTOINSTALL="false",
               YOLO_CONFIG_DIR=str(tmp_path / "cfg"))
    run = subprocess.run([sys.executable, "-c", SCRIPT, str(tiny_data), str(tmp_path / "runs")], env=env,
                         cwd=tmp_path, capture_output=True, text=True, timeout=1200)
    out = run.stdout + run.stderr
    line = next((x for x in out.splitlines() if x.startswith("RESULT ")), None)
    assert run.returncode == 0 and line, out[-5000:]
    r = json.loads(line[len("RESULT "):])
    assert r == {"ultralytics": FLOOR, "registered": True, "types": ["ABMLP", "FERYOLOVSS1", "FERYOLOVSS2", "OSSM"],
                 "ssm_decay": [0.0], "predicted": 1, "onnx_predicted": 1, "plugin": True}, r
