"""Bad input everywhere a user can give it: one clear message naming the file, layer or argument.

- model YAMLs: errors at build time naming the layer, never a traceback from inside a forward or the scan;
- checkpoints from another plugin version (classes moved, attributes renamed, another version stamp);
- datasets and prediction sources: what stock Ultralytics already reports (verified here, not re-implemented).
"""

import os
import shutil
import subprocess
import sys
import types

import numpy as np
import pytest
import torch
import yaml
from ultralytics import YOLO
from ultralytics.nn.tasks import DetectionModel

import ultra_fer_mamba
from ultra_fer_mamba.integration import yaml_dir
from ultra_fer_mamba.integration.checkpoints import VERSION_ATTR, checkpoint_version
from ultra_fer_mamba.nn import OSSM, FERYOLOVSS1

from conftest import logged, make_tiny_dataset

YOLO_BIN = shutil.which("yolo")
DEEP = ("ultra_fer_mamba/ops/", "in forward")  # frames of the scan or of any forward: the model never ran


def _env(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(YOLO_OFFLINE="1", YOLO_AUTOINSTALL="false", YOLO_VERBOSE="true", YOLO_CONFIG_DIR=str(tmp_path / "cfg"))
    return env


def _yaml(tmp_path, row_index, row):
    d = yaml.safe_load((yaml_dir() / "fer-yolo-mamba.yaml").read_text())
    d["head"][row_index - len(d["backbone"])] = row
    p = tmp_path / "custom-n.yaml"
    p.write_text(yaml.safe_dump(d, sort_keys=False))
    return p


# ---------------------------------------------------------------- model YAMLs
@pytest.mark.parametrize("i, row, message", [
    (13, [-1, 3, "FERYOLOVSS2", [512]], r"layer 13 \(FERYOLOVSS2, args \[512\]\).*c1=256 != c2=128.*use FERYOLOVSS1"),
    (17, [-1, 3, "FERYOLOVSS1", [256, {"directions": 5}]], r"layer 17 \(FERYOLOVSS1.*directions=5.*\(4, 8\)"),
    (20, [-1, 3, "FERYOLOVSS2", [512, {"dstate": 8}]], r"layer 20 \(FERYOLOVSS2.*unexpected keyword argument 'dstate'"),
    (20, [-1, 3, "FERYOLOVSS2", [512, {"d_state": 0}]], r"layer 20 \(FERYOLOVSS2.*d_state >= 1"),
    (13, [-1, 3, "FERYOLOVSS1", []], r"layer 13 \(FERYOLOVSS1\): the first argument must be the output channels"),
])
def test_yaml_errors_name_the_layer_at_build_time(tmp_path, i, row, message):
    with pytest.raises(ValueError, match=message) as e:
        DetectionModel(str(_yaml(tmp_path, i, row)), nc=7, verbose=False)
    frames = [str(tb.path) for tb in e.traceback]
    assert not any("ultra_fer_mamba/ops/" in f for f in frames), frames  # raised while building, nothing ran
    assert e.value.__cause__ is None and (e.value.__context__ is None or e.value.__suppress_context__)  # no chain


@pytest.mark.skipif(YOLO_BIN is None, reason="the yolo console script is not installed")
def test_yaml_error_from_the_yolo_cli(tmp_path, tiny_data):
    """What a `yolo` user sees: the last line names the layer and the bad option; nothing from the scan."""
    cfg = _yaml(tmp_path, 17, [-1, 3, "FERYOLOVSS1", [256, {"directions": 5}]])
    r = subprocess.run([YOLO_BIN, "detect", "train", f"model={cfg}", f"data={tiny_data}", "epochs=1", "imgsz=64",
                        "device=cpu", f"project={tmp_path}"], env=_env(tmp_path), cwd=tmp_path, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode != 0
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("ValueError: model YAML layer 17 (FERYOLOVSS1, args [256, {'directions': 5}]): "
                           "OSSM directions=5 is not supported; use one of (4, 8)"), r.stderr[-2000:]
    assert not any(d in r.stderr for d in DEEP)


# ---------------------------------------------------------------- checkpoints from another plugin version
@pytest.fixture(scope="module")
def model():
    return YOLO("fer-yolo-mamba-n.yaml").model


def _save(model, path, version=None, moved_to=None, rename=None):
    """A checkpoint as another plugin version would have written it; returns its path.

    version: the stamp on our modules (None: no stamp, as before stamps existed); moved_to: module path the
    FERYOLOVSS1 class had in that version; rename: (old, new) parameter name of OSSM in that version.
    """
    import copy

    m = copy.deepcopy(model)
    for x in m.modules():
        if hasattr(x, VERSION_ATTR):
            if version is None:
                delattr(x, VERSION_ATTR)
            else:
                setattr(x, VERSION_ATTR, version)
        if rename and isinstance(x, OSSM):
            x._parameters[rename[1]] = x._parameters.pop(rename[0])
    fake = None
    if moved_to:
        module, _, name = moved_to.rpartition(".")
        fake = sys.modules.setdefault(module, types.ModuleType(module))
        cls = type(name, (FERYOLOVSS1,), {"__module__": module, "__qualname__": name})
        setattr(fake, name, cls)
        for x in m.modules():
            if type(x) is FERYOLOVSS1:
                x.__class__ = cls
    try:
        torch.save({"model": m, "train_args": {}}, path)
    finally:
        if fake is not None:
            if fake.__name__.startswith("ultra_fer_mamba.nn.old"):
                sys.modules.pop(fake.__name__)
            else:
                delattr(fake, name)
    return path


@pytest.mark.parametrize("moved_to, version, message", [
    ("ultra_fer_mamba.nn.old_name.FERYOLOVSS1", "0.0.9",
     r"old\.pt was saved by ultra-fer-mamba 0\.0\.9 and needs ultra_fer_mamba\.nn\.old_name\.FERYOLOVSS1, which "
     r"ultra-fer-mamba 0\.1\.0 \(installed\) does not have\. To use it, pip install 'ultra-fer-mamba==0\.0\.9'"),
    ("ultra_fer_mamba.nn.vss.FERYOLOVSS0", "0.2.0",
     r"old\.pt was saved by ultra-fer-mamba 0\.2\.0 and needs ultra_fer_mamba\.nn\.vss\.FERYOLOVSS0,"),
    ("ultra_fer_mamba.nn.old_vss.FERYOLOVSS1", None,
     r"old\.pt was saved by an ultra-fer-mamba version that did not record itself"),
])
def test_checkpoint_with_classes_this_version_lacks(model, tmp_path, moved_to, version, message):
    path = _save(model, tmp_path / "old.pt", version=version, moved_to=moved_to)
    assert checkpoint_version(path) == version  # read from the pickle without unpickling it
    with pytest.raises(ModuleNotFoundError, match=message):
        YOLO(path)


def test_checkpoint_with_renamed_parameters(model, tmp_path):
    """Classes where they were, but a parameter renamed: the error names the file, the layer type and the name."""
    path = _save(model, tmp_path / "renamed.pt", version="0.0.9", rename=("A_logs", "A_log"))
    with pytest.raises(AttributeError, match=r"renamed\.pt was saved by ultra-fer-mamba 0\.0\.9: its OSSM layers "
                                             r"lack \['A_logs'\], which ultra-fer-mamba 0\.1\.0 \(installed\) needs"):
        YOLO(path)


@pytest.mark.parametrize("version, warns", [("0.0.9", True), (ultra_fer_mamba.__version__, False), (None, False)])
def test_loadable_checkpoint_of_another_version_warns(model, tmp_path, version, warns):
    path = _save(model, tmp_path / "other.pt", version=version)
    with logged() as records:
        loaded = YOLO(path)
    assert loaded.predict(np.zeros((64, 64, 3), np.uint8), imgsz=64, device="cpu", verbose=False)
    expected = f"other.pt was saved by ultra-fer-mamba 0.0.9; this is {ultra_fer_mamba.__version__}"
    assert any(expected in m for _, m in records) == warns, records


def test_new_models_record_the_plugin_version(model, tmp_path):
    stamps = {getattr(m, VERSION_ATTR) for m in model.modules() if hasattr(m, VERSION_ATTR)}
    assert stamps == {ultra_fer_mamba.__version__}
    path = tmp_path / "new.pt"
    YOLO("fer-yolo-mamba-n.yaml").save(path)
    assert checkpoint_version(path) == ultra_fer_mamba.__version__


@pytest.mark.parametrize("keep", ["nothing", "inside the pickle", "inside the tensors"])
def test_truncated_checkpoint_names_the_file(model, tmp_path, keep):
    """Empty or cut short (a training killed while writing last.pt): TypeError naming the file, for every length."""
    path = _save(model, tmp_path / "cut.pt", version="0.1.0")
    data = path.read_bytes()
    cut = {"nothing": 0, "inside the pickle": data.index(b"ultra_fer_mamba") + 1000, "inside the tensors": 3_000_000}
    path.write_bytes(data[: cut[keep]])
    with pytest.raises(TypeError, match=r"cut\.pt is not a loadable checkpoint"):
        YOLO(path)


def test_file_cut_before_our_names_gets_ultralytics_own_error(model, tmp_path):
    """A file cut before its pickle names ultra_fer_mamba cannot be told from a stock one: the original decides."""
    from ultralytics.nn import tasks

    path = _save(model, tmp_path / "cut.pt", version="0.1.0")
    path.write_bytes(path.read_bytes()[:5000])
    errors = []
    for load in (tasks.torch_safe_load, tasks.torch_safe_load.__wrapped__):
        with pytest.raises(Exception) as e:
            load(str(path))
        errors.append((type(e.value), str(e.value)))
    assert errors[0] == errors[1]


# ---------------------------------------------------------------- datasets and prediction sources
@pytest.mark.skipif(YOLO_BIN is None, reason="the yolo console script is not installed")
def test_bad_dataset_files_are_named_and_skipped(tmp_path):
    """Stock label verification names every bad file and trains on the rest; a zero-byte label is a background."""
    data = make_tiny_dataset(tmp_path / "d", n_train=10, size=64)
    im, lb = tmp_path / "d/images/train", tmp_path / "d/labels/train"
    bad = {
        "train_000": "ignoring corrupt image/label",  # truncated JPEG header
        "train_001": "ignoring corrupt image/label",  # zero-byte image
        "train_003": "Label class 9 exceeds dataset class count 7",
        "train_004": "non-normalized or out of bounds coordinates [1.5]",
        "train_005": "negative label values",
        "train_006": "labels require 5 columns, 4 columns detected",
    }
    (im / "train_000.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"garbage" * 20)
    (im / "train_001.jpg").write_bytes(b"")
    (lb / "train_002.txt").write_bytes(b"")  # zero-byte label: an image with no faces
    (lb / "train_003.txt").write_text("9 0.5 0.5 0.2 0.2\n")
    (lb / "train_004.txt").write_text("1 1.5 0.5 0.2 0.2\n")
    (lb / "train_005.txt").write_text("1 -0.3 0.5 0.2 0.2\n")
    (lb / "train_006.txt").write_text("1 0.5 0.5 0.2\n")
    r = subprocess.run([YOLO_BIN, "detect", "train", "model=fer-yolo-mamba-n.yaml", f"data={data}", "epochs=1",
                        "imgsz=64", "batch=2", "device=cpu", "workers=0", f"project={tmp_path}", "name=t",
                        "plots=False", "val=False"], env=_env(tmp_path), cwd=tmp_path, capture_output=True, text=True,
                       timeout=600)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    for stem, reason in bad.items():
        line = next((x for x in out.splitlines() if f"{stem}.jpg: " in x), "")
        assert reason in line, (stem, line)
    assert "8 images, 1 backgrounds, 6 corrupt" in out  # train_002 counted as a background, not an error
    assert "Traceback" not in out


@pytest.mark.skipif(YOLO_BIN is None, reason="the yolo console script is not installed")
def test_bad_prediction_source_files_are_named_and_skipped(tmp_path):
    weights = tmp_path / "m.pt"
    YOLO("fer-yolo-mamba-n.yaml").save(weights)
    src = tmp_path / "src"
    src.mkdir()
    rng = np.random.default_rng(0)
    import cv2

    for i in range(2):
        cv2.imwrite(str(src / f"ok_{i}.jpg"), rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
    (src / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"garbage" * 20)
    (src / "empty.jpg").write_bytes(b"")
    r = subprocess.run([YOLO_BIN, "predict", f"model={weights}", f"source={src}", "imgsz=64", "device=cpu",
                        f"project={tmp_path}", "name=p"], env=_env(tmp_path), cwd=tmp_path, capture_output=True,
                       text=True, timeout=300)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    assert f"Image Read Error {src / 'corrupt.jpg'}" in out and f"Image Read Error {src / 'empty.jpg'}" in out
    assert sum(f"{src / f'ok_{i}.jpg'}: 64x64" in out for i in range(2)) == 2
