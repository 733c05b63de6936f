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

``read_columns``, which the loader uses, reads the same file column by column: each long vector
of tables with one NumPy gather per field over all its tables, every check done on whole columns
(see ``_Bulk``), a few tables with the readers above.  Whatever it does not fully check it leaves
to the careful reader (``read_root``), so the two give the same values or the same error.
"""
import operator
import struct

import numpy as np

from tosaint.errors import SchemaError

from .definition import ATTRIBUTES, DEFAULTS, ENUMS, FILE_IDENTIFIER, ROOT_TABLE, TABLES

_MAX_DEPTH = 32
#: byte vectors handed out as zero-copy memoryviews of the buffer, or as the ``range`` of their
#: offsets in it (``_Buf.spans``); the rest are ``bytes``
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
    __slots__ = ("b", "mv", "n", "budget", "unknown", "layouts", "spans", "bulk")

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
        #: zero-copy byte vectors as the range of their offsets instead of memoryviews
        self.spans = False
        #: the ``_Bulk`` reading this buffer, which reads vectors of tables as columns
        self.bulk = None

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
    for off, i in fields:
        if off + struct.calcsize("<" + codes[i]) > obj_len:
            _fail(where, names[i], "field outside its table")
    end, fmt, order = 0, "<", []
    for off, i in fields:
        width = struct.calcsize("<" + codes[i])
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
#: table kind id -> its schema fields; table name -> kind id; union type -> kind id of its table
_FIELDS = []
_TID = {}
_UNION_TID = {}
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
            value, absent = "range(s + 4, s + 4 + c) if buf.spans else buf.mv[s + 4:s + 4 + c]", \
                "None"
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
        # (as columns when the bulk reader has handed a few tables to this reader: ``_Bulk``)
        sub = _reader_name(ftype[1:-1])
        vector = f"buf.tables_vector({target}, where, {q})"
        read = (f"(buf.bulk.rows({ftype[1:-1]!r}, {vector}) if buf.bulk else "
                f"[{sub}(buf, t, (where, {q}, i), depth + 1) for i, t in enumerate({vector})])")
        absent = f"(buf.bulk.rows({ftype[1:-1]!r}, ()) if buf.bulk else [])"
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
    _FIELDS.append(tuple(fields))
    _TID[table] = tid
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
    readers = {}
    for t, f in tables.items():
        name = _reader_name(t)
        env[name] = readers[t] = _compiled_on_first_call(name, _table_source(t, f, env), env)
    for op, (tname, _) in ATTRIBUTES.items():
        _UNION[int(op)] = env[_reader_name(tname)]
        _UNION_TID[int(op)] = _TID[tname]
    return readers


def _compiled_on_first_call(name, source, env):
    """The reader ``name``, compiled from ``source`` when it is first called: a graph meets a
    dozen of the 110 tables, and compiling all of them took 15 ms of every ``import tosaint``.
    The compiled reader then replaces this stub everywhere it is referenced (two threads that
    both compile it get equal functions)."""
    def first_call(*args):
        fn = env[name]
        if fn is first_call:
            exec(compile(source, "<schema.reader generated>", "exec"), env)   # noqa: S102
            fn = env[name]
            for table in (READERS, _UNION):
                for key, reader in table.items():
                    if reader is first_call:
                        table[key] = fn
        return fn(*args)
    return first_call


#: table name -> its generated reader ``read(buf, pos, where, depth) -> dict``
READERS = _generate()


def read_root(data, spans=False):
    """Decode a whole ``.tosa`` buffer into nested dicts (field names as in the schema).

    ``data`` must not change while the result is in use: ``TosaTensor.data`` values are views
    of it (pass ``bytes``), or with ``spans`` the ``range`` of their offsets in ``data``.
    """
    buf = _header(data)
    buf.spans = spans
    root = buf.follow(0, ROOT_TABLE)
    out = READERS[ROOT_TABLE](buf, root, ROOT_TABLE, 0)
    out["_unknown_fields"] = buf.unknown
    return out


def _header(data):
    """The buffer of ``data``, its size and file identifier checked."""
    buf = _Buf(data)
    if buf.n < 8:
        raise SchemaError(f"file of {buf.n} bytes is too short to be a TOSA flatbuffer")
    if bytes(buf.mv[4:8]) != FILE_IDENTIFIER:
        raise SchemaError(f"file identifier is {bytes(buf.mv[4:8])!r}, not {FILE_IDENTIFIER!r}: "
                          "not a TOSA flatbuffer")
    return buf


# ---- the bulk reader: every vector of tables read column by column -----------------------------
# A file is mostly long vectors of tables that share a few vtables (the operators and tensors of
# a block).  ``read_columns`` reads each vector of tables as columns, one NumPy gather per field
# over all its tables, with every check of the careful reader above done on whole columns.  It
# declines (``_Slow``) anything unusual: a failed check, a newer schema's fields, many distinct
# vtables, data shared more than a valid file shares.  The careful reader then reads the file and
# says what is wrong, so the two never disagree on what a file is.

def _max(a):
    """The largest element of the (non-empty) array ``a``, as an int (quicker than ``max``)."""
    return int(a[a.argmax()])


#: whether an array has a true element (``count_nonzero``: quicker than ``any``)
_any = np.count_nonzero


class _Slow(Exception):
    """The bulk reader declines the file: the careful reader reads it instead."""


#: width in bytes and NumPy dtype of each struct code
_WIDTH = {"B": 1, "H": 2, "i": 4, "I": 4, "Q": 8}
_NPTYPE = {"B": np.dtype("<u1"), "H": np.dtype("<u2"), "i": np.dtype("<i4"),
           "I": np.dtype("<u4"), "Q": np.dtype("<u8")}
_STEPS = {w: np.arange(w, dtype=np.int64) for w in (2, 4, 8)}
#: int32 vector formats of the usual lengths (a shape, a pad)
_I32_FORMATS = [f"<{c}i" for c in range(33)]
#: at most this many distinct vtables per vector of tables (else the careful reader)
_MAX_BULK_VTABLES = 8
#: fewer tables than this are read by the careful reader (and fewer strings or vectors of the
#: types in ``_FEW``)
_MIN_BULK = 16
_FEW = ("string", "[string]", "[int32]", "[ubyte]")
#: at most this many bytes of a column of strings are gathered into one (its index array takes
#: eight times as much); a longer column is decoded string by string
_MAX_JOINED = 1 << 22


def _enum_lookup(enum):
    """(valid[value], member[value]) over 0..max value: an int -> member table as arrays."""
    size = max(int(m) for m in enum) + 1
    valid = np.zeros(size, bool)
    members = np.empty(size, object)
    for m in enum:
        valid[int(m)] = True
        members[int(m)] = m
    return valid, members


class _Bulk:
    """Column-wise reading of the tables at an array of positions (see ``read_columns``)."""

    def __init__(self, buf):
        self.buf = buf
        self.b = buf.b
        self.n = buf.n
        self.u8 = np.frombuffer(buf.b, np.uint8)
        #: the buffer as an array of each width (made when first needed): flatbuffers aligns a
        #: scalar to its width
        self.aligned = {}
        #: at most this many elements in one column: a valid file does not share data this much
        self.cap = buf.n // 4 + 64
        buf.bulk = self

    def rows(self, table, positions):
        """The columns of the tables named ``table`` at ``positions`` (checked in bounds)."""
        return self.table(_TID[table], np.array(positions, np.int64))

    def spend(self, count):
        self.buf.budget -= int(count)
        if self.buf.budget < 0:
            raise _Slow

    def at(self, p, code):
        """The scalars of struct ``code`` at positions ``p`` (in bounds: checked by the caller)."""
        w = _WIDTH[code]
        if w == 1:
            return self.u8[p]
        if not _any(p & (w - 1)):
            whole = self.aligned.get(w)
            if whole is None:
                whole = self.aligned[w] = self.u8[:self.n - self.n % w].view(f"<u{w}")
            v = whole[p // w]
            return v.view("<i4") if code == "i" else v
        return self.u8[p[:, None] + _STEPS[w]].view(_NPTYPE[code])[:, 0]

    def targets(self, p):
        """Where the uoffsets at ``p`` lead (each slot lies inside its table: checked)."""
        return p + self.at(p, "I")

    def lengths(self, t, size):
        """Element counts of the vectors at ``t``, each checked to lie inside the buffer."""
        n = self.n
        if _max(t) + 4 > n:
            raise _Slow
        c = self.at(t, "I").astype(np.int64)
        if _any(size * c > n - t - 4):
            raise _Slow
        return c

    # ---- one column per field type -----------------------------------------------------------
    def strings(self, t):
        n, b = self.n, self.b
        c = self.lengths(t, 1)
        e = t + 4 + c
        if _max(e) >= n or _any(self.u8[e]):
            raise _Slow
        self.spend(len(t) + int((c >> 3).sum()))
        total = int(c.sum()) + len(t)
        if total == len(t):
            return [""] * len(t)
        if total <= min(n, _MAX_JOINED):
            # one gather of all the strings, each with its terminator, one decode, one split
            first = (c + 1).cumsum() - (c + 1)
            text = self.u8[(t + 4 - first).repeat(c + 1) + np.arange(total)].tobytes()
            try:
                out = text.decode().split("\0")
            except UnicodeDecodeError:
                raise _Slow from None
            if len(out) == len(t) + 1:
                out.pop()
                return out
            # (else a string holds a zero byte: decoded one by one)
        try:
            return [b[s:x].decode() for s, x in zip((t + 4).tolist(), e.tolist())]
        except UnicodeDecodeError:
            raise _Slow from None

    def int32_vectors(self, t):
        c = self.lengths(t, 4)
        self.spend(len(t) + int((c >> 1).sum()))
        b, unpack = self.b, struct.unpack_from
        starts, counts = (t + 4).tolist(), c.tolist()
        if max(counts) < len(_I32_FORMATS):
            fmt = _I32_FORMATS
            return [unpack(fmt[k], b, s) for s, k in zip(starts, counts)]
        return [unpack(f"<{k}i", b, s) for s, k in zip(starts, counts)]

    def byte_vectors(self, t, zero_copy):
        c = self.lengths(t, 1)
        self.spend(len(t) + int((c >> 3).sum()))
        if zero_copy:
            return list(map(range, (t + 4).tolist(), (t + 4 + c).tolist()))
        b = self.b
        return [b[s:e] for s, e in zip((t + 4).tolist(), (t + 4 + c).tolist())]

    def ragged(self, t):
        """(element positions, counts) of the vectors of uoffsets at ``t``."""
        c = self.lengths(t, 4)
        total = int(c.sum())
        if total > self.cap:
            raise _Slow
        self.spend(len(t) + total + (total >> 1))
        first = c.cumsum() - c
        elems = (t + 4 - 4 * first).repeat(c) + 4 * np.arange(total, dtype=np.int64)
        return elems, c

    def strings_vectors(self, t):
        elems, c = self.ragged(t)
        names = self.strings(self.targets(elems)) if len(elems) else []
        return _split(names, c)

    def tables_vectors(self, tid, t):
        elems, c = self.ragged(t)
        pos = self.targets(elems)
        if len(pos) and _max(pos) >= self.n:
            raise _Slow
        cols = self.table(tid, pos)
        ends = c.cumsum().tolist()
        return [{k: v[a:z] for k, v in cols.items()} for a, z in zip([0] + ends[:-1], ends)]

    def tables(self, tid, t):
        """The sub-tables at ``t`` as one dict each."""
        if _max(t) >= self.n:
            raise _Slow
        cols = self.table(tid, t)
        if not cols:
            return [{} for _ in range(len(t))]
        if len(cols) == 1:
            (key, col), = cols.items()
            return [{key: v} for v in col]
        keys = list(cols)
        return [dict(zip(keys, row)) for row in zip(*cols.values())]

    # ---- a table kind over an array of positions -----------------------------------------------
    def table(self, tid, P):
        """``{field: [value per table]}`` of the tables of kind ``tid`` at positions ``P``."""
        buf, n = self.buf, self.n
        table, names, codes = _KINDS[tid]
        fields = _FIELDS[tid]
        N = len(P)
        if N == 0:
            return {name: [] for name in names}
        if N < _MIN_BULK:
            # a few tables: the careful reader is quicker than whole-column NumPy calls (it hands
            # their vectors of tables back to ``rows``)
            read = READERS[table]
            rows = [read(buf, p, table, 1) for p in P.tolist()]
            return {name: [r[name] for r in rows] for name in names}
        if _max(P) + 4 > n:
            raise _Slow
        self.spend(N * (1 + len(fields)))
        vt = P - self.at(P, "i")
        uniq, inv = [int(vt[0])], None
        other = vt != uniq[0]
        if _any(other):
            # a few distinct vtables (flatbuffers shares equal ones): inv, the index of each's
            inv = np.zeros(N, np.intp)
            while _any(other):
                if len(uniq) == _MAX_BULK_VTABLES:
                    raise _Slow
                v = int(vt[other.argmax()])
                same = vt == v
                inv[same] = len(uniq)
                uniq.append(v)
                other &= ~same
        lays = []
        for v in uniq:
            if v < 0 or v + 4 > n or (_VT_HEAD(self.b, v)[0] - 4) >> 1 > len(names):
                raise _Slow        # (a newer schema's fields are reported by the careful reader)
            lay = buf.layouts[tid].get(v)
            lays.append(lay if lay is not None else buf.layout(tid, v, table))
        if inv is None:
            if _max(P) + lays[0][0] > n:
                raise _Slow
            slots = [(None, P + off) if off else None for off in lays[0][1]]
        else:
            if _any(P + np.array([lay[0] for lay in lays])[inv] > n):
                raise _Slow
            offs = np.array([lay[1] for lay in lays], np.int64)     # (vtable, slot)
            slots = []
            for j in range(len(names)):
                off = offs[:, j][inv]
                rows = off.nonzero()[0]
                slots.append(None if not len(rows) else (None, P + off) if len(rows) == N else
                             (rows, P[rows] + off[rows]))
        out = {}
        j = 0
        for name, ftype in fields:
            if ftype == "union":
                out[f"{name}_type"], out[name] = self.union(slots[j], slots[j + 1], N)
                j += 2
                continue
            slot = slots[j]
            j += 1
            if slot is None:
                out[name] = _absent_column(table, name, ftype, N)
                continue
            rows, p = slot
            values = self.column(table, name, ftype, p)
            if rows is not None:
                col = _absent_column(table, name, ftype, N)
                for i, v in zip(rows.tolist(), values):
                    col[i] = v
                values = col
            out[name] = values
        return out

    def union(self, type_slot, table_slot, N):
        """The type column of a union and its tables (None where absent or of type 0)."""
        types = np.zeros(N, np.int64)
        if type_slot is not None:
            rows, p = type_slot
            if rows is None:
                types = self.at(p, "B").astype(np.int64)
            else:
                types[rows] = self.at(p, "B")
        attrs = [None] * N
        if table_slot is not None:
            rows, p = table_slot
            sel = types if rows is None else types[rows]
            at = range(N) if rows is None else rows.tolist()
            if _max(sel) >= len(_UNION_KIND):
                raise _Slow                     # (an unknown union type)
            kinds = _UNION_KIND[sel]
            if _any(kinds == -1):
                raise _Slow
            t = self.targets(p)
            # tables without fields (CONST's, ADD's, ...): only checked, all at once
            empty = kinds == _NO_FIELDS
            if _any(empty):
                idx = empty.nonzero()[0]
                self.table(_NO_FIELDS, t[idx])
                for j in idx.tolist():
                    attrs[at[j]] = {}
            # the other tables: as columns per union type, a few by the careful readers
            rest = (kinds >= 0) & ~empty
            if _any(rest):
                idx = rest.nonzero()[0]
                types_of = sel[idx]
                many = np.bincount(types_of) >= _MIN_BULK
                for u in many.nonzero()[0].tolist():
                    group = idx[types_of == u]
                    for j, v in zip(group.tolist(), self.tables(_UNION_TID[u], t[group])):
                        attrs[at[j]] = v
                few = idx[~many[types_of]]
                buf, n = self.buf, self.n
                for j, u, pos in zip(few.tolist(), sel[few].tolist(), t[few].tolist()):
                    if pos >= n:
                        raise _Slow
                    attrs[at[j]] = _UNION[u](buf, pos, "attribute", 1)
        return types.tolist(), attrs

    def few(self, table, name, ftype, slots):
        """The values of a few strings or vectors, read one by one by the careful reader."""
        buf, b = self.buf, self.b
        t = [pos + _U32(b, pos)[0] for pos in slots]
        if ftype == "string":
            return [buf.string(x, table, name) for x in t]
        if ftype == "[string]":
            return [buf.strings_vector(x, table, name) for x in t]
        if ftype == "[int32]":
            return [buf.int32_vector(x, table, name) for x in t]
        if (table, name) in _ZERO_COPY:
            return [range(a, a + c) for a, c in (buf.vector(x, 1, table, name) for x in t)]
        return [buf.byte_vector(x, table, name, False) for x in t]

    def column(self, table, name, ftype, p):
        """The values of the field ``name`` of type ``ftype`` whose slots are at ``p``."""
        if ftype in _SCALARS:
            v = self.at(p, _SCALARS[ftype][1])
            return (v != 0).tolist() if ftype == "bool" else v.tolist()
        if ftype in _ENUM_LOOKUP:
            valid, members = _ENUM_LOOKUP[ftype]
            v = self.at(p, "I")
            if _max(v) >= len(valid) or _any(~valid[v]):
                raise _Slow
            return members[v].tolist()
        if len(p) < _MIN_BULK and ftype in _FEW:
            return self.few(table, name, ftype, p.tolist())
        t = self.targets(p)
        if ftype == "string":
            return self.strings(t)
        if ftype == "[int32]":
            return self.int32_vectors(t)
        if ftype == "[ubyte]":
            return self.byte_vectors(t, (table, name) in _ZERO_COPY)
        if ftype == "[string]":
            return self.strings_vectors(t)
        if ftype in _TID:
            return self.tables(_TID[ftype], t)
        return self.tables_vectors(_TID[ftype[1:-1]], t)


_ENUM_LOOKUP = {name: _enum_lookup(e) for name, e in ENUMS.items()}
#: union type -> kind id of its table (-1: unknown, -2: none), the kinds without fields as one
_NO_FIELDS = min(tid for tid in _UNION_TID.values() if not _FIELDS[tid])
_UNION_KIND = np.full(max(_UNION_TID) + 1, -1, np.int64)
_UNION_KIND[0] = -2
for _u, _tid in _UNION_TID.items():
    _UNION_KIND[_u] = _tid if _FIELDS[_tid] else _NO_FIELDS


def read_columns(data):
    """Decode a whole ``.tosa`` buffer like ``read_root``, but with every vector of tables as
    columns: ``{field: [value of each table]}`` instead of a list of dicts.

    The bulk reader reads it; whatever it declines, the careful reader (``read_root``) reads,
    raising the same :class:`SchemaError` for a bad file.  ``TosaTensor.data`` values are
    the ``range`` of their offsets in ``data`` (a range holds no references: the collector
    does not track it).
    """
    buf = _header(data)
    try:
        root = _read_bulk(buf)
    except (_Slow, SchemaError, IndexError, ValueError, OverflowError, struct.error):
        # (the bulk reader checks before it reads: the last four are a safety net only)
        root = None
    if root is None:
        root = _as_columns(read_root(data, spans=True), ROOT_TABLE)
    return root


def _read_bulk(buf):
    """The root table read by ``_Bulk``; raises ``_Slow`` where it declines."""
    root = buf.follow(0, ROOT_TABLE)
    buf.spans = True
    cols = _Bulk(buf).table(_TID[ROOT_TABLE], np.array([root], np.int64))
    out = {k: v[0] for k, v in cols.items()}
    if buf.unknown:
        raise _Slow       # (a newer schema's fields: reported in the careful reader's order)
    out["_unknown_fields"] = []
    return out


def _as_columns(row, table):
    """A table decoded by the careful reader, its vectors of tables turned into columns."""
    out = dict(row)
    for name, ftype in TABLES.get(table, ()):
        value = row[name]
        if ftype in TABLES and value is not None:
            out[name] = _as_columns(value, ftype)
        elif ftype.startswith("[") and ftype[1:-1] in TABLES:
            sub = ftype[1:-1]
            rows = [_as_columns(r, sub) for r in value]
            keys = [k for f, t in TABLES[sub] for k in ((f + "_type", f) if t == "union" else (f,))]
            out[name] = {k: [r[k] for r in rows] for k in keys}
    return out


def _split(values, counts):
    """``values`` cut into lists of ``counts`` elements each."""
    if len(values) == len(counts) and len(counts) and not _any(counts != 1):
        return [[v] for v in values]        # (all of one element, like most operators' outputs)
    ends = counts.cumsum().tolist()
    return [values[a:z] if a != z else [] for a, z in zip([0] + ends[:-1], ends)]


def _absent_column(table, name, ftype, count):
    """The column of ``count`` absent fields (a vector is a fresh, empty one per table)."""
    if ftype == "[string]":
        return [[] for _ in range(count)]
    if ftype.startswith("[") and ftype[1:-1] in TABLES:
        keys = _KINDS[_TID[ftype[1:-1]]][1]
        return [{k: [] for k in keys} for _ in range(count)]
    return [_absent(table, name, ftype)] * count


def _absent(table, name, ftype):
    """The value of an absent scalar, string, byte or int32 vector or table field."""
    default = DEFAULTS.get((table, name), 0)
    if ftype == "bool":
        return bool(default)
    if ftype in _SCALARS:
        return default
    if ftype in ENUMS:
        return ENUMS[ftype](default)
    if ftype == "[int32]":
        return ()
    return None
