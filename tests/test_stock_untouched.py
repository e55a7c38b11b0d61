"""A good guest: with the plugin installed, stock models see stock Ultralytics, bit for bit."""

import json
import logging
import os
import subprocess
import sys
from copy import deepcopy

import pytest
import torch
import ultralytics.engine.trainer as trainer_module
from conftest import logged
from ultralytics.nn import tasks
from ultralytics.nn.tasks import DetectionModel, yaml_model_load

from ultra_fer_mamba.integration import checkpoints, trainer

TRAIN = """
import json, sys
from ultralytics import YOLO
from ultralytics.nn import tasks
data, out = sys.argv[1], sys.argv[2]
YOLO("yolov8n.yaml").train(data=data, epochs=1, imgsz=64, batch=4, device="cpu", workers=0, seed=0,
                           deterministic=True, project=out, name="run", plots=True, verbose=False)
print(json.dumps({"plugin": "ultra_fer_mamba" in sys.modules, "wrapped": hasattr(tasks.parse_model, "__wrapped__")}))
"""


def _train_stock(data, out, hook: bool):
    """Train yolov8n for one epoch in a fresh interpreter with its own empty config folder."""
    out.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "ULTRA_FER_MAMBA_NO_HOOK")}
    env.update(YOLO_OFFLINE="1", YOLO_AUTOINSTALL="false", YOLO_CONFIG_DIR=str(out / "cfg"))
    if not hook:
        env["ULTRA_FER_MAMBA_NO_HOOK"] = "1"
    r = subprocess.run([sys.executable, "-c", TRAIN, str(data), str(out)], env=env, cwd=out, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    state = json.loads(r.stdout.strip().splitlines()[-1])
    weights = torch.load(out / "run" / "weights" / "last.pt", map_location="cpu", weights_only=False)["model"]
    config = sorted(str(p.relative_to(out / "cfg")) for p in (out / "cfg").rglob("*"))
    return state, weights.state_dict(), config


def test_stock_training_is_bit_identical_with_and_without_the_hook(tiny_data, tmp_path):
    (on, w_on, cfg_on), (off, w_off, cfg_off) = (_train_stock(tiny_data, tmp_path / x, hook=x == "on")
                                                 for x in ("on", "off"))
    assert on == {"plugin": True, "wrapped": True} and off == {"plugin": False, "wrapped": False}
    assert w_on.keys() == w_off.keys() and len(w_on) > 300
    different = [k for k in w_on if not torch.equal(w_on[k], w_off[k])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:5]}"
    assert cfg_on == cfg_off and "Ultralytics/settings.json" in cfg_on  # no fonts or anything else of ours


def test_stock_model_gets_ultralytics_check_amp_and_ours_the_offline_check(monkeypatch):
    calls = []
    monkeypatch.setattr(trainer_module.check_amp, "__wrapped__", lambda m: calls.append("ultralytics") or True)
    monkeypatch.setattr(trainer, "offline_amp_check", lambda m: calls.append("offline") or False)
    assert trainer_module.check_amp(DetectionModel("yolov8n.yaml", nc=7, verbose=False)) is True
    assert trainer_module.check_amp(DetectionModel("fer-yolo-mamba-n.yaml", nc=7, verbose=False)) is False
    assert calls == ["ultralytics", "offline"]


def test_check_amp_wraps_ultralytics_own():
    from ultralytics.utils.checks import check_amp

    assert trainer_module.check_amp.__wrapped__ is check_amp
    assert trainer.offline_amp_check(DetectionModel("fer-yolo-mamba-n.yaml", nc=7, verbose=False)) is False  # CPU


@pytest.mark.parametrize("yaml", ["yolov8n.yaml", "fer-yolo-mamba-n.yaml"])
def test_parse_model_forwards_every_argument(monkeypatch, yaml):
    original, seen = tasks.parse_model.__wrapped__, []

    def spy(d, ch, verbose=True, **kwargs):  # stands in for a newer Ultralytics' parse_model
        seen.append((ch, verbose, kwargs))
        return original(d, ch, verbose=verbose)

    monkeypatch.setattr(tasks.parse_model, "__wrapped__", spy)
    d = yaml_model_load(yaml)
    seq, _ = tasks.parse_model(deepcopy(d), 3, verbose=False, future_option=1)
    assert seen == [(3, False, {"future_option": 1})]
    assert len(seq) == len(d["backbone"]) + len(d["head"])


def test_parse_model_lets_warnings_through():
    """parse_model's own warning (no scale given) reaches the user while the layer table is held back."""
    d = yaml_model_load("fer-yolo-mamba-n.yaml")
    d.pop("scale")
    with logged(logging.INFO) as records:
        tasks.parse_model(deepcopy(d), ch=3, verbose=True)
    warnings = [m for lv, m in records if lv == logging.WARNING]
    assert len(warnings) == 1 and "no model scale passed" in warnings[0], records
    table = [m for lv, m in records if lv == logging.INFO]
    assert any("ultra_fer_mamba.nn.vss.FERYOLOVSS1" in m for m in table)
    assert not any(" C2f " in m and m.startswith(" 12") for m in table)  # stand-in rows rewritten


def test_stock_checkpoint_goes_straight_to_ultralytics(tmp_path, monkeypatch):
    stock, ours = tmp_path / "stock.pt", tmp_path / "ours.pt"
    torch.save({"model": DetectionModel("yolov8n.yaml", nc=7, verbose=False)}, stock)
    torch.save({"model": DetectionModel("fer-yolo-mamba-n.yaml", nc=7, verbose=False)}, ours)
    assert not checkpoints.names_us(stock) and checkpoints.names_us(ours)

    def fail(*args):
        raise AssertionError("our checks ran on a stock checkpoint")

    monkeypatch.setattr(checkpoints, "_missing_plugin_globals", fail)
    monkeypatch.setattr(checkpoints, "check_loaded_model", fail)
    ckpt, _ = tasks.torch_safe_load(str(stock))
    assert type(ckpt["model"]).__name__ == "DetectionModel"
    with pytest.raises(AssertionError, match="stock checkpoint"):
        tasks.torch_safe_load(str(ours))  # ours does reach them
