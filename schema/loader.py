"""``load(src) -> Graph``: read a ``.tosa`` file (path, bytes or bytearray) into the graph model.

Accepts files written by the tosa-tools 2026.x serializers (1.0.x and 1.1.0 draft; shape values
in ``block.shapes`` or as SHAPE tensors) and by the ExecuTorch Arm backend (1.0.0).  Constant
data becomes read-only arrays: views of the file's bytes where the storage dtype is the file's
encoding, decoded (vectorised) otherwise; every size is checked before anything is allocated.
``read_model_file`` is the one place a model file is opened.
"""
import os
import stat
from math import prod

import numpy as np

from tosaint.errors import SchemaError
from tosaint.gc_pause import gc_paused
from tosaint.graph import Block, Graph, Operator, Region, Tensor, Version

from . import reader
from .definition import ATTRIBUTES, DType, Op

#: refuse tensors with more elements than this (before any allocation); see ``load``
MAX_ELEMENTS = 1 << 32
#: refuse files larger than this many bytes (data of > 2 GB lives outside flatbuffers anyway)
MAX_FILE_BYTES = 1 << 32

_BYTES = {DType.BOOL: 1, DType.INT8: 1, DType.INT16: 2, DType.INT32: 4, DType.INT48: 6,
          DType.SHAPE: 8, DType.INT64: 8, DType.FP32: 4, DType.FP16: 2, DType.BF16: 2,
          DType.FP8E4M3: 1, DType.FP8E5M2: 1}
_NATIVE = {d: np.dtype(code) for d, code in (
    (DType.INT8, "<i1"), (DType.INT16, "<i2"), (DType.INT32, "<i4"), (DType.SHAPE, "<i8"),
    (DType.INT64, "<i8"), (DType.FP32, "<f4"), (DType.FP16, "<f2"))}
_NATIVE_SIZE = {d: (dt, dt.itemsize) for d, dt in _NATIVE.items()}


def encoded_size(dtype, count):
    """Bytes that ``count`` elements of ``dtype`` take in ``TosaTensor.data``."""
    if dtype == DType.INT4:
        return (count + 1) // 2
    return count * _BYTES[dtype]


def _readonly(arr):
    arr.flags.writeable = False
    return arr


def _native(raw, dtype, count, shape):
    arr = np.frombuffer(raw, dtype=dtype, count=count).reshape(shape)
    flags = arr.flags
    if flags.writeable or not flags.aligned:
        # a mutable source must not alias; an unaligned one is copied (one array layout)
        arr = _readonly(arr.copy())
    return arr


def decode_data(raw, dtype, shape, where="tensor"):
    """Decode little-endian constant bytes into the dtype's storage array of ``shape``.

    The result is read-only.  For dtypes stored natively (int8/16/32/64, fp16/32, shape) it is a
    view of ``raw`` when ``raw`` is immutable and suitably aligned, so ``raw`` must not change
    afterwards; int48, int4 and bool are decoded (vectorised) into a new array.
    """
    count = 1
    for d in shape:
        count *= int(d)
    native = _NATIVE.get(dtype)
    if native is not None and len(raw) >= count * native.itemsize:    # the common case
        return _native(raw, native, count, shape)
    if dtype.__class__ is not DType:
        dtype = DType(dtype)
    if dtype == DType.UNKNOWN:
        raise SchemaError(f"{where}: constant data of type UNKNOWN")
    if dtype not in _BYTES and dtype != DType.INT4:
        return None  # FP6/FP4/MX block types: kept as raw bytes, tosaint computes nothing on them
    need = encoded_size(dtype, count)
    if len(raw) < need:
        raise SchemaError(f"{where}: data has {len(raw)} bytes, but shape {list(shape)} of "
                          f"{dtype.name} needs {need}")
    if dtype in _NATIVE:
        return _native(raw, _NATIVE[dtype], count, shape)
    buf = np.frombuffer(raw, dtype=np.uint8, count=need)
    if dtype == DType.BOOL:
        arr = buf != 0
    elif dtype == DType.INT48:
        # six little-endian bytes per value: the top six of eight, then an arithmetic shift
        # right by 16 bits drops the two low bytes and copies the sign bit
        b = np.empty((count, 8), np.uint8)
        b[:, 2:] = buf.reshape(count, 6)
        arr = b.view("<i8").reshape(count).astype(np.int64, copy=False)
        arr >>= 16
    elif dtype == DType.INT4:
        nib = np.empty(2 * need, np.int8)
        nib[0::2] = (buf & 0xF).astype(np.int8)
        nib[1::2] = (buf >> 4).astype(np.int8)
        arr = ((nib[:count] ^ 8) - 8).astype(np.int8)  # sign-extend the nibble
        if (arr == -8).any():
            raise SchemaError(f"{where}: int4 data holds -8, which TOSA excludes (range -7..7)")
    else:  # BF16 / FP8: kept as raw bytes, tosaint computes nothing on them
        return None
    return _readonly(arr.reshape(shape))


def read_model_file(path):
    """The bytes of the model file at ``path``: the one place tosaint opens a model file.

    Only regular files are read (a directory, FIFO or device such as ``/dev/zero`` is refused
    before it is opened); the size is checked against ``MAX_FILE_BYTES`` with ``stat`` first,
    and exactly that many bytes are read, so nothing beyond the file's size is ever reserved.
    """
    path = os.fspath(path)
    try:
        st = os.stat(path)
    except (OSError, ValueError) as e:
        raise SchemaError(f"{path}: cannot read ({getattr(e, 'strerror', None) or e})") from None
    if not stat.S_ISREG(st.st_mode):
        # a directory, a FIFO or a device like /dev/zero: reading it could block or never end
        raise SchemaError(f"{path}: cannot read (not a regular file)")
    if st.st_size > MAX_FILE_BYTES:
        raise SchemaError(f"{path}: {st.st_size} bytes is larger than a TOSA flatbuffer can be")
    try:
        # O_NONBLOCK: should the path have become a FIFO since the stat, opening must not hang
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with open(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise SchemaError(f"{path}: cannot read (not a regular file)")
            data = f.read(st.st_size)
            grew = f.read(1)
    except OSError as e:
        raise SchemaError(f"{path}: cannot read ({e.strerror})") from None
    if grew:
        raise SchemaError(f"{path}: the file changed while it was read")
    return data


def _read_src(src):
    if isinstance(src, bytes):
        return src
    if isinstance(src, (bytearray, memoryview)):
        return bytes(src)     # constants are views of the buffer: it must not change later
    return read_model_file(src)


def _fmt_shape(shape):
    if len(shape) <= 8:
        return str(list(shape))
    return f"[{', '.join(map(str, shape[:8]))}, ... ({len(shape)} dims)]"


def _shape(raw_shape, name, max_elements):
    shape = tuple(raw_shape)
    if shape and min(shape) < 0:
        raise SchemaError(f"tensor {name!r}: shape {_fmt_shape(shape)} has a negative dimension "
                          "(dynamic shapes are not supported)")
    # the non-zero dims count too: a zero-sized tensor with dims of 2^31 cannot be an array
    count = 1
    for d in shape:
        count *= d or 1
        if count > max_elements:  # stop early: a long list of huge dims must not cost time
            what = ("has dims that multiply to more than" if 0 in shape else "has more than")
            raise SchemaError(f"tensor {name!r}: shape {_fmt_shape(shape)} {what} the "
                              f"{max_elements} elements tosaint accepts")
    return shape


#: ``TosaTensor`` fields kept in ``Tensor.extra`` when set (for the round trip)
_EXTRA_FIELDS = ("offset", "size", "scale_type", "scale_offset", "scale_size", "block_shape",
                 "scale_data")
_TENSOR_FIELDS = ("name", "shape", "type", "data", "variable", "variable_name", "is_unranked")


def _tensors(cols, where, max_elements, file):
    """``{name: Tensor}`` of the rows of the ``TosaTensor`` columns ``cols`` read from ``file``
    (``data`` given as the ``range`` of its offsets in ``file``), in file order."""
    out = {}
    # natively stored constants are read-only views of the (immutable, aligned) file
    in_place = isinstance(file, bytes) and np.frombuffer(file, np.uint8).ctypes.data % 8 == 0
    natives = _NATIVE_SIZE if in_place else {}
    checked = {}                # shapes found good, one tuple each (tensors share a few shapes)
    shape_dtype = DType.SHAPE
    ndarray = np.ndarray
    for name, shape, dtype, span, variable, variable_name, unranked in zip(
            *(cols[k] for k in _TENSOR_FIELDS)):
        if not name:
            raise SchemaError(f"{where}: tensor without a name")
        same = checked.get(shape)
        if same is not None:
            shape = same
        elif len(shape) > 8 or (shape and min(shape) <= 0) or prod(shape) > max_elements:
            shape = _shape(shape, name, max_elements)       # checked in full (or refused)
        else:
            checked[shape] = shape
        extra = {}
        data = None
        # an absent data vector: not a constant; present, it must hold the elements (a constant
        # of zero elements has an empty vector)
        if span is not None and (span or 0 in shape):
            native = natives.get(dtype)
            if native is not None and not span.start % native[1] and \
                    len(span) >= prod(shape) * native[1]:
                data = ndarray(shape, native[0], file, span.start)      # the common case
            else:
                raw = memoryview(file)[span.start:span.stop]
                data = decode_data(raw, dtype, shape, f"tensor {name!r}")
                if data is None:
                    extra["raw_data"] = bytes(raw)
        if dtype is shape_dtype:
            # the older form: a shape value as a SHAPE tensor in block.tensors (not
            # block.shapes); the writer keeps it there
            extra["shape_table"] = False
        if name in out:
            raise SchemaError(f"{where}: tensor {name!r} is declared twice")
        out[name] = Tensor(name, shape, dtype, data, variable, variable_name or None, unranked,
                           extra)
    for k in _EXTRA_FIELDS:
        if any(cols[k]):
            for tensor, value in zip(out.values(), cols[k]):
                if value:
                    tensor.extra[k] = value
    return out


def _shape_value(s, where):
    """A ``TosaShape`` of ``block.shapes`` as a SHAPE tensor of shape (rank,).

    ``rank`` is the number of elements of the shape value; its data, when present, is int64.
    """
    name = s["name"]
    if not name:
        raise SchemaError(f"{where}: shape value without a name")
    rank = s["rank"]
    if rank > (1 << 16):
        raise SchemaError(f"shape {name!r}: rank {rank} is absurd")
    data = None
    if s["data"] is not None:
        raw = s["data"]
        if len(raw) < 8 * rank:
            raise SchemaError(f"shape {name!r}: data has {len(raw)} bytes, rank {rank} needs "
                              f"{8 * rank}")
        data = np.frombuffer(raw, "<i8", count=rank).astype(np.int64)
    return Tensor(name=name, shape=(rank,), dtype=DType.SHAPE, data=data,
                  extra={"shape_table": True})


def _operators(cols, where):
    """The ``Operator`` of each row of the ``TosaOperator`` columns ``cols``."""
    ops, attrs = cols["op"], cols["attribute"]
    if ops != cols["attribute_type"] or None in attrs:
        # an attribute absent or of another op (or the op UNKNOWN): defaults, or what is wrong
        attrs = [_attributes(op, utype, a, where, i) for i, (op, utype, a) in enumerate(zip(
            ops, cols["attribute_type"], attrs))]
    texts = [None if loc is None else loc["text"] for loc in cols["location"]]
    # the reader's lists and dicts are fresh: the operator owns them
    return list(map(Operator, ops, cols["inputs"], cols["outputs"], attrs, texts))


def _attributes(op, utype, attrs, where, i):
    """The attributes of operator ``i`` (``op``), its union holding ``utype``, ``attrs``."""
    if utype == op and attrs is not None:
        return attrs
    if not op:
        raise SchemaError(f"{where} operator {i}: operator UNKNOWN (0)")
    if utype != op and utype:
        try:
            got = ATTRIBUTES[Op(utype)][0]
        except ValueError:
            got = f"union type {utype}"
        raise SchemaError(f"{where} operator {i} ({op.name}): attribute is {got}, expected "
                          f"{ATTRIBUTES[op][0]}")
    if attrs is None:  # absent attribute table: every field takes its default
        attrs = {name: (() if t == "[int32]" else None if t in ("[ubyte]", "string") else
                        False if t == "bool" else 0) for name, t in ATTRIBUTES[op][1]}
    return attrs


def _check_block(block, graph_names, where):
    tensors = block.tensors
    produced = {}
    for i, o in enumerate(block.operators):
        for name in o.outputs:
            t = tensors.get(name)
            if t is None:
                if name not in graph_names:
                    raise SchemaError(f"{where}: operator {i} ({o.op.name}) writes tensor "
                                      f"{name!r}, which is not declared")
            elif t.variable:
                continue  # EXT-VARIABLE state: may be written repeatedly, is no data dependency
            if produced.setdefault(name, i) != i:
                raise SchemaError(f"{where}: tensor {name!r} is written by operator "
                                  f"{produced[name]} and by operator {i} ({o.op.name})")
    in_order = True      # every input produced by an earlier operator: file order is a schedule
    for i, o in enumerate(block.operators):
        for name in o.inputs:
            if produced.get(name, -1) >= i:
                in_order = False
            elif name not in tensors and name and name not in graph_names:
                raise SchemaError(f"{where}: operator {i} ({o.op.name}) reads tensor {name!r}, "
                                  "which is not declared")
    for name in block.inputs + block.outputs:
        if name not in tensors and name not in graph_names:
            raise SchemaError(f"{where}: block input/output {name!r} is not declared")
    if not in_order:
        _check_acyclic(block, produced, where)


def _check_acyclic(block, produced, where):
    """Kahn's algorithm: every operator must become ready."""
    waiting = {}
    indeg = []
    for i, o in enumerate(block.operators):
        deps = {produced[n] for n in o.inputs if n in produced}
        indeg.append(len(deps))
        for d in deps:
            waiting.setdefault(d, []).append(i)
    ready = [i for i, d in enumerate(indeg) if d == 0]
    done = 0
    while ready:
        i = ready.pop()
        done += 1
        for j in waiting.get(i, ()):
            indeg[j] -= 1
            if indeg[j] == 0:
                ready.append(j)
    if done != len(block.operators):
        stuck = [block.operators[i].name for i, d in enumerate(indeg) if d > 0][:3]
        raise SchemaError(f"{where}: the operators form a cycle (e.g. {', '.join(stuck)})")


def load(src, *, max_elements=MAX_ELEMENTS) -> Graph:
    """Read a TOSA flatbuffer (a path, bytes or bytearray) into a :class:`Graph`."""
    data = _read_src(src)
    with gc_paused():
        return _graph(data, max_elements)


def _graph(data, max_elements):
    try:
        root = reader.read_columns(data)
    except RecursionError:
        raise SchemaError("TosaGraph: nesting too deep") from None
    v = root["version"]
    if v is None:
        raise SchemaError("TosaGraph.version: required field is missing")
    version = Version(v["_major"], v["_minor"], v["_patch"], v["_draft"])
    if version.major != 1:
        raise SchemaError(f"TosaGraph.version: {version} is not a TOSA 1.x file "
                          "(tosaint reads TOSA 1.0 and 1.1)")
    sv = root["software_version"]
    comp = root["compatibility"]
    graph = Graph(version=version,
                  software_version=None if sv is None else (sv["_major"], sv["_minor"],
                                                            sv["_micro"], sv["_modifier"]),
                  compatibility=None if comp is None else {
                      "min_reader_version": None if comp["min_reader_version"] is None else
                      tuple(comp["min_reader_version"][k] for k in
                            ("_major", "_minor", "_micro", "_modifier")),
                      "features": comp["features"]})
    #: fields of a newer schema found in the file ("where: slot i"); they are not written back
    graph.dropped_fields = list(root["_unknown_fields"])
    regions = root["regions"]
    if not regions["name"] or not regions["blocks"][0]["name"]:
        raise SchemaError("TosaGraph: no region with a block (no main graph)")
    for r_name, blocks in zip(regions["name"], regions["blocks"]):
        region = Region(name=r_name or "")
        for i, b_name in enumerate(blocks["name"]):
            where = f"region {region.name!r} block {b_name!r}"
            block = Block(name=b_name or "", inputs=blocks["inputs"][i],
                          outputs=blocks["outputs"][i])
            tensors = block.tensors = _tensors(blocks["tensors"][i], where, max_elements, data)
            shapes = blocks["shapes"][i]
            for s in (dict(zip(shapes, row)) for row in zip(*shapes.values())):
                sv_t = _shape_value(s, where)
                if sv_t.name in tensors:
                    # the same name in tensors and shapes: the shape value carries the data
                    old = tensors[sv_t.name]
                    if old.data is not None:
                        raise SchemaError(f"{where}: shape {sv_t.name!r} is declared twice")
                tensors[sv_t.name] = sv_t
            block.operators = _operators(blocks["operators"][i], where)
            region.blocks.append(block)
        graph.regions.append(region)
    all_names = set().union(*(blk.tensors for blk in graph.blocks()))
    for region in graph.regions:
        for block in region.blocks:
            _check_block(block, all_names, f"region {region.name!r} block {block.name!r}")
    return graph
