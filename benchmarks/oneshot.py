"""One-shot measurements: a graph given as bytes, loaded, prepared and run once per call.

This is how golden generation, conformance runs and ExecuTorch-style test harnesses call an
interpreter: ``run_tosa(tosaint.load(data), inputs)`` against the reference model's
``tosa_reference_model.run(data, inputs)``, the same bytes and inputs in the same process,
alternating, medians.  Also here:

* the whole-suite row: every binding-passable positive test of a generated conformance suite
  (no int48/int4 graph input or output), one call each on both sides, total times;
* the cold-start row: a fresh process imports tosaint, loads the ExecuTorch conformer and runs
  it once, with an empty Numba cache (NUMBA_CACHE_DIR in a new temporary folder) and with the
  cache it left, against the reference model's command-line binary on the same graph and input;
* ``phases``: where one one-shot call's time goes (load, prepare, run).
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from .common import compare, quiet_stderr

ROOT = Path(__file__).resolve().parent.parent
#: real ExecuTorch exports: the conformer the tests keep, and the zoo exports when present
EXPORT_DIRS = (ROOT / "tests" / "data" / "executorch", ROOT / "benchmarks" / "data" / "executorch")
#: the one-shot rows built with GraphBuilder (benchmarks.graphs)
ONESHOT_CASES = ["tiny_linear", "conv2d_a16w8", "conv2d_a8w8", "matmul_a16", "depthwise_a16w8"]
#: targets (ratio reference / tosaint) of the one-shot rows; a "cold" target is tosaint / CLI
TARGETS = {"et_conformer": 5.0, "tiny_linear": 0.5, "conv2d_a16w8": 20.0, "conv2d_a8w8": 20.0,
           "matmul_a16": 20.0, "depthwise_a16w8": 40.0, "export": 3.0, "suite": 2.0,
           "cold_empty": 10.0, "cold_warm": 3.0}


def _binding_passable(graph):
    from tosaint import DType
    io = [graph.main.tensors[n].dtype for n in graph.inputs + graph.outputs]
    return not any(t in (DType.INT48, DType.INT4) for t in io)


def _reference_outputs(ref, data, inputs):
    """The reference model's outputs; raises when its status is not TOSA_VALID."""
    with quiet_stderr():
        outs, status = ref.run(data, inputs)
    if int(status) != 0:
        raise RuntimeError(f"reference model status {status}")
    return list(outs)


def _tosaint_once(data, inputs):
    import tosaint
    g = tosaint.load(data)
    res = tosaint.run_tosa(g, inputs)
    return [res[n] for n in g.outputs]


# ---- the cases -------------------------------------------------------------------------------
def export_cases():
    """(name, bytes, inputs in graph-input order, note) of every ExecuTorch export folder
    (model.tosa + meta.json naming the input files)."""
    found = []
    for base in EXPORT_DIRS:
        if not base.is_dir():
            continue
        for d in sorted(p for p in base.iterdir() if (p / "model.tosa").exists()):
            if base == EXPORT_DIRS[0] and d.name != "conformer":
                continue                  # the single-op test graphs are not benchmarks
            meta = json.loads((d / "meta.json").read_text())
            inputs = [np.load(d / i["file"]) for i in meta["inputs"]]
            data = (d / "model.tosa").read_bytes()
            name = "et_conformer" if base == EXPORT_DIRS[0] else f"et_{d.name}"
            found.append((name, data, inputs,
                          f"ExecuTorch export {d.relative_to(ROOT)} ({len(data) / 1024:.0f} KB)"))
    return found


def graph_cases(names=ONESHOT_CASES):
    from .graphs import CASES
    out = []
    for n in names:
        c = CASES[n]()
        out.append((n, c.graph.to_bytes(), c.inputs, c.note))
    return out


# ---- one-shot rows ---------------------------------------------------------------------------
def bench_oneshot(name, data, inputs, ref, repeat=5, budget_s=3.0):
    """One row: medians of ``repeat`` (more for short cases) alternating one-shot calls."""
    row = dict(case=name, kind="one-shot", bytes=len(data))
    try:
        t0 = time.perf_counter()
        mine = _tosaint_once(data, inputs)              # compiles what the graph needs
        row["tosaint_first_s"] = time.perf_counter() - t0
    except Exception as e:
        row["status"] = f"tosaint error: {type(e).__name__}: {e}"[:300]
        return row
    if ref is None:
        row["status"] = "ok (no reference model)"
        ref_run = None
    else:
        try:
            theirs = _reference_outputs(ref, data, inputs)
        except RuntimeError as e:
            row["status"] = str(e)
            return row
        diff = compare(mine, theirs)
        row["bit_equal"] = not diff
        row["status"] = "ok" if not diff else f"MISMATCH {diff}"

        def ref_run():
            with quiet_stderr():
                ref.run(data, inputs)
    t0 = time.perf_counter()
    _tosaint_once(data, inputs)
    if ref_run:
        ref_run()
    once = time.perf_counter() - t0
    n = max(repeat, min(200, int(budget_s / max(once, 1e-6))))
    ts, tr = [], []
    for i in range(n):
        for side in ((0, 1) if i % 2 == 0 else (1, 0)):
            if side == 0:
                t0 = time.perf_counter()
                _tosaint_once(data, inputs)
                ts.append(time.perf_counter() - t0)
            elif ref_run:
                t0 = time.perf_counter()
                ref_run()
                tr.append(time.perf_counter() - t0)
    row.update(repeat=n, tosaint_ms=statistics.median(ts) * 1e3)
    if tr:
        row["reference_ms"] = statistics.median(tr) * 1e3
        row["ratio"] = row["reference_ms"] / row["tosaint_ms"]
    return row


def phases(data, inputs, runs=20):
    """Median milliseconds of the phases of a one-shot call in a warm process."""
    import tosaint
    tosaint.run_tosa(tosaint.load(data), inputs)
    t = {"load": [], "prepare": [], "run": []}
    for _ in range(runs):
        t0 = time.perf_counter()
        g = tosaint.load(data)
        t1 = time.perf_counter()
        plan = tosaint.prepare(g)
        t2 = time.perf_counter()
        plan.run(inputs)
        t3 = time.perf_counter()
        t["load"].append(t1 - t0)
        t["prepare"].append(t2 - t1)
        t["run"].append(t3 - t2)
    return {k: statistics.median(v) * 1e3 for k, v in t.items()}


def hot_functions(data, inputs, calls=20, top=10):
    """The functions where one-shot calls spend their own time (cProfile, tottime), as
    (ms per call, calls per call, 'file:line(function)') rows."""
    import cProfile
    import pstats
    _tosaint_once(data, inputs)
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(calls):
        _tosaint_once(data, inputs)
    prof.disable()
    stats = pstats.Stats(prof).stats
    rows = sorted(((tt / calls * 1e3, nc / calls, f"{Path(f).name}:{line}({fn})")
                   for (f, line, fn), (_, nc, tt, _, _) in stats.items()), reverse=True)
    return rows[:top]


# ---- the whole conformance suite ---------------------------------------------------------------
def _shown(path):
    """``path`` relative to the working directory when it lies below it (results files then
    say where the suite is without naming the machine's folders)."""
    p = Path(path).resolve()
    try:
        return str(p.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def bench_suite(root, ref, limit=None):
    """Every binding-passable positive test below ``root``, one call each on both sides (the
    order alternates from test to test); total seconds, and every output compared."""
    import tosaint
    from tosaint.conformance import find_tests

    tests = find_tests(root)[:limit]
    row = dict(case="conformance suite", kind="suite", root=_shown(root), tests=len(tests))
    cases = []
    for t in tests:                                     # untimed: which tests the binding takes
        desc = json.loads(Path(t, "desc.json").read_text())
        if desc.get("expected_failure"):
            continue
        data = Path(t, desc["tosa_file"]).read_bytes()
        if not _binding_passable(tosaint.load(data)):
            continue
        cases.append((t, data, [np.load(Path(t, f)) for f in desc["ifm_file"]]))
    row["passable"] = len(cases)
    total_t = total_r = 0.0
    bad = []
    for i, (t, data, inputs) in enumerate(cases):
        got = {}
        for side in (("tosaint", "reference") if i % 2 == 0 else ("reference", "tosaint")):
            t0 = time.perf_counter()
            try:
                if side == "tosaint":
                    got[side] = _tosaint_once(data, inputs)
                else:
                    with quiet_stderr():
                        outs, status = ref.run(data, inputs)
                    got[side] = list(outs) if int(status) == 0 else f"status {status}"
            except Exception as e:
                got[side] = f"{side}: {type(e).__name__}: {e}"
            dt = time.perf_counter() - t0
            if side == "tosaint":
                total_t += dt
            else:
                total_r += dt
        mine, theirs = got["tosaint"], got["reference"]
        diff = mine if isinstance(mine, str) else theirs if isinstance(theirs, str) \
            else compare(mine, theirs)
        if diff:
            bad.append(f"{Path(t).name}: {diff}"[:200])
    row.update(tosaint_s=total_t, reference_s=total_r, ratio=total_r / max(total_t, 1e-9),
               mismatches=len(bad), first_mismatches=bad[:10],
               status="ok" if not bad else f"MISMATCH in {len(bad)} tests")
    return row


# ---- cold start --------------------------------------------------------------------------------
_COLD = """
import json, sys, time
t0 = time.perf_counter()
import numpy as np
import tosaint
t1 = time.perf_counter()
g = tosaint.load(sys.argv[1])
t2 = time.perf_counter()
plan = tosaint.prepare(g)
t3 = time.perf_counter()
res = plan.run([np.load(f) for f in sys.argv[3:]])
t4 = time.perf_counter()
np.savez(sys.argv[2], *[res[n] for n in g.outputs])
print(json.dumps(dict(import_s=t1 - t0, load_s=t2 - t1, prepare_s=t3 - t2, run_s=t4 - t3)))
"""


def _wall(cmd, env=None, cwd=None):
    t0 = time.perf_counter()
    p = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=1800)
    return p, time.perf_counter() - t0


def cold_start(model_dir=EXPORT_DIRS[0] / "conformer", runs=7):
    """Process wall seconds (medians of ``runs``): tosaint with an empty and a warm Numba
    cache, and the reference model's CLI, on the same graph and input."""
    from tosaint.oracle import executable
    model_dir = Path(model_dir)
    meta = json.loads((model_dir / "meta.json").read_text())
    tosa = str(model_dir / "model.tosa")
    ins = [str(model_dir / i["file"]) for i in meta["inputs"]]
    # Python's own bytecode cache as an installed package has it (pip compiles it; a checkout
    # writes it on its first import): compiling tosaint from source in every process would
    # measure the interpreter's compiler, not tosaint
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPATH"] = f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"
    expected = [np.load(model_dir / o["file"]) for o in meta["outputs"]]
    res = dict(model=str(model_dir.relative_to(ROOT)), runs=runs)
    walls = {"empty": [], "warm": [], "cli": []}
    phases = {"empty": [], "warm": []}
    with tempfile.TemporaryDirectory(prefix="tosaint_cold_") as tmp:
        tmp = Path(tmp)
        desc = dict(tosa_file="model.tosa", ifm_name=[i["name"] for i in meta["inputs"]],
                    ifm_file=[Path(f).name for f in ins],
                    ofm_name=[o["name"] for o in meta["outputs"]],
                    ofm_file=[f"out{i}.npy" for i in range(len(meta["outputs"]))],
                    expected_failure=False)
        (tmp / "case").mkdir()
        for f in [tosa] + ins:
            (tmp / "case" / Path(f).name).write_bytes(Path(f).read_bytes())
        (tmp / "case" / "desc.json").write_text(json.dumps(desc))
        (tmp / "out").mkdir()
        cli = [str(executable()), "--test_desc", str(tmp / "case" / "desc.json"),
               "--flatbuffer_dir", str(tmp / "case"), "--output_dir", str(tmp / "out")]
        # one run not counted: writes the bytecode cache (with a Numba cache of its own)
        _wall([sys.executable, "-c", _COLD, tosa, str(tmp / "prime.npz"), *ins],
              env={**env, "NUMBA_CACHE_DIR": str(tmp / "numba-cache-prime")}, cwd=ROOT)
        for i in range(runs):
            cache = tmp / f"numba-cache-{i}"
            e = {**env, "NUMBA_CACHE_DIR": str(cache)}
            for label in ("empty", "cli", "warm"):
                npz = tmp / "tosaint.npz"
                if label == "cli":
                    p, wall = _wall(cli, env={**os.environ, "PATH": "/nonexistent"})
                else:
                    p, wall = _wall([sys.executable, "-c", _COLD, tosa, str(npz), *ins], env=e,
                                    cwd=ROOT)
                if p.returncode:
                    res["error"] = f"{label}: exit {p.returncode}: " + " | ".join(
                        (p.stderr or p.stdout).strip().splitlines()[-2:])
                    return res
                if label == "cli":
                    got = [np.load(tmp / "out" / f) for f in desc["ofm_file"]]
                else:
                    with np.load(npz) as z:
                        got = [z[f"arr_{k}"] for k in range(len(z.files))]
                diff = compare(got, expected)
                if diff:
                    res["error"] = f"{label}: output differs from {model_dir.name}'s: {diff}"
                    return res
                walls[label].append(wall)
                if label != "cli":
                    phases[label].append(json.loads(p.stdout.strip().splitlines()[-1]))
    for k, v in walls.items():
        res[f"{k}_s"] = statistics.median(v)
        res[f"{k}_all_s"] = v
    for k, v in phases.items():
        res[f"{k}_phases_s"] = {ph: statistics.median(d[ph] for d in v) for ph in v[0]}
    res["ratio_empty"] = res["empty_s"] / res["cli_s"]
    res["ratio_warm"] = res["warm_s"] / res["cli_s"]
    return res


# ---- the report sections of ``python -m benchmarks`` ----------------------------------------
def _target(name):
    return TARGETS.get(name, TARGETS["export"] if name.startswith("et_") else None)


def oneshot_section(report, names, repeat, ref, profile=False):
    """The one-shot table and the phases of the ExecuTorch conformer; True on a mismatch.

    The rows measure a process that has run graphs before (a test harness, a golden batch):
    tosaint's ``impl="auto"`` is promoted to the Numba kernels first, as such a process soon
    is; the cold-start row measures a fresh process, where it is not."""
    from tosaint import kernels
    kernels.promote()
    cases = [c for c in export_cases() if c[0] in names]
    cases += graph_cases([n for n in names if n in ONESHOT_CASES])
    rows = []
    for name, data, inputs, note in cases:
        print(f"[one-shot {name}] {note}", file=sys.stderr, flush=True)
        row = bench_oneshot(name, data, inputs, ref, repeat)
        row.update(note=note, target=_target(name))
        rows.append(row)
    report["oneshot"] = rows
    print("\none-shot: run_tosa(tosaint.load(data), inputs) vs tosa_reference_model.run(data, "
          "inputs), alternating, medians")
    head = f"{'case':22} {'runs':>4} {'tosaint ms':>11} {'reference ms':>13} " \
           f"{'ref/tosaint':>11} {'target':>7}  status"
    print(head)
    print("-" * len(head))
    for r in rows:
        ratio, target = r.get("ratio"), r.get("target")
        print(f"{r['case']:22} {r.get('repeat', 0):4d} {r.get('tosaint_ms', float('nan')):11.2f} "
              f"{r.get('reference_ms', float('nan')):13.2f} {ratio or float('nan'):11.2f} "
              f"{target or float('nan'):7.1f}  {r.get('status', '')}"
              + ("" if ratio is None or target is None else
                 ", target met" if ratio >= target else ", below target"))
    conformer = [c for c in cases if c[0] == "et_conformer"]
    if conformer:
        report["oneshot_phases"] = ph = phases(*conformer[0][1:3])
        print("  et_conformer one-shot phases (ms, medians, warm process): "
              + ", ".join(f"{k} {v:.2f}" for k, v in ph.items()))
        if profile:
            report["oneshot_hot"] = hot = hot_functions(*conformer[0][1:3])
            print("  et_conformer one-shot, own time per call (cProfile, which slows Python "
                  "code down):")
            for ms, n, where in hot:
                print(f"    {ms:7.3f} ms {n:8.0f} calls  {where}")
    return any(r.get("status", "").startswith(("MISMATCH", "tosaint error", "reference"))
               for r in rows)


def suite_section(report, root, limit, ref):
    """The whole-suite row; True on a mismatch."""
    if not Path(root).is_dir():
        print(f"\nwhole suite: {root} is not built (python -m tests.cts "
              f"{Path(root).parent}); skipped")
        return False
    print(f"[whole suite] {root}", file=sys.stderr, flush=True)
    report["suite"] = r = bench_suite(root, ref, limit)
    r["target"] = TARGETS["suite"]
    print(f"\nwhole suite, one call each ({r['passable']} binding-passable positive tests of "
          f"{r['tests']} in {_shown(root)}): tosaint {r['tosaint_s']:.2f} s, reference "
          f"{r['reference_s']:.2f} s, ref/tosaint {r['ratio']:.2f} (target "
          f"{r['target']:.0f}): {r['status']}")
    for m in r["first_mismatches"]:
        print(f"  {m}")
    return bool(r["mismatches"])


def cold_section(report):
    print("[cold start]", file=sys.stderr, flush=True)
    report["cold_start"] = c = cold_start()
    print(f"\ncold start: a fresh process imports tosaint, loads {c['model']}/model.tosa and "
          f"runs it once, against the reference model's CLI (process wall time, medians of "
          f"{c['runs']})")
    if "error" in c:
        print(f"  error {c['error']}")
        return
    for k, label, target in (("empty", "empty Numba cache", TARGETS["cold_empty"]),
                             ("warm", "warm Numba cache", TARGETS["cold_warm"])):
        ph = ", ".join(f"{p[:-2]} {v:.2f}" for p, v in c[f"{k}_phases_s"].items())
        print(f"  tosaint, {label:17} {c[k + '_s']:6.2f} s = {c['ratio_' + k]:5.1f}x the CLI "
              f"(target <= {target:.0f}x; in process: {ph} s)")
    print(f"  reference model CLI            {c['cli_s']:6.2f} s")


def load_section(report):
    """The load row of benchmarks/load.py, when that module is present."""
    try:
        from . import load
    except ImportError:
        return
    print("[load]", file=sys.stderr, flush=True)
    report["load"] = load.row()
    print("\nload: " + load.describe(report["load"]) + " (targets: >= 200 MB/s, peak RSS "
          "< 1.5x the file)")
