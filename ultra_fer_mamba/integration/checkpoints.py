"""Checkpoints of our models: the version stamp, and the checks ``tasks.torch_safe_load`` runs on them.

Every module a YAML row builds records the plugin version (``stamp``; pickled with the model), so a checkpoint
names the version that made it. The ``torch_safe_load`` wrapper first takes a cheap look at the file
(``names_us``: a byte search of its pickle, nothing unpickled). A file whose pickle does not name
``ultra_fer_mamba`` (every stock checkpoint, and a file cut short before our names) goes straight to the
original, so stock loads see stock Ultralytics. For ours, a checkpoint from another plugin version (classes
moved, attributes renamed) or a truncated file gets one error naming the file and the version that made it
(docs/robustness.md).
"""

from __future__ import annotations

import errno
import importlib
import importlib.util
import pickletools
import zipfile
from pathlib import Path

import torch
import torch.nn as nn

from .. import __version__
from .registry import BLOCKS, CLASSES

VERSION_ATTR = "ultra_fer_mamba_version"  # attribute of our YAML-built modules: the plugin version that built them
UNSTAMPED = "an ultra-fer-mamba version that did not record itself"  # checkpoints made before VERSION_ATTR existed
MARK = b"ultra_fer_mamba"  # in every pickle that holds one of our objects (module paths are pickled as text)
HEAD = 1 << 20  # bytes searched in a file that is not a readable zip (legacy format, or cut short)


def stamp(m: nn.Module) -> None:
    """Record the plugin version on a module built from a YAML row (pickled with it, read by the checks below)."""
    setattr(m, VERSION_ATTR, __version__)


def names_us(file: str | Path) -> bool:
    """Whether a checkpoint's pickle names ``ultra_fer_mamba``, by a byte search: nothing is unpickled.

    A torch zip is searched in its ``data.pkl`` (the tensors are separate entries); any other file (legacy
    format, or a zip cut short) in its first MiB, where torch writes the pickle.

    Examples:
        >>> names_us("runs/detect/train/weights/best.pt")  # doctest: +SKIP
        True
    """
    try:
        with zipfile.ZipFile(file) as z:
            pkl = next((n for n in z.namelist() if n.endswith("data.pkl")), None)
            return pkl is not None and MARK in z.read(pkl)
    except (zipfile.BadZipFile, OSError, EOFError, RuntimeError):  # not a (complete) zip: search the head
        pass
    try:
        with open(file, "rb") as f:
            return MARK in f.read(HEAD)
    except OSError:
        return False


def _pickled_strings(data: bytes):
    """Every string a pickle pushes (memo look-ups included), read by disassembly: nothing is unpickled."""
    memo, last = {}, None
    for op, arg, _ in pickletools.genops(data):
        if isinstance(arg, str) and "UNICODE" in op.name:
            last = arg
            yield arg
        elif op.name in {"BINPUT", "LONG_BINPUT", "PUT"}:
            memo[arg] = last
        elif op.name == "MEMOIZE":
            memo[len(memo)] = last
        elif op.name in {"BINGET", "LONG_BINGET", "GET"}:
            last = memo.get(arg)
            if isinstance(last, str):
                yield last
        else:
            last = None


def checkpoint_version(file: str | Path) -> str | None:
    """The ultra-fer-mamba version that built the model in a checkpoint, read without unpickling; None if unstamped.

    Examples:
        >>> checkpoint_version("runs/detect/train/weights/best.pt")  # doctest: +SKIP
        '0.1.0'
    """
    try:
        with zipfile.ZipFile(file) as z:
            data = z.read(next(n for n in z.namelist() if n.endswith("data.pkl")))
        found = False
        for s in _pickled_strings(data):
            if found:
                return s
            found = s == VERSION_ATTR
    except Exception:  # not a zip checkpoint, or a pickle pickletools cannot walk: the loader reports it
        pass
    return None


def _missing_plugin_globals(file: str | Path) -> list[str]:
    """The ultra_fer_mamba classes and functions a checkpoint's pickle names that this installation lacks."""
    find = getattr(torch.serialization, "get_unsafe_globals_in_checkpoint", None)  # torch>=2.5; static, no unpickling
    if find is None:
        return []
    try:
        names = find(str(file))
    except Exception:  # not a torch.save() zip: the loader reports the format problem
        return []
    missing = []
    for name in names:
        if not name.startswith("ultra_fer_mamba."):
            continue
        module, _, attr = name.rpartition(".")
        try:
            ok = importlib.util.find_spec(module) is not None and hasattr(importlib.import_module(module), attr)
        except (ImportError, ValueError):  # ValueError: a module in sys.modules without a spec
            ok = False
        if not ok:
            missing.append(name)
    return missing


def torch_safe_load(original, weight, *args, **kwargs):
    """``tasks.torch_safe_load`` that explains a checkpoint of ours made by another ultra-fer-mamba version.

    Steps aside (calls the original with the same arguments) for every file that is not local or whose pickle
    does not name ``ultra_fer_mamba`` (``names_us``). For ours, before loading: if the pickle names
    ultra_fer_mamba classes this installation lacks (a module renamed or removed between versions), raise one
    error naming the file, the missing names and the version that made it, instead of Ultralytics' AutoInstall
    attempt and a raw unpickling error. A file torch rejects with a bare OSError (cut short inside its pickle)
    gets Ultralytics' "not a loadable checkpoint" TypeError. After loading: ``check_loaded_model``.
    """
    if not (Path(str(weight)).is_file() and names_us(weight)):
        return original(weight, *args, **kwargs)
    missing = _missing_plugin_globals(weight)
    if missing:
        v = checkpoint_version(weight)
        made_by, fix = (f"ultra-fer-mamba {v}", f"pip install 'ultra-fer-mamba=={v}'") if v else (
            UNSTAMPED, "install the ultra-fer-mamba version that trained it")
        raise ModuleNotFoundError(
            f"{weight} was saved by {made_by} and needs {', '.join(missing)}, which ultra-fer-mamba {__version__} "
            f"(installed) does not have. To use it, {fix}; or build the model from its YAML with this version and "
            f"load the old weights by state dict (model.load_state_dict), see docs/robustness.md."
        )
    try:
        ckpt, file = original(weight, *args, **kwargs)
    except OSError as e:  # torch reports some truncated files as a bare "[Errno 22] Invalid argument"
        if e.errno != errno.EINVAL or e.filename is not None:
            raise
        raise TypeError(f"{weight} is not a loadable checkpoint: the file is empty, truncated or corrupted "
                        f"({type(e).__name__}: {e}), e.g. by a training killed while it was writing the file") from e
    model = (ckpt.get("ema") or ckpt.get("model")) if isinstance(ckpt, dict) else None
    if isinstance(model, nn.Module):
        check_loaded_model(model, weight)
    return ckpt, file


_REFERENCE_NAMES: dict = {}


def _attribute_names(m: nn.Module) -> set[str]:
    """Names a module's forward may use: its parameters, buffers, submodules and public attributes."""
    return {*m._parameters, *m._buffers, *m._modules, *(k for k in vars(m) if not k.startswith("_"))}


def check_loaded_model(model: nn.Module, weight) -> None:
    """Check our unpickled modules against this version's classes; name the file and versions on a mismatch.

    Unpickling restores each module's attributes as the saving version wrote them, so a layer renamed or added
    between versions would otherwise fail later, inside forward. Raises AttributeError when one of our modules lacks
    an attribute this version's class sets; warns when the model was built by another version.
    """
    from ultralytics.utils import LOGGER

    ours = [m for m in model.modules() if type(m) in CLASSES]
    if not ours:
        return
    if not _REFERENCE_NAMES:  # attribute names do not depend on sizes: one tiny instance per class
        _REFERENCE_NAMES.update({b.cls: _attribute_names(b.build(8, 8, 1, [], {})) for b in BLOCKS.values()})
    made_by = sorted({str(getattr(m, VERSION_ATTR)) for m in ours if hasattr(m, VERSION_ATTR)})
    made_by = f"ultra-fer-mamba {', '.join(made_by)}" if made_by else UNSTAMPED
    for m in ours:
        missing = sorted(_REFERENCE_NAMES[type(m)] - _attribute_names(m))
        if missing:
            raise AttributeError(
                f"{weight} was saved by {made_by}: its {type(m).__name__} layers lack {missing}, which "
                f"ultra-fer-mamba {__version__} (installed) needs. Load it with the version that made it, or build the "
                f"model from its YAML with this version and load the old weights by state dict (docs/robustness.md)."
            )
    if made_by not in {f"ultra-fer-mamba {__version__}", UNSTAMPED}:
        LOGGER.warning(f"{weight} was saved by {made_by}; this is {__version__}. It loaded; if it fails to run, "
                       f"load it with the version that made it.")


PATCHES = (("ultralytics.nn.tasks", "torch_safe_load", torch_safe_load),)
