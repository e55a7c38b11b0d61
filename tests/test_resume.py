"""Interrupted training: SIGKILL in the middle of epoch 2, `yolo detect train resume`, then predict in a fresh process.

Everything through the stock `yolo` script (no plugin import: the .pth hook registers our modules), with no network.
"""

import csv
import os
import re
import shutil
import signal
import subprocess
import time

import pytest
import torch

from conftest import make_tiny_dataset

YOLO = shutil.which("yolo")
NO_NET = ["unshare", "-n"] if shutil.which("unshare") and subprocess.run(["unshare", "-n", "true"]).returncode == 0 else []
EPOCH2_STARTED = re.compile(r"\b2/3\s+\S+\s+[\d.]+")  # a progress line of epoch 2 with its first losses


def _env(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(YOLO_OFFLINE="1", YOLO_AUTOINSTALL="false", YOLO_VERBOSE="true", PYTHONUNBUFFERED="1",
               YOLO_CONFIG_DIR=str(tmp_path / "cfg"))
    return env


def _rows(csv_file):
    with open(csv_file) as f:
        return [{k.strip(): v.strip() for k, v in row.items()} for row in csv.DictReader(f)]


def _run(cmd, env, cwd):
    r = subprocess.run(NO_NET + cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r.stdout + r.stderr


@pytest.mark.skipif(YOLO is None, reason="the yolo console script is not installed")
def test_sigkill_mid_epoch_then_resume_finishes_and_predicts(tmp_path):
    data = make_tiny_dataset(tmp_path / "data", n_train=24, n_val=4, size=64)  # 6 batches: epoch 2 lasts ~1 s or more
    env, run_dir = _env(tmp_path), tmp_path / "run"
    last, log = run_dir / "weights" / "last.pt", tmp_path / "train.log"
    cmd = [YOLO, "detect", "train", "model=fer-yolo-mamba-n.yaml", f"data={data}", "epochs=3", "imgsz=64", "batch=4",
           "device=cpu", "workers=0", f"project={tmp_path}", "name=run", "plots=False"]
    with open(log, "w") as out:
        p = subprocess.Popen(NO_NET + cmd, env=env, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT,
                             start_new_session=True)
        try:
            deadline = time.time() + 300
            while time.time() < deadline and p.poll() is None:
                if last.is_file() and EPOCH2_STARTED.search(log.read_text(errors="replace")):
                    break
                time.sleep(0.05)
            assert p.poll() is None, f"training ended before epoch 2 could be interrupted:\n{log.read_text()[-3000:]}"
            os.killpg(p.pid, signal.SIGKILL)
            assert p.wait(timeout=30) == -signal.SIGKILL
        finally:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()

    # killed during epoch 2: epoch 1 is saved and recorded, epoch 2 is not
    assert torch.load(last, map_location="cpu", weights_only=False)["epoch"] == 0
    assert [r["epoch"] for r in _rows(run_dir / "results.csv")] == ["1"]

    out = _run([YOLO, "detect", "train", "resume", f"model={last}"], env, tmp_path)
    assert "Resuming training" in out and "from epoch 2 to 3 total epochs" in out, out[-3000:]
    assert [r["epoch"] for r in _rows(run_dir / "results.csv")] == ["1", "2", "3"]  # configured epochs reached
    assert not (tmp_path / "run2").exists()  # resumed in place, not as a new run

    # the final weights, in a fresh process: load and predict
    images = data.parent / "images" / "val"
    out = _run([YOLO, "predict", f"model={run_dir / 'weights' / 'best.pt'}", f"source={images}", "imgsz=64",
                "device=cpu", f"project={tmp_path}", "name=pred"], env, tmp_path)
    assert out.count(": 64x64") == len(list(images.glob("*.jpg"))), out[-3000:]
    final = torch.load(last, map_location="cpu", weights_only=False)
    assert final["train_args"]["epochs"] == 3 and final["optimizer"] is None  # finished, optimizer stripped
