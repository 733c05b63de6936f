"""Hostile and malformed ``.tosa`` files: ``load`` must only ever raise a TosaError.

Mutations of real files (built here with GraphBuilder: CI has no conformance suite) are checked
with hypothesis, derandomized and bounded: bit flips, truncation, inserted and deleted bytes,
32-bit words overwritten with huge lengths/offsets, and structure-aware field mutations (one
decoded field set to any value of its type, vectors of tables with elements dropped or
duplicated, then re-encoded, so that the semantic checks see well-formed flatbuffers).  A file that still loads must write back
and load again to an equal graph.  Crafted buffers check the things random mutation rarely
reaches: shared sub-objects (a DAG whose naive decoding explodes), a 2^40-element tensor,
a shape of 100k huge dims, long operator chains.

Everything runs in a subprocess under an address-space limit (RLIMIT_AS), a CPU-time limit and
a per-example alarm, so a MemoryError, a hang or a crash shows up as a failure of this test
rather than taking pytest down.  Run by hand:  python tests/test_fuzz.py fuzz|crafted

The fuzz *target* (``tests/fuzz_target.py``) goes further: seeded mutants of the bundled example,
the ExecuTorch graphs of tests/data and builder graphs are each loaded, prepared and run on zero
inputs.  A few hundred run here; ``TOSAINT_FUZZ_MUTANTS=10000`` (and ``TOSAINT_FUZZ_SEED``) for
the long run, or ``python -m tests.fuzz_target --mutants 10000 --seed 1 --save DIR``.
"""
import json
import os
import subprocess
import sys

import pytest

MEMORY_LIMIT = 1 << 30          # bytes of address space for the worker
CPU_LIMIT = 100                 # seconds of CPU for the worker
#: hypothesis examples per mutation kind (TOSAINT_FUZZ_EXAMPLES overrides, for long manual runs)
EXAMPLES = int(os.environ.get("TOSAINT_FUZZ_EXAMPLES", 300))


def _run_worker(mode):
    p = subprocess.run([sys.executable, os.path.abspath(__file__), mode], capture_output=True,
                       text=True, timeout=600)
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    assert p.returncode == 0, f"worker exit {p.returncode}\n{p.stdout[-4000:]}\n{p.stderr[-4000:]}"
    return json.loads(lines[-1])


@pytest.mark.slow

def _bitflip(data, flips):
    """``data`` with the bits at the (wrapped) positions ``flips`` inverted."""
    b = bytearray(data)
    for f in flips:
        f %= 8 * len(b)
        b[f // 8] ^= 1 << (f % 8)
    return bytes(b)


def _huge_word(data, m):
    """``data`` with the aligned 32-bit word at ``m[0]`` (wrapped) replaced by ``m[1]``."""
    pos, value = m
    pos = (pos % (len(data) // 4)) * 4
    return data[:pos] + value.to_bytes(4, "little") + data[pos + 4:]

def test_fuzz_mutations_only_raise_tosa_errors():
    stats = _run_worker("fuzz")
    print(stats)
    kinds = stats["kinds"]
    assert set(kinds) == {"bitflip", "truncate", "insert", "delete", "huge_word", "field"}
    for k, c in kinds.items():
        assert c["examples"] >= EXAMPLES // 2, (k, c)
    # the mutations must reach both outcomes, or the test checks nothing
    assert sum(c["rejected"] for c in kinds.values()) > 100
    assert sum(c["loaded"] for c in kinds.values()) > 20


@pytest.mark.slow
def test_crafted_pathological_buffers():
    stats = _run_worker("crafted")
    print(stats)
    assert stats["cases"] >= 14 and stats["failures"] == [], stats


@pytest.mark.slow
def test_fuzz_target_load_prepare_run():
    from tests.fuzz_target import MUTANTS, SEED, fuzz_target
    report = fuzz_target(MUTANTS, SEED)
    print(json.dumps({k: v for k, v in report.items() if k != "failures"}))
    assert report["mutants"] == MUTANTS
    assert report["failures"] == [], json.dumps(report["failures"][:5], indent=1)
    outcomes = report["outcomes"]
    # the mutants must reach every stage, or the target checks less than it claims
    assert outcomes.get("load", 0) > MUTANTS // 10, outcomes
    assert outcomes.get("ok", 0) > MUTANTS // 20, outcomes
    assert outcomes.get("prepare", 0) + outcomes.get("run", 0) > 0, outcomes


@pytest.mark.slow
def test_bulk_and_careful_readers_agree_on_mutants():
    """The loader's column-wise reader gives what the careful reader gives, or the same
    SchemaError, on mutants (and reads the well-formed ones itself, not by declining)."""
    stats = _run_worker("agree")
    print({k: v for k, v in stats.items() if k != "disagreements"})
    assert stats["disagreements"] == [], stats["disagreements"][:3]
    assert stats["bulk"] > 100 and stats["errors"] > 100, stats


# ---------------------------------------------------------------------------------------------
# worker side (runs in the limited subprocess)
# ---------------------------------------------------------------------------------------------
def _limit():
    import resource
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    resource.setrlimit(resource.RLIMIT_CPU, (CPU_LIMIT, CPU_LIMIT))


class Hang(Exception):
    pass


def _alarm(seconds):
    import signal

    def on_alarm(signum, frame):
        raise Hang(f"load took more than {seconds} s")
    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)


def _base_files():
    """Small real files covering every part of the format the loader decodes."""
    import numpy as np

    from tosaint.builder import GraphBuilder
    from tosaint.graph import Region
    from tosaint.schema.definition import DType, Op

    rng = np.random.default_rng(0)
    b = GraphBuilder()
    x = b.input((1, 4, 4, 3), DType.INT16, name="x")
    w = b.const(rng.integers(-127, 128, (4, 3, 3, 3)), DType.INT8)
    bias = b.const(np.array([-(1 << 40), 5, 0, 7]), DType.INT48)
    y = b.conv2d(x, w, bias, pad=1)
    y = b.rescale(y, 1 << 14, 30, DType.INT16)
    y = b.table(y, np.arange(513) * 16 - 4096)
    y = b.rescale(y, [1 << 30] * 4, [40] * 4, DType.INT16)
    y = b.clamp(y, -1000, 1000)
    b.output(b.reshape(y, (16, 4)))
    a16w8 = b.build()
    a16w8.software_version = (2026, 8, 0, "")
    a16w8.compatibility = {"min_reader_version": (2026, 5, 0, ""), "features": 0}

    b = GraphBuilder(version=(1, 1, 0, True))
    c = b.input((), DType.BOOL, name="cond")
    p = b.input((2, 3), DType.INT32, name="p")
    q4 = b.const(np.array([-7, 7, 1, 0, 3]), DType.INT4)
    flags = b.const(np.array([True, False, True]), DType.BOOL)
    out = b.op(Op.COND_IF, [c, p], (2, 3), DType.INT32,
               dict(then_graph="then", else_graph="else"), name="out", location="fuzz.py:1")
    cu = b.op(Op.CUSTOM, [q4, flags], (5,), DType.INT8,
              dict(operator_name="op", domain_name="dom", implementation_attrs=b"\x01\x02"))
    s = b.reshape(p, (3, 2))
    b.output(out, cu, s)
    regions = b.build()
    regions.tensors[b.block.operators[-2].outputs[0]].extra["shape_table"] = False
    for name, op in (("then", Op.NEGATE), ("else", Op.ABS)):
        sb = GraphBuilder()
        sb.block.name = name
        i = sb.input((2, 3), DType.INT32, name=f"i_{name}")
        sb.output(sb.op(op, [i], (2, 3), DType.INT32, name=f"o_{name}"))
        regions.regions.append(Region(name, [sb.block]))
    files = [a16w8.to_bytes(), regions.to_bytes()]
    # and one file of another writer (ExecuTorch via tosa-tools' C++ serializer: shared
    # vtables and strings, another field order), from tests/data
    foreign = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "executorch",
                           "linear", "model.tosa")
    if os.path.exists(foreign):
        with open(foreign, "rb") as f:
            files.append(f.read())
    return files


def _check(data, counts):
    """The property: load raises only TosaError; a graph that loads round-trips."""
    from tosaint.errors import TosaError
    from tosaint.schema.loader import load

    _alarm(10)
    try:
        try:
            g = load(data)
        except TosaError:
            counts["rejected"] += 1
            return
        counts["loaded"] += 1
        try:
            out = g.to_bytes()
        except TosaError:
            return
        assert load(out) == g, "a loaded graph does not survive write + load"
    finally:
        import signal
        signal.alarm(0)


def fuzz():
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    files = _base_files()
    stats = {}
    cfg = settings(max_examples=EXAMPLES, derandomize=not os.environ.get("TOSAINT_FUZZ_RANDOM"), deadline=None, database=None,
                   suppress_health_check=list(HealthCheck), print_blob=True)
    fidx = st.integers(0, len(files) - 1)
    huge = st.sampled_from([0xFFFFFFFF, 0x7FFFFFFF, 0x80000000, 0x40000000, 0x10000000,
                            1 << 20, 0xFFFF, 0xFFFC, 0, 4, 8])

    def run(kind, strategy, mutate):
        counts = stats[kind] = {"examples": 0, "rejected": 0, "loaded": 0}

        @cfg
        @given(fidx, strategy)
        def t(i, m):
            counts["examples"] += 1
            _check(mutate(files[i], m), counts)
        t()

    run("bitflip", st.lists(st.integers(0, 1 << 20), min_size=1, max_size=8), _bitflip)
    run("truncate", st.integers(0, 1 << 20), lambda d, n: d[:n % len(d)])
    run("insert", st.tuples(st.integers(0, 1 << 20), st.binary(min_size=1, max_size=16)),
        lambda d, m: d[:m[0] % len(d)] + m[1] + d[m[0] % len(d):])
    run("delete", st.tuples(st.integers(0, 1 << 20), st.integers(1, 64)),
        lambda d, m: d[:m[0] % len(d)] + d[m[0] % len(d) + m[1]:])
    run("huge_word", st.tuples(st.integers(0, 1 << 20), huge), _huge_word)
    run("field", _field_mutations(st), _structured(files))
    return {"kinds": stats, "file_sizes": [len(f) for f in files]}


def agree():
    """Worker of ``test_bulk_and_careful_readers_agree_on_mutants``."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from tosaint.errors import SchemaError
    from tosaint.schema import reader

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from tests.test_schema import _mixed_graph

    # and a graph of a few hundred tables, whose columns the bulk reader reads at once
    files = _base_files() + [_mixed_graph()]
    structured = _structured(files)
    stats = {"examples": 0, "bulk": 0, "errors": 0, "disagreements": []}
    cfg = settings(max_examples=EXAMPLES, derandomize=not os.environ.get("TOSAINT_FUZZ_RANDOM"),
                   deadline=None, database=None, suppress_health_check=list(HealthCheck))

    def outcome(read, data):
        try:
            return read(data)
        except (SchemaError, RecursionError) as e:
            return f"{type(e).__name__}: {e}"

    def compare(data):
        stats["examples"] += 1
        _alarm(10)
        try:
            want = outcome(lambda d: reader._as_columns(reader.read_root(d, spans=True),
                                                        "TosaGraph"), data)
            got = outcome(reader.read_columns, data)
            if got != want:
                stats["disagreements"].append({"careful": str(want)[:300],
                                               "bulk": str(got)[:300]})
            if isinstance(want, str):
                stats["errors"] += 1
            else:
                try:
                    reader._read_bulk(reader._header(data))
                    stats["bulk"] += 1
                except (reader._Slow, SchemaError):
                    pass
        finally:
            import signal
            signal.alarm(0)

    fidx = st.integers(0, len(files) - 1)
    huge = st.sampled_from([0xFFFFFFFF, 0x7FFFFFFF, 0x80000000, 1 << 20, 0xFFFF, 0, 4, 8])
    for strategy, mutate in ((st.lists(st.integers(0, 1 << 20), min_size=1, max_size=4), _bitflip),
                             (st.tuples(st.integers(0, 1 << 20), huge), _huge_word),
                             (_field_mutations(st), structured)):
        @cfg
        @given(fidx, strategy)
        def t(i, m):
            compare(mutate(files[i], m))
        t()
    for data in files:
        compare(data)
    return stats


# ---- structure-aware mutation: decode a file, change one field to any value of its type,
# ---- encode it again (so the loader's semantic checks see well-formed flatbuffers)
def _leaves(d, tname, path=()):
    """(path, field type) of every field of the decoded table ``d`` and its sub-tables."""
    from tosaint.schema.definition import ATTRIBUTES, Op, TABLES
    fields = TABLES[tname] if tname in TABLES else None
    if fields is None:
        fields = ATTRIBUTES[Op(d["__op__"])][1]
    for name, ftype in fields:
        p = path + (name,)
        v = d.get(name)
        if ftype == "union":
            yield path + ("attribute_type",), "utype"
            if v is not None:
                v["__op__"] = d["attribute_type"]
                yield from _leaves(v, None, p)
        elif ftype.startswith("[") and ftype[1:-1] in TABLES:
            yield p, "tables"
            for i, x in enumerate(v or []):
                yield from _leaves(x, ftype[1:-1], p + (i,))
        elif ftype in TABLES:
            yield p, "table"
            if v is not None:
                yield from _leaves(v, ftype, p)
        else:
            yield p, ftype


def _field_mutations(st):
    i32 = st.one_of(st.integers(-3, 8), st.integers(-(1 << 31), (1 << 31) - 1))
    u32 = st.one_of(st.integers(0, 120), st.integers(0, (1 << 32) - 1))
    values = {
        "int32": i32, "uint32": u32, "uint64": st.integers(0, (1 << 64) - 1),
        "bool": st.booleans(), "utype": st.integers(0, 255),
        "string": st.one_of(st.none(), st.text(max_size=6), st.sampled_from(
            ["x", "main", "conv_3", "const_4", "shape_17", "then", "", "out"])),
        "[int32]": st.one_of(st.none(), st.lists(i32, max_size=6)),
        "[ubyte]": st.one_of(st.none(), st.binary(max_size=40)),
        "[string]": st.lists(st.sampled_from(["x", "p", "cond", "out", "const_4", "zz", ""]),
                             max_size=4),
        "tables": st.tuples(st.sampled_from(["drop", "dup", "clear"]), st.integers(0, 50)),
        "table": st.just(None),
    }
    # (which leaf of the drawn kind, (kind, value))
    return st.tuples(st.integers(0, 1 << 16), st.sampled_from(sorted(values)).flatmap(
        lambda k: st.tuples(st.just(k), values[k])))


def _structured(files):
    import copy

    from tosaint.schema import reader
    from tosaint.schema.definition import ENUMS, FILE_IDENTIFIER, TABLES
    from tosaint.schema.writer import _Writer
    decoded = [reader.read_root(f) for f in files]
    for d in decoded:
        _to_bytes(d)

    def mutate(data, m):
        i, (kind, value) = m
        root = copy.deepcopy(decoded[files.index(data)])
        leaves = list(_leaves(root, "TosaGraph"))
        # prefer a leaf of the drawn kind; else any leaf (then the value may not fit its type)
        same = [lf for lf in leaves if lf[1] == kind or (kind == "uint32" and lf[1] in ENUMS)]
        if not same:
            return data
        path, ftype = same[i % len(same)]
        parent = root
        for k in path[:-1]:
            parent = parent[k]
        last = path[-1]
        if ftype == "tables":
            vec = list(parent.get(last) or [])
            op, n = value
            if vec and op == "drop":
                del vec[n % len(vec)]
            elif vec and op == "dup":
                vec.insert(n % len(vec), vec[n % len(vec)])
            elif op == "clear":
                vec = []
            parent[last] = vec
        else:
            parent[last] = value
        w = _Writer()
        try:
            off = w.table("TosaGraph", TABLES["TosaGraph"], root)
        except (ValueError, KeyError):
            return data            # e.g. a union type that names no op: not writable by us
        w.b.Finish(off, file_identifier=FILE_IDENTIFIER)
        return bytes(w.b.Output())
    return mutate


def _to_bytes(d):
    """Decoded tables hold memoryviews of the file (zero-copy data): make them bytes."""
    if isinstance(d, dict):
        for k, v in d.items():
            if isinstance(v, memoryview):
                d[k] = bytes(v)
            else:
                _to_bytes(v)
    elif isinstance(d, list):
        for x in d:
            _to_bytes(x)


def _raw_graph(build_block, n_blocks=1, block_repeats=1):
    """A TosaGraph whose region lists the same block offset ``block_repeats`` times."""
    import flatbuffers

    from tosaint.schema.definition import FILE_IDENTIFIER
    from tosaint.schema.writer import _Writer
    w = _Writer()
    block = build_block(w)
    blocks = w.offset_vector([block] * block_repeats)
    name = w.string("main")
    b = w.b
    b.StartObject(2)
    b.PrependUOffsetTRelativeSlot(0, name, 0)
    b.PrependUOffsetTRelativeSlot(1, blocks, 0)
    region = b.EndObject()
    regions = w.offset_vector([region] * n_blocks)
    version = w.table("Version", (("_major", "int32"), ("_minor", "int32"), ("_patch", "int32"),
                                  ("_draft", "bool")),
                      {"_major": 1, "_minor": 0, "_patch": 0, "_draft": False})
    b.StartObject(4)
    b.PrependUOffsetTRelativeSlot(0, version, 0)
    b.PrependUOffsetTRelativeSlot(1, regions, 0)
    root = b.EndObject()
    b.Finish(root, file_identifier=FILE_IDENTIFIER)
    assert isinstance(b, flatbuffers.Builder)
    return bytes(b.Output())


def crafted():
    import numpy as np

    from tosaint.builder import GraphBuilder
    from tosaint.errors import SchemaError, TosaError
    from tosaint.schema.definition import TABLES, DType, Op
    from tosaint.schema.loader import load

    cases, failures = [], []

    def expect(name, data, error=SchemaError, match=None, max_seconds=10):
        import time
        cases.append(name)
        t0 = time.perf_counter()
        _alarm(max_seconds)
        try:
            load(data)
            outcome = None
        except TosaError as e:
            outcome = e
        except BaseException as e:                      # noqa: BLE001 - that is the point
            failures.append(f"{name}: {type(e).__name__}: {e}")
            return
        finally:
            import signal
            signal.alarm(0)
        dt = time.perf_counter() - t0
        if error is None:
            if outcome is not None:
                failures.append(f"{name}: expected to load, got {outcome!r}")
        elif not isinstance(outcome, error):
            failures.append(f"{name}: expected {error.__name__}, got {outcome!r}")
        elif match and match not in str(outcome):
            failures.append(f"{name}: message {str(outcome)!r} lacks {match!r}")
        times[name] = round(dt, 3)

    times = {}
    tensor_fields = TABLES["TosaTensor"]

    # 1. a constant claiming 2^40 elements with 8 bytes of data: rejected before allocation
    def big_const(w):
        t = w.table("TosaTensor", tensor_fields, {"name": "big", "shape": [1 << 20, 1 << 20],
                                                  "type": int(DType.INT48), "data": bytes(8)})
        return _block(w, [t])
    expect("2^40-element constant", _raw_graph(big_const), match="more than")

    # 2. a shape of 100k dims of 2^31-1: refused quickly, without a giant product
    def long_shape(w):
        t = w.table("TosaTensor", tensor_fields, {"name": "s", "shape": [0x7FFFFFFF] * 100000,
                                                  "type": int(DType.INT8)})
        return _block(w, [t])
    expect("100k huge dims", _raw_graph(long_shape), match="more than", max_seconds=5)

    # 3. a DAG: 2000 references to one tensor with a 20k-element shape vector, in 50 blocks
    def dag(w):
        t = w.table("TosaTensor", tensor_fields, {"name": "t", "shape": [1] * 20000,
                                                  "type": int(DType.INT8)})
        return _block(w, [t] * 2000)
    expect("shared-object DAG", _raw_graph(dag, block_repeats=50), match="over and over",
           max_seconds=5)

    # 4. a vector whose length field claims 2^30 elements
    good = GraphBuilder()
    x = good.input((2,), DType.INT32, name="x")
    good.output(good.identity(x))
    data = good.build().to_bytes()
    root = int.from_bytes(data[:4], "little")
    bad = bytearray(data)
    # the regions vector: offset stored in the root table's slot 1
    vt = root - int.from_bytes(data[root:root + 4], "little", signed=True)
    rel = int.from_bytes(data[vt + 6:vt + 8], "little")
    vec = root + rel + int.from_bytes(data[root + rel:root + rel + 4], "little")
    bad[vec:vec + 4] = (1 << 30).to_bytes(4, "little")
    expect("2^30-element vector", bytes(bad), match="runs past the end")
    # 5. the root offset pointing past the end / into itself
    expect("root offset past end", (1 << 31).to_bytes(4, "little") + data[4:], match="outside")
    expect("root offset 0", bytes(4) + data[4:])
    # 6. a vtable offset pointing outside the buffer
    bad = bytearray(data)
    bad[root:root + 4] = (-(1 << 30)).to_bytes(4, "little", signed=True)
    expect("vtable outside", bytes(bad), match="outside")
    # 7. an operator chain of 20000 IDENTITY ops: linear-time loading and cycle check
    chain = GraphBuilder()
    y = chain.input((1,), DType.INT8, name="in")
    for _ in range(20000):
        y = chain.identity(y)
    chain.output(y)
    expect("20000-op chain", chain.build().to_bytes(), error=None, max_seconds=20)
    # 8. every byte of a small valid file set to 0xFF, to 0x00
    expect("all 0xFF", b"\xff" * len(data))
    expect("all zero", bytes(len(data)))
    expect("identifier only", b"\x08\x00\x00\x00TOSA")
    # 9. a shape value claiming rank 2^31 with no data, and one with too little data
    def big_shape_value(w):
        return _block(w, [], shapes=[w.table("TosaShape", TABLES["TosaShape"],
                                             {"name": "s", "rank": 1 << 31, "data": bytes(8)})])
    expect("shape rank 2^31", _raw_graph(big_shape_value), match="rank")
    # 10. 2^40-element non-constant tensor
    b = GraphBuilder()
    b.output(b.input((1 << 20, 1 << 20), DType.INT16, name="x"))
    expect("2^40-element input", b.build().to_bytes(), match="more than")
    # 11. thousands of tables, each under its own long vtable (overlapping, in one region):
    # compiling a layout per vtable is budgeted like everything else
    expect("distinct long vtables", _distinct_vtables(), match="over and over", max_seconds=5)
    del np, Op
    return {"cases": len(cases), "failures": failures, "seconds": times}


def _distinct_vtables(m=5000):
    """A block of ``m`` tensors whose tables point into one region of overlapping vtables,
    each 64 KB long (its slots beyond the schema's all present)."""
    import struct

    from tosaint.builder import GraphBuilder
    from tosaint.graph import Tensor
    from tosaint.schema.definition import TABLES, DType
    b = GraphBuilder()
    x = b.input((1,), DType.INT8, name="x")
    for i in range(m):
        b.block.tensors[f"t{i}"] = Tensor(f"t{i}", (1,), DType.INT8)
    b.output(x)
    data = bytearray(b.build().to_bytes())

    def field(pos, slot):
        vt = pos - struct.unpack_from("<i", data, pos)[0]
        off = struct.unpack_from("<H", data, vt + 4 + 2 * slot)[0]
        return pos + off + struct.unpack_from("<I", data, pos + off)[0]

    def vec(pos):
        return [pos + 4 + 4 * i + struct.unpack_from("<I", data, pos + 4 + 4 * i)[0]
                for i in range(struct.unpack_from("<I", data, pos)[0])]
    block = vec(field(vec(field(struct.unpack_from("<I", data, 0)[0], 1))[0], 1))[0]
    tensors = vec(field(block, 2))
    k = len(TABLES["TosaTensor"])
    unit = struct.pack("<HH", 0xFFFE, 0xFFFE) + bytes(2 * k)   # vt_len, obj_len, k absent slots
    region = len(data)
    data += unit * (len(tensors) + 0xFFFE // len(unit) + 2)
    for j, pos in enumerate(tensors):
        struct.pack_into("<i", data, pos, pos - (region + j * len(unit)))
    return bytes(data)


def _block(w, tensor_offsets, shapes=()):
    name = w.string("main")
    tensors = w.offset_vector(list(tensor_offsets))
    shapes_v = w.offset_vector(list(shapes))
    b = w.b
    b.StartObject(6)
    b.PrependUOffsetTRelativeSlot(0, name, 0)
    b.PrependUOffsetTRelativeSlot(2, tensors, 0)
    b.PrependUOffsetTRelativeSlot(5, shapes_v, 0)
    return b.EndObject()


if __name__ == "__main__":
    _limit()
    print(json.dumps({"fuzz": fuzz, "crafted": crafted, "agree": agree}[sys.argv[1]]()))
