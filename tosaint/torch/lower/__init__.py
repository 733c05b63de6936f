"""The lowerings of ATen operators to integer TOSA, one module per family, and their table.

:data:`LOWERINGS` maps ``"aten.<name>"`` to a :class:`~._registry.Lowering`; the family
modules below fill it with ``@lowers(...)`` when imported here (explicitly, in this order).
"""
from . import (activations, arith, attention, einsum, linear, masks, norms,  # noqa: F401
               pooling, reductions, shape)
from . import embedding  # noqa: F401
from ._registry import LOWERINGS, Lowering, lowers

__all__ = ["LOWERINGS", "Lowering", "lowers"]
