"""``write_graph(graph) -> bytes``: serialize a Graph with the ``flatbuffers`` Builder, driven by
``schema.definition`` (the same tables the reader uses).

Shape values (SHAPE tensors with data) go to ``block.shapes`` as the tosa-tools serializers
write them, unless they came from a file that kept them as SHAPE tensors.  The version written
is the graph's own (1.0.0, non-draft, for graphs built here) unless ``version`` overrides it.
"""
import flatbuffers
import numpy as np
from flatbuffers import number_types as N

from tosaint.errors import SchemaError

from .definition import ATTRIBUTES, DEFAULTS, ENUMS, FILE_IDENTIFIER, FORCE_ALIGN_8, Op, TABLES
from .definition import DType

_SCALAR_SLOT = {"bool": "PrependBoolSlot", "int32": "PrependInt32Slot",
                "uint32": "PrependUint32Slot", "uint64": "PrependUint64Slot"}
_NATIVE = {DType.INT8: "<i1", DType.INT16: "<i2", DType.INT32: "<i4", DType.SHAPE: "<i8",
           DType.INT64: "<i8", DType.FP32: "<f4", DType.FP16: "<f2"}


def encode_data(arr, dtype, where="tensor"):
    """The little-endian ``TosaTensor.data`` bytes of a storage array (inverse of decode)."""
    dtype = DType(dtype)
    a = np.asarray(arr).reshape(-1)
    if dtype in _NATIVE:
        return a.astype(_NATIVE[dtype]).tobytes()
    if dtype == DType.BOOL:
        return (a != 0).astype(np.uint8).tobytes()
    if dtype == DType.INT48:
        v = a.astype(np.int64)
        if v.size and (v.min() < -(1 << 47) or v.max() >= (1 << 47)):
            raise SchemaError(f"{where}: value outside the int48 range")
        u = v.view(np.uint64) if v.dtype == np.int64 else v.astype(np.uint64)
        b = np.stack([((u >> np.uint64(8 * i)) & np.uint64(0xFF)).astype(np.uint8)
                      for i in range(6)], axis=1)
        return b.tobytes()
    if dtype == DType.INT4:
        v = a.astype(np.int8)
        if v.size and (v.min() < -7 or v.max() > 7):
            raise SchemaError(f"{where}: int4 value outside -7..7")
        n = (v.size + 1) // 2
        nib = np.zeros(2 * n, np.uint8)
        nib[:v.size] = v.astype(np.uint8) & 0xF
        return (nib[0::2] | (nib[1::2] << 4)).astype(np.uint8).tobytes()
    raise SchemaError(f"{where}: cannot encode constant data of type {dtype.name}")


class _Writer:
    def __init__(self):
        self.b = flatbuffers.Builder(1 << 16)
        self.strings = {}

    def string(self, s):
        if s not in self.strings:
            self.strings[s] = self.b.CreateString(s)
        return self.strings[s]

    def bytes_vector(self, data, align8):
        b = self.b
        data = bytes(data)
        b.StartVector(1, len(data), 8 if align8 else 1)
        b.head = b.head - len(data)
        b.Bytes[b.head:b.head + len(data)] = data
        return b.EndVector()

    def int32_vector(self, values):
        b = self.b
        values = [int(v) for v in values]
        b.StartVector(4, len(values), 4)
        for v in reversed(values):
            b.PrependInt32(v)
        return b.EndVector()

    def offset_vector(self, offsets):
        b = self.b
        b.StartVector(4, len(offsets), 4)
        for o in reversed(offsets):
            b.PrependUOffsetTRelative(o)
        return b.EndVector()

    def table(self, table_name, fields, values):
        """Write one table from a dict of field values; returns its offset."""
        b = self.b
        offsets = {}
        for name, ftype in fields:
            v = values.get(name)
            if v is None:
                continue
            if ftype == "union":
                op = Op(values[name + "_type"])
                tname, tfields = ATTRIBUTES[op]
                offsets[name] = self.table(tname, tfields, v)
            elif ftype == "string":
                offsets[name] = self.string(v)
            elif ftype == "[int32]":
                offsets[name] = self.int32_vector(v)
            elif ftype == "[ubyte]":
                offsets[name] = self.bytes_vector(v, (table_name, name) in FORCE_ALIGN_8)
            elif ftype == "[string]":
                offsets[name] = self.offset_vector([self.string(s) for s in v])
            elif ftype.startswith("["):
                sub = ftype[1:-1]
                offsets[name] = self.offset_vector([self.table(sub, TABLES[sub], x) for x in v])
            elif ftype in TABLES:
                offsets[name] = self.table(ftype, TABLES[ftype], v)
        nslots = sum(2 if t == "union" else 1 for _, t in fields)
        b.StartObject(nslots)
        slot = 0
        for name, ftype in fields:
            if ftype == "union":
                if name in offsets:
                    b.PrependUint8Slot(slot, int(values[name + "_type"]), 0)
                    b.PrependUOffsetTRelativeSlot(slot + 1, offsets[name], 0)
                slot += 2
                continue
            v = values.get(name)
            if name in offsets:
                b.PrependUOffsetTRelativeSlot(slot, offsets[name], 0)
            elif v is not None and (ftype in _SCALAR_SLOT or ftype in ENUMS):
                default = DEFAULTS.get((table_name, name), 0)
                meth = _SCALAR_SLOT.get(ftype, "PrependUint32Slot")
                if ftype == "bool":
                    getattr(b, meth)(slot, bool(v), bool(default))
                else:
                    getattr(b, meth)(slot, int(v), int(default))
            slot += 1
        return b.EndObject()


def _tensor_dict(t):
    d = {"name": t.name, "shape": [int(x) for x in t.shape], "type": int(t.dtype),
         "variable": bool(t.variable), "is_unranked": bool(t.is_unranked),
         "variable_name": t.variable_name}
    if t.data is not None:
        d["data"] = encode_data(t.data, t.dtype, f"tensor {t.name!r}")
    elif "raw_data" in t.extra:
        d["data"] = t.extra["raw_data"]
    for k in ("offset", "size", "scale_type", "scale_offset", "scale_size", "block_shape",
              "scale_data"):
        if k in t.extra:
            d[k] = t.extra[k]
    return d


def _is_shape_value(t):
    """Whether ``t`` is written to ``block.shapes`` (a TosaShape) rather than ``block.tensors``.

    The loader records where a SHAPE value came from in ``extra["shape_table"]``; values made
    here (no record) go to ``block.shapes`` as the current serializers write them.
    """
    if t.dtype != DType.SHAPE:
        return False
    flag = t.extra.get("shape_table")
    return t.data is not None if flag is None else bool(flag)


def _shape_dict(t):
    d = {"name": t.name}
    if t.data is not None:
        data = np.asarray(t.data).astype("<i8").reshape(-1)
        d["rank"] = int(data.size)
        d["data"] = data.tobytes()
    else:
        d["rank"] = int(t.shape[0]) if len(t.shape) else 0
    return d


def _block_dict(block):
    tensors, shapes = [], []
    for t in block.tensors.values():
        if _is_shape_value(t):
            shapes.append(_shape_dict(t))
        else:
            tensors.append(_tensor_dict(t))
    ops = []
    for o in block.operators:
        op = Op(o.op)
        _, fields = ATTRIBUTES[op]
        attrs = {}
        for name, ftype in fields:
            v = o.attrs.get(name)
            if v is None:
                continue
            if ftype == "[ubyte]" and not isinstance(v, (bytes, bytearray)):
                v = bytes(np.asarray(v, np.uint8))
            attrs[name] = v
        d = {"op": int(op), "attribute_type": int(op), "attribute": attrs,
             "inputs": list(o.inputs), "outputs": list(o.outputs)}
        if o.location is not None:
            d["location"] = {"text": o.location}
        ops.append(d)
    return {"name": block.name, "operators": ops, "tensors": tensors,
            "inputs": list(block.inputs), "outputs": list(block.outputs), "shapes": shapes}


def write_graph(graph, version=None):
    v = tuple(version) if version is not None else tuple(graph.version)
    if len(v) == 3:
        v = v + (False,)
    root = {"version": {"_major": v[0], "_minor": v[1], "_patch": v[2], "_draft": bool(v[3])},
            "regions": [{"name": r.name, "blocks": [_block_dict(b) for b in r.blocks]}
                        for r in graph.regions]}
    if graph.software_version is not None:
        ma, mi, mc, mod = graph.software_version
        root["software_version"] = {"_major": ma, "_minor": mi, "_micro": mc, "_modifier": mod}
    if graph.compatibility is not None:
        mrv = graph.compatibility.get("min_reader_version")
        root["compatibility"] = {
            "min_reader_version": None if mrv is None else dict(
                zip(("_major", "_minor", "_micro", "_modifier"), mrv)),
            "features": graph.compatibility.get("features", 0)}
    w = _Writer()
    off = w.table("TosaGraph", TABLES["TosaGraph"], root)
    w.b.Finish(off, file_identifier=FILE_IDENTIFIER)
    return bytes(w.b.Output())
