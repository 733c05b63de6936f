"""The TOSA flatbuffer layer: data encodings, file forms written by the real tools, regions,
versions, and the errors a malformed file gives.

Hand-checkable byte goldens come from the format facts (little-endian, int48 in 6 bytes, int4
two per byte, low nibble first); where tosa-tools is installed its own encoder and serializer
are the second opinion.
"""
import json
import os
from pathlib import Path

import numpy as np
import pytest

from tosaint.builder import GraphBuilder
from tosaint.errors import SchemaError, TosaError
from tosaint.graph import Graph, Region, Version
from tosaint.schema import reader
from tosaint.schema.definition import ATTRIBUTES, DType, Op
from tosaint.schema.loader import decode_data, encoded_size, load
from tosaint.schema.writer import encode_data

DATA = Path(__file__).parent / "data"


# ---- data encodings ----------------------------------------------------------------------
def test_int48_golden_bytes():
    v = np.array([-(1 << 47) + 10, (1 << 47) - 1, -1, 0, 5], np.int64)
    raw = encode_data(v, DType.INT48)
    assert raw[:6] == bytes([0x0A, 0, 0, 0, 0, 0x80])          # -2^47+10 (tosa-facts 3.3)
    assert raw[6:12] == bytes([0xFF] * 5 + [0x7F])
    assert raw[12:18] == bytes([0xFF] * 6)
    assert len(raw) == 30
    back = decode_data(raw, DType.INT48, (5,))
    assert back.dtype == np.int64 and np.array_equal(back, v)


def test_int48_out_of_range_rejected():
    with pytest.raises(SchemaError, match="int48"):
        encode_data(np.array([1 << 47]), DType.INT48)


def test_int4_golden_bytes_and_minus8():
    raw = encode_data(np.array([1, -7, 3], np.int8), DType.INT4)
    assert raw == bytes([0x91, 0x03])               # low nibble first, odd count pads with 0
    assert np.array_equal(decode_data(raw, DType.INT4, (3,)), [1, -7, 3])
    assert encoded_size(DType.INT4, 3) == 2
    with pytest.raises(SchemaError, match="-8"):
        decode_data(bytes([0x08]), DType.INT4, (1,))
    with pytest.raises(SchemaError, match="int4"):
        encode_data(np.array([-8]), DType.INT4)


def test_bool_and_shape_decoding():
    b = decode_data(bytes([0, 1, 2, 0]), DType.BOOL, (2, 2))
    assert b.dtype == np.bool_ and b.tolist() == [[False, True], [True, False]]
    assert encode_data(b, DType.BOOL) == bytes([0, 1, 1, 0])
    s = decode_data(np.array([2, -6], "<i8").tobytes(), DType.SHAPE, (2,))
    assert s.dtype == np.int64 and s.tolist() == [2, -6]


@pytest.mark.parametrize("dtype,values", [
    (DType.BOOL, [1, 0, 1]), (DType.INT4, [-7, 7, 0, 3, -1]), (DType.INT8, [-128, 127, 3]),
    (DType.INT16, [-32768, 32767, 258]), (DType.INT32, [-(1 << 31), (1 << 31) - 1, 7]),
    (DType.INT48, [-(1 << 47), (1 << 47) - 1, -2]), (DType.SHAPE, [1, -1, 1 << 40]),
    (DType.INT64, [-(1 << 63), 1])])
def test_encoding_matches_tosa_tools(dtype, values):
    ts = pytest.importorskip("tosa_serializer")
    official = bytes(ts.TosaSerializer.convertDataToUint8Vec(ts.DType(int(dtype)), values))
    ours = encode_data(np.array(values), dtype)
    assert ours == official
    dec = decode_data(official, dtype, (len(values),))
    assert np.array_equal(dec.astype(np.int64), np.array(values, np.int64))


def test_short_data_is_a_schema_error():
    with pytest.raises(SchemaError, match="needs 12"):
        decode_data(bytes(11), DType.INT48, (2,))


# ---- file forms --------------------------------------------------------------------------
def _reshape_graph():
    b = GraphBuilder()
    x = b.input((1, 4, 4, 2), DType.INT16, name="x")
    b.output(b.reshape(x, (4, 8)))
    return b.build()


def test_shape_values_go_to_block_shapes_by_default():
    g = _reshape_graph()
    raw = reader.read_root(g.to_bytes())["regions"][0]["blocks"][0]
    assert [s["name"] for s in raw["shapes"]] == ["shape_1"]
    assert raw["shapes"][0]["rank"] == 2
    assert raw["shapes"][0]["data"] == np.array([4, 8], "<i8").tobytes()
    assert "shape_1" not in [t["name"] for t in raw["tensors"]]
    g2 = load(g.to_bytes())
    assert g2 == g and g2.tensors["shape_1"].extra == {"shape_table": True}


def test_old_shape_tensor_form_round_trips_in_that_form():
    """Older serializers wrote shape values as TosaTensor of DType SHAPE with data."""
    g = _reshape_graph()
    g.tensors["shape_1"].extra["shape_table"] = False
    data = g.to_bytes()
    raw = reader.read_root(data)["regions"][0]["blocks"][0]
    assert raw["shapes"] == []
    t = next(t for t in raw["tensors"] if t["name"] == "shape_1")
    assert t["type"] == DType.SHAPE and t["shape"] == (2,)
    g2 = load(data)
    assert g2.tensors["shape_1"].extra["shape_table"] is False
    assert g2.tensors["shape_1"].data.tolist() == [4, 8]
    assert g2 == g
    assert g2.to_bytes() == data                    # stays in the tensor form


def test_old_shape_tensor_form_runs_on_reference_model():
    trm = pytest.importorskip("tosa_reference_model")
    g = _reshape_graph()
    g.tensors["shape_1"].extra["shape_table"] = False
    x = np.arange(32, dtype=np.int16).reshape(1, 4, 4, 2)
    outs, status = trm.run(load(g.to_bytes()).to_bytes(), [x])
    assert status.name == "TOSA_VALID"
    assert np.array_equal(outs[0], x.reshape(4, 8))


def test_dataless_shape_value_loads():
    g = _reshape_graph()
    shp = g.tensors["shape_1"]
    g.main.operators = [o for o in g.operators if o.op != Op.CONST_SHAPE]
    g.main.inputs.append("shape_1")                 # a shape input: no data
    shp.data = None
    shp.extra["shape_table"] = True
    g2 = load(g.to_bytes())
    t = g2.tensors["shape_1"]
    assert t.dtype == DType.SHAPE and t.data is None and t.shape == (2,)
    assert g2 == g


def _tosa_tools_graph():
    """conv2d int16 x int8 -> int48 (int48 bias), RESCALE scale16 -> int16, RESHAPE, made with
    the tosa-tools C++ serializer at its defaults (TOSA 1.1.0 draft)."""
    ts = pytest.importorskip("tosa_serializer")
    rng = np.random.default_rng(1)
    s = ts.TosaSerializer()
    x = s.addPlaceholder([1, 4, 4, 3], ts.DType.INT16)
    w = s.addConst([2, 3, 3, 3], ts.DType.INT8, rng.integers(-127, 128, (2, 3, 3, 3)))
    bias = s.addConst([2], ts.DType.INT48, np.array([-(1 << 40), 12345], np.int64))
    izp = s.addConst([1], ts.DType.INT16, np.array([0], np.int16))
    wzp = s.addConst([1], ts.DType.INT8, np.array([0], np.int8))
    acc = s.addIntermediate([1, 4, 4, 2], ts.DType.INT48)
    a = ts.TosaSerializerAttribute()
    a.Conv2dAttribute([1, 1, 1, 1], [1, 1], [1, 1], False, ts.DType.INT48)
    s.addOperator(ts.Op.CONV2D, [x.name, w.name, bias.name, izp.name, wzp.name], [acc.name], a)
    mult = s.addConst([1], ts.DType.INT16, np.array([1 << 14], np.int16))
    shift = s.addConst([1], ts.DType.INT8, np.array([30], np.int8))
    rzp_in = s.addConst([1], ts.DType.INT48, np.array([0], np.int64))
    rzp_out = s.addConst([1], ts.DType.INT16, np.array([0], np.int16))
    y = s.addIntermediate([1, 4, 4, 2], ts.DType.INT16)
    a = ts.TosaSerializerAttribute()
    a.RescaleAttribute(False, ts.RoundingMode.SINGLE_ROUND, False, False, False)
    s.addOperator(ts.Op.RESCALE, [acc.name, mult.name, shift.name, rzp_in.name, rzp_out.name],
                  [y.name], a)
    shp = s.addConst([2], ts.DType.SHAPE, np.array([4, 8], np.int64))
    z = s.addIntermediate([4, 8], ts.DType.INT16)
    a = ts.TosaSerializerAttribute()
    a.ReshapeAttribute()
    s.addOperator(ts.Op.RESHAPE, [y.name, shp.name], [z.name], a)
    s.addOutputTensor(z)
    return bytes(s.serialize())


def test_tosa_tools_1_1_draft_file_loads_and_round_trips():
    data = _tosa_tools_graph()
    g = load(data)
    assert g.version == Version(1, 1, 0, True)
    assert g.software_version[:3] == (2026, 8, 0)
    assert g.compatibility is not None
    assert g.op_counts() == {"CONST": 8, "CONST_SHAPE": 1, "CONV2D": 1, "RESCALE": 1,
                             "RESHAPE": 1}
    bias = next(t for t in g.tensors.values() if t.dtype == DType.INT48 and t.data is not None
                and t.shape == (2,))
    assert bias.data.tolist() == [-(1 << 40), 12345]
    shp = next(t for t in g.tensors.values() if t.dtype == DType.SHAPE)
    assert shp.extra["shape_table"] is True and shp.data.tolist() == [4, 8]
    again = load(g.to_bytes())
    assert again == g
    assert again.software_version == g.software_version
    assert again.compatibility == g.compatibility


def test_tosa_tools_file_rewritten_runs_bit_identically():
    trm = pytest.importorskip("tosa_reference_model")
    data = _tosa_tools_graph()
    x = np.random.default_rng(2).integers(-32768, 32768, (1, 4, 4, 3)).astype(np.int16)
    o1, s1 = trm.run(data, [x])
    o2, s2 = trm.run(load(data).to_bytes(), [x])
    assert s1.name == s2.name == "TOSA_VALID"
    assert o1[0].dtype == o2[0].dtype == np.int16
    assert np.array_equal(o1[0], o2[0])


# ---- versions ------------------------------------------------------------------------------
def test_version_default_and_override():
    g = _reshape_graph()
    assert load(g.to_bytes()).version == Version(1, 0, 0, False)
    assert load(g.to_bytes(version=(1, 1, 0, True))).version == Version(1, 1, 0, True)
    assert load(g.to_bytes(version=(1, 0, 1))).version == Version(1, 0, 1, False)
    raw = reader.read_root(g.to_bytes())["version"]
    assert (raw["_major"], raw["_minor"], raw["_patch"], raw["_draft"]) == (1, 0, 0, False)


def test_version_2_is_rejected():
    with pytest.raises(SchemaError, match="not a TOSA 1.x"):
        load(_reshape_graph().to_bytes(version=(2, 0, 0, False)))


# ---- regions and blocks ------------------------------------------------------------------
def _sub_region(name, op):
    b = GraphBuilder()
    b.block.name = name
    x = b.input((2, 3), DType.INT32, name=f"a_{name}")
    y = b.input((2, 3), DType.INT32, name=f"b_{name}")
    b.output(b.op(op, [x, y], (2, 3), DType.INT32, name=f"r_{name}"))
    return Region(name, [b.block])


def _cond_if_graph():
    b = GraphBuilder()
    c = b.input((), DType.BOOL, name="cond")
    x = b.input((2, 3), DType.INT32, name="x")
    y = b.input((2, 3), DType.INT32, name="y")
    b.output(b.op(Op.COND_IF, [c, x, y], (2, 3), DType.INT32,
                  dict(then_graph="then_r", else_graph="else_r"), name="out"))
    g = b.build()
    g.regions += [_sub_region("then_r", Op.ADD), _sub_region("else_r", Op.SUB)]
    return g


def test_regions_round_trip():
    g = _cond_if_graph()
    g2 = load(g.to_bytes())
    assert g2 == g
    assert [r.name for r in g2.regions] == ["main", "then_r", "else_r"]
    assert g2.find_block("then_r").operators[0].op == Op.ADD
    assert g2.operators[-1].attrs == {"then_graph": "then_r", "else_graph": "else_r"}


def test_regions_run_on_reference_model():
    trm = pytest.importorskip("tosa_reference_model")
    data = _cond_if_graph().to_bytes()
    x = np.arange(6, dtype=np.int32).reshape(2, 3)
    y = np.full((2, 3), 10, np.int32)
    for cond, want in ((True, x + y), (False, x - y)):
        outs, status = trm.run(data, [np.array(cond), x, y])
        assert status.name == "TOSA_VALID" and np.array_equal(outs[0], want)


def test_while_loop_blocks_kept():
    g = _cond_if_graph()
    g.main.operators[-1].op = Op.WHILE_LOOP
    g.main.operators[-1].attrs = {"cond_graph": "then_r", "body_graph": "else_r"}
    g.regions[1].blocks.append(_sub_region("extra_block", Op.MUL).blocks[0])
    g2 = load(g.to_bytes())
    assert g2 == g and len(g2.regions[1].blocks) == 2
    assert g2.find_block("extra_block").name == "extra_block"


# ---- fields kept on round trip -----------------------------------------------------------
def test_optional_fields_kept():
    g = _reshape_graph()
    g.software_version = (2026, 8, 0, "rc1")
    g.compatibility = {"min_reader_version": (2026, 5, 0, ""), "features": 1}
    g.operators[-1].location = "model.py:12"
    t = g.tensors["x"]
    t.extra.update(offset=64, size=128)
    g.tensors["reshape_2"].variable = True
    g.tensors["reshape_2"].variable_name = "state"
    g2 = load(g.to_bytes())
    assert g2 == g
    assert g2.software_version == (2026, 8, 0, "rc1")
    assert g2.compatibility == g.compatibility
    assert g2.tensors["x"].extra == {"offset": 64, "size": 128}
    assert g2.operators[-1].location == "model.py:12"


def test_raw_data_of_uncomputed_types_kept():
    b = GraphBuilder()
    b.block.tensors["w"] = __import__("tosaint.graph", fromlist=["Tensor"]).Tensor(
        "w", (4,), DType.BF16, None, extra={"raw_data": bytes(range(8))})
    b.block.operators.append(__import__("tosaint.graph", fromlist=["Operator"]).Operator(
        Op.CONST, [], ["w"], {}))
    b.output("w")
    g = b.build()
    g2 = load(g.to_bytes())
    assert g2.tensors["w"].extra["raw_data"] == bytes(range(8))
    assert g2.to_bytes() == g.to_bytes()


# ---- ExecuTorch exports (tests/data/executorch, made by benchmarks/executorch_export.py) --
ET_MODELS = sorted(p.parent.name for p in (DATA / "executorch").glob("*/model.tosa"))


@pytest.mark.parametrize("name", ET_MODELS)
def test_executorch_file_loads_and_round_trips(name):
    d = DATA / "executorch" / name
    meta = json.loads((d / "meta.json").read_text())
    g = load(d / "model.tosa")
    assert g.version == Version(1, 0, 0, False)
    assert g.inputs == [i["name"] for i in meta["inputs"]]
    assert g.outputs == [o["name"] for o in meta["outputs"]]
    for i in meta["inputs"]:
        t = g.tensors[i["name"]]
        assert (t.dtype.name, list(t.shape)) == (i["dtype"], i["shape"])
    assert load(g.to_bytes()) == g


@pytest.mark.parametrize("name", ET_MODELS)
def test_executorch_file_rewritten_runs_bit_identically(name):
    trm = pytest.importorskip("tosa_reference_model")
    d = DATA / "executorch" / name
    meta = json.loads((d / "meta.json").read_text())
    inputs = [np.load(d / i["file"]) for i in meta["inputs"]]
    outs, status = trm.run(load(d / "model.tosa").to_bytes(), inputs)
    assert status.name == "TOSA_VALID"
    for o, got in zip(meta["outputs"], outs):
        want = np.load(d / o["file"])
        assert got.shape == want.shape and got.dtype == want.dtype
        assert np.array_equal(got, want)


# ---- errors --------------------------------------------------------------------------------
def test_not_a_tosa_file():
    with pytest.raises(SchemaError, match="file identifier"):
        load(b"\x10\x00\x00\x00ABCD" + bytes(32))
    with pytest.raises(SchemaError, match="too short"):
        load(b"TOSA")


def test_unreadable_path(tmp_path):
    with pytest.raises(SchemaError, match="cannot read"):
        load(tmp_path / "missing.tosa")
    with pytest.raises(SchemaError, match="cannot read"):
        load(tmp_path)                               # a directory
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(SchemaError, match="not a regular file"):
        load(fifo)                                   # would block forever if opened
    with pytest.raises(SchemaError, match="not a regular file"):
        load("/dev/zero")                            # would never end


def test_read_model_file_reads_exactly_the_file(tmp_path, monkeypatch):
    from tosaint.schema import loader
    data = _reshape_graph().to_bytes()
    p = tmp_path / "m.tosa"
    p.write_bytes(data)
    assert loader.read_model_file(p) == data and loader.read_model_file(str(p)) == data
    assert load(p) == load(data)
    monkeypatch.setattr(loader, "MAX_FILE_BYTES", len(data) - 1)   # checked with stat first
    with pytest.raises(SchemaError, match="larger than"):
        loader.read_model_file(p)
    for bad in ("/dev/zero", tmp_path):
        with pytest.raises(SchemaError, match="cannot read"):
            loader.read_model_file(bad)


def test_path_load_under_a_small_address_space_limit(tmp_path):
    """A path load reserves no more than the file's size (it used to ask for 4 GiB)."""
    import subprocess
    import sys
    p = tmp_path / "m.tosa"
    p.write_bytes(_reshape_graph().to_bytes())
    code = ("import resource, sys; lim = 1 << 30; "
            "resource.setrlimit(resource.RLIMIT_AS, (lim, lim)); "
            "from tosaint.schema.loader import load; "
            f"print(load({str(p)!r}).op_counts())")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "RESHAPE" in r.stdout


def _const_graph():
    b = GraphBuilder()
    x = b.input((2, 3), DType.INT32, name="x")
    c8 = b.const(np.arange(-3, 3).reshape(2, 3), DType.INT8, name="c8")
    c16 = b.const(np.arange(6).reshape(2, 3) * 1000, DType.INT16, name="c16")
    c32 = b.const(np.arange(6).reshape(2, 3) - (1 << 30), DType.INT32, name="c32")
    c48 = b.const(np.array([-(1 << 47), (1 << 47) - 1, -1, 0, 1, 5]).reshape(2, 3), DType.INT48,
                  name="c48")
    cb = b.const(np.array([1, 0, 1, 1, 0, 0], bool).reshape(2, 3), DType.BOOL, name="cb")
    b.output(b.op(Op.ADD, [x, c32], (2, 3), DType.INT32, name="y"))
    g = b.build()
    return g, {n: g.tensors[n].data for n in ("c8", "c16", "c32", "c48", "cb")}


def test_constants_are_read_only_views_of_the_file():
    g, want = _const_graph()
    data = g.to_bytes()
    g2 = load(data)
    whole = np.frombuffer(data, np.uint8)
    for name, values in want.items():
        got = g2.tensors[name].data
        assert got.dtype == values.dtype and np.array_equal(got, values), name
        assert not got.flags.writeable, name
        with pytest.raises(ValueError):
            got[0, 0] = 1
        # natively stored dtypes are zero-copy views of the bytes; int48 and bool are decoded
        assert np.shares_memory(got, whole) == (name in ("c8", "c16", "c32")), name
        assert got.flags.aligned, name


def test_constants_never_alias_a_mutable_buffer():
    g, want = _const_graph()
    buf = bytearray(g.to_bytes())
    g2 = load(buf)
    buf[:] = bytes(len(buf))                        # the caller reuses its buffer
    for name, values in want.items():
        assert np.array_equal(g2.tensors[name].data, values), name
    assert load(memoryview(g.to_bytes())) == g


def test_unaligned_constant_data_is_copied_aligned():
    """A writer that does not align ``data`` (not force_align 8) still gives aligned arrays."""
    from tosaint.schema.loader import decode_data
    raw = memoryview(bytes(1) + np.arange(6, dtype="<i4").tobytes())[1:]
    arr = decode_data(raw, DType.INT32, (2, 3))
    assert arr.flags.aligned and not arr.flags.writeable
    assert arr.tolist() == [[0, 1, 2], [3, 4, 5]]


def test_shared_vtables_of_different_tables():
    """The C++ serializer shares identical vtables between tables of different kinds: the
    reader's compiled layouts are per table kind."""
    data = _tosa_tools_graph()
    a, b = load(data), load(data)
    assert a == b and load(a.to_bytes()) == a


def test_huge_tensor_rejected_before_allocation():
    b = GraphBuilder()
    x = b.input((1 << 20, 1 << 20), DType.INT16, name="x")   # 2^40 elements
    b.output(b.identity(x))
    with pytest.raises(SchemaError, match="more than"):
        load(b.build().to_bytes())


def test_empty_tensor_with_huge_dims_rejected():
    """Zero elements, but dims no array can have (found by the fuzz target: numpy raised
    ValueError "array is too big" from the loader)."""
    for shape in [(0, (1 << 31) - 1, (1 << 31) - 1), (1 << 20, 0, 1 << 20, 1 << 20)]:
        b = GraphBuilder()
        x = b.input((2,), DType.INT8, name="x")
        c = b.const(np.zeros((0,), np.int8), DType.INT8, name="c")
        b.output(b.identity(x))
        g = b.build()
        g.tensors["c"].shape = shape
        g.tensors["c"].data = np.zeros(0, np.int8)
        with pytest.raises(SchemaError, match="multiply to more than"):
            load(g.to_bytes())
    b = GraphBuilder()
    b.output(b.identity(b.input((0, 1 << 16), DType.INT8, name="x")))
    assert load(b.build().to_bytes()).tensors["x"].shape == (0, 1 << 16)


def test_dangling_tensor_name_and_cycle():
    g = _reshape_graph()
    g.operators[-1].inputs[0] = "nowhere"
    with pytest.raises(SchemaError, match="'nowhere'.*not declared"):
        load(g.to_bytes())
    b = GraphBuilder()
    x = b.input((2,), DType.INT32, name="x")
    a = b.op(Op.ADD, [x, "c"], (2,), DType.INT32, name="a")
    b.op(Op.ADD, [x, a], (2,), DType.INT32, name="c")
    b.output("c")
    with pytest.raises(SchemaError, match="cycle"):
        load(b.build().to_bytes())


def test_wrong_attribute_union_type():
    g = _reshape_graph()
    data = bytearray(g.to_bytes())
    # find the RESHAPE operator's union type byte (57) in its table and change it to 3
    root = reader.read_root(bytes(data))
    assert root["regions"][0]["blocks"][0]["operators"][1]["attribute_type"] == Op.RESHAPE
    for new in (3, 200):
        d = _patch_union_type(data, Op.RESHAPE, new)
        with pytest.raises(SchemaError, match="attribute|union"):
            load(d)


def _patch_union_type(data, old, new):
    """Change the attribute_type byte of the first operator whose op is ``old``."""
    from flatbuffers import encode
    from flatbuffers import number_types as N
    buf = reader._Buf(bytes(data))
    root = buf.follow(0, "")

    def field(pos, slot):
        vt = pos - encode.Get(N.SOffsetTFlags.packer_type, data, pos)
        vt_len = encode.Get(N.VOffsetTFlags.packer_type, data, vt)
        off = 4 + 2 * slot
        rel = encode.Get(N.VOffsetTFlags.packer_type, data, vt + off) if off < vt_len else 0
        return pos + rel if rel else None

    def vec(pos):
        v = buf.follow(pos, "")
        n = encode.Get(N.UOffsetTFlags.packer_type, data, v)
        return [buf.follow(v + 4 + 4 * i, "") for i in range(n)]

    region = vec(field(root, 1))[0]
    block = vec(field(region, 1))[0]
    for op in vec(field(block, 1)):
        if encode.Get(N.Uint32Flags.packer_type, data, field(op, 0)) == old:
            out = bytearray(data)
            out[field(op, 1)] = new
            return bytes(out)
    raise AssertionError("operator not found")


def test_every_schema_error_is_a_tosa_error():
    assert issubclass(SchemaError, TosaError)
    assert len(ATTRIBUTES) == len(Op) - 1


# ---- tosaint inspect -----------------------------------------------------------------------
def test_inspect_text_and_json(tmp_path, capsys):
    from tosaint.cli import main
    g = _cond_if_graph()
    g.software_version = (2026, 8, 0, "")
    path = tmp_path / "m.tosa"
    g.save(path, version=(1, 1, 0, True))
    assert main(["inspect", str(path)]) == 0
    text = capsys.readouterr().out
    assert "TOSA version 1.1.0 (draft), written by serializer 2026.8.0" in text
    assert "  cond: bool []" in text and "  out: int32 [2, 3]" in text
    assert "COND_IF  1" in text and "regions: 3, blocks: 3" in text
    assert main(["inspect", str(path), "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["tosa_version"] == {"major": 1, "minor": 1, "patch": 0, "draft": True,
                                 "text": "1.1.0 (draft)"}
    assert s["inputs"] == [{"name": "cond", "dtype": "BOOL", "shape": []},
                           {"name": "x", "dtype": "INT32", "shape": [2, 3]},
                           {"name": "y", "dtype": "INT32", "shape": [2, 3]}]
    assert s["op_counts"] == {"ADD": 1, "COND_IF": 1, "SUB": 1}
    assert s["region_count"] == 3 and s["block_count"] == 3
    assert s["constants"] == {"tensors": 0, "bytes": 0, "bytes_by_dtype": {}}


def test_inspect_constant_bytes(tmp_path, capsys):
    from tosaint.cli import main
    b = GraphBuilder()
    x = b.input((1, 2, 2, 3), DType.INT16, name="x")
    w = b.const(np.ones((5, 1, 1, 3)), DType.INT8)                      # 15 bytes
    bias = b.const(np.zeros(5), DType.INT48)                           # 30 bytes
    b.output(b.conv2d(x, w, bias))                                     # zero points 2 + 1
    path = tmp_path / "c.tosa"
    b.build().save(path)
    assert main(["inspect", str(path), "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["constants"] == {"tensors": 4, "bytes": 48,
                              "bytes_by_dtype": {"INT16": 2, "INT48": 30, "INT8": 16}}
    assert s["outputs"][0]["dtype"] == "INT48" and s["outputs"][0]["shape"] == [1, 2, 2, 5]
    assert s["software_version"] is None and s["tosa_version"]["text"] == "1.0.0"


def test_inspect_bad_file_exit_code(tmp_path, capsys):
    from tosaint.cli import main
    p = tmp_path / "bad.tosa"
    p.write_bytes(b"\x00" * 64)
    assert main(["inspect", str(p)]) == 2
    assert "SchemaError" in capsys.readouterr().err


def test_fields_of_a_newer_schema_are_reported(tmp_path, capsys):
    """A newer writer may append fields; tosaint reads the file, names what it dropped."""
    from tosaint.cli import main
    from tosaint.schema import writer
    from tosaint.schema.definition import TABLES
    g = _reshape_graph()
    real = TABLES["TosaTensor"]
    TABLES["TosaTensor"] = real + (("future_field", "uint32"),)
    try:
        g.tensors["x"].extra["future_field"] = 7
        orig = writer._tensor_dict

        def with_future(t):
            d = orig(t)
            d["future_field"] = t.extra.get("future_field")
            return d
        writer._tensor_dict = with_future
        data = g.to_bytes()
    finally:
        TABLES["TosaTensor"] = real
        writer._tensor_dict = orig
        g.tensors["x"].extra.clear()
    g2 = load(data)
    assert g2 == g
    assert g2.dropped_fields == ["TosaGraph.regions[0].blocks[0].tensors[0]: slot 14"]
    assert load(g2.to_bytes()).dropped_fields == []
    p = tmp_path / "new.tosa"
    p.write_bytes(data)
    assert main(["inspect", str(p)]) == 0
    assert "fields unknown to tosaint (not kept on rewrite): 1" in capsys.readouterr().out


def test_python_serializer_file_loads():
    """tosa-tools' (deprecated) pure-Python serializer: int48/int4/bool constants, a shape."""
    ser = pytest.importorskip("serializer.tosa_serializer")
    from tosa.DType import DType as TD
    from tosa.Op import Op as TO
    s = ser.TosaSerializer("")
    x = s.addPlaceholder([1, 4], TD.INT16, None)
    s.addConst([4], TD.INT48, np.array([-(1 << 47), 1, -1, (1 << 47) - 1], np.int64))
    s.addConst([3], TD.INT4, np.array([-7, 7, 1], np.int8))
    s.addConst([3], TD.BOOL, np.array([True, False, True]))
    shp = s.addConst([2], TD.SHAPE, np.array([2, 2], np.int64))
    y = s.addIntermediate([2, 2], TD.INT16)
    a = ser.TosaSerializerAttribute()
    a.ReshapeAttribute()
    s.addOperator(TO.RESHAPE, [x.name, shp.name], [y.name], a)
    s.addOutputTensor(y)
    g = load(bytes(s.serialize()))
    assert g.software_version is not None
    got = {t.name: t.data.tolist() for t in g.tensors.values() if t.data is not None}
    assert got == {"const-0": [-(1 << 47), 1, -1, (1 << 47) - 1], "const-1": [-7, 7, 1],
                   "const-2": [True, False, True], "const-3": [2, 2]}
    assert g.tensors["const-3"].extra == {"shape_table": True}
    assert load(g.to_bytes()) == g


def test_a_string_named_over_and_over_is_refused_before_it_is_decoded():
    """Regression: a vector naming one long string thousands of times (the writer shares it)
    used to decode every copy before the decoding budget was checked (here 4 GB of text from a
    300 KB file); it must fail with a SchemaError at once."""
    import time

    from tosaint.graph import Operator
    from tosaint.schema.writer import write_graph
    name = "x" * 200_000
    b = GraphBuilder()
    b.input((1,), DType.INT8, name=name)
    g = b.build()
    g.main.operators.append(Operator(Op.CONCAT, [name] * 20_000, [name], {"axis": 0}))
    data = write_graph(g)
    assert len(data) < 400_000
    t0 = time.process_time()
    with pytest.raises(SchemaError, match="over and over"):
        load(data)
    assert time.process_time() - t0 < 0.5


# ---- the bulk (column-wise) reader against the careful one --------------------------------
def _mixed_graph():
    """Enough tensors and operators for whole columns, with fields present in some rows only
    (data, locations, variable flags, extra fields), several attribute kinds, custom bytes."""
    from tosaint.graph import Operator, Tensor
    rng = np.random.default_rng(3)
    b = GraphBuilder()
    x = b.input((1, 4, 4, 8), DType.INT8, name="x")
    for i in range(20):
        w = b.const(rng.integers(-127, 128, (8, 1, 1, 8)), DType.INT8)
        bias = b.const(rng.integers(-100, 100, 8), DType.INT48 if i % 3 else DType.INT32)
        y = b.conv2d(x, w, bias)
        x = b.rescale(y, [1 << 20] * 8 if i % 2 else 1 << 20, 30, DType.INT8)
        if i % 4 == 0:
            x = b.op(Op.CLAMP, [x], (1, 4, 4, 8), DType.INT8,
                     dict(min_val=b"\x80", max_val=b"\x7f", nan_mode=0), location=f"f.py:{i}")
        if i % 5 == 0:
            x = b.reshape(b.reshape(x, (4, 4, 8)), (1, 4, 4, 8))
    b.output(x)
    g = b.build()
    blk = g.main
    for i, o in enumerate(blk.operators):
        if i % 3 == 0:
            o.location = f"f.py:{i}" if i % 2 else "\u00e9\u00e8"     # (UTF-8 of two bytes)
    blk.tensors["state"] = Tensor("state", (2,), DType.INT16, variable=True,
                                  variable_name="state_var")
    blk.tensors["c"] = Tensor("c", (2,), DType.INT8, data=np.array([1, 2], np.int8),
                              extra={"offset": 64, "size": 2})
    blk.operators.insert(0, Operator(Op.CUSTOM, ["x"], ["cu"], dict(
        operator_name="op", domain_name="dom", implementation_attrs=b"\x01\x00")))
    blk.tensors["cu"] = Tensor("cu", (2,), DType.INT8)
    return g.to_bytes()


def _bulk_files():
    files = {p.parent.name: p.read_bytes() for p in sorted(DATA.glob("executorch/*/model.tosa"))}
    files["mixed"] = _mixed_graph()
    files["tosa-tools"] = _tosa_tools_graph()
    files["const"] = _const_graph()[0].to_bytes()
    files["cond_if"] = _cond_if_graph().to_bytes()
    files["shapes"] = _reshape_graph().to_bytes()
    return files


def test_bulk_reader_reads_valid_files_as_the_careful_reader_does():
    """``read_columns`` reads whole columns at once; on these files it must not decline (fall
    back to the careful reader), and must give exactly what the careful reader gives."""
    for name, data in _bulk_files().items():
        bulk = reader._read_bulk(reader._header(data))          # raises _Slow if it declines
        careful = reader._as_columns(reader.read_root(data, spans=True), "TosaGraph")
        assert bulk == careful, name


def test_bulk_reader_and_careful_reader_agree_on_corrupt_files():
    """Mutants of real files: ``read_columns`` gives what the careful reader gives, or the same
    SchemaError (the bulk reader declines every file it does not fully check)."""
    rng = np.random.default_rng(7)
    outcomes = {"same": 0, "error": 0}
    for data in list(_bulk_files().values())[-5:]:
        for _ in range(150):
            b = bytearray(data)
            if rng.integers(2):
                for f in rng.integers(0, 8 * len(b), rng.integers(1, 4)):
                    b[f // 8] ^= 1 << (f % 8)
            else:
                pos = int(rng.integers(len(b) // 4)) * 4
                b[pos:pos + 4] = int(rng.choice([0, 4, 0xFFFF, 1 << 20, 0xFFFFFFFF])).to_bytes(
                    4, "little")
            b = bytes(b)
            try:
                want = reader._as_columns(reader.read_root(b, spans=True), "TosaGraph")
            except (SchemaError, RecursionError) as e:
                with pytest.raises(type(e)) as got:
                    reader.read_columns(b)
                assert str(got.value) == str(e)
                outcomes["error"] += 1
                continue
            assert reader.read_columns(b) == want
            outcomes["same"] += 1
    assert outcomes["same"] > 50 and outcomes["error"] > 50, outcomes


def test_overlapping_fields_then_one_far_outside_its_table():
    """Regression (found by the reader-agreement fuzzing): in a vtable whose fields overlap
    (then read one by one), the fields after the overlap were not checked against the table's
    size, and one far past the end of the file raised struct.error instead of a SchemaError."""
    import struct
    b = GraphBuilder()
    x = b.input((2,), DType.INT8, name="x")
    b.output(b.identity(x))
    data = bytearray(b.build().to_bytes())

    def field(pos, slot):
        vt = pos - struct.unpack_from("<i", data, pos)[0]
        off = struct.unpack_from("<H", data, vt + 4 + 2 * slot)[0]
        return pos + off + struct.unpack_from("<I", data, pos + off)[0]

    def first(vec):
        return vec + 4 + struct.unpack_from("<I", data, vec + 4)[0]

    block = first(field(first(field(struct.unpack_from("<I", data, 0)[0], 1)), 1))
    tensor = first(field(block, 2))
    vt = tensor - struct.unpack_from("<i", data, tensor)[0]
    name_off = struct.unpack_from("<H", data, vt + 4)[0]
    # shape (slot 1) on top of name (slot 0), type (slot 2) far past the table and the file
    struct.pack_into("<HH", data, vt + 6, name_off, 0xFFF0)
    with pytest.raises(SchemaError, match="outside its table"):
        load(bytes(data))
    with pytest.raises(SchemaError, match="outside its table"):
        reader.read_root(bytes(data))
