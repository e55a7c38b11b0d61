"""The stock trainer on our model: SSM parameters in the optimizer, trained, A_log and D without decay."""

import torch
from conftest import logged
from ultralytics import YOLO
from ultralytics.nn.tasks import DetectionModel

from ultra_fer_mamba.integration.trainer import build_optimizer, no_weight_decay_parameters
from ultra_fer_mamba.nn import OSSM

SSM_NAMES = ("A_logs", "Ds", "x_proj_weight", "dt_projs_weight", "dt_projs_bias")


def test_ssm_parameters_are_trained_with_the_right_decay(tiny_data, tmp_path):
    seen = {}

    def on_train_start(trainer):
        model = trainer.model
        seen["before"] = {n: p.detach().clone() for n, p in model.named_parameters() if n.rsplit(".", 1)[-1] in SSM_NAMES}
        seen["groups"] = {id(p): (g["param_group"], g["weight_decay"]) for g in trainer.optimizer.param_groups
                          for p in g["params"]}
        seen["params"] = dict(model.named_parameters())
        seen["trainer"] = trainer

    model = YOLO("fer-yolo-mamba-n.yaml")
    model.add_callback("on_train_start", on_train_start)
    model.train(data=str(tiny_data), epochs=1, imgsz=64, batch=4, device="cpu", workers=0, optimizer="AdamW",
                lr0=0.01, weight_decay=0.05, warmup_epochs=0, project=str(tmp_path), name="t", plots=False,
                val=False, amp=False, verbose=False)

    before, groups, params = seen["before"], seen["groups"], seen["params"]
    n_ossm = sum(isinstance(m, OSSM) for m in seen["trainer"].model.modules())
    assert n_ossm == 4 and len(before) == 5 * n_ossm
    for name, value in before.items():
        p = params[name]
        group, decay = groups[id(p)]  # every SSM parameter is in the optimizer
        leaf = name.rsplit(".", 1)[-1]
        if leaf in ("A_logs", "Ds"):
            assert decay == 0.0, name
        elif leaf == "dt_projs_bias":
            assert group == "bias" and decay == 0.0, name
        else:
            assert group == "weight" and decay > 0, name
        assert p.requires_grad and not torch.equal(p.detach(), value), f"{name} did not change after training"


def _groups(*groups):
    """An optimizer with the given parameter groups (lists of parameters plus options)."""
    return torch.optim.SGD([dict(g) for g in groups], lr=0.01)


def test_build_optimizer_finds_the_no_decay_group_of_each_layout_and_warns_otherwise():
    """8.4's named groups, 8.3's three unnamed ones (bias, decay, BatchNorm), and an unknown layout: a warning."""
    model = DetectionModel("fer-yolo-mamba-n.yaml", nc=7, verbose=False)
    ssm = no_weight_decay_parameters(model)
    others = [p for p in model.parameters() if all(p is not q for q in ssm)]
    assert len(ssm) == 8  # A_logs and Ds of 4 OSSM layers
    layouts = {
        "8.4": [dict(params=others + ssm, weight_decay=5e-4, param_group="weight"),
                dict(params=[], weight_decay=0.0, param_group="bn"), dict(params=[], param_group="bias")],
        "8.3": [dict(params=[]), dict(params=others + ssm, weight_decay=5e-4), dict(params=[], weight_decay=0.0)],
        "unknown": [dict(params=others + ssm, weight_decay=5e-4), dict(params=[], weight_decay=0.0)],
    }
    for name, groups in layouts.items():
        with logged() as records:
            optimizer = build_optimizer(lambda self, m: _groups(*groups), None, model)
        decay = {id(p) for g in optimizer.param_groups if g["weight_decay"] for p in g["params"]}
        warned = [message for _, message in records]
        if name == "unknown":
            assert {id(p) for p in ssm} <= decay
            assert len(warned) == 1 and "8 no-decay tensors (OSSM's A_log and D" in warned[0], warned
        else:
            assert not decay & {id(p) for p in ssm} and {id(p) for p in others} <= decay, name
            assert not warned, warned
