"""The one list of our modules that Ultralytics YAMLs can name, and how ``parse_model`` sizes each.

Everything the integration does per module reads this list: the YAML parser (``parse.py``), the checkpoint
checks and torch safe globals (``checkpoints.py``, ``register()``), and the trainer wrappers, which step aside
for any model holding none of these classes (``trainer.py``). Adding a module is one line in ``BLOCKS``: its
class and its role, one of

- ``SCALED_C2``: built ``cls(c1, c2, n, *args)``; the first YAML argument is c2, width-scaled and capped at
  ``max_channels`` exactly as for ``C2f`` (a ``C2f`` stand-in is parsed and its numbers read back), n
  depth-scaled.
- ``KEEP_C2``: built ``cls(c1, c2, n, *args)`` with c1 from the layer feeding it; an optional first YAML
  argument c2 is width-scaled (never capped), so the block can insist on keeping its channels.
- ``REPEAT``: built ``cls(c1, *args)``, keeping its input channels; n (depth-scaled) copies in a Sequential.
- ``STACKED``: c2 and n resolved as for ``SCALED_C2``, built as n blocks in a Sequential, ``cls(c1, c2, *args)`` then
  ``cls(c2, c2, *args)`` (a block without a repeat count of its own, like Ultralytics' ``Conv`` rows).
- ``HEAD``: built ``cls(c1, nc, *args)``: the first YAML argument is the class count (``nc`` or a number), never
  scaled, like Ultralytics' ``Classify``; repeats must be 1.

A trailing ``{key: value}`` dict in a YAML row becomes keyword arguments of the constructor.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn as nn

from ..nn import ABMLP, OSSM, FERYOLOVSS1, FERYOLOVSS2, MixDW, RepDW, SpatialBiasClassify

SCALED_C2, KEEP_C2, REPEAT, STACKED, HEAD = "scaled_c2", "keep_c2", "repeat", "stacked", "head"


@dataclass(frozen=True)
class Block:
    """One of our modules as a YAML row builds it: the class and its role (see the module docstring)."""

    cls: type[nn.Module]
    role: str

    def build(self, c1: int, c2: int, n: int, args: list, kwargs: dict) -> nn.Module:
        """The module for resolved channels c1 -> c2 and depth n, with the row's remaining args and options.

        Examples:
            >>> m = BLOCKS["ABMLP"].build(8, 8, 2, [], {"r": 4})
            >>> type(m).__name__, len(m), type(m[1]).__name__
            ('Sequential', 2, 'ABMLP')
            >>> stack = BLOCKS["MixDW"].build(8, 16, 2, [24], {})  # c1 8 -> c2 16, two blocks, 24 hidden channels
            >>> [(b.expand.conv.in_channels, b.project.conv.out_channels) for b in stack]
            [(8, 16), (16, 16)]
        """
        if self.role == HEAD and n != 1:
            raise ValueError(f"a {self.cls.__name__} head takes repeats 1, got {n}")
        if self.role == REPEAT:
            blocks = [self.cls(c1, *args, **kwargs) for _ in range(n)]
        elif self.role in (STACKED, HEAD):
            blocks = [self.cls(c2 if j else c1, c2, *args, **kwargs) for j in range(n)]
        else:
            return self.cls(c1, c2, n, *args, **kwargs)
        return blocks[0] if n == 1 else nn.Sequential(*blocks)


BLOCKS = {b.cls.__name__: b for b in (
    Block(FERYOLOVSS1, SCALED_C2),
    Block(FERYOLOVSS2, KEEP_C2),
    Block(OSSM, REPEAT),
    Block(ABMLP, REPEAT),
    Block(MixDW, STACKED),  # LFNSB, the crop classifier of the two-stage alternative
    Block(RepDW, REPEAT),
    Block(SpatialBiasClassify, HEAD),
)}  # fmt: skip
CLASSES = tuple(b.cls for b in BLOCKS.values())


def is_ours(model: nn.Module) -> bool:
    """Whether a model holds any of our modules (the wrappers step aside when it does not).

    Examples:
        >>> is_ours(nn.Sequential(nn.Conv2d(3, 8, 3))), is_ours(nn.Sequential(ABMLP(8)))
        (False, True)
    """
    return any(isinstance(m, CLASSES) for m in model.modules())
