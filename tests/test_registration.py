"""The four names inside stock Ultralytics: YAML family, scales, parser errors, weight transfer."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from conftest import logged
from ultralytics.nn.tasks import DetectionModel

import ultra_fer_mamba
from ultra_fer_mamba.integration import resolve_model_yaml, yaml_dir
from ultra_fer_mamba.nn import OSSM, FERYOLOVSS1, FERYOLOVSS2

YAMLS = sorted(p.name for p in yaml_dir().glob("fer-yolo-mamba*.yaml"))  # the detection family (LFNSB: test_lfnsb.py)
# P3, P4, P5 output channels by scale: yolov8's widths, VSS2 keeping its input channels at P5
OUT_CHANNELS = {"n": (64, 128, 256), "s": (128, 256, 512), "m": (192, 384, 768), "l": (256, 512, 1024),
                "x": (320, 640, 1280)}


def test_shipped_yamls():
    assert YAMLS == ["fer-yolo-mamba-nofrm.yaml", "fer-yolo-mamba-nooss.yaml", "fer-yolo-mamba-ss2d.yaml",
                     "fer-yolo-mamba.yaml"]
    assert sorted(p.name for p in yaml_dir().glob("*.yaml")) == [*YAMLS, "lfnsb-cls.yaml"]


@pytest.mark.parametrize("scale", "nsmlx")
def test_every_yaml_every_scale_builds_and_runs(scale, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # names resolve from any working directory
    for name in YAMLS if scale == "n" else ["fer-yolo-mamba.yaml"]:  # ablations differ in options only
        model = DetectionModel(name.replace(".yaml", f"-{scale}.yaml"), nc=7, verbose=False)
        assert model.yaml["scale"] == scale
        heads = [m for m in model.modules() if isinstance(m, FERYOLOVSS1)]
        assert [type(m) for m in heads] == [FERYOLOVSS1, FERYOLOVSS1, FERYOLOVSS2, FERYOLOVSS2]
        ossm = [m for m in model.modules() if isinstance(m, OSSM)]
        depth = {"n": 1, "s": 1, "m": 2, "l": 3, "x": 3}[scale]
        if "nooss" not in name:
            assert len(ossm) == 4 * depth
            assert {m.k for m in ossm} == ({4} if "ss2d" in name else {8})
        if scale in "ns":  # forward with H != W, as rect validation and letterboxing feed it
            model.eval()
            with torch.no_grad():
                y, raw = model(torch.zeros(1, 3, 96, 64))
            assert y.shape == (1, 4 + 7, (12 * 8) + (6 * 4) + (3 * 2))
            assert tuple(f.shape[1] for f in raw["feats"]) == OUT_CHANNELS[scale]


def test_bare_name_is_scale_s_and_prints_no_warning():
    with logged() as records:  # warnings shown (LOGGER's level lowered for the test)
        bare = DetectionModel("fer-yolo-mamba.yaml", nc=7, verbose=True)
        small = DetectionModel("fer-yolo-mamba-s.yaml", nc=7, verbose=False)
    assert records == []
    assert bare.yaml["scale"] == small.yaml["scale"] == "s"
    assert sum(p.numel() for p in bare.parameters()) == sum(p.numel() for p in small.parameters())


def test_resolve_model_yaml():
    assert resolve_model_yaml("fer-yolo-mamba-ss2d-x.yaml")[0].name == "fer-yolo-mamba-ss2d.yaml"
    assert resolve_model_yaml("fer-yolo-mamba-ss2d-x.yaml")[1] == "x"
    assert resolve_model_yaml("fer-yolo-mamba.yaml")[1] == "s"
    assert resolve_model_yaml("yolov8s.yaml") is None
    assert resolve_model_yaml("fer-yolo-mamba-q.yaml") is None


def test_stock_yaml_unchanged():
    a = DetectionModel("yolov8n.yaml", nc=7, verbose=False)
    assert not any(isinstance(m, OSSM) for m in a.modules())
    assert sum(p.numel() for p in a.parameters()) == 3012213  # YOLOv8n with 7 classes


def _custom_yaml(tmp_path, rows):
    d = yaml.safe_load((yaml_dir() / "fer-yolo-mamba.yaml").read_text())
    d["head"][13 - 10] = rows
    p = tmp_path / "custom-n.yaml"
    p.write_text(yaml.safe_dump(d, sort_keys=False))
    return p


def test_vss2_where_channels_change_names_the_layer(tmp_path):
    with pytest.raises(ValueError, match=r"layer 13 \(FERYOLOVSS2, args \[512\]\).*c1=256 != c2=128"):
        DetectionModel(str(_custom_yaml(tmp_path, [-1, 3, "FERYOLOVSS2", [512]])), nc=7, verbose=False)


@pytest.mark.parametrize("args, message", [([512, {"directions": 5}], "directions=5"),
                                           ([512, {"colour": "red"}], "colour")])
def test_bad_options_name_the_layer(tmp_path, args, message):
    with pytest.raises(ValueError, match=rf"layer 13 \(FERYOLOVSS1.*{message}"):
        DetectionModel(str(_custom_yaml(tmp_path, [-1, 3, "FERYOLOVSS1", args])), nc=7, verbose=False)


def test_backbone_weights_transfer_from_yolov8s():
    """Every backbone tensor of a yolov8s-shaped state dict (built here, not downloaded) loads."""
    donor = DetectionModel("yolov8s.yaml", nc=7, verbose=False)
    with torch.no_grad():
        for p in donor.parameters():
            p.uniform_(-1, 1)
    ours = DetectionModel("fer-yolo-mamba-s.yaml", nc=7, verbose=False)
    backbone = {k: v for k, v in donor.state_dict().items() if int(k.split(".")[1]) <= 9}
    ours.load(donor)  # Ultralytics' own transfer (intersect_dicts by name and shape)
    got = ours.state_dict()
    assert len(backbone) > 100
    assert all(torch.equal(got[k], v) for k, v in backbone.items())


def test_params_no_more_than_yolov8s():
    ours = DetectionModel("fer-yolo-mamba-s.yaml", nc=7, verbose=False)
    stock = DetectionModel("yolov8s.yaml", nc=7, verbose=False)
    n_ours, n_stock = (sum(p.numel() for p in m.parameters()) for m in (ours, stock))
    assert n_ours <= n_stock, (n_ours, n_stock)


def test_registration_is_idempotent():
    from ultralytics.nn import tasks

    before = tasks.parse_model
    ultra_fer_mamba.register()
    assert tasks.parse_model is before


def _fresh_python(script: str, tmp_path) -> subprocess.CompletedProcess:
    """Run a script in a fresh interpreter with the .pth hook on, as installed; it must succeed."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "ULTRA_FER_MAMBA_NO_HOOK")}
    env.update(YOLO_OFFLINE="1", YOLO_CONFIG_DIR=str(tmp_path / "cfg"))
    r = subprocess.run([sys.executable, "-c", script], env=env, cwd=tmp_path, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return r


@pytest.mark.parametrize("version", ["8.2.103", "8.5.0", "9.0.1"])
def test_unsupported_ultralytics_gets_one_clear_message(monkeypatch, version):
    import ultralytics

    monkeypatch.setattr(ultralytics, "__version__", version)
    with pytest.raises(ImportError) as e:
        ultra_fer_mamba.register()
    assert str(e.value) == (f"ultra-fer-mamba supports ultralytics>=8.3.215,<8.5 (the range it is tested on); found "
                            f"{version}. Install a supported version: pip install 'ultralytics>=8.3.215,<8.5'")


def test_unsupported_ultralytics_through_the_hook_warns_once_and_stock_still_works(tmp_path):
    """The .pth hook never breaks Ultralytics: one warning with the message, and stock models build."""
    script = ("import sys, ultralytics\nultralytics.__version__ = '8.2.103'\nfrom ultralytics import YOLO\n"
              "import ultralytics.engine.trainer\nYOLO('yolov8n.yaml')\n"
              "print('plugin', 'ultra_fer_mamba' in sys.modules)")
    r = _fresh_python(script, tmp_path)
    assert r.stdout.strip().endswith("plugin False")
    assert r.stderr.count("ultra-fer-mamba supports ultralytics>=8.3.215,<8.5 (the range it is tested on); "
                          "found 8.2.103.") == 1, r.stderr


def test_declared_range_is_the_supported_range():
    from ultra_fer_mamba.integration import SUPPORTED

    pyproject = (Path(__file__).parents[1] / "pyproject.toml").read_text()
    assert f'"ultralytics>={SUPPORTED[0]},<{SUPPORTED[1]}",' in [line.strip() for line in pyproject.splitlines()]


@pytest.mark.parametrize("first", ["from ultralytics import YOLO", "import ultralytics.engine.trainer",
                                   "from ultralytics.engine.exporter import Exporter", "import ultra_fer_mamba"])
def test_hook_installs_every_wrapper_whatever_is_imported_first(first, tmp_path):
    """The hook registers inside Ultralytics' own import: modules still importing are wrapped when they finish."""
    script = (f"import warnings\nwarnings.simplefilter('error', UserWarning)\n{first}\n"
              "import ultralytics.engine.trainer as t\nfrom ultralytics.nn import tasks\n"
              "print(sorted(f.__name__ for f in (tasks.parse_model, tasks.check_yaml, tasks.guess_model_scale, "
              "tasks.torch_safe_load, t.check_amp, t.BaseTrainer.build_optimizer) if hasattr(f, '__wrapped__')))")
    r = _fresh_python(script, tmp_path)
    assert r.stdout.split("\n")[-2] == str(sorted(["parse_model", "check_yaml", "guess_model_scale", "torch_safe_load",
                                                   "check_amp", "build_optimizer"]))
