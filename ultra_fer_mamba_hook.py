"""Import hook that lets the stock ``yolo`` script and DDP workers use ultra_fer_mamba with no user import.

``ultra_fer_mamba.pth`` (installed into site-packages beside this file) runs ``import ultra_fer_mamba_hook``
at interpreter start. That only adds a meta-path finder, which costs nothing until Ultralytics is imported.
When ``ultralytics.nn.tasks`` finishes importing, the finder imports ultra_fer_mamba, which registers our
modules; from then on it tells ``ultra_fer_mamba.integration.on_import`` about every Ultralytics module that
finishes importing, so wrappers of modules imported later (or still importing at registration) are installed
then. Any error there is reported as a warning and never breaks the import of Ultralytics itself. Set
``ULTRA_FER_MAMBA_NO_HOOK=1`` to switch the hook off.
"""

import os
import sys

TRIGGER = "ultralytics.nn.tasks"  # registration starts once this has finished importing
PREFIX = "ultralytics."


class _Loader:
    """Delegates to the real loader and calls back once the module has executed."""

    def __init__(self, loader, name):
        self.loader, self.name = loader, name

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        self.loader.exec_module(module)
        package = sys.modules.get("ultra_fer_mamba")
        if not getattr(package, "registered", False) and (package is not None or self.name != TRIGGER):
            return  # not registered yet, and not the trigger (or ultra_fer_mamba is importing and registers itself)
        try:
            from ultra_fer_mamba.integration import on_import

            on_import(self.name, module)
        except Exception as e:  # never break `import ultralytics` for a plugin problem
            import warnings

            warnings.warn(f"ultra_fer_mamba could not register with Ultralytics: {type(e).__name__}: {e}")

    def __getattr__(self, item):
        return getattr(self.loader, item)


class _Finder:
    """Meta-path finder that wraps the loader of every ``ultralytics.*`` module."""

    def find_spec(self, name, path=None, target=None):
        if not name.startswith(PREFIX):
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _Loader(spec.loader, name)
                return spec
        return None


def install():
    """Add the finder once (idempotent)."""
    if os.environ.get("ULTRA_FER_MAMBA_NO_HOOK", "") not in ("", "0"):
        return
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())


install()
