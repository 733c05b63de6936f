"""The graph model: regions of blocks of tensors and operators, as in a ``.tosa`` file.

Tensors are referred to by name, as in the flatbuffer.  Constant data is decoded once by the
loader into the dtype's NumPy storage (``tosaint.dtypes``): read-only arrays, views of the
file's bytes where the storage is the file's own encoding.  Operator attributes are kept at
schema level: a dict from the attribute table's field names (``schema.definition.ATTRIBUTES``)
to plain values (ints, bools, tuples of ints, bytes, strings, enum members), so that a file
round-trips unchanged.  Shape values (CONST_SHAPE outputs, ``block.shapes`` in the file) are
tensors of dtype SHAPE with int64 data.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from .schema.definition import ATTRIBUTES, DType, Op


class Version(NamedTuple):
    major: int = 1
    minor: int = 0
    patch: int = 0
    draft: bool = False

    def __str__(self):
        return f"{self.major}.{self.minor}.{self.patch}{' (draft)' if self.draft else ''}"


@dataclass
class Tensor:
    name: str
    shape: tuple
    dtype: DType
    data: np.ndarray | None = None
    variable: bool = False
    variable_name: str | None = None
    is_unranked: bool = False
    #: other schema fields kept for round trip (offset, size, scale_type, ...)
    extra: dict = field(default_factory=dict)

    @property
    def is_const(self):
        return self.data is not None

    @property
    def size(self):
        return int(np.prod(self.shape, dtype=np.int64)) if self.shape else 1

    def __repr__(self):
        const = " const" if self.data is not None else ""
        return f"Tensor({self.name!r}, {list(self.shape)}, {DType(self.dtype).name}{const})"


@dataclass
class Operator:
    op: Op
    inputs: list
    outputs: list
    attrs: dict = field(default_factory=dict)
    location: str | None = None

    @property
    def name(self):
        """How messages name this operator: its op and first output."""
        out = self.outputs[0] if self.outputs else "?"
        return f"{Op(self.op).name} {out}"

    def attr(self, key, default=None):
        return self.attrs.get(key, default)


@dataclass
class Block:
    name: str
    tensors: dict = field(default_factory=dict)        # name -> Tensor, in file order
    operators: list = field(default_factory=list)
    inputs: list = field(default_factory=list)
    outputs: list = field(default_factory=list)

    def tensor(self, name):
        return self.tensors[name]


@dataclass
class Region:
    name: str
    blocks: list = field(default_factory=list)


@dataclass
class Graph:
    regions: list = field(default_factory=list)
    version: Version = field(default_factory=Version)
    #: (major, minor, micro, modifier) of the writing serializer, or None
    software_version: tuple | None = None
    #: {"min_reader_version": (major, minor, micro, modifier) | None, "features": int} or None
    compatibility: dict | None = None
    #: prepared execution plans, keyed by options (filled by the interpreter)
    _plans: dict = field(default_factory=dict, repr=False, compare=False)

    # ---- navigation --------------------------------------------------------------------
    @property
    def main(self) -> Block:
        return self.regions[0].blocks[0]

    @property
    def inputs(self):
        return list(self.main.inputs)

    @property
    def outputs(self):
        return list(self.main.outputs)

    @property
    def tensors(self):
        return self.main.tensors

    @property
    def operators(self):
        return self.main.operators

    def region(self, name):
        for r in self.regions:
            if r.name == name:
                return r
        raise KeyError(name)

    def find_block(self, name):
        """A region's first block by region name, else a block by its own name."""
        for r in self.regions:
            if r.name == name and r.blocks:
                return r.blocks[0]
        for r in self.regions:
            for b in r.blocks:
                if b.name == name:
                    return b
        raise KeyError(name)

    def blocks(self):
        for r in self.regions:
            yield from r.blocks

    # ---- file I/O ----------------------------------------------------------------------
    def to_bytes(self, version: Version | tuple | None = None) -> bytes:
        """Serialize to a ``.tosa`` flatbuffer (``version`` overrides ``self.version``)."""
        from .schema.writer import write_graph
        return write_graph(self, version=version)

    def save(self, path, version=None):
        with open(path, "wb") as f:
            f.write(self.to_bytes(version))

    # ---- summary -----------------------------------------------------------------------
    def op_counts(self):
        counts = {}
        for b in self.blocks():
            for o in b.operators:
                counts[Op(o.op).name] = counts.get(Op(o.op).name, 0) + 1
        return dict(sorted(counts.items()))

    def const_bytes(self):
        return sum(int(t.data.nbytes) for b in self.blocks() for t in b.tensors.values()
                   if t.data is not None)

    def __eq__(self, other):
        if not isinstance(other, Graph):
            return NotImplemented
        return graphs_equal(self, other)

    __hash__ = object.__hash__


def attribute_table(op):
    """Name and fields of the attribute table of ``op``."""
    return ATTRIBUTES[Op(op)]


def _tensor_equal(a: Tensor, b: Tensor):
    if (a.name, tuple(a.shape), DType(a.dtype), a.variable, a.variable_name or None,
            a.is_unranked) != (b.name, tuple(b.shape), DType(b.dtype), b.variable,
                               b.variable_name or None, b.is_unranked):
        return False
    if (a.data is None) != (b.data is None):
        return False
    if a.data is not None:
        if a.data.dtype != b.data.dtype or a.data.shape != b.data.shape:
            return False
        if a.data.dtype.kind == "f":              # bitwise: a NaN constant equals itself
            if np.ascontiguousarray(a.data).tobytes() != np.ascontiguousarray(b.data).tobytes():
                return False
        elif not np.array_equal(a.data, b.data):
            return False
    return True


def _attr_norm(v: Any):
    if isinstance(v, (list, tuple, np.ndarray)):
        return tuple(int(x) for x in v)
    if isinstance(v, (bytes, bytearray)):
        return bytes(v)
    return v


def graphs_equal(a: Graph, b: Graph):
    """Structural equality: regions, blocks, tensors (with data), operators and attributes."""
    if len(a.regions) != len(b.regions) or tuple(a.version) != tuple(b.version):
        return False
    for ra, rb in zip(a.regions, b.regions):
        if ra.name != rb.name or len(ra.blocks) != len(rb.blocks):
            return False
        for ba, bb in zip(ra.blocks, rb.blocks):
            if (ba.name, list(ba.inputs), list(ba.outputs)) != (bb.name, list(bb.inputs),
                                                               list(bb.outputs)):
                return False
            # same names; the order is not compared: a file keeps shape values (block.shapes)
            # apart from the other tensors, so their interleaving does not survive a round trip
            if ba.tensors.keys() != bb.tensors.keys():
                return False
            if not all(_tensor_equal(ba.tensors[k], bb.tensors[k]) for k in ba.tensors):
                return False
            if len(ba.operators) != len(bb.operators):
                return False
            for oa, ob in zip(ba.operators, bb.operators):
                if (Op(oa.op), list(oa.inputs), list(oa.outputs), oa.location) != \
                        (Op(ob.op), list(ob.inputs), list(ob.outputs), ob.location):
                    return False
                keys = set(oa.attrs) | set(ob.attrs)
                if any(_attr_norm(oa.attrs.get(k)) != _attr_norm(ob.attrs.get(k)) for k in keys):
                    return False
    return True
