"""A bounds-checked flatbuffer reader driven by ``schema.definition``.

Every offset, vector length and string is checked against the buffer before it is followed, so
a truncated or hostile file gives a :class:`SchemaError` that says where (the path of fields
being read), never an IndexError, a hang or a huge allocation.  Values are decoded with the
``flatbuffers`` runtime's packers.
"""
import struct

from flatbuffers import number_types as N

from tosaint.errors import SchemaError

from .definition import ATTRIBUTES, DEFAULTS, ENUMS, FILE_IDENTIFIER, Op, TABLES

_SCALARS = {"bool": N.BoolFlags, "int32": N.Int32Flags, "uint32": N.Uint32Flags,
            "uint64": N.Uint64Flags, "ubyte": N.Uint8Flags}
_MAX_DEPTH = 32


class _Buf:
    __slots__ = ("b", "n", "budget", "unknown")

    def __init__(self, data):
        self.b = data
        self.n = len(data)
        # Objects may be shared (a DAG), so a small hostile file could make a naive decoder
        # do quadratic work.  A valid file decodes each element about once: cap the total.
        self.budget = 4 * self.n + 4096
        #: fields present in the file beyond the schema tosaint knows (a newer writer's):
        #: "where: slot i", at most 100 of them
        self.unknown = []

    def spend(self, count, where):
        self.budget -= count
        if self.budget < 0:
            raise SchemaError(f"{where}: the file refers to the same data over and over "
                              "(decoding would take far longer than its size allows)")

    def get(self, flags, pos, where):
        if pos < 0 or pos + flags.bytewidth > self.n:
            raise SchemaError(f"{where}: offset {pos} outside the {self.n}-byte buffer")
        return flags.packer_type.unpack_from(self.b, pos)[0]

    def follow(self, pos, where):
        """Target of the uoffset stored at ``pos``."""
        target = pos + self.get(N.UOffsetTFlags, pos, where)
        if target >= self.n:
            raise SchemaError(f"{where}: offset {target} outside the {self.n}-byte buffer")
        return target

    def vector(self, pos, elem_size, where):
        """(start, length) of the vector whose uoffset is stored at ``pos``."""
        vec = self.follow(pos, where)
        length = self.get(N.UOffsetTFlags, vec, where)
        start = vec + 4
        if length * elem_size > self.n - start:
            raise SchemaError(f"{where}: vector of {length} elements runs past the end of the "
                              f"{self.n}-byte buffer")
        self.spend(1 + length * elem_size // 8, where)
        return start, length

    def string(self, pos, where):
        start, length = self.vector(pos, 1, where)
        if start + length >= self.n or self.b[start + length] != 0:
            raise SchemaError(f"{where}: string is not zero-terminated")
        try:
            return bytes(self.b[start:start + length]).decode("utf-8")
        except UnicodeDecodeError as e:
            raise SchemaError(f"{where}: string is not valid UTF-8 ({e})") from None


def _field_slots(table_name, fields):
    """field name -> vtable offset; a union takes two slots (type, value)."""
    slots, i = {}, 0
    for name, ftype in fields:
        if ftype == "union":
            slots[name + "_type"] = 4 + 2 * i
            i += 1
        slots[name] = 4 + 2 * i
        i += 1
    return slots


_SLOTS = {name: _field_slots(name, f) for name, f in TABLES.items()}
_ATTR_SLOTS = {op: _field_slots(t, f) for op, (t, f) in ATTRIBUTES.items()}


def _vtable(buf, pos, where):
    vt = pos - buf.get(N.SOffsetTFlags, pos, where)
    vt_len = buf.get(N.VOffsetTFlags, vt, where)
    obj_len = buf.get(N.VOffsetTFlags, vt + 2, where)
    if vt_len < 4 or vt_len % 2 or vt + vt_len > buf.n or pos + obj_len > buf.n:
        raise SchemaError(f"{where}: corrupt vtable")
    return vt, vt_len, obj_len


def read_table(buf, pos, table_name, fields, slots, where, depth=0):
    """Decode the table at ``pos`` into a dict with every field of ``fields`` present."""
    if depth > _MAX_DEPTH:
        raise SchemaError(f"{where}: nesting too deep")
    vt, vt_len, obj_len = _vtable(buf, pos, where)
    buf.spend(len(fields), where)
    known = 4 + 2 * len(slots)
    if vt_len > known and len(buf.unknown) < 100:
        # a newer schema's fields: tosaint cannot know their types, so they are reported
        # (``Graph.dropped_fields``) and not written back
        buf.spend((vt_len - known) // 2, where)
        for off in range(known, vt_len, 2):
            if buf.get(N.VOffsetTFlags, vt + off, where) and len(buf.unknown) < 100:
                buf.unknown.append(f"{where}: slot {(off - 4) // 2}")

    def field_pos(name):
        off = slots[name]
        if off >= vt_len:
            return None
        rel = buf.get(N.VOffsetTFlags, vt + off, where)
        if rel == 0:
            return None
        if rel >= obj_len:
            raise SchemaError(f"{where}.{name}: field offset outside its table")
        return pos + rel

    out = {}
    for name, ftype in fields:
        w = f"{where}.{name}"
        p = field_pos(name)
        if ftype == "union":
            tp = field_pos(name + "_type")
            utype = buf.get(N.Uint8Flags, tp, w) if tp is not None else 0
            out[name + "_type"] = utype
            if p is None or utype == 0:
                out[name] = None
                continue
            try:
                op = Op(utype)
            except ValueError:
                raise SchemaError(f"{w}: unknown attribute union type {utype}") from None
            tname, tfields = ATTRIBUTES[op]
            out[name] = read_table(buf, buf.follow(p, w), tname, tfields, _ATTR_SLOTS[op], w,
                                   depth + 1)
            continue
        if ftype in _SCALARS or ftype in ENUMS:
            flags = _SCALARS.get(ftype, N.Uint32Flags)
            if p is None:
                v = DEFAULTS.get((table_name, name), 0)
            else:
                v = buf.get(flags, p, w)
            if ftype == "bool":
                v = bool(v)
            elif ftype in ENUMS:
                try:
                    v = ENUMS[ftype](v)
                except ValueError:
                    raise SchemaError(f"{w}: {v} is not a valid {ftype}") from None
            out[name] = v
        elif ftype == "string":
            out[name] = None if p is None else buf.string(p, w)
        elif ftype == "[int32]":
            if p is None:
                out[name] = ()
            else:
                start, n = buf.vector(p, 4, w)
                out[name] = struct.unpack_from(f"<{n}i", buf.b, start)
        elif ftype == "[ubyte]":
            if p is None:
                out[name] = None
            else:
                start, n = buf.vector(p, 1, w)
                out[name] = bytes(buf.b[start:start + n])
        elif ftype == "[string]":
            if p is None:
                out[name] = []
            else:
                start, n = buf.vector(p, 4, w)
                out[name] = [buf.string(start + 4 * i, f"{w}[{i}]") for i in range(n)]
        elif ftype.startswith("["):
            sub = ftype[1:-1]
            if p is None:
                out[name] = []
            else:
                start, n = buf.vector(p, 4, w)
                out[name] = [read_table(buf, buf.follow(start + 4 * i, f"{w}[{i}]"), sub,
                                        TABLES[sub], _SLOTS[sub], f"{w}[{i}]", depth + 1)
                             for i in range(n)]
        else:  # sub-table
            out[name] = None if p is None else read_table(
                buf, buf.follow(p, w), ftype, TABLES[ftype], _SLOTS[ftype], w, depth + 1)
    return out


def read_root(data):
    """Decode a whole ``.tosa`` buffer into nested dicts (field names as in the schema)."""
    buf = _Buf(data)
    if buf.n < 8:
        raise SchemaError(f"file of {buf.n} bytes is too short to be a TOSA flatbuffer")
    if bytes(data[4:8]) != FILE_IDENTIFIER:
        raise SchemaError(f"file identifier is {bytes(data[4:8])!r}, not {FILE_IDENTIFIER!r}: "
                          "not a TOSA flatbuffer")
    root = buf.follow(0, "TosaGraph")
    out = read_table(buf, root, "TosaGraph", TABLES["TosaGraph"], _SLOTS["TosaGraph"],
                     "TosaGraph")
    out["_unknown_fields"] = buf.unknown
    return out
