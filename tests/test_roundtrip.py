"""Builder -> bytes -> load gives an equal graph: every operator of the Op enum, every attribute
table with non-default values, every dtype the schema knows; and written files run on the
official reference model (status TOSA_VALID), in the default version (1.0.0, non-draft) and in
the 1.1.0 draft.
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tosaint.builder import GraphBuilder, default_attrs
from tosaint.dtypes import RANGE, STORAGE
from tosaint.graph import Operator, Tensor, Version
from tosaint.schema import reader
from tosaint.schema.definition import ATTRIBUTES, ENUMS, DType, Op, ResizeMode, RoundingMode
from tosaint.schema.loader import decode_data, load
from tosaint.schema.writer import encode_data

ALL_OPS = [op for op in Op if op != Op.UNKNOWN]


def _non_default(ftype, i):
    """A value of ``ftype`` that is not the schema default (varied by field index ``i``)."""
    if ftype == "int32":
        return -3 - i
    if ftype == "bool":
        return True
    if ftype in ENUMS:
        members = [m for m in ENUMS[ftype] if int(m) != 0]
        return members[i % len(members)]
    if ftype == "[int32]":
        return (1 + i, -2, 3, 1 << 30)
    if ftype == "[ubyte]":
        return bytes([0xFF, i, 0x80])
    if ftype == "string":
        return f"s{i}_é"
    raise AssertionError(ftype)


def _op_graph(op):
    b = GraphBuilder()
    x = b.input((2, 3), DType.INT8, name="x")
    _, fields = ATTRIBUTES[op]
    attrs = {name: _non_default(t, i) for i, (name, t) in enumerate(fields)}
    if op == Op.CONST:
        b.output(b.const(np.arange(6).reshape(2, 3), DType.INT16))
    elif op == Op.CONST_SHAPE:
        b.output(b.const_shape([7, -1, 1 << 40]))
    else:
        b.output(b.op(op, [x], (3, 2), DType.INT32, attrs, name="y", location=f"{op.name}:1"))
    return b.build(), attrs


@pytest.mark.parametrize("op", ALL_OPS, ids=lambda o: o.name)
def test_every_op_round_trips(op):
    g, attrs = _op_graph(op)
    data = g.to_bytes()
    g2 = load(data)
    assert g2 == g
    o = g2.operators[-1]
    assert o.op == op
    if op not in (Op.CONST, Op.CONST_SHAPE):
        assert o.location == f"{op.name}:1"
        for name, v in attrs.items():            # every field really carried a non-default
            got = o.attrs[name]
            assert (tuple(got) if isinstance(got, tuple) else got) == v, name
        # the file itself has the union type of the op
        raw = reader.read_root(data)["regions"][0]["blocks"][0]["operators"][-1]
        assert raw["attribute_type"] == int(op)
    assert g2.to_bytes() == data                  # and writing is deterministic


def test_every_attribute_table_is_covered():
    tables = {t for t, _ in ATTRIBUTES.values()}
    assert len(tables) == len(ALL_OPS)            # one table per op, so the op test covers all
    with_fields = [op for op, (_, f) in ATTRIBUTES.items() if f]
    assert len(with_fields) >= 30


def test_default_attributes_round_trip():
    """Fields at their defaults are omitted in the file and come back as the defaults."""
    for op in (Op.CONV2D, Op.RESCALE, Op.CLAMP, Op.CUSTOM, Op.TRANSPOSE, Op.ARGMAX):
        b = GraphBuilder()
        x = b.input((2,), DType.INT8, name="x")
        b.output(b.op(op, [x], (2,), DType.INT8, {}))
        g = b.build()
        g2 = load(g.to_bytes())
        assert g2 == g
        assert g2.operators[-1].attrs == default_attrs(op)


# ---- dtypes --------------------------------------------------------------------------------
CONST_DTYPES = [DType.BOOL, DType.INT4, DType.INT8, DType.INT16, DType.INT32, DType.INT48,
                DType.SHAPE, DType.INT64, DType.FP32, DType.FP16]
RAW_DTYPES = [d for d in DType if d not in CONST_DTYPES and d != DType.UNKNOWN]


def test_dtype_lists_cover_the_schema():
    assert set(CONST_DTYPES) | set(RAW_DTYPES) | {DType.UNKNOWN} == set(DType)


def _values(dtype, n=7):
    rng = np.random.default_rng(int(dtype))
    if dtype in RANGE:
        lo, hi = RANGE[dtype]
        v = rng.integers(lo, hi, n, endpoint=True, dtype=np.int64)
        v[:2] = (lo, hi)
        return v.astype(STORAGE[dtype])
    return rng.standard_normal(n).astype(STORAGE[dtype])


def _builder_with_every_const():
    """A builder holding one constant ``c_<DTYPE>`` of every constant dtype."""
    b = GraphBuilder()
    for d in CONST_DTYPES:
        if d == DType.SHAPE:
            b.const_shape(_values(d), name="c_SHAPE")
        else:
            b.const(_values(d), d, name=f"c_{d.name}")
    return b


def test_every_dtype_round_trips():
    b = _builder_with_every_const()
    for d in RAW_DTYPES:                          # kept as raw bytes (tosaint computes nothing)
        b.block.tensors[f"c_{d.name}"] = Tensor(f"c_{d.name}", (2,), d,
                                                extra={"raw_data": bytes([1, 2, 3, int(d)])})
        b.block.operators.append(Operator(Op.CONST, [], [f"c_{d.name}"], {}))
    for d in DType:                               # and a non-constant tensor of every dtype
        b.block.tensors[f"v_{d.name}"] = Tensor(f"v_{d.name}", (1, 2), d)
        b.block.inputs.append(f"v_{d.name}")
    b.output(*[n for n in b.block.tensors if n.startswith("c_")])
    g = b.build()
    g2 = load(g.to_bytes())
    assert g2 == g
    for d in CONST_DTYPES:
        t = g2.tensors[f"c_{d.name}"]
        assert t.dtype == d and t.data.dtype == STORAGE[d]
        assert np.array_equal(t.data, _values(d), equal_nan=False)
    for d in RAW_DTYPES:
        assert g2.tensors[f"c_{d.name}"].extra["raw_data"] == bytes([1, 2, 3, int(d)])
    assert {g2.tensors[f"v_{d.name}"].dtype for d in DType} == set(DType)


INT_DTYPES = [DType.BOOL, DType.INT4, DType.INT8, DType.INT16, DType.INT32, DType.INT48,
              DType.SHAPE, DType.INT64]


@settings(max_examples=150, derandomize=True, deadline=None, database=None)
@given(st.sampled_from(INT_DTYPES), st.data())
def test_integer_data_round_trips(dtype, data):
    lo, hi = RANGE[dtype]
    shape = data.draw(hnp.array_shapes(min_dims=0, max_dims=3, max_side=5))
    arr = data.draw(hnp.arrays(np.int64, shape, elements=st.integers(lo, hi)))
    arr = arr.astype(STORAGE[dtype])
    raw = encode_data(arr, dtype)
    back = decode_data(raw, dtype, shape)
    assert back.shape == arr.shape and back.dtype == arr.dtype
    assert np.array_equal(back, arr)
    b = GraphBuilder()
    if dtype == DType.SHAPE:
        b.output(b.const_shape(arr.reshape(-1)))
    else:
        b.output(b.const(arr, dtype))
    g = b.build()
    assert load(g.to_bytes()) == g


# ---- the oracle: written files run on the reference model ----------------------------------
def _a16w8():
    from tosaint.examples.make_examples import a16w8_conv
    return a16w8_conv()


def _int8_conv_pool():
    rng = np.random.default_rng(3)
    b = GraphBuilder()
    x = b.input((1, 6, 6, 3), DType.INT8, name="x")
    y = b.conv2d(x, b.const(rng.integers(-127, 128, (4, 3, 3, 3)), DType.INT8),
                 b.const(rng.integers(-1000, 1000, 4), DType.INT32), pad=1, stride=1,
                 input_zp=-3, weight_zp=2)
    y = b.rescale(y, [1 << 30, 3 << 28, 1 << 29, 5 << 27], [38, 38, 37, 38], DType.INT8,
                  output_zp=4, rounding_mode=RoundingMode.DOUBLE_ROUND)
    y = b.max_pool2d(y, 2, stride=2)
    b.output(b.avg_pool2d(y, 3, pad=1, input_zp=4, output_zp=-1))
    return b.build(), [rng.integers(-128, 128, (1, 6, 6, 3)).astype(np.int8)]


def _int16_matmul():
    rng = np.random.default_rng(4)
    b = GraphBuilder()
    a = b.input((1, 4, 8), DType.INT16, name="a")
    w = b.const(rng.integers(-32768, 32768, (1, 8, 5)), DType.INT16)
    y = b.matmul(a, w)
    y = b.rescale(y, 1 << 14, 30, DType.INT16)
    y = b.transpose(y, (0, 2, 1))
    y = b.reshape(y, (5, 4))
    y = b.pad(y, [[1, 0], [0, 2]], pad_const=-7)
    y = b.slice(y, [1, 1], [4, 4])
    y = b.tile(y, [1, 2])
    b.output(b.concat([y, y], 0))
    return b.build(), [rng.integers(-32768, 32768, (1, 4, 8)).astype(np.int16)]


def _int32_elementwise():
    rng = np.random.default_rng(5)
    b = GraphBuilder()
    p = b.input((2, 5), DType.INT32, name="p")
    q = b.input((1, 5), DType.INT32, name="q")
    s = b.add(p, q)
    m = b.mul(s, q, shift=3)
    r = b.reduce_sum(m, 1)
    mx = b.maximum(p, q)
    c = b.op(Op.GREATER, [p, q], (2, 5), DType.BOOL)
    sel = b.select(c, mx, s)
    amax = b.op(Op.ARGMAX, [b.cast(sel, DType.INT8)], (5,), DType.INT32,
                dict(axis=0, nan_mode=1))
    b.output(r, sel, amax)
    return b.build(), [rng.integers(-1000, 1000, (2, 5)).astype(np.int32),
                       rng.integers(-1000, 1000, (1, 5)).astype(np.int32)]


def _int16_resize_clamp():
    rng = np.random.default_rng(6)
    b = GraphBuilder()
    x = b.input((1, 3, 3, 2), DType.INT16, name="x")
    y = b.resize(x, (4, 2, 4, 2), (0, 0), (0, 0), mode=ResizeMode.NEAREST)
    y = b.clamp(y, -20000, 25000)
    y = b.cast(y, DType.INT8)
    b.output(b.op(Op.REVERSE, [y], b.shape(y), DType.INT8, dict(axis=2)))
    return b.build(), [rng.integers(-32768, 32768, (1, 3, 3, 2)).astype(np.int16)]


ORACLE_GRAPHS = {"a16w8_conv": _a16w8, "int8_conv_pool": _int8_conv_pool,
                 "int16_matmul_layout": _int16_matmul, "int32_elementwise": _int32_elementwise,
                 "int16_resize_clamp": _int16_resize_clamp}


@pytest.mark.oracle
@pytest.mark.parametrize("name", sorted(ORACLE_GRAPHS))
def test_written_files_run_on_reference_model(name):
    trm = pytest.importorskip("tosa_reference_model")
    g, inputs = ORACLE_GRAPHS[name]()
    results = {}
    for version in (None, (1, 1, 0, True)):
        data = g.to_bytes(version=version)
        assert load(data).version == (Version(1, 0, 0, False) if version is None
                                      else Version(*version))
        outs, status = trm.run(data, inputs)
        assert status.name == "TOSA_VALID", (name, version)
        assert len(outs) == len(g.outputs)
        for o, n in zip(outs, g.outputs):
            assert o.shape == g.tensors[n].shape and o.dtype == STORAGE[g.tensors[n].dtype]
        results[version] = outs
        # the file, loaded and written again, runs bit-identically
        again, status2 = trm.run(load(data).to_bytes(), inputs)
        assert status2.name == "TOSA_VALID"
        assert all(np.array_equal(a, b) for a, b in zip(outs, again))
    assert all(np.array_equal(a, b) for a, b in zip(results[None], results[(1, 1, 0, True)]))


# ---- Vela: a written a16w8 file compiles for Ethos-U85 ---------------------------------------
def _vela_exe():
    import shutil
    import sys
    from pathlib import Path
    exe = Path(sys.executable).parent / "vela"
    return str(exe) if exe.exists() else shutil.which("vela")


@pytest.mark.vela
@pytest.mark.parametrize("version", [None, (1, 1, 0, True)], ids=["1.0.0", "1.1.0-draft"])
def test_vela_compiles_written_a16w8(tmp_path, version):
    """The bundled a16w8 graph (int16 CONV2D with int48 bias, RESCALE scale16, int16 TABLE,
    RESCALE, MAX_POOL2D, RESHAPE), written by tosaint, compiles with vela for ethos-u85-256
    with every operator on the NPU.  (Vela finds ``--config Arm/vela.ini`` in its own package:
    ``ethosu/config_files/Arm/vela.ini``.)"""
    import subprocess
    pytest.importorskip("ethosu.vela")
    exe = _vela_exe()
    if exe is None:
        pytest.skip("vela executable not found")
    g, _ = _a16w8()
    path = tmp_path / "a16w8.tosa"
    g.save(path, version=version)
    out = tmp_path / "out"
    p = subprocess.run([exe, "--accelerator-config", "ethos-u85-256", "--config",
                        "Arm/vela.ini", "--system-config", "Ethos_U85_SYS_DRAM_Mid",
                        "--memory-mode", "Sram_Only", "--output-format", "raw",
                        "--output-dir", str(out), str(path)],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert "CPU operators = 0 (0.0%)" in p.stdout
    z = np.load(out / "a16w8_vela.npz")
    assert bytes(z["cmd_data"][()])[:4] == b"COP1"
    assert z["input_elem_size"].tolist() == [2] and z["output_elem_size"].tolist() == [2]
    assert z["input_shape"].tolist() == [[1, 1, 1, 8, 8, 4]]
    assert z["output_shape"].tolist() == [[1, 1, 1, 1, 1, 128]]


# ---- the whole conformance suite (not in CI: it has no suite) --------------------------------
@pytest.mark.slow
@pytest.mark.oracle
def test_conformance_suite_round_trip(suite):
    """Every positive test of the conformance suite (conftest.py) loads, round-trips and runs
    bit-identically on the reference model after the rewrite; every negative test loads (and
    stays TOSA_ERROR) or gives a TosaError.  Same as ``python -m tests.roundtrip_suite DIR``."""
    pytest.importorskip("tosa_reference_model")
    from tests.roundtrip_suite import run_suite
    r = run_suite([str(suite)], log=lambda *a: None)
    assert r["tests"] > 0
    assert r["failures"] == [], r["failures"][:10]


# ---- the official generated flatbuffers reader (tosa-tools' ``tosa`` package) reads our files
def _camel(name):
    return "".join(p[:1].upper() + p[1:] for p in name.split("_"))


def _official_field(obj, name, ftype):
    get = getattr(obj, _camel(name))
    if ftype in ("[int32]", "[ubyte]"):
        return tuple(get(j) for j in range(getattr(obj, _camel(name) + "Length")()))
    if ftype == "string":
        v = get()
        return None if v is None else v.decode("utf-8")
    return get()


@pytest.mark.parametrize("op", ALL_OPS, ids=lambda o: o.name)
def test_official_reader_sees_every_attribute(op):
    import importlib
    pytest.importorskip("tosa.TosaGraph")
    from tosa.TosaGraph import TosaGraph
    g, attrs = _op_graph(op)
    data = g.to_bytes()
    root = TosaGraph.GetRootAs(bytearray(data), 0)
    assert root.TosaGraphBufferHasIdentifier(data, 0)
    v = root.Version()
    assert (v._Major(), v._Minor(), v._Patch(), v._Draft()) == (1, 0, 0, False)
    blk = root.Regions(0).Blocks(0)
    assert blk.Name() == b"main"
    fop = blk.Operators(blk.OperatorsLength() - 1)
    assert fop.Op() == int(op) and fop.AttributeType() == int(op)
    if op in (Op.CONST, Op.CONST_SHAPE):
        return
    assert [fop.Inputs(i).decode() for i in range(fop.InputsLength())] == ["x"]
    assert fop.Location().Text().decode() == f"{op.name}:1"
    tname, fields = ATTRIBUTES[op]
    cls = getattr(importlib.import_module(f"tosa.{tname}"), tname)
    table = fop.Attribute()
    obj = cls()
    obj.Init(table.Bytes, table.Pos)
    for name, ftype in fields:
        want = attrs[name]
        want = int(want) if ftype in ENUMS or ftype == "bool" else \
            tuple(want) if ftype == "[ubyte]" else want
        got = _official_field(obj, name, ftype)
        assert (int(got) if ftype == "bool" else got) == want, name


def test_official_reader_sees_tensor_data_and_shapes():
    pytest.importorskip("tosa.TosaGraph")
    from tosa.TosaGraph import TosaGraph
    b = _builder_with_every_const()
    b.output(*[n for n in b.block.tensors if n != "c_SHAPE"])
    g = b.build()
    data = g.to_bytes()
    blk = TosaGraph.GetRootAs(bytearray(data), 0).Regions(0).Blocks(0)
    seen = {}
    for i in range(blk.TensorsLength()):
        t = blk.Tensors(i)
        name = t.Name().decode()
        assert t.Type() == int(g.tensors[name].dtype)
        assert tuple(t.ShapeAsNumpy()) == g.tensors[name].shape
        seen[name] = t.DataAsNumpy().tobytes()
        # force_align 8 of the data vector (a reader may map it as wider types)
        assert not t.DataIsNone() and t._tab.Vector(t._tab.Offset(10)) % 8 == 0
    for d in CONST_DTYPES:
        if d != DType.SHAPE:
            assert seen[f"c_{d.name}"] == encode_data(_values(d), d), d
    assert blk.ShapesLength() == 1
    s = blk.Shapes(0)
    assert s.Name() == b"c_SHAPE" and s.Rank() == 7
    assert s.DataAsNumpy().tobytes() == _values(DType.SHAPE).astype("<i8").tobytes()


def test_bundled_example_is_up_to_date():
    """tosaint/examples/a16w8_conv.* are what make_examples.py builds (and the reference model
    gives the stored expected output)."""
    from pathlib import Path

    import tosaint
    d = Path(tosaint.__file__).parent / "examples"
    g, inputs = _a16w8()
    assert load(d / "a16w8_conv.tosa") == g
    x = np.load(d / "a16w8_conv_input.npy")
    assert x.dtype == np.int16 and np.array_equal(x, inputs[0])
    trm = pytest.importorskip("tosa_reference_model")
    outs, status = trm.run((d / "a16w8_conv.tosa").read_bytes(), [x])
    assert status.name == "TOSA_VALID"
    want = np.load(d / "a16w8_conv_expected.npy")
    assert outs[0].dtype == want.dtype and np.array_equal(outs[0], want)
