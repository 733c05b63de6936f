"""The one error hierarchy of tosaint, rooted at :class:`TosaError`.

The classes follow the spec's three outcomes of a graph (valid, ERROR_IF, REQUIRE/unpredictable)
plus what a loader and a runtime need.  Every message names the op, the tensor and the violated
condition, so that a user can find the offending node without a debugger.
"""


class TosaError(Exception):
    """Root of every error tosaint raises on purpose."""


class SchemaError(TosaError):
    """The bytes are not a valid TOSA flatbuffer, or the graph in it is malformed.

    (wrong identifier, truncated, offsets out of range, dangling tensor names, cycles,
    data length not matching shape x dtype, absurd sizes, ...)
    """


class UnsupportedOp(TosaError):
    """An operator (or torch op) that tosaint does not implement."""


class ErrorIfViolation(TosaError):
    """A spec ERROR_IF condition holds: the graph is invalid."""


class UnsupportedTypeSignature(UnsupportedOp):
    """An operator whose combination of tensor types tosaint does not implement (e.g. a
    floating-point signature).  It does not make the graph invalid, so it is not an
    ErrorIfViolation: an integer combination outside the spec's supported-types table is
    reported as ``ErrorIfViolation`` instead.
    """


class LevelLimitError(ErrorIfViolation):
    """A LEVEL_CHECK limit of the requested level is exceeded."""


class UnpredictableError(TosaError):
    """A spec REQUIRE condition failed: the result of the graph is unpredictable."""


class InputError(TosaError):
    """Graph inputs handed to run_tosa have a wrong name, dtype, shape or range."""


class ResourceLimitError(TosaError):
    """The graph asks for more than tosaint's resource limits allow (memory budget, WHILE_LOOP
    iterations, control-flow depth; see ``tosaint.levels``).  The graph may be valid."""


class InternalError(TosaError):
    """A bug in tosaint (e.g. a kernel returned an array of the wrong shape or dtype), not a
    problem of the graph or the inputs.  Please report it."""


class BackendError(TosaError):
    """An external tool (Vela, the reference model) rejected the graph."""
