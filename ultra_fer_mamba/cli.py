"""The ``fer-yolo-mamba`` command line: ``fer-yolo-mamba COMMAND key=value ...`` like ``yolo``.

Each command is an importable function (tested on its own); this module only parses arguments and
dispatches. Values are parsed like Ultralytics does: ``true``/``false``/``none`` and Python literals,
anything else stays a string.

Examples:
    $ fer-yolo-mamba synth out=datasets/synth n_train=400 n_val=100
    $ fer-yolo-mamba convert format=rafdb source=/data/RAF-DB/basic out=datasets/rafdb
    $ fer-yolo-mamba demo
"""

from __future__ import annotations

import ast
import importlib
import inspect
import sys

# command -> (module, function, one-line help)
COMMANDS = {
    "demo": ("ultra_fer_mamba.demo", "demo", "synthetic set -> train fer-yolo-mamba-n on CPU -> val -> predict"),
    "synth": ("ultra_fer_mamba.data.synth", "synth", "write a synthetic 7-expression face-detection dataset"),
    "convert": ("ultra_fer_mamba.data.convert", "convert", "RAF-DB / SFEW / list / VOC annotations -> Ultralytics"),
    "eval": ("ultra_fer_mamba.evaluate", "evaluate", "the paper's metrics (VOC AP50, F1/P/R at score 0.5)"),
    "compare": ("ultra_fer_mamba.compare", "compare", "train several models identically and report side by side"),
    "info": ("ultra_fer_mamba.info", "info", "params and GFLOPs, with the selective scan counted"),
    "heatmap": ("ultra_fer_mamba.heatmap", "heatmap", "detections and class-confidence heat maps as PNG"),
}


def smart_value(v: str):
    """Convert a command-line string to a Python value (``'3'`` -> 3, ``'true'`` -> True, ``'a,b'`` -> 'a,b')."""
    low = v.lower()
    if low == "none":
        return None
    if low in {"true", "false"}:
        return low == "true"
    try:
        value = ast.literal_eval(v)
    except (ValueError, SyntaxError):
        return v
    return value if isinstance(value, (int, float, list, dict, bool)) else v


def parse_args(argv: list[str]) -> dict:
    """Parse ``key=value`` tokens into a dict, naming the bad token on error."""
    kwargs = {}
    for token in argv:
        key, sep, value = token.partition("=")
        if not sep or not key:
            raise SystemExit(f"fer-yolo-mamba: argument '{token}' is not key=value")
        kwargs[key.strip()] = smart_value(value.strip())
    return kwargs


def usage() -> str:
    """Return the help text listing every command."""
    lines = ["usage: fer-yolo-mamba COMMAND key=value ...", "", "commands:"]
    lines += [f"  {name:<9} {doc}" for name, (_, _, doc) in COMMANDS.items()]
    lines += ["", "fer-yolo-mamba COMMAND help   shows a command's arguments"]
    return "\n".join(lines)


def run(command: str, **kwargs):
    """Run one command by name with keyword arguments, checking them against its signature."""
    if command not in COMMANDS:
        raise SystemExit(f"fer-yolo-mamba: unknown command '{command}'. Valid commands: {', '.join(COMMANDS)}")
    module, name, _ = COMMANDS[command]
    fn = getattr(importlib.import_module(module), name)
    params = inspect.signature(fn).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        bad = [k for k in kwargs if k not in params]
        if bad:
            valid = ", ".join(k for k, p in params.items() if p.kind is not p.VAR_POSITIONAL)
            raise SystemExit(f"fer-yolo-mamba {command}: unknown argument(s) {', '.join(bad)}. Valid: {valid}")
    return fn(**kwargs)


def entrypoint(argv: list[str] | None = None) -> int:
    """Console-script entry point."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in {"-h", "--help", "help"}:
        print(usage())
        return 0
    command, rest = argv[0], argv[1:]
    if rest and rest[0] in {"-h", "--help", "help"}:
        module, name, _ = COMMANDS.get(command, (None, None, None))
        if module is None:
            raise SystemExit(f"fer-yolo-mamba: unknown command '{command}'. Valid commands: {', '.join(COMMANDS)}")
        print(inspect.getdoc(getattr(importlib.import_module(module), name)))
        return 0
    from ultra_fer_mamba.integration.offline import go_offline

    go_offline()
    result = run(command, **parse_args(rest))
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(entrypoint())
