"""The kernels, in three namespaces with the same function names and arguments:

- ``tosaint.kernels.compiled`` (``impl="numba"``): the Numba kernels, and vectorised NumPy where
  that is as fast;
- ``tosaint.kernels.spec`` (``impl="spec"``): the spec twins, NumPy transcriptions of the spec
  pseudocode;
- ``tosaint.kernels.fast`` (``impl="auto"``, the default): per call, the spec twin while the
  call is light and the process has not yet run a plan twice, else the Numba kernel (see its
  docstring for why).

``namespace(impl)`` returns one of them, which is how the op layer reaches its kernels.

Kernels receive validated, contiguous arrays and plain ints and never raise: overflow and other
REQUIRE conditions are returned as flags or counts for the op layer to report.

Importing this package imports none of them; only ``compiled`` imports Numba, which a process
that loads, validates or runs small graphs once does not need.
"""
IMPLS = ("auto", "numba", "spec")


def namespace(impl="auto"):
    """All kernels of one implementation ("auto", "numba" or "spec"), as a module."""
    if impl == "auto":
        from . import fast
        return fast
    if impl == "numba":
        from . import compiled
        return compiled
    if impl == "spec":
        from . import spec
        return spec
    raise ValueError(f"impl must be one of {IMPLS}, not {impl!r}")


def promote():
    """A plan runs a second time: from now on ``impl="auto"`` runs the Numba kernels (called
    by ``Plan.run``; see ``tosaint.kernels.fast``)."""
    from . import fast
    fast.promote()
