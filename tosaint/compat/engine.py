"""tosaint's side of the reference-model binding's ``run``: the binding's statuses, exceptions,
input and option checks, the cache of prepared graphs, and ``run_tosaint``, which runs one
graph on tosaint and returns what the binding would.  ``tosaint.compat.reference_model`` is
the public surface; ``tosaint.compat.dual`` compares this side with the real binding.
"""
from __future__ import annotations

import enum
import hashlib
import os
import sys
import threading
from collections import OrderedDict

import numpy as np

from ..dtypes import STORAGE
from ..errors import (ErrorIfViolation, InputError, SchemaError, TosaError, UnpredictableError)
from ..schema.definition import DType

#: marks this module (and the shim package that stands for it) as tosaint's, not the binding
TOSAINT_COMPAT = True

MODES = ("tosaint", "both", "reference")
VERBOSITIES = ("NONE", "INFO", "IFACE", "LOW", "MED", "HIGH")
DEBUG_MASKS = ("CONFIG", "GT", "OP", "ALL")
LEVELS = {"NONE": None, "EIGHTK": "8K"}
_CACHE_SIZE = 4


class GraphStatus(enum.Enum):
    """The binding's graph statuses, same names and values (like the binding's enum, a member
    compares equal only to itself, not to the int)."""
    TOSA_VALID = 0
    TOSA_UNPREDICTABLE = 1
    TOSA_ERROR = 2

    def __int__(self):
        return self.value

    __index__ = __int__


class InvalidGraph(TosaError, ValueError):
    """The binding's ``ValueError("Invalid TOSA graph")``: the graph does not load or breaks an
    ERROR_IF (``status`` is TOSA_ERROR)."""
    status = GraphStatus.TOSA_ERROR


class InvalidInputs(InputError, ValueError):
    """The binding's ``ValueError("Invalid inputs.")``: wrong number or byte size of inputs."""


_local = threading.local()


def last_diagnostics() -> list:
    """What tosaint reported in this thread's last ``run``: REQUIREs that did not stop the
    graph (where the reference model saturates or wraps), the reason for a status other than
    TOSA_VALID, input reinterpretations and where a failure case was written."""
    return list(getattr(_local, "diagnostics", []))


def mode():
    m = os.environ.get("TOSAINT_REFERENCE", "tosaint").strip().lower() or "tosaint"
    if m not in MODES:
        raise ValueError(f"TOSAINT_REFERENCE={m!r}: use one of {', '.join(MODES)}")
    return m


# ---- argument checks ----------------------------------------------------------------------
def _graph_bytes(tosa_binary):
    if isinstance(tosa_binary, (bytes, bytearray)):
        return bytes(tosa_binary)
    if isinstance(tosa_binary, str):
        return tosa_binary.encode("utf-8", "surrogateescape")
    raise TypeError(f"run(): tosa_binary must be bytes (a serialized TOSA graph), not "
                    f"{type(tosa_binary).__name__}")


def _input_list(inputs):
    if isinstance(inputs, (str, bytes, dict)) or not isinstance(inputs, (list, tuple)):
        raise TypeError(f"run(): inputs must be a list of numpy arrays in graph-input order, "
                        f"not {type(inputs).__name__}")
    for i, x in enumerate(inputs):
        if not isinstance(x, np.ndarray):
            raise TypeError(f"run(): input {i} must be a numpy.ndarray, not "
                            f"{type(x).__name__}")
    return list(inputs)


def check_options(verbosity, debug_mode, tosa_level):
    """The binding's option values; returns tosaint's level."""
    if not isinstance(verbosity, str) or verbosity.upper() not in VERBOSITIES:
        raise ValueError(f"verbosity must be one of {', '.join(VERBOSITIES)}, not "
                         f"{verbosity!r}")
    if debug_mode is not None:
        parts = [p for p in str(debug_mode).replace("|", ",").split(",") if p.strip()]
        if not parts or any(p.strip().upper() not in DEBUG_MASKS for p in parts):
            raise ValueError(f"debug_mode must be None or one of {', '.join(DEBUG_MASKS)}, "
                             f"not {debug_mode!r}")
    if tosa_level not in LEVELS:
        raise ValueError("tosa_level must be NONE or EIGHTK")
    return LEVELS[tosa_level]


# ---- preparing ------------------------------------------------------------------------------
def _plans():
    cache = getattr(_local, "plans", None)
    if cache is None:
        cache = _local.plans = OrderedDict()
    return cache


def _zero_variables(graph):
    """Every variable tensor starts at zero (the binding with initialize_variable_tensor_from_
    numpy: it skips the initial values in the flatbuffer)."""
    for b in graph.blocks():
        for t in b.tensors.values():
            if t.variable and DType(t.dtype) in STORAGE:
                t.data = np.zeros(tuple(t.shape), STORAGE[DType(t.dtype)])


def prepared(data, *, level, zero_variables, impl):
    """(graph, plan) for the graph bytes ``data``: loaded and prepared once per thread and
    (bytes, options); raises InvalidGraph like the binding."""
    from ..interpreter import prepare
    from ..schema.loader import load
    key = (hashlib.sha256(data).digest(), level, bool(zero_variables), impl)
    cache = _plans()
    if key in cache:
        cache.move_to_end(key)
        return cache[key]
    try:
        graph = load(data)
        if zero_variables:
            _zero_variables(graph)
        plan = prepare(graph, impl=impl, level=level)
    except (SchemaError, ErrorIfViolation) as e:
        raise InvalidGraph(f"Invalid TOSA graph: {e}") from e
    cache[key] = (graph, plan)
    while len(cache) > _CACHE_SIZE:
        cache.popitem(last=False)
    return graph, plan


def graph_inputs(graph, inputs, notes):
    """The binding's input rules: the count must match and each array's byte size must be the
    graph input's; then the bytes are taken as the declared dtype and shape."""
    names = graph.inputs
    if len(inputs) != len(names):
        raise InvalidInputs(f"Invalid inputs.: {len(inputs)} arrays given; the graph takes "
                            f"{len(names)}: {names}")
    out = {}
    for name, x in zip(names, inputs):
        t = graph.main.tensors[name]
        want = STORAGE.get(DType(t.dtype))
        if want is None:
            raise InvalidInputs(f"Invalid inputs.: graph input {name!r} has type "
                                f"{DType(t.dtype).name}, which tosaint cannot run")
        shape = tuple(int(d) for d in t.shape)
        size = int(np.prod(shape, dtype=np.int64))
        if x.dtype == want and x.shape == shape:
            out[name] = x
            continue
        if x.nbytes != size * want.itemsize or x.dtype.hasobject:
            raise InvalidInputs(f"Invalid inputs.: graph input {name!r} takes {size} x "
                                f"{want} ({size * want.itemsize} bytes); got {x.dtype} "
                                f"{list(x.shape)} ({x.nbytes} bytes)")
        raw = np.frombuffer(np.ascontiguousarray(x).tobytes(),
                            np.uint8 if want == np.bool_ else want)
        out[name] = (raw != 0 if want == np.bool_ else raw).reshape(shape)
        notes.append(f"graph input {name!r}: {x.dtype} {list(x.shape)} taken as the bytes of "
                     f"{want} {list(shape)}, as the reference model does")
    return out


def _zeros(graph):
    outs = []
    for n in graph.outputs:
        t = graph.main.tensors.get(n)
        dt = STORAGE.get(DType(t.dtype), np.dtype(np.int8)) if t is not None else np.int8
        outs.append(np.zeros(tuple(t.shape) if t is not None else (0,), dt))
    return outs


# ---- running ------------------------------------------------------------------------------
def run_tosaint(data, inputs, *, level=None, zero_variables=False, impl=None):
    """tosaint's answer in the binding's terms: ``(outputs, status, notes, graph, inputs by
    name)``; raises InvalidGraph / InvalidInputs / TypeError as the binding raises."""
    impl = impl or os.environ.get("TOSAINT_COMPAT_IMPL", "auto") or "auto"
    notes = []
    graph, plan = prepared(data, level=level, zero_variables=zero_variables, impl=impl)
    named = graph_inputs(graph, inputs, notes)
    try:
        result = plan.run(named)
    except UnpredictableError as e:
        notes.append(f"TOSA_UNPREDICTABLE: {e}")
        return _zeros(graph), GraphStatus.TOSA_UNPREDICTABLE, notes, graph, named
    except ErrorIfViolation as e:
        notes.append(f"TOSA_ERROR: {e}")
        return _zeros(graph), GraphStatus.TOSA_ERROR, notes, graph, named
    except InputError as e:
        raise InvalidInputs(f"Invalid inputs.: {e}") from e
    notes.extend(f"REQUIRE (the reference model returns these values): {d}"
                 for d in result.diagnostics)
    outs = [np.array(result[n], copy=True, order="C") for n in graph.outputs]
    return outs, GraphStatus.TOSA_VALID, notes, graph, named


def _run(tosa_binary, inputs, *, verbosity, debug_mode, tosa_level, zero_variables):
    from . import dump
    _local.diagnostics = []
    data = _graph_bytes(tosa_binary)
    inputs = _input_list(inputs)
    level = check_options(verbosity, debug_mode, tosa_level)
    try:
        outs, status, notes, graph, named = run_tosaint(data, inputs, level=level,
                                                        zero_variables=zero_variables)
    except InvalidGraph as e:
        _local.diagnostics = [str(e)]
        where = dump.failure(data, inputs, None, [str(e)], status="Invalid TOSA graph")
        if where:
            _local.diagnostics.append(f"case written to {where}")
            e.args = (f"{e} (case written to {where})",)
        _report(_local.diagnostics)
        raise
    _local.diagnostics = notes
    if status != GraphStatus.TOSA_VALID:
        where = dump.failure(data, named, graph, notes, status=status.name)
        if where:
            notes.append(f"case written to {where}")
        _report(notes)
    elif notes and (verbosity.upper() != "NONE" or debug_mode is not None):
        _report(notes)
    return outs, status


def _report(lines):
    for ln in lines:
        print(f"tosaint: {ln}", file=sys.stderr)
    sys.stderr.flush()


