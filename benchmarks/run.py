"""Time tosaint against the TOSA reference model on the same graphs, inputs and process.

    python -m benchmarks [--json FILE] [--repeat N] [--only CASE[,CASE]] [--threads-check]
                         [--profile] [--no-cold] [--no-memory] [--list]

For every case of ``benchmarks.graphs``: the graph is built with GraphBuilder and serialised
once; tosaint runs it with ``run_tosa`` (the plan is prepared and the kernels compiled in a
warm-up run), the reference model's python binding runs the same bytes on the same inputs
(``tosa_reference_model.run``, which parses and validates the graph on every call, as its users
call it).  The two alternate, ``--repeat`` times each (more for short cases, up to ~2 s per
case) after one warm-up each; the table shows medians, the ratio also of the minima.  The outputs of both are compared bit for bit (shape, dtype, ``np.array_equal``).

Also measured, each in a fresh subprocess:

* cold start: ``import tosaint`` + build and run the tiny graph, with an empty NUMBA_CACHE_DIR
  (everything the graph needs is compiled) and again with that cache warm;
* peak memory of the convolution cases: the growth of the resident set (VmHWM after resetting
  it) and the tracemalloc peak during one warm run, next to the bytes of inputs + weights +
  outputs;
* ``--threads-check``: every case with NUMBA_NUM_THREADS=1 and =2; the outputs must be equal.

A case whose operators are not all registered in tosaint is reported as "not implemented".
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

from .common import compare, quiet_stderr, reference_module
from .oneshot import (ONESHOT_CASES, cold_section, export_cases, load_section, oneshot_section,
                      suite_section)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MEMORY_CASES = ("conv2d_a16w8", "conv2d_a8w8", "depthwise_a16w8")
DEFAULT_SUITE = os.path.join(ROOT, ".cts", "seed42", "conformance")


def missing_ops(graph):
    """Operators of ``graph`` that tosaint does not implement (yet)."""
    import tosaint.ops  # noqa: F401  (fills the registry)
    from tosaint.registry import REGISTRY
    from tosaint.schema.definition import Op
    missing = set()
    for block in graph.blocks():
        for o in block.operators:
            if Op(o.op) not in REGISTRY:
                missing.add(Op(o.op).name)
    return sorted(missing)


def tosaint_outputs(case):
    import tosaint
    res = tosaint.run_tosa(case.graph, case.inputs)
    return [res[n] for n in case.graph.outputs]


def bench_case(case, repeat, ref):
    row = dict(case=case.name, note=case.note, macs=case.macs, ops=sum(case.ops.values()))
    missing = missing_ops(case.graph)
    if missing:
        row.update(status="not implemented", missing=missing)
        return row
    graph_bytes = case.graph.to_bytes()
    try:
        t0 = time.perf_counter()
        mine = tosaint_outputs(case)                  # prepare + compile + first run
        row["tosaint_first_s"] = time.perf_counter() - t0
    except Exception as e:  # an op that exists but fails is reported, not fatal
        row.update(status=f"tosaint error: {type(e).__name__}: {e}"[:300])
        return row
    ts, tr = [], []
    if ref is not None:
        with quiet_stderr():
            outs, status = ref.run(graph_bytes, case.inputs)
        row["reference_status"] = int(status)
        if int(status) != 0:
            row["status"] = f"reference model status {status}"
        else:
            diff = compare(mine, list(outs))
            row["bit_equal"] = not diff
            row["status"] = "ok" if not diff else f"MISMATCH {diff}"
    else:
        row["status"] = "ok (no reference model)"
    import tosaint
    # on a loaded machine a sub-millisecond run is often preempted for a whole time slice:
    # short cases get more runs (up to ~2 s per case) so the median is not a lottery
    t0 = time.perf_counter()
    tosaint.run_tosa(case.graph, case.inputs)
    if ref is not None:
        with quiet_stderr():
            ref.run(graph_bytes, case.inputs)
    once = time.perf_counter() - t0
    repeat = max(repeat, min(100, int(2.0 / max(once, 1e-6))))
    row["repeat"] = repeat
    for _ in range(repeat):
        t0 = time.perf_counter()
        tosaint.run_tosa(case.graph, case.inputs)
        ts.append(time.perf_counter() - t0)
        if ref is not None:
            with quiet_stderr():
                t0 = time.perf_counter()
                ref.run(graph_bytes, case.inputs)
                tr.append(time.perf_counter() - t0)
    row["tosaint_ms"] = statistics.median(ts) * 1e3
    row["tosaint_ms_min"] = min(ts) * 1e3
    row["tosaint_ms_all"] = [t * 1e3 for t in ts]
    if tr:
        row["reference_ms"] = statistics.median(tr) * 1e3
        row["reference_ms_min"] = min(tr) * 1e3
        row["reference_ms_all"] = [t * 1e3 for t in tr]
        row["ratio"] = row["reference_ms"] / row["tosaint_ms"]
        row["ratio_min"] = row["reference_ms_min"] / row["tosaint_ms_min"]
    if case.macs:
        row["gmacs_tosaint"] = case.macs / (row["tosaint_ms"] / 1e3) / 1e9
        if tr:
            row["gmacs_reference"] = case.macs / (row["reference_ms"] / 1e3) / 1e9
    return row


def profile_case(case, runs=5):
    """Milliseconds per run spent in each operator type (tosaint, prepared plan), through
    ``Plan.run(trace=...)``: the time from one operator's end to the next one's is charged to
    the next.  A traced run does not fuse (a CONV2D's RESCALE is its own step), so the sum is
    compared with the untraced run time."""
    import collections

    import tosaint
    plan = tosaint.prepare(case.graph)
    plan.run(case.inputs)
    t0 = time.perf_counter()
    for _ in range(runs):
        plan.run(case.inputs)
    wall = (time.perf_counter() - t0) / runs
    total = collections.Counter()
    last = [0.0]

    def trace(node, names, arrays):
        now = time.perf_counter()
        total[node.op.name] += now - last[0]
        last[0] = now
    for _ in range(runs):
        last[0] = time.perf_counter()
        plan.run(case.inputs, trace=trace)
    ops = {k: v / runs * 1e3 for k, v in total.most_common()}
    return dict(case=case.name, run_ms=wall * 1e3, op_ms=ops,
                traced_ms=sum(ops.values()))


# ---- subprocess workers -------------------------------------------------------------------
def _sub(args, env=None, timeout=1800):
    e = dict(os.environ)
    e.update(env or {})
    e["PYTHONPATH"] = ROOT + os.pathsep + e.get("PYTHONPATH", "")
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable] + args, cwd=ROOT, env=e, capture_output=True, text=True,
                       timeout=timeout)
    return p, time.perf_counter() - t0


def _worker_memory(name):
    import gc
    import tracemalloc

    import tosaint
    from benchmarks.graphs import CASES
    case = CASES[name]()
    tosaint.run_tosa(case.graph, case.inputs)          # prepare + compile
    gc.collect()

    def status(key):
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
        return None
    rss0 = status("VmRSS")
    reset = False
    try:
        with open("/proc/self/clear_refs", "w") as f:   # resets VmHWM to the current RSS
            f.write("5")
        reset = True
    except OSError:
        pass
    tracemalloc.start()
    tosaint.run_tosa(case.graph, case.inputs)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    hwm = status("VmHWM")
    print(json.dumps(dict(case=name, io_bytes=case.io_bytes,
                          largest_intermediate=case.largest_intermediate, tracemalloc_peak=peak,
                          rss_before=rss0, rss_peak=hwm,
                          rss_growth=(hwm - rss0) if reset else None)))


def memory(names):
    rows = []
    for n in names:
        # a fixed mmap threshold makes glibc return every large block on free, so the RSS
        # after the warm-up run does not already hold this run's peak
        p, _ = _sub(["-m", "benchmarks.run", "--worker-memory", n],
                    {"MALLOC_MMAP_THRESHOLD_": "65536"})
        if p.returncode:
            rows.append(dict(case=n, error=p.stderr.strip().splitlines()[-1:]))
        else:
            rows.append(json.loads(p.stdout.strip().splitlines()[-1]))
    return rows


def _worker_outputs(name, path):
    from benchmarks.graphs import CASES
    case = CASES[name]()
    outs = tosaint_outputs(case)
    np.savez(path, *outs)


def threads_check(names):
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for n in names:
            got = {}
            err = ""
            for threads in ("1", "2"):
                path = os.path.join(d, f"{n}-{threads}.npz")
                p, _ = _sub(["-m", "benchmarks.run", "--worker-outputs", n, path],
                            {"NUMBA_NUM_THREADS": threads})
                if p.returncode:
                    err = (p.stderr.strip().splitlines() or ["?"])[-1]
                    break
                with np.load(path) as z:
                    got[threads] = [z[k] for k in sorted(z.files, key=lambda s: int(s[4:]))]
            if err:
                rows.append(dict(case=n, identical=None, error=err[:200]))
            else:
                diff = compare(got["1"], got["2"])
                rows.append(dict(case=n, identical=not diff, diff=diff))
    return rows


# ---- report ---------------------------------------------------------------------------------
def _fmt(v, spec):
    width = int(spec.split(".")[0].rstrip("df"))
    return f"{'-':>{width}}" if v is None else format(v, spec)


def print_table(rows):
    head = f"{'case':18} {'runs':>4} {'tosaint ms':>11} {'reference ms':>13} " \
           f"{'ref/tosaint':>11} {'(min)':>7} {'GMAC/s':>7} {'ref GMAC/s':>10}  status"
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['case']:18} {_fmt(r.get('repeat'), '4d')} {_fmt(r.get('tosaint_ms'), '11.2f')} "
              f"{_fmt(r.get('reference_ms'), '13.2f')} {_fmt(r.get('ratio'), '11.2f')} "
              f"{_fmt(r.get('ratio_min'), '7.2f')} "
              f"{_fmt(r.get('gmacs_tosaint'), '7.2f')} {_fmt(r.get('gmacs_reference'), '10.2f')}"
              f"  {r.get('status', '')}"
              + (f" (missing {', '.join(r['missing'])})" if r.get("missing") else ""))


def machine():
    return dict(python=platform.python_version(), cpus=os.cpu_count(),
                loadavg=os.getloadavg(), numba_threads=os.environ.get("NUMBA_NUM_THREADS"),
                platform=platform.platform())


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n")[0])
    ap.add_argument("--json", metavar="FILE", help="write every measurement as JSON")
    ap.add_argument("--repeat", type=int, default=5, help="timed runs per case (default 5)")
    ap.add_argument("--only", metavar="CASE[,CASE]", help="only these cases")
    ap.add_argument("--threads-check", action="store_true",
                    help="also run every case with NUMBA_NUM_THREADS=1 and 2 and compare")
    ap.add_argument("--no-oneshot", action="store_true", help="skip the one-shot rows")
    ap.add_argument("--suite", metavar="DIR", default=str(DEFAULT_SUITE),
                    help="conformance suite of the whole-suite row (default .cts/seed42, "
                         "built by the tests or `python -m tests.cts .cts/seed42`)")
    ap.add_argument("--suite-limit", type=int, metavar="N", help="only its first N tests")
    ap.add_argument("--no-suite", action="store_true", help="skip the whole-suite row")
    ap.add_argument("--no-cold", action="store_true", help="skip the cold-start measurement")
    ap.add_argument("--no-load", action="store_true", help="skip the load measurement")
    ap.add_argument("--no-memory", action="store_true", help="skip the peak-memory measurement")
    ap.add_argument("--profile", action="store_true",
                    help="also show where tosaint's time goes, per operator type, and the "
                         "hottest functions of the conformer's one-shot call")
    ap.add_argument("--list", action="store_true", help="list the cases")
    ap.add_argument("--worker-memory", help=argparse.SUPPRESS)
    ap.add_argument("--worker-outputs", nargs=2, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.worker_memory:
        _worker_memory(a.worker_memory)
        return 0
    if a.worker_outputs:
        _worker_outputs(*a.worker_outputs)
        return 0
    from .graphs import CASES
    if a.list:
        for n, f in CASES.items():
            print(f"{n:18} {f().note}")
        for n, _, _, note in export_cases():
            if n not in CASES:
                print(f"{n:18} {note} (one-shot only)")
        return 0
    names, oneshot_names = list(CASES), ONESHOT_CASES + [n for n, *_ in export_cases()]
    if a.only:
        wanted = [n.strip() for n in a.only.split(",")]
        unknown = [n for n in wanted if n not in CASES and n not in oneshot_names]
        if unknown:
            ap.error(f"unknown case(s) {unknown}; cases: {', '.join(CASES)}; one-shot only: "
                     f"{', '.join(n for n in oneshot_names if n not in CASES)}")
        names = [n for n in wanted if n in CASES]
        oneshot_names = [n for n in wanted if n in oneshot_names]
    if a.repeat < 1:
        ap.error("--repeat must be >= 1")
    ref = reference_module()
    report = dict(machine=machine(), repeat=a.repeat,
                  reference_model=getattr(ref, "__version__", None) if ref else None)
    if ref is None:
        print("tosa_reference_model is not installed: timing tosaint only")
    rows = []
    for n in names:
        try:
            case = CASES[n]()
        except OSError as e:                      # e.g. tests/data not checked out
            rows.append(dict(case=n, status=f"unavailable: {e}"))
            continue
        print(f"[{n}] {case.note}", file=sys.stderr, flush=True)
        rows.append(bench_case(case, a.repeat, ref))
    report["cases"] = rows
    print()
    print_table(rows)
    failed = any(r.get("status", "").startswith("MISMATCH") for r in rows)
    if a.profile:
        report["profile"] = prof = []
        print("\ntosaint time per operator type (ms per run, mean of 5 traced runs, unfused; "
              "untraced run time first):")
        for n in names:
            if not any(r["case"] == n and r.get("status", "").startswith("ok") for r in rows):
                continue
            p = profile_case(CASES[n]())
            prof.append(p)
            top = ", ".join(f"{k} {v:.2f}" for k, v in list(p["op_ms"].items())[:6])
            print(f"  {n:18} {p['run_ms']:8.2f} ms (traced {p['traced_ms']:.2f}): {top}")
    if not a.no_oneshot and oneshot_names:
        failed |= oneshot_section(report, oneshot_names, a.repeat, ref, a.profile)
    if not a.no_suite and ref is not None:
        failed |= suite_section(report, a.suite, a.suite_limit, ref)
    if not a.no_cold and ref is not None:
        cold_section(report)
    if not a.no_load:
        load_section(report)
    mem_names = [n for n in names if n in MEMORY_CASES]
    if mem_names and not a.no_memory:
        report["memory"] = mem = memory(mem_names)
        print("\npeak memory of one warm run (subprocess):")
        for m in mem:
            if "error" in m:
                print(f"  {m['case']:18} error {m['error']}")
                continue
            g = m.get("rss_growth")
            print(f"  {m['case']:18} inputs+weights+outputs {m['io_bytes'] / 2**20:6.2f} MiB "
                  f"(+ largest intermediate {m['largest_intermediate'] / 2**20:6.2f} MiB): "
                  f"tracemalloc peak {m['tracemalloc_peak'] / 2**20:6.2f} MiB, RSS growth "
                  + ("-" if g is None else f"{g / 2**20:6.2f} MiB"))
    if a.threads_check:
        report["threads_check"] = tc = threads_check(names)
        print("\nNUMBA_NUM_THREADS=1 vs 2:")
        for t in tc:
            print(f"  {t['case']:18} "
                  + ("identical" if t["identical"] else
                     f"error {t.get('error')}" if t["identical"] is None else
                     f"DIFFERENT {t['diff']}"))
        failed |= any(t["identical"] is False for t in tc)
    report["machine"]["loadavg_end"] = os.getloadavg()
    print(f"\nmachine: {report['machine']['cpus']} CPUs, load average at start "
          f"{report['machine']['loadavg'][0]:.1f}, at end {os.getloadavg()[0]:.1f}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(report, f, indent=1, default=float)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
