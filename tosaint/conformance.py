"""Run TOSA conformance test folders (``desc.json`` + ``.tosa`` + ``.npy``) on tosaint.

A positive test passes when every output equals the stored expected output (shape, then dtype,
then ``np.array_equal``): ``expected_result_file`` if the desc names one, else
``Conformance-<ofm_name>.npy`` next to it.  A test with ``"expected_failure": true`` passes
when tosaint raises a ``TosaError`` (an ``ErrorIfViolation``, or a ``SchemaError`` when the
file itself is malformed).
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass

import numpy as np

from .errors import ErrorIfViolation, InputError, SchemaError, TosaError
from .inputs import coerce, declared_inputs
from .interpreter import prepare
from .schema.loader import load
from .testcase import CaseFolderError, case_path, load_npy, read_desc


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
    """{output name: expected file name}: ``expected_result_file``, else
    ``Conformance-<ofm_name>.npy`` (the official suites' convention)."""
    names = desc.get("ofm_name", [])
    files = desc.get("expected_result_file")
    if files:
        return dict(zip(names, files))
    return {n: f"Conformance-{n}.npy" for n in names}


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


def run_case(test_dir, *, impl="auto", level=None, max_memory=None,
             max_while_iterations=None) -> CaseResult:
    """Run one test folder.  A malformed folder (desc.json, a file it names) is this test's
    error ("bad-test"), never an exception: a suite run goes on."""
    t0 = time.perf_counter()
    try:
        desc = read_desc(test_dir)
    except CaseFolderError as e:
        return CaseResult(test_dir, False, f"bad test folder: {e}", time.perf_counter() - t0,
                          "bad-test")
    negative = desc.get("expected_failure", False)
    try:
        model = case_path(test_dir, desc["tosa_file"])
        graph = load(str(model))
        plan = prepare(graph, impl=impl, level=level, max_memory=max_memory,
                       max_while_iterations=max_while_iterations)
        arrays = {n: load_npy(test_dir, f) for n, f in zip(desc["ifm_name"], desc["ifm_file"])}
        inputs = coerce(declared_inputs(graph), arrays, cast=True)
        result = plan.run(inputs)
    except CaseFolderError as e:
        return CaseResult(test_dir, False, f"bad test folder: {e}", time.perf_counter() - t0,
                          "bad-test")
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
    for name, fname in expected_outputs(test_dir, desc).items():
        if name not in result:
            problems.append(f"{name}: desc.json names it as an output, but the graph's "
                            f"outputs are {list(graph.outputs)}")
            continue
        try:
            want = load_npy(test_dir, fname)
        except CaseFolderError as e:
            return CaseResult(test_dir, False, f"bad test folder: {e}", dt, "bad-test")
        msg = compare(name, result[name], want)
        if msg:
            problems.append(msg)
    return CaseResult(test_dir, not problems, "; ".join(problems), dt)


def run_suite(root, *, impl="auto", level=None, progress=None, filter=None, max_memory=None,
              max_while_iterations=None):
    """Run every test folder below ``root``; raises InputError when ``root`` is not a
    directory or holds no test folders (nothing was checked)."""
    if not os.path.isdir(root):
        raise InputError(f"{root}: no such directory")
    results = []
    tests = find_tests(root)
    if filter:
        tests = [t for t in tests if filter in t]
    if not tests:
        raise InputError(f"{root}: no test folders (desc.json) found"
                         + (f" matching {filter!r}" if filter else ""))
    for i, t in enumerate(tests):
        r = run_case(t, impl=impl, level=level, max_memory=max_memory,
                     max_while_iterations=max_while_iterations)
        results.append(r)
        if progress:
            progress(i + 1, len(tests), r)
    return results
