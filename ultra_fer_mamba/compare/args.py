"""What ``compare`` passes to the trainer: any Ultralytics train argument, checked by Ultralytics before any training.

``compare`` owns a few arguments itself (``data``, ``models``, ``seeds``, ``split``, ``project``, ``name``,
``latency_runs``, ``docs``); every other keyword is an Ultralytics train argument, given identically to every model and
validated by ``ultralytics.cfg.get_cfg`` (unknown names, types and ranges) before anything is trained. The trainer
arguments that locate or restart a run are compare's to set, so they are refused (see ``DECIDED``).
"""

from __future__ import annotations

import logging

# compare's defaults where they differ from Ultralytics' (the paper's size and batch, from-scratch training, ...)
DEFAULTS = {"epochs": 300, "imgsz": 320, "batch": 16, "pretrained": False, "workers": 8, "amp": True,
            "deterministic": True}  # fmt: skip

# trainer arguments compare sets itself for each run: where it goes, which model and data, resuming, the seed
DECIDED = ("model", "data", "project", "name", "exist_ok", "resume", "mode", "task", "save_dir")

# arguments that change where or how visibly a run happens, not its numbers: left out of the settings a resumed
# comparison must match, so an interrupted comparison can continue on another device or with other workers
RUNTIME = ("device", "workers", "cache", "verbose", "plots")


def parse_seeds(seeds=None, seed=None) -> list[int]:
    """The seeds to train every model with: ``seeds=0,1,2`` (or a list, or one int), or today's ``seed=``.

    Args:
        seeds (str | int | list | tuple | None): Comma-separated seeds, a sequence of them, or one seed.
        seed (int | None): One seed (the older argument); not together with ``seeds``.

    Returns:
        (list[int]): Distinct seeds in the order given; ``[0]`` when neither is given.

    Examples:
        >>> parse_seeds("0,1, 2"), parse_seeds(7), parse_seeds(seed=3), parse_seeds()
        ([0, 1, 2], [7], [3], [0])
    """
    if seeds is not None and seed is not None:
        raise ValueError(f"give seeds={seeds} or seed={seed}, not both")
    given = seed if seeds is None else seeds
    if given is None:
        return [0]
    items = given.split(",") if isinstance(given, str) else given if isinstance(given, (list, tuple)) else [given]
    try:
        out = [int(str(s).strip()) for s in items if str(s).strip()]
    except ValueError:
        raise ValueError(f"seeds={given!r} is not a list of integers, e.g. seeds=0,1,2") from None
    if not out or len(set(out)) != len(out):
        raise ValueError(f"seeds={given!r} needs one or more distinct integers, e.g. seeds=0,1,2")
    return out


def train_args(overrides: dict, data: str) -> dict:
    """Merge compare's defaults with the given trainer arguments and check them with Ultralytics' config check.

    Args:
        overrides (dict): Trainer arguments as given (``lr0=0.003``, ``optimizer="AdamW"``, ...).
        data (str): The data YAML (checked along, since the trainer gets it too).

    Returns:
        (dict): The trainer arguments for every run (defaults filled in, values as Ultralytics normalises them),
            without ``data`` and ``seed``, which compare adds per run (``seed`` is read by :func:`parse_seeds`).

    Raises:
        ValueError: An unknown argument (named, with Ultralytics' suggestions) or one that compare sets itself.
        TypeError: A value of the wrong type, as Ultralytics' ``check_cfg`` reports it.

    Examples:
        >>> train_args({"lr0": 0.003}, "data.yaml")["lr0"], train_args({}, "data.yaml")["epochs"]
        (0.003, 300)
        >>> train_args({"lr": 0.003}, "data.yaml")  # doctest: +IGNORE_EXCEPTION_DETAIL
        Traceback (most recent call last):
        ValueError: compare: 'lr' is not a valid YOLO argument. Similar arguments are i.e. ['lr0=0.01', 'lrf=0.01'].
    """
    from ultralytics.cfg import get_cfg
    from ultralytics.utils import DEFAULT_CFG_DICT, LOGGER

    if bad := [k for k in DECIDED if k in overrides]:
        raise ValueError(f"compare sets {', '.join(bad)} itself for each run; use compare's data=, project=, name=")
    args = {**DEFAULTS, **overrides}
    level = LOGGER.level
    LOGGER.setLevel(logging.WARNING)  # on an unknown key Ultralytics logs the `yolo` CLI's help, which is not ours
    try:
        cfg = get_cfg(DEFAULT_CFG_DICT, {**args, "data": data, "mode": "train"})
    except SyntaxError as e:  # Ultralytics' unknown-key error names every bad key and suggests near ones
        raise ValueError(f"compare: {str(e).strip()} (compare's own arguments: data, models, seeds, split, project, "
                         "name, latency_runs, docs)") from None  # fmt: skip
    finally:
        LOGGER.setLevel(level)
    return {k: getattr(cfg, k) for k in args}


def settings_of(data: str, split: str, args: dict) -> dict:
    """The settings a comparison is identified by: a re-run resumes only in a folder whose settings are equal.

    Models and seeds are not part of it: adding a model or a seed to a finished comparison trains only the new runs.

    Examples:
        >>> settings_of("d.yaml", "val", {"epochs": 3, "device": "cpu", "lr0": 0.01})
        {'data': 'd.yaml', 'split': 'val', 'train': {'epochs': 3, 'lr0': 0.01}}
    """
    return {"data": data, "split": split, "train": {k: args[k] for k in sorted(args) if k not in RUNTIME}}
