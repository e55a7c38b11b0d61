"""Registration of FER-YOLO-Mamba with stock Ultralytics, in one idempotent function.

What ``register()`` does, all through public module attributes (Ultralytics' source text is never edited):

1. ``ultralytics.nn.tasks.parse_model`` is wrapped. Rows naming our modules are swapped for a stock
   stand-in that the original parser scales like any block (``C2f`` for channel-changing FERYOLOVSS1, so
   c1, width-scaled c2 and depth-scaled n come out exactly as for C2f; ``nn.Identity`` for the channel-
   keeping FERYOLOVSS2, OSSM and ABMLP). The stand-ins are then replaced by our modules built from the
   resolved numbers, and the layer table is printed with our names.
2. ``tasks.check_yaml`` and ``tasks.guess_model_scale`` are wrapped, which the stock ``yaml_model_load``
   looks up at call time: ``fer-yolo-mamba-n.yaml`` resolves to the packaged ``fer-yolo-mamba.yaml`` from
   any working directory, with scale n; the bare name means scale s (the paper's).
3. ``BaseTrainer.build_optimizer`` is wrapped to move A_log and D (``OSSM.no_weight_decay_parameters``)
   into the no-decay group, as Mamba trains them; ``check_amp`` in the trainer runs on the model being
   trained instead of downloading a reference checkpoint.
4. Our classes become torch safe globals (``ULTRALYTICS_SAFE_LOAD=1``), and a local font stands in for
   Ultralytics' Arial download.
5. ``tasks.torch_safe_load`` is wrapped: every module built from a YAML row records the plugin version
   (``ultra_fer_mamba_version``), and a checkpoint from another version (classes moved, attributes renamed, or
   the file truncated) gets one error naming the file and the version that made it (docs/robustness.md).

The stock ``yolo`` script and DDP workers get all this with no user import through ``ultra_fer_mamba.pth``
(see ``ultra_fer_mamba_hook.py``), which imports this package when ``ultralytics.nn.tasks`` is imported.
"""

from __future__ import annotations

import errno
import logging
import re
import shutil
import sys
from copy import deepcopy
from importlib import resources
from pathlib import Path

import torch
import torch.nn as nn

from .. import __version__
from ..nn import ABMLP, OSSM, FERYOLOVSS1, FERYOLOVSS2
from .export import register_export_check

MODULES = {m.__name__: m for m in (ABMLP, OSSM, FERYOLOVSS1, FERYOLOVSS2)}
CHANNEL_CHANGING = {"FERYOLOVSS1"}  # built through a C2f stand-in; the rest keep their input channels
SUPPORTED = ((8, 3, 200), (8, 5, 0))  # Ultralytics versions with a module-global, call-time parse_model
FAMILY = re.compile(r"(?P<base>fer-yolo-mamba(?:-[a-z0-9]+)*?)(?:-(?P<scale>[nslmx]))?$")
DEFAULT_SCALE = "s"
_state = {"tasks": False, "trainer": False}
VERSION_ATTR = "ultra_fer_mamba_version"  # attribute of our YAML-built modules: the plugin version that built them
UNSTAMPED = "an ultra-fer-mamba version that did not record itself"  # checkpoints made before VERSION_ATTR existed


def yaml_dir() -> Path:
    """Folder of the packaged model YAMLs."""
    return Path(str(resources.files("ultra_fer_mamba.model_yamls")))


def resolve_model_yaml(name: str | Path) -> tuple[Path, str] | None:
    """Map a family name such as ``fer-yolo-mamba-ss2d-n.yaml`` to (packaged YAML, scale), else None.

    Examples:
        >>> path, scale = resolve_model_yaml("fer-yolo-mamba-n.yaml")
        >>> path.name, scale
        ('fer-yolo-mamba.yaml', 'n')
    """
    p = Path(name)
    if p.suffix not in {".yaml", ".yml"}:
        return None
    m = FAMILY.fullmatch(p.stem)
    if not m:
        return None
    for stem, scale in ((p.stem, DEFAULT_SCALE), (m["base"], m["scale"] or DEFAULT_SCALE)):
        file = yaml_dir() / f"{stem}.yaml"
        if file.is_file():
            return file, scale
    return None


def _version_tuple(v: str) -> tuple:
    return tuple(int(x) for x in re.findall(r"\d+", v)[:3])


def _check_version():
    import ultralytics

    v = _version_tuple(ultralytics.__version__)
    lo, hi = SUPPORTED
    if not lo <= v < hi:
        raise ImportError(
            f"ultra-fer-mamba supports ultralytics>={'.'.join(map(str, lo))},<{'.'.join(map(str, hi))}; "
            f"found {ultralytics.__version__}. Install a supported version: pip install 'ultralytics>=8.3.200,<8.5'"
        )


# ---------------------------------------------------------------- parse_model
def _split_args(args: list) -> tuple[list, dict]:
    """A YAML row's args as positional args and the options of an optional trailing {key: value} dict."""
    args = list(args)
    kwargs = args.pop() if args and isinstance(args[-1], dict) else {}
    return args, dict(kwargs)


def _build(name: str, c1: int, c2: int, n: int, args: list, kwargs: dict, row: int, yaml_args: list) -> nn.Module:
    """Build one of our modules, turning a bad argument into an error that names the layer."""
    cls = MODULES[name]
    try:
        if name in {"FERYOLOVSS1", "FERYOLOVSS2"}:
            return cls(c1, c2, n, *args, **kwargs)
        blocks = [cls(c1, *args, **kwargs) for _ in range(n)]
        return blocks[0] if n == 1 else nn.Sequential(*blocks)
    except (TypeError, ValueError) as e:
        raise ValueError(f"model YAML layer {row} ({name}, args {yaml_args}): {e}") from None


def _channels_into(seq: nn.Sequential, rows: list[int], ch: int) -> dict[int, int]:
    """Input channels of the given layers, by one small forward through the stand-in network."""
    stop = max(rows)
    found, ys, x = {}, [], torch.zeros(1, ch, 64, 64)
    with torch.no_grad():
        for m in seq[: stop + 1]:
            if m.f != -1:
                x = ys[m.f] if isinstance(m.f, int) else [x if j == -1 else ys[j] for j in m.f]
            if m.i in rows:
                found[m.i] = x.shape[1]
            x = m(x)
            ys.append(x)
    return found


def _scale_width(d: dict) -> float:
    """The width multiple parse_model uses for this model dict."""
    scales = d.get("scales")
    if scales:
        return scales[d.get("scale") or next(iter(scales))][1]
    return d.get("width_multiple", 1.0)


def parse_model(d, ch, verbose=True):
    """Ultralytics' parse_model, also understanding ABMLP, OSSM, FERYOLOVSS1 and FERYOLOVSS2 rows."""
    from ultralytics.nn import tasks
    from ultralytics.utils import LOGGER
    from ultralytics.utils.ops import make_divisible

    original = _ORIGINAL["parse_model"]
    rows = d["backbone"] + d["head"]
    ours = {i: row for i, row in enumerate(rows) if row[2] in MODULES}
    if not ours:
        return original(d, ch, verbose=verbose)

    d2 = deepcopy(d)
    nb = len(d2["backbone"])
    for i, (f, n, name, args) in ours.items():
        pos, _ = _split_args(args)
        stand_in = [f, n, "C2f", pos[:1]] if name in CHANNEL_CHANGING else [f, n, "nn.Identity", []]
        if name in CHANNEL_CHANGING and not pos:
            raise ValueError(f"model YAML layer {i} ({name}): the first argument must be the output channels c2")
        (d2["backbone"] if i < nb else d2["head"])[i if i < nb else i - nb] = stand_in

    lines = []
    capture = _Capture(lines)
    LOGGER.addFilter(capture)
    try:
        seq, save = original(d2, ch, verbose=verbose)
    finally:
        LOGGER.removeFilter(capture)

    keep = [i for i, row in ours.items() if row[2] not in CHANNEL_CHANGING]
    c_in = _channels_into(seq, keep, ch) if keep else {}
    width = _scale_width(d)
    for i, (f, _, name, args) in ours.items():
        pos, kwargs = _split_args(args)
        yaml_args = list(args)
        old = seq[i]
        if name in CHANNEL_CHANGING:  # C2f(c1, c2, n): read the parser's numbers back
            c1, c2, n = old.cv1.conv.in_channels, old.cv2.conv.out_channels, len(old.m)
            pos = pos[1:]
        else:
            c1 = c_in[i]
            n = len(old) if isinstance(old, nn.Sequential) else 1
            c2 = c1
            if name == "FERYOLOVSS2":
                c2 = make_divisible(pos[0] * width, 8) if pos else c1  # width-scaled, never capped (keeps c1)
                pos = pos[1:]
        m = _build(name, c1, c2, n, pos, kwargs, i, yaml_args)
        m.np = sum(p.numel() for p in m.parameters())
        m.i, m.f, m.type = i, f, f"{type(m).__module__}.{type(m).__name__}"
        setattr(m, VERSION_ATTR, __version__)  # pickled with the model: names the version in its checkpoints
        seq[i] = m
        lines = [_table_row(line, i, m, n, [c1, c2, n, *pos] if name.startswith("FER") else [c1, *pos], kwargs)
                 for line in lines]
    for line in lines:
        LOGGER.info(line)
    return seq, save


class _Capture(logging.Filter):
    """Holds back parse_model's layer table so stand-in rows can be rewritten before printing."""

    def __init__(self, sink: list):
        super().__init__()
        self.sink = sink

    def filter(self, record: logging.LogRecord) -> bool:
        self.sink.append(record.getMessage())
        return False


def _table_row(line: str, i: int, m: nn.Module, n: int, args: list, kwargs: dict) -> str:
    """Rewrite row i of the layer table (same layout as parse_model's) for our module."""
    if not line.startswith(f"{i:>3}") or line[:3].strip() != str(i):
        return line
    f = m.f
    shown = args + ([kwargs] if kwargs else [])
    return f"{i:>3}{f!s:>20}{n:>3}{m.np:10.0f}  {m.type:<45}{shown!s:<30}"


# ---------------------------------------------------------------- YAML names and scales
def check_yaml(file, *args, **kwargs):
    """tasks.check_yaml that also finds the packaged fer-yolo-mamba YAMLs by name."""
    found = None if Path(str(file)).exists() else resolve_model_yaml(file)
    return str(found[0]) if found else _ORIGINAL["check_yaml"](file, *args, **kwargs)


def guess_model_scale(model_path):
    """tasks.guess_model_scale that knows fer-yolo-mamba names (bare name = scale s)."""
    found = resolve_model_yaml(Path(str(model_path)).name)
    return found[1] if found else _ORIGINAL["guess_model_scale"](model_path)


# ---------------------------------------------------------------- checkpoints
def _pickled_strings(data: bytes):
    """Every string a pickle pushes (memo look-ups included), read by disassembly: nothing is unpickled."""
    import pickletools

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
    import zipfile

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
    import importlib
    import importlib.util

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


def torch_safe_load(weight, *args, **kwargs):
    """tasks.torch_safe_load that explains a checkpoint made by another ultra-fer-mamba version.

    Before loading: if the checkpoint's pickle names ultra_fer_mamba classes this installation does not have (a module
    renamed or removed between versions), raise one error naming the file, the missing names and the version that
    made it, instead of Ultralytics' AutoInstall attempt and a raw unpickling error. A file torch rejects with a bare
    OSError (some truncations) gets Ultralytics' "not a loadable checkpoint" TypeError. After loading:
    ``check_loaded_model``.
    """
    if Path(str(weight)).is_file():
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
        ckpt, file = _ORIGINAL["torch_safe_load"](weight, *args, **kwargs)
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

    ours = [m for m in model.modules() if type(m) in MODULES.values()]
    if not ours:
        return
    if not _REFERENCE_NAMES:  # attribute names do not depend on sizes: one tiny instance per class
        refs = (ABMLP(4), OSSM(4), FERYOLOVSS1(8, 8), FERYOLOVSS2(8, 8))
        _REFERENCE_NAMES.update({type(r): _attribute_names(r) for r in refs})
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


# ---------------------------------------------------------------- trainer
def no_weight_decay_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Every parameter our modules train without weight decay (A_log, D)."""
    return [p for m in model.modules() if isinstance(m, OSSM) for p in m.no_weight_decay_parameters()]


def build_optimizer(self, model, *args, **kwargs):
    """BaseTrainer.build_optimizer, then A_log and D moved to the group without weight decay."""
    optimizer = _ORIGINAL["build_optimizer"](self, model, *args, **kwargs)
    model = getattr(model, "module", model)
    ids = {id(p) for p in no_weight_decay_parameters(model)}
    if not ids:
        return optimizer
    target = next((g for g in optimizer.param_groups if g.get("param_group") == "bn"), None)
    if target is None:  # unknown group layout: keep Ultralytics' grouping
        return optimizer
    for g in optimizer.param_groups:
        if g is not target and g.get("weight_decay", 0) and not g.get("use_muon"):
            moved = [p for p in g["params"] if id(p) in ids]
            g["params"] = [p for p in g["params"] if id(p) not in ids]
            target["params"].extend(moved)
    return optimizer


def check_amp(model):
    """AMP check without downloads: the model being trained, fp32 vs autocast, on one fixed batch."""
    from ultralytics.utils import LOGGER
    from ultralytics.utils.torch_utils import autocast

    device = next(model.parameters()).device
    if device.type != "cuda":
        return False  # AMP is only used on CUDA
    model_ = deepcopy(model).eval()
    x = torch.rand(2, 3, 256, 256, device=device, generator=torch.Generator(device).manual_seed(0))
    with torch.no_grad():
        a = model_(x)[0]
        with autocast(enabled=True, device="cuda"):
            b = model_(x)[0].float()
    ok = bool(torch.isfinite(b).all()) and torch.allclose(a, b, rtol=0.05, atol=0.5)
    LOGGER.info(f"AMP: checks {'passed ✅' if ok else 'failed, training in fp32'} (offline check on the model itself)")
    return ok


# ---------------------------------------------------------------- registration
_ORIGINAL: dict = {}


def _wrap(module, name: str, new):
    """Replace module.name by new once, remembering the original."""
    current = getattr(module, name)
    if getattr(current, "_ultra_fer_mamba", False):
        return
    _ORIGINAL.setdefault(name, current)
    new._ultra_fer_mamba = True
    setattr(module, name, new)


def _patch_tasks():
    from ultralytics.nn import tasks

    _wrap(tasks, "parse_model", parse_model)
    _wrap(tasks, "check_yaml", check_yaml)
    _wrap(tasks, "guess_model_scale", guess_model_scale)
    _wrap(tasks, "torch_safe_load", torch_safe_load)
    for name, cls in MODULES.items():  # visible to code that looks names up in tasks (e.g. guess_model_task)
        setattr(tasks, name, cls)
    _state["tasks"] = True


def patch_trainer(trainer_module=None):
    """Patch ultralytics.engine.trainer (optimizer groups, offline AMP check); idempotent."""
    if trainer_module is None:
        import ultralytics.engine.trainer as trainer_module
    _wrap(trainer_module.BaseTrainer, "build_optimizer", build_optimizer)
    _wrap(trainer_module, "check_amp", check_amp)
    _state["trainer"] = True


def ensure_font():
    """Put a local font where Ultralytics looks for Arial, so plotting never downloads one."""
    from ultralytics.utils import USER_CONFIG_DIR

    try:
        import matplotlib

        src = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
        for name in ("Arial.ttf", "Arial.Unicode.ttf"):
            dst = Path(USER_CONFIG_DIR) / name
            if not dst.exists() and src.is_file():
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, dst)
    except OSError:  # read-only config dir: Ultralytics falls back to PIL's default font
        pass


def register():
    """Make ABMLP, OSSM, FERYOLOVSS1 and FERYOLOVSS2 usable in Ultralytics YAMLs (idempotent).

    Examples:
        >>> import ultra_fer_mamba  # calls register()
        >>> from ultralytics import YOLO
        >>> model = YOLO("fer-yolo-mamba-n.yaml")
    """
    _check_version()
    if not _state["tasks"]:
        _patch_tasks()
        torch.serialization.add_safe_globals(list(MODULES.values()))
        ensure_font()
        register_export_check()
    if not _state["trainer"]:
        trainer = sys.modules.get("ultralytics.engine.trainer")
        if trainer is None or hasattr(trainer, "BaseTrainer"):
            patch_trainer()
        # else: the trainer module is importing right now (this call came from the import hook inside it);
        # the hook calls patch_trainer() when its import completes.


def on_import(name: str, module) -> None:
    """Called by ultra_fer_mamba_hook after an Ultralytics module finishes importing."""
    if name == "ultralytics.nn.tasks":
        import ultra_fer_mamba  # noqa: F401  (registers)
    elif name == "ultralytics.engine.trainer":
        import ultra_fer_mamba  # noqa: F401

        patch_trainer(module)
