"""The load benchmark: how fast ``tosaint.load`` reads a large graph, and what memory it takes.

    python -m benchmarks.load [--mb 50] [--repeat 5] [--json FILE]

A graph with at least ``--mb`` MB of constant weights (int8 CONV2D weights, int32 biases, int48
biases and int16 TABLEs, built with GraphBuilder) is written to a temporary file.  Measured:

* load time from the path: median of ``--repeat`` loads in this process, as MB/s of file (wall
  time, and CPU time of the process, which a busy machine disturbs less);
* peak RSS growth of one load in a fresh subprocess (VmHWM after the load minus VmRSS after
  ``import tosaint``), against the file size: constants are views of the file's bytes, so the
  growth should be about one file size;
* the ExecuTorch conformer of tests/data: load time from bytes (median and fastest of
  ``10 * --repeat`` loads after 5 warm ones), next to the reference model's
  own parse of the same bytes (``tosa_reference_model.run`` with inputs of the wrong count,
  which parses the flatbuffer and stops at the input check; an upper bound of its parse).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFORMER = os.path.join(ROOT, "tests", "data", "executorch", "conformer", "model.tosa")


def build_large_graph(megabytes=50, seed=0):
    """A valid int8 CONV2D chain whose constants take at least ``megabytes`` MB."""
    from tosaint.builder import GraphBuilder
    from tosaint.schema.definition import DType
    rng = np.random.default_rng(seed)
    c = 1024                                  # 1x1 convolutions of 1024 -> 1024 channels
    b = GraphBuilder()
    x = b.input((1, 4, 4, c), DType.INT8, name="x")
    total = 0
    i = 0
    while total < megabytes * 1e6:
        w = b.const(rng.integers(-127, 128, (c, 1, 1, c), dtype=np.int8), DType.INT8,
                    name=f"w{i}")
        bias = b.const(rng.integers(-1000, 1000, c, dtype=np.int32), DType.INT32,
                       name=f"bias{i}")
        y = b.conv2d(x, w, bias)
        x = b.rescale(y, 1 << 20, 38, DType.INT8)
        total += c * c + 4 * c
        i += 1
    # the decoded dtypes too: int48 data and an int16 table
    b.const(rng.integers(-(1 << 40), 1 << 40, 4096), DType.INT48, name="int48_data")
    x16 = b.rescale(x, 1 << 30, 30, DType.INT16)
    b.output(b.table(x16, rng.integers(-32768, 32768, 513)))
    return b.build()


def _rss_worker(path):
    """Runs in a fresh process: RSS growth of one load (kB)."""
    def status(key):
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
        return 0
    import tosaint
    base = status("VmRSS")
    try:                                     # reset the high-water mark (Linux >= 4.0)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass
    t0 = time.perf_counter()
    g = tosaint.load(path)
    seconds = time.perf_counter() - t0
    print(json.dumps({"rss_growth_kb": status("VmHWM") - base, "seconds": seconds,
                      "const_bytes": g.const_bytes()}))


def _median_load(src, repeat, fastest=False):
    """Median wall and CPU seconds of ``tosaint.load(src)`` (CPU time: the machine is shared),
    and with ``fastest`` the least wall time too."""
    import tosaint
    wall, cpu = [], []
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        tosaint.load(src)
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    if fastest:
        return statistics.median(wall), statistics.median(cpu), min(wall)
    return statistics.median(wall), statistics.median(cpu)


def _reference_parse(data, repeat):
    """Median seconds of the reference model parsing ``data`` (None without the binding)."""
    try:
        import tosa_reference_model as ref
    except ImportError:
        return None
    from .common import quiet_stderr
    times = []
    with quiet_stderr():
        for _ in range(repeat):
            t0 = time.perf_counter()
            try:
                ref.run(data, [])              # parsed, then refused: no input given
            except ValueError:
                pass
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def row(megabytes=50, repeat=5):
    """The load row: MB/s and peak RSS growth on a large graph, and the conformer's load."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "large.tosa")
        build_large_graph(megabytes).save(path)
        size = os.path.getsize(path)
        seconds, cpu = _median_load(path, repeat)
        p = subprocess.run([sys.executable, "-m", "benchmarks.load", "--rss-worker", path],
                           capture_output=True, text=True, cwd=ROOT, timeout=600)
        if p.returncode:
            raise RuntimeError(f"RSS worker failed:\n{p.stderr[-2000:]}")
        rss = json.loads(p.stdout.strip().splitlines()[-1])
    out = {"file_mb": round(size / 1e6, 1), "load_ms": round(seconds * 1e3, 1),
           "mb_per_s": round(size / 1e6 / seconds, 0),
           "cpu_ms": round(cpu * 1e3, 1), "cpu_mb_per_s": round(size / 1e6 / max(cpu, 1e-6), 0),
           "rss_growth_mb": round(rss["rss_growth_kb"] * 1024 / 1e6, 1),
           "rss_over_file": round(rss["rss_growth_kb"] * 1024 / size, 2),
           "loadavg": round(os.getloadavg()[0], 1)}
    if os.path.exists(CONFORMER):
        with open(CONFORMER, "rb") as f:
            data = f.read()
        out["conformer_kb"] = round(len(data) / 1e3)
        _median_load(data, 5)                   # (warm: layouts compiled, caches filled)
        wall, cpu, least = _median_load(data, 10 * repeat, fastest=True)
        out["conformer_load_ms"] = round(wall * 1e3, 2)
        out["conformer_cpu_ms"] = round(cpu * 1e3, 2)
        out["conformer_load_min_ms"] = round(least * 1e3, 2)
        ref = _reference_parse(data, 4 * repeat)
        if ref is not None:
            out["conformer_reference_parse_ms"] = round(ref * 1e3, 2)
    return out


def describe(r):
    text = (f"{r['file_mb']} MB graph loads in {r['load_ms']} ms ({r['mb_per_s']:.0f} MB/s; "
            f"CPU time {r['cpu_ms']} ms, {r['cpu_mb_per_s']:.0f} MB/s), peak RSS growth {r['rss_growth_mb']} MB = {r['rss_over_file']}x the file")
    if "conformer_load_ms" in r:
        text += f"; ExecuTorch conformer ({r['conformer_kb']} KB) loads in " \
                f"{r['conformer_load_ms']} ms (CPU {r['conformer_cpu_ms']} ms"
        text += f", fastest {r['conformer_load_min_ms']} ms)" if "conformer_load_min_ms" in r \
            else ")"
        if "conformer_reference_parse_ms" in r:
            text += f" (reference model parse and input check: " \
                    f"{r['conformer_reference_parse_ms']} ms)"
    return text + f" [load average {r['loadavg']}]"


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m benchmarks.load", description=__doc__.split(
        "\n")[0])
    ap.add_argument("--mb", type=float, default=50, help="MB of constant weights (default 50)")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--json", help="also write the row to this file")
    ap.add_argument("--rss-worker", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.rss_worker:
        _rss_worker(a.rss_worker)
        return 0
    r = row(a.mb, a.repeat)
    print(describe(r))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(r, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
