"""Graph inputs: the one place where what a user passes in becomes the arrays a plan runs on.

``coerce`` checks names, dtype, shape, the int4/int48 value range and contiguity;
``random_inputs`` draws reproducible inputs over each dtype's full range; ``model_bytes`` turns
a model given as a path, bytes or Graph into its bytes and Graph.
"""
from __future__ import annotations

import os
import zlib

import numpy as np

from .dtypes import RANGE, STORAGE, short
from .errors import InputError
from .schema.definition import DType


def _contig(a):
    """C-contiguous, keeping rank 0; a copy only when ``a`` is not contiguous already."""
    return a if a.flags.c_contiguous else a.copy(order="C")


def _by_position(declared, inputs, what):
    """The given values in the order of ``declared`` (dict by name, list/tuple, bare array)."""
    names = [t.name for t in declared]
    if isinstance(inputs, dict):
        missing = [n for n in names if n not in inputs]
        if missing:
            raise InputError(f"{what}(s) {missing} missing; the graph takes {names}")
        extra = [n for n in inputs if n not in names]
        if extra:
            raise InputError(f"{extra} are not {what}s; the graph takes {names}")
        return [inputs[n] for n in names]
    if isinstance(inputs, np.ndarray):
        if len(names) != 1:
            raise InputError(f"one array given, but the graph takes {len(names)} {what}s "
                             f"{names}: pass a dict by name or a list")
        return [inputs]
    if isinstance(inputs, (list, tuple)):
        if len(inputs) != len(names):
            raise InputError(f"{len(inputs)} {what}s given; the graph takes {len(names)}: "
                             f"{names}")
        return list(inputs)
    raise InputError(f"{what}s must be a dict by name or a list of numpy arrays, not "
                     f"{type(inputs).__name__}; the graph takes {names}")


def _fits(v, dt):
    lo, hi = RANGE[dt]
    return not v.size or (v.min() >= lo and v.max() <= hi)


def coerce(declared, inputs, *, what="graph input", cast=False) -> list:
    """The arrays to run ``declared`` (graph Tensors with .name/.dtype/.shape) on.

    ``inputs``: a dict by name, a list in declaration order, or a bare ndarray for a one-input
    graph.  Each value must be a numpy array of the input's storage dtype and shape; int4 and
    int48 values must lie in their range.  ``cast=True`` (file-based front ends: golden,
    conformance, the CLI) also accepts integer/bool arrays of another dtype whose values fit
    and casts them.  Arrays are returned as given when C-contiguous, else as a contiguous
    copy.  Raises InputError naming the input and the condition.
    """
    declared = list(declared)
    values = _by_position(declared, inputs, what)
    out = []
    for t, v in zip(declared, values):
        name, dt = t.name, DType(t.dtype)
        want = STORAGE.get(dt)
        if want is None:
            raise InputError(f"{what} {name!r} has type {dt.name}, which tosaint cannot run")
        if not isinstance(v, np.ndarray):
            raise InputError(f"{what} {name!r} must be a numpy array of {want} "
                             f"(TOSA {dt.name}), not {type(v).__name__}")
        if v.dtype != want:
            if not (cast and v.dtype.kind in "biu" and dt in RANGE and _fits(v, dt)):
                hint = "" if cast or v.dtype.kind not in "biu" else \
                    f" (convert it with .astype(np.{want}))"
                raise InputError(f"{what} {name!r} has dtype {v.dtype}; expected {want} "
                                 f"(TOSA {short(dt)}){hint}")
            v = v.astype(want)
        if v.shape != tuple(t.shape):
            raise InputError(f"{what} {name!r} has shape {list(v.shape)}; expected "
                             f"{list(t.shape)}")
        if dt in (DType.INT48, DType.INT4) and not _fits(v, dt):
            lo, hi = RANGE[dt]
            raise InputError(f"{what} {name!r} holds values outside the {dt.name} range "
                             f"[{lo}, {hi}]")
        out.append(_contig(v))
    return out


def random_inputs(declared, seed, index, fixed=None) -> dict:
    """Inputs for random case ``index`` of ``seed``: each over its dtype's full range.

    ``declared``: the graph's input Tensors (or a Graph: its main inputs).  Inputs named in
    ``fixed`` are taken from there.  Deterministic: each input draws from its own stream
    ``SeedSequence([seed, index, crc32(name)])``, so adding cases or inputs never changes
    the others.
    """
    declared = _declared(declared)
    fixed = fixed or {}
    out = {}
    for t in declared:
        name = t.name
        if name in fixed:
            out[name] = fixed[name]
            continue
        dt = DType(t.dtype)
        if dt not in RANGE or dt in (DType.SHAPE, DType.INT64):
            raise InputError(f"graph input {name!r} has type {dt.name}: no random inputs for it")
        lo, hi = RANGE[dt]
        rng = np.random.default_rng(np.random.SeedSequence(
            [int(seed), int(index), zlib.crc32(name.encode())]))
        vals = rng.integers(lo, hi, size=tuple(t.shape), dtype=np.int64, endpoint=True)
        out[name] = _contig(vals.astype(STORAGE[dt]))
    return out


def _declared(graph_or_tensors):
    """The input Tensors of a Graph, or the given list of Tensors."""
    from .graph import Graph
    if isinstance(graph_or_tensors, Graph):
        return [graph_or_tensors.main.tensors[n] for n in graph_or_tensors.inputs]
    return list(graph_or_tensors)


def declared_inputs(graph):
    """The main block's input Tensors of ``graph``, in order."""
    return _declared(graph)


def model_bytes(model):
    """(bytes, Graph) of a model given as a path, bytes or Graph.

    A path is read through the loader's one model-file reader (regular files only, size
    checked before reading)."""
    from .graph import Graph
    from .schema.loader import load
    if isinstance(model, Graph):
        return model.to_bytes(), model
    if isinstance(model, (bytes, bytearray, memoryview)):
        data = bytes(model)
    elif isinstance(model, (str, os.PathLike)):
        data = read_model_bytes(model)
    else:
        raise InputError(f"a model is a .tosa path, bytes or a Graph, not "
                         f"{type(model).__name__}")
    return data, load(data)


def read_model_bytes(path):
    """The bytes of the model file at ``path``, through the loader's one reader (regular
    files only, size checked before reading)."""
    from .schema.loader import read_model_file
    return read_model_file(path)


__all__ = ["coerce", "random_inputs", "model_bytes", "declared_inputs", "read_model_bytes"]
