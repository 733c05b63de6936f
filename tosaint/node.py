"""What an op sees: ``Node`` (its operator, tensors, options and the spec's check helpers
``error_if`` / ``require`` / ``level_check``) and the per-call run state (``RunContext``).

An op's build function first runs with ``node.validating`` true (structural and ERROR_IF
checks: ``tosaint.validate``, ``tosaint check`` and the first pass of ``prepare``).  An op whose
preparation costs something (weight layouts, lookup tables, multipliers, sub-blocks) stops
there with ``if node.validating: return None`` and is built again, after the memory budget
check, with ``node.validating`` false; any other op's run function is kept from the first
pass.  The run function it returns
is called on every evaluation; whatever a run must not share with another run (diagnostics,
the on_unpredictable mode, EXT-VARIABLE state) lives in the ``RunContext`` of that call, never
on the node or the plan, so that one prepared graph can run in many threads at once.
"""
from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass

from . import kernels
from .errors import ErrorIfViolation, InternalError, LevelLimitError, UnpredictableError
from .registry import REGISTRY
from .schema.definition import Op


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


class RunContext:
    """The state of one ``Plan.run`` call: REQUIRE mode, diagnostics, variables, capture."""
    __slots__ = ("mode", "diagnostics", "variables", "capture", "trace", "max_while_iterations")

    def __init__(self, mode, variables, capture, trace, max_while_iterations):
        self.mode = mode                  # "reference" or "raise"
        self.diagnostics = []             # Diagnostic, in the order found
        self.variables = variables        # EXT-VARIABLE values by tensor name
        self.capture = capture            # dict name -> array, or None
        self.trace = trace                # trace(node, names, arrays) after each step, or None
        self.max_while_iterations = max_while_iterations


#: impl -> ``kernels.namespace(impl)`` (a module: looked up once, not per operator)
_KERNELS = {}
#: Op -> its name (an Enum's ``.name`` is a property, looked up for every node)
_OP_NAMES = {op: op.name for op in Op}

_CURRENT: ContextVar = ContextVar("tosaint_run_context", default=None)


def current_run():
    """The RunContext of the run in progress in this thread (InternalError outside a run)."""
    ctx = _CURRENT.get()
    if ctx is None:
        raise InternalError("a prepared operator ran outside Plan.run")
    return ctx


def enter_run(ctx):
    """Make ``ctx`` the current run state; returns the token for ``leave_run``."""
    return _CURRENT.set(ctx)


def leave_run(token):
    _CURRENT.reset(token)


class Node:
    """What an op's build function sees: its operator, tensors, options and helpers."""
    __slots__ = ("plan", "block_plan", "operator", "op", "attrs", "inputs", "outputs", "depth",
                 "output", "name", "validating", "scratch", "signature", "_once")

    def __init__(self, plan, block_plan, operator, inputs, outputs, depth=0):
        self.plan = plan
        self.block_plan = block_plan
        self.operator = operator
        op = operator.op
        self.op = op = op if type(op) is Op else Op(op)
        self.attrs = operator.attrs
        self.inputs = inputs      # list[Tensor]
        self.outputs = outputs    # list[Tensor]
        self.depth = depth        # control-flow nesting depth
        self.output = operator.outputs[0] if operator.outputs else "?"
        self.name = f"{_OP_NAMES[op]} {self.output}"
        #: True while the build function only validates (no heavy preparation wanted)
        self.validating = True
        #: bytes of scratch memory the kernel allocates beyond its outputs (memory budget)
        self.scratch = 0
        self.signature = None
        self._once = {}

    # ---- options ---------------------------------------------------------------------
    @property
    def impl(self):
        return self.plan.impl

    @property
    def k(self):
        """Kernel namespace of the selected implementation (numba or spec twin)."""
        impl = self.plan.impl
        k = _KERNELS.get(impl)
        if k is None:
            k = _KERNELS[impl] = kernels.namespace(impl)
        return k

    @property
    def level(self):
        return self.plan.level

    # ---- checks ------------------------------------------------------------------------
    def error_if(self, cond, message):
        """ERROR_IF: raise ErrorIfViolation naming this operator when ``cond`` holds."""
        if cond:
            raise ErrorIfViolation(f"{self.name}: {message}")

    def error(self, message):
        """An ERROR_IF that holds (``if cond: node.error(f"...")``: the checks that run for
        every operator of a graph format their message only when they fail)."""
        raise ErrorIfViolation(f"{self.name}: {message}")

    def level_check(self, ok, message):
        """LEVEL_CHECK: only when the plan was prepared for a level (e.g. "8K")."""
        if self.plan.level and not ok:
            raise LevelLimitError(f"{self.name}: level {self.plan.level}: {message}")

    def require(self, ok, message, *, reference="unpredictable", count=1):
        """A REQUIRE evaluated at run time (in the current run's context).

        ``reference`` says what the reference model does when it fails: "unpredictable" (it
        reports UNPREDICTABLE; tosaint raises) or a word such as "saturates"/"wraps" (it returns
        values; tosaint returns the same and records a Diagnostic on this run).
        """
        if ok:
            return
        ctx = current_run()
        if reference == "unpredictable" or ctx.mode == "raise":
            raise UnpredictableError(f"{self.name}: {message}")
        ctx.diagnostics.append(Diagnostic(self.op.name, self.output, message, count))

    def variables(self):
        """The EXT-VARIABLE values of the current run, by tensor name (read and written)."""
        return current_run().variables

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

    def once(self, check):
        """``check(self)``, evaluated on the first pass only: an op that builds twice
        (validate, then prepare) does not repeat its checks."""
        if check not in self._once:
            self._once[check] = check(self)
        return self._once[check]

    def derive(self, key, fn, *args):
        """``fn(*args)``, computed once per plan for ``key`` and shared by every op that asks
        with the same key (e.g. a TABLE's lookup array, keyed by its constant tensor)."""
        return self.plan.derived(key, fn, *args)

    def block(self, name):
        """A sub-block (COND_IF / WHILE_LOOP bodies), by region or block name: validated while
        this node validates, prepared while it prepares."""
        return self.plan.block_plan(name, self.depth + 1, validating=self.validating)
