"""LFNSB as a stock `yolo classify` model (SPEC section 8): its blocks, its YAML, its loss, its training."""

import json
import math
import shutil
import subprocess
from copy import deepcopy

import pytest
import thop
import torch
import yaml
from ultralytics import YOLO
from ultralytics.nn.tasks import ClassificationModel, yaml_model_load
from ultralytics.utils.loss import v8ClassificationLoss

import ultra_fer_mamba  # noqa: F401  (registers)
from ultra_fer_mamba.data.crops import crops
from ultra_fer_mamba.losses import CosineHarmonyCriterion, cosine_harmony
from ultra_fer_mamba.nn import CoordinateAttention, MixConv, MixDW, RepDW, SpatialBiasClassify

from conftest import PYTHON

SPEC_PARAMS, SPEC_GMACS = 2.68e6, 0.41  # LFNSB's 7-class model at 112x112
# one epoch at imgsz 32; SGD without warm-up so the first optimizer step moves every trained parameter
TRAIN = dict(epochs=1, imgsz=32, device="cpu", workers=0, optimizer="SGD", lr0=0.01, warmup_epochs=0, amp=False,
             plots=False, verbose=False, exist_ok=True)
CAN_UNSHARE = bool(shutil.which("unshare")) and subprocess.run(["unshare", "-n", "true"]).returncode == 0
NO_NET = ["unshare", "-n"] if CAN_UNSHARE else []  # no network for the CLI test
# a small model of the same blocks, quick to build and train (lfnsb-cls.yaml itself: the size and CLI tests)
SMALL = {"nc": 7, "backbone": [[-1, 1, "Conv", [16, 3, 2, None, 1, 1, False]],
                               [-1, 1, "MixDW", [32, 48, [3, 5], [32, 16], 2]],
                               [-1, 2, "MixDW", [32, 48, [3], [48], 1, True]],
                               [-1, 1, "RepDW", []]],
         "head": [[-1, 1, "SpatialBiasClassify", ["nc", 18, 1.0, 0.1]]]}  # fmt: skip


@pytest.fixture(scope="module")
def model():
    """lfnsb-cls.yaml at nc 7, built once (building runs Ultralytics' FLOPs count at imgsz 640: seconds)."""
    return ClassificationModel("lfnsb-cls.yaml", nc=7, verbose=False)


@pytest.fixture(scope="module")
def tiny_crops(tiny_data, tmp_path_factory):
    """Face crops (Ultralytics' classify layout) of conftest's tiny detection set."""
    out = tmp_path_factory.mktemp("crops") / "crops"
    crops(str(tiny_data), str(out))
    return out


def test_mixdw_blocks_and_their_errors():
    m = MixDW(64, 128, 192, [3, 5], [128, 64], s=2)
    assert m(torch.randn(1, 64, 28, 28)).shape == (1, 128, 14, 14)
    assert [c.kernel_size for c in m.mix.convs] == [(3, 3), (5, 5)] and [c.groups for c in m.mix.convs] == [128, 64]
    assert m.attention.reduce.conv.out_channels == 8  # max(8, 192 // 32)
    r = MixDW(16, 16, 24, residual=True)
    torch.nn.init.zeros_(r.project.bn.weight)
    torch.nn.init.zeros_(r.project.bn.bias)
    x = torch.randn(2, 16, 5, 7)
    assert torch.equal(r.eval()(x), x)  # zero projection: the residual passes x through
    with pytest.raises(ValueError, match="residual=True needs s=1"):
        MixDW(16, 16, 24, s=2, residual=True)
    with pytest.raises(ValueError, match="sum to c=24"):
        MixConv(24, [3, 5], [16, 4])


def test_coordinate_attention_and_repdw():
    ca = CoordinateAttention(32)
    x = torch.randn(2, 32, 6, 4)
    w = ca(x) / x  # weights a_h(i) * a_w(j) in (0, 1), one per channel and position
    assert w.shape == x.shape and ((w > 0) & (w < 1)).all()
    rep = RepDW(8).eval()
    for p in (rep.conv3.bn.weight, rep.conv3.bn.bias, rep.conv1.weight, rep.conv1.bias):
        torch.nn.init.zeros_(p)
    assert torch.allclose(rep(x[:, :8]), x[:, :8] / math.sqrt(1 + 1e-5))  # identity branch through a fresh BN


def test_yaml_parameters_and_gmacs_match_the_paper(model, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the bare name resolves from any directory
    assert yaml_model_load("lfnsb-cls.yaml")["backbone"] == model.yaml["backbone"]
    params = sum(p.numel() for p in model.parameters())
    macs, _ = thop.profile(deepcopy(model).eval(), (torch.zeros(1, 3, 112, 112),), verbose=False)
    print(f"lfnsb-cls.yaml nc=7: {params / 1e6:.3f}M params (LFNSB: 2.68M), {macs / 1e9:.3f} GMACs at 112 "
          f"(LFNSB: 0.41)")
    assert abs(params / SPEC_PARAMS - 1) < 0.05 and abs(macs / 1e9 / SPEC_GMACS - 1) < 0.05
    assert [type(m).__name__ for m in model.model][-2:] == ["RepDW", "SpatialBiasClassify"]
    assert sum(isinstance(m, MixDW) for m in model.modules()) == 1 + 9 + 1 + 16 + 1 + 6


def test_yolo_guesses_the_classify_task_of_our_head_and_leaves_other_models_alone():
    from ultralytics.engine import model as engine

    assert engine.guess_model_task(deepcopy(SMALL)) == "classify" and YOLO("lfnsb-cls.yaml").task == "classify"
    for stock, task in (("yolov8n-cls.yaml", "classify"), ("yolov8n.yaml", "detect"), ("yolov8n-pose.yaml", "pose")):
        d = yaml_model_load(stock)
        assert engine.guess_model_task(d) == engine.guess_model_task.__wrapped__(d) == task


def test_batch_one_forward_in_train_eval_and_export_mode(model):
    x = torch.rand(1, 3, 112, 112)
    logits = model.train()(x)
    assert logits.shape == (1, 7)
    probs, logits = model.eval()(x)
    assert probs.shape == logits.shape == (1, 7) and torch.allclose(probs.sum(1), torch.ones(1))
    head = model.model[-1]
    head.export = True
    try:
        assert torch.equal(model(x), probs)  # export: the softmax alone, like Classify
    finally:
        head.export = False


def test_cosine_harmony_by_hand():
    # b = 3 samples, d = 3 features, k = 3 classes, labels 0, 1, 1.
    f = torch.tensor([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0], [2.0, 4.0, 0.0]])
    c = torch.tensor([[0.0, 1.0, 2.0], [1.0, 1.0, 4.0], [1.0, 0.0, 0.0]])
    y = torch.tensor([0, 1, 1])
    # centred: f0 (-1, 0, 1), f1 (1, 0, -1), f2 (0, 2, -2); own centres c0 (-1, 0, 1), c1 (-1, -1, 2)
    # d0 = 1 - 1 = 0; d1 = 1 - (-3 / sqrt(2 * 6)) = 1 + sqrt(3) / 2; d2 = 1 - (-6 / sqrt(8 * 6)) = 1 + sqrt(3) / 2
    s = 2 + math.sqrt(3)
    intra, inter = s / 3, s / (3 * 2)
    # unbiased batch variance per feature: (1, 3, 2) -> 1; (2, 2, 4) -> 4/3; (3, 1, 0) -> 7/3; sum 14/3
    expected = 0.1 * intra / (14 / 3) + 0.9 * inter  # = (2 + sqrt(3)) * (0.1 / 14 + 0.15) = 0.586465
    assert cosine_harmony(f, y, c).item() == pytest.approx(expected, rel=1e-6)
    assert cosine_harmony(f, y, c).item() == pytest.approx(0.586465, abs=1e-6)
    # one sample: no batch variance, the inter term alone: 0.9 * d1 / (1 * 2)
    assert cosine_harmony(f[1:2], y[1:2], c).item() == pytest.approx(0.9 * (1 + math.sqrt(3) / 2) / 2, rel=1e-6)
    with pytest.raises(ValueError, match="at least 2 classes"):
        cosine_harmony(f, torch.zeros(3), c[:1])


def test_criterion_adds_the_weighted_harmony_term_and_trains_the_centres():
    head = SpatialBiasClassify(16, 3, c_=10, harmony=0.5)
    x, y = torch.randn(4, 16, 5, 5), torch.tensor([0, 1, 2, 1])
    logits = head(x)
    loss, items = CosineHarmonyCriterion(head)(logits, {"cls": y})
    assert head.features is None  # read once, then cleared
    ce, ch = torch.nn.functional.cross_entropy(logits, y), cosine_harmony(x.mean((2, 3)), y, head.centres)
    assert torch.allclose(items["ce"], ce) and torch.allclose(items["ch"], ch) and torch.allclose(loss, ce + 0.5 * ch)
    loss.backward()
    assert head.centres.grad is not None and head.centres.grad.abs().sum() > 0

    class OneItem:  # Ultralytics 8.3's classification criterion: the loss is its only item
        def __call__(self, preds, batch):
            loss = torch.nn.functional.cross_entropy(preds, batch["cls"])
            return loss, loss.detach()

    criterion = CosineHarmonyCriterion(head)
    criterion.cross_entropy = OneItem()
    total, item = criterion(head(x), {"cls": y})
    assert item.shape == () and torch.allclose(item, total.detach()) and torch.allclose(total, loss, atol=1e-6)


def test_a_yaml_argument_turns_the_loss_off_and_new_classes_bring_new_centres():
    model = ClassificationModel(deepcopy(SMALL), verbose=False)
    assert model.model[-1].centres.shape == (7, 32) and type(model.init_criterion()) is CosineHarmonyCriterion
    cfg = deepcopy(SMALL)
    cfg["head"][-1][-1] = ["nc", 18, 0.0]  # harmony 0
    plain = ClassificationModel(cfg, verbose=False)
    assert plain.model[-1].centres is None and type(plain.init_criterion()) is v8ClassificationLoss
    ClassificationModel.reshape_outputs(model, 5)  # what the classify trainer does for data with 5 classes
    assert model.model[-1].linear.out_features == 5 and model.model[-1].centres.shape == (5, 32)


def test_the_stock_trainer_trains_the_centres_and_checkpoints_keep_them(tiny_crops, tmp_path):
    (tmp_path / "small-cls.yaml").write_text(yaml.safe_dump(SMALL, sort_keys=False))
    n = sum(1 for _ in (tiny_crops / "train").rglob("*.jpg"))  # one batch of all crops: exactly one optimizer step
    seen = {}

    def on_train_start(trainer):
        head = trainer.model.model[-1]
        seen["before"] = head.centres.detach().clone()
        seen["decay"] = next(g["weight_decay"] for g in trainer.optimizer.param_groups
                             if any(p is head.centres for p in g["params"]))

    def on_train_batch_end(trainer):
        seen["criterion"] = type(trainer.model.criterion)
        seen["after"] = trainer.model.model[-1].centres.detach().clone()

    yolo = YOLO(str(tmp_path / "small-cls.yaml"))
    yolo.add_callback("on_train_start", on_train_start)
    yolo.add_callback("on_train_batch_end", on_train_batch_end)
    yolo.train(data=str(tiny_crops), batch=n, nbs=n, project=str(tmp_path), name="t", **TRAIN)
    assert seen["criterion"] is CosineHarmonyCriterion and yolo.trainer.loss_names == ("ce", "ch")
    assert seen["decay"] == 0  # the centres train without weight decay
    assert (seen["after"] - seen["before"]).abs().max() > 1e-6
    head = YOLO(str(tmp_path / "t" / "weights" / "last.pt")).model.model[-1]
    assert isinstance(head, SpatialBiasClassify) and head.centres.shape == (7, 32) and head.features is None


def test_stock_classify_model_keeps_ultralytics_loss(tiny_crops, tmp_path):
    seen = {}
    yolo = YOLO("yolov8n-cls.yaml")
    yolo.add_callback("on_train_batch_end", lambda t: seen.setdefault("criterion", type(t.model.criterion)))
    yolo.train(data=str(tiny_crops), batch=8, project=str(tmp_path), name="t", val=False, **TRAIN)
    assert seen["criterion"] is v8ClassificationLoss and yolo.trainer.loss_names == ("loss",)
    assert ClassificationModel.init_criterion.__wrapped__(yolo.trainer.model).__class__ is v8ClassificationLoss


def _run(cmd, env, cwd):
    r = subprocess.run(NO_NET + cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r.stdout + r.stderr


@pytest.mark.skipif(shutil.which("yolo") is None, reason="the yolo console script is not installed")
def test_yolo_classify_cli_trains_and_exports_offline(tiny_crops, offline_env, tmp_path):
    env = dict(offline_env, YOLO_CONFIG_DIR=str(tmp_path / "cfg"), YOLO_VERBOSE="true")
    out = _run([shutil.which("yolo"), "classify", "train", "model=lfnsb-cls.yaml", f"data={tiny_crops}", "imgsz=32",
                "epochs=1", "batch=8", "workers=0", "device=cpu", f"project={tmp_path}", "name=cli"], env, tmp_path)
    assert "SpatialBiasClassify" in out and "MixDW" in out
    best = tmp_path / "cli" / "weights" / "best.pt"
    _run([shutil.which("yolo"), "export", f"model={best}", "format=onnx", "imgsz=112", "opset=17"], env, tmp_path)
    script = f"""
import json, numpy as np, torch, onnxruntime as ort
from ultralytics import YOLO
model = YOLO({str(best)!r}).model.float().eval()
x = torch.rand(1, 3, 112, 112, generator=torch.Generator().manual_seed(0))
with torch.no_grad():
    ref = model(x)[0].numpy()
sess = ort.InferenceSession({str(best.with_suffix(".onnx"))!r}, providers=["CPUExecutionProvider"])
got = sess.run(None, {{sess.get_inputs()[0].name: x.numpy()}})[0]
print(json.dumps({{"shape": list(got.shape), "err": float(np.abs(got - ref).max())}}))
"""
    result = json.loads(_run([PYTHON, "-c", script], env, tmp_path).strip().splitlines()[-1])
    assert result["shape"] == [1, 7] and result["err"] < 1e-5  # probabilities, as Classify exports them
