"""Installs ultra_fer_mamba.pth into site-packages (all metadata lives in pyproject.toml).

A .pth file at the top of site-packages is how the stock ``yolo`` script and DDP workers, which never
import plugins, still get our modules (see ultra_fer_mamba_hook.py). setuptools has no declarative way to
put a file there: for a normal install build_py copies it to the top of the wheel; for an editable install
(``pip install -e .``) the editable wheel gets it beside setuptools' own ``__editable__`` .pth.
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.editable_wheel import editable_wheel

PTH = "ultra_fer_mamba.pth"
PTH_TEXT = (Path(__file__).parent / PTH).read_text()


class BuildPyWithPth(build_py):
    def run(self):
        super().run()
        if not self.editable_mode:
            Path(self.build_lib, PTH).write_text(PTH_TEXT)

    def get_outputs(self, include_bytecode=True):
        extra = [] if self.editable_mode else [str(Path(self.build_lib) / PTH)]
        return [*super().get_outputs(include_bytecode), *extra]


class _StrategyWithPth:
    """Wraps setuptools' editable strategy to also write our .pth into the editable wheel."""

    def __init__(self, strategy):
        self.strategy = strategy

    def __enter__(self):
        self.strategy.__enter__()
        return self

    def __exit__(self, *exc):
        return self.strategy.__exit__(*exc)

    def __call__(self, wheel, files, mapping):
        self.strategy(wheel, files, mapping)
        wheel.writestr(PTH, PTH_TEXT)


class EditableWheelWithPth(editable_wheel):
    def _select_strategy(self, *args, **kwargs):
        return _StrategyWithPth(super()._select_strategy(*args, **kwargs))


setup(cmdclass={"build_py": BuildPyWithPth, "editable_wheel": EditableWheelWithPth})
