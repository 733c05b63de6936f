"""Capture: a torch module through torch.export (its errors made one readable line), in-place
ATen nodes made functional, the graph's constants and user inputs, each node's source line,
and the float runs of the ATen graph that calibration observes."""
from __future__ import annotations

import operator
import re

import torch
from torch.fx.node import map_arg

from ..errors import UnsupportedOp


def export(module, example_inputs):
    """torch.export in eval mode (the module's training flag is restored afterwards)."""
    for i, t in enumerate(example_inputs):
        if not isinstance(t, torch.Tensor) or not (t.is_floating_point() or _is_int(t)):
            what = str(t.dtype) if isinstance(t, torch.Tensor) else type(t).__name__
            raise UnsupportedOp(f"input {i} is neither a floating-point nor an integer tensor "
                                f"({what})")
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            ep = torch.export.export(module, tuple(example_inputs))
    except Exception as e:
        if type(e).__name__ in _DATA_DEPENDENT:
            raise UnsupportedOp(_data_dependent_message(e)) from None
        raise
    finally:
        module.train(was_training)
    return ep


#: torch.export's errors for shapes or control flow that depend on input values
_DATA_DEPENDENT = {"GuardOnDataDependentSymNode", "UserError", "DataDependentOutputException",
                   "PendingUnbackedSymbolNotFound"}


def _data_dependent_message(e):
    """One line: what torch.export could not trace, at the user's source line."""
    import traceback
    text = str(e)
    where = None
    m = re.search(r'File "([^"]+)", line (\d+)', text)
    frames = [(m.group(1), m.group(2))] if m else []
    frames += [(f.filename, str(f.lineno)) for f in traceback.extract_tb(e.__traceback__)]
    for path, line in frames:
        if not _is_library(path) and "/tosaint/" not in path:
            where = f"{path.rsplit('/', 1)[-1]}:{line}"
    first = text.strip().splitlines()[0] if text.strip() else type(e).__name__
    return (f"torch.export cannot trace a shape or branch that depends on input values "
            f"({type(e).__name__}: {first[:160]}) at {where or '<unknown source>'}; "
            "make it static (e.g. fixed sizes) or compute it from an integer input with "
            "tensor ops")


def _is_int(t):
    return t.dtype in (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8,
                       torch.bool)


def inplace_of(op):
    """``aten.relu_.default`` -> ``aten.relu.default`` for an in-place op name, else None."""
    parts = op.split(".")
    if len(parts) != 3 or not parts[1].endswith("_") or parts[1].endswith("__"):
        return None
    return f"{parts[0]}.{parts[1][:-1]}.{parts[2]}"


def _out_of_place(target):
    """The out-of-place overload of in-place ATen op ``target`` (aten.add_.Tensor ->
    aten.add.Tensor), or None.  Looked up in torch's own operator namespace."""
    name = inplace_of(str(target))
    if name is None or not isinstance(target, torch._ops.OpOverload):
        return None
    ns, base, overload = name.split(".")
    packet = getattr(getattr(torch.ops, ns, None), base, None)
    return getattr(packet, overload, None) if packet is not None else None


def _aliases(node):
    """True when ``node`` is a view: its result shares storage with an argument (in-place
    ops, whose results alias with a write, are not views)."""
    schema = getattr(node.target, "_schema", None)
    return schema is not None and any(r.alias_info is not None and not r.alias_info.is_write
                                      for r in schema.returns)


def _alias_group(node):
    """``node`` and every tensor sharing its storage through view ops (up and down)."""
    root = node
    while root.op == "call_function" and _aliases(root) and root.args \
            and isinstance(root.args[0], torch.fx.Node):
        root = root.args[0]
    group, todo = {root}, [root]
    while todo:
        for u in todo.pop().users:
            if u not in group and u.op == "call_function" and _aliases(u) and u.args \
                    and u.args[0] in group:
                group.add(u)
                todo.append(u)
    return group


def functionalize(ep):
    """Replace each in-place ATen node (``relu_``, ``add_``, ``hardtanh_``, ``clamp_``,
    ``dropout_``, ...) by its out-of-place form where that computes the same values: nothing
    reads the written storage (the tensor, its base or a view of either) after the write.
    torch.export already points later uses of the Python variable at the in-place node.  The
    rest stay, and :func:`~tosaint.torch.emit.check_supported` reports them."""
    nodes = list(ep.graph_module.graph.nodes)
    pos = {n: i for i, n in enumerate(nodes)}
    for node in nodes:
        if node.op != "call_function":
            continue
        functional = _out_of_place(node.target)
        if functional is None or not node.args or not isinstance(node.args[0], torch.fx.Node):
            continue
        group = _alias_group(node.args[0])
        later = [u for g in group for u in g.users if u is not node and pos[u] > pos[node]]
        if later or any(pos[g] > pos[node] for g in group):
            continue
        node.target = functional
    return ep


def constants(ep):
    """placeholder name -> float tensor for parameters, buffers and lifted constants."""
    out = {}
    sd = ep.state_dict
    for spec in ep.graph_signature.input_specs:
        kind = spec.kind.name
        if kind == "USER_INPUT":
            continue
        name = spec.arg.name
        if spec.target in sd:
            out[name] = sd[spec.target]
        elif spec.target in ep.constants:
            out[name] = ep.constants[spec.target]
        else:
            raise UnsupportedOp(f"cannot find the value of {kind} {spec.target!r}")
    return out


def user_inputs(ep):
    return [s.arg.name for s in ep.graph_signature.input_specs if s.kind.name == "USER_INPUT"]


def _is_library(path):
    p = path.replace("\\", "/")
    return "/torch/" in p or "/site-packages/" in p or p.startswith("<")


def caller_line():
    """'file.py:LINE: code' of the innermost frame outside tosaint, torch and installed
    packages: where the user called into tosaint.torch."""
    import traceback
    here = __file__.rsplit("/", 2)[0]             # .../tosaint
    for fr in reversed(traceback.extract_stack()):
        if fr.filename.startswith(here) or _is_library(fr.filename):
            continue
        return f"{fr.filename.rsplit('/', 1)[-1]}:{fr.lineno}: {(fr.line or '').strip()}"
    return None


def source_line(node, caller=None):
    """Where ``node`` came from: '[module.path Type] file.py:LINE: code'.

    The code line is the innermost frame of the user's code in the node's stack_trace (torch
    records forward() frames).  When every frame is torch's own (an ``nn.Sequential`` of
    torch layers), it is ``caller`` (the user's line that called :func:`lower`), marked so.
    """
    st = node.meta.get("stack_trace") or ""
    lines = st.strip().splitlines()
    user = inner = None
    for i, line in enumerate(lines):
        m = re.match(r'\s*File "([^"]+)", line (\d+), in (\S+)', line)
        if m:
            code = lines[i + 1].strip() if i + 1 < len(lines) else ""
            path = m.group(1)
            loc = f"{path.rsplit('/', 1)[-1]}:{m.group(2)}: {code}"
            inner = loc
            if not _is_library(path):
                user = loc
    if user is None and caller:
        user = f"{caller} (lowered here)"
    loc = user or inner or "<unknown source>"
    stack = node.meta.get("nn_module_stack") or {}
    if stack:
        path, typ = list(stack.values())[-1]
        typ = typ.__name__ if isinstance(typ, type) else str(typ).rsplit(".", 1)[-1]
        path = str(path).replace("L['self'].", "")
        if path:
            loc = f"[{path} {typ}] {loc}"
    return loc


def aten_name(node):
    t = node.target
    if t is operator.getitem:
        return "getitem"
    return str(t)


class FloatRunner:
    """Evaluate the exported graph in float, recording every node's value."""

    def __init__(self, ep):
        self.ep = ep
        self.graph = ep.graph_module.graph
        self.consts = constants(ep)
        self.inputs = user_inputs(ep)

    def run(self, *args):
        env = {}
        args = list(args)
        if len(args) != len(self.inputs):
            raise TypeError(f"the module takes {len(self.inputs)} inputs, {len(args)} given")
        user = dict(zip(self.inputs, args))
        outs = None
        with torch.no_grad():
            for node in self.graph.nodes:
                if node.op == "placeholder":
                    env[node.name] = (self.consts[node.name] if node.name in self.consts else
                                      user[node.name])
                elif node.op == "call_function":
                    a = map_arg(node.args, lambda n: env[n.name])
                    k = map_arg(node.kwargs, lambda n: env[n.name])
                    env[node.name] = node.target(*a, **k)
                elif node.op == "get_attr":
                    env[node.name] = getattr(self.ep.graph_module, node.target)
                elif node.op == "output":
                    outs = map_arg(node.args[0], lambda n: env[n.name])
        return env, outs

