"""The kernels: the fast side (``tosaint.kernels.fast``: Numba kernels, and vectorised NumPy
where that is as fast) and the spec twins written from the spec pseudocode
(``tosaint.kernels.spec``).  Both export the same function names with the same arguments;
``namespace(impl)`` returns one side, which is how the op layer reaches its kernels.

Kernels receive validated, contiguous arrays and plain ints and never raise: overflow and other
REQUIRE conditions are returned as flags or counts for the op layer to report.

Importing this package imports neither side: the fast side imports Numba, which a process that
only loads or validates graphs does not need.
"""
IMPLS = ("numba", "spec")


def namespace(impl="numba"):
    """All kernels of one implementation ("numba" or "spec"), as a module."""
    if impl == "numba":
        from . import fast
        return fast
    if impl == "spec":
        from . import spec
        return spec
    raise ValueError(f"impl must be one of {IMPLS}, not {impl!r}")
