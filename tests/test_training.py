"""The stock trainer on our model: SSM parameters in the optimizer, trained, A_log and D without decay."""

import torch
from ultralytics import YOLO

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
