"""``run_tosa``: validate and prepare a graph once, then evaluate it as often as asked.

Phases (as in the spec's graph semantics):

1. **prepare** (``Plan``): for every block that runs, order the operators topologically, look up
   each operator's implementation by (op, type signature) in ``tosaint.registry``, and call its
   build function, which checks the ERROR_IF conditions and precomputes what does not depend on
   graph inputs (constants decoded, per-channel multipliers, padded layouts).  Any ERROR_IF
   raises ``ErrorIfViolation`` here, before a kernel runs.
2. **evaluate** (``Plan.run``): check the inputs, then call each prepared operator in order.
   Intermediate tensors are freed after their last use unless ``capture`` asks for them.

REQUIRE conditions found while evaluating are *diagnostics*.  Where the reference model itself
reports UNPREDICTABLE (e.g. ADD overflow), tosaint raises ``UnpredictableError``; where it returns
values that the spec calls unpredictable (int48 saturation, int32 accumulator wrap), tosaint
returns the same values and attaches a ``Diagnostic`` to the result.  ``on_unpredictable="raise"``
raises on every REQUIRE.
"""
from __future__ import annotations

from collections import ChainMap
from dataclasses import dataclass

import numpy as np

from . import kernels as _kernels_pkg  # noqa: F401  (tosaint.kernels)
from .dtypes import RANGE, STORAGE, short
from .errors import (ErrorIfViolation, InputError, LevelLimitError, SchemaError, TosaError,
                     UnpredictableError, UnsupportedOp, UnsupportedTypeSignature)
from .graph import Graph
from .registry import NOT_IMPLEMENTED, REGISTRY, format_signature
from .schema.definition import DType, Op

UNPREDICTABLE_MODES = ("reference", "raise")
LEVELS = {None: None, "none": None, "NONE": None, "8K": "8K", "8k": "8K", "EIGHTK": "8K"}

#: TOSA level "8K" limits (tosa.xml <levels>)
LEVEL_8K = dict(MAX_RANK=6, MAX_KERNEL=8192, MAX_STRIDE=8192, MAX_SCALE=256, MAX_LOG2_SIZE=31,
                MAX_NESTING=6, MAX_TENSOR_LIST_SIZE=64)


@dataclass
class Diagnostic:
    """A REQUIRE of the spec that failed while the reference model still returned values."""
    op: str          # e.g. "CONV2D"
    tensor: str      # the operator's (first) output tensor
    condition: str   # what failed, in the spec's terms
    count: int = 1   # how many elements it concerns (when known)

    def __str__(self):
        n = f" ({self.count} values)" if self.count > 1 else ""
        return f"{self.op} {self.tensor}: {self.condition}{n}"


class RunResult(dict):
    """Graph outputs by name (and every intermediate tensor when captured).

    ``diagnostics`` lists the REQUIRE violations that did not raise; ``outputs`` holds only
    the graph outputs, in graph order.
    """

    def __init__(self, values, outputs, diagnostics):
        super().__init__(values)
        self.output_names = list(outputs)
        self.diagnostics = diagnostics

    @property
    def outputs(self):
        return {k: self[k] for k in self.output_names}


class Node:
    """What an op's build function sees: its operator, tensors, options and helpers."""

    def __init__(self, plan, block_plan, operator, inputs, outputs, depth=0):
        self.plan = plan
        self.block_plan = block_plan
        self.operator = operator
        self.op = Op(operator.op)
        self.attrs = operator.attrs
        self.inputs = inputs      # list[Tensor]
        self.outputs = outputs    # list[Tensor]
        self.depth = depth        # control-flow nesting depth
        out = operator.outputs[0] if operator.outputs else "?"
        self.name = f"{self.op.name} {out}"

    # ---- options ---------------------------------------------------------------------
    @property
    def impl(self):
        return self.plan.impl

    @property
    def k(self):
        """Kernel namespace of the selected implementation (numba or spec twin)."""
        return _kernels_pkg.namespace(self.plan.impl)

    @property
    def level(self):
        return self.plan.level

    # ---- checks ------------------------------------------------------------------------
    def error_if(self, cond, message):
        """Raise ErrorIfViolation naming this operator when ``cond`` holds."""
        if cond:
            raise ErrorIfViolation(f"{self.name}: {message}")

    def level_check(self, ok, message):
        """LEVEL_CHECK: only when the plan was prepared for a level (e.g. "8K")."""
        if self.plan.level and not ok:
            raise LevelLimitError(f"{self.name}: level {self.plan.level}: {message}")

    def require(self, ok, message, *, reference="unpredictable", count=1):
        """A REQUIRE evaluated at run time.

        ``reference`` says what the reference model does when it fails: "unpredictable" (it
        reports UNPREDICTABLE; tosaint raises) or a word such as "saturates"/"wraps" (it returns
        values; tosaint returns the same and records a Diagnostic).
        """
        if ok:
            return
        if reference == "unpredictable" or self.plan.sink_mode == "raise":
            raise UnpredictableError(f"{self.name}: {message}")
        self.plan.sink.append(Diagnostic(self.op.name, self.operator.outputs[0]
                                         if self.operator.outputs else "?", message, count))

    # ---- operands ----------------------------------------------------------------------
    def operand_name(self, i):
        entry = REGISTRY.get(self.op)
        if entry and i < len(entry.operands):
            return entry.operands[i]
        return f"input {i}"

    def const(self, i):
        """The value of input ``i``, which must be a compile-time constant."""
        t = self.inputs[i]
        value = self.block_plan.const_value(t.name)
        if value is None:
            raise ErrorIfViolation(f"{self.name}: {self.operand_name(i)} ({t.name!r}) must be a "
                                   "compile-time constant")
        return value

    def is_const(self, i):
        return self.block_plan.const_value(self.inputs[i].name) is not None

    def block(self, name):
        """A prepared sub-block (COND_IF / WHILE_LOOP bodies), by region or block name."""
        return self.plan.block_plan(name, self.depth + 1)


class _Step:
    __slots__ = ("node", "fn", "ins", "outs", "last_use", "expect")

    def __init__(self, node, fn, ins, outs):
        self.node, self.fn, self.ins, self.outs = node, fn, ins, outs
        self.last_use = ()
        #: (declared shape or None when unranked, storage dtype or None) per output
        self.expect = [(None if t.is_unranked else tuple(t.shape), STORAGE.get(t.dtype))
                       for t in node.outputs]


class BlockPlan:
    """One block, validated and prepared: an ordered list of steps."""

    def __init__(self, plan, block, depth=0):
        self.plan = plan
        self.block = block
        self.depth = depth
        self.inputs = list(block.inputs)
        self.outputs = list(block.outputs)
        self.consts = {}
        #: outputs of CONST / CONST_SHAPE operators: validated once, never re-run
        self.const_outputs = []
        self.steps = []
        #: EXT-VARIABLE tensors (``TosaTensor.variable``): read from and written to
        #: ``plan.variables``, which persists across runs
        self.var_names = {n for n, t in block.tensors.items() if t.variable}
        self._prepare()

    def const_value(self, name):
        if name in self.consts:
            return self.consts[name]
        if name in self.inputs or name in self.var_names:
            return None
        t = self.block.tensors.get(name) or self.plan.find_tensor(name)
        return None if t is None or t.is_const is False or t.variable else t.data

    def tensor(self, name):
        t = self.block.tensors.get(name)
        if t is None:
            t = self.plan.find_tensor(name)
        if t is None:
            raise SchemaError(f"block {self.block.name!r}: tensor {name!r} is not declared")
        return t

    def _order(self):
        ops = self.block.operators
        producer = {}
        for i, o in enumerate(ops):
            for n in o.outputs:
                if n not in self.var_names:
                    producer[n] = i
        indeg = [0] * len(ops)
        users = [[] for _ in ops]
        for i, o in enumerate(ops):
            for d in {producer[n] for n in o.inputs if n in producer}:
                indeg[i] += 1
                users[d].append(i)
        import heapq
        ready = [i for i, d in enumerate(indeg) if d == 0]
        heapq.heapify(ready)
        order = []
        while ready:
            i = heapq.heappop(ready)
            order.append(i)
            for j in users[i]:
                indeg[j] -= 1
                if indeg[j] == 0:
                    heapq.heappush(ready, j)
        if len(order) != len(ops):
            raise SchemaError(f"block {self.block.name!r}: the operators form a cycle")
        return order

    def _prepare(self):
        block = self.block
        available = set(self.inputs)
        for name, t in block.tensors.items():
            if t.data is not None and not t.variable and name not in self.inputs:
                self.consts[name] = t.data
                available.add(name)
        for i in self._order():
            o = block.operators[i]
            ins = [self.tensor(n) for n in o.inputs]
            outs = [self.tensor(n) for n in o.outputs]
            node = Node(self.plan, self, o, ins, outs, self.depth)
            fn = self.plan.build(node)
            if node.op in (Op.CONST, Op.CONST_SHAPE) and all(n in self.consts
                                                             for n in o.outputs):
                self.const_outputs.extend(o.outputs)
                continue
            self.steps.append(_Step(node, fn, list(o.inputs), list(o.outputs)))
        self.fused = self._fuse()
        self._free_after_last_use(self.steps)
        self._free_after_last_use(self.fused)

    def _free_after_last_use(self, steps):
        last = {}
        for si, s in enumerate(steps):
            for n in s.ins:
                last[n] = si
        keep = set(self.outputs)
        frees = [[] for _ in steps]
        for n, si in last.items():
            if n not in keep and n not in self.consts:
                frees[si].append(n)
        for s, f in zip(steps, frees):
            s.last_use = tuple(f)

    def _fuse(self):
        """The steps for runs without ``capture``: an operator that offers ``fn.fuse`` (a
        CONV2D or DEPTHWISE_CONV2D with constant weights) followed by the only reader of its
        output, a RESCALE that offers ``fn.epilogue``, become one step that never stores the
        accumulator tensor.  The fused
        function returns None whenever either op would flag anything; then both run unfused,
        so values and diagnostics are exactly those of the two steps."""
        readers = {}
        for i, s in enumerate(self.steps):
            for n in s.ins:
                readers.setdefault(n, []).append(i)
        others = [b for b in self.plan.graph.blocks() if b is not self.block]
        steps, absorbed = [], set()
        for i, s in enumerate(self.steps):
            if i in absorbed:
                continue
            fuse = getattr(s.fn, "fuse", None)
            t = s.outs[0] if len(s.outs) == 1 else None
            r = readers.get(t, [])
            if fuse and t not in self.outputs and len(r) == 1 and not any(
                    t in o.inputs for b in others for o in b.operators):
                rs = self.steps[r[0]]
                epilogue = getattr(rs.fn, "epilogue", None)
                if rs.node.op == Op.RESCALE and rs.ins[0] == t and epilogue is not None:
                    steps.append(_Step(rs.node, _fused(fuse(epilogue), s.fn, rs.fn), s.ins,
                                       rs.outs))
                    absorbed.add(r[0])
                    continue
            steps.append(s)
        return steps

    def run(self, values, *, capture=None, parent=None):
        """Evaluate with ``values`` (list, in block-input order); returns the output list."""
        env = dict(zip(self.inputs, values))
        env.update(self.consts)
        scope = env if parent is None else ChainMap(env, parent)
        if self.var_names:
            scope = ChainMap(*([env] if parent is None else [env, parent]), self.plan.variables)
        if capture is not None:
            for name in self.const_outputs:
                capture[name] = env[name]
        for s in (self.steps if capture is not None else self.fused):
            try:
                args = [scope[n] for n in s.ins]
            except KeyError as e:
                if e.args[0] in self.var_names:
                    raise UnpredictableError(f"{s.node.name}: variable {e.args[0]!r} is read "
                                             "before it was written") from None
                raise SchemaError(f"{s.node.name}: input tensor {e.args[0]!r} is not produced "
                                  "by any operator, constant or graph input") from None
            res = s.fn(*args)
            if not isinstance(res, tuple):
                res = (res,)
            for name, (shape, dt), arr in zip(s.outs, s.expect, res):
                if (shape is not None and arr.shape != shape) or (dt is not None
                                                                  and arr.dtype != dt):
                    _output_mismatch(s.node, name, arr)
                env[name] = arr
                if name in self.var_names:
                    self.plan.variables[name] = arr
            if capture is not None:
                for name in s.outs:
                    capture[name] = env[name]
            else:
                for n in s.last_use:
                    env.pop(n, None)
        return [scope[n] for n in self.outputs]


def _fused(fused, producer, rescale):
    def run(*args):
        y = fused(*args)
        return y if y is not None else rescale(producer(*args))
    return run


def _output_mismatch(node, name, arr):
    t = next(t for t in node.outputs if t.name == name)
    raise ErrorIfViolation(f"{node.name}: computed output {list(arr.shape)} "
                           f"{arr.dtype} does not match the declared tensor "
                           f"{t.name!r} {list(t.shape)} {DType(t.dtype).name}")


class Plan:
    """A graph, validated and prepared once; run it as often as needed."""

    def __init__(self, graph: Graph, *, impl="numba", level=None):
        from . import ops  # noqa: F401  (fills the registry)
        if level not in LEVELS:
            raise ValueError(f"level must be None, 'none' or '8K', not {level!r}")
        self.graph = graph
        self.impl = impl
        self.level = LEVELS[level]
        self.sink = []
        self.sink_mode = "reference"
        #: EXT-VARIABLE state by tensor name: reset to the initial values before every run
        #: unless ``run(..., keep_variables=True)``
        self.variables = {}
        self._variables_initialised = False
        self._blocks = {}
        self._tensors = {}
        for b in graph.blocks():
            for n, t in b.tensors.items():
                self._tensors.setdefault(n, t)
        self._has_variables = any(t.variable for b in graph.blocks()
                                  for t in b.tensors.values())
        self.main = BlockPlan(self, graph.main)
        self._blocks[("", graph.main.name)] = self.main

    def find_tensor(self, name):
        return self._tensors.get(name)

    def reset_variables(self):
        """Set every variable tensor back to its initial value (its data, if any)."""
        self.variables.clear()
        for b in self.graph.blocks():
            for n, t in b.tensors.items():
                if t.variable and t.data is not None and n not in self.variables:
                    self.variables[n] = t.data.copy()
        self._variables_initialised = True

    def block_plan(self, name, depth):
        if self.level and depth > LEVEL_8K["MAX_NESTING"]:
            raise LevelLimitError(f"level {self.level}: control flow nested deeper than "
                                  f"{LEVEL_8K['MAX_NESTING']}")
        key = (name, depth)
        if key not in self._blocks:
            try:
                block = self.graph.find_block(name)
            except KeyError:
                raise SchemaError(f"no region or block named {name!r}") from None
            self._blocks[key] = None  # guards against a body that contains itself
            self._blocks[key] = BlockPlan(self, block, depth)
        elif self._blocks[key] is None:
            raise SchemaError(f"block {name!r} contains itself")
        return self._blocks[key]

    def build(self, node):
        entry = REGISTRY.get(node.op)
        if entry is None:
            why = NOT_IMPLEMENTED.get(node.op, "not implemented")
            raise UnsupportedOp(f"{node.name}: operator {node.op.name} is not supported by "
                                f"tosaint ({why})")
        sig = entry.key(node)
        if sig not in entry.signatures:
            legal = ", ".join(format_signature(s) for s in entry.signatures)
            raise UnsupportedTypeSignature(
                f"{node.name}: type signature {format_signature(sig)} is not supported; "
                f"{node.op.name} takes {legal}")
        if self.level:
            for t in node.inputs + node.outputs:
                node.level_check(len(t.shape) <= LEVEL_8K["MAX_RANK"],
                                 f"rank of {t.name!r} is {len(t.shape)} > MAX_RANK "
                                 f"{LEVEL_8K['MAX_RANK']}")
        node.signature = sig
        return entry.build(node)

    # ---- evaluation --------------------------------------------------------------------
    def _inputs(self, inputs):
        names = self.main.inputs
        if isinstance(inputs, dict):
            missing = [n for n in names if n not in inputs]
            if missing:
                raise InputError(f"graph input(s) {missing} missing; the graph takes {names}")
            extra = [n for n in inputs if n not in names]
            if extra:
                raise InputError(f"{extra} are not graph inputs; the graph takes {names}")
            values = [inputs[n] for n in names]
        else:
            values = list(inputs)
            if len(values) != len(names):
                raise InputError(f"{len(values)} inputs given; the graph takes {len(names)}: "
                                 f"{names}")
        out = []
        for name, v in zip(names, values):
            t = self.main.tensor(name)
            want = STORAGE.get(t.dtype)
            if want is None:
                raise InputError(f"graph input {name!r} has type {DType(t.dtype).name}, which "
                                 "tosaint cannot run")
            if not isinstance(v, np.ndarray):
                raise InputError(f"graph input {name!r} must be a numpy array of {want} "
                                 f"(TOSA {DType(t.dtype).name}), not {type(v).__name__}")
            if v.dtype != want:
                raise InputError(f"graph input {name!r} has dtype {v.dtype}; expected {want} "
                                 f"(TOSA {short(t.dtype)})")
            if v.shape != tuple(t.shape):
                raise InputError(f"graph input {name!r} has shape {list(v.shape)}; expected "
                                 f"{list(t.shape)}")
            if t.dtype in (DType.INT48, DType.INT4):
                lo, hi = RANGE[t.dtype]
                if v.size and (v.min() < lo or v.max() > hi):
                    raise InputError(f"graph input {name!r} holds values outside the "
                                     f"{DType(t.dtype).name} range [{lo}, {hi}]")
            out.append(v if v.flags.c_contiguous else v.copy())
        return out

    def run(self, inputs, *, capture=False, on_unpredictable="reference", keep_variables=False):
        """Evaluate the graph.  ``keep_variables=True`` starts from the variable values the
        previous run left (EXT-VARIABLE state); by default every run starts from the initial
        values."""
        if on_unpredictable not in UNPREDICTABLE_MODES:
            raise ValueError(f"on_unpredictable must be one of {UNPREDICTABLE_MODES}")
        values = self._inputs(inputs)
        if self._has_variables and (not keep_variables or not self._variables_initialised):
            self.reset_variables()
        self.sink = []
        self.sink_mode = on_unpredictable
        cap = {} if capture else None
        if cap is not None:
            cap.update(zip(self.main.inputs, values))
        outs = self.main.run(values, capture=cap)
        result = dict(cap) if cap is not None else {}
        result.update(zip(self.main.outputs, outs))
        return RunResult(result, self.main.outputs, self.sink)


def prepare(graph, *, impl="numba", level=None) -> Plan:
    """Load (if needed), validate and prepare ``graph``; the plan is cached on the Graph."""
    if not isinstance(graph, Graph):
        from .schema.loader import load
        graph = load(graph)
    key = (impl, LEVELS.get(level, level))
    plan = graph._plans.get(key)
    if plan is None:
        plan = Plan(graph, impl=impl, level=level)
        graph._plans[key] = plan
    return plan


def run_tosa(graph, inputs, *, capture=False, on_unpredictable="reference", impl="numba",
             level=None, keep_variables=False) -> RunResult:
    """Run a TOSA graph (a Graph, a path or bytes) on ``inputs`` (dict by name, or list).

    Returns the graph outputs by name with their TOSA storage dtype (int48 as int64).  With
    ``capture=True`` every intermediate tensor is included too.  ``on_unpredictable`` is
    "reference" (raise where the reference model reports UNPREDICTABLE, otherwise return its
    values and list the violated REQUIREs in ``result.diagnostics``) or "raise".  ``impl``
    picks the Numba kernels or their NumPy twins ("spec"); ``level="8K"`` adds level checks.
    ``keep_variables=True`` keeps the EXT-VARIABLE state the previous run on the same graph
    left (the prepared plan is cached on the Graph); by default each run starts afresh.
    """
    return prepare(graph, impl=impl, level=level).run(inputs, capture=capture,
                                                     on_unpredictable=on_unpredictable,
                                                     keep_variables=keep_variables)


__all__ = ["Diagnostic", "Plan", "RunResult", "prepare", "run_tosa", "TosaError"]
