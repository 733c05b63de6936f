"""tosaint as a drop-in for the TOSA reference model binding (``tosa_reference_model``).

* ``tosaint.compat.reference_model``: the binding's ``run`` / ``GraphStatus`` on tosaint;
* ``python -m tosaint.compat MODULE ARGS`` / ``pytest -p tosaint.compat.pytest_plugin``: run
  unchanged code (ExecuTorch's Arm tests) with ``import tosa_reference_model`` giving tosaint;
* ``TOSAINT_REFERENCE=both``: run the real binding too and fail on any difference
  (``tosaint.compat.dual``); ``TOSAINT_COMPAT_DUMP=DIR``: write failing cases
  (``tosaint.compat.dump``).
"""
from .reference_model import GraphStatus, last_diagnostics, run

__all__ = ["GraphStatus", "last_diagnostics", "run"]
