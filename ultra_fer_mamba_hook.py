"""Import hook that lets the stock ``yolo`` script and DDP workers use ultra_fer_mamba with no user import.

``ultra_fer_mamba.pth`` (installed into site-packages beside this file) runs ``import ultra_fer_mamba_hook``
at interpreter start. That only adds a meta-path finder, which costs nothing until Ultralytics is imported:
when ``ultralytics.nn.tasks`` or ``ultralytics.engine.trainer`` finishes importing, the finder calls
``ultra_fer_mamba.integration.on_import``, which registers our modules. Any error there is
reported as a warning and never breaks the import of Ultralytics itself. Set ``ULTRA_FER_MAMBA_NO_HOOK=1``
to switch the hook off.
"""

import os
import sys

TARGETS = ("ultralytics.nn.tasks", "ultralytics.engine.trainer")


class _Loader:
    """Delegates to the real loader and calls back once the module has executed."""

    def __init__(self, loader, name):
        self.loader, self.name = loader, name

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        self.loader.exec_module(module)
        package = sys.modules.get("ultra_fer_mamba")
        if package is not None and not getattr(package, "registered", False):
            return  # ultra_fer_mamba is importing Ultralytics itself and registers when its import completes
        try:
            from ultra_fer_mamba.integration import on_import

            on_import(self.name, module)
        except Exception as e:  # never break `import ultralytics` for a plugin problem
            import warnings

            warnings.warn(f"ultra_fer_mamba could not register with Ultralytics: {type(e).__name__}: {e}")

    def __getattr__(self, item):
        return getattr(self.loader, item)


class _Finder:
    """Meta-path finder that wraps the loader of the Ultralytics modules in TARGETS."""

    def find_spec(self, name, path=None, target=None):
        if name not in TARGETS:
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
