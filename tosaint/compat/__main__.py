"""``python -m tosaint.compat MODULE [ARGS...]``: run a Python module with tosaint standing in for
the TOSA reference model binding, in that process and every process it starts.

    python -m tosaint.compat pytest -n 2 backends/arm/test/ops -k tosa_INT
    TOSAINT_REFERENCE=both python -m tosaint.compat pytest ...     # compare with the binding
    TOSAINT_COMPAT_DUMP=failures python -m tosaint.compat pytest ...

MODULE runs as ``python -m MODULE ARGS`` in a child interpreter whose PYTHONPATH starts with
a stand-in ``tosa_reference_model`` package (``tosaint.compat.shim``); the exit code is the
child's.  Exit code 2 for bad usage.
"""
from __future__ import annotations

import shutil
import subprocess
import sys

USAGE = """usage: python -m tosaint.compat MODULE [ARGS...]

Run `python -m MODULE ARGS...` with `import tosa_reference_model` resolving to tosaint
(tosaint.compat.reference_model) in that process and every process it starts.

environment:
  TOSAINT_REFERENCE=tosaint|both|reference   what run() executes (default tosaint; both runs
                                             the real binding too when it is installed and
                                             fails on any difference)
  TOSAINT_COMPAT_DUMP=DIR                    write failing cases (graph, inputs, diagnostics)
                                             under DIR
  TOSAINT_COMPAT_IMPL=numba|spec             tosaint's kernels or their NumPy twins
"""


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE, file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    if argv[0].startswith("-"):
        print(f"error: expected a module name, not {argv[0]!r}\n\n{USAGE}", file=sys.stderr)
        return 2
    from .reference_model import mode
    from .shim import child_env, existing_shim, make_shim
    try:
        mode()
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    shim = existing_shim()
    made = shim is None
    if made:
        shim = make_shim()
    try:
        proc = subprocess.Popen([sys.executable, "-m", *argv], env=child_env(shim))
        while True:
            try:
                return proc.wait()
            except KeyboardInterrupt:       # the child got the same SIGINT: let it finish
                continue
    finally:
        if made:
            shutil.rmtree(shim, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
