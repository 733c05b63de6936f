"""Whole-suite round trip of tosaint's flatbuffer layer against the official reference model.

    python -m tests.roundtrip_suite DIR [DIR ...] [--filter SUBSTR] [--limit N] [--json OUT]

For every test folder below DIR (a ``desc.json`` next to its ``.tosa`` file, as the TOSA
conformance generator writes them; build a suite with ``python -m tests.cts OUT``):

* positive tests: ``load`` the file, check ``load(write(g)) == g``, write it back with
  ``Graph.to_bytes()``, run the rewritten bytes on the official reference model (the python
  binding; the ``bin/tosa_reference_model`` CLI when a graph input or output is int48 or int4,
  which the binding cannot pass) and compare every output with the stored expected output
  ``Conformance-<ofm>.npy``: shape, dtype, then exact values;
* negative (ERROR_IF) tests (``"expected_failure": true``): ``load`` must either raise a
  TosaError (a SchemaError for a malformed graph) or succeed; a file that loads is written back
  and must still be TOSA_ERROR on the reference model (the rewrite keeps the error).

Prints one line per failure and a summary; exit status 0 when nothing failed.  Needs
``pip install tosa-tools`` (the reference model).  The pytest entry point is
``TOSAINT_CTS_DIR=DIR pytest -m slow tests/test_roundtrip.py -k suite``.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from tosaint.errors import TosaError
from tosaint.schema.definition import DType
from tosaint.schema.loader import load

BINDING_CANNOT_PASS = {DType.INT48, DType.INT4}


def find_tests(root):
    return sorted(p.parent for p in Path(root).rglob("desc.json"))


def ref_binary():
    import tosa_reference_model
    return Path(tosa_reference_model.__file__).resolve().parent.parent / "bin" / \
        "tosa_reference_model"


class _Quiet:
    """Silence the reference model's C++ chatter on fds 1 and 2."""

    def __enter__(self):
        sys.stdout.flush()
        sys.stderr.flush()
        self.saved = [os.dup(1), os.dup(2)]
        self.null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(self.null, 1)
        os.dup2(self.null, 2)

    def __exit__(self, *exc):
        os.dup2(self.saved[0], 1)
        os.dup2(self.saved[1], 2)
        for fd in (*self.saved, self.null):
            os.close(fd)


def run_binding(data, graph, tdir, desc):
    import tosa_reference_model as trm
    files = dict(zip(desc["ifm_name"], desc["ifm_file"]))
    inputs = [np.load(tdir / files[n]) for n in graph.inputs]
    with _Quiet():
        try:
            outs, status = trm.run(data, inputs)
        except Exception as e:                     # noqa: BLE001 - the binding raises on errors
            return f"EXCEPTION {e}", {}
    name = getattr(status, "name", str(status))
    return name, dict(zip(graph.outputs, outs)) if name == "TOSA_VALID" else {}


def run_cli(data, graph, tdir, desc):
    with tempfile.TemporaryDirectory(prefix="tosaint_rt_") as tmp:
        tmp = Path(tmp)
        (tmp / "test.tosa").write_bytes(data)
        d = {k: desc[k] for k in ("ifm_name", "ifm_file", "ofm_name", "ofm_file")}
        d["tosa_file"] = "test.tosa"
        for f in d["ifm_file"]:
            os.symlink(tdir / f, tmp / f)
        (tmp / "desc.json").write_text(json.dumps(d))
        env = {**os.environ, "PATH": "/nonexistent-no-gdb"}   # no gdb backtrace on errors
        p = subprocess.run([str(ref_binary()), "--test_desc", str(tmp / "desc.json"),
                            "--flatbuffer_dir", str(tmp), "--output_dir", str(tmp)],
                           capture_output=True, text=True, env=env)
        status = {0: "TOSA_VALID", 1: "TOSA_UNPREDICTABLE", 2: "TOSA_ERROR"}.get(
            p.returncode, f"RC_{p.returncode}")
        outs = {}
        if status == "TOSA_VALID":
            for n, f in zip(d["ofm_name"], d["ofm_file"]):
                outs[n] = np.load(tmp / f)
        return status, outs


def _compare(want, got):
    if got is None:
        return "missing output"
    if want.shape != got.shape:
        return f"shape {got.shape} != expected {want.shape}"
    if want.dtype != got.dtype:
        return f"dtype {got.dtype} != expected {want.dtype}"
    if not np.array_equal(want, got):
        bad = np.flatnonzero(want.ravel() != got.ravel())
        return f"{bad.size}/{want.size} values differ, first at {bad[0]}"
    return None


def check_test(tdir):
    """-> (outcome, message): outcome in pass / fail / rejected (negative tests only)."""
    desc = json.loads((tdir / "desc.json").read_text())
    negative = bool(desc.get("expected_failure"))
    try:
        g = load(tdir / desc["tosa_file"])
    except TosaError as e:
        if negative:
            return "rejected", f"{type(e).__name__}: {e}"
        return "fail", f"load: {type(e).__name__}: {e}"
    except Exception as e:                         # noqa: BLE001 - a loader bug
        return "fail", f"load raised {type(e).__name__}: {e}"
    try:
        data = g.to_bytes()
        equal = load(data) == g
    except Exception as e:                         # noqa: BLE001
        return "fail", f"write/reload raised {type(e).__name__}: {e}"
    if not equal:
        return "fail", "load(write(g)) != g"
    io = [g.tensors[n].dtype for n in g.inputs + g.outputs]
    runner = run_cli if negative or any(d in BINDING_CANNOT_PASS for d in io) else run_binding
    status, outs = runner(data, g, tdir, desc)
    if negative:
        return ("pass", None) if status == "TOSA_ERROR" else \
            ("fail", f"rewritten negative test gives {status}, not TOSA_ERROR")
    if status != "TOSA_VALID":
        return "fail", f"rewritten graph gives {status}"
    expected = desc.get("expected_result_file") or [f"Conformance-{n}.npy"
                                                    for n in desc["ofm_name"]]
    msgs = []
    for n, f in zip(desc["ofm_name"], expected):
        m = _compare(np.load(tdir / f), outs.get(n))
        if m:
            msgs.append(f"{n}: {m}")
    return ("fail", "; ".join(msgs)) if msgs else ("pass", None)


def run_suite(dirs, filter=None, limit=0, verbose=False, log=print):
    tests = [t for d in dirs for t in find_tests(d)]
    if filter:
        tests = [t for t in tests if filter in str(t)]
    if limit:
        tests = tests[:limit]
    counts = {"positive": {"pass": 0, "fail": 0}, "negative": {"pass": 0, "rejected": 0,
                                                                "fail": 0}}
    failures = []
    t0 = time.perf_counter()
    for tdir in tests:
        desc = json.loads((tdir / "desc.json").read_text())
        kind = "negative" if desc.get("expected_failure") else "positive"
        outcome, msg = check_test(tdir)
        counts[kind][outcome] += 1
        if outcome == "fail":
            failures.append({"test": str(tdir), "msg": msg})
            log(f"FAIL {tdir}: {msg}")
        elif verbose:
            log(f"{outcome.upper()} {tdir}" + (f": {msg}" if msg else ""))
    return {"tests": len(tests), "counts": counts, "failures": failures,
            "seconds": round(time.perf_counter() - t0, 1)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dirs", nargs="+", type=Path)
    ap.add_argument("--filter")
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--json", type=Path, help="write the summary (with failures) here")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    r = run_suite(args.dirs, args.filter, args.limit, args.verbose)
    p, n = r["counts"]["positive"], r["counts"]["negative"]
    print(f"positive: {p['pass']}/{p['pass'] + p['fail']} loaded, rewritten and bit-identical "
          f"on the reference model")
    print(f"negative: {n['pass'] + n['rejected']}/{sum(n.values())} ok "
          f"({n['rejected']} rejected by load with a TosaError, {n['pass']} loaded and still "
          f"TOSA_ERROR after the rewrite)")
    print(f"{p['pass'] + n['pass'] + n['rejected']} passed, {p['fail'] + n['fail']} failed "
          f"in {r['seconds']} s")
    if args.json:
        args.json.write_text(json.dumps(r, indent=1))
    return 0 if not r["failures"] else 1


if __name__ == "__main__":
    sys.exit(main())
