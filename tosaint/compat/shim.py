"""The stand-in package that makes ``import tosa_reference_model`` give tosaint, in every process.

``make_shim()`` writes a folder holding a package ``tosa_reference_model`` whose
``__init__.py`` re-exports ``tosaint.compat.reference_model`` (``run``, ``GraphStatus``,
``last_diagnostics``) and a marker file (``tosaint.compat.dual`` skips marked packages when it
looks for the real binding).  ``child_env()`` puts that folder first on ``PYTHONPATH``: every
Python started with that environment (pytest-xdist workers, subprocesses, their children)
imports the stand-in before anything in site-packages, whether or not the real binding is
installed.  ``activate()`` does the same for the running interpreter (the pytest plugin).
"""
from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

from .dual import NAME, SHIM_MARKER, is_shim

#: the environment variable naming the shim folder of the current run
ENV = "TOSAINT_COMPAT_SHIM"

INIT = '''"""tosaint standing in for the TOSA reference model binding (made by tosaint.compat).

Remove this folder from PYTHONPATH to get the real binding back."""
from tosaint.compat.reference_model import (  # noqa: F401
    TOSAINT_COMPAT, GraphStatus, last_diagnostics, run)

__all__ = ["GraphStatus", "run"]
'''


def make_shim(parent=None) -> Path:
    """A new folder with the stand-in package; returns the folder (for PYTHONPATH)."""
    root = Path(tempfile.mkdtemp(prefix="tosaint-shim-", dir=parent))
    pkg = root / NAME
    pkg.mkdir()
    (pkg / "__init__.py").write_text(INIT)
    (pkg / SHIM_MARKER).write_text("tosaint.compat: this package stands for the reference "
                                   "model binding\n")
    return root


def existing_shim():
    """The shim folder named by TOSAINT_COMPAT_SHIM when it is a valid one, else None."""
    d = os.environ.get(ENV)
    if d and is_shim(Path(d) / NAME) and (Path(d) / NAME / "__init__.py").is_file():
        return Path(d)
    return None


def child_env(shim, env=None) -> dict:
    """``env`` (default os.environ) with ``shim`` first on PYTHONPATH and named in
    TOSAINT_COMPAT_SHIM."""
    env = dict(os.environ if env is None else env)
    rest = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != str(shim)]
    env["PYTHONPATH"] = os.pathsep.join([str(shim), *rest])
    env[ENV] = str(shim)
    return env


def activate() -> Path:
    """Make ``import tosa_reference_model`` give tosaint here and in every child process;
    returns the shim folder (made once per process tree, removed when its maker exits)."""
    from . import dual
    shim = existing_shim()
    if shim is None:
        shim = make_shim()
        atexit.register(shutil.rmtree, shim, ignore_errors=True)
    os.environ.update(child_env(shim))
    if str(shim) not in sys.path:
        sys.path.insert(0, str(shim))
    loaded = sys.modules.get(NAME)
    if loaded is not None and not getattr(loaded, "TOSAINT_COMPAT", False):
        # the real binding is imported already: keep it for TOSAINT_REFERENCE=both (an
        # extension module cannot be loaded twice) and let the next import find the shim
        dual._real = loaded
        del sys.modules[NAME]
    return shim
