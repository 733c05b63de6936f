"""A bounds-checked flatbuffer reader, specialised once per schema table.

At import, one reader function per table of ``schema.definition`` (and per attribute table) is
generated from the table's field list, with each field's conversion written out in line.  The
first time a table of some kind is met under a given vtable, the vtable is checked (every present
field inside its table) and compiled into one ``struct`` layout (``_Buf.layout``), so every table
of that kind and vtable is then read with one ``unpack``.  There is no generic walk per field at
load time, and nothing here knows a field by name except through ``definition``.

Every offset, vector length and string is checked against the buffer before it is followed, so
a truncated or hostile file gives a :class:`SchemaError` that says where (the path of fields
being read), never an IndexError, a hang or a huge allocation.  The total decoding work is
bounded by the file size (``_Buf.budget``), because shared sub-objects could otherwise make a
small file decode for ever.  ``TosaTensor.data`` is returned as a read-only ``memoryview`` of the
buffer (no copy); every other value is a plain Python value.
"""
import operator
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
    """The buffer being read, its size, the decoding budget and the layouts compiled so far."""
    __slots__ = ("b", "mv", "n", "budget", "unknown", "layouts")

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
        #: per table kind: vtable position -> compiled layout (see ``layout``)
        self.layouts = [{} for _ in _KINDS]

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

    def vector(self, vec, elem_size, where, field=None):
        """(start, length) of the vector at ``vec`` (its length prefix)."""
        n = self.n
        if vec + 4 > n:
            _fail(where, field, f"offset {vec} outside the {n}-byte buffer")
        length = _U32(self.b, vec)[0]
        start = vec + 4
        if length * elem_size > n - start:
            _fail(where, field, f"vector of {length} elements runs past the end of the "
                                f"{n}-byte buffer")
        self.budget -= 1 + length * elem_size // 8
        if self.budget < 0:
            self.exhausted(where, field)
        return start, length

    def string(self, vec, where, field):
        """The string whose length prefix is at ``vec`` (zero-terminated, UTF-8, in bounds)."""
        b, n = self.b, self.n
        if vec + 4 > n:
            _fail(where, field, f"offset {vec} outside the {n}-byte buffer")
        length = _U32(b, vec)[0]
        end = vec + 4 + length
        if end >= n:
            _fail(where, field, f"string of {length} bytes runs past the end of the "
                                f"{n}-byte buffer")
        if b[end]:
            _fail(where, field, "string is not zero-terminated")
        self.budget -= 1 + (length >> 3)
        try:
            return b[vec + 4:end].decode()
        except UnicodeDecodeError as e:
            _fail(where, field, f"string is not valid UTF-8 ({e})")

    def strings_vector(self, vec, where, field):
        """The strings of the vector at ``vec``."""
        b, n = self.b, self.n
        count = _U32(b, vec)[0] if vec + 4 <= n else n
        start = vec + 4
        if 4 * count > n - start:
            self.vector(vec, 4, where, field)       # says what is wrong
        if count == 1:
            target = start + _U32(b, start)[0]
            end = target + 4 + _U32(b, target)[0] if target + 4 <= n else n
            try:
                if end >= n or b[end]:
                    raise ValueError
                out = [b[target + 4:end].decode()]
            except ValueError:  # (UnicodeDecodeError too) the careful path says what is wrong
                self.string(target, (where, field, 0), None)
                raise           # (not reached: the careful path raises)
            self.budget -= 2 + ((end - target - 4) >> 3)
            if self.budget < 0:
                self.exhausted(where, field)
            return out
        self.budget -= 1 + count + (count >> 1)
        if self.budget < 0:
            self.exhausted(where, field)
        # the strings may all be one long string: stop as soon as they exceed the budget
        room = self.budget << 3
        rels = struct.unpack_from(f"<{count}I", b, start)
        out = []
        spent = 0
        vec = start
        for rel in rels:
            target = vec + rel
            length = _U32(b, target)[0] if target + 4 <= n else n
            end = target + 4 + length
            try:
                if end >= n or b[end]:
                    raise ValueError
                out.append(b[target + 4:end].decode())
            except ValueError:  # (UnicodeDecodeError too) the careful path says what is wrong
                self.string(target, (where, field, (vec - start) >> 2), None)
                raise           # (not reached: the careful path raises)
            spent += length
            if spent > room:
                self.exhausted(where, field)
            vec += 4
        self.budget -= spent >> 3
        if self.budget < 0:
            self.exhausted(where, field)
        return out

    def tables_vector(self, vec, where, field):
        """Positions of the tables of the vector at ``vec``."""
        start, n = self.vector(vec, 4, where, field)
        rels = struct.unpack_from(f"<{n}I", self.b, start)
        out = [start + 4 * i + rel for i, rel in enumerate(rels)]
        if out and max(out) >= self.n:
            i = next(i for i, t in enumerate(out) if t >= self.n)
            _fail((where, field, i), None, f"offset {out[i]} outside the {self.n}-byte buffer")
        return out

    def int32_vector(self, vec, where, field):
        start, n = self.vector(vec, 4, where, field)
        return struct.unpack_from(f"<{n}i", self.b, start)

    def byte_vector(self, vec, where, field, zero_copy):
        start, n = self.vector(vec, 1, where, field)
        view = self.mv[start:start + n]
        return view if zero_copy else bytes(view)

    def bad_table(self, pos, where, depth):
        if depth > _MAX_DEPTH:
            _fail(where, None, "nesting too deep")
        _fail(where, None, f"offset {pos} outside the {self.n}-byte buffer")

    def layout(self, tid, vt, where):
        """The checked layout of table kind ``tid`` under the vtable at ``vt``, compiled once.

        Returns ``(object length, slot offsets, unpack, pick)``: the offsets of the kind's slots
        (0: absent), and ``pick(unpack(b, pos) + (0,))``, the raw value of every slot of the
        table at ``pos`` read with one ``struct`` call (a scalar, or a uoffset; 0 when absent).
        """
        b, n, k = self.b, self.n, len(_KINDS[tid][1])
        if vt < 0 or vt + 4 > n:
            _fail(where, None, "corrupt vtable (offset outside the buffer)")
        vt_len, obj_len = _VT_HEAD(b, vt)
        if vt_len < 4 or vt_len & 1 or vt + vt_len > n:
            _fail(where, None, "corrupt vtable")
        present = (vt_len - 4) >> 1
        self.spend(1 + present, where)       # many distinct vtables must not cost for ever
        # a layout depends only on the vtable's bytes: ones compiled by earlier loads are reused
        # (not those with a newer schema's fields, which are reported per file)
        key = b[vt:vt + vt_len] if present <= k else None
        compiled = _COMPILED[tid]
        lay = compiled.get(key)
        if lay is None:
            offs = struct.unpack_from(f"<{present}H", b, vt + 4)
            if present > k:
                # a newer schema's fields: tosaint cannot know their types, so they are reported
                # (``Graph.dropped_fields``, once per vtable) and not written back
                for i, off in enumerate(offs[k:]):
                    if off and len(self.unknown) < 100:
                        self.unknown.append(f"{_where(where)}: slot {k + i}")
                offs = offs[:k]
            lay = _compile(tid, offs + (0,) * (k - len(offs)), obj_len, where)
            if key is not None and len(compiled) < _MAX_COMPILED:
                compiled[key] = lay
        self.layouts[tid][vt] = lay
        return lay


def _compile(tid, offs, obj_len, where):
    """The layout of table kind ``tid`` whose slots are at ``offs`` (see ``_Buf.layout``)."""
    _, names, codes = _KINDS[tid]
    k = len(names)
    fields = sorted((off, i) for i, off in enumerate(offs) if off)
    end, fmt, order = 0, "<", []
    for off, i in fields:
        width = struct.calcsize("<" + codes[i])
        if off + width > obj_len:
            _fail(where, names[i], "field outside its table")
        if off < end:
            break                # overlapping fields (a hostile file): read them one by one
        fmt += (f"{off - end}x" if off > end else "") + codes[i]
        end = off + width
        order.append(i)
    else:
        unpack = struct.Struct(fmt).unpack_from
        index = [len(order)] * k             # absent slots pick the appended 0
        for j, i in enumerate(order):
            index[i] = j
        return obj_len, offs, unpack, _picker(index)
    singles = [(off, struct.Struct("<" + codes[i]).unpack_from) for i, off in enumerate(offs)]

    def unpack_each(b, pos):
        return tuple(u(b, pos + off)[0] if off else 0 for off, u in singles)
    return obj_len, offs, unpack_each, _picker(list(range(k)))


def _i32s(b, start, count):
    """``count`` little-endian int32 at ``start`` (bounds already checked)."""
    if count == 1:
        return _I32(b, start)
    return struct.unpack_from(f"<{count}i", b, start)


def _picker(index):
    if not index:
        return lambda values: ()
    if len(index) == 1:
        i = index[0]
        return lambda values: (values[i],)
    return operator.itemgetter(*index)


#: table kind id -> (table name, slot names, struct code of each slot)
_KINDS = []
#: table kind id -> {vtable bytes: layout}, shared by all loads (at most ``_MAX_COMPILED`` each)
_COMPILED = []
_MAX_COMPILED = 64


# ---- generation of one reader per table ------------------------------------------------------
def _reader_name(table):
    return f"read_{table}"


def _slot_code(ftype):
    """The struct code of a field's slot: its scalar, or the uoffset of what it refers to."""
    if ftype in _SCALARS:
        return _SCALARS[ftype][1]
    return "I"                      # an enum (uint32) or a uoffset


def _field_lines(table, name, ftype, env):
    """Source lines turning field ``name`` (slot offset ``o_<name>``, raw value ``r_<name>``)
    into its value ``v_<name>``.  The layout has checked that the slot lies inside the table."""
    o, r, v, q = f"o_{name}", f"r_{name}", f"v_{name}", repr(name)
    default = DEFAULTS.get((table, name), 0)
    if ftype == "bool":
        return [f"    {v} = {r} != 0 if {o} else {bool(default)}"]
    if ftype in _SCALARS:
        return [f"    {v} = {r} if {o} else {default}"]
    if ftype in ENUMS:
        env[f"_E_{ftype}"] = {int(m): m for m in ENUMS[ftype]}
        env[f"_D_{ftype}"] = ENUMS[ftype](default)
        return [f"    {v} = _E_{ftype}.get({r}) if {o} else _D_{ftype}",
                f"    if {v} is None: _fail(where, {q}, f'{{{r}}} is not a valid {ftype}')"]
    target = f"pos + {o} + {r}"
    if ftype == "union":
        env["_UNION"] = _UNION
        t = f"v_{name}_type"
        return [f"    {t} = r_{name}_type if o_{name}_type else 0",
                f"    if {o} and {t}:",
                f"        read = _UNION.get({t})",
                f"        if read is None: _fail(where, {q}, f'unknown attribute union type {{{t}}}')",
                f"        t = {target}",
                f"        if t >= n: _fail(where, {q}, f'offset {{t}} outside the {{n}}-byte buffer')",
                f"        {v} = read(buf, t, (where, {q}, None), depth + 1)",
                f"    else:",
                f"        {v} = None"]
    if ftype == "string":
        # in line: the common case (in bounds, terminated, UTF-8); anything else takes
        # ``buf.string``, which says what is wrong
        return [f"    if {o}:",
                f"        s = {target}",
                f"        e = s + 4 + _U32(b, s)[0] if s + 4 <= n else n",
                f"        if e < n and not b[e]:",
                f"            try:",
                f"                {v} = b[s + 4:e].decode()",
                f"            except UnicodeDecodeError:",
                f"                {v} = buf.string(s, where, {q})",
                f"            buf.budget -= 1 + ((e - s - 4) >> 3)",
                f"            if buf.budget < 0: buf.exhausted(where, {q})",
                f"        else:",
                f"            {v} = buf.string(s, where, {q})",
                f"    else:",
                f"        {v} = None"]
    if ftype in ("[int32]", "[ubyte]"):
        # in line: the common case (the vector lies in the buffer); else ``buf.vector`` fails
        size = 4 if ftype == "[int32]" else 1
        if ftype == "[int32]":
            env["_I32S"] = _i32s
            value, absent = "_I32S(b, s + 4, c)", "()"
        elif (table, name) in _ZERO_COPY:
            value, absent = "buf.mv[s + 4:s + 4 + c]", "None"
        else:
            value, absent = "b[s + 4:s + 4 + c]", "None"
        return [f"    if {o}:",
                f"        s = {target}",
                f"        c = _U32(b, s)[0] if s + 4 <= n else n",
                f"        if {size} * c > n - s - 4: buf.vector(s, {size}, where, {q})",
                f"        buf.budget -= 1 + {size} * c // 8",
                f"        if buf.budget < 0: buf.exhausted(where, {q})",
                f"        {v} = {value}",
                f"    else:",
                f"        {v} = {absent}"]
    if ftype in TABLES:
        return [f"    if {o}:",
                f"        t = {target}",
                f"        if t >= n: _fail(where, {q}, f'offset {{t}} outside the {{n}}-byte buffer')",
                f"        {v} = {_reader_name(ftype)}(buf, t, (where, {q}, None), depth + 1)",
                f"    else:", f"        {v} = None"]
    if ftype == "[int32]":
        read, absent = f"buf.int32_vector({target}, where, {q})", "()"
    elif ftype == "[ubyte]":
        zero_copy = (table, name) in _ZERO_COPY
        read, absent = f"buf.byte_vector({target}, where, {q}, {zero_copy})", "None"
    elif ftype == "[string]":
        read, absent = f"buf.strings_vector({target}, where, {q})", "[]"
    elif ftype.startswith("[") and ftype[1:-1] in TABLES:
        sub = _reader_name(ftype[1:-1])
        read = (f"[{sub}(buf, t, (where, {q}, i), depth + 1) "
                f"for i, t in enumerate(buf.tables_vector({target}, where, {q}))]")
        absent = "[]"
    else:
        raise TypeError(f"{table}.{name}: unknown field type {ftype!r}")
    return [f"    {v} = {read} if {o} else {absent}"]


def _table_source(table, fields, env):
    names, codes = [], []
    for name, ftype in fields:
        if ftype == "union":
            names.append(f"{name}_type")
            codes.append("B")
        names.append(name)
        codes.append(_slot_code(ftype))
    tid = len(_KINDS)
    _KINDS.append((table, tuple(names), tuple(codes)))
    _COMPILED.append({})
    lines = [f"def {_reader_name(table)}(buf, pos, where, depth):",
             "    b = buf.b",
             "    n = buf.n",
             f"    if depth > {_MAX_DEPTH} or pos + 4 > n: buf.bad_table(pos, where, depth)",
             "    vt = pos - _I32(b, pos)[0]",
             f"    lay = buf.layouts[{tid}].get(vt)",
             f"    if lay is None: lay = buf.layout({tid}, vt, where)",
             "    obj_len, offs, unpack, pick = lay",
             "    if pos + obj_len > n: _fail(where, None, 'corrupt vtable (table runs past the "
             "end of the buffer)')",
             f"    buf.budget -= {1 + len(fields)}",
             "    if buf.budget < 0: buf.exhausted(where, None)"]
    if names:
        lines += [f"    {', '.join('o_' + x for x in names)}, = offs",
                  f"    {', '.join('r_' + x for x in names)}, = pick(unpack(b, pos) + (0,))"]
    keys = []
    for name, ftype in fields:
        lines += _field_lines(table, name, ftype, env)
        if ftype == "union":
            keys.append(f"{name + '_type'!r}: v_{name}_type")
        keys.append(f"{name!r}: v_{name}")
    lines.append(f"    return {{{', '.join(keys)}}}")
    return "\n".join(lines)


#: union type (Op value) -> reader of that op's attribute table
_UNION = {}


def _generate():
    env = {"_fail": _fail, "_I32": _I32, "_U32": _U32}
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
