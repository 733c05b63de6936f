"""A bounds-checked flatbuffer reader, specialised once per schema table.

At import, one reader function per table of ``schema.definition`` (and per attribute table) is
generated from the table's field list: it reads the table's vtable with one ``struct`` call and
then each field at its fixed slot, with the bounds check of that field's width inlined.  There
is no generic walk per field at load time, and nothing here knows a field by name except through
``definition``.

Every offset, vector length and string is checked against the buffer before it is followed, so
a truncated or hostile file gives a :class:`SchemaError` that says where (the path of fields
being read), never an IndexError, a hang or a huge allocation.  The total decoding work is
bounded by the file size (``_Buf.budget``), because shared sub-objects could otherwise make a
small file decode for ever.  ``TosaTensor.data`` is returned as a read-only ``memoryview`` of the
buffer (no copy); every other value is a plain Python value.
"""
import struct

from tosaint.errors import SchemaError

from .definition import ATTRIBUTES, DEFAULTS, ENUMS, FILE_IDENTIFIER, TABLES

_MAX_DEPTH = 32
#: byte vectors handed out as zero-copy memoryviews of the buffer (the rest are ``bytes``)
_ZERO_COPY = {("TosaTensor", "data")}
#: width in bytes and struct code of each scalar type (an enum is a uint32)
_SCALARS = {"bool": (1, "B"), "int32": (4, "i"), "uint32": (4, "I"), "uint64": (8, "Q")}

_U32 = struct.Struct("<I").unpack_from
_I32 = struct.Struct("<i").unpack_from
_VT_HEAD = struct.Struct("<HH").unpack_from


def _where(w):
    """The field path of a lazily built location: a str, or (parent, field, index or None)."""
    parts = []
    while not isinstance(w, str):
        w, name, index = w
        parts.append(f".{name}" if index is None else f".{name}[{index}]")
    return w + "".join(reversed(parts))


def _fail(where, field, message):
    at = _where(where) if field is None else f"{_where(where)}.{field}"
    raise SchemaError(f"{at}: {message}")


class _Buf:
    """The buffer being read, its size, the decoding budget, and the strings seen so far."""
    __slots__ = ("b", "mv", "n", "budget", "unknown", "strings")

    def __init__(self, data):
        self.b = data if isinstance(data, bytes) else bytes(data)
        self.mv = memoryview(self.b)
        self.n = len(self.mv)
        # Objects may be shared (a DAG), so a small hostile file could make a naive decoder
        # do quadratic work.  A valid file decodes each element about once: cap the total.
        self.budget = 4 * self.n + 4096
        #: fields present in the file beyond the schema tosaint knows (a newer writer's):
        #: "where: slot i", at most 100 of them
        self.unknown = []
        self.strings = {}

    def spend(self, count, where, field=None):
        self.budget -= count
        if self.budget < 0:
            self.exhausted(where, field)

    def exhausted(self, where, field):
        _fail(where, field, "the file refers to the same data over and over (decoding would "
                            "take far longer than its size allows)")

    def follow(self, pos, where, field=None):
        """Target of the uoffset stored at ``pos``."""
        if pos < 0 or pos + 4 > self.n:
            _fail(where, field, f"offset {pos} outside the {self.n}-byte buffer")
        target = pos + _U32(self.b, pos)[0]
        if target >= self.n:
            _fail(where, field, f"offset {target} outside the {self.n}-byte buffer")
        return target

    def vector(self, pos, elem_size, where, field=None):
        """(start, length) of the vector whose uoffset is stored at ``pos``."""
        b, n = self.b, self.n
        if pos < 0 or pos + 4 > n:
            _fail(where, field, f"offset {pos} outside the {n}-byte buffer")
        vec = pos + _U32(b, pos)[0]
        if vec + 4 > n:
            _fail(where, field, f"offset {vec} outside the {n}-byte buffer")
        length = _U32(b, vec)[0]
        start = vec + 4
        if length * elem_size > n - start:
            _fail(where, field, f"vector of {length} elements runs past the end of the "
                                f"{n}-byte buffer")
        self.budget -= 1 + length * elem_size // 8
        if self.budget < 0:
            self.exhausted(where, field)
        return start, length

    def decode_string(self, vec, where, field):
        """The string whose length prefix is at ``vec``, decoded once per position."""
        b, n = self.b, self.n
        if vec + 4 > n:
            _fail(where, field, f"offset {vec} outside the {n}-byte buffer")
        length = _U32(b, vec)[0]
        start = vec + 4
        if length >= n - start:
            _fail(where, field, f"string of {length} bytes runs past the end of the "
                                f"{n}-byte buffer")
        if b[start + length]:
            _fail(where, field, "string is not zero-terminated")
        try:
            s = str(self.mv[start:start + length], "utf-8")
        except UnicodeDecodeError as e:
            _fail(where, field, f"string is not valid UTF-8 ({e})")
        self.strings[vec] = s
        return s

    def string(self, pos, where, field=None):
        """The string whose uoffset is stored at ``pos``."""
        if pos < 0 or pos + 4 > self.n:
            _fail(where, field, f"offset {pos} outside the {self.n}-byte buffer")
        vec = pos + _U32(self.b, pos)[0]
        s = self.strings.get(vec)
        if s is None:
            s = self.decode_string(vec, where, field)
        self.budget -= 1 + (len(s) >> 3)
        if self.budget < 0:
            self.exhausted(where, field)
        return s

    def strings_vector(self, pos, where, field):
        """The strings of the vector whose uoffset is stored at ``pos``."""
        start, count = self.vector(pos, 4, where, field)
        if not count:
            return []
        b, n, cache = self.b, self.n, self.strings
        out = []
        spent = 0
        vec = start
        for rel in struct.unpack_from(f"<{count}I", b, start):
            target = vec + rel
            s = cache.get(target)
            if s is None:
                length = _U32(b, target)[0] if target + 4 <= n else n
                first = target + 4
                if length >= n - first or b[first + length]:
                    s = None
                else:
                    try:
                        s = cache[target] = b[first:first + length].decode()
                    except UnicodeDecodeError:
                        s = None
                if s is None:   # not a string inside the buffer: the careful path says why
                    s = self.decode_string(target, (where, field, (vec - start) >> 2), None)
            spent += 1 + (len(s) >> 3)
            out.append(s)
            vec += 4
        self.budget -= spent
        if self.budget < 0:
            self.exhausted(where, field)
        return out

    def tables_vector(self, pos, where, field):
        """Positions of the tables of the vector whose uoffset is stored at ``pos``."""
        start, n = self.vector(pos, 4, where, field)
        rels = struct.unpack_from(f"<{n}I", self.b, start)
        out = [start + 4 * i + rel for i, rel in enumerate(rels)]
        if out and max(out) >= self.n:
            i = next(i for i, t in enumerate(out) if t >= self.n)
            _fail((where, field, i), None, f"offset {out[i]} outside the {self.n}-byte buffer")
        return out

    def int32_vector(self, pos, where, field):
        start, n = self.vector(pos, 4, where, field)
        return struct.unpack_from(f"<{n}i", self.b, start)

    def byte_vector(self, pos, where, field, zero_copy):
        start, n = self.vector(pos, 1, where, field)
        view = self.mv[start:start + n]
        return view if zero_copy else bytes(view)

    def bad_table(self, pos, where, depth):
        if depth > _MAX_DEPTH:
            _fail(where, None, "nesting too deep")
        _fail(where, None, f"offset {pos} outside the {self.n}-byte buffer")

    def unknown_slots(self, vt, nslots, present, where):
        # a newer schema's fields: tosaint cannot know their types, so they are reported
        # (``Graph.dropped_fields``) and not written back
        if len(self.unknown) >= 100:
            return
        self.spend(present - nslots, where)
        extra = struct.unpack_from(f"<{present - nslots}H", self.b, vt + 4 + 2 * nslots)
        for i, off in enumerate(extra):
            if off and len(self.unknown) < 100:
                self.unknown.append(f"{_where(where)}: slot {nslots + i}")


_SLOT_READERS = {}


def _slot_reader(k):
    if k not in _SLOT_READERS:
        _SLOT_READERS[k] = struct.Struct(f"<{k}H").unpack_from
    return _SLOT_READERS[k]


# ---- generation of one reader per table ------------------------------------------------------
def _reader_name(table):
    return f"read_{table}"


def _field_lines(table, name, ftype, o, env):
    """Source lines reading field ``name`` (slot offset variable ``o``) into ``v_<name>``."""
    v = f"v_{name}"
    q = repr(name)

    def check(width):
        return f"        if {o} + {width} > obj_len: _fail(where, {q}, 'field outside its table')"

    if ftype in _SCALARS or ftype in ENUMS:
        width, code = _SCALARS.get(ftype, (4, "I"))
        default = DEFAULTS.get((table, name), 0)
        env[f"_S{code}"] = struct.Struct("<" + code).unpack_from
        lines = [f"    if {o}:", check(width), f"        {v} = _S{code}(b, pos + {o})[0]"]
        if ftype == "bool":
            lines += [f"        {v} = {v} != 0", f"    else:", f"        {v} = {bool(default)}"]
        elif ftype in ENUMS:
            env[f"_E_{ftype}"] = {int(m): m for m in ENUMS[ftype]}
            lines += [f"        {v} = _E_{ftype}.get({v}, {v})",
                      f"        if {v}.__class__ is int: _fail(where, {q}, "
                      f"f'{{{v}}} is not a valid {ftype}')",
                      f"    else:", f"        {v} = _E_{ftype}[{int(default)}]"]
        else:
            lines += [f"    else:", f"        {v} = {default}"]
        return lines
    if ftype == "union":
        t = f"v_{name}_type"
        env["_UNION"] = _UNION
        return [f"    if {o}_type:",
                f"        if {o}_type + 1 > obj_len: _fail(where, {q}, 'field outside its table')",
                f"        {t} = b[pos + {o}_type]",
                f"    else:",
                f"        {t} = 0",
                f"    if {o} and {t}:",
                check(4),
                f"        read = _UNION.get({t})",
                f"        if read is None: _fail(where, {q}, f'unknown attribute union type {{{t}}}')",
                f"        t = pos + {o}",
                f"        t += _U32(b, t)[0]",
                f"        if t >= n: _fail(where, {q}, f'offset {{t}} outside the {{n}}-byte buffer')",
                f"        {v} = read(buf, t, (where, {q}, None), depth + 1)",
                f"    else:",
                f"        {v} = None"]
    if ftype == "string":
        return [f"    if {o}:", check(4),
                f"        t = pos + {o}",
                f"        t += _U32(b, t)[0]",
                f"        {v} = strings.get(t)",
                f"        if {v} is None: {v} = buf.decode_string(t, where, {q})",
                f"        buf.budget -= 1 + (len({v}) >> 3)",
                f"    else:", f"        {v} = None"]
    if ftype == "[int32]":
        read, absent = f"buf.int32_vector(pos + {o}, where, {q})", "()"
    elif ftype == "[ubyte]":
        zero_copy = (table, name) in _ZERO_COPY
        read, absent = f"buf.byte_vector(pos + {o}, where, {q}, {zero_copy})", "None"
    elif ftype == "[string]":
        read, absent = f"buf.strings_vector(pos + {o}, where, {q})", "[]"
    elif ftype.startswith("["):
        sub = _reader_name(ftype[1:-1])
        read = (f"[{sub}(buf, t, (where, {q}, i), depth + 1) "
                f"for i, t in enumerate(buf.tables_vector(pos + {o}, where, {q}))]")
        absent = "[]"
    elif ftype in TABLES:
        return [f"    if {o}:", check(4),
                f"        t = pos + {o}",
                f"        t += _U32(b, t)[0]",
                f"        if t >= n: _fail(where, {q}, f'offset {{t}} outside the {{n}}-byte buffer')",
                f"        {v} = {_reader_name(ftype)}(buf, t, (where, {q}, None), depth + 1)",
                f"    else:", f"        {v} = None"]
    else:
        raise TypeError(f"{table}.{name}: unknown field type {ftype!r}")
    return [f"    if {o}:", check(4), f"        {v} = {read}", f"    else:", f"        {v} = {absent}"]


def _table_source(table, fields, env):
    slots = []
    for name, ftype in fields:
        if ftype == "union":
            slots.append(f"o_{name}_type")
        slots.append(f"o_{name}")
    k = len(slots)
    for i in range(k + 1):
        _slot_reader(i)
    # open the table: its vtable, checked, and the slot offsets (0: absent), padded to k
    lines = [f"def {_reader_name(table)}(buf, pos, where, depth):",
             "    b = buf.b",
             "    n = buf.n",
             "    strings = buf.strings",
             f"    if depth > {_MAX_DEPTH} or pos + 4 > n: buf.bad_table(pos, where, depth)",
             "    vt = pos - _I32(b, pos)[0]",
             "    if vt < 0 or vt + 4 > n: _fail(where, None, 'corrupt vtable (offset outside "
             "the buffer)')",
             "    vt_len, obj_len = _VT_HEAD(b, vt)",
             "    if vt_len < 4 or vt_len & 1 or vt + vt_len > n or pos + obj_len > n: "
             "_fail(where, None, 'corrupt vtable')",
             f"    buf.budget -= {1 + len(fields)}",
             "    if buf.budget < 0: buf.exhausted(where, None)"]
    if k:
        lines += ["    present = (vt_len - 4) >> 1",
                  f"    if present >= {k}:",
                  f"        if present > {k}: buf.unknown_slots(vt, {k}, present, where)",
                  f"        {', '.join(slots)}, = _SLOT_READERS[{k}](b, vt + 4)",
                  "    else:",
                  f"        {', '.join(slots)}, = _SLOT_READERS[present](b, vt + 4) + "
                  f"(0,) * ({k} - present)"]
    else:
        lines += ["    if vt_len > 4: buf.unknown_slots(vt, 0, (vt_len - 4) >> 1, where)"]
    keys = []
    for name, ftype in fields:
        lines += _field_lines(table, name, ftype, f"o_{name}", env)
        if ftype == "union":
            keys.append(f"{name + '_type'!r}: v_{name}_type")
        keys.append(f"{name!r}: v_{name}")
    lines.append(f"    return {{{', '.join(keys)}}}")
    return "\n".join(lines)


#: union type (Op value) -> reader of that op's attribute table
_UNION = {}


def _generate():
    env = {"_fail": _fail, "_I32": _I32, "_U32": _U32, "_VT_HEAD": _VT_HEAD,
           "_SLOT_READERS": _SLOT_READERS}
    tables = dict(TABLES)
    for op, (tname, fields) in ATTRIBUTES.items():
        tables[tname] = fields
    source = "\n\n".join(_table_source(t, f, env) for t, f in tables.items())
    exec(compile(source, "<schema.reader generated>", "exec"), env)   # noqa: S102 - our own text
    for op, (tname, _) in ATTRIBUTES.items():
        _UNION[int(op)] = env[_reader_name(tname)]
    return {t: env[_reader_name(t)] for t in tables}


#: table name -> its generated reader ``read(buf, pos, where, depth) -> dict``
READERS = _generate()


def read_root(data):
    """Decode a whole ``.tosa`` buffer into nested dicts (field names as in the schema).

    ``data`` must not change while the result is in use: ``TosaTensor.data`` values are views
    of it (pass ``bytes``).
    """
    buf = _Buf(data)
    if buf.n < 8:
        raise SchemaError(f"file of {buf.n} bytes is too short to be a TOSA flatbuffer")
    if bytes(buf.mv[4:8]) != FILE_IDENTIFIER:
        raise SchemaError(f"file identifier is {bytes(buf.mv[4:8])!r}, not {FILE_IDENTIFIER!r}: "
                          "not a TOSA flatbuffer")
    root = buf.follow(0, "TosaGraph")
    out = READERS["TosaGraph"](buf, root, "TosaGraph", 0)
    out["_unknown_fields"] = buf.unknown
    return out
