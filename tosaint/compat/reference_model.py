"""``tosa_reference_model`` as tosaint: the binding's ``run`` and ``GraphStatus``, call for call.

    from tosaint.compat import reference_model
    outputs_np, status = reference_model.run(graph_bytes, inputs_np, verbosity="MED",
                                             initialize_variable_tensor_from_numpy=True,
                                             debug_mode=None)
    assert status == reference_model.GraphStatus.TOSA_VALID
    reference_model.last_diagnostics()     # what tosaint found in this thread's last call

This module owns the binding's calling convention: its arguments, statuses, exceptions and
output dtypes, as the tosa-tools 2026.x binding (``tosa_reference_model.run``) has them:

* ``inputs`` is a list or tuple of ``numpy.ndarray`` in graph-input order (anything else:
  ``TypeError``).  As in the binding, an input is taken as raw bytes: an array whose byte
  size equals the graph input's is accepted whatever its shape and dtype, and reinterpreted
  (noted in ``last_diagnostics()``); a wrong count or byte size raises ``ValueError``
  ("Invalid inputs.").  int48 inputs, which the binding cannot take, are int64 arrays here.
* A graph that does not load, or breaks an ERROR_IF while being prepared, raises
  ``ValueError`` ("Invalid TOSA graph"), as the binding does for both; the exception is a
  ``TosaError`` too and carries ``status = GraphStatus.TOSA_ERROR``.  An ERROR_IF found while
  running gives ``TOSA_ERROR``; a REQUIRE where the reference model reports UNPREDICTABLE
  gives ``TOSA_UNPREDICTABLE``.  With a status other than TOSA_VALID the outputs are arrays of
  the declared shape holding zeros (the binding's values there are unspecified).
* What is not the graph's fault raises as such: ``UnsupportedOp`` for an operator or type
  tosaint does not run (floating-point graphs), ``ResourceLimitError`` past tosaint's limits.
* Outputs come back in graph-output order as new, writable arrays of the storage dtype
  (bool, int8, int16, int32).  int48 outputs are int64 here; the binding returns an empty
  float64 array for them (and for int4 and shape outputs, which are int8 / int64 here).
* ``initialize_variable_tensor_from_numpy=True`` starts every variable tensor (EXT-VARIABLE)
  at zero, as the binding does (it skips the flatbuffer's initial values and has no way to
  pass others); otherwise variables start from their initial values.
* ``tosa_level`` is "NONE" or "EIGHTK"; ``verbosity`` and ``debug_mode`` are checked against
  the binding's values (a bad one raises ``ValueError``; the binding aborts the process) and
  otherwise only decide whether the diagnostics are printed; the other keywords
  (``inst_id``, ``debug_filename``, ``dump_intermediates``, ``fp_format``, ...) and unknown
  ones are accepted and ignored.

The environment chooses what runs (read at every call):

* ``TOSAINT_REFERENCE``: ``tosaint`` (default), ``both`` (run the real binding as well when it
  is installed and fail on any difference, naming the first diverging operator: see
  ``tosaint.compat.dual``) or ``reference`` (the real binding only);
* ``TOSAINT_COMPAT_DUMP=DIR``: on a status other than TOSA_VALID, an invalid graph or a
  difference, write the graph, the inputs and the diagnostics to a case folder under DIR
  (``tosaint.compat.dump``) and name it in the message;
* ``TOSAINT_COMPAT_IMPL``: ``numba`` (default) or ``spec`` (the NumPy twins);
* ``TOSAINT_COMPAT_LOG=FILE``: append one line per call (process id, mode, graph digest), to
  count the graphs a test run sent through the compat layer.
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
    impl = impl or os.environ.get("TOSAINT_COMPAT_IMPL", "numba") or "numba"
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


def run(tosa_binary, inputs, *, inst_id=0, debug_filename=None, is_unbuffered=False,
        debug_mode=None, verbosity="NONE", dump_intermediates=0,
        initialize_variable_tensor_from_numpy=0, fp_format="0.5", precise_mode=0,
        bounds_mode=False, tosa_level="NONE", **ignored):
    """Run a serialized TOSA graph on ``inputs``: ``(outputs, GraphStatus)`` as the
    reference model binding returns them (see the module docstring for the differences)."""
    m = mode()
    _log_call(tosa_binary, m)
    if m != "tosaint":
        from . import dual
        kwargs = dict(inst_id=inst_id, debug_filename=debug_filename,
                      is_unbuffered=is_unbuffered, debug_mode=debug_mode, verbosity=verbosity,
                      dump_intermediates=dump_intermediates,
                      initialize_variable_tensor_from_numpy=initialize_variable_tensor_from_numpy,
                      fp_format=fp_format, precise_mode=precise_mode, bounds_mode=bounds_mode,
                      tosa_level=tosa_level)
        if m == "reference":
            return dual.reference_only(tosa_binary, inputs, kwargs)
        return dual.run_both(tosa_binary, inputs, kwargs)
    return _run(tosa_binary, inputs, verbosity=verbosity, debug_mode=debug_mode,
                tosa_level=tosa_level,
                zero_variables=bool(initialize_variable_tensor_from_numpy))


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


def _log_call(tosa_binary, m):
    """TOSAINT_COMPAT_LOG=FILE: one line per call (process, mode, graph digest), appended."""
    path = os.environ.get("TOSAINT_COMPAT_LOG")
    if not path:
        return
    try:
        digest = hashlib.sha256(_graph_bytes(tosa_binary)).hexdigest()[:12]
    except TypeError:
        digest = "-"
    try:
        with open(path, "a") as f:
            f.write(f"{os.getpid()} {m} {digest}\n")
    except OSError:
        pass


def _report(lines):
    for ln in lines:
        print(f"tosaint: {ln}", file=sys.stderr)
    sys.stderr.flush()


__all__ = ["GraphStatus", "run", "last_diagnostics"]
