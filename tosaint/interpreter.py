"""``run_tosa``: validate and prepare a graph once, then evaluate it as often as asked.

The layers run one way: bytes -> ``Graph`` (``tosaint.schema``) -> ``Plan`` (here) -> kernels.
An op's life cycle (see ``tosaint.node``):

1. **validate** (``tosaint.validate``, and the first pass of ``prepare``): for every block that
   runs, order the operators topologically, check that every tensor an operator reads or the
   block returns is produced by something, look each operator up by (op, type signature) in
   ``tosaint.registry`` and run its build function with ``node.validating`` set: every ERROR_IF
   raises ``ErrorIfViolation`` here.  Then the memory budget: the peak of the tensors a run
   allocates (plus the big kernel scratch) must fit ``max_memory`` (``ResourceLimitError``).
2. **prepare** (``prepare``): build every operator again, now preparing what does not depend
   on graph inputs (constants decoded, per-channel multipliers, weight layouts); the build
   function returns the run function, with its arguments bound.
3. **run** (``Plan.run``, the only run loop): check the inputs, then call each prepared
   operator in order, sub-blocks included.  Intermediate tensors are freed after their last
   use unless ``capture`` asks for them; ``trace`` sees every tensor as it is computed.

REQUIRE conditions found while running are *diagnostics*.  Where the reference model itself
reports UNPREDICTABLE (e.g. ADD overflow), tosaint raises ``UnpredictableError``; where it returns
values that the spec calls unpredictable (int48 saturation, int32 accumulator wrap), tosaint
returns the same values and attaches a ``Diagnostic`` to the result.  ``on_unpredictable="raise"``
raises on every REQUIRE.

Thread safety: a prepared ``Plan`` (and the ``Graph`` it is cached on) can be run from many
threads at once; each call keeps its diagnostics, mode, capture and variables to itself.  Only
``keep_variables=True`` shares state between calls (the variable values a run leaves).
"""
from __future__ import annotations

import heapq
import weakref

import numpy as np

from . import ops  # noqa: F401  (fills the registry: the one import of the op modules)
from . import kernels, levels
from .dtypes import INTEGER, STORAGE, short
from .errors import (ErrorIfViolation, InternalError, LevelLimitError, ResourceLimitError,
                     SchemaError, TosaError, UnpredictableError, UnsupportedOp,
                     UnsupportedTypeSignature)
from .gc_pause import gc_paused
from .graph import Graph
from .inputs import coerce
from .node import Diagnostic, Node, RunContext, enter_run, leave_run
from .registry import NOT_IMPLEMENTED, REGISTRY, format_signature
from .schema.definition import DType, Op

UNPREDICTABLE_MODES = ("reference", "raise")
#: CONST / CONST_SHAPE -> the output types of their signature tables
_CONST_TYPES = {op: {sig[0] for sig in REGISTRY[op].signatures}
                for op in (Op.CONST, Op.CONST_SHAPE)}
#: types an integer signature may hold (a signature of only these that is not in the
#: registry is outside the spec's supported-types table: the graph is invalid)
_INTEGER_SIGNATURE_TYPES = INTEGER | {DType.BOOL, DType.SHAPE}


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


class _Step:
    __slots__ = ("node", "fn", "ins", "outs", "frees", "expect")

    def __init__(self, node, fn, ins, outs):
        self.node, self.fn, self.ins, self.outs = node, fn, ins, outs
        self.frees = ()
        #: (declared shape or None when unranked, storage dtype or None) per output
        self.expect = [(None if t.is_unranked else tuple(t.shape), STORAGE.get(t.dtype))
                       for t in node.outputs]


_ITEMSIZE = {t: s.itemsize for t, s in STORAGE.items()}


def _nbytes(t):
    """Bytes a tensor takes in storage (Python ints: no overflow for absurd shapes)."""
    n = _ITEMSIZE.get(t.dtype, 8)
    for d in t.shape:
        d = int(d)
        n *= d if d > 0 else 0
    return n


def _frees(steps_io, keep):
    """For each step (ins, outs), the names that are dead after it: read for the last time
    there, or produced there and never read; ``keep`` (block outputs, constants) never."""
    last = {}
    for si, (ins, outs) in enumerate(steps_io):
        for n in outs:
            last.setdefault(n, si)
        for n in ins:
            last[n] = si
    frees = [[] for _ in steps_io]
    for n, si in last.items():
        if n not in keep:
            frees[si].append(n)
    return [tuple(f) for f in frees]


class BlockPlan:
    """One block: validated (``validate``), then prepared (``prepare``) into ordered steps."""

    def __init__(self, plan, block, depth=0):
        #: the plan, by a weak proxy (as the nodes' references to it and to this block): the
        #: run functions refer to their nodes, so strong references back would make every
        #: prepared plan a reference cycle, which only the cyclic collector frees
        self.plan = plan
        me = weakref.proxy(self)
        self.block = block
        self.depth = depth
        self.inputs = list(block.inputs)
        self.outputs = list(block.outputs)
        tensors = block.tensors
        #: EXT-VARIABLE tensors (``TosaTensor.variable``): read from and written to the run's
        #: variables, which persist across runs only with ``keep_variables=True``
        self.var_names = {n for n, t in tensors.items() if t.variable}
        inputs = set(self.inputs)
        self.consts = consts = {n: t.data for n, t in tensors.items()
                                if t.data is not None and not t.variable and n not in inputs}
        #: outputs of CONST / CONST_SHAPE operators: checked here, never run
        self.const_outputs = []
        self.steps = []
        self.fused = []
        self.validated = self.prepared = False
        self.nodes = []
        #: per node, the names dead after it (``_frees``; set by ``validate``)
        self.frees = None
        ops = block.operators
        get = tensors.get
        const_types = _CONST_TYPES.get
        const_outputs, nodes = self.const_outputs, self.nodes
        for i in self._order():
            o = ops[i]
            # a CONST / CONST_SHAPE operator with no inputs whose outputs are constant tensors
            # of a type of its signature table: nothing to build (every other one goes through
            # its build function, which names what is wrong)
            types = const_types(o.op)
            if types is not None and not o.inputs:
                outs = o.outputs
                for n in outs:
                    if n not in consts or tensors[n].dtype not in types:
                        break
                else:
                    const_outputs += outs
                    continue
            ins = [get(n) or self.tensor(n) for n in o.inputs]
            outs = [get(n) or self.tensor(n) for n in o.outputs]
            nodes.append(Node(plan, me, o, ins, outs, depth))
        self._check_produced()

    def const_value(self, name):
        if name in self.consts:
            return self.consts[name]
        if name in self.inputs or name in self.var_names:
            return None
        t = self.plan.find_tensor(name)
        return None if t is None or t.data is None or t.variable else t.data

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
        var_names = self.var_names
        for i, o in enumerate(ops):
            for n in o.outputs:
                if n not in var_names:
                    producer[n] = i
        get = producer.get
        for i, o in enumerate(ops):
            if o.inputs:
                for n in o.inputs:
                    if get(n, -1) >= i:
                        break
                else:
                    continue
                break
        else:
            # every operator comes after the producers of its inputs (as serialized graphs
            # usually are): the smallest-index-first order below is the given order
            return range(len(ops))
        indeg = [0] * len(ops)
        users = [[] for _ in ops]
        for i, o in enumerate(ops):
            for d in {producer[n] for n in o.inputs if n in producer}:
                indeg[i] += 1
                users[d].append(i)
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

    def _check_produced(self):
        """Every tensor an operator reads, and every block output, must be a block input, a
        constant, a variable or the output of an operator (else the run could not find it)."""
        available = set(self.inputs) | self.var_names | set(self.consts)
        for node in self.nodes:
            o = node.operator
            for name in o.inputs:
                if name not in available:
                    self._const_from_elsewhere(name, f"{node.name}: input tensor")
            available.update(o.outputs)
        for name in self.outputs:
            if name not in available:
                self._const_from_elsewhere(name, f"block {self.block.name!r}: output tensor")

    def _const_from_elsewhere(self, name, what):
        value = self.const_value(name)      # a constant declared in another block
        if value is None:
            raise SchemaError(f"{what} {name!r} is not produced by any operator, constant or "
                              "block input")
        self.consts[name] = value

    # ---- phase 1: validate ---------------------------------------------------------------
    def validate(self):
        build = self.plan.build
        fns = []
        for node in self.nodes:
            node.validating = True
            fns.append(build(node))
        self.fns = fns
        # the frees of the run (a block's outputs and constants are never freed), also what
        # the memory check follows
        self.frees = _frees([(node.operator.inputs, node.operator.outputs)
                             for node in self.nodes], set(self.outputs) | set(self.consts))
        self._check_memory()
        self.validated = True

    def _check_memory(self):
        """The peak bytes a run of this block allocates, along the schedule, against the
        plan's budget: live intermediate tensors, the step's outputs and its kernel scratch."""
        limit = self.plan.max_memory
        consts = self.consts
        size = {}
        live = 0
        for node, free in zip(self.nodes, self.frees):
            new = 0
            for t in node.outputs:
                if t.name not in consts:
                    size[t.name] = b = _nbytes(t)
                    new += b
            if live + new + node.scratch > limit:
                outs = [t for t in node.outputs if t.name not in consts]
                big = max(outs, key=_nbytes, default=None)
                what = f" (output {big.name!r} {short(big.dtype)}{list(big.shape)} alone " \
                    f"takes {_nbytes(big)} bytes)" if big is not None else ""
                raise ResourceLimitError(
                    f"{node.name}: running it needs {live + new + node.scratch} bytes of "
                    f"tensors and scratch{what}, over the memory budget of {limit} bytes "
                    "(raise it with max_memory= or --max-memory)")
            live += new
            for n in free:
                live -= size.get(n, 0)

    # ---- phase 2: prepare ----------------------------------------------------------------
    def prepare(self):
        build = self.plan.build
        steps = self.steps
        used = set(self.outputs)
        used.update(self.const_outputs)
        for node, fn, free in zip(self.nodes, self.fns, self.frees):
            if fn is None:
                # the op stopped before its preparation while validating: build it again
                node.validating = False
                fn = build(node)
            o = node.operator
            s = _Step(node, fn, o.inputs, o.outputs)
            s.frees = free
            steps.append(s)
            used.update(o.inputs)
        self.fns = None
        # only the constants a step reads or the block returns go into a run's environment
        self.consts = {n: v for n, v in self.consts.items() if n in used}
        self.fused = self._fuse()
        self.prepared = True

    def _fuse(self):
        """The steps for runs without capture or trace: an operator that offers ``fn.fuse`` (a
        CONV2D or DEPTHWISE_CONV2D with constant weights) followed by the only reader of its
        output, a RESCALE that offers ``fn.epilogue``, become one step that never stores the
        accumulator tensor.  The fused function returns None whenever either op would flag
        anything; then both run unfused, so values and diagnostics are exactly those of the
        two steps.  The fused step frees what either step freed (the accumulator, which it
        never stores, and the RESCALE's unread outputs among them)."""
        # the single outputs of the steps that offer a fusion, and which steps read them
        readers = {s.outs[0]: [] for s in self.steps
                   if len(s.outs) == 1 and getattr(s.fn, "fuse", None)}
        if not readers:
            return list(self.steps)
        for i, s in enumerate(self.steps):
            for n in s.ins:
                if n in readers:
                    readers[n].append(i)
        steps, absorbed = [], set()
        for i, s in enumerate(self.steps):
            if i in absorbed:
                continue
            fuse = getattr(s.fn, "fuse", None)
            t = s.outs[0] if len(s.outs) == 1 else None
            r = readers.get(t, [])
            if fuse and t not in self.outputs and len(r) == 1 and \
                    t not in self.plan.read_by_blocks(self.block):
                rs = self.steps[r[0]]
                epilogue = getattr(rs.fn, "epilogue", None)
                if rs.node.op == Op.RESCALE and rs.ins[0] == t and epilogue is not None:
                    f = _Step(rs.node, _fused(fuse(epilogue), s.fn, rs.fn), s.ins, rs.outs)
                    f.frees = s.frees + rs.frees
                    steps.append(f)
                    absorbed.add(r[0])
                    continue
            steps.append(s)
        return steps

    # ---- phase 3: run --------------------------------------------------------------------
    def run(self, values, ctx):
        """Evaluate with ``values`` (list, in block-input order) in the run context ``ctx``;
        returns the output list."""
        env = dict(zip(self.inputs, values))
        env.update(self.consts)
        variables = ctx.variables
        capture, trace = ctx.capture, ctx.trace
        watching = capture is not None or trace is not None
        if capture is not None:
            for name in self.const_outputs:
                capture[name] = env[name]
        for s in (self.steps if watching else self.fused):
            try:
                args = [env[n] for n in s.ins]
            except KeyError:
                args = [self._lookup(env, variables, s, n) for n in s.ins]
            res = s.fn(*args)
            if not isinstance(res, tuple):
                res = (res,)
            if len(res) != len(s.outs):
                raise InternalError(f"{s.node.name}: returned {len(res)} arrays for "
                                    f"{len(s.outs)} outputs")
            for name, (shape, dt), arr in zip(s.outs, s.expect, res):
                if (shape is not None and arr.shape != shape) or (dt is not None
                                                                  and arr.dtype != dt):
                    _output_mismatch(s.node, name, arr)
                env[name] = arr
                if name in self.var_names:
                    variables[name] = arr
            if watching:
                if capture is not None:
                    capture.update(zip(s.outs, res))
                if trace is not None:
                    trace(s.node, s.outs, res)
            for n in s.frees:
                env.pop(n, None)
        return [env[n] if n in env else self._lookup(env, variables, None, n)
                for n in self.outputs]

    def _lookup(self, env, variables, step, name):
        if name in env:
            return env[name]
        if name in variables:
            return variables[name]
        where = step.node.name if step is not None else f"block {self.block.name!r}"
        if name in self.var_names:
            raise UnpredictableError(f"{where}: variable {name!r} is read before it was "
                                     "written")
        raise InternalError(f"{where}: tensor {name!r} was not computed")


def _fused(fused, producer, rescale):
    def run(*args):
        y = fused(*args)
        return y if y is not None else rescale(producer(*args))
    return run


def _output_mismatch(node, name, arr):
    t = next(t for t in node.outputs if t.name == name)
    raise InternalError(f"{node.name}: the kernel computed output {list(arr.shape)} "
                        f"{arr.dtype} for the declared tensor {t.name!r} {list(t.shape)} "
                        f"{DType(t.dtype).name} (a tosaint bug: please report it)")


def _root(a):
    """The array that owns ``a``'s memory (following views)."""
    while isinstance(a.base, np.ndarray):
        a = a.base
    return a


def _read_only(a):
    v = a.view()
    v.flags.writeable = False
    return v


class Plan:
    """A graph, validated and prepared once; run it as often as needed (from any thread)."""

    def __init__(self, graph: Graph, *, impl="auto", level=None, max_memory=None,
                 max_while_iterations=None, validate_only=False):
        # Weak references up, strong ones down: the graph caches its plans (``graph._plans``)
        # and the blocks and nodes refer to the plan, so a plan refers to its graph weakly and
        # passes its blocks a weak proxy of itself.  A graph and its plans are then freed as
        # soon as the caller drops them (a one-shot loop over large graphs does not wait for
        # the cyclic collector); preparing uses the graph only while the caller holds it.
        self._graph = weakref.ref(graph)
        self._proxy = weakref.proxy(self)
        if impl not in kernels.IMPLS:
            raise ValueError(f"impl must be one of {kernels.IMPLS}, not {impl!r}")
        self.impl = impl
        self._runs = 0               # runs started (a second one promotes impl="auto")
        self.level = levels.level_name(level)
        self.max_memory = levels.DEFAULT_MAX_MEMORY if max_memory is None else int(max_memory)
        self.max_while_iterations = (levels.DEFAULT_MAX_WHILE_ITERATIONS
                                     if max_while_iterations is None
                                     else int(max_while_iterations))
        self._blocks = {}
        self._active = []            # names of the blocks being validated/prepared (cycles)
        self._derived = {}
        self._read_by = {}
        self._tensors = None         # every block's tensors by name (find_tensor)
        #: EXT-VARIABLE initial values by tensor name, and the values the last run left
        self._initial_variables = {n: t.data for b in graph.blocks()
                                   for n, t in b.tensors.items()
                                   if t.variable and t.data is not None}
        self._kept_variables = None
        #: False for a validate-only plan (``tosaint.validate``), which cannot run
        self.prepared = not validate_only
        self.main = self.block_plan(graph.main.name, 0, validating=True, block=graph.main)
        self._declared = [self.main.tensor(n) for n in self.main.inputs]
        if self.prepared:
            self.block_plan(graph.main.name, 0, validating=False, block=graph.main)
            roots = set()
            for v in [v for b in self._blocks.values() for v in b.consts.values()] + \
                    list(self._initial_variables.values()):
                while isinstance(v.base, np.ndarray):      # _root, in line
                    v = v.base
                roots.add(id(v))
            self._const_roots = roots

    @property
    def graph(self):
        """The graph this plan was prepared from (None once the caller has dropped it)."""
        return self._graph()

    def find_tensor(self, name):
        """A tensor of any block by name (the first block declaring it)."""
        if self._tensors is None:
            tensors = {}
            for b in self.graph.blocks():
                for n, t in b.tensors.items():
                    tensors.setdefault(n, t)
            self._tensors = tensors
        return self._tensors.get(name)

    def reset_variables(self):
        """Forget the variable values earlier runs left: the next run, even with
        ``keep_variables=True``, starts from the initial values."""
        self._kept_variables = None

    def read_by_blocks(self, block):
        """Names read by the operators of every block other than ``block``."""
        key = id(block)
        if key not in self._read_by:
            self._read_by[key] = {n for b in self.graph.blocks() if b is not block
                                  for o in b.operators for n in o.inputs}
        return self._read_by[key]

    def derived(self, key, fn, *args):
        """``fn(*args)`` once per plan and key (shared by the ops asking with that key)."""
        key = (fn, key)
        if key not in self._derived:
            self._derived[key] = fn(*args)
        return self._derived[key]

    def block_plan(self, name, depth, *, validating, block=None):
        """The BlockPlan of a region or block, validated (and prepared unless
        ``validating``) once per nesting depth."""
        if depth > levels.MAX_CONTROL_FLOW_DEPTH:
            raise ResourceLimitError(f"control flow nested deeper than "
                                     f"{levels.MAX_CONTROL_FLOW_DEPTH} blocks (at {name!r})")
        if self.level and depth > levels.MAX_NESTING:
            raise LevelLimitError(f"level {self.level}: control flow nested deeper than "
                                  f"{levels.MAX_NESTING} (MAX_NESTING; at {name!r})")
        key = (name, depth)
        bp = self._blocks.get(key)
        if bp is not None and (bp.validated if validating else bp.prepared):
            return bp
        if name in self._active:
            raise SchemaError(f"block {name!r} contains itself (through "
                              f"{' -> '.join(self._active + [name])})")
        if bp is None:
            if block is None:
                try:
                    block = self.graph.find_block(name)
                except KeyError:
                    raise SchemaError(f"no region or block named {name!r}") from None
            bp = BlockPlan(self._proxy, block, depth)
            self._blocks[key] = bp
        self._active.append(name)
        try:
            if not bp.validated:
                bp.validate()
            if not validating:
                bp.prepare()
        finally:
            self._active.pop()
        return bp

    def build(self, node):
        """Look ``node`` up in the registry and run its build function (which validates, and
        prepares unless ``node.validating``); returns the run function."""
        entry = REGISTRY.get(node.op)
        if entry is None:
            why = NOT_IMPLEMENTED.get(node.op, "not implemented")
            raise UnsupportedOp(f"{node.name}: operator {node.op.name} is not supported by "
                                f"tosaint ({why})")
        if node.signature is None:          # (checked once: a node may build twice)
            sig = entry.key(node)
            if sig not in entry.signatures:
                legal = ", ".join(format_signature(s) for s in entry.signatures)
                msg = (f"{node.name}: type signature {format_signature(sig)} is not "
                       f"supported; {node.op.name} takes {legal}")
                if all(t in _INTEGER_SIGNATURE_TYPES for t in sig):
                    # an integer combination outside the spec's table: an ERROR_IF of the spec
                    raise ErrorIfViolation(msg)
                raise UnsupportedTypeSignature(msg)
            if self.level:
                for t in node.inputs + node.outputs:
                    node.level_check(len(t.shape) <= levels.MAX_RANK,
                                     f"rank of {t.name!r} is {len(t.shape)} > MAX_RANK "
                                     f"{levels.MAX_RANK}")
            node.signature = sig
        return entry.build(node)

    # ---- evaluation --------------------------------------------------------------------
    def run(self, inputs, *, capture=False, trace=None, on_unpredictable="reference",
            keep_variables=False) -> RunResult:
        """Evaluate the graph on ``inputs`` (dict by name, list, or one array).

        ``capture=True`` adds every tensor computed (inputs, constants of CONST operators,
        intermediates, sub-block tensors: the last value for a loop body) to the result, in
        the order computed.  ``trace(node, names, arrays)`` is called after every operator
        (sub-blocks included).  A TosaError raised during a captured run carries
        ``.captured``: everything computed before it.  ``keep_variables=True`` starts from the
        variable values the previous run left (EXT-VARIABLE state); by default every run
        starts from the initial values.  Returned arrays are owned by the caller, or
        read-only views where they share memory with an input, a constant or a variable.
        """
        if on_unpredictable not in UNPREDICTABLE_MODES:
            raise ValueError(f"on_unpredictable must be one of {UNPREDICTABLE_MODES}")
        if not self.prepared:
            raise TosaError("this plan was only validated (tosaint.validate); prepare it to "
                            "run it")
        values = coerce(self._declared, inputs)
        if self._runs and self.impl == "auto":
            kernels.promote()        # a plan run repeatedly: Numba pays (kernels.fast)
        self._runs += 1
        if keep_variables and self._kept_variables is not None:
            variables = self._kept_variables
        else:
            variables = dict(self._initial_variables)
        cap = dict(zip(self.main.inputs, values)) if capture else None
        ctx = RunContext(on_unpredictable, variables, cap, trace, self.max_while_iterations)
        token = enter_run(ctx)
        try:
            outs = self.main.run(values, ctx)
        except TosaError as e:
            if cap is not None:
                e.captured = self._owned(cap, values, variables)
            raise
        finally:
            leave_run(token)
        self._kept_variables = variables
        result = dict(cap) if cap is not None else {}
        result.update(zip(self.main.outputs, outs))
        return RunResult(self._owned(result, values, variables), self.main.outputs,
                         ctx.diagnostics)

    def _owned(self, arrays, inputs, variables):
        """``arrays`` with every array that shares memory with an input, a constant, a
        variable or another returned array replaced by a read-only view."""
        given = {id(_root(v)) for v in inputs}
        given.update(id(_root(v)) for v in variables.values())
        roots = [id(_root(a)) for a in arrays.values()]
        shared = {r for r in roots if roots.count(r) > 1} if len(set(roots)) < len(roots) \
            else ()
        consts = self._const_roots
        return {name: _read_only(a) if (r in consts or r in given or r in shared) else a
                for (name, a), r in zip(arrays.items(), roots)}


def _plan_key(impl, level, max_memory, max_while_iterations):
    return (impl, levels.level_name(level), max_memory, max_while_iterations)


def _graph(graph):
    if isinstance(graph, Graph):
        return graph
    from .schema.loader import load
    return load(graph)


def prepare(graph, *, impl="auto", level=None, max_memory=None,
            max_while_iterations=None) -> Plan:
    """Load (if needed), validate and prepare ``graph``; the plan is cached on the Graph.

    ``max_memory``: the budget in bytes for the tensors one run allocates (default
    ``tosaint.levels.DEFAULT_MAX_MEMORY``); ``max_while_iterations``: the WHILE_LOOP limit
    (default ``tosaint.levels.DEFAULT_MAX_WHILE_ITERATIONS``).  Going over either raises
    ``ResourceLimitError``.
    """
    graph = _graph(graph)
    key = _plan_key(impl, level, max_memory, max_while_iterations)
    plan = graph._plans.get(key)
    if plan is None:
        with gc_paused():
            plan = Plan(graph, impl=impl, level=level, max_memory=max_memory,
                        max_while_iterations=max_while_iterations)
        graph._plans[key] = plan
    return plan


def validate(graph, *, level=None) -> None:
    """Check ``graph`` (a Graph, a path or bytes) without preparing it: structure, every
    ERROR_IF (also in branches never taken), level limits and the memory budget.  Raises the
    first problem as a TosaError; returns None for a valid graph.  (It checks with the spec
    twins' namespace, which imports no Numba: nothing runs, so the kernels do not matter.)"""
    graph = _graph(graph)
    with gc_paused():
        Plan(graph, impl="spec", level=level, validate_only=True)


def run_tosa(graph, inputs, *, capture=False, trace=None, on_unpredictable="reference",
             impl="auto", level=None, keep_variables=False, max_memory=None,
             max_while_iterations=None) -> RunResult:
    """Run a TOSA graph (a Graph, a path or bytes) on ``inputs`` (dict by name, list, or one
    array for a one-input graph).

    Returns the graph outputs by name with their TOSA storage dtype (int48 as int64).  With
    ``capture=True`` every intermediate tensor is included too.  ``on_unpredictable`` is
    "reference" (raise where the reference model reports UNPREDICTABLE, otherwise return its
    values and list the violated REQUIREs in ``result.diagnostics``) or "raise".  ``impl``
    picks the kernels: "auto" (NumPy forms for light calls until the process runs a plan a
    second time, Numba otherwise: see ``tosaint.kernels.fast``), "numba" (always the Numba
    kernels) or "spec" (always the NumPy twins); every choice gives the same bits.
    ``level="8K"`` adds level checks.
    ``keep_variables=True`` keeps the EXT-VARIABLE state the previous run on the same graph
    left (the prepared plan is cached on the Graph); by default each run starts afresh.
    ``max_memory`` / ``max_while_iterations``: see ``prepare``.
    """
    plan = prepare(graph, impl=impl, level=level, max_memory=max_memory,
                   max_while_iterations=max_while_iterations)
    return plan.run(inputs, capture=capture, trace=trace, on_unpredictable=on_unpredictable,
                    keep_variables=keep_variables)


def supported_ops():
    """Every (op, type signature, profile/extension) tosaint implements, sorted by op."""
    rows = []
    for op in sorted(REGISTRY):
        for sig, profile in REGISTRY[op].signatures.items():
            rows.append((op.name, tuple(short(t) for t in sig), profile))
    return rows


__all__ = ["Diagnostic", "Plan", "RunResult", "prepare", "run_tosa", "supported_ops",
           "validate"]
