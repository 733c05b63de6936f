"""The fuzz target: seeded mutants of valid graphs, each loaded, prepared and run on zero inputs.

Mutants (bit flips, overwrites, 32-bit words set to huge values, truncation, splices from another
file, deletions, one decoded field set to a random value and re-encoded) of the bundled example,
the ExecuTorch graphs of tests/data and builder graphs.  Every mutant must end in a result or a
TosaError: no other exception, no hang, no crash, bounded memory.  Mutant ``i`` of a seed is the
same bytes on every machine, so a failure is reproduced from its number alone.

The mutants run in a worker process under an address-space limit; the parent restarts the
worker past a mutant that hangs (no answer within ``MUTANT_SECONDS``) or kills it, and counts
that mutant as a failure.  ``tests/test_fuzz.py`` runs a few hundred in CI; the long run:

    python -m tests.fuzz_target --mutants 10000 --seed 1 --save DIR

writes each failing mutant (``.tosa``) and its traceback (``.txt``) to DIR.
"""
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: mutants run by the test, and their seed (the environment overrides, for long runs)
MUTANTS = int(os.environ.get("TOSAINT_FUZZ_MUTANTS", 300))
SEED = int(os.environ.get("TOSAINT_FUZZ_SEED", 0))


#: memory budget its plans are prepared with
TARGET_MEMORY_LIMIT = 3 << 30
TARGET_MAX_MEMORY = 256 << 20
#: seconds a mutant may take (a first Numba compilation of a new signature included)
MUTANT_SECONDS = 120


def fuzz_target(count, seed, save=None, log=None):
    """Run mutants ``0..count-1`` of ``seed``; returns the outcome counts and the failures."""
    import selectors
    import time
    outcomes, failures = {}, []
    start = 0
    t0 = time.time()
    while start < count:
        p = subprocess.Popen([sys.executable, "-m", "tests.fuzz_target", "worker", str(seed),
                              str(start), str(count)], cwd=ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        sel = selectors.DefaultSelector()
        sel.register(p.stdout, selectors.EVENT_READ)
        current, dead = None, None
        while True:
            if not sel.select(timeout=MUTANT_SECONDS):
                p.kill()
                dead = f"hang: no answer within {MUTANT_SECONDS} s"
                break
            line = p.stdout.readline()
            if not line:
                p.wait()
                dead = f"crash: worker exit {p.returncode}"
                break
            msg = json.loads(line)
            if "begin" in msg:
                current = msg["begin"]
                continue
            outcomes[msg["outcome"]] = outcomes.get(msg["outcome"], 0) + 1
            if msg["outcome"] == "failure":
                failures.append(msg)
            if log and (msg["i"] + 1) % 500 == 0:
                log(f"{msg['i'] + 1} mutants, {time.time() - t0:.0f} s: {outcomes}")
            if msg["i"] == count - 1:
                p.wait()
                break
        sel.close()
        stderr = p.stderr.read()
        p.stdout.close()
        p.stderr.close()
        if dead is None:
            break
        if current is None:     # died before its first mutant: the harness itself is broken
            raise RuntimeError(f"fuzz worker failed to start ({dead})\n{stderr[-4000:]}")
        outcomes["failure"] = outcomes.get("failure", 0) + 1
        failures.append({"i": current, "outcome": "failure", "error": dead,
                         "traceback": stderr[-4000:], "kind": _mutant(current, seed)[1]})
        start = current + 1
    if save:
        os.makedirs(save, exist_ok=True)
        for f in failures:
            data, kind = _mutant(f["i"], seed)
            stem = os.path.join(save, f"seed{seed}_mutant{f['i']}_{kind}")
            with open(stem + ".tosa", "wb") as fh:
                fh.write(data)
            with open(stem + ".txt", "w") as fh:
                fh.write(f"{f['error']}\n\n{f.get('traceback', '')}")
    return {"mutants": sum(outcomes.values()), "seed": seed, "outcomes": outcomes,
            "failures": failures, "seconds": round(time.time() - t0, 1)}


_TARGET_FILES = []


def _target_files():
    """The valid graphs mutated: builder graphs, the bundled example, the ExecuTorch graphs."""
    if not _TARGET_FILES:
        here = os.path.dirname(os.path.abspath(__file__))
        paths = [os.path.join(here, "..", "tosaint", "examples", "a16w8_conv.tosa")]
        et = os.path.join(here, "data", "executorch")
        paths += [os.path.join(et, d, "model.tosa") for d in sorted(os.listdir(et))]
        from tests.test_fuzz import _base_files
        files = _base_files()[:2]
        for p in paths:
            with open(p, "rb") as f:
                files.append(f.read())
        _TARGET_FILES.extend(files)
    return _TARGET_FILES


KINDS = ("bitflip", "overwrite", "huge_word", "truncate", "splice", "delete", "field")


def _mutant(i, seed):
    """Mutant ``i`` of ``seed`` (the same bytes on every machine) and its kind."""
    import numpy as np
    rng = np.random.default_rng([seed, i])
    files = _target_files()
    data = files[int(rng.integers(len(files)))]
    kind = KINDS[int(rng.integers(len(KINDS)))]
    n = len(data)
    pos = int(rng.integers(n))
    if kind == "bitflip":
        b = bytearray(data)
        for f in rng.integers(8 * n, size=int(rng.integers(1, 9))):
            b[int(f) // 8] ^= 1 << (int(f) % 8)
        return bytes(b), kind
    if kind == "overwrite":
        return data[:pos] + rng.bytes(int(rng.integers(1, 17))) + data[pos + 16:], kind
    if kind == "huge_word":
        value = [0xFFFFFFFF, 0x7FFFFFFF, 0x80000000, 0x40000000, 1 << 20, 0xFFFF, 0, 1, 4, 8,
                 -1 & 0xFFFFFFFF][int(rng.integers(11))]
        pos -= pos % 4
        return data[:pos] + value.to_bytes(4, "little") + data[pos + 4:], kind
    if kind == "truncate":
        return data[:pos], kind
    if kind == "splice":
        other = files[int(rng.integers(len(files)))]
        a = int(rng.integers(len(other)))
        chunk = other[a:a + int(rng.integers(1, 257))]
        cut = int(rng.integers(0, 2)) * len(chunk)      # insert, or overwrite as much
        return data[:pos] + chunk + data[pos + cut:], kind
    if kind == "delete":
        return data[:pos] + data[pos + int(rng.integers(1, 65)):], kind
    return _field_mutant(data, rng), kind


_DECODED = {}


def _field_mutant(data, rng):
    """Decode, set one field to a random value of its type (or drop/duplicate an element of a
    vector of tables), encode again: a well-formed file that reaches prepare and run."""
    import copy

    import numpy as np

    from tosaint.schema import reader
    from tosaint.schema.definition import ENUMS, FILE_IDENTIFIER, TABLES
    from tosaint.schema.writer import _Writer
    from tests.test_fuzz import _leaves, _to_bytes
    if data not in _DECODED:
        root = reader.read_root(data)
        _to_bytes(root)
        _DECODED[data] = root
    root = copy.deepcopy(_DECODED[data])
    leaves = list(_leaves(root, "TosaGraph"))
    path, ftype = leaves[int(rng.integers(len(leaves)))]
    parent = root
    for k in path[:-1]:
        parent = parent[k]
    last = path[-1]
    small = int(rng.integers(-3, 9))
    if ftype == "tables":
        vec = list(parent.get(last) or [])
        if vec:
            j = int(rng.integers(len(vec)))
            if rng.integers(2):
                del vec[j]
            else:
                vec.insert(j, vec[j])
        parent[last] = vec
    elif ftype == "table":
        parent[last] = None
    elif ftype in ("int32", "uint32", "uint64") or ftype in ENUMS or ftype == "utype":
        lo = 0 if ftype != "int32" else -(1 << 31)
        hi = {"int32": (1 << 31) - 1, "uint64": (1 << 64) - 1, "utype": 255}.get(ftype,
                                                                                (1 << 32) - 1)
        big = int(rng.integers(lo, hi, dtype=np.uint64 if hi >= 1 << 63 else np.int64))
        parent[last] = max(lo, small) if rng.integers(2) else big
    elif ftype == "bool":
        parent[last] = not parent.get(last)
    elif ftype == "string":
        parent[last] = ["", "x", "main", "then", "out", None][int(rng.integers(6))]
    elif ftype == "[int32]":
        vals = list(parent.get(last) or [])
        if vals and rng.integers(2):
            vals[int(rng.integers(len(vals)))] = [small, 1 << 20, -(1 << 31), 65536][
                int(rng.integers(4))]
        else:
            vals = [int(v) for v in rng.integers(-2, 70000, size=int(rng.integers(0, 7)))]
        parent[last] = vals
    elif ftype == "[ubyte]":
        parent[last] = None if rng.integers(4) == 0 else rng.bytes(int(rng.integers(0, 41)))
    elif ftype == "[string]":
        names = [t["name"] for b in root["regions"][0]["blocks"] for t in b["tensors"]]
        vals = list(parent.get(last) or [])
        if vals and names and rng.integers(2):
            vals[int(rng.integers(len(vals)))] = names[int(rng.integers(len(names)))]
        elif vals:
            del vals[int(rng.integers(len(vals)))]
        parent[last] = vals
    w = _Writer()
    try:
        off = w.table("TosaGraph", TABLES["TosaGraph"], root)
    except (ValueError, KeyError, OverflowError, TypeError):
        return data            # e.g. a union type that names no op: not writable by us
    w.b.Finish(off, file_identifier=FILE_IDENTIFIER)
    return bytes(w.b.Output())


def _target_one(data):
    """Load, prepare and run ``data`` on zero inputs: the stage that refused it, or "ok"."""
    import numpy as np

    import tosaint
    from tosaint.dtypes import STORAGE
    from tosaint.errors import TosaError
    stage = "load"
    try:
        g = tosaint.load(data)
        stage = "prepare"
        plan = tosaint.prepare(g, max_memory=TARGET_MAX_MEMORY)
        stage = "run"
        inputs = {}
        for name in g.inputs:
            t = g.main.tensors[name]
            dtype = STORAGE.get(t.dtype, np.dtype(np.int8))
            if t.size * dtype.itemsize > TARGET_MAX_MEMORY:
                return "inputs too large", None
            inputs[name] = np.zeros(t.shape, dtype)
        plan.run(inputs)
        return "ok", None
    except TosaError:
        return stage, None
    except Exception as e:                     # noqa: BLE001 - that is what the target finds
        import traceback
        return "failure", f"{stage}: {type(e).__name__}: {e}\n{traceback.format_exc()}"


def target_worker(seed, start, count):
    import resource
    resource.setrlimit(resource.RLIMIT_AS, (TARGET_MEMORY_LIMIT, TARGET_MEMORY_LIMIT))
    import tosaint  # noqa: F401  (imported once, before the first mutant)
    _target_files()
    for i in range(start, count):
        print(json.dumps({"begin": i}), flush=True)
        data, kind = _mutant(i, seed)
        outcome, error = _target_one(data)
        msg = {"i": i, "kind": kind, "outcome": outcome}
        if error:
            msg["error"] = error.splitlines()[0][:500]
            msg["traceback"] = error[-4000:]
        print(json.dumps(msg), flush=True)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "worker":
        target_worker(*map(int, argv[1:4]))
        return 0
    import argparse
    ap = argparse.ArgumentParser(prog="python -m tests.fuzz_target", description=__doc__.split(
        "\n")[0])
    ap.add_argument("--mutants", type=int, default=MUTANTS)
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--save", help="folder for failing mutants and their tracebacks")
    a = ap.parse_args(argv)
    report = fuzz_target(a.mutants, a.seed, a.save,
                         log=lambda m: print(m, file=sys.stderr, flush=True))
    for f in report["failures"]:
        print(f"mutant {f['i']} ({f.get('kind')}): {f['error']}", file=sys.stderr)
    print(json.dumps({k: v for k, v in report.items() if k != "failures"}))
    return 1 if report["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
