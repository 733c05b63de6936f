"""What every benchmark needs: the reference model (if installed), its output silenced, and
the bit-for-bit comparison of two lists of outputs."""
import contextlib
import os
import sys

import numpy as np


@contextlib.contextmanager
def quiet_stderr():
    """Silence the reference model's per-call version warnings (its C++ code writes them to
    file descriptors 1 and 2)."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 1)
        os.dup2(null.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)


def reference_module():
    try:
        import tosa_reference_model
        return tosa_reference_model
    except ImportError:
        return None


def compare(mine, theirs):
    """'' when every output is bit-equal, else what differs first."""
    if len(mine) != len(theirs):
        return f"{len(mine)} outputs vs {len(theirs)}"
    for i, (a, b) in enumerate(zip(mine, theirs)):
        if a.shape != b.shape:
            return f"output {i}: shape {a.shape} != {b.shape}"
        if a.dtype != b.dtype:
            return f"output {i}: dtype {a.dtype} != {b.dtype}"
        if not np.array_equal(a, b):
            return f"output {i}: {int(np.sum(a != b))}/{a.size} values differ"
    return ""
