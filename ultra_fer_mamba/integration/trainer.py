"""Training our models with the stock trainer: optimizer groups, the AMP check and the classification loss.

Three wrappers, each stepping aside for models that hold none of our modules (``registry.is_ours``), so stock
models train exactly as without the plugin:

- ``BaseTrainer.build_optimizer``: after the original builds its groups, the parameters our modules train
  without weight decay (their ``no_weight_decay_parameters()``: OSSM's A_log and D, as Mamba trains them;
  LFNSB's class centres) move to the group without weight decay.
- ``check_amp``: our models get ``offline_amp_check`` (the model itself, fp32 vs autocast, no download);
  every other model gets Ultralytics' own check.
- ``ClassificationModel.init_criterion``: a model ending in ``SpatialBiasClassify`` with ``harmony > 0`` trains with
  cross-entropy + Cosine-Harmony (``losses.CosineHarmonyCriterion``); every other classify model (harmony 0
  included) gets Ultralytics' own ``v8ClassificationLoss``.
"""

from __future__ import annotations

from copy import deepcopy

import torch
import torch.nn as nn

from ..losses import CosineHarmonyCriterion
from ..nn import SpatialBiasClassify
from .registry import CLASSES, is_ours


def no_weight_decay_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Every parameter our modules train without weight decay (their ``no_weight_decay_parameters()``)."""
    found = {}
    for m in model.modules():
        if isinstance(m, CLASSES) and hasattr(m, "no_weight_decay_parameters"):
            found.update({id(p): p for p in m.no_weight_decay_parameters()})
    return list(found.values())


def no_decay_group(optimizer: torch.optim.Optimizer) -> dict | None:
    """The group Ultralytics puts BatchNorm weights in (no weight decay, the weights' learning-rate schedule), or None.

    Ultralytics >= 8.4 names its groups (``param_group="bn"``); 8.3 builds three unnamed ones: biases (warmed up at
    their own rate), weights with decay, BatchNorm weights without.
    """
    groups = optimizer.param_groups
    if any("param_group" in g for g in groups):
        return next((g for g in groups if g.get("param_group") == "bn"), None)
    if len(groups) == 3 and groups[1].get("weight_decay", 0) and not groups[2].get("weight_decay", 0):
        return groups[2]
    return None


def build_optimizer(original, self, model, *args, **kwargs):
    """``BaseTrainer.build_optimizer``, then our no-decay parameters moved to the group without weight decay.

    Steps aside (returns the original's optimizer unchanged) for a model with no such parameters. Warns when this
    Ultralytics version's groups have no recognisable no-decay group: those parameters then train with decay.
    """
    from ultralytics.utils import LOGGER

    optimizer = original(self, model, *args, **kwargs)
    ids = {id(p) for p in no_weight_decay_parameters(getattr(model, "module", model))}
    if not ids:
        return optimizer
    target = no_decay_group(optimizer)
    if target is None:
        layout = [{k: v for k, v in g.items() if k in ("param_group", "weight_decay")} for g in optimizer.param_groups]
        LOGGER.warning(f"ultra-fer-mamba: no parameter group without weight decay found among {layout}; "
                       f"{len(ids)} no-decay tensors (OSSM's A_log and D, LFNSB's class centres) train with weight decay.")
        return optimizer
    for g in optimizer.param_groups:
        if g is not target and g.get("weight_decay", 0) and not g.get("use_muon"):
            moved = [p for p in g["params"] if id(p) in ids]
            g["params"] = [p for p in g["params"] if id(p) not in ids]
            target["params"].extend(moved)
    return optimizer


def offline_amp_check(model: nn.Module) -> bool:
    """AMP check without downloads: the model being trained, fp32 vs autocast, on one fixed batch.

    Returns False (train in fp32) on the CPU and MPS, where Ultralytics never uses AMP, when the outputs differ, and
    when the check itself fails (with a warning).
    """
    from ultralytics.utils import LOGGER
    from ultralytics.utils.torch_utils import autocast

    device = next(model.parameters()).device
    if device.type in {"cpu", "mps"}:
        return False
    try:
        model_ = deepcopy(model).eval()
        x = torch.rand(2, 3, 256, 256, generator=torch.Generator().manual_seed(0)).to(device)
        with torch.no_grad():
            a = model_(x)[0]
            with autocast(enabled=True, device=device.type):
                b = model_(x)[0].float()
    except Exception as e:  # e.g. out of memory: fp32 is the safe choice
        LOGGER.warning(f"AMP: check failed to run ({type(e).__name__}: {e}); training in fp32")
        return False
    ok = bool(torch.isfinite(b).all()) and torch.allclose(a, b, rtol=0.05, atol=0.5)
    LOGGER.info(f"AMP: checks {'passed ✅' if ok else 'failed, training in fp32'} (offline check on the model itself)")
    return ok


def check_amp(original, model, *args, **kwargs):
    """The trainer's ``check_amp``: ``offline_amp_check`` for our models, Ultralytics' own for every other model."""
    return offline_amp_check(model) if is_ours(model) else original(model, *args, **kwargs)


def init_criterion(original, self, *args, **kwargs):
    """``ClassificationModel.init_criterion``: Cosine-Harmony for our head with ``harmony > 0``, else the original."""
    layers = getattr(self, "model", None)
    head = layers[-1] if isinstance(layers, nn.Sequential) and len(layers) else None
    if isinstance(head, SpatialBiasClassify) and head.harmony > 0:
        return CosineHarmonyCriterion(head)
    return original(self, *args, **kwargs)


PATCHES = (
    ("ultralytics.engine.trainer", "BaseTrainer.build_optimizer", build_optimizer),
    ("ultralytics.engine.trainer", "check_amp", check_amp),
    ("ultralytics.nn.tasks", "ClassificationModel.init_criterion", init_criterion),
)
