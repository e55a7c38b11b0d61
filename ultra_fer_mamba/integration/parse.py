"""Our module names in Ultralytics YAMLs, and our YAML family's file names and scales.

Four wrappers around Ultralytics functions, each stepping aside for everything that is not ours:

- ``parse_model``: a model dict with none of our rows goes to the original untouched. Otherwise each of our
  rows is swapped for a stock stand-in that the original parser sizes like any block (``C2f`` for a
  ``SCALED_C2`` or ``STACKED`` block, so c1, width-scaled c2 and depth-scaled n come out exactly as for C2f;
  ``nn.Identity`` for blocks keeping their channels), the stand-ins are replaced by our modules built from the resolved
  numbers (``registry.BLOCKS``), and the layer table is printed with our names.
- ``check_yaml``: a path that exists, or a name that is none of ours, goes to the original; our names
  (``fer-yolo-mamba-n.yaml``, ``lfnsb-cls.yaml``) resolve to the packaged YAML from any working directory.
- ``guess_model_scale``: our family's names give their scale (the bare name means s, the paper's); any other
  path goes to the original.
- ``guess_model_task`` (``ultralytics.engine.model``'s name, which ``YOLO()`` calls): a model dict ending in our
  ``Classify`` head (``SpatialBiasClassify``) is a classify model; anything else goes to the original.
"""

from __future__ import annotations

import inspect
import logging
import re
from copy import deepcopy
from importlib import resources
from pathlib import Path

import torch
import torch.nn as nn

from .checkpoints import stamp
from .registry import BLOCKS, HEAD, KEEP_C2, REPEAT, SCALED_C2, STACKED

FAMILY = re.compile(r"(?P<base>fer-yolo-mamba(?:-[a-z0-9]+)*?)(?:-(?P<scale>[nslmx]))?$")
DEFAULT_SCALE = "s"


def yaml_dir() -> Path:
    """Folder of the packaged model YAMLs."""
    return Path(str(resources.files("ultra_fer_mamba.model_yamls")))


def resolve_model_yaml(name: str | Path) -> tuple[Path, str] | None:
    """Map a family name such as ``fer-yolo-mamba-ss2d-n.yaml`` to (packaged YAML, scale), else None.

    Our other packaged YAMLs (``lfnsb-cls.yaml``) are found by their file name, with no scale ("").

    Examples:
        >>> path, scale = resolve_model_yaml("fer-yolo-mamba-n.yaml")
        >>> path.name, scale
        ('fer-yolo-mamba.yaml', 'n')
        >>> resolve_model_yaml("lfnsb-cls.yaml")[0].name, resolve_model_yaml("yolov8n.yaml") is None
        ('lfnsb-cls.yaml', True)
    """
    p = Path(name)
    if p.suffix not in {".yaml", ".yml"}:
        return None
    m = FAMILY.fullmatch(p.stem)
    if not m:
        file = yaml_dir() / p.name
        return (file, "") if file.is_file() else None
    for stem, scale in ((p.stem, DEFAULT_SCALE), (m["base"], m["scale"] or DEFAULT_SCALE)):
        file = yaml_dir() / f"{stem}.yaml"
        if file.is_file():
            return file, scale
    return None


def check_yaml(original, file, *args, **kwargs):
    """``tasks.check_yaml`` that also finds our packaged YAMLs (fer-yolo-mamba family, lfnsb-cls) by name."""
    found = None if Path(str(file)).exists() else resolve_model_yaml(file)
    return str(found[0]) if found else original(file, *args, **kwargs)


def guess_model_scale(original, model_path, *args, **kwargs):
    """``tasks.guess_model_scale`` that knows fer-yolo-mamba names (bare name = scale s)."""
    found = resolve_model_yaml(Path(str(model_path)).name)
    return found[1] if found else original(model_path, *args, **kwargs)


def guess_model_task(original, model, *args, **kwargs):
    """``guess_model_task`` (as ``YOLO()`` calls it) that knows our heads: a model dict ending in one is a 'classify'
    model when the head is a ``Classify``; every other model goes to the original."""
    from ultralytics.nn.modules import Classify

    head = model.get("head") if isinstance(model, dict) else None
    name = head[-1][2] if isinstance(head, list) and head and len(head[-1]) == 4 else None
    if isinstance(name, str) and name in BLOCKS and issubclass(BLOCKS[name].cls, Classify):
        return "classify"
    return original(model, *args, **kwargs)


# ---------------------------------------------------------------- parse_model
def _split_args(args: list) -> tuple[list, dict]:
    """A YAML row's args as positional args and the options of an optional trailing {key: value} dict."""
    args = list(args)
    kwargs = args.pop() if args and isinstance(args[-1], dict) else {}
    return args, dict(kwargs)


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


class _HoldTable(logging.Filter):
    """Holds back parse_model's INFO lines (the layer table) so stand-in rows can be rewritten before printing.

    Warnings and errors pass through at their level when they happen.
    """

    def __init__(self):
        super().__init__()
        self.lines = []

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.INFO:
            return True
        self.lines.append(record.getMessage())
        return False


def _table_row(line: str, i: int, m: nn.Module, n: int, args: list, kwargs: dict) -> str:
    """Rewrite row i of the layer table (same layout as parse_model's) for our module."""
    if not line.startswith(f"{i:>3}") or line[:3].strip() != str(i):
        return line
    shown = args + ([kwargs] if kwargs else [])
    return f"{i:>3}{m.f!s:>20}{n:>3}{m.np:10.0f}  {m.type:<45}{shown!s:<30}"


def parse_model(original, d, *args, **kwargs):
    """``tasks.parse_model`` that also builds our rows (``registry.BLOCKS``); any other model dict goes through as is.

    Arguments are forwarded unchanged, whatever the Ultralytics version passes; ``ch`` (input channels) is read
    from them by the original's signature.
    """
    from ultralytics.utils import LOGGER
    from ultralytics.utils.ops import make_divisible

    rows = d["backbone"] + d["head"]
    ours = {i: row for i, row in enumerate(rows) if row[2] in BLOCKS}
    if not ours:
        return original(d, *args, **kwargs)
    ch = inspect.signature(original).bind(d, *args, **kwargs).arguments["ch"]

    d2 = deepcopy(d)
    nb = len(d2["backbone"])
    for i, (f, n, name, args_) in ours.items():
        pos, _ = _split_args(args_)
        scaled = BLOCKS[name].role in (SCALED_C2, STACKED)
        if scaled and not pos:
            raise ValueError(f"model YAML layer {i} ({name}): the first argument must be the output channels c2")
        if BLOCKS[name].role == HEAD and not pos:
            raise ValueError(f"model YAML layer {i} ({name}): the first argument must be the class count (nc)")
        (d2["backbone"] if i < nb else d2["head"])[i if i < nb else i - nb] = (
            [f, n, "C2f", pos[:1]] if scaled else [f, n, "nn.Identity", []])

    hold = _HoldTable()
    LOGGER.addFilter(hold)
    try:
        seq, save = original(d2, *args, **kwargs)
    finally:
        LOGGER.removeFilter(hold)

    keep = [i for i, row in ours.items() if BLOCKS[row[2]].role not in (SCALED_C2, STACKED)]
    c_in = _channels_into(seq, keep, ch) if keep else {}
    width, lines = _scale_width(d), hold.lines
    for i, (f, _, name, yaml_args) in ours.items():
        block, (pos, kwargs_), old = BLOCKS[name], _split_args(yaml_args), seq[i]
        if block.role in (SCALED_C2, STACKED):  # C2f(c1, c2, n): read the parser's numbers back
            c1, c2, n, pos = old.cv1.conv.in_channels, old.cv2.conv.out_channels, len(old.m), pos[1:]
        else:
            c1 = c2 = c_in[i]
            n = len(old) if isinstance(old, nn.Sequential) else 1
            if block.role == KEEP_C2 and pos:
                c2, pos = make_divisible(pos[0] * width, 8), pos[1:]  # width-scaled, never capped (keeps c1)
            if block.role == HEAD:
                c2, pos = d["nc"] if pos[0] == "nc" else pos[0], pos[1:]  # the class count, never scaled
        try:
            m = block.build(c1, c2, n, pos, kwargs_)
        except (TypeError, ValueError) as e:
            raise ValueError(f"model YAML layer {i} ({name}, args {list(yaml_args)}): {e}") from None
        m.np = sum(p.numel() for p in m.parameters())
        m.i, m.f, m.type = i, f, f"{type(m).__module__}.{type(m).__name__}"
        stamp(m)
        seq[i] = m
        shown = {REPEAT: [c1, *pos], STACKED: [c1, c2, *pos], HEAD: [c1, c2, *pos]}.get(block.role, [c1, c2, n, *pos])
        lines = [_table_row(line, i, m, n, shown, kwargs_) for line in lines]
    for line in lines:
        LOGGER.info(line)
    return seq, save


PATCHES = (
    ("ultralytics.nn.tasks", "parse_model", parse_model),
    ("ultralytics.nn.tasks", "check_yaml", check_yaml),
    ("ultralytics.nn.tasks", "guess_model_scale", guess_model_scale),
    ("ultralytics.engine.model", "guess_model_task", guess_model_task),  # the name YOLO() calls
)
