"""Numba kernels (``tosaint.kernels.<chapter>``) and their NumPy twins written from the spec
pseudocode (``tosaint.kernels.spec.<chapter>``).  Both sides export the same function names with
the same arguments; ``namespace(impl)`` gathers one side into a single namespace.

Kernels receive validated, contiguous arrays and plain ints and never raise: overflow and other
REQUIRE conditions are returned as flags or counts for the op layer to report.
"""
import importlib
from types import SimpleNamespace

#: kernel modules, named after the spec chapters
CHAPTERS = ("scale", "tensor_ops", "pooling", "type_conversion", "activation_funcs", "ewise_binary",
            "ewise_unary", "ewise_ternary", "comparison", "reduction", "data_layout",
            "scatter_gather", "image")

IMPLS = ("numba", "spec")
_cache = {}


class _Lazy(SimpleNamespace):
    """Attribute lookup imports the chapter modules of one side on first use."""

    def __init__(self, impl):
        super().__init__()
        object.__setattr__(self, "_impl", impl)
        object.__setattr__(self, "_loaded", False)

    def __getattr__(self, name):
        if name.startswith("_") or self._loaded:
            raise AttributeError(f"no kernel {name!r} in the {self._impl} kernels")
        pkg = "tosaint.kernels" if self._impl == "numba" else "tosaint.kernels.spec"
        for ch in CHAPTERS:
            try:
                mod = importlib.import_module(f"{pkg}.{ch}")
            except ModuleNotFoundError as e:
                if e.name != f"{pkg}.{ch}":
                    raise
                continue
            for k in getattr(mod, "__all__", ()):
                object.__setattr__(self, k, getattr(mod, k))
        object.__setattr__(self, "_loaded", True)
        return object.__getattribute__(self, name)


def namespace(impl="numba"):
    """All kernels of one implementation ("numba" or "spec") as attributes."""
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS}, not {impl!r}")
    if impl not in _cache:
        _cache[impl] = _Lazy(impl)
    return _cache[impl]
