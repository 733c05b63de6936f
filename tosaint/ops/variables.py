"""Variable operators (EXT-VARIABLE): VARIABLE, VARIABLE_READ, VARIABLE_WRITE.

In the flatbuffer a variable is a tensor with ``variable = true`` (its ``data``, if any, is the
initial value); the 1.0 attribute tables of these operators are empty, so the operators name the
variable through that tensor:

- ``VARIABLE``: outputs ``[var]`` (optionally inputs ``[initial_value]``): declares it.
- ``VARIABLE_READ``: inputs ``[var]``, outputs ``[output1]``.
- ``VARIABLE_WRITE``: inputs ``[input1]``, outputs ``[var]`` (or inputs ``[var, input1]`` and no
  outputs).

Any other operator may also read a variable tensor or write it (the reference model's own
serializers write variables with IDENTITY).  The state lives in ``Plan.variables`` and is reset
The state belongs to each run (``node.variables()``, the run context's values): it starts from
the initial values unless ``run(..., keep_variables=True)``.
"""
import numpy as np

from ..dtypes import STORAGE
from ..registry import register
from ..schema.definition import DType as T
from ..schema.definition import Op

_PROFILE = "EXT-VARIABLE"


def _var(node, t, role):
    if not t.variable:
        node.error(f"{role} {t.name!r} is not a variable tensor (variable = "
                   "true)")
    return t


def _same(node, var, t, role):
    node.require(tuple(var.shape) == tuple(t.shape),
                 f"{role} shape {list(t.shape)} != variable shape {list(var.shape)}")
    node.require(var.dtype == t.dtype, f"{role} type {T(t.dtype).name} != variable type "
                 f"{T(var.dtype).name}")


@register(Op.VARIABLE, {(T.INT8,): _PROFILE, (T.INT8, T.INT8): _PROFILE},
          operands=("initial_value",))
def variable(node):
    var = _var(node, node.outputs[0], "output")
    if node.inputs:
        _same(node, var, node.inputs[0], "initial_value")
    if node.validating:
        return None
    zeros = np.zeros(var.shape, STORAGE[var.dtype])

    def run(*initial):
        state = node.variables()
        if var.name in state:
            return state[var.name]
        return initial[0].copy() if initial else zeros.copy()
    return run


@register(Op.VARIABLE_READ, {(T.INT8, T.INT8): _PROFILE}, operands=("variable",))
def variable_read(node):
    var = _var(node, node.inputs[0], "input")
    _same(node, var, node.outputs[0], "output1")
    return lambda v: v.copy()


@register(Op.VARIABLE_WRITE, {(T.INT8, T.INT8): _PROFILE}, operands=("input1",))
def variable_write(node):
    if node.outputs:
        var, src = _var(node, node.outputs[0], "output"), node.inputs[0]
        _same(node, var, src, "input1")
        return lambda x: x.copy()
    node.error_if(len(node.inputs) != 2, "VARIABLE_WRITE needs a variable output, or inputs "
                  "[variable, input1]")
    var, src = _var(node, node.inputs[0], "input 0"), node.inputs[1]
    _same(node, var, src, "input1")

    def run(_v, x):
        node.variables()[var.name] = x.copy()
        return ()
    return run
