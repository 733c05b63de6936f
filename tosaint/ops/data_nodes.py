"""Data nodes: CONST, CONST_SHAPE, IDENTITY (spec chapter "Data Nodes")."""
from ..registry import register
from ..schema.definition import DType as T
from ..schema.definition import Op

_CONST_TYPES = (T.BOOL, T.INT4, T.INT8, T.INT16, T.INT32, T.INT48)
_PROFILE = {T.INT4: "EXT-INT4", T.INT48: "EXT-INT16"}


@register(Op.CONST, {(t,): _PROFILE.get(t, "PRO-INT") for t in _CONST_TYPES})
def const(node):
    out = node.outputs[0]
    node.error_if(node.inputs, "CONST takes no inputs")
    if out.data is None:
        node.error(f"output {out.name!r} carries no constant data")
    value = out.data
    return lambda: value


@register(Op.CONST_SHAPE, {(T.SHAPE,): "PRO-INT"})
def const_shape(node):
    out = node.outputs[0]
    if out.data is None:
        node.error(f"output {out.name!r} carries no shape data")
    value = out.data
    return lambda: value


@register(Op.IDENTITY, {(t, t): _PROFILE.get(t, "PRO-INT") for t in _CONST_TYPES},
          operands=("input1",))
def identity(node):
    a, out = node.inputs[0], node.outputs[0]
    if tuple(a.shape) != tuple(out.shape):
        node.error(f"input shape {list(a.shape)} != output shape {list(out.shape)}")
    return lambda x: x
