"""Loading a .pt runs pickle: ULTRALYTICS_SAFE_LOAD=1 loads our models and refuses anything off the allow-list.

Loads run in fresh interpreters with no plugin import (the .pth hook registers our safe globals), because
Ultralytics reads ULTRALYTICS_SAFE_LOAD once, at import.
"""

import json
import os
import subprocess
import sys

import pytest
import torch
from ultralytics import YOLO

LOAD = """
import json, sys
import numpy as np
from ultralytics import YOLO
for path in sys.argv[1:]:
    try:
        m = YOLO(path)
        n = len(m.predict(np.zeros((64, 64, 3), np.uint8), imgsz=64, device="cpu", verbose=False))
        print(json.dumps({"ok": True, "types": sorted({type(x).__name__ for x in m.model.modules()}), "n": n}))
    except Exception as e:
        print(json.dumps({"ok": False, "error": f"{type(e).__name__}: {e}"}))
"""


class _Payload:
    """Unpickling this calls os.makedirs(path): stands in for code a hostile checkpoint would run."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return os.makedirs, (self.path,)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A checkpoint of fer-yolo-mamba-n written by Ultralytics' own Model.save."""
    path = tmp_path_factory.mktemp("safe") / "fer.pt"
    YOLO("fer-yolo-mamba-n.yaml").save(path)
    return path


def _with_extra(saved, path, extra):
    ckpt = torch.load(saved, weights_only=False)
    ckpt["extra"] = extra
    torch.save(ckpt, path)
    return path


def _load(paths, tmp_path, safe: bool) -> list[dict]:
    """YOLO(path) and one prediction for each path, in one fresh process; one result dict per path."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "ULTRALYTICS_SAFE_LOAD")}
    env.update(YOLO_OFFLINE="1", YOLO_CONFIG_DIR=str(tmp_path / "cfg"), ULTRALYTICS_SAFE_LOAD="1" if safe else "0")
    r = subprocess.run([sys.executable, "-c", LOAD, *map(str, paths)], env=env, cwd=tmp_path, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return [json.loads(line) for line in r.stdout.strip().splitlines()[-len(paths):]]


def test_safe_load_accepts_our_models_and_refuses_the_rest(saved, tmp_path):
    marker = tmp_path / "payload_ran"
    hostile = _with_extra(saved, tmp_path / "hostile.pt", _Payload(marker))
    from ultra_fer_mamba.integration import resolve_model_yaml

    other = _with_extra(saved, tmp_path / "other.pt", resolve_model_yaml)  # an object of our package, not a model

    ours, refused_payload, refused_other = _load([saved, hostile, other], tmp_path, safe=True)
    assert ours["ok"] and ours["n"] == 1, ours
    assert {"FERYOLOVSS1", "FERYOLOVSS2", "OSSM", "ABMLP"} <= set(ours["types"])
    for result, name in ((refused_payload, "hostile.pt"), (refused_other, "other.pt")):
        assert not result["ok"] and result["error"].startswith("TypeError"), result
        assert f"{name} references types outside the supported Ultralytics checkpoint format" in result["error"]
    assert not marker.exists()  # refused before anything ran

    # what docs/robustness.md warns about: a plain load executes the payload
    (plain,) = _load([hostile], tmp_path, safe=False)
    assert plain["ok"] and marker.is_dir()
