"""The explicit op registry: (Op, type signature) -> implementation.

An implementation is a *build* function registered with the type signatures it supports,
copied from the spec's "supported data types" tables::

    @register(Op.MATMUL, {(I8, I8, I8, I8, I32): "PRO-INT",
                          (I16, I16, I16, I16, I48): "EXT-INT16"})
    def matmul(node):                 # node: tosaint.node.Node
        ...validate: node.error_if(...), node.level_check(...)...
        if node.validating:           # (only where the preparation below costs something)
            return None
        ...prepare: constants, multipliers, weight layouts (node.derive to share them)...
        def run(a, b, a_zp, b_zp):    # one NumPy array per operator input
            return node.k.matmul(a, b, ...)
        return run

The signature of an operator is, unless ``key`` says otherwise, the dtypes of all its inputs
followed by the dtypes of all its outputs.  ``build`` runs once to validate
(``node.validating``); if it returned None there, it runs again to prepare.  The function it
returns runs on every evaluation and returns one array or a tuple of arrays.  This module imports no op module: ``tosaint.ops``
fills the registry when the interpreter imports it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from .dtypes import short
from .schema.definition import DType, Op


def all_operand_types(node):
    return tuple([t.dtype for t in node.inputs + node.outputs])


@dataclass
class OpEntry:
    op: Op
    build: Callable
    #: signature tuple -> profile or extension name ("PRO-INT", "EXT-INT16", ...)
    signatures: dict = field(default_factory=dict)
    key: Callable = all_operand_types
    #: operand names for messages, e.g. ("input", "weight", "bias", ...)
    operands: tuple = ()


REGISTRY: dict[Op, OpEntry] = {}

#: ops tosaint deliberately does not implement, with the reason (checked by the tests: every
#: op of the schema is registered or listed here)
NOT_IMPLEMENTED: dict[Op, str] = {}


def register(op, signatures, *, key=None, operands=()):
    """Register ``build`` for ``op`` with its supported ``signatures`` ({types: profile})."""
    op = Op(op)

    def deco(build):
        if op in REGISTRY:
            raise RuntimeError(f"{op.name} is registered twice")
        REGISTRY[op] = OpEntry(op, build, {tuple(DType(t) for t in s): p
                                           for s, p in signatures.items()},
                               key or all_operand_types, tuple(operands))
        return build
    return deco


def not_implemented(reason, *ops):
    for op in ops:
        NOT_IMPLEMENTED[Op(op)] = reason


def format_signature(sig):
    return "(" + ", ".join(short(t) for t in sig) + ")"

