"""Multi-GPU training: Ultralytics' DDP workers are fresh interpreters that never import the plugin.

The trainer writes a temporary script plus a cloudpickled state (`ultralytics.utils.dist.generate_ddp_command`) and
launches it with `python -m torch.distributed.run`. Here a real DetectionTrainer generates both, and the command it
returns runs on CPU with one process: torchrun sets RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT as for
a GPU worker. The one stand-in: `BaseTrainer._setup_ddp` (the NCCL/gloo init) only runs for several CUDA devices, so
a small wrapper opens the gloo process group, then runs the generated script unchanged as __main__.

Two ways a trainer reaches DDP:
- `DetectionTrainer(overrides={"model": "fer-yolo-mamba-n.yaml", ...}).train()`: the state holds the YAML name,
  the worker builds the model from it, so only the .pth import hook can make our modules known there;
- `yolo detect train ... device=0,1` / `YOLO(...).train(device=[0, 1])`: Model.train builds the model first, the
  state holds the model object, and unpickling it imports the package (which registers), even with the hook off.
"""

import json
import os
import subprocess
import sys

import pytest
import torch

GENERATE = """
import json, sys
from ultralytics.models.yolo.detect import DetectionTrainer
from ultralytics.utils.dist import generate_ddp_command
data, project, built = sys.argv[1], sys.argv[2], sys.argv[3] == "built"
trainer = DetectionTrainer(overrides=dict(model="fer-yolo-mamba-n.yaml", data=data, epochs=1, imgsz=64, batch=4,
                                          device="cpu", workers=0, project=project, name="ddp", plots=False, val=False))
if built:  # what Model.train does before trainer.train() launches the workers
    from ultralytics import YOLO
    trainer.model = trainer.get_model(cfg=YOLO("fer-yolo-mamba-n.yaml").model.yaml, verbose=False)
cmd, file = generate_ddp_command(trainer)
print(json.dumps({"cmd": cmd, "file": file, "model": type(trainer.model).__name__}))
"""

WORKER = """
import json, runpy, sys
import torch.distributed as dist

dist.init_process_group("gloo")  # stands in for BaseTrainer._setup_ddp (CUDA devices only)
try:
    runpy.run_path(sys.argv[1], run_name="__main__")  # the generated DDP script, unchanged
finally:
    trainer = sys.modules.get("ultralytics.engine.trainer")
    print("WORKER " + json.dumps({
        "rank": dist.get_rank(), "world_size": dist.get_world_size(),
        "plugin_imported": "ultra_fer_mamba" in sys.modules,
        "trainer_patched": bool(trainer and getattr(trainer.BaseTrainer.build_optimizer, "__ultra_fer_mamba__", False)),
    }), flush=True)
    dist.destroy_process_group()
"""


def _env(tmp_path, **extra):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "ULTRA_FER_MAMBA_NO_HOOK")}
    env.update(YOLO_OFFLINE="1", YOLO_AUTOINSTALL="false", YOLO_VERBOSE="true", PYTHONUNBUFFERED="1",
               YOLO_CONFIG_DIR=str(tmp_path / "cfg"), **extra)
    return env


def _launch(tiny_data, tmp_path, built: bool, hook: bool):
    """Generate the DDP command in one process, run it (1 CPU worker) in others; returns (worker result, output)."""
    # the launching process: the user's `yolo`/python process (here with the hook, as installed)
    env = _env(tmp_path, ULTRALYTICS_SKIP_REQUIREMENTS_CHECKS="1")  # cloudpickle>=3.1.1 check: see docs/ddp.md
    r = subprocess.run([sys.executable, "-c", GENERATE, str(tiny_data), str(tmp_path), "built" if built else "yaml"],
                       env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    launch = json.loads(r.stdout.strip().splitlines()[-1])
    assert launch["model"] == ("DetectionModel" if built else "str")
    cmd = launch["cmd"]
    assert cmd[1:3] == ["-m", "torch.distributed.run"] and cmd[-1] == launch["file"]
    script = launch["file"]
    assert "import ultra_fer_mamba" not in open(script).read()

    wrapper = tmp_path / "worker.py"
    wrapper.write_text(WORKER)
    i = cmd.index("--nproc_per_node")
    cmd = cmd[: i + 1] + ["1"] + cmd[i + 2 : -1] + [str(wrapper), script]
    env = _env(tmp_path, **({} if hook else {"ULTRA_FER_MAMBA_NO_HOOK": "1"}))
    r = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    out = r.stdout + r.stderr
    line = next((x for x in out.splitlines() if x.startswith("WORKER ")), None)
    assert line, out[-3000:]
    return r.returncode, json.loads(line[len("WORKER "):]), out


def _assert_trained(tmp_path, result, out):
    assert result == {"rank": 0, "world_size": 1, "plugin_imported": True, "trainer_patched": True}, result
    last = tmp_path / "ddp" / "weights" / "last.pt"
    assert last.is_file(), out[-3000:]
    types = {type(m).__name__ for m in torch.load(last, map_location="cpu", weights_only=False)["model"].modules()}
    assert {"FERYOLOVSS1", "FERYOLOVSS2", "OSSM", "ABMLP"} <= types


def test_ddp_worker_builds_our_model_from_yaml_through_the_hook(tiny_data, tmp_path):
    rc, result, out = _launch(tiny_data, tmp_path, built=False, hook=True)
    assert rc == 0, out[-3000:]
    assert "FERYOLOVSS1" in out and "FERYOLOVSS2" in out  # the worker's own layer table
    _assert_trained(tmp_path, result, out)


def test_ddp_worker_without_the_hook_cannot_build_from_yaml(tiny_data, tmp_path):
    """The negative control: with ULTRA_FER_MAMBA_NO_HOOK=1 nothing registers the names in the worker."""
    rc, result, out = _launch(tiny_data, tmp_path, built=False, hook=False)
    assert rc != 0 and result["plugin_imported"] is False
    assert "FileNotFoundError: 'fer-yolo-mamba-n.yaml' does not exist" in out, out[-4000:]  # names resolve via hook


@pytest.mark.slow
def test_ddp_worker_of_a_built_model_needs_no_hook(tiny_data, tmp_path):
    """The `yolo ... device=0,1` path: the pickled model imports (and registers) the package in the worker."""
    rc, result, out = _launch(tiny_data, tmp_path, built=True, hook=False)
    assert rc == 0, out[-3000:]
    _assert_trained(tmp_path, result, out)
