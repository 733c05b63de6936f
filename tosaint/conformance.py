"""Run TOSA conformance test folders (``desc.json`` + ``.tosa`` + ``.npy``) on tosaint.

A positive test passes when every output equals the stored expected output (shape, then dtype,
then ``np.array_equal``): ``expected_result_file`` if the desc names one, else
``Conformance-<ofm_name>.npy`` next to it.  A test with ``"expected_failure": true`` passes
when tosaint raises a ``TosaError`` (an ``ErrorIfViolation``, or a ``SchemaError`` when the
file itself is malformed).
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass

import numpy as np

from .dtypes import RANGE, STORAGE
from .errors import ErrorIfViolation, SchemaError, TosaError
from .interpreter import prepare
from .schema.loader import load


@dataclass
class CaseResult:
    path: str
    passed: bool
    message: str = ""
    seconds: float = 0.0
    error_type: str = ""


def find_tests(root):
    """Every folder below ``root`` that holds a desc.json, sorted."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        if "desc.json" in filenames:
            found.append(dirpath)
        dirnames.sort()
    return sorted(found)


def expected_outputs(test_dir, desc):
    names = desc.get("ofm_name", [])
    files = desc.get("expected_result_file")
    if files:
        return {n: os.path.join(test_dir, f) for n, f in zip(names, files)}
    return {n: os.path.join(test_dir, f"Conformance-{n}.npy") for n in names}


def _as_input(arr, tensor):
    want = STORAGE.get(tensor.dtype)
    if want is None or arr.dtype == want:
        return arr
    lo, hi = RANGE.get(tensor.dtype, (None, None))
    if lo is not None and arr.size and (arr.min() < lo or arr.max() > hi):
        return arr  # let run_tosa report the range problem
    return arr.astype(want)


def compare(name, got, want):
    """'' when equal, else what differs (shape, then dtype, then values)."""
    if got.shape != want.shape:
        return f"{name}: shape {list(got.shape)} != expected {list(want.shape)}"
    if got.dtype != want.dtype:
        return f"{name}: dtype {got.dtype} != expected {want.dtype}"
    if not np.array_equal(got, want):
        diff = got != want
        idx = tuple(int(i[0]) for i in np.nonzero(diff))
        return (f"{name}: {int(diff.sum())}/{got.size} values differ, first at {list(idx)}: "
                f"{got[idx]} != expected {want[idx]}")
    return ""


def run_case(test_dir, *, impl="numba", level=None) -> CaseResult:
    t0 = time.perf_counter()
    with open(os.path.join(test_dir, "desc.json")) as f:
        desc = json.load(f)
    negative = bool(desc.get("expected_failure", False))
    try:
        graph = load(os.path.join(test_dir, desc["tosa_file"]))
        plan = prepare(graph, impl=impl, level=level)
        inputs = {}
        for name, fname in zip(desc.get("ifm_name", []), desc.get("ifm_file", [])):
            inputs[name] = _as_input(np.load(os.path.join(test_dir, fname)),
                                     plan.main.tensor(name))
        result = plan.run(inputs)
    except TosaError as e:
        dt = time.perf_counter() - t0
        if negative:
            # an ERROR_IF test must be rejected as invalid, not merely as unsupported
            ok = isinstance(e, (ErrorIfViolation, SchemaError))
            return CaseResult(test_dir, ok, f"{type(e).__name__}: {e}", dt, type(e).__name__)
        return CaseResult(test_dir, False, f"{type(e).__name__}: {e}", dt, type(e).__name__)
    except Exception as e:  # a crash is always a failure, positive or negative
        return CaseResult(test_dir, False, f"CRASH {type(e).__name__}: {e}",
                          time.perf_counter() - t0, "crash")
    dt = time.perf_counter() - t0
    if negative:
        return CaseResult(test_dir, False, "expected a TosaError, but the graph ran", dt)
    problems = []
    for name, path in expected_outputs(test_dir, desc).items():
        if not os.path.exists(path):
            problems.append(f"{name}: no expected output file {os.path.basename(path)}")
            continue
        msg = compare(name, result[name], np.load(path))
        if msg:
            problems.append(msg)
    return CaseResult(test_dir, not problems, "; ".join(problems), dt)


def run_suite(root, *, impl="numba", level=None, progress=None, filter=None):
    results = []
    tests = find_tests(root)
    if filter:
        tests = [t for t in tests if filter in t]
    for i, t in enumerate(tests):
        r = run_case(t, impl=impl, level=level)
        results.append(r)
        if progress:
            progress(i + 1, len(tests), r)
    return results
