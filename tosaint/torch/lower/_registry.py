"""The lowering table: ATen operator name -> the function that lowers it.

Filled by the ``@lowers("aten.conv2d", ...)`` decorators of the family modules, which
:mod:`tosaint.torch.lower` imports explicitly.  Keys are ``namespace.name`` without the
overload (``aten.add`` covers ``aten.add.Tensor`` and ``aten.add.Scalar``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Lowering:
    fn: Callable          # fn(emitter, node, params) -> QT | IntT | list | tuple
    nhwc: bool            # elementwise: replayed on the NHWC twins of conv/pool outputs
    ints: bool            # accepts integer/boolean activations (IntT) too


LOWERINGS: dict = {}


def lowers(*names, nhwc=False, ints=False):
    """Register the decorated function as the lowering of every ATen op in ``names``."""
    def register(fn):
        for n in names:
            if n in LOWERINGS:
                raise RuntimeError(f"two lowerings for {n}")
            LOWERINGS[n] = Lowering(fn, nhwc, ints)
        return fn
    return register
