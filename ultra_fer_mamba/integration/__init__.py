"""Registration of FER-YOLO-Mamba with stock Ultralytics, in one idempotent function.

``register()`` checks the Ultralytics version, then wraps the Ultralytics functions each room lists in its
``PATCHES`` (``(module, attribute, wrapper)``), all through public module attributes (Ultralytics' source text is
never edited). Every wrapper acts only where our modules are involved and calls the original otherwise, so a
stock model behaves bit for bit as without the plugin:

- ``parse.py``: ``parse_model`` (our YAML rows), ``check_yaml`` and ``guess_model_scale`` (our YAML names),
  ``guess_model_task`` (our classify head).
- ``checkpoints.py``: ``torch_safe_load`` (checkpoints whose pickle names ``ultra_fer_mamba``).
- ``trainer.py``: ``BaseTrainer.build_optimizer`` (A_log, D and LFNSB's class centres without weight decay),
  ``check_amp`` (offline, for our models), ``ClassificationModel.init_criterion`` (LFNSB's Cosine-Harmony loss).
- ``export.py``: ``callbacks.add_integration_callbacks`` (exporters refuse formats that cannot hold the scan).

Our modules themselves are listed once, in ``registry.BLOCKS``; they also become torch safe globals
(``ULTRALYTICS_SAFE_LOAD=1``). A new room is a module with a ``PATCHES`` tuple, added to ``ROOMS``.

The stock ``yolo`` script and DDP workers get all this with no user import through ``ultra_fer_mamba.pth``
(see ``ultra_fer_mamba_hook.py``), which imports the package when ``ultralytics.nn.tasks`` finishes importing
and then calls ``on_import`` for every Ultralytics module that finishes importing.
"""

from __future__ import annotations

import importlib
import re
import sys

import torch

from . import checkpoints, export, parse, trainer
from .parse import resolve_model_yaml, yaml_dir
from .registry import BLOCKS, CLASSES

SUPPORTED = ("8.3.215", "8.5")  # Ultralytics versions tested (>=, <); pyproject.toml declares the same range
ROOMS = (parse, checkpoints, trainer, export)
MARK = "__ultra_fer_mamba__"  # set on every wrapper this package installs


def _version_tuple(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", v)[:3])


def check_version(version: str | None = None) -> None:
    """Raise ImportError with the supported range and the install command unless Ultralytics is in range.

    Args:
        version (str | None): Version to check; None for the installed ``ultralytics.__version__``.

    Examples:
        >>> check_version("8.4.0")
        >>> check_version("8.2.103")
        Traceback (most recent call last):
        ...
        ImportError: ultra-fer-mamba supports ultralytics>=8.3.215,<8.5 (the range it is tested on); found 8.2.103. \
Install a supported version: pip install 'ultralytics>=8.3.215,<8.5'
    """
    if version is None:
        import ultralytics

        version = ultralytics.__version__
    lo, hi = SUPPORTED
    if not _version_tuple(lo) <= _version_tuple(version) < _version_tuple(hi):
        spec = f"ultralytics>={lo},<{hi}"
        raise ImportError(f"ultra-fer-mamba supports {spec} (the range it is tested on); found {version}. "
                          f"Install a supported version: pip install '{spec}'")


def wrap(owner, name: str, wrapper) -> None:
    """Replace ``owner.name`` by a function calling ``wrapper(original, *args, **kwargs)``; once (idempotent).

    The original stays reachable as the new function's ``__wrapped__`` and is looked up there at each call.
    """
    current = getattr(owner, name)
    if getattr(current, MARK, False):
        return

    def patched(*args, **kwargs):
        return wrapper(patched.__wrapped__, *args, **kwargs)

    patched.__name__, patched.__qualname__, patched.__doc__ = name, f"{name} (ultra-fer-mamba)", wrapper.__doc__
    patched.__module__, patched.__wrapped__ = wrapper.__module__, current
    setattr(patched, MARK, True)
    setattr(owner, name, patched)


def _initializing(module) -> bool:
    """Whether a module in sys.modules is still running its import."""
    return bool(getattr(getattr(module, "__spec__", None), "_initializing", False))


def _apply(module_name: str, attribute: str, wrapper, eager: bool, finished: str | None = None) -> None:
    """Wrap ``module_name.attribute`` if that module is imported, or importable now (``eager``).

    A module still importing, or not imported while ``eager`` is False, is left for ``on_import`` (the import
    hook calls it when the module finishes importing, as ``finished``).
    """
    module = sys.modules.get(module_name)
    if module is None and eager:
        module = importlib.import_module(module_name)
    if module is None or (_initializing(module) and module_name != finished):
        return
    *path, name = attribute.split(".")
    owner = module
    for part in path:
        owner = getattr(owner, part, None)
    if not hasattr(owner, name):
        raise ImportError(f"ultra-fer-mamba: {module_name}.{attribute} not found in this Ultralytics version")
    wrap(owner, name, wrapper)


def register() -> None:
    """Make our modules usable in Ultralytics YAMLs and train them with the stock trainer (idempotent).

    Raises:
        ImportError: If the installed Ultralytics is outside ``SUPPORTED``.

    Examples:
        >>> import ultra_fer_mamba  # calls register()
        >>> from ultralytics import YOLO
        >>> model = YOLO("fer-yolo-mamba-n.yaml")
    """
    _register()


def _register(finished: str | None = None) -> None:
    """``register()``; ``finished`` names a module whose import has just run to its end (from ``on_import``)."""
    check_version()
    # Inside an Ultralytics import (the hook calls from there), importing more of it could meet a half-imported
    # module: then only modules already imported are patched, the rest as the hook sees them finish.
    eager = not any(_initializing(m) for n, m in list(sys.modules.items()) if n.partition(".")[0] == "ultralytics")
    for room in ROOMS:
        for module_name, attribute, wrapper in room.PATCHES:
            _apply(module_name, attribute, wrapper, eager, finished)
    tasks = importlib.import_module("ultralytics.nn.tasks")
    for name, block in BLOCKS.items():  # our names beside Ultralytics' own, for code that looks them up there
        setattr(tasks, name, block.cls)
    safe = torch.serialization.get_safe_globals()
    torch.serialization.add_safe_globals([c for c in CLASSES if c not in safe])


def on_import(name: str, module) -> None:
    """Called by ultra_fer_mamba_hook when the Ultralytics module ``name`` has finished importing.

    The first call (``ultralytics.nn.tasks``) imports the package, which registers; later ones install the
    wrappers of ``name`` if a room lists any.
    """
    import ultra_fer_mamba  # noqa: F401  (registers on its first import)

    if name in {m for room in ROOMS for m, _, _ in room.PATCHES}:
        _register(finished=name)


__all__ = ("SUPPORTED", "check_version", "on_import", "register", "resolve_model_yaml", "wrap", "yaml_dir")
