"""pytest plugin: ``pytest -p tosaint.compat.pytest_plugin ...`` runs the session with tosaint
standing in for the TOSA reference model binding, like ``python -m tosaint.compat pytest``.

Loading the plugin activates the shim (``tosaint.compat.shim.activate``) in the pytest process
and, through PYTHONPATH, in every process it starts (pytest-xdist workers included).  The
session header names the mode (``TOSAINT_REFERENCE``).
"""
from .shim import activate

SHIM = activate()


def pytest_report_header(config):
    from .reference_model import mode
    return f"tosaint.compat: tosa_reference_model is tosaint (TOSAINT_REFERENCE={mode()}, " \
           f"shim {SHIM})"
