"""Kept for code that imports ``tosaint.torch.quant``: the maths lives in :mod:`tosaint.quant`
(torch-free)."""
from ..quant import *  # noqa: F401,F403
from ..quant import __all__  # noqa: F401
