"""Control flow operators (EXT-CONTROLFLOW): COND_IF and WHILE_LOOP.

The attribute strings (then_graph/else_graph, cond_graph/body_graph) name regions (the current
serialization) or, in older files, blocks; ``Graph.find_block`` tries the region first, as the
reference model does.  Every sub-block is validated and prepared once, in build, so all its
ERROR_IFs are found before anything runs (also those of a branch that is never taken).

COND_IF inputs are ``[condition, *input_list]``; the chosen block receives ``input_list``.
WHILE_LOOP runs the cond block on the current list, then the body block, until the condition
is false; the output list is the final list.  The spec has no iteration limit; tosaint stops a
runaway loop with a ``ResourceLimitError`` after ``max_while_iterations`` iterations (default
``tosaint.levels.DEFAULT_MAX_WHILE_ITERATIONS``, settable in ``prepare``/``run_tosa``).
"""
from ..dtypes import short
from ..errors import ResourceLimitError, SchemaError
from ..levels import MAX_TENSOR_LIST_SIZE
from ..node import current_run
from ..registry import register
from ..schema.definition import DType as T
from ..schema.definition import Op


def _describe(tensors):
    return "[" + ", ".join(f"{short(t.dtype)}{list(t.shape)}" for t in tensors) + "]"


def _list_shape(tensors):
    return [(T(t.dtype), tuple(t.shape)) for t in tensors]


def _block_io(node, name):
    """Input and output tensors of the block ``name`` (looked up before it is prepared, so that
    a list mismatch is reported as such rather than as an error inside the block)."""
    try:
        block = node.plan.graph.find_block(name)
    except KeyError:
        raise SchemaError(f"{node.name}: no region or block named {name!r}") from None

    def tensor(n):
        t = block.tensors.get(n) or node.plan.find_tensor(n)
        if t is None:
            raise SchemaError(f"{node.name}: block {name!r} input/output {n!r} is not declared")
        return t
    return [tensor(n) for n in block.inputs], [tensor(n) for n in block.outputs]


def _check_lists(node, what_a, a, what_b, b):
    if _list_shape(a) != _list_shape(b):
        node.error(f"{what_a} {_describe(a)} != {what_b} {_describe(b)}")


def _list_level(node, name, tensors):
    node.level_check(len(tensors) <= MAX_TENSOR_LIST_SIZE,
                     f"{name} has {len(tensors)} tensors > MAX_TENSOR_LIST_SIZE "
                     f"{MAX_TENSOR_LIST_SIZE}")


def _graph_name(node, attr):
    name = node.attrs.get(attr)
    if not name:
        node.error(f"attribute {attr} names no graph")
    return name.decode() if isinstance(name, bytes) else str(name)


def _cond_key(node):
    # the condition must be bool; the lists may hold any types (checked against the blocks)
    return (node.inputs[0].dtype,) if node.inputs else ()


@register(Op.COND_IF, {(T.BOOL,): "EXT-CONTROLFLOW"}, key=_cond_key,
          operands=("condition", "input_list"))
def cond_if(node):
    cond = node.inputs[0]
    input_list, output_list = node.inputs[1:], node.outputs
    if cond.size != 1:
        node.error(f"condition has {cond.size} elements "
                   f"({list(cond.shape)}); tensor_size(shape) must be 1")
    _list_level(node, "input_list", input_list)
    _list_level(node, "output_list", output_list)
    names = {w: _graph_name(node, w) for w in ("then_graph", "else_graph")}
    for which, name in names.items():
        ins, outs = _block_io(node, name)
        _check_lists(node, "input_list", input_list, f"{which} inputs", ins)
        _check_lists(node, "output_list", output_list, f"{which} outputs", outs)
    then_plan = node.block(names["then_graph"])
    else_plan = node.block(names["else_graph"])
    if node.validating:
        return None         # the blocks are validated; they are prepared in the second pass

    def run(c, *values):
        bp = then_plan if bool(c.reshape(-1)[0]) else else_plan
        return tuple(bp.run(list(values), current_run()))
    return run


@register(Op.WHILE_LOOP, {(): "EXT-CONTROLFLOW"}, key=lambda node: (),
          operands=("input_list",))
def while_loop(node):
    input_list, output_list = node.inputs, node.outputs
    _list_level(node, "input_list", input_list)
    _list_level(node, "output_list", output_list)
    _check_lists(node, "input_list", input_list, "output_list", output_list)
    cond_name, body_name = _graph_name(node, "cond_graph"), _graph_name(node, "body_graph")
    c_ins, c_outs = _block_io(node, cond_name)
    b_ins, b_outs = _block_io(node, body_name)
    _check_lists(node, "input_list", input_list, "cond_graph inputs", c_ins)
    _check_lists(node, "input_list", input_list, "body_graph inputs", b_ins)
    _check_lists(node, "input_list", input_list, "body_graph outputs", b_outs)
    if len(c_outs) != 1:
        node.error(f"cond_graph has {len(c_outs)} outputs; it must have one "
                   "single-element bool tensor")
    if c_outs[0].size != 1:
        node.error(f"cond_graph output has {c_outs[0].size} elements "
                   f"({list(c_outs[0].shape)}); it must have 1")
    if c_outs[0].dtype != T.BOOL:
        node.error(f"cond_graph output type is "
                   f"{T(c_outs[0].dtype).name}; it must be BOOL")
    cond_plan = node.block(cond_name)
    body_plan = node.block(body_name)
    if node.validating:
        return None         # the blocks are validated; they are prepared in the second pass

    def run(*values):
        values = list(values)
        ctx = current_run()
        limit = ctx.max_while_iterations
        i = 0
        while bool(cond_plan.run(values, ctx)[0].reshape(-1)[0]):
            if i >= limit:
                raise ResourceLimitError(f"{node.name}: still looping after "
                                         f"max_while_iterations = {limit} iterations (raise "
                                         "the limit with max_while_iterations= or "
                                         "--max-while-iterations)")
            values = body_plan.run(values, ctx)
            i += 1
        return tuple(values)
    return run
