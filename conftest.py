"""Collection of the docstring Examples (``--doctest-modules``): modules that import an optional extra which is not
installed are left out (ops/cuda_kernel.py imports mamba_ssm, the ``[cuda]`` extra)."""

import importlib.util

collect_ignore = [] if importlib.util.find_spec("mamba_ssm") else ["ultra_fer_mamba/ops/cuda_kernel.py"]
